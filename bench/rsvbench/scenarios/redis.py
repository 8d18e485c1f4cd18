"""The redis scenario's measurements beyond wrk's, its queue runs and its
part of the report. Its holds series are rows of the table
(scenarios/__init__.py); a local redis-server runs for it.

Rate limits are set so high that nothing is refused: the ratios are the
cost of the check itself. The queue runs need many customers: their session
tokens are minted here with the run's token secret (HMAC-SHA256 in the
server's format) for made-up customer ids, so they need no registration.
"""
import base64
import hashlib
import hmac
import subprocess
import time

from .. import api, client
from ..procs import say, warn
from ..series import Probe, Series, run_once

REDIS_ONLY = ("--redis-url", "{redis}", "--read-model", "off")
# Limits no run reaches: what is measured is the check, not a refusal.
LIMITS = REDIS_ONLY + ("--rate-limit-customer", "1000000000",
                       "--rate-limit-address", "1000000000")
NO_LEASES = LIMITS + ("--rate-limit-lease-max", "0")
READ_MODEL = ("--redis-url", "{redis}", "--read-model", "publish")
JOIN = Series("redis-join", "POST /v1/events/{id}/queue, new customers (redis scenario)",
              "queue.lua", "POST /v1/events/{id}/queue")
POLL = Series("redis-poll", "GET /v1/queue/{ticket}, position polls (redis scenario)",
              "queue.lua", "GET /v1/queue/{ticket}")
TOKEN_LIFETIME_S = 3 * 3600
LIMITS_TARGET = 0.85


class LimiterProbe(Probe):
    """After the series: how many checks the limiter's batching and leases
    kept from Redis (warm-up and runs)."""

    def after_series(self):
        samples = client.metrics(self.bench.node.base)
        checks = sum(v for s, v in samples if s.startswith("rsv_rate_limit_requests_total{")
                     and ('outcome="allowed"' in s or 'outcome="refused"' in s))
        failed_open = next((v for s, v in samples if s.startswith(
            "rsv_rate_limit_requests_total{") and 'outcome="fail_open"' in s), 0)
        leased = client.value(samples, "rsv_rate_limit_leased_total")
        calls = client.value(samples, "rsv_rate_limit_calls_total")
        per_call = (checks - leased) / calls if calls > 0 else 0
        text = (f"{int(checks)} checks, {int(leased)} of them from leases, {int(calls)} script"
                f" calls ({per_call:.1f} checks per call), {int(failed_open)} failed open")
        self.bench.notes[f"{self.series.name} batching"] = text
        say(f"{self.series.name}: {text}")


class StalenessProbe(Probe):
    """The read model's staleness (rsv_read_model_staleness_seconds) over
    the series: p50 and p99 as the upper bounds of their buckets, in ms."""

    def before_series(self):
        self.before = self._buckets("staleness.before")

    def after_series(self):
        before = dict(self.before)
        counts = [(le, n - before.get(le, 0)) for le, n in self._buckets("staleness.after")]
        total = counts[-1][1] if counts else 0
        if total <= 0:
            text = "samples=0"
        else:
            def bound(p):
                le = next(le for le, n in counts if n >= p * total)
                return "inf" if le == "+Inf" else f"{float(le) * 1000:g}"
            text = (f"staleness_p50_ms_le={bound(0.5)} staleness_p99_ms_le={bound(0.99)}"
                    f" samples={int(total)}")
        self.bench.notes["staleness"] = text
        say(f"{self.series.name}: {text}")

    def _buckets(self, file):
        """The histogram's buckets now, also written to file ("LE COUNT")."""
        found = client.buckets(client.metrics(self.bench.node.base),
                               "rsv_read_model_staleness_seconds")
        self.bench.path(file).write_text("".join(f"{le} {n:g}\n" for le, n in found))
        return found


def queue_runs(bench):
    """The waiting room: one event admitting one customer a second (so the
    queue stays), joins of new customers, then position polls."""
    cfg = bench.cfg
    bench.restart_main("server-redis-queue.log", REDIS_ONLY)
    threads = cfg.threads[-1]
    event = f"bench-queue{bench.run_tag}"
    api.post_event(bench, bench.node.base, {
        "id": event, "name": "Queue", "starts_at": "2030-01-01T20:00:00Z",
        "waiting_room": {"enabled": True, "admit_per_second": 1},
        "sections": [{"id": "s1", "name": "S", "price_cents": 100,
                      "rows": [{"label": "A", "seats": 10}]}]})
    tokens = bench.path("queue-tokens.txt")
    mint_queue_tokens(bench.token_secret, event, cfg.queue_customers, tokens)
    join = run_once(bench, JOIN, threads, ["join", tokens, event, threads])
    joined = int(bench.redis.cli("ZCARD", f"rsv:wr:{{{event}}}:q") or 0)
    say(f"redis-join: {joined} customers queued")
    polled = cfg.queue_polled
    if joined < polled:
        # Each wrk thread joined a prefix of its share: nine tenths of what
        # joined are (about) the first customers of the file.
        polled = joined * 9 // 10
        warn(f"only {joined} joined; polling the first {polled} customers")
    if join.wrk["warnings"] > 0:
        warn(f"the join run used up its {cfg.queue_customers} customers (repeat joins);"
             " raise BENCH_QUEUE_CUSTOMERS")
    run_once(bench, POLL, threads, ["poll", tokens, event, threads, polled])
    bench.notes["queue polled"] = polled
    bench.notes["queue joined"] = joined


def mint_queue_tokens(secret, event, count, path):
    """"<session token> <ticket>" lines for made-up customers
    cus_bench00000000...: tokens as the server signs them, tickets as it
    names them (bench/queue.lua reads them)."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    expires = int(time.time()) + TOKEN_LIFETIME_S
    # The node's token format (http/auth.hpp): v2.<key id>.<customer>.<expiry>.<mac>
    key_id = b64(hmac.new(secret.encode(), b"rsv key id", hashlib.sha256).digest())[:8]
    with path.open("w") as out:
        for i in range(count):
            customer = f"cus_bench{i:08x}"
            payload = f"v2.{key_id}.{customer}.{expires}"
            mac = b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
            ticket = "qtk_" + b64(f"{event}/{customer}".encode())
            out.write(f"{payload}.{mac} {ticket}\n")


def report(bench):
    """The part "Redis" of report.md."""
    off, on = bench.best("redis-limits-off"), bench.best("redis-limits-on")
    if not off or not on:
        return []
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    version = next((w[2:] for w in version.split() if w.startswith("v=")), "?")
    lines = ["## Redis", "", f"redis-server {version} on loopback, in memory.", "",
             "| | holds/s (201) | p50 | p99 |", "|---|---|---|---|"]
    for name in ("redis-limits-off", "redis-limits-on", "redis-limits-exact",
                 "redis-readmodel"):
        r = bench.best(name)
        if r:
            lines.append(f"| {name} | {r.rate} | {r.wrk.ms('p50_us')} | {r.wrk.ms('p99_us')} |")
    lines.append("")
    ratio = on.rate / off.rate if off.rate > 0 else 0
    lines.append(f"Rate limits on / off: {on.rate} / {off.rate} = {ratio:.3f} (target: at least"
                 f" {LIMITS_TARGET}, {'met' if ratio >= LIMITS_TARGET else '**missed**'}).")
    notes = bench.notes
    if "redis-limits-on batching" in notes:
        lines.append(f"Rate limits on (warm-up and runs): {notes['redis-limits-on batching']}.")
    exact = bench.best("redis-limits-exact")
    if exact:
        ratio = exact.rate / off.rate if off.rate > 0 else 0
        lines.append("Rate limits on without leases (--rate-limit-lease-max 0: every request"
                     " counted in Redis, as for callers new in their window) / off:"
                     f" {exact.rate} / {off.rate} = {ratio:.3f}.")
        lines.append("Without leases (warm-up and runs):"
                     f" {notes.get('redis-limits-exact batching', '')}.")
    if "staleness" in notes:
        lines.append("Read model staleness (acknowledgement to Redis; bucket bounds):"
                     f" {notes['staleness']} (target p99 < 100 ms).")
    join, poll = bench.best("redis-join"), bench.best("redis-poll")
    if join:
        lines.append(f"Queue joins of new customers: {join.rate}/s;"
                     f" {notes.get('queue joined')} queued after the run.")
    if poll:
        lines.append(f"Position polls with {notes.get('queue joined')} queued, of"
                     f" {notes.get('queue polled')} tickets: {poll.rate}/s"
                     f" (non-2xx {int(poll.wrk['non2xx'])}).")
    return lines + [""]
