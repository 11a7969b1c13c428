#!/usr/bin/env bash
# Benchmark: `ouro chaos` for 60 s against an app of 3 web dynos with a PostgreSQL add-on, on
# Ouro running on itself (`ouro up`): a web dyno killed every 5 s, and the router, the API and
# the runner once each, at random slots, under chaos's own load (4 loops through the router
# on loopback). It prints chaos's report: each kill, its time to heal and the requests that
# failed until the next kill; and the rows written to the add-on before and during the run
# (one every half second, through `psql` and the add-on's tunnel), all of which must be there.
# No peer runs beside it: none has a chaos monkey built in; the figures are Ouro's own.
#
# Usage: bench/chaos/run.sh [DURATION [EVERY]]   (default 60 5). BIN=DIR uses the binaries
# there instead of a release build. Needs Docker, curl, bc, psql and crates.io from containers
# (the PostgreSQL provider is built by the platform's builder). KEEP_LOGS=DIR keeps logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source "$PWD/bench/lib.sh"
DURATION=${1:-60}
EVERY=${2:-5}
if [ -z "${BIN:-}" ]; then
  BIN=$PWD/target/release
  cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench >/dev/null 2>&1 \
    || cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench
fi
BENCH_TOOL=$BIN/ouro-bench

WORK=$(mktemp -d /tmp/ouro-bench-chaos.XXXXXX)
PLATFORM=benchchaos$$
API_PORT=$(free_port) HTTP_PORT=$(free_port) HTTPS_PORT=$(free_port) RUNNER_PORT=$(free_port)
cleanup() {
  [ -f "$WORK/data/runner.pid" ] && kill "$(cat "$WORK/data/runner.pid")" 2>/dev/null || true
  sleep 1
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/*.log "$WORK"/*.txt "$WORK/data/runner.log" "$KEEP_LOGS"/ 2>/dev/null || true; fi
  remove_platform "$PLATFORM"
  rm -rf "$WORK"
}
trap cleanup EXIT
export OURO_CONFIG_DIR=$WORK/cli
ouro() { "$BIN/ouro" "$@"; }

echo "== machine: $(machine)"
ouro up --data-dir "$WORK/data" --platform "$PLATFORM" --api-port "$API_PORT" --http-port "$HTTP_PORT" \
  --https-port "$HTTPS_PORT" --runner-port "$RUNNER_PORT" >"$WORK/up.log" 2>&1
ouro apps:create demo >/dev/null
ouro deploy tests/apps/python-web/app -a demo >/dev/null
ouro ps:scale web=3 -a demo >/dev/null
three_up() { [ "$(ouro ps -a demo | grep -c '^web\.[0-9]*: up')" -eq 3 ]; }
wait_for 300 three_up
echo "== waiting for the PostgreSQL provider (built by the platform's builder: minutes)"
provider_up() { ouro ps -a ouro-postgresql 2>/dev/null | grep -q '^web\.1: up'; }
wait_for 1800 provider_up
addon=$(ouro addons:create postgresql -a demo 2>&1 | grep -o 'postgresql-[a-z]*-[0-9]*' | head -1)
ouro addons:wait "$addon" -a demo >/dev/null
three_again() { three_up && ouro releases -a demo -n 1 | grep -q 'DATABASE'; }
wait_for 300 three_again || true
wait_for 120 three_up

echo "== ouro chaos -a demo --duration $DURATION --every $EVERY --targets dynos,router,api,runner"
status=0
ouro chaos -a demo --duration "$DURATION" --every "$EVERY" --targets dynos,router,api,runner \
  --data-dir "$WORK/data" --runner-port "$RUNNER_PORT" | tee "$WORK/chaos.txt" || status=$?
exit "$status"
