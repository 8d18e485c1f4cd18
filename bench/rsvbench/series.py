"""A wrk series: a warm-up, then a measured run for each wrk thread count
in BENCH_THREADS, each repeated while other processes disturbed it.

Files of a run NAME (= SERIES-tTHREADS) in the results folder: NAME.txt
(wrk's output and the CPU line; the kept attempt), NAME.attemptN.txt,
NAME.before/.after (the node's answers by status), NAME.meta
("SERIES THREADS RATE QUIET_CORES LOAD1 STATUSES | KEY=VALUE...").
"""
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from . import api, client, wrk
from .procs import say, warn

WARMUP_THREADS = 2


@dataclass(frozen=True)
class Series:
    """One row of a scenario (scenarios/__init__.py)."""
    name: str                      # its rows in results.tsv; files NAME-tT.*
    label: str                     # the first column of the report's table
    script: str                    # bench/SCRIPT, run by wrk
    route: str                     # whose answers by status the node counts
    args: tuple = ()               # after `--`; script_args fills in {names}
    node: Optional[tuple] = None   # None: the node as it runs; flags: a fresh
                                   # main node with them ({redis}, {kafka})
    probe: Optional[Callable] = None  # Probe(bench, series): more measurements
    duration: Optional[int] = None # seconds per measured run; None: BENCH_DURATION

    @property
    def fresh_event(self):
        """A series whose script takes {event} gets a fresh event of the
        configured size for every run (and its warm-up): every seat free."""
        return "{event}" in self.args

    @property
    def hold_checked(self):
        """Holds runs are checked against the event's held seats."""
        return self.script in ("holds.lua", "paced_holds.lua")


# holds.lua's arguments (see its head): one seat per hold of a fresh event.
HOLDS_ARGS = ("{tokens}", "{event}", "{sections}", "{rows}", "{seats_per_row}", "{threads}",
              "{seat_pick}")


def holds(name, label, pace_ms=0, **more):
    """A series of scenario (b): one seat per hold, a fresh event per run;
    with pace_ms, each connection waits that long between an answer and its
    next request (paced_holds.lua), for a load with a rate."""
    if pace_ms:
        return Series(name, label, "paced_holds.lua", "POST /v1/holds",
                      args=HOLDS_ARGS + (str(pace_ms),), **more)
    return Series(name, label, "holds.lua", "POST /v1/holds", args=HOLDS_ARGS, **more)


class Probe:
    """Measurements beyond wrk's around a series and each of its runs.
    These do nothing; scenarios subclass it (kafka.KafkaProbe, ...)."""

    def __init__(self, bench, series):
        self.bench = bench
        self.series = series

    def before_series(self):
        pass

    def prepare_run(self, name):
        """Before the wait for a quiet machine."""

    def before_run(self, name, event):
        pass

    def after_run(self, name, event, result):
        """More fields for the run's extra text: {key: value}."""
        return {}

    def after_series(self):
        pass


class SamplingProbe(Probe):
    """A probe that calls `sample()` once a second while a run lasts, on a
    thread of its own: `samples` collects (seconds since the run began,
    *what sample() answered); `stop_sampling()` ends it and answers them.
    A sample that raises ends the sampling (the run's own checks report a
    dead node)."""

    def sample(self):
        return ()

    def before_run(self, name, event):
        self.samples = []
        self.started = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sample_each_second, daemon=True)
        self.thread.start()

    def _sample_each_second(self):
        while True:
            try:
                self.samples.append((time.monotonic() - self.started, *self.sample()))
            except Exception:
                return
            if self.stopped.wait(1.0):
                return

    def stop_sampling(self):
        self.stopped.set()
        self.thread.join(timeout=10)
        return self.samples


def add_note(bench, scenario, note):
    """A line of the report's part for `scenario`, said now too."""
    bench.notes.setdefault(scenario, []).append(note)
    say(note)


def notes_part(bench, scenario, title, intro, first=()):
    """The report's part for `scenario`: its title, an intro paragraph, the
    `first` lines, then its notes as a list; nothing without notes."""
    notes = bench.notes.get(scenario)
    if not notes:
        return []
    return ([f"## {title}", "", intro, ""] + [f"- {line}" for line in first]
            + [f"- {note}" for note in notes] + [""])


@dataclass
class Result:
    """The kept attempt of one series and wrk thread count."""
    series: str
    label: str           # the report's first column
    threads: int
    name: str
    wrk: wrk.WrkResult
    quiet: tuple         # ("cores", "load1") before the run
    statuses: str        # "201=N 409=M", from the node's own counters
    extra: dict          # more figures: held seats, group commit, Kafka...

    @property
    def rate(self):
        return self.wrk.ok_rate

    @property
    def other(self):
        return self.wrk.cpu.get("other", 0.0)

    def meta(self):
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (f"{self.series} {self.threads} {self.rate} {self.quiet[0]} {self.quiet[1]}"
                f" {self.statuses} | {extra}\n")


def run_series(bench, series):
    probe = series.probe(bench, series) if series.probe else Probe(bench, series)
    probe.before_series()
    if bench.cfg.warmup > 0:
        event = new_event(bench, f"bench-{series.name}-warmup{bench.run_tag}", series)
        wrk.run(bench, f"{series.name}-warmup", WARMUP_THREADS, bench.cfg.warmup,
                series.script, script_args(bench, series, WARMUP_THREADS, event))
    for threads in bench.cfg.threads:
        bench.record(least_disturbed(bench, series, threads, probe))
    probe.after_series()


def new_event(bench, event_id, series):
    if not series.fresh_event:
        return None
    api.create_event(bench, event_id)
    return event_id


def script_args(bench, series, threads, event):
    """The series' args with the values of this run filled in."""
    cfg = bench.cfg
    values = {"tokens": bench.tokens, "event": event, "main_event": bench.main_event,
              "sections": cfg.sections, "rows": cfg.rows, "seats_per_row": cfg.seats_per_row,
              "threads": threads, "seat_pick": cfg.seat_pick}
    return [arg.format(**values) for arg in series.args]


def least_disturbed(bench, series, threads, probe):
    """Measures until other processes used at most BENCH_MAX_OTHER_CPU
    cores, at most 1 + BENCH_RETRIES times; the least disturbed attempt."""
    cfg = bench.cfg
    name = f"{series.name}-t{threads}"
    best, best_attempt = None, 0
    for attempt in range(cfg.retries + 1):
        result = measure(bench, series, threads, probe)
        shutil.copyfile(bench.path(f"{name}.txt"), bench.path(f"{name}.attempt{attempt}.txt"))
        if best is None or result.other < best.other:
            best, best_attempt = result, attempt
            bench.path(f"{name}.meta").write_text(result.meta())
        if result.other <= cfg.max_other_cpu:
            break
        if attempt < cfg.retries:
            say(f"other processes used {result.other:.2f} cores during {name}: again")
    shutil.copyfile(bench.path(f"{name}.attempt{best_attempt}.txt"), bench.path(f"{name}.txt"))
    return best


def measure(bench, series, threads, probe):
    """One measured run: a fresh event for holds, the quiet-machine wait,
    wrk, and the figures around it."""
    cfg = bench.cfg
    name = f"{series.name}-t{threads}"
    event = None
    if series.fresh_event:
        bench.hold_runs += 1
        event = new_event(bench, f"bench-{series.name}-{bench.hold_runs}{bench.run_tag}", series)
    probe.prepare_run(name)
    quiet = bench.cpu.wait_for_quiet()
    probe.before_run(name, event)
    before = client.status_counts(bench.node.base, series.route)
    store0 = store_stats(bench)
    checkpoints0 = bench.pg.checkpoints() if bench.pg else 0
    rss0 = bench.node.rss_kib()
    result = wrk.run(bench, name, threads, series.duration or cfg.duration, series.script,
                     script_args(bench, series, threads, event))
    rss1 = bench.node.rss_kib()
    after = client.status_counts(bench.node.base, series.route)
    write_counts(bench.path(f"{name}.before"), before)
    write_counts(bench.path(f"{name}.after"), after)
    extra = {}
    if series.hold_checked:
        extra = hold_check(bench, event, result, rss1 - rss0)
        if bench.pg:
            extra.update(store_diff(store0, store_stats(bench)))
            extra["checkpoints"] = bench.pg.checkpoints() - checkpoints0
    extra.update(probe.after_run(name, event, result))
    statuses = client.status_diff(before, after)
    shown = " ".join(f"{k}={v}" for k, v in extra.items())
    say(f"{name}: {result.ok_rate} 2xx/s; other processes {result.cpu['other']:.2f} cores;"
        f" statuses {statuses} {shown}".rstrip())
    return Result(series.name, series.label, threads, name, result, quiet, statuses, extra)


def write_counts(path, counts):
    path.write_text("".join(f"{s} {n}\n" for s, n in sorted(counts.items())))


def hold_check(bench, event, result, rss_delta_kib):
    """Every 201 must be a held seat: the event's own count against wrk's
    201s (answers in flight when wrk stopped are held but not counted)."""
    held = api.event_count(bench.node.base, event, "held")
    created = int(result["requests"] - result["non2xx"])
    if held < created or held > created + bench.cfg.connections:
        warn(f"{event} has {held} held seats but wrk counted {created} answers 201")
    if result["warnings"] > 0:
        warn("a wrk thread ran out of seats; make the event larger or the run shorter")
    return {"held": held, "created_201": created, "rss_delta_kib": rss_delta_kib}


def store_stats(bench):
    """The PostgreSQL store's group commit so far, summed over the measured
    nodes: (transactions, rows, seconds in commit)."""
    totals = [0.0, 0.0, 0.0]
    for node in bench.measured_nodes():
        samples = client.metrics(node.base)
        for i, series in enumerate(("rsv_store_batch_rows_count", "rsv_store_batch_rows_sum",
                                    "rsv_store_commit_seconds_sum")):
            totals[i] += client.value(samples, series)
    return totals


def store_diff(a, b):
    batches = int(b[0] - a[0])
    rows = (b[1] - a[1]) / batches if batches > 0 else 0
    commit_ms = 1000 * (b[2] - a[2]) / batches if batches > 0 else 0
    return {"batches": batches, "rows_per_batch": f"{rows:.1f}", "commit_ms": f"{commit_ms:.2f}"}


def run_once(bench, series, threads, args):
    """One measured run outside a series (no warm-up, no repeat): for runs
    whose state a second run would not start from (the queue runs)."""
    quiet = bench.cpu.wait_for_quiet()
    name = f"{series.name}-t{threads}"
    before = client.status_counts(bench.node.base, series.route)
    result = wrk.run(bench, name, threads, series.duration or bench.cfg.duration,
                     series.script, args)
    after = client.status_counts(bench.node.base, series.route)
    write_counts(bench.path(f"{name}.before"), before)
    write_counts(bench.path(f"{name}.after"), after)
    statuses = client.status_diff(before, after)
    say(f"{name}: {result.ok_rate} 2xx/s; other processes {result.cpu['other']:.2f} cores;"
        f" statuses {statuses}")
    kept = Result(series.name, series.label, threads, name, result, quiet, statuses, {})
    bench.path(f"{name}.meta").write_text(kept.meta())
    bench.record(kept)
    return kept
