"""The cluster scenario: two nodes with --cluster (docs/cluster.md) on the
same PostgreSQL, owners from a local rsv-kafka-broker (topic rsv-owners),
every node relaying its outbox there too, as a cluster needs Kafka. (The
module is two_nodes rather than cluster so that no reader, nor a tool that
matches names, takes `from . import cluster` for scripts/cluster.)

Holds as in (b), a fresh event per run: first sent to the node that owns
the event, then to the other node, which forwards each request to the
owner over loopback. "server" CPU is both nodes together.
"""
from .. import client
from ..node import KAFKA_TOPIC, free_port, start_node
from ..procs import fail, say, wait_for
from ..series import Probe

OWNERS_TOPIC = "rsv-owners"
FIRST_PORT = 18180
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 1000
SETTLE_TIMEOUT_S = 120   # loading the events earlier scenarios left takes a while
OWNER_TIMEOUT_S = 10


def owners_topic(cfg):
    return f"{OWNERS_TOPIC}:{cfg.cluster_partitions}"


def start_nodes(bench):
    """Stops the main node, starts two cluster nodes on free ports from
    18180 and waits until they settled: every partition owned, each node
    some."""
    bench.procs.stop(bench.node.proc)
    bench.node = None
    nodes, port = [], FIRST_PORT
    for i in range(2):
        port = free_port(port)
        address = f"127.0.0.1:{port}"
        nodes.append(start_node(bench, f"server-cluster-{i}.log", [
            "--advertise", address, "--cluster",
            "--cluster-partitions", str(bench.cfg.cluster_partitions),
            "--cluster-session-timeout-ms", str(SESSION_TIMEOUT_MS),
            "--cluster-heartbeat-ms", str(HEARTBEAT_MS),
            "--kafka-brokers", bench.broker.bootstrap, "--kafka-topic", KAFKA_TOPIC],
            listen=address))
        port += 1
    bench.cluster = nodes
    bench.node, bench.peer = nodes
    for node in nodes:
        node.wait_ready()
    owned = []

    def settled():
        owned[:] = [len(((client.get_json(n.base, "/health") or {}).get("cluster") or {})
                        .get("owned", [])) for n in nodes]
        a, b = owned
        return True if a > 0 and b > 0 and a + b == bench.cfg.cluster_partitions else None
    if not wait_for(settled, SETTLE_TIMEOUT_S, 0.1):
        fail(f"cluster: the nodes did not settle within {SETTLE_TIMEOUT_S} s (owned: {owned})")
    say(f"cluster: nodes {' '.join(n.base for n in nodes)} own {' '.join(map(str, owned))}"
        " partitions")


class ClusterTarget(Probe):
    """Before each run: drives the owner of the run's fresh event
    (owner=True) or the other node; the CPU and RSS follow."""

    def __init__(self, bench, series, owner):
        super().__init__(bench, series)
        self.owner = owner
        self.nodes = bench.cluster

    def before_run(self, name, event):
        def owner_index():
            for i, node in enumerate(self.nodes):
                health = client.get_json(node.base, "/health") or {}
                if event in (health.get("cluster") or {}).get("events", []):
                    return i
            return None
        owner = wait_for(owner_index, OWNER_TIMEOUT_S, 0.1)
        if owner is None:
            fail(f"cluster: no node lists event {event} in /health")
        driven = owner if self.owner else 1 - owner
        self.bench.node, self.bench.peer = self.nodes[driven], self.nodes[1 - driven]
        say(f"{name}: event {event} is owned by node {owner}; wrk drives node {driven}"
            f" ({self.bench.node.base})")


def report(bench):
    """The part "Cluster (two nodes, --cluster)" of report.md, with the
    single node's figures of this run beside it."""
    cfg = bench.cfg
    lines = ["## Cluster (two nodes, --cluster)", "", " ".join((
        f"Durable holds ({cfg.connections} connections) on the same PostgreSQL, two nodes with",
        f"--cluster on 127.0.0.1 ({cfg.cluster_partitions} partitions, owners from",
        "rsv-kafka-broker, the outbox relayed to it). Each run has a fresh event; 'owner' sends",
        "every hold to the node that owns it, 'forwarded' to the other node, which forwards it",
        "to the owner (one HTTP/1.1 hop on loopback, keep-alive) and relays the answer. CPU",
        "'nodes' is both nodes together.")), "",
        "| sent to | holds/s (wrk -t) | p50 | p99 | max | CPU nodes / wrk / postgres / broker /"
        " other | nodes µs per hold | commits: rows each, ms each | statuses |",
        "|---|---|---|---|---|---|---|---|---|"]
    rates = {}
    for target in ("owner", "forwarded"):
        r = bench.best(f"cluster-{target}")
        if not r:
            continue
        rates[target] = r.rate
        w, c, x = r.wrk, r.wrk.cpu, r.extra
        per_hold = f"{1e6 * c['server'] / r.rate:.1f}" if r.rate > 0 else "0.0"
        cells = [target, f"{r.rate} (-t{r.threads})", w.ms("p50_us"), w.ms("p99_us"),
                 w.ms("max_us"),
                 " / ".join(f"{c[k]:.2f}" for k in ("server", "load", "postgres", "broker",
                                                    "other")),
                 per_hold, f"{x.get('batches')} commits: {x.get('rows_per_batch')},"
                 f" {x.get('commit_ms')} ms", r.statuses]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    owner, forwarded = rates.get("owner"), rates.get("forwarded")
    if owner and forwarded is not None:
        lines.append(f"- through the other node / at the owner: {forwarded} / {owner} holds/s"
                     f" = **{forwarded / owner:.3f}**")
    for series, what in (("kafka-linger5-r1", "a single node with Kafka (kafka-linger5-r1)"),
                         ("holds", "a single node without Kafka (holds)")):
        single = bench.best(series)
        if owner is not None and single and single.rate > 0:
            lines.append(f"- one node of a cluster at the owner / {what}: {owner} /"
                         f" {single.rate} = **{owner / single.rate:.3f}**")
    return lines + [""]
