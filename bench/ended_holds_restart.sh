#!/usr/bin/env bash
# Restart time of a node whose holds table has 1,000,000 ended (released)
# holds, against the same node with none: a node reads only live holds and
# each section's last one (issue 19). Also times the query recovery ran
# before, every hold to a client. Loopback only; run inside pg_virtualenv:
#   pg_virtualenv -t bench/ended_holds_restart.sh
# RSV_BINARY: the server (default build-bench/app/reservations, bench/run
# builds it). Uses port 18431 and a database rsvm, which it creates.
set -euo pipefail
bin="${RSV_BINARY:-$(cd "$(dirname "$0")/.." && pwd)/build-bench/app/reservations}"
createdb rsvm
tok=$(printf 'a%.0s' {1..40})
port=18431
pid=""
trap 'if [[ -n "$pid" ]]; then kill -9 "$pid" 2>/dev/null || true; fi' EXIT
start() {
  "$bin" serve --store postgres --pg-dsn dbname=rsvm --listen 127.0.0.1:$port \
    --admin-token "$tok" --token-secret "$(printf 'b%.0s' {1..40})" \
    --auth-limit-address 0 --password-hash-memory-kib 1024 --password-hash-ops 1 \
    >> "${TMPDIR:-/tmp}/ended-holds-restart-node.log" 2>&1 &
  pid=$!
}
wait_ready() {
  for _ in $(seq 1 3000); do
    curl -fs -o /dev/null http://127.0.0.1:$port/ready && return 0
    sleep 0.01
  done
  echo "not ready" >&2; return 1
}
start; wait_ready
curl -fs -X POST http://127.0.0.1:$port/v1/events -H "Authorization: Bearer $tok" \
  -H 'Content-Type: application/json' \
  -d '{"id":"gala","name":"Gala","starts_at":"2026-12-31T20:00:00Z","sections":[{"id":"floor","name":"Floor","price_cents":100,"rows":[{"label":"A","seats":100}]}]}' >/dev/null
cust=$(curl -fs -X POST http://127.0.0.1:$port/v1/customers -H 'Content-Type: application/json' \
  -d '{"email":"m@x.example","password":"password123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["customer_id"])')
kill -9 $pid; wait $pid 2>/dev/null || true
timed_restart() {
  local t0=$(date +%s%N); start; wait_ready; local t1=$(date +%s%N)
  echo "$1: ready in $(( (t1 - t0) / 1000000 )) ms"
  kill -9 $pid; wait $pid 2>/dev/null || true
}
timed_restart "no holds"
psql -q rsvm -c "INSERT INTO holds (section_no, slot, customer_id, seats, status, created_at, expires_at, updated_at)
  SELECT s.section_no, k, '$cust', ARRAY['A-' || (k % 100 + 1)], 'released', now(), now(), now()
  FROM sections s, generate_series(0, 999999) k" 
psql -q rsvm -c "VACUUM ANALYZE holds"
echo "holds: $(psql -At rsvm -c 'SELECT count(*) FROM holds')"
for i in 1 2 3; do timed_restart "1,000,000 released holds, run $i"; done
t0=$(date +%s%N)
n=$(psql -At rsvm -c "COPY (SELECT h.section_no, h.slot, h.customer_id, array_to_string(h.seats, ','), h.status, (extract(epoch FROM h.expires_at) * 1000)::bigint, coalesce((extract(epoch FROM b.created_at) * 1000)::bigint, 0), coalesce(b.status, '') FROM holds h LEFT JOIN bookings b USING (section_no, slot)) TO STDOUT" | wc -l)
t1=$(date +%s%N)
echo "the old recovery query, every hold to a client: $n rows in $(( (t1 - t0) / 1000000 )) ms"
start; wait_ready
h=$(curl -fs -X POST http://127.0.0.1:$port/v1/sessions -H 'Content-Type: application/json' -d '{"email":"m@x.example","password":"password123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "hold after restart: $(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$port/v1/holds -H "Authorization: Bearer $h" -H 'Content-Type: application/json' -d '{"event_id":"gala","section_id":"floor","seats":["A-1"]}')"
echo "RSS after restart: $(grep VmRSS /proc/$pid/status)"
kill $pid; wait $pid 2>/dev/null || true
