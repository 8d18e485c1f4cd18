"""The recovery scenario: the time from starting a node to its first 200
from /ready, on a database of its own (BENCH_RECOVERY_DB) with one event
and BENCH_RECOVERY_HOLDS active holds.

The event and the customers are created through the API of a node on that
database, so their rows are the server's own; the holds go straight into
the holds table in the server's format (bench/recovery_holds.sql), or, with
BENCH_RECOVERY_FROM=journal, into journal rows of 1,000 holds each, as a
node with --pg-batch-encoding journal leaves them when it dies before its
projector applied them (the first restart projects them all; the later
ones read the tables); or, with BENCH_RECOVERY_FROM=snapshots, the first
half of each section's holds into its snapshot and the rest into journal
rows after it, as a journal node leaves them when it dies a while after
its sections' snapshots (every restart reads the snapshots and the rows,
and projects nothing first). Then the node is killed (SIGKILL: a crash, not a
drain) and started again on the same database BENCH_RECOVERY_RUNS times.
"""
import json
import re
import time

from .. import journal_rows

from .. import api, client
from ..node import ready, start_node
from ..postgres import Postgres
from ..procs import fail, say, warn, wait_for

READY_POLL_S = 0.01


def recovery_dsn(cfg):
    """The node's DSN with dbname replaced (the last dbname wins; config
    refused a URI)."""
    if not cfg.pg_dsn:
        return f"dbname={cfg.recovery_db}"
    return f"{cfg.pg_dsn} dbname={cfg.recovery_db}"


def run(bench):
    cfg = bench.cfg
    dsn = recovery_dsn(cfg)
    event = f"bench-recovery{bench.run_tag}"
    port, tokens, ids = prepare(bench, dsn, event)
    bench.notes["recovery runs"] = runs = []
    bench.notes["recovery checks"] = checks = []
    for i in range(1, cfg.recovery_runs + 1):
        quiet = bench.cpu.wait_for_quiet()
        log = f"recovery-run{i}.log"
        started = time.time()
        node = start_node(bench, log, ["--pg-dsn", dsn], listen=f"127.0.0.1:{port}", port=port)
        ready_ms = poll_ready(bench, node, started)
        runs.append(restart_figures(bench, node, event, i, ready_ms, quiet))
        if i == cfg.recovery_runs:
            checks += recovery_checks(bench, node.base, event, tokens, ids)
        bench.procs.kill(node.proc)
    bench.path("recovery.tsv").write_text("".join("\t".join(map(str, r)) + "\n" for r in runs))
    bench.path("recovery.checks").write_text("".join(f"{c}\n" for c in checks))


def prepare(bench, dsn, event):
    """The database, the event, the customers and the holds; the node that
    made them is killed. (its port, customer tokens, customer ids)."""
    cfg = bench.cfg
    bench.pg.psql("-c", f"DROP DATABASE IF EXISTS {cfg.recovery_db} WITH (FORCE)",
                  "-c", f"CREATE DATABASE {cfg.recovery_db}", log=bench.path("recovery-db.log"),
                  failure=f"recovery: cannot create database {cfg.recovery_db}")
    node = start_node(bench, "recovery-prepare.log", ["--pg-dsn", dsn])
    node.wait_ready()
    api.create_event(bench, event, node.base)
    tokens, ids = api.make_customers(bench, node.base, "recovery",
                                     bench.path("recovery-tokens.txt"),
                                     bench.path("recovery-ids.txt"))
    started = time.monotonic()
    db = Postgres(dsn)
    if cfg.recovery_from in ("journal", "snapshots"):
        snapshotted = write_snapshots(bench, db, event, ids) \
            if cfg.recovery_from == "snapshots" else set()
        write_journal(bench, db, event, ids, skip=snapshotted)
        written = db.psql("-F", " ", "-c", "SELECT coalesce(sum(entries), 0), count(*)"
                          " FROM journal").split()
        if int(written[0]) + len(snapshotted) != cfg.recovery_holds:
            fail(f"recovery: wrote {written[0]} holds into the journal and"
                 f" {len(snapshotted)} into snapshots, expected {cfg.recovery_holds}")
        say(f"recovery: {event} ({cfg.seats} seats) with {cfg.recovery_holds} active holds,"
            f" {len(snapshotted)} in snapshots and {written[0]} in"
            f" {written[1]} journal rows of database {cfg.recovery_db}"
            f" ({time.monotonic() - started:.0f} s)")
        bench.procs.kill(node.proc)
        return node.port, tokens, ids
    db.psql("-v", f"event={event}", "-v", f"holds={cfg.recovery_holds}",
            "-v", f"per_row={cfg.seats_per_row}", "-v", "customers={" + ",".join(ids) + "}",
            "-f", str(cfg.bench_dir / "recovery_holds.sql"), log=bench.path("recovery-holds.log"),
            failure="recovery: writing the holds failed")
    written = db.psql("-F", " ", "-c", "SELECT count(*),"
                      " count(DISTINCT (h.section_no, h.seats[1])),"
                      " count(*) FILTER (WHERE h.status = 'active'"
                      "   AND h.expires_at > now() + interval '30 minutes')"
                      " FROM holds h JOIN sections s USING (section_no)"
                      f" WHERE s.event_id = '{event}'").split()
    if written != [str(cfg.recovery_holds)] * 3:
        fail(f"recovery: wrote {written[0]} holds on {written[1]} seats, {written[2]} active for"
             f" 30 more minutes; expected {cfg.recovery_holds}")
    say(f"recovery: {event} ({cfg.seats} seats) with {cfg.recovery_holds} active holds in"
        f" database {cfg.recovery_db} ({time.monotonic() - started:.0f} s)")
    # That node never heard of the holds: a crash, and every start from here
    # on reads them.
    bench.procs.kill(node.proc)
    return node.port, tokens, ids


def recovery_holds(bench, db, event, ids):
    """The holds of recovery_holds.sql (the same sections, slots, seats and
    customers): (k, section_no, slot, customer, seat, at_ms, expires_ms)."""
    cfg = bench.cfg
    sections = [line.split("|") for line in db.query(
        "SELECT s.section_no, jsonb_array_length(s.rows), e.hold_ttl_seconds FROM sections s"
        f" JOIN events e ON e.id = s.event_id WHERE s.event_id = '{event}'"
        " ORDER BY s.position").splitlines()]
    count = len(sections)
    per_section = -(-cfg.recovery_holds // count)
    at_ms = int(time.time() * 1000)
    for k in range(cfg.recovery_holds):
        section_no, rows, ttl_s = (int(x) for x in sections[k % count])
        slot = k // count
        seat = slot * ((rows * cfg.seats_per_row) // per_section)
        yield k, section_no, slot, ids[k % len(ids)], seat, at_ms, at_ms + ttl_s * 1000


def write_snapshots(bench, db, event, ids):
    """Each section's snapshot, with the first half of its holds, numbered
    as a writer numbers them (journal_order); the holds it took (by k)."""
    holds = list(recovery_holds(bench, db, event, ids))
    half = {}
    for k, section_no, slot, customer, seat, _, expires_ms in holds:
        half.setdefault(section_no, []).append((k, slot, customer, seat, expires_ms))
    taken = set()
    copy = bench.path("recovery-snapshots.copy")
    with copy.open("w") as f:
        for section_no, section_holds in half.items():
            first = section_holds[:len(section_holds) // 2]
            taken.update(k for k, *_ in first)
            body = journal_rows.snapshot(section_no, [
                journal_rows.snapshot_hold(slot, customer, seat, expires_ms)
                for _, slot, customer, seat, expires_ms in first])
            f.write(f"{section_no}\t{len(first)}\t\\\\x{body.hex()}\n")
    db.psql("-c", "CREATE TEMP TABLE s (section_no int, holds int, body bytea)",
            "-c", f"\\copy s FROM '{copy}'",
            "-c", "INSERT INTO section_snapshots SELECT section_no, nextval('journal_order'),"
                  " now(), holds, body FROM s ORDER BY section_no",
            log=bench.path("recovery-snapshots.log"),
            failure="recovery: writing the snapshots failed")
    return taken


def write_journal(bench, db, event, ids, skip=frozenset()):
    """The holds of recovery_holds.sql but those in `skip` as journal rows
    of 1,000 holds each, loaded with COPY."""
    entries = [(section_no,
                journal_rows.hold_created(section_no, slot, customer, seat, at_ms, expires_ms))
               for k, section_no, slot, customer, seat, at_ms, expires_ms
               in recovery_holds(bench, db, event, ids) if k not in skip]
    copy = bench.path("recovery-journal.copy")
    with copy.open("w") as f:
        for seq, start in enumerate(range(0, len(entries), 1000), 1):
            chunk = entries[start:start + 1000]
            body = journal_rows.row([entry for _, entry in chunk]).hex()
            # The sections whose changes the row holds (migration 0012).
            sections = "{" + ",".join(sorted({str(no) for no, _ in chunk})) + "}"
            f.write(f"bench/dead/0\t{seq}\tnow\t{len(chunk)}\t\\\\x{body}\t{sections}\n")
    db.psql("-c", f"\\copy journal (stream, seq, created_at, entries, body, sections)"
                  f" FROM '{copy}'",
            log=bench.path("recovery-journal.log"), failure="recovery: writing the journal failed")


def poll_ready(bench, node, started):
    """Milliseconds from `started` to the first 200 from /ready, polled
    every 10 ms, at most BENCH_RECOVERY_TIMEOUT s."""
    timeout_s = bench.cfg.recovery_timeout

    def answered():
        if ready(node.base, 1):
            return time.time()
        if node.proc.poll() is not None:
            fail(f"recovery: the node exited (log: {node.log})")
        return None
    at = wait_for(answered, timeout_s, READY_POLL_S)
    if at is None:
        fail(f"recovery: no 200 from /ready within {timeout_s} s (log: {node.log})")
    return int((at - started) * 1000)


def restart_figures(bench, node, event, i, ready_ms, quiet):
    """A row of recovery.tsv: run, ready ms, the node's own read and
    recovered ms, held seats, RSS KiB, idle CPU before, what it read."""
    held = api.event_count(node.base, event, "held")
    log = node.log.read_text(errors="replace")

    def first(pattern):
        found = re.search(pattern, log)
        return found.group(1) if found else "?"
    read_ms = first(r"from PostgreSQL in ([0-9]+) ms")
    rebuilt_ms = first(r"recovered [0-9]+ events in ([0-9]+) ms")
    counts = first(r"([0-9]+ customers, [0-9]+ holds \([0-9]+ active\))")
    rss = node.rss_kib()
    say(f"recovery run {i}: ready after {ready_ms} ms (node: read {read_ms} ms, recovered"
        f" {rebuilt_ms} ms; {counts}); {held} seats held; RSS {rss} KiB")
    if held != bench.cfg.recovery_holds:
        warn(f"after recovery the event shows {held} held seats, not {bench.cfg.recovery_holds}")
    return (i, ready_ms, read_ms, rebuilt_ms, held, rss,
            f"{quiet[0]} cores, {quiet[1]}", counts)


def recovery_checks(bench, base, event, tokens, ids):
    """After the last restart the recovered holds behave as the node's own:
    ["ok ..." or "FAILED ..."] lines."""
    cfg, db = bench.cfg, Postgres(recovery_dsn(bench.cfg))
    checks = []

    def check(ok, text):
        checks.append(f"{'ok' if ok else 'FAILED'} {text}")
        if not ok:
            warn(f"recovery check failed: {text}")
    no = int(db.query(f"SELECT section_no FROM sections WHERE event_id = '{event}'"
                      " AND position = 0"))
    found = db.psql("-F", " ", "-c", "SELECT seats[1], customer_id FROM holds"
                    f" WHERE section_no = {no} AND slot = 0").split()
    # From snapshots the tables never saw the hold: it is the first the
    # scenario wrote (recovery_holds), and its seat is read from the node.
    seat, owner = found if found else (None, ids[0])
    if owner not in ids:
        check(False, f"hold 0 of section {no} names customer {owner}, not one of ours")
        return checks
    line = ids.index(owner)
    owner_token, other_token = tokens[line], tokens[(line + 1) % cfg.customers]
    hold_id = f"hld_{no:x}_0"
    status, text = client.call(base, "GET", f"/v1/holds/{hold_id}", token=owner_token)
    check(status == 200 and '"status":"active"' in text,
          f"GET /v1/holds/{hold_id} by its customer: "
          + ("200, active" if status == 200 and '"status":"active"' in text
             else f"{status} {text[:200]}"))
    if seat is None:
        seat = json.loads(text)["seats"][0] if status == 200 else "A-1"
    body = {"event_id": event, "section_id": "s1", "seats": [seat]}
    status, text = client.call(base, "POST", "/v1/holds", body=body, token=other_token)
    check(status == 409, f"POST /v1/holds for recovered held seat s1 {seat}: "
          + ("409" if status == 409 else f"{status} {text[:200]}"))
    checks_new_hold(bench, db, base, event, no, other_token, check)
    return checks


def checks_new_hold(bench, db, base, event, no, token, check):
    """Seat index 1 of the first section is free when the holds are spaced
    out; its hold must take the slot after the recovered ones."""
    cfg = bench.cfg
    per_section = -(-cfg.recovery_holds // cfg.sections)
    if (cfg.rows * cfg.seats_per_row) // per_section < 2:
        return
    per_row = cfg.seats_per_row
    free_seat = db.query(f"SELECT (rows -> (1 / {per_row}) ->> 'label') || '-' ||"
                         f" (1 % {per_row} + 1) FROM sections WHERE section_no = {no}")
    expected = f"hld_{no:x}_{per_section:x}"
    body = {"event_id": event, "section_id": "s1", "seats": [free_seat]}
    status, text = client.call(base, "POST", "/v1/holds", body=body, token=token)
    # Since the cluster work, hold ids end with the event's hash
    # (hld_SECTION_SLOT_HASH); the slot is what this checks.
    if status == 201 and re.search(rf'"hold_id":"{expected}(_[0-9a-f]+)?"', text):
        check(True, f"POST /v1/holds for free seat s1 {free_seat}: 201, {expected} (the slot"
              " after the recovered ones)")
        held = api.event_count(base, event, "held")
        check(held == cfg.recovery_holds + 1, f"then the event shows {held} held seats"
              + ("" if held == cfg.recovery_holds + 1 else f", not {cfg.recovery_holds + 1}"))
    else:
        check(False, f"POST /v1/holds for free seat s1 {free_seat}: {status} (expected 201 and"
              f" {expected}): {text[:200]}")
