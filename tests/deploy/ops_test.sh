#!/usr/bin/env bash
# scripts/ops against a real node and PostgreSQL (labels deploy, pg): migrate,
# seed from deploy/examples/venue.json (and again: 409, nothing changed),
# status before and after nodes ran with --cluster (the partitions as a
# clustered node writes them), reset's refusals and reset itself, which
# keeps schema_migrations and the cluster's settings and epochs. Needs
# the PG* variables of scripts/test's pg_virtualenv and RSV_BINARY.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${RSV_BINARY:?}" "${PGPORT:?run inside pg_virtualenv (scripts/test)}"
export RSV_BINARY RSV_ADMIN_TOKEN=ops-test-admin-token-0123456789abcdef
db="rsv_ops_test_$$"
psql -XAq -c "CREATE DATABASE $db"
export PGDATABASE="$db"
port=$((18600 + $$ % 300))
export RSV_URL="http://127.0.0.1:$port"
node=""
cleanup() {
  [[ -n "$node" ]] && { kill -TERM "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true; }
  PGDATABASE=postgres psql -XAq -c "DROP DATABASE IF EXISTS $db" || true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { grep -q -- "$1" <<<"$2" || fail "expected '$1' in: $2"; }

out="$(scripts/ops migrate)"
expect "schema version" "$out"
"$RSV_BINARY" serve --store postgres --listen "127.0.0.1:$port" --password-hash-memory-kib 64 \
  >"/tmp/ops_test_node.$$.log" 2>&1 &
node=$!
for _ in $(seq 100); do curl -fs "$RSV_URL/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$RSV_URL/ready" >/dev/null || fail "the node did not become ready"

out="$(scripts/ops seed deploy/examples/venue.json 2>&1)"
expect "ops: created" "$out"
seats="$(curl -fs "$RSV_URL/v1/events/arena-2027-01-15")"
expect '"seats_total":240' "$seats"
out="$(scripts/ops seed deploy/examples/venue.json 2>&1)"
expect "exists already" "$out"

out="$(scripts/ops status 2>&1)"
expect '"store":"ok"' "$out"
expect "no node has run with --cluster" "$out"
psql -XAq -c "INSERT INTO cluster_settings (partitions) VALUES (64);
  INSERT INTO cluster_partitions (partition, epoch, owner) SELECT p, 7,
  CASE WHEN p % 2 = 0 THEN '10.0.1.5:8080' ELSE '10.0.2.6:8080' END FROM generate_series(0, 63) p"
out="$(scripts/ops status 2>&1)"
expect "10.0.1.5:8080 |         32 |         7 |         7" "$out"
expect "(64 rows)" "$out"

if scripts/ops reset >/dev/null 2>&1; then fail "reset without --yes"; fi
if RSV_ENVIRONMENT=prod scripts/ops reset --yes >/dev/null 2>&1; then fail "reset on prod"; fi
[[ "$(psql -XAtc 'SELECT count(*) FROM events')" == 1 ]] || fail "a refused reset changed something"
scripts/ops reset --yes >/dev/null 2>&1
[[ "$(psql -XAtc 'SELECT count(*) FROM events')" == 0 ]] || fail "reset left events"
[[ "$(psql -XAtc 'SELECT count(*) FROM cluster_partitions')" == 64 ]] || fail "reset emptied cluster_partitions"
[[ "$(psql -XAtc 'SELECT partitions FROM cluster_settings')" == 64 ]] || fail "reset emptied cluster_settings"
[[ "$(psql -XAtc 'SELECT count(*) > 0 FROM schema_migrations')" == t ]] || fail "reset emptied schema_migrations"
rm -f "/tmp/ops_test_node.$$.log"
echo "scripts/ops: migrate, seed, status, reset all as expected"
