"""bench/run: the benchmark in one command (bench/README.md).

Installs what is missing, builds Release, starts a node on a free loopback
port, creates a large event and customers with session tokens, runs the
scenarios of BENCH_SCENARIOS (scenarios/__init__.py has the table), the
profiles of BENCH_PROFILE, and writes report.md in
BENCH_BUILD_DIR/bench-results/<time>-<pid>/. Whatever happens, the
processes it started are stopped when it ends.
"""
import os
import sys
import time

from . import api, config, postgres, prepare, report, scenarios
from .bench import Bench
from .node import start_node
from .procs import BenchError, Processes, exit_on_signals, ignore_signals
from .scenarios import profile


def main():
    procs = Processes()
    exit_on_signals()
    try:
        cfg = config.load()
        scenarios.check(cfg)
        prepare.install(cfg)
        binary, broker = prepare.build(cfg)
        out = cfg.build_dir / "bench-results" / (
            time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}")
        out.mkdir(parents=True)
        os.chdir(out)  # stray files of any tool land here, not in the source tree
        os.environ["BENCH_DIR"] = str(cfg.bench_dir)  # the Lua scripts find common.lua so
        run(Bench(cfg, procs, out, binary, broker))
        return 0
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        ignore_signals()
        procs.stop_all()


def run(bench):
    cfg = bench.cfg
    if cfg.postgres:
        bench.run_tag = time.strftime("-%H%M%S", time.gmtime())
        bench.pg, bench.pg_settings, bench.postmaster = postgres.connect(cfg)
    # Port 0: the kernel picks a free port and the node logs the one it
    # bound. With RSV_STORE=postgres the node reads RSV_PG_DSN or the PG*
    # variables from the environment it inherits.
    bench.node = start_node(bench, "server.log", [])
    bench.node.wait_ready()
    print(f"bench: server pid {bench.node.pid} on {bench.node.base} (io {cfg.io_threads},"
          f" actor {cfg.actor_threads}, store {cfg.store})", flush=True)
    bench.main_event = f"bench-main{bench.run_tag}"
    bench.rss_before_kib = bench.node.rss_kib()
    api.create_event(bench, bench.main_event)
    bench.rss_after_kib = bench.node.rss_kib()
    print(f"bench: event {bench.main_event}: {cfg.seats} seats; RSS {bench.rss_before_kib} ->"
          f" {bench.rss_after_kib} KiB", flush=True)
    api.make_customers(bench, bench.node.base, "bench", bench.tokens,
                       bench.path("customer-ids.txt"))
    print(f"bench: {cfg.customers} customers with session tokens", flush=True)
    table = scenarios.scenarios(cfg)
    for name in cfg.scenarios:
        scenarios.run(bench, table[name])
    for name in cfg.profile:
        if not profile.available():
            break
        scenarios.run_profile(bench, name)
    text = report.render(bench)
    bench.path("report.md").write_text(text)
    print(f"\n{text}\nbench: raw results in {bench.out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
