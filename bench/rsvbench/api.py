"""What the bench asks of a node through its HTTP API: events of the
configured size, their counters, customers with session tokens.
"""
import json
import os
import re

from . import client
from .procs import fail, wait_for

EVENT_FREE_TIMEOUT_S = 30


def event_body(cfg, event_id):
    """An event of BENCH_SECTIONS sections "s1".., rows "R1".., and
    BENCH_SEATS_PER_ROW seats each."""
    return {
        "id": event_id, "name": f"Benchmark {event_id}", "starts_at": "2030-01-01T20:00:00Z",
        "hold_ttl_seconds": 7200,
        "sections": [{"id": f"s{s}", "name": f"Section {s}", "price_cents": 5000,
                      "rows": [{"label": f"R{r}", "seats": cfg.seats_per_row}
                               for r in range(1, cfg.rows + 1)]}
                     for s in range(1, cfg.sections + 1)],
    }


def post_event(bench, base, body):
    """POST /v1/events; keeps the request and the answer in the results
    folder (event-ID.json, event-ID.response)."""
    event_id = body["id"]
    text = json.dumps(body, separators=(",", ":"))
    bench.path(f"event-{event_id}.json").write_text(text)
    status, answer = client.call(base, "POST", "/v1/events", body=text,
                                 token=bench.admin_token, timeout_s=60)
    bench.path(f"event-{event_id}.response").write_text(answer)
    if status != 201:
        fail(f"POST /v1/events {event_id} answered {status}: {answer[:300]}")


def create_event(bench, event_id, base=None):
    """A fresh event of the configured size; returns once every seat reads
    as free."""
    base = base or bench.node.base
    post_event(bench, base, event_body(bench.cfg, event_id))
    seats = bench.cfg.seats
    if not wait_for(lambda: event_count(base, event_id, "free") == seats or None,
                    EVENT_FREE_TIMEOUT_S, 0.1):
        fail(f"event {event_id}: not all {seats} seats free within {EVENT_FREE_TIMEOUT_S} s")


def event_count(base, event_id, counter):
    """The sum of one counter ("free", "held", "booked") over an event's
    sections; 0 when the event cannot be read."""
    _, text = client.call(base, "GET", f"/v1/events/{event_id}")
    return sum(int(n) for n in re.findall(rf'"{counter}":([0-9]+)', text))


def make_customers(bench, base, prefix, tokens_path, ids_path):
    """BENCH_CUSTOMERS customers, each with a session token: one token and
    one customer id a line, in the same order, in the two files."""
    tokens, ids = [], []
    for i in range(1, bench.cfg.customers + 1):
        credentials = {"email": f"{prefix}{i}-{os.getpid()}{bench.run_tag}@bench.example",
                       "password": f"bench-password-{i}"}
        status, text = client.call(base, "POST", "/v1/customers", body=credentials)
        if status != 201:
            fail(f"POST /v1/customers answered {status}: {text[:300]}")
        customer = _json(text).get("customer_id")
        if not customer:
            fail(f"POST /v1/customers gave no customer_id: {text[:300]}")
        _, text = client.call(base, "POST", "/v1/sessions", body=credentials)
        token = _json(text).get("token")
        if not token:
            fail(f"POST /v1/sessions gave no token for {credentials['email']}")
        tokens.append(token)
        ids.append(customer)
    tokens_path.write_text("".join(f"{t}\n" for t in tokens))
    ids_path.write_text("".join(f"{c}\n" for c in ids))
    return tokens, ids


def _json(text):
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
