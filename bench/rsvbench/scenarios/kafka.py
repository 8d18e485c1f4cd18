"""The kafka scenario: durable holds with the outbox relayed to a local
rsv-kafka-broker and without, in this bench run, on the same PostgreSQL.

Runs without Kafka alternate with runs with it by round (off, on | on, off
| off, on ...) and one without closes, so that a slow spell of the machine
weighs on both alike; the ratio is of the means. Around every run with
Kafka: the relay's delivery histogram, its lag once a second, the drain
time and the hold.created records in the topic against the holds
PostgreSQL committed (bench/README.md, "Kafka").
"""
import re
import subprocess
import threading
import time
from functools import partial

from .. import client
from ..node import KAFKA_PARTITIONS, KAFKA_TOPIC
from ..procs import warn, wait_for
from ..series import Probe, holds
from ..wrk import WRK_SLACK_S

KCAT_QUERY_TIMEOUT_S = 30
KCAT_CONSUME_TIMEOUT_S = 120
OUTBOX_POLL_S = 0.05
LAG_SAMPLE_S = 1
TARGET_RATIO = 0.90


def kafka_flags(linger):
    return ("--kafka-brokers", "{kafka}", "--kafka-topic", KAFKA_TOPIC,
            "--kafka-linger-ms", str(linger))


def configs(cfg):
    """[(config, linger or None)] in the order run: off-r1, linger5-r1,
    off-r2 for one round."""
    order = []
    for r in range(1, cfg.kafka_rounds + 1):
        off = [(f"off-r{r}", None)]
        on = [(f"linger{linger}-r{r}", linger) for linger in cfg.kafka_lingers]
        order += off + on if r % 2 == 1 else on + off
    if cfg.kafka_rounds % 2 == 1:
        order.append((f"off-r{cfg.kafka_rounds + 1}", None))
    return order


def series(cfg):
    """The scenario's rows: a fresh node for each run of configs(cfg)."""
    rows = []
    for config, linger in configs(cfg):
        round_ = config.rsplit("-", 1)[1]
        if linger is None:
            label = f"(b) POST /v1/holds, durable, Kafka off, {round_} (kafka scenario)"
        else:
            label = (f"(b) POST /v1/holds, durable, Kafka on, linger.ms {linger}, {round_}"
                     " (kafka scenario)")
        rows.append(holds(f"kafka-{config}", label,
                          node=() if linger is None else kafka_flags(linger),
                          probe=partial(KafkaProbe, linger=linger)))
    return tuple(rows)


class KafkaProbe(Probe):
    """The relay's figures around each run; the lag sampler also runs
    without Kafka, so that both cost the same."""

    def __init__(self, bench, series_row, linger):
        super().__init__(bench, series_row)
        self.linger = linger
        self.sampler = None
        self.relay0 = self.offsets = None

    def prepare_run(self, name):
        # What the warm-up or the previous run left is relayed first.
        if self.linger is not None:
            drain_ms, left = wait_outbox_empty(self.bench, time.time())
            if drain_ms < 0:
                warn(f"the outbox still has {left} rows before {name}")

    def before_run(self, name, event):
        if self.linger is not None:
            self.relay0 = relay_metrics(self.bench.node.base)
            write_relay(self.bench.path(f"{name}.relay0"), self.relay0)
            self.offsets = topic_ends(self.bench)
            self.bench.path(f"{name}.offsets").write_text(
                "".join(f"{p} {o}\n" for p, o in self.offsets))
        self.sampler = LagSampler(self.bench, self.bench.path(f"{name}.lag"))

    def after_run(self, name, event, result):
        samples = self.sampler.stop()
        if self.linger is None:
            return {"kafka": "off"}
        bench = self.bench
        drain_ms, _ = wait_outbox_empty(bench, result.end_s)
        relay1 = relay_metrics(bench.node.base)
        write_relay(bench.path(f"{name}.relay1"), relay1)
        relay = relay_diff(self.relay0, relay1)
        during = [s for s in samples if s[0] <= result.end_s]
        topic = topic_holds(bench, event, self.offsets)
        committed = bench.pg.count(f"SELECT count(*) FROM holds h JOIN sections s"
                                   f" USING (section_no) WHERE s.event_id = '{event}'")
        left = outbox_rows(bench)
        extra = {"kafka": "on", "linger_ms": self.linger, **relay,
                 "lag_rows_max": int(max((s[1] for s in during), default=0)),
                 "lag_seconds_max": f"{max((s[2] for s in during), default=0):g}",
                 "drain_ms": drain_ms, "topic_holds": topic, "committed_holds": committed,
                 "outbox_left": left, "topic_check": "ok"}
        if topic == "failed" or topic < committed or left != 0:
            warn(f"{name}: the topic has {topic} hold.created records of {event},"
                 f" PostgreSQL {committed} committed holds of it; {left} outbox rows left")
            extra["topic_check"] = "FAILED"
        return extra


class LagSampler:
    """Reads rsv_relay_lag{unit="rows"} and {unit="seconds"} from /metrics
    once a second on a thread of its own (the node refreshes them about
    once a second): "TIME_US ROWS SECONDS" lines to a file."""

    def __init__(self, bench, path):
        self.base = bench.node.base
        self.path = path
        self.samples = []
        self.stopped = threading.Event()
        # Bounded even if stop() never came: a run lasts at most this long.
        self.max_samples = bench.cfg.duration + WRK_SLACK_S + 60
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with self.path.open("w") as f:
            for _ in range(self.max_samples):
                at = time.time()
                samples = client.metrics(self.base)
                rows = client.value(samples, 'rsv_relay_lag{unit="rows"}')
                seconds = client.value(samples, 'rsv_relay_lag{unit="seconds"}')
                self.samples.append((at, rows, seconds))
                f.write(f"{int(at * 1e6)} {rows:g} {seconds:g}\n")
                f.flush()
                if self.stopped.wait(LAG_SAMPLE_S):
                    return

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=5)
        return list(self.samples)


def outbox_rows(bench):
    # With the journal encoding its rows are the outbox: those with records
    # wait for the relay until its cursor passes them (they stay a while
    # longer, for their sections' snapshots).
    return bench.pg.count("SELECT (SELECT count(*) FROM outbox)"
                          " + (SELECT count(*) FROM journal j LEFT JOIN journal_cursors r"
                          " ON r.reader = 'relay' AND r.stream = j.stream"
                          " WHERE j.records > 0 AND j.seq > coalesce(r.seq, 0))")


def wait_outbox_empty(bench, started_s):
    """Polls the outbox every 50 ms until it is empty, at most
    BENCH_KAFKA_DRAIN_TIMEOUT s from started_s: (ms from started_s until
    empty, or -1; rows left)."""
    left = [0]

    def empty():
        left[0] = outbox_rows(bench)
        if left[0] == 0:
            return round((time.time() - started_s) * 1000)
        return -1 if time.time() - started_s >= bench.cfg.kafka_drain_timeout else None
    timeout_s = bench.cfg.kafka_drain_timeout + 1
    drain_ms = wait_for(empty, timeout_s, OUTBOX_POLL_S)
    return (-1 if drain_ms is None else drain_ms), left[0]


def relay_metrics(base):
    """The relay's delivery histogram [(le, count)] and its counters."""
    samples = client.metrics(base)
    return {"buckets": client.buckets(samples, "rsv_relay_delivery_seconds"),
            "records": client.value(samples, "rsv_relay_records_total"),
            "failed": client.value(samples, "rsv_relay_failed_rounds_total")}


def write_relay(path, relay):
    """NAME.relay0 and .relay1: "LE COUNT" lines, then the counters."""
    path.write_text("".join(f"{le} {n:g}\n" for le, n in relay["buckets"])
                    + f"records {relay['records']:g}\nfailed {relay['failed']:g}\n")


def relay_diff(a, b):
    """Rows delivered between two relay_metrics and their p50 and p99, each
    the upper bound of the bucket it falls in ("none" without rows)."""
    before = dict(a["buckets"])
    counts = [(le, count - before.get(le, 0)) for le, count in b["buckets"]]
    rows = counts[-1][1] if counts else 0

    def bound(p):
        if rows == 0:
            return "none"
        for i, (le, count) in enumerate(counts):
            if count >= p * rows:
                return f">{counts[i - 1][0]}" if le == "+Inf" else le
        return "?"
    return {"relay_rows": int(rows), "relay_p50": bound(0.5), "relay_p99": bound(0.99),
            "relay_records": int(b["records"] - a["records"]),
            "failed_rounds": int(b["failed"] - a["failed"])}


def topic_ends(bench):
    """[(partition, end offset)] of the events topic (kcat -Q)."""
    argv = ["kcat", "-Q", "-b", bench.broker.bootstrap]
    for p in range(KAFKA_PARTITIONS):
        argv += ["-t", f"{KAFKA_TOPIC}:{p}:-1"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=KCAT_QUERY_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return []
    bench.path("kcat-query.log").write_text(done.stderr)
    ends = []
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "offset":
            ends.append((int(words[1].strip("[]")), int(words[3])))
    return ends


def topic_holds(bench, event, offsets):
    """Distinct hold.created records (header id) of the event in the topic
    from the offsets on (kcat reads each partition to its end and stops);
    "failed" when a kcat failed or timed out."""
    if len(offsets) != KAFKA_PARTITIONS:
        return "failed"
    ids = set()
    with bench.path("kcat-consume.log").open("a") as log:
        for partition, offset in offsets:
            argv = ["kcat", "-C", "-b", bench.broker.bootstrap, "-t", KAFKA_TOPIC,
                    "-p", str(partition), "-o", str(offset), "-e", "-q", "-f", "%k %h\n"]
            try:
                done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                      timeout=KCAT_CONSUME_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                return "failed"
            if done.returncode != 0:
                return "failed"
            for line in done.stdout.splitlines():
                words = line.split()
                if (len(words) >= 2 and words[0].startswith(f"{event}/")
                        and re.search(r":hold\.created$", words[1])):
                    ids.add(words[1])
    return len(ids)


def report(bench):
    """The part "Change events (Kafka outbox)" of report.md."""
    cfg = bench.cfg
    kept = [(config, linger, bench.best(f"kafka-{config}")) for config, linger in configs(cfg)]
    kept = [(config, linger, r) for config, linger, r in kept if r]
    lines = ["## Change events (Kafka outbox)", "", " ".join((
        f"Durable holds ({cfg.connections} connections, the holds method) on the same",
        "PostgreSQL, in this run: the node started again for each run, without Kafka or with",
        f"--kafka-brokers (rsv-kafka-broker on 127.0.0.1, 1 broker, topic {KAFKA_TOPIC} with",
        f"{KAFKA_PARTITIONS} partitions) per linger.ms, alternating in {cfg.kafka_rounds}",
        "round(s), with a run without Kafka last. Relay delivery: rsv_relay_delivery_seconds",
        "per outbox row (commit to Kafka's ack of its last record) over the measured run and",
        "its drain, a percentile being the upper bound of its bucket. Lag: the maximum of",
        "rsv_relay_lag sampled every second during the run. Drain: wrk's end to an empty",
        "outbox (polled every 50 ms). Topic: distinct hold.created records of the run's event",
        "(kcat) against the holds PostgreSQL committed for it.")), "",
        "| Kafka | holds/s (wrk -t) | p50 | p99 | max | CPU node / wrk / postgres / broker /"
        " other | node µs per hold | PostgreSQL µs per hold | commits: rows each, ms each |"
        " relay delivery p50 / p99 (rows) | max lag rows / s | drain | topic: hold.created /"
        " committed, outbox left | idle other CPU, load1 before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(cfg, config, linger, r) for config, linger, r in kept]
    lines += [""] + _ratios(cfg, kept)
    every = "; ".join(f"{r.series[len('kafka-'):]} -t{r.threads} {r.rate}"
                      for r in bench.results if r.series.startswith("kafka-"))
    lines.append(f"- every kept run (holds/s): {every}")
    best = _best_linger(cfg, kept)
    if len(cfg.kafka_lingers) > 1 and best:
        lines.append(f"- the best linger.ms by mean holds/s in this run: **{best[0]}**"
                     f" ({best[1]} holds/s)")
    return lines + [""]


def _row(cfg, config, linger, r):
    w, x, c = r.wrk, r.extra, r.wrk.cpu
    per_hold = {k: f"{1e6 * c[k] / r.rate:.1f}" if r.rate > 0 else "0.0"
                for k in ("server", "postgres")}
    round_ = config.rsplit("-", 1)[1]
    cells = [f"off ({round_})" if linger is None else f"linger.ms {linger} ({round_})",
             f"{r.rate} (-t{r.threads})", w.ms("p50_us"), w.ms("p99_us"), w.ms("max_us"),
             " / ".join(f"{c[k]:.2f}" for k in ("server", "load", "postgres", "broker", "other")),
             per_hold["server"], per_hold["postgres"],
             f"{x.get('batches')} commits: {x.get('rows_per_batch')}, {x.get('commit_ms')} ms"]
    if linger is None:
        cells += ["", "", "", ""]
    else:
        drain = (f"**not empty after {cfg.kafka_drain_timeout} s**" if x["drain_ms"] == -1
                 else f"{x['drain_ms']} ms")
        topic = f"{x['topic_holds']} / {x['committed_holds']}, {x['outbox_left']}"
        if x["topic_check"] != "ok":
            topic += " **check FAILED**"
        cells += [f"≤ {x['relay_p50']} s / ≤ {x['relay_p99']} s ({x['relay_rows']})",
                  f"{x['lag_rows_max']} / {x['lag_seconds_max']} s", drain, topic]
    cells.append(f"{r.quiet[0]} cores, {r.quiet[1]}")
    return "| " + " | ".join(cells) + " |"


def _means(kept):
    """{linger or None: [rates]} of the kept runs."""
    rates = {}
    for _, linger, r in kept:
        rates.setdefault(linger, []).append(r.rate)
    return rates


def _ratios(cfg, kept):
    rates = _means(kept)
    off = rates.get(None, [])
    if not off or sum(off) == 0:
        return []
    lines = []
    for linger in cfg.kafka_lingers:
        on = rates.get(linger)
        if not on:
            continue
        mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
        ratio = mean_on / mean_off
        verdict = "met" if ratio >= TARGET_RATIO else "**missed**"
        lines.append(f"- with Kafka (linger.ms {linger}) / without, means of the kept runs"
                     f" ({len(on)} with, {len(off)} without): {int(mean_on)} / {int(mean_off)}"
                     f" holds/s = **{ratio:.3f}** (target >= {TARGET_RATIO:.2f}: {verdict})")
    return lines


def _best_linger(cfg, kept):
    """(linger, mean holds/s) of the linger with the highest mean, or None."""
    rates = _means(kept)
    best = None
    for linger in cfg.kafka_lingers:
        on = rates.get(linger)
        if on and (best is None or sum(on) // len(on) > best[1]):
            best = (linger, sum(on) // len(on))
    return best

