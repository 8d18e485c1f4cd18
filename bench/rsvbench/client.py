"""HTTP to the bench's own nodes on 127.0.0.1, and their /metrics.

Plain http.client, so no proxy variable can send a request anywhere else;
a request to another host is a programming error.
"""
import http.client
import json
import re
from urllib.parse import urlsplit


def call(base, method, path, body=None, token=None, timeout_s=10):
    """(status, text) of one request; (0, "") when it could not be made,
    as `curl ... || true` gave an empty answer."""
    url = urlsplit(base)
    assert url.hostname == "127.0.0.1", f"only loopback: {base}"
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body, separators=(",", ":"))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def get_json(base, path, timeout_s=5):
    """The JSON answer to a GET, or None."""
    status, text = call(base, "GET", path, timeout_s=timeout_s)
    try:
        return json.loads(text) if status == 200 else None
    except ValueError:
        return None


def metrics(base):
    """The node's /metrics as a list of (series, value), series being the
    name with its labels, as written."""
    status, text = call(base, "GET", "/metrics")
    samples = []
    for line in text.splitlines() if status == 200 else ():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            try:
                samples.append((series, float(value)))
            except ValueError:
                pass
    return samples


def value(samples, series, default=0.0):
    """The value of one series, named exactly (labels included)."""
    return next((v for s, v in samples if s == series), default)


def buckets(samples, histogram):
    """The buckets of a histogram without other labels: [(le, count)], in
    the order written (+Inf last); le as written, e.g. "0.25"."""
    found = []
    for series, count in samples:
        if series.startswith(histogram + "_bucket{"):
            le = re.search(r'le="([^"]*)"', series)
            if le:
                found.append((le.group(1), count))
    return found


def status_counts(base, route):
    """The node's answers to one route so far, by status: {"201": N}."""
    counts = {}
    for series, count in metrics(base):
        if series.startswith("rsv_http_requests_total{") and f'route="{route}"' in series:
            status = re.search(r'status="([0-9]+)"', series)
            if status:
                counts[status.group(1)] = counts.get(status.group(1), 0) + int(count)
    return counts


def status_diff(before, after):
    """"201=N 409=M": the answers by status between two status_counts."""
    return " ".join(f"{s}={after[s] - before.get(s, 0)}" for s in sorted(after)
                    if after[s] - before.get(s, 0) > 0)
