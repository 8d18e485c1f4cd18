"""One wrk run against the node, with the CPU everyone used meanwhile.

The Lua scripts (bench/*.lua) print one line that this reads:
  BENCH_RESULT requests=N duration_us=N non2xx=N connect=N ... p99_us=N
NAME.txt in the results folder keeps wrk's output and, after it,
  CPU server=C load=C postgres=C broker=C other=C
"""
import re
import sys
import time
from dataclasses import dataclass, field

from .procs import STDOUT, fail

WRK_TIMEOUT_S = 5        # wrk's --timeout: a request unanswered this long is an error
WRK_SLACK_S = 30         # past its duration, wrk is stopped


@dataclass
class WrkResult:
    """What one run measured: wrk's counts and latencies (the BENCH_RESULT
    fields, as numbers), the cores used, and when the load stopped."""
    values: dict
    cpu: dict
    end_s: float = field(default=0.0)

    def __getitem__(self, key):
        return self.values.get(key, 0)

    @property
    def ok_rate(self):
        """Answers 2xx per second (for holds: 201, its only 2xx)."""
        return _whole((self["requests"] - self["non2xx"]) / (self["duration_us"] / 1e6))

    @property
    def request_rate(self):
        return _whole(self["requests"] / (self["duration_us"] / 1e6))

    @property
    def socket_errors(self):
        return self["connect"] + self["read"] + self["write"] + self["timeout"]

    def ms(self, key):
        return ms(self[key])


def _whole(x):
    return int(f"{x:.0f}")  # as printf's %.0f rounds


def ms(us):
    return f"{float(us) / 1000:.2f} ms"


def cpu_line(cores):
    return "CPU " + " ".join(f"{k}={v:.2f}" for k, v in cores.items())


def parse(text, cores=None):
    """The BENCH_RESULT line (and the CPU line, when cores is None) of a
    NAME.txt; None without a result line."""
    found = re.search(r"^BENCH_RESULT (.*)$", text, re.M)
    if not found:
        return None
    values = {k: float(v) for k, v in (kv.split("=", 1) for kv in found.group(1).split())}
    if cores is None:
        line = re.search(r"^CPU (.*)$", text, re.M)
        cores = {k: float(v) for k, v in (kv.split("=", 1) for kv in line.group(1).split())} \
            if line else {}
    return WrkResult(values, cores)


def run(bench, name, threads, seconds, script, args):
    """wrk -t threads for seconds with the bench's connections, script from
    bench/ with args after `--`; returns the result and leaves NAME.txt."""
    cfg = bench.cfg
    out = bench.path(f"{name}.txt")
    argv = ["wrk", "-t", str(threads), "-c", str(cfg.connections), "-d", f"{seconds}s",
            "--timeout", f"{WRK_TIMEOUT_S}s", "-s", str(cfg.bench_dir / script),
            bench.node.base, "--", *map(str, args)]
    before = bench.cpu.mark()
    proc = bench.procs.start("tool", argv, stdout=out, stderr=STDOUT)
    status = bench.procs.wait(proc, seconds + WRK_SLACK_S)
    after = bench.cpu.mark()
    end_s = time.time()
    text = out.read_text(errors="replace")
    if status != 0:
        print(text, end="", file=sys.stderr)
        fail(f"wrk {name} exited with {status}")
    cores = bench.cpu.cores(before, after)
    result = parse(text, cores)
    if result is None:
        fail(f"wrk {name} printed no result")
    with out.open("a") as f:
        f.write(cpu_line(cores) + "\n")
    result.end_s = end_s
    return result
