"""Who used the machine's CPU during a run, and waiting for a quiet machine.

All in clock ticks from /proc, as cores = ticks / machine ticks x CPUs:
the node (both nodes in the cluster scenario), the load generator (wrk or
pgbench: the bench's children that ended during the run), PostgreSQL (the
postmaster and its children, when it runs on this machine), the Kafka
broker, and everything else. bench/README.md, "Other load on the machine".
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import say, wait_for

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))
QUIET_SAMPLE_S = 2   # how long the check before a run measures
QUIET_PAUSE_S = 3    # between two checks while the machine is busy


def machine_ticks():
    """(busy, total) ticks of all CPUs: user, nice, system, irq, softirq and
    steal are busy; idle and iowait are not."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _stat(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_ticks(pid, with_ended_children=False):
    """utime + stime of a process (0 when it is gone); with its ended
    children's too when asked."""
    fields = _stat(pid) if pid else None
    if not fields:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    if with_ended_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def load_ticks():
    """The ticks of the bench's children that ended so far: the load
    generator, which the bench waits for before the second mark."""
    times = os.times()
    return round((times.children_user + times.children_system) * CLOCK_TICKS)


def postgres_children(postmaster):
    """{pid: ticks} of the postmaster's live children (backends, WAL
    writer, checkpointer...)."""
    children = {}
    for entry in os.scandir("/proc") if postmaster else ():
        if entry.name.isdigit() and entry.name != str(postmaster):
            fields = _stat(entry.name)
            if fields and fields[1] == str(postmaster):
                children[int(entry.name)] = int(fields[11]) + int(fields[12])
    return children


def postgres_ticks(postmaster):
    """The postmaster with the children it reaped (backends that ended),
    plus its live children."""
    if not postmaster:
        return 0
    return (process_ticks(postmaster, with_ended_children=True)
            + sum(postgres_children(postmaster).values()))


@dataclass
class Mark:
    busy: int
    total: int
    server: int
    load: int
    postgres: int
    broker: int


class CpuMeter:
    """Marks before and after a run and the cores between them. Asks the
    bench which processes are the node(s), the broker and PostgreSQL at
    every mark, since scenarios start and stop them."""

    def __init__(self, bench):
        self.bench = bench

    def _server_ticks(self):
        return sum(process_ticks(node.pid) for node in self.bench.measured_nodes())

    def _broker_ticks(self):
        broker = self.bench.broker
        return process_ticks(broker.pid) if broker else 0

    def mark(self):
        busy, total = machine_ticks()
        return Mark(busy, total, self._server_ticks(), load_ticks(),
                    postgres_ticks(self.bench.postmaster), self._broker_ticks())

    @staticmethod
    def cores(a, b):
        """Cores each used between two marks, rounded as the report shows
        them: {"server", "load", "postgres", "broker", "other"}."""
        total = max(b.total - a.total, 1)
        used = {key: getattr(b, key) - getattr(a, key)
                for key in ("server", "load", "postgres", "broker")}
        # Tick accounting differs by a few ticks: never below 0.
        used["other"] = max((b.busy - a.busy) - sum(used.values()), 0)
        return {key: round(CPUS * ticks / total, 2) for key, ticks in used.items()}

    def other_cores(self, seconds):
        """Cores that processes other than the node(s) and the broker used
        over `seconds`; PostgreSQL counts as other here."""
        busy0, total0 = machine_ticks()
        ours0 = self._server_ticks() + self._broker_ticks()
        time.sleep(seconds)
        busy1, total1 = machine_ticks()
        ours1 = self._server_ticks() + self._broker_ticks()
        busy = max((busy1 - busy0) - (ours1 - ours0), 0)
        return CPUS * busy / (total1 - total0) if total1 > total0 else 0.0

    def wait_for_quiet(self):
        """Waits, at most BENCH_QUIET_WAIT s, until other processes use at
        most BENCH_MAX_OTHER_CPU cores. ("cores", "load1") as measured, the
        cores as "%.2f"."""
        cfg = self.bench.cfg
        deadline = time.monotonic() + cfg.quiet_wait
        measured = []

        def quiet():
            cores = float(f"{self.other_cores(QUIET_SAMPLE_S):.2f}")
            measured.append(cores)
            if cores <= cfg.max_other_cpu:
                return True
            if time.monotonic() >= deadline:
                say(f"other processes still use {cores:.2f} cores after {cfg.quiet_wait}s;"
                    " measuring anyway")
                return True
            say(f"other processes use {cores:.2f} cores (load {loadavg(3)}); waiting")
            return None

        wait_for(quiet, cfg.quiet_wait + QUIET_PAUSE_S, QUIET_PAUSE_S)
        return f"{measured[-1]:.2f}", loadavg(1)


def loadavg(count):
    return " ".join(Path("/proc/loadavg").read_text().split()[:count])
