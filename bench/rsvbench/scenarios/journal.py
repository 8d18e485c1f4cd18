"""The journal scenario (issue 16): durable holds with the tables written in
the group commit (`--pg-batch-encoding pipeline`) and with one journal row
per commit projected in the background (`journal`), and the same holds on
a memory-store node, in one run. A probe samples the projector's backlog
and lag once a second while wrk runs, then times how long the projector
needs to empty the journal after wrk stopped. Last, the journal paced to
about 10,000 holds/s (issue 16: p99 at that rate), with wrk's delay()
(bench/paced_holds.lua): the report's rate says what it reached; and the
memory store at the same pace, for the tail that is not the store's.
"""
import time

from .. import client
from ..procs import wait_for, warn
from ..series import SamplingProbe, add_note, holds, notes_part

MEMORY = ("--store", "memory")
PIPELINE = ("--pg-batch-encoding", "pipeline")
JOURNAL = ("--pg-batch-encoding", "journal")
# The projector in steps as small as the commits come (no interval), and
# gathering a second of rows per step.
JOURNAL_EAGER = JOURNAL + ("--pg-journal-step-interval-ms", "0")
JOURNAL_LAZY = JOURNAL + ("--pg-journal-step-interval-ms", "1000")
# How long the journal may take to empty after a run before it counts as
# not keeping up; the run itself lasts BENCH_DURATION.
DRAIN_TIMEOUT_S = 120
# The paced series' rate. Each connection waits between an answer and its
# next request: connections / (pace + latency) requests per second, with
# about 2 ms of latency at that rate on this machine (8,081 holds/s with
# 1 ms assumed, p50 2.24 ms, on 2026-12-07).
PACED_RATE = 10_000
LATENCY_MS = 2


def pace_ms(connections, rate=PACED_RATE):
    return max(1, round(connections * 1000 / rate) - LATENCY_MS)


def series(cfg):
    return (
        holds("journal-memory", "(b) POST /v1/holds, memory store (journal scenario)",
              node=MEMORY),
        holds("journal-pipeline", "(b) POST /v1/holds, durable, tables in the commit"
              " (journal scenario)", node=PIPELINE),
        holds("journal", "(b) POST /v1/holds, durable, journal row per commit"
              " (journal scenario)", node=JOURNAL, probe=JournalProbe),
        holds("journal-eager", "(b) POST /v1/holds, durable, journal, projector steps"
              " without interval (journal scenario)", node=JOURNAL_EAGER, probe=JournalProbe),
        holds("journal-lazy", "(b) POST /v1/holds, durable, journal, projector steps"
              " once a second (journal scenario)", node=JOURNAL_LAZY, probe=JournalProbe),
        holds("journal-paced", "(b) POST /v1/holds, durable, journal, paced to about"
              f" {PACED_RATE:,} holds/s (journal scenario)", node=JOURNAL,
              pace_ms=pace_ms(cfg.connections), probe=JournalProbe),
        # The same pace without durability: the part of the paced series'
        # tail that is the front end's and the load's, not the store's.
        holds("journal-memory-paced", "(b) POST /v1/holds, memory store, paced to about"
              f" {PACED_RATE:,} holds/s (journal scenario)", node=MEMORY,
              pace_ms=pace_ms(cfg.connections)),
    )


class JournalProbe(SamplingProbe):
    """rsv_journal_backlog_rows and rsv_journal_lag_seconds once a second
    during each run (NAME.journal.tsv), then the time until the projector
    has applied every row, and until the journal is empty (rows stay until
    their sections' snapshots cover them, up to --snapshot-seconds):
    whether the projector keeps up at full speed, and how far the tables
    trail."""

    def sample(self):
        samples = client.metrics(self.bench.node.base)
        return (client.value(samples, "rsv_journal_backlog_rows"),
                client.value(samples, "rsv_journal_lag_seconds"))

    def after_run(self, name, event, result):
        wrk_stopped = time.monotonic()
        samples = self.stop_sampling()
        left = [0]

        def projected():
            left[0] = self.bench.pg.count(
                "SELECT count(*) FROM journal j LEFT JOIN journal_cursors c ON c.reader ="
                " 'projector' AND c.stream = j.stream WHERE j.seq > coalesce(c.seq, 0)")
            return True if left[0] == 0 else None

        def empty():
            return True if self.bench.pg.count("SELECT count(*) FROM journal") == 0 else None
        drained = wait_for(projected, DRAIN_TIMEOUT_S, 0.05)
        drain_ms = round((time.monotonic() - wrk_stopped) * 1000) if drained else -1
        emptied = wait_for(empty, DRAIN_TIMEOUT_S, 0.05)
        empty_ms = round((time.monotonic() - wrk_stopped) * 1000) if emptied else -1
        self.bench.path(f"{name}.journal.tsv").write_text(
            "seconds\tbacklog_rows\tlag_seconds\n"
            + "".join(f"{t:.1f}\t{rows:g}\t{lag:g}\n" for t, rows, lag in samples))
        extra = {"backlog_max_rows": int(max((r for _, r, _ in samples), default=0)),
                 "lag_max_s": f"{max((s for _, _, s in samples), default=0):.2f}",
                 "drain_ms": drain_ms, "journal_left": left[0], "empty_ms": empty_ms}
        if not drained:
            warn(f"{name}: {left[0]} journal rows were still unprojected {DRAIN_TIMEOUT_S} s after wrk")
        note = (f"{name}: projector backlog at most {extra['backlog_max_rows']} rows, lag at"
                f" most {extra['lag_max_s']} s (sampled once a second); all projected"
                f" {drain_ms} ms and journal empty {empty_ms} ms after wrk stopped"
                + ("" if drained else f" (NOT within {DRAIN_TIMEOUT_S} s: {left[0]} rows left)"))
        add_note(self.bench, "journal", note)
        return extra


# Issue 16's targets that this run can check on its own: durable holds/s
# against the memory store's, and p99 at about PACED_RATE holds/s.
MEMORY_RATIO_TARGET = 0.6
PACED_P99_TARGET_MS = 20


def cpu_per_hold_us(run):
    """The machine's CPU per hold in a run (node, wrk and PostgreSQL; other
    processes left out), in microseconds, or None without a rate."""
    if not run or not run.rate:
        return None
    cores = sum(run.wrk.cpu.get(key, 0.0) for key in ("server", "load", "postgres"))
    return cores / run.rate * 1e6


def targets(bench):
    """Lines that hold this run's figures against issue 16's targets. Each
    ratio comes with the CPU a hold cost the machine in both runs: their
    quotient is the ratio the two would reach on full cores, so a ratio
    below it was held back by latency, not by CPU."""
    lines = []
    memory = bench.best("journal-memory")
    memory_us = cpu_per_hold_us(memory)
    for name in ("journal-pipeline", "journal", "journal-eager", "journal-lazy"):
        run = bench.best(name)
        if memory and run and memory.rate:
            ratio = run.rate / memory.rate
            verdict = "met" if ratio >= MEMORY_RATIO_TARGET else "missed"
            run_us = cpu_per_hold_us(run)
            cpu = (f"; CPU per hold {run_us:.0f} us against {memory_us:.0f} us, at most"
                   f" {memory_us / run_us:.2f}x on full cores" if run_us and memory_us else "")
            lines.append(f"{name}: {run.rate} holds/s, {ratio:.3f}x the memory store's"
                         f" {memory.rate} (target >= {MEMORY_RATIO_TARGET}x: {verdict}){cpu}")
    paced = bench.best("journal-paced")
    if paced:
        p99_ms = float(paced.wrk["p99_us"]) / 1000
        verdict = "met" if p99_ms <= PACED_P99_TARGET_MS else "missed"
        lines.append(f"journal-paced: p99 {p99_ms:.2f} ms at {paced.rate} holds/s (target <="
                     f" {PACED_P99_TARGET_MS} ms at about {PACED_RATE:,}/s: {verdict})")
    return lines


def report(bench):
    return notes_part(
        bench, "journal", "Journal: the projector at full speed",
        "Samples of rsv_journal_backlog_rows and rsv_journal_lag_seconds once a second in"
        " NAME.journal.tsv; then the journal is polled every 50 ms until empty. First, the"
        f" run against issue 16's targets ({bench.cfg.connections} connections).",
        first=targets(bench))
