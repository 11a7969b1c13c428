#!/usr/bin/env bash
# Benchmark: a full self-upgrade of Ouro running on itself. `ouro up` on free ports, an app
# under a steady load through the platform's router (one request per 20 ms, each on a new
# connection), then `git push` of this repository's HEAD to the source app `ouro`: seconds per
# phase (receive, build in Ouro's builder with the rust buildpack, slug, release; then the roll
# of ouro-api and of ouro-router until each runs its new release alone) and the requests that
# failed meanwhile (target 0). No peer runs beside it: nothing else upgrades itself in place.
#
# Usage: bench/selfupgrade/run.sh [PROFILE]   (PROFILE `release`, the default, builds as a user
# would; `fast` sets CARGO_PROFILE_RELEASE_OPT_LEVEL=0 on the source app, as the test does).
# Needs Docker, git, curl, bc and crates.io from containers. KEEP_LOGS=DIR keeps logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source "$PWD/bench/lib.sh"
PROFILE=${1:-release}
BIN=$PWD/target/release
cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench >/dev/null 2>&1 \
  || cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench

WORK=$(mktemp -d /tmp/ouro-bench-upgrade.XXXXXX)
PLATFORM=benchupgrade$$
API_PORT=$(free_port) HTTP_PORT=$(free_port) HTTPS_PORT=$(free_port) RUNNER_PORT=$(free_port)
LOAD_PID=
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -f "$WORK/data/runner.pid" ] && kill "$(cat "$WORK/data/runner.pid")" 2>/dev/null || true
  sleep 1
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/*.log "$WORK/data/runner.log" "$KEEP_LOGS"/ 2>/dev/null || true; fi
  remove_platform "$PLATFORM"
  rm -rf "$WORK"
}
trap cleanup EXIT
export OURO_CONFIG_DIR=$WORK/cli
ouro() { "$BIN/ouro" "$@"; }

echo "== machine: $(machine); profile: $PROFILE"
start=$(now)
ouro up --data-dir "$WORK/data" --platform "$PLATFORM" --api-port "$API_PORT" --http-port "$HTTP_PORT" \
  --https-port "$HTTPS_PORT" --runner-port "$RUNNER_PORT" >"$WORK/up.log" 2>&1
echo "ouro up (bootstrap, stack images cached): $(echo "$(now) - $start" | bc) s"
ouro apps:create demo >/dev/null
ouro deploy tests/apps/python-web/app -a demo >/dev/null
answers() { curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: demo.localhost" "http://127.0.0.1:$HTTP_PORT/" | grep -qx 200; }
wait_for 120 answers
if [ "$PROFILE" = fast ]; then
  ouro config:set CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false CARGO_INCREMENTAL=0 -a ouro >/dev/null
fi

# The load: bounded in time (1 h) and count (200k); one line per failure.
(
  deadline=$(( $(date +%s) + 3600 )); n=0
  while [ ! -f "$WORK/stop" ] && [ "$(date +%s)" -lt "$deadline" ] && [ $n -lt 200000 ]; do
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Host: demo.localhost" "http://127.0.0.1:$HTTP_PORT/" || true)
    [ "$code" = 200 ] || echo "$(date +%s.%N) $code" >>"$WORK/failures.log"
    n=$((n + 1)); echo "$n" >"$WORK/served"
    sleep 0.02
  done
) & LOAD_PID=$!

git clone -q --no-local . "$WORK/ouro"
(cd "$WORK/ouro" && "$BIN/ouro" git:remote -a ouro >/dev/null)
GIT_ENV=(HOME="$WORK" PATH="$BIN:$PATH" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0)
# rolled APP DYNO: its only DYNO runs its current release, an upgrade.
rolled() {
  local latest ps
  latest=$(ouro releases -a "$1" -n 1 | grep '^v' | head -1)
  ps=$(ouro ps -a "$1" | grep "^$2:" || true)
  grep -q 'Upgrade to' <<<"$latest" && grep -q "^v$3 " <<<"$latest" && [ "$(wc -l <<<"$ps")" -eq 1 ] \
    && grep -q ": up (release ${latest%% *})" <<<"$ps"
}
version() { ouro releases -a "$1" -n 1 | grep '^v' | head -1 | sed -E 's/^v([0-9]+).*/\1/'; }
# upgrade NAME: pushes the clone's HEAD and reports each phase until both components run it.
upgrade() {
  local name=$1 log="$WORK/push-$1.log" api_next router_next
  api_next=$(( $(version ouro-api) + 1 )); router_next=$(( $(version ouro-router) + 1 ))
  push_start=$(now)
  env "${GIT_ENV[@]}" "$BENCH_TOOL" timed push "$log" -- git -C "$WORK/ouro" push ouro HEAD:main \
    || { echo "the push failed:" >&2; tail -40 "$log" >&2; exit 1; }
  pushed=$(now)
  wait_for 600 rolled ouro-api api.1 "$api_next"; api_done=$(now)
  wait_for 600 rolled ouro-router router.1 "$router_next"; router_done=$(now)
  "$BENCH_TOOL" timed lines "$log" >"$WORK/lines-$name.txt"
  at() { grep -m1 -- "$1" "$WORK/lines-$name.txt" | sed -E 's/^ *\+ *([0-9.]+)s.*/\1/'; }
  local receive built launch upgrading
  receive=$(at 'Building on'); built=$(at 'Discovering process types'); launch=$(at 'Launching'); upgrading=$(at 'Upgrading the platform')
  echo "== $name upgrade: phases (s since the push started)"
  printf '  receive %6.1f  build %6.1f  slug %6.1f  release %6.1f  push done %6.1f\n' \
    "$receive" "$(echo "$built - $receive" | bc)" "$(echo "$launch - $built" | bc)" "$(echo "$upgrading - $launch" | bc)" \
    "$(echo "$pushed - $push_start" | bc)"
  printf '  ouro-api rolled %6.1f after the push, ouro-router %6.1f after that; total %6.1f s\n' \
    "$(echo "$api_done - $pushed" | bc)" "$(echo "$router_done - $api_done" | bc)" "$(echo "$router_done - $push_start" | bc)"
  grep -E 'Rust build done|cargo:|Done:' "$WORK/lines-$name.txt" || true
}

# A cold upgrade (empty build cache), then a warm one: a one-line change to the router, the
# upgrade users make most.
upgrade cold
echo "// A change for the warm upgrade of bench/selfupgrade/run.sh." >>"$WORK/ouro/router/src/lib.rs"
git -C "$WORK/ouro" -c user.name=bench -c user.email=bench@ouro.local commit -qam "A one-line change"
upgrade warm
touch "$WORK/stop"; wait "$LOAD_PID" || true; LOAD_PID=
served=$(cat "$WORK/served"); failed=0
[ -f "$WORK/failures.log" ] && failed=$(wc -l <"$WORK/failures.log")
echo "== load on demo during both upgrades: $served requests, $failed failed"

# The router's replacement window: its dyno killed, the time until a request is served again
# (polled every 10 ms), three times.
windows=()
for _ in 1 2 3; do
  id=$(docker ps -q --filter "label=ouro.platform=$PLATFORM" --filter "name=-ouro-router.router.1")
  [ -n "$id" ] || { echo "no router dyno found" >&2; exit 1; }
  docker kill "$id" >/dev/null; killed=$(now)
  deadline=$(( $(date +%s) + 120 ))
  until answers; do [ "$(date +%s)" -lt "$deadline" ] || { echo "no router after 120 s" >&2; exit 1; }; sleep 0.01; done
  windows+=("$(echo "($(now) - $killed) * 1000" | bc | cut -d. -f1)")
  sleep 3
done
echo "== the router's replacement window after a kill (ms): ${windows[*]} (median $(median "${windows[@]}"))"
