"""The node's PostgreSQL, through psql: its settings, checkpoints, the
postmaster's pid, and queries of the durable scenarios.

The database is RSV_PG_DSN (key=value words or a URI) or, when it is empty,
libpq's PG* variables (pg_virtualenv exports them).
"""
import subprocess
import sys
from pathlib import Path

from .procs import fail, say, warn

PSQL_TIMEOUT_S = 900
SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
            "full_page_writes", "shared_buffers", "max_wal_size", "checkpoint_timeout",
            "commit_delay", "wal_level")
HINT = "pg_virtualenv -t -o fsync=on env RSV_STORE=postgres bench/run"


class Postgres:
    """psql on one database: `dsn` or the PG* variables when it is empty."""

    def __init__(self, dsn):
        self.dsn = dsn

    def psql(self, *args, log=None, failure=None):
        """psql's output (unaligned, tuples only), stripped. With log, its
        output also goes there (and to stderr when it fails). Fails with
        `failure` or psql's error."""
        argv = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        if self.dsn:
            argv += ["-d", self.dsn]
        done = subprocess.run(argv + list(args), capture_output=True, text=True,
                              timeout=PSQL_TIMEOUT_S, check=False)
        if log:
            Path(log).write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            if log:
                print(done.stdout + done.stderr, end="", file=sys.stderr)
            fail(failure or f"psql {' '.join(args)[:200]}: {done.stderr.strip()[:500]}")
        return done.stdout.strip()

    def query(self, sql):
        return self.psql("-c", sql)

    def count(self, sql):
        return int(self.query(sql) or 0)

    def checkpoints(self):
        """Checkpoints PostgreSQL has started so far (they slow what runs
        then); 0 when it cannot tell."""
        try:
            return self.count("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        except Exception:  # a figure of the report, not a reason to stop
            return 0


def connect(cfg):
    """Checks the node's PostgreSQL before anything is measured; returns
    (Postgres, settings, the postmaster's pid or None)."""
    pg = Postgres(cfg.pg_dsn)
    names = ", ".join(f"'{name}'" for name in SETTINGS)
    try:
        rows = pg.psql("-F=", "-c", "SELECT name, current_setting(name) FROM pg_settings"
                       f" WHERE name IN ({names}) ORDER BY name")
    except Exception as error:  # reported with the way to fix it
        fail(f"cannot query PostgreSQL ({cfg.pg_dsn or 'the PG* variables'}): {error}\n"
             f"Run the bench inside pg_virtualenv: {HINT}")
    settings = dict(row.split("=", 1) for row in rows.splitlines())
    _check_durable(cfg, settings)
    postmaster = _postmaster(pg)
    if not postmaster:
        say("PostgreSQL's processes not found here; its CPU counts as other processes'")
    say(f"PostgreSQL {settings.get('server_version')}: fsync={settings.get('fsync')},"
        f" synchronous_commit={settings.get('synchronous_commit')},"
        f" wal_sync_method={settings.get('wal_sync_method')},"
        f" full_page_writes={settings.get('full_page_writes')},"
        f" shared_buffers={settings.get('shared_buffers')}")
    return pg, settings, postmaster


def fsync_off(settings):
    return settings.get("fsync") != "on" or settings.get("synchronous_commit") != "on"


def _check_durable(cfg, settings):
    """Durable figures mean nothing without fsync. pg_virtualenv turns it
    off unless told otherwise (-o fsync=on). The bench changes no setting."""
    if not fsync_off(settings):
        return
    message = (f"PostgreSQL runs with fsync={settings.get('fsync')},"
               f" synchronous_commit={settings.get('synchronous_commit')}")
    if not cfg.allow_fsync_off:
        fail(f"{message}: commits would not reach the disk. pg_virtualenv turns fsync off"
             f" unless given -o fsync=on:\n  {HINT}\n"
             "(BENCH_ALLOW_FSYNC_OFF=1 measures anyway and says so in the report.)")
    warn(f"{message} (BENCH_ALLOW_FSYNC_OFF=1)")


def _postmaster(pg):
    """The postmaster's pid when it runs on this machine and we can see it."""
    try:
        data_dir = Path(pg.query("SHOW data_directory"))
        pid = (data_dir / "postmaster.pid").read_text().splitlines()[0].strip()
    except Exception:  # PostgreSQL elsewhere, or not ours to read
        return None
    return int(pid) if pid.isdigit() and Path(f"/proc/{pid}/stat").exists() else None
