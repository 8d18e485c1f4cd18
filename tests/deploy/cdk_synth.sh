#!/usr/bin/env bash
# `cdk synth` of every stack of deploy/cdk through the CDK command line,
# offline (label deploy): inside a network namespace of its own when this
# machine allows one (`unshare -rn`), so that a synth that needed AWS or the
# internet (context lookups, notices, version checks) fails here.
# Usage: cdk_synth.sh CDK_DIR COMPILED_APP_DIR OUTPUT_DIR
set -euo pipefail
cdk_dir="$1" app_dir="$2" out="$3"
export NODE_PATH="$cdk_dir/node_modules" CDK_DISABLE_CLI_TELEMETRY=true CI=true
rm -rf "$out"
synth=(node "$cdk_dir/node_modules/aws-cdk/bin/cdk" synth --quiet --no-notices
  --no-version-reporting --app "node $app_dir/bin/app.js" --output "$out")
cd "$cdk_dir"
if unshare -rn true 2>/dev/null; then
  echo "cdk synth with no network (unshare -rn)"
  unshare -rn "${synth[@]}"
else
  echo "cdk synth: no network namespace here, so the network is present (but not needed)"
  "${synth[@]}"
fi
for stack in rsv-dev rsv-prod; do
  node -e '
    const t = require(process.argv[1]);
    const n = Object.keys(t.Resources || {}).length;
    if (n < 100) { console.error(`${process.argv[1]}: only ${n} resources`); process.exit(1); }
    console.log(`${process.argv[1]}: ${n} resources`);' "$out/$stack.template.json"
done
