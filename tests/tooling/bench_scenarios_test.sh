#!/usr/bin/env bash
# bench/run refuses a scenario it does not know, before it installs or
# builds anything, and names every scenario it does know. Running it that
# far also imports every module of bench/rsvbench, so a module the bench
# cannot load fails here rather than in someone's long benchmark run.
set -euo pipefail
root="${1:?usage: bench_scenarios_test.sh SOURCE_DIR}"

set +e
out="$(BENCH_SCENARIOS=no-such-scenario "$root/bench/run" 2>&1)"
rc=$?
set -e
fail() {
  echo "bench_scenarios_test: $1" >&2
  echo "--- bench/run said:" >&2
  echo "$out" >&2
  exit 1
}
[[ "$rc" == 1 ]] || fail "exit status $rc, expected 1"
grep -q "unknown scenario no-such-scenario" <<<"$out" || fail "no word of the unknown scenario"
# The scenarios bench/README.md documents, each listed with what it measures.
for name in health holds reads redis churn soak seatmaps pgbench recovery journal kafka cluster none; do
  grep -Eq "^  $name: .+" <<<"$out" || fail "scenario $name is not listed"
done
echo "bench_scenarios_test: unknown scenario refused, all 13 listed"
