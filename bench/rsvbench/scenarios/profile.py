"""BENCH_PROFILE: after the table, one more run of a series with perf
sampling (software clock, so it also works where hardware counters do not);
not counted in the table. The top functions go to perf-NAME.txt.

With PostgreSQL the whole machine is sampled (the node, its backends, the
broker, wrk), so the file splits the cost by process; when
pg_stat_statements is loaded (pg_virtualenv -o
shared_preload_libraries=pg_stat_statements) it adds the top statements.
"""
import re
import shutil
import subprocess

from .. import wrk
from ..api import create_event
from ..procs import STDOUT, say
from ..series import script_args

PERF_SLACK_S = 30
PERF_REPORT_TIMEOUT_S = 600


def run(bench, name, scenario):
    """One profiled run of the profile `name`: scenario is its row (its one
    series and the services it needs); the runner started those."""
    cfg = bench.cfg
    series = scenario.series[0]
    if series.node is not None:
        bench.restart_main(f"server-profile-{name}.log", series.node)
    event = None
    if series.fresh_event:
        event = f"bench-{name}-profile{bench.run_tag}"
        create_event(bench, event)
    target = ["-a"] if cfg.postgres else ["-p", str(bench.node.pid)]
    statements = cfg.postgres and statements_ready(bench)
    bench.cpu.wait_for_quiet()
    if statements:
        bench.pg.query("SELECT pg_stat_statements_reset()")
    data = bench.path(f"perf-{name}.data")
    perf = bench.procs.start("tool", ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
                                      *target, "-o", str(data), "--", "sleep",
                                      str(cfg.duration)],
                             stdout=bench.path(f"perf-{name}.log"), stderr=STDOUT)
    result = wrk.run(bench, f"profile-{name}", 1, cfg.duration, series.script,
                     script_args(bench, series, 1, event))
    bench.procs.wait(perf, PERF_SLACK_S)
    if statements:
        bench.path(f"statements-{name}.txt").write_text(top_statements(bench))
    write_summary(bench, name, data, result.ok_rate)
    say(f"profile of {name} in {bench.path(f'perf-{name}.txt')}")


def available():
    if shutil.which("perf"):
        return True
    say("no perf; BENCH_PROFILE ignored")
    return False


def statements_ready(bench):
    try:
        bench.pg.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        bench.pg.query("SELECT pg_stat_statements_reset()")
        return True
    except Exception:  # not loaded: the profile goes without statements
        return False


def top_statements(bench):
    try:
        return bench.pg.psql("-F", " | ", "-c", """
            SELECT round(total_exec_time)::bigint AS ms, calls,
                   round((total_exec_time / greatest(calls, 1) * 1000)::numeric, 1) AS us_each,
                   rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
            FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20""") + "\n"
    except Exception as error:  # the profile is still worth its file
        return f"{error}\n"


def perf_report(data, *args):
    done = subprocess.run(["perf", "report", "-i", str(data), *args, "--stdio"],
                          capture_output=True, text=True, timeout=PERF_REPORT_TIMEOUT_S,
                          check=False)
    return done.stdout


def top(text, count):
    """The first lines of a perf report: no comments or empty lines,
    template arguments and trailing padding removed."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip() or len(lines) >= count:
            continue
        for _ in range(100):  # innermost <...> first; bounded
            line, n = re.subn(r"<[^<>]*>", "", line)
            if n == 0:
                break
        lines.append(re.sub(r"[ \t-]+$", "", line))
    return lines


def write_summary(bench, name, data, rate):
    """perf-NAME.txt, and the reports it is made of beside it."""
    reports = {"dso": ["--sort", "dso"], "symbols": ["--sort", "dso,symbol"]}
    if bench.cfg.postgres:
        reports["comm"] = ["--sort", "comm"]
        reports["postgres"] = ["--comms", "postgres", "--sort", "symbol"]
    texts = {}
    for part, args in reports.items():
        texts[part] = perf_report(data, *args)
        bench.path(f"perf-{name}.{part}").write_text(texts[part])
    lines = [f"# perf, cpu-clock samples during {name} ({rate} 2xx/s while sampled)"]
    if "comm" in texts:
        lines += ["## the whole machine, by process (thread) name"] + top(texts["comm"], 25)
        lines += ["## PostgreSQL's processes, by function"] + top(texts["postgres"], 40)
    statements = bench.path(f"statements-{name}.txt")
    if statements.exists():
        lines += ["## pg_stat_statements: total ms | calls | µs each | rows | statement",
                  statements.read_text().rstrip("\n")]
    lines += ["## self time by shared object"] + top(texts["dso"], 15)
    lines += ["## self time by function (template arguments removed)"] + top(texts["symbols"], 60)
    bench.path(f"perf-{name}.txt").write_text("\n".join(lines) + "\n")
