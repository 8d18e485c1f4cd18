"""What one run of the bench shares: its options, its results folder, its
processes, the node wrk drives, the services running, and the results.
"""
import secrets

from .cpu import CpuMeter
from .node import start_node
from .procs import say


class Bench:
    """The state of one bench run. Created once by main; every scenario
    gets it. Only the main thread touches it."""

    def __init__(self, cfg, procs, out, binary, broker_binary):
        self.cfg = cfg
        self.procs = procs
        self.out = out
        self.binary = binary
        self.broker_binary = broker_binary
        self.admin_token = "bench-admin-" + secrets.token_hex(12)
        self.token_secret = secrets.token_hex(32)
        # With PostgreSQL the database keeps what earlier runs wrote: ids of
        # this run carry its time ("-HHMMSS").
        self.run_tag = ""
        self.pg = None            # postgres.Postgres with RSV_STORE=postgres
        self.pg_settings = {}
        self.postmaster = None    # its pid, when it runs on this machine
        self.node = None          # the node wrk drives
        self.peer = None          # the cluster scenario's other node
        self.cluster = []         # the cluster scenario's two nodes, in start order
        self.broker = None        # node.Broker while a scenario needs one
        self.redis = None         # node.Redis while a scenario needs one
        self.cpu = CpuMeter(self)
        self.results = []         # series.Result, in the order measured
        self.notes = {}           # figures of the scenarios for the report
        self.hold_runs = 0        # numbers the fresh events of the holds runs
        self.main_event = ""
        self.tokens = out / "tokens.txt"
        self.rss_before_kib = self.rss_after_kib = 0

    def path(self, name):
        return self.out / name

    def measured_nodes(self):
        """The nodes whose CPU counts as the server's, and whose group
        commits the report shows: the driven node and, in the cluster
        scenario, the other one."""
        return [node for node in (self.node, self.peer) if node]

    def restart_main(self, log, flags=()):
        """Stops the node and starts it again with flags, on a new port. On
        the same database it recovers every event and customer, and the
        session tokens stay valid (same secret)."""
        if self.node:
            self.procs.stop(self.node.proc)
            self.node = None
        self.node = start_node(self, log, self.expand(flags))
        self.node.wait_ready()

    def expand(self, flags):
        """Flags with the running services' addresses filled in: {redis}
        and {kafka}."""
        addresses = {"redis": self.redis.url if self.redis else "",
                     "kafka": self.broker.bootstrap if self.broker else ""}
        return [flag.format(**addresses) for flag in flags]

    def stop_services(self):
        """After the node that used them, so that a draining relay still
        finds its broker."""
        for service in ("broker", "redis"):
            running = getattr(self, service)
            if running:
                self.procs.stop(running.proc)
                setattr(self, service, None)

    def record(self, result):
        """A kept run: into the results and results.tsv."""
        self.results.append(result)
        with self.path("results.tsv").open("a") as f:
            f.write("\t".join(map(str, (result.series, result.threads, result.rate,
                                        result.name, *result.quiet))) + "\n")

    def best(self, series):
        """The kept run of a series with the most 2xx/s, or None."""
        runs = [r for r in self.results if r.series == series]
        return max(runs, key=lambda r: r.rate) if runs else None

    def say_node(self, what):
        say(f"{what}: node pid {self.node.pid} on {self.node.base}")
