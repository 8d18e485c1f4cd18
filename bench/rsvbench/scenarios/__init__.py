"""The scenarios, one row each, and how a row is run.

A row names what it measures, what it needs (PostgreSQL, a local
redis-server or rsv-kafka-broker, packages) and its wrk series: for each,
the script, the route whose answers the node counts, and the flags of the
node it runs against (None: the node as it runs). Most scenarios are their
rows alone; a few add a step of their own (pgbench, recovery, the queue
runs, the cluster's two nodes). bench/README.md: "Adding a scenario".
"""
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

from .. import node as nodes
from ..procs import fail, say
from ..series import Series, holds, run_series
from . import churn, journal, kafka, pgbench, profile, recovery, redis, seatmaps, two_nodes


@dataclass(frozen=True)
class Scenario:
    """One row of the table: a scenario of BENCH_SCENARIOS, or a run
    BENCH_PROFILE samples. Run by `run` (or `run_profile`)."""
    name: str                         # for BENCH_SCENARIOS / BENCH_PROFILE
    what: str                         # what it tells
    series: tuple = ()                # wrk series, run in order
    postgres_only: bool = False       # needs RSV_STORE=postgres
    starts: tuple = ()                # "redis" and/or "broker", for its time
    broker_topics: tuple = ()         # more broker topics ("NAME:PARTITIONS")
    setup: Optional[Callable] = None  # setup(bench), before the series
    then: Optional[Callable] = None   # then(bench), after the series
    packages: tuple = ()              # (command, Debian package) it needs

    def changes_node(self):
        return self.setup is not None or any(s.node is not None for s in self.series)


def scenarios(cfg):
    """The scenarios of BENCH_SCENARIOS, by name."""
    durable = ", durable" if cfg.postgres else ""
    rows = (
        Scenario("health", "the HTTP ceiling of this machine: no actor", series=(
            Series("health", "(a) GET /health", "health.lua", "GET /health"),)),
        Scenario("holds", "the booking path (durable with PostgreSQL)", series=(
            holds("holds", f"(b) POST /v1/holds{durable} (201 only in 2xx/s)"),)),
        Scenario("reads", "event reads: directory and counters as JSON", series=(
            Series("reads", "(c) GET /v1/events/{id}", "reads.lua", "GET /v1/events/{id}",
                   args=("{main_event}",)),)),
        Scenario("redis", "holds with Redis rate limits off, on, on without leases, with the"
                 " read model; waiting-room joins and polls",
                 starts=("redis",), then=redis.queue_runs, series=(
                     holds("redis-limits-off", "(b) POST /v1/holds, Redis, rate limits off"
                           " (redis scenario)", node=redis.REDIS_ONLY),
                     holds("redis-limits-on", "(b) POST /v1/holds, Redis, rate limits on"
                           " (redis scenario)", node=redis.LIMITS, probe=redis.LimiterProbe),
                     holds("redis-limits-exact", "(b) POST /v1/holds, Redis, rate limits on,"
                           " no leases (redis scenario)", node=redis.NO_LEASES,
                           probe=redis.LimiterProbe),
                     holds("redis-readmodel", "(b) POST /v1/holds, Redis read model publishing"
                           " (redis scenario)", node=redis.READ_MODEL,
                           probe=redis.StalenessProbe))),
        Scenario("churn", "holds released at once: memory with ended holds kept and"
                 " forgotten (RSS and rsv_hold_records once a second)",
                 series=churn.series()),
        Scenario("soak", "holds released at once for BENCH_SOAK_DURATION (an hour): whether"
                 " memory levels off under churn at full speed (issue 16)",
                 series=churn.soak_series(cfg)),
        Scenario("seatmaps", "holds with and without 4 seat-map readers of the event's first"
                 " section, plain and gzip (for one big section: see bench/README.md)",
                 series=seatmaps.series()),
        Scenario("pgbench", "pgbench holding one random seat per transaction, the node idle",
                 postgres_only=True, then=pgbench.run, packages=(("pgbench", "postgresql"),)),
        Scenario("recovery", "kill -9 and restart with 100,000 active holds: time to ready",
                 postgres_only=True, then=recovery.run),
        Scenario("journal", "holds on a memory node, durable with the tables in the commit,"
                 " and durable with one journal row per commit (projector backlog and lag"
                 " once a second, time to empty the journal), and the journal paced to"
                 " about 10,000 holds/s for its latencies at that rate",
                 postgres_only=True, series=journal.series(cfg)),
        Scenario("kafka", "durable holds with the outbox relayed to Kafka and without",
                 postgres_only=True, starts=("broker",), series=kafka.series(cfg),
                 packages=(("kcat", "kcat"),)),
        Scenario("cluster", "two --cluster nodes: holds at the owner and forwarded",
                 postgres_only=True, starts=("broker",),
                 broker_topics=(two_nodes.owners_topic(cfg),), setup=two_nodes.start_nodes,
                 series=(holds("cluster-owner", "cluster-owner",
                               probe=partial(two_nodes.ClusterTarget, owner=True)),
                         holds("cluster-forwarded", "cluster-forwarded",
                               probe=partial(two_nodes.ClusterTarget, owner=False)))),
        Scenario("none", "nothing: only the profiles of BENCH_PROFILE"),
    )
    return {row.name: row for row in rows}


def profiles(cfg):
    """The runs BENCH_PROFILE can sample with perf, by name: one series each."""
    rows = (
        Scenario("health", "GET /health", series=(
            Series("health", "(a) GET /health", "health.lua", "GET /health"),)),
        Scenario("holds", "holds on a fresh event", series=(
            holds("holds", "(b) POST /v1/holds"),)),
        Scenario("reads", "event reads", series=(
            Series("reads", "(c) GET /v1/events/{id}", "reads.lua", "GET /v1/events/{id}",
                   args=("{main_event}",)),)),
        Scenario("kafka", "holds relayed to the local broker", postgres_only=True,
                 starts=("broker",),
                 series=(holds("kafka", "(b) POST /v1/holds, Kafka on",
                               node=kafka.kafka_flags(cfg.kafka_lingers[0])),)),
        Scenario("limits", "holds with Redis rate limits on", starts=("redis",),
                 series=(holds("limits", "(b) POST /v1/holds, Redis, rate limits on",
                               node=redis.LIMITS),)),
    )
    return {row.name: row for row in rows}


def check(cfg):
    """Fails on a name BENCH_SCENARIOS or BENCH_PROFILE does not know, or a
    scenario the store cannot run."""
    for names, table, variable in ((cfg.scenarios, scenarios(cfg), "BENCH_SCENARIOS"),
                                   (cfg.profile, profiles(cfg), "BENCH_PROFILE")):
        for name in names:
            if name not in table:
                known = "".join(f"\n  {row.name}: {row.what}" for row in table.values())
                fail(f"{variable}: unknown scenario {name}; known:{known}")
            if table[name].postgres_only and not cfg.postgres:
                fail(f"{variable}: {name} needs RSV_STORE=postgres (see bench/README.md)")


def wanted(cfg):
    """The rows that will run: scenarios, then profiles."""
    return ([scenarios(cfg)[n] for n in cfg.scenarios]
            + [profiles(cfg)[n] for n in cfg.profile])


def run(bench, scenario):
    """Its services, its setup, its series (a fresh main node for each that
    names flags), its own step; then the plain node again, then the
    services stop."""
    with_services(bench, scenario, lambda: _run(bench, scenario))


def _run(bench, scenario):
    if scenario.setup:
        scenario.setup(bench)
    for series in scenario.series:
        if series.node is not None:
            bench.restart_main(f"server-{series.name}.log", series.node)
            bench.say_node(series.name)
        run_series(bench, series)
    if scenario.then:
        scenario.then(bench)


def run_profile(bench, name):
    scenario = profiles(bench.cfg)[name]
    with_services(bench, scenario, lambda: profile.run(bench, name, scenario),
                  after=f"profile-{name}")


def with_services(bench, scenario, body, after=None):
    """Starts what the scenario needs, runs body, and leaves the plain
    node running without them, as the next scenario expects."""
    if "redis" in scenario.starts:
        bench.redis = nodes.Redis(bench)
        say(f"{scenario.name}: {bench.redis.describe()}")
    if "broker" in scenario.starts:
        bench.broker = nodes.Broker(bench, scenario.broker_topics)
        say(f"{scenario.name}: {bench.broker.describe()}, topic {nodes.KAFKA_TOPIC},"
            f" {nodes.KAFKA_PARTITIONS} partitions"
            + "".join(f", topic {t}" for t in scenario.broker_topics))
    body()
    if scenario.changes_node():
        for other in bench.cluster:
            if other is not bench.node:
                bench.procs.stop(other.proc)
        bench.cluster, bench.peer = [], None
        bench.restart_main(f"server-after-{after or scenario.name}.log")
    bench.stop_services()


def packages(cfg):
    """(command, Debian package) pairs the wanted scenarios need."""
    needed = [("wrk", "wrk")]
    if cfg.postgres:
        needed.append(("psql", "postgresql-client"))
    for row in wanted(cfg):
        needed += row.packages
        if "redis" in row.starts:
            needed.append(("redis-server", "redis-server"))
    return needed


def needs_broker(cfg):
    return any("broker" in row.starts for row in wanted(cfg))
