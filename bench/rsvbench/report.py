"""report.md: the table of every series, the ratios and checks, and the
parts of the scenarios that ran (bench/README.md, "How to read the
output"; "The durable report").
"""
import statistics

from .scenarios import churn, journal, kafka, redis, seatmaps, two_nodes
from .wrk import ms

def render(bench):
    cfg = bench.cfg
    lines = [header(bench), ""] + table(bench)
    holds_run = bench.best("holds")
    health_run = bench.best("health")
    if health_run and holds_run and health_run.rate > 0:
        lines += [f"Holds/s over /health requests/s: {holds_run.rate} / {health_run.rate} ="
                  f" {100 * holds_run.rate / health_run.rate:.1f}%", ""]
    if holds_run:
        lines += hold_check(holds_run)
    before, after = bench.rss_before_kib, bench.rss_after_kib
    lines.append(f"Server RSS: {before} KiB before the {cfg.seats}-seat event, {after} KiB"
                 f" after: {(after - before) * 1024 / cfg.seats:.1f} bytes per seat added,"
                 f" {after * 1024 / cfg.seats:.1f} bytes per seat in all.")
    if "redis" in cfg.scenarios:
        lines += [""] + redis.report(bench)
    if "churn" in cfg.scenarios or "soak" in cfg.scenarios:
        lines += [""] + churn.report(bench)
    if "journal" in cfg.scenarios:
        lines += [""] + journal.report(bench)
    if "seatmaps" in cfg.scenarios:
        lines += [""] + seatmaps.report(bench)
    if cfg.postgres:
        lines += [""] + durable(bench, holds_run)
        if any(r.series.startswith("kafka-") for r in bench.results):
            lines += kafka.report(bench)
        if any(r.series.startswith("cluster-") for r in bench.results):
            lines += two_nodes.report(bench)
    return "\n".join(lines) + "\n"


def header(bench):
    cfg = bench.cfg
    pg_line = ""
    if cfg.postgres:
        pg_line = (f" (RSV_PG_BATCH_ENCODING={cfg.pg_batch_encoding},"
                   f" RSV_PG_WRITERS={cfg.pg_writers})")
    return (f"Server: io-threads {cfg.io_threads}, actor-threads {cfg.actor_threads}"
            f" (RSV_ACTOR_SCHEDULER={cfg.actor_scheduler}), store"
            f" {cfg.store}{pg_line}; wrk: {cfg.connections} connections, {cfg.duration} s per run"
            f" after a {cfg.warmup} s warm-up; {cfg.seats} seats per event ({cfg.sections}"
            f" sections x {cfg.rows} rows x {cfg.seats_per_row} seats); {cfg.customers}"
            " customers.")


def cpu_cells(bench, cpu):
    keys = ("server", "load", "postgres", "other") if bench.cfg.postgres else (
        "server", "load", "other")
    return " / ".join(f"{cpu.get(k, 0):.2f}" for k in keys)


def table(bench):
    """The best run of every series, in the order they ran, and all runs."""
    if not bench.results:
        return []
    cpu_header = ("CPU server / wrk / postgres / other" if bench.cfg.postgres
                  else "CPU server / wrk / other")
    lines = ["| scenario | wrk threads | requests/s | 2xx/s | p50 | p99 | max | non-2xx |"
             f" socket errors | statuses (server) | {cpu_header} | idle other CPU, load1 before |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for series in dict.fromkeys(r.series for r in bench.results):
        r = bench.best(series)
        w = r.wrk
        cells = [r.label or series, r.threads, w.request_rate, r.rate, w.ms("p50_us"),
                 w.ms("p99_us"), w.ms("max_us"), int(w["non2xx"]), int(w.socket_errors),
                 r.statuses, cpu_cells(bench, w.cpu), f"{r.quiet[0]} cores, {r.quiet[1]}"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "All runs (2xx/s by wrk threads):", ""]
    lines += [f"- {r.series}, wrk -t{r.threads}: {r.rate} 2xx/s" for r in bench.results]
    return lines + [""]


def hold_check(run):
    lines = []
    if run.wrk["warnings"] > 0:
        lines += ["WARNING: wrk ran out of free seats in this holds run (the 409s): holds/s is"
                  " understated. Shorten BENCH_DURATION or enlarge the event.", ""]
    held, created = run.extra["held"], run.extra["created_201"]
    delta = run.extra["rss_delta_kib"]
    per_hold = delta * 1024 / created if created > 0 else 0
    lines += [f"Hold check: the event shows {held} held seats, wrk counted {created} answers"
              f" 201; RSS grew {delta} KiB during the run ({per_hold:.0f} bytes per hold).", ""]
    return lines


def verdict(ok):
    return "met" if ok else "**missed**"


def durable(bench, holds_run):
    """The part "Durable store (PostgreSQL)": durable holds, pgbench, their
    ratio, recovery."""
    cfg, s = bench.cfg, bench.pg_settings
    lines = ["## Durable store (PostgreSQL)", "",
             f"PostgreSQL {s.get('server_version')} on the same machine, settings as found (the"
             f" bench changes none): fsync={s.get('fsync')}, synchronous_commit="
             f"{s.get('synchronous_commit')}, wal_sync_method={s.get('wal_sync_method')},"
             f" full_page_writes={s.get('full_page_writes')}, shared_buffers="
             f"{s.get('shared_buffers')}, max_wal_size={s.get('max_wal_size')},"
             f" checkpoint_timeout={s.get('checkpoint_timeout')}, commit_delay="
             f"{s.get('commit_delay')}."]
    if s.get("fsync") != "on" or s.get("synchronous_commit") != "on":
        lines += ["", "**WARNING: fsync or synchronous_commit is off: nothing here is durable.**"]
    lines += ["", "| figure | measured | target | |", "|---|---|---|---|"]
    lines += durable_rows(bench, holds_run)
    lines.append("")
    lines += durable_cpu(bench, holds_run)
    lines += recovery_details(bench)
    return lines + [""]


def durable_rows(bench, holds_run):
    cfg = bench.cfg
    rows = []
    if holds_run:
        w = holds_run.wrk
        rows.append(f"| durable holds/s: POST /v1/holds, answered 201 after COMMIT"
                    f" ({cfg.connections} connections, wrk -t{holds_run.threads}) |"
                    f" {holds_run.rate} | >= 10000 | {verdict(holds_run.rate >= 10000)} |")
        rows.append(f"| p99 latency of durable holds (p50 {w.ms('p50_us')}, max {w.ms('max_us')})"
                    f" | {w.ms('p99_us')} | < 50 ms | {verdict(w['p99_us'] < 50000)} |")
    else:
        rows.append("| durable holds/s | not run (scenario holds) | >= 10000 | |")
    p = bench.notes.get("pgbench")
    if p:
        rows.append(f"| pgbench holds/s: one random seat per transaction ({cfg.pgbench_clients}"
                    f" clients, -j {cfg.pgbench_jobs}, prepared; {p['tps']:.0f} tps, {p['holds']}"
                    f" holds in {p['transactions']} transactions, {p['failed']} failed) |"
                    f" {p['holds_per_s']} | | |")
        rows.append(f"| p99 latency of pgbench transactions (p50 {ms(p['p50_us'])}, max"
                    f" {ms(p['max_us'])}) | {ms(p['p99_us'])} | | |")
    else:
        rows.append("| pgbench holds/s | not run (scenario pgbench) | | |")
    if holds_run and p and p["holds_per_s"] > 0:
        ratio = float(f"{holds_run.rate / p['holds_per_s']:.2f}")
        rows.append(f"| durable holds/s over pgbench holds/s | {ratio:.2f}x | >= 3x |"
                    f" {verdict(ratio >= 3)} |")
    runs = bench.notes.get("recovery runs")
    if runs:
        ready = [r[1] for r in runs]
        rows.append(f"| recovery: {cfg.seats} seats, {cfg.recovery_holds} active holds; kill -9,"
                    f" start, first 200 from /ready (median of {len(ready)}:"
                    f" {', '.join(map(str, ready))} ms) | {low_median(ready)} ms | <= 10 s"
                    f" (slowest run) | {verdict(max(ready) <= 10000)} |")
        read = low_median([r[2] for r in runs])
        rebuilt = low_median([r[3] for r in runs])
        rows.append("| the node's own log: reading PostgreSQL / reading and rebuilding (medians)"
                    f" | {read} ms / {rebuilt} ms | | |")
    else:
        rows.append("| recovery | not run (scenario recovery) | <= 10 s | |")
    return rows


def low_median(values):
    """The lower median of numbers (the middle one, or the lower of two);
    "?" when none is a number."""
    numbers = sorted(v for v in values if isinstance(v, int) or str(v).isdigit())
    return int(statistics.median_low(map(int, numbers))) if numbers else "?"


def durable_cpu(bench, holds_run):
    lines = []
    if holds_run:
        c, x = holds_run.wrk.cpu, holds_run.extra
        lines.append(f"CPU during the durable holds run: node {c['server']:.2f}, wrk"
                     f" {c['load']:.2f}, PostgreSQL {c['postgres']:.2f}, other processes"
                     f" {c['other']:.2f} cores. The node's group commit during it:"
                     f" {x.get('batches')} transactions of {x.get('rows_per_batch')} rows on"
                     f" average, {x.get('commit_ms')} ms each from sending to COMMIT done"
                     " (rsv_store_* in /metrics); PostgreSQL checkpoints started during it:"
                     f" {x.get('checkpoints')}.")
    p = bench.notes.get("pgbench")
    if p:
        c = p["cpu"]
        lines.append(f"CPU during pgbench: node (idle) {c['server']:.2f}, pgbench {c['load']:.2f},"
                     f" PostgreSQL {c['postgres']:.2f}, other processes {c['other']:.2f} cores;"
                     f" PostgreSQL checkpoints started during it: {p['checkpoints']}; idle other"
                     f" CPU, load1 before: {p['quiet'][0]} cores, {p['quiet'][1]}.")
    return lines


def recovery_details(bench):
    runs = bench.notes.get("recovery runs")
    if not runs:
        return []
    lines = ["", "Recovery runs (ready ms, node read ms, node recovered ms, held seats after,"
             " RSS KiB, idle other CPU before, what the node read):", ""]
    lines += [f"- run {r[0]}: {r[1]} ms; {r[2]} ms; {r[3]} ms; {r[4]} held; {r[5]} KiB; {r[6]};"
              f" {r[7]}" for r in runs]
    lines += ["", "Checks after the last restart:", ""]
    lines += [f"- {check}" for check in bench.notes.get("recovery checks", [])]
    return lines
