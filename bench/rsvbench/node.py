"""The processes the bench measures or needs: nodes (`reservations serve`),
the Kafka broker (`rsv-kafka-broker`) and redis-server, all on 127.0.0.1.
"""
import re
import socket
import subprocess
import sys
from pathlib import Path

from . import client
from .procs import STDOUT, fail, wait_for

LISTEN_TIMEOUT_S = 60   # covers recovering a large database
READY_TIMEOUT_S = 10
BROKER_TIMEOUT_S = 30
REDIS_TIMEOUT_S = 10
KAFKA_TOPIC = "reservation-events"  # the node's default --kafka-topic
KAFKA_PARTITIONS = 6
REDIS_PORTS = range(63790, 63890)


class Node:
    """A `reservations serve` process of ours, its log and its address."""

    def __init__(self, proc, log, port=None):
        self.proc = proc
        self.log = Path(log)
        self.port = port

    @property
    def pid(self):
        return self.proc.pid

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self):
        """VmRSS from /proc/PID/status; fails when the node has exited."""
        if self.proc.poll() is not None:
            fail(f"the server exited with status {self.proc.returncode} (log: {self.log})")
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+([0-9]+)", status, re.M).group(1))

    def wait_listening(self):
        """Reads the port the node logs once it listens (--listen
        127.0.0.1:0 lets the kernel pick it)."""
        def port():
            if self.proc.poll() is not None:
                print(self.log.read_text(errors="replace"), end="", file=sys.stderr)
                fail(f"the server exited (log: {self.log})")
            found = re.search(r"listening on 127\.0\.0\.1:([0-9]+)",
                              self.log.read_text(errors="replace"))
            return int(found.group(1)) if found else None
        self.port = wait_for(port, LISTEN_TIMEOUT_S, 0.1)
        if self.port is None:
            fail(f"the server did not listen within {LISTEN_TIMEOUT_S} s (log: {self.log})")

    def wait_ready(self):
        if not wait_for(lambda: ready(self.base, 2) or None, READY_TIMEOUT_S, 0.1):
            fail(f"GET {self.base}/ready did not answer 200 within {READY_TIMEOUT_S} s")


def ready(base, timeout_s):
    return client.call(base, "GET", "/ready", timeout_s=timeout_s)[0] == 200


def start_node(bench, log, flags, listen="127.0.0.1:0", port=None):
    """Starts a node with the bench's settings plus flags; returns it once
    it listens (not yet ready: see Node.wait_ready), or at once when the
    port is given (the recovery scenario times the start itself)."""
    cfg = bench.cfg
    argv = [str(bench.binary), "serve", "--admin-token", bench.admin_token,
            "--token-secret", bench.token_secret,
            "--io-threads", str(cfg.io_threads), "--actor-threads", str(cfg.actor_threads),
            "--log-level", "info", "--password-hash-memory-kib", "1024",
            "--password-hash-ops", "1",
            # The bench registers all its customers from 127.0.0.1: the
            # per-address login throttle would refuse the 21st.
            "--auth-limit-address", "0",
            # A series may run on another store (the journal scenario's
            # memory node): its --store replaces the bench's.
            *(() if "--store" in flags else ("--store", cfg.store)),
            "--listen", listen, *flags]
    log = bench.path(log)
    node = Node(bench.procs.start("node", argv, stderr=log), log, port)
    if port is None:
        node.wait_listening()
    return node


def port_in_use(port):
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port(first, tries=1000):
    """The first loopback port from `first` that nothing listens on."""
    port = next((p for p in range(first, min(first + tries, 65536)) if not port_in_use(p)), None)
    return port if port is not None else fail(f"no free port from {first} to {first + tries}")


class Broker:
    """rsv-kafka-broker (librdkafka's mock cluster, one broker, in memory)
    with the events topic and any more topics ("NAME:PARTITIONS")."""

    def __init__(self, bench, more_topics=()):
        argv = [str(bench.broker_binary), "--topic", KAFKA_TOPIC,
                "--partitions", str(KAFKA_PARTITIONS)]
        for topic in more_topics:
            argv += ["--topic", topic]
        out, log = bench.path("broker.out"), bench.path("broker.log")
        self.proc = bench.procs.start("broker", argv, stdout=out, stderr=log)

        def bootstrap():
            if self.proc.poll() is not None:
                print(log.read_text(errors="replace"), end="", file=sys.stderr)
                fail(f"rsv-kafka-broker exited (log: {log})")
            found = re.search(r"^bootstrap=(.*)$", out.read_text(errors="replace"), re.M)
            return found.group(1) if found else None
        self.bootstrap = wait_for(bootstrap, BROKER_TIMEOUT_S, 0.1)
        if not self.bootstrap:
            fail(f"rsv-kafka-broker printed no bootstrap line within {BROKER_TIMEOUT_S} s"
                 f" (log: {log})")

    @property
    def pid(self):
        return self.proc.pid

    def describe(self):
        return f"rsv-kafka-broker (pid {self.pid}) at {self.bootstrap}"


class Redis:
    """A redis-server on loopback, in memory, on the first free port from
    63790."""

    def __init__(self, bench):
        port = next((p for p in REDIS_PORTS if not port_in_use(p)), None)
        if port is None:
            fail("no free port for redis-server")
        log = bench.path("redis.log")
        self.proc = bench.procs.start(
            "redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--daemonize", "no",
                      "--loglevel", "warning"], stdout=log, stderr=STDOUT)
        self.url = f"redis://127.0.0.1:{port}"

        def pong():
            if self.proc.poll() is not None:
                return False
            return True if self.cli("PING") == "PONG" else None
        if not wait_for(pong, REDIS_TIMEOUT_S, 0.1):
            print(log.read_text(errors="replace"), end="", file=sys.stderr)
            fail(f"redis-server did not answer PING within {REDIS_TIMEOUT_S} s (log: {log})")

    @property
    def pid(self):
        return self.proc.pid

    def describe(self):
        return f"redis-server (pid {self.pid}) at {self.url}"

    def cli(self, *command):
        """redis-cli's answer, or "" when it failed."""
        done = subprocess.run(["redis-cli", "-u", self.url, *command], capture_output=True,
                              text=True, timeout=30, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""
