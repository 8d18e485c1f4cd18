"""The seatmaps scenario: scenario (b)'s holds on a fresh event while four
more connections read the seat map of its first section without pause
(a second wrk), plain and with gzip, beside the same holds with no reader.
It tells whether anonymous seat-map readers hold up writes (issue 19: four
readers of a 1,000,000-seat map took hold latency from 2 ms to 1.1 s when
the map was rendered on the section's actor). Meant for one big section:
BENCH_SECTIONS=1 BENCH_ROWS=1000 BENCH_SEATS_PER_ROW=1000 (bench/README.md).
"""
import re
import signal
from subprocess import STDOUT

from ..series import Probe, add_note, holds, notes_part

READERS = 4


def series():
    return (
        holds("seatmaps-none", "(b) POST /v1/holds, no seat-map reader (seatmaps scenario)"),
        holds("seatmaps-plain", f"(b) POST /v1/holds, {READERS} seat-map readers (seatmaps"
              " scenario)", probe=PlainReaders),
        holds("seatmaps-gzip", f"(b) POST /v1/holds, {READERS} seat-map readers asking for gzip"
              " (seatmaps scenario)", probe=GzipReaders),
    )


class PlainReaders(Probe):
    """A second wrk, READERS connections on one thread, reading
    /v1/events/EVENT/sections/s1/seats for the run and a little longer;
    stopped with SIGINT so that it prints its summary (NAME.readers.txt)."""
    accept_gzip = False

    def before_run(self, name, event):
        cfg = self.bench.cfg
        argv = ["wrk", "-t", "1", "-c", str(READERS), "-d", f"{cfg.duration + 10}s",
                "--timeout", "30s"]
        if self.accept_gzip:
            argv += ["-H", "Accept-Encoding: gzip"]
        argv.append(f"{self.bench.node.base}/v1/events/{event}/sections/s1/seats")
        self.out = self.bench.path(f"{name}.readers.txt")
        self.proc = self.bench.procs.start("tool", argv, stdout=self.out,
                                           stderr=STDOUT)

    def after_run(self, name, event, result):
        self.bench.procs.stop(self.proc, signal.SIGINT)
        text = self.out.read_text(errors="replace")
        rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
        volume = re.search(r"Transfer/sec:\s+([0-9.]+\S+)", text)
        maps = f"{float(rate.group(1)):.1f}" if rate else "?"
        extra = {"maps_per_s": maps, "map_bytes_per_s": volume.group(1) if volume else "?"}
        w = result
        note = (f"{name}: holds p50 {w.ms('p50_us')}, p99 {w.ms('p99_us')}, max {w.ms('max_us')}"
                f" at {w.ok_rate} holds/s; readers got {maps} maps/s"
                f" ({extra['map_bytes_per_s']}/s)")
        add_note(self.bench, "seatmaps", note)
        return extra


class GzipReaders(PlainReaders):
    accept_gzip = True


def report(bench):
    base = bench.best("seatmaps-none")
    first = []
    if base:
        w = base.wrk
        first.append(f"seatmaps-none-t{base.threads}: holds p50 {w.ms('p50_us')}, p99"
                     f" {w.ms('p99_us')}, max {w.ms('max_us')} at {base.rate} holds/s,"
                     " no reader")
    return notes_part(
        bench, "seatmaps", "Seat maps under readers",
        f"Holds on one event while {READERS} connections read the seat map of its first"
        " section without pause (a second wrk; NAME.readers.txt).", first)
