"""The bench's options: every environment variable it reads, checked once.

An empty variable counts as unset, as `${VAR:-default}` did in the shell
version. bench/README.md ("Options") explains each one.
"""
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .procs import fail

# Whole numbers: (field, variable, default, lowest, highest or None, what).
WHOLE_NUMBERS = (
    ("duration", "BENCH_DURATION", 10, 1, 600, "seconds per measured run"),
    ("soak_duration", "BENCH_SOAK_DURATION", 3600, 60, 86400,
     "seconds of the soak scenario's one run"),
    ("warmup", "BENCH_WARMUP", 3, 0, 120, "seconds of warm-up per scenario"),
    ("connections", "BENCH_CONNECTIONS", 64, 1, 10000, "wrk connections"),
    # 2 I/O threads and 1 actor thread did best on 2 cores shared with wrk
    # (docs/benchmarks.md has the other combinations).
    ("io_threads", "RSV_IO_THREADS", 2, 0, None, "the node's HTTP I/O threads"),
    ("actor_threads", "RSV_ACTOR_THREADS", 1, 0, None, "the node's actor threads"),
    # 1,000: a customer may have at most 200 active holds per section
    # (core/limits.hpp), and a 10 s holds run makes some 470,000 holds over 40
    # sections; 64 customers made the later holds of a run 422.
    ("customers", "BENCH_CUSTOMERS", 1000, 1, 10000, "customers and session tokens"),
    ("sections", "BENCH_SECTIONS", 40, 1, 1000, "sections per event"),
    ("rows", "BENCH_ROWS", 250, 1, 1000, "rows per section"),
    ("seats_per_row", "BENCH_SEATS_PER_ROW", 100, 1, 1000, "seats per row"),
    ("quiet_wait", "BENCH_QUIET_WAIT", 300, 0, 3600, "seconds to wait for a quiet machine"),
    ("retries", "BENCH_RETRIES", 2, 0, 10, "repeats of a disturbed run"),
    ("pgbench_clients", "BENCH_PGBENCH_CLIENTS", 32, 1, 1000, "pgbench -c"),
    ("pgbench_jobs", "BENCH_PGBENCH_JOBS", 2, 1, 1000, "pgbench -j"),
    ("recovery_holds", "BENCH_RECOVERY_HOLDS", 100000, 0, None, "active holds before the restarts"),
    ("recovery_runs", "BENCH_RECOVERY_RUNS", 3, 1, 20, "restarts measured"),
    ("recovery_timeout", "BENCH_RECOVERY_TIMEOUT", 60, 1, 600, "seconds a restart may take"),
    ("kafka_rounds", "BENCH_KAFKA_ROUNDS", 1, 1, 10, "rounds of the kafka scenario"),
    ("kafka_drain_timeout", "BENCH_KAFKA_DRAIN_TIMEOUT", 120, 1, 3600,
     "seconds the outbox may take to empty"),
    ("cluster_partitions", "BENCH_CLUSTER_PARTITIONS", 8, 1, 4096,
     "partitions of the owners topic"),
    ("queue_customers", "BENCH_QUEUE_CUSTOMERS", 150000, 1, 10000000,
     "customers of the queue runs"),
    ("queue_polled", "BENCH_QUEUE_POLLED", 20000, 1, 10000000, "queued customers polled"),
)
MAX_SEATS = 1_000_000


def _env(environ, name, default):
    value = environ.get(name, "")
    return value if value != "" else default


def _whole(environ, name, default, low, high, what):
    text = _env(environ, name, str(default)).strip()
    bound = f"from {low}" + (f" to {high}" if high is not None else "")
    if not _is_whole(text):
        fail(f"{name} ({what}) must be a whole number {bound}, got '{text}'")
    value = int(text)
    if value < low or (high is not None and value > high):
        fail(f"{name} ({what}): {bound}, got {value}")
    return value


def _is_whole(text):
    return re.fullmatch(r"[0-9]+", text) is not None


def _words(environ, name, default):
    return tuple(_env(environ, name, default).split())


@dataclass(frozen=True)
class Config:
    """The options of one bench run, read from the environment by `load`."""
    root: Path
    bench_dir: Path
    build_dir: Path
    skip_build: bool
    store: str
    pg_dsn: str
    scenarios: tuple
    profile: tuple
    threads: tuple
    seat_pick: str
    recovery_db: str
    recovery_from: str
    allow_fsync_off: bool
    max_other_cpu: float
    kafka_lingers: tuple
    # The node reads these three itself from the environment it inherits; the
    # report names them.
    pg_batch_encoding: str
    pg_writers: str
    actor_scheduler: str
    # The whole numbers of WHOLE_NUMBERS:
    duration: int
    soak_duration: int
    warmup: int
    connections: int
    io_threads: int
    actor_threads: int
    customers: int
    sections: int
    rows: int
    seats_per_row: int
    quiet_wait: int
    retries: int
    pgbench_clients: int
    pgbench_jobs: int
    recovery_holds: int
    recovery_runs: int
    recovery_timeout: int
    kafka_rounds: int
    kafka_drain_timeout: int
    cluster_partitions: int
    queue_customers: int
    queue_polled: int

    @property
    def seats(self):
        return self.sections * self.rows * self.seats_per_row

    @property
    def postgres(self):
        return self.store == "postgres"

    def wants(self, name):
        """Whether a scenario runs or is profiled."""
        return name in self.scenarios or name in self.profile


def load(environ=os.environ):
    """Reads and checks every option; fails with the variable's name."""
    bench_dir = Path(__file__).resolve().parent.parent
    root = bench_dir.parent
    numbers = {field: _whole(environ, *rest) for field, *rest in WHOLE_NUMBERS}
    store = _env(environ, "RSV_STORE", "memory")
    if store not in ("memory", "postgres"):
        fail(f"RSV_STORE: memory or postgres, got '{store}'")
    default_scenarios = ("holds pgbench recovery kafka cluster" if store == "postgres"
                         else "health holds reads redis")
    cfg = Config(
        root=root,
        bench_dir=bench_dir,
        # Relative to where the bench was started, before it moves to its
        # results folder.
        build_dir=Path(_env(environ, "BENCH_BUILD_DIR", str(root / "build-bench"))).absolute(),
        skip_build=_env(environ, "BENCH_SKIP_BUILD", "0") == "1",
        store=store,
        pg_dsn=_env(environ, "RSV_PG_DSN", ""),
        scenarios=_words(environ, "BENCH_SCENARIOS", default_scenarios),
        profile=_words(environ, "BENCH_PROFILE", ""),
        threads=_words(environ, "BENCH_THREADS", "1 2"),
        seat_pick=_env(environ, "BENCH_SEAT_PICK", "permutation"),
        recovery_db=_env(environ, "BENCH_RECOVERY_DB", "rsv_bench_recovery"),
        recovery_from=_env(environ, "BENCH_RECOVERY_FROM", "tables"),
        allow_fsync_off=_env(environ, "BENCH_ALLOW_FSYNC_OFF", "0") == "1",
        max_other_cpu=_cores(_env(environ, "BENCH_MAX_OTHER_CPU", "0.25")),
        kafka_lingers=_words(environ, "BENCH_KAFKA_LINGER", "5"),
        pg_batch_encoding=_env(environ, "RSV_PG_BATCH_ENCODING", "default"),
        pg_writers=_env(environ, "RSV_PG_WRITERS", "default"),
        actor_scheduler=_env(environ, "RSV_ACTOR_SCHEDULER", "default"),
        **numbers,
    )
    return _checked(cfg)


def _cores(text):
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        fail(f"BENCH_MAX_OTHER_CPU: a number of cores, got '{text}'")
    return float(text)


def _checked(cfg):
    """The checks that relate options to each other; returns cfg with its
    lists of thread counts and lingers as numbers."""
    if cfg.pgbench_jobs > cfg.pgbench_clients:
        fail("BENCH_PGBENCH_JOBS: 1..BENCH_PGBENCH_CLIENTS")
    if cfg.seats > MAX_SEATS:
        fail(f"at most 1,000,000 seats per event (got {cfg.seats})")
    if not cfg.threads or not all(_is_whole(t) and 1 <= int(t) <= cfg.connections
                                  for t in cfg.threads):
        fail("BENCH_THREADS: whole numbers from 1 to BENCH_CONNECTIONS")
    if cfg.recovery_from not in ("tables", "journal", "snapshots"):
        fail("BENCH_RECOVERY_FROM: tables, journal or snapshots")
    if cfg.seat_pick not in ("permutation", "random"):
        fail("BENCH_SEAT_PICK: permutation or random")
    if not cfg.kafka_lingers:
        fail("BENCH_KAFKA_LINGER: at least one value")
    if not all(_is_whole(l) and int(l) <= 1000 for l in cfg.kafka_lingers):
        fail("BENCH_KAFKA_LINGER: whole numbers of ms, 0..1000")
    if cfg.wants("recovery"):
        per_section = -(-cfg.recovery_holds // cfg.sections)
        if cfg.recovery_holds < 1 or per_section > cfg.rows * cfg.seats_per_row:
            fail(f"BENCH_RECOVERY_HOLDS: 1..{cfg.seats} (one seat each, at most a"
                 " section's seats per section)")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", cfg.recovery_db):
            fail("BENCH_RECOVERY_DB: a plain lower-case database name")
        if "://" in cfg.pg_dsn:
            fail("recovery: RSV_PG_DSN is a URI; give it as key=value words so that the bench"
                 f" can point it at database {cfg.recovery_db}")
    return dataclasses.replace(cfg, threads=tuple(int(t) for t in cfg.threads),
                               kafka_lingers=tuple(int(l) for l in cfg.kafka_lingers))
