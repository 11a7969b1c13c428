#!/usr/bin/env bash
# Benchmark: seconds from `ouro ps:scale web=0→20` until 20 web dynos answer through the router,
# beside the floor: 20 plain `docker run -d` of the same slug image and command, timed until
# all 20 answer on their port. Also: seconds from killing a dyno until its replacement answers.
# Loopback and local containers only; bounded by timeouts.
#
# Usage: bench/scale/run.sh [N]   (N dynos, default 20). Needs Docker, curl, bc.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20}
BIN=target/release
cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench >/dev/null 2>&1 \
  || cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench

WORK=$(mktemp -d /tmp/ouro-bench-scale.XXXXXX)
PLATFORM=benchscale$$
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.out "$KEEP_LOGS"/; fi
  wait 2>/dev/null || true
  docker ps -aq --filter "label=ouro.platform=$PLATFORM" | xargs -r docker rm -f >/dev/null
  docker ps -aq --filter "label=ouro.bench=$PLATFORM" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=ouro.platform=$PLATFORM" | xargs -r docker network rm >/dev/null
  docker network rm "$PLATFORM-floor" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
# wait_for SECONDS COMMAND...: polls every 50 ms.
wait_for() {
  local limit=$1; shift
  local deadline; deadline=$(echo "$(now) + $limit" | bc)
  until "$@"; do
    if (( $(echo "$(now) > $deadline" | bc) )); then echo "timed out: $*" >&2; return 1; fi
    sleep 0.05
  done
}
listen_line() { grep -o "$1 listening on http://[0-9.:]*" "$2" | sed 's/.*http:\/\///'; }

# The platform: API, runner, router on loopback ports picked by the kernel.
OURO_DATA_DIR=$WORK/data OURO_LISTEN=127.0.0.1:0 $BIN/ouro-api >"$WORK/api.out" 2>&1 & PIDS+=($!)
wait_for 30 grep -q listening "$WORK/api.out"
API=http://$(listen_line ouro-api "$WORK/api.out")
TOKEN=$(cat "$WORK/data/admin-token")
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
OURO_RUNNER_SECRET=$SECRET OURO_API_URL=$API OURO_API_TOKEN=$TOKEN OURO_PLATFORM=$PLATFORM OURO_RUNNER_LISTEN=127.0.0.1:0 \
  OURO_DRAIN_SECONDS=0 OURO_STOP_GRACE_SECONDS=2 $BIN/ouro-dyno-runner >"$WORK/runner.out" 2>&1 & PIDS+=($!)
wait_for 30 grep -q listening "$WORK/runner.out"
RUNNER=$(listen_line ouro-dyno-runner "$WORK/runner.out")
OURO_RUNNER_SECRET=$SECRET OURO_ROUTES_URL=http://$RUNNER/routes OURO_ROUTER_LISTEN=127.0.0.1:0 $BIN/ouro-router >"$WORK/router.out" 2>&1 & PIDS+=($!)
wait_for 30 grep -q listening "$WORK/router.out"
ROUTER=$(listen_line ouro-router "$WORK/router.out")

export OURO_CONFIG_DIR=$WORK/cli
$BIN/ouro login --api "$API" <"$WORK/data/admin-token" >/dev/null
$BIN/ouro apps:create bench >/dev/null
mkdir -p "$WORK/src" && cp -r tests/apps/python-web/app/. "$WORK/src/"
$BIN/ouro deploy "$WORK/src" -a bench >/dev/null

up_in_api() { # web dynos `up` per the API
  curl -s -H "Authorization: Bearer $TOKEN" "$API/apps/bench/dynos" | $BIN/ouro-bench json-count state=up
}
all_up() { [ "$(up_in_api)" -ge "$1" ]; }

# Warm up: the slug image is built on the first deploy; wait for web.1, then scale to 0.
wait_for 300 all_up 1
$BIN/ouro ps:scale web=0 -a bench >/dev/null
wait_for 60 bash -c "[ -z \"\$(docker ps -q --filter label=ouro.platform=$PLATFORM)\" ]"

start=$(now)
$BIN/ouro ps:scale "web=$N" -a bench >/dev/null
wait_for 120 all_up "$N"
routed() { [ "$(for _ in $(seq $((3 * N))); do curl -s -m 2 -H 'Host: bench.localhost' "http://$ROUTER/"; done | awk '/^web\./{print $1}' | sort -u | wc -l)" -ge "$N" ]; }
wait_for 60 routed
ouro_s=$(echo "$(now) - $start" | bc)

# A killed dyno: seconds from SIGKILL of one container until a replacement is up (API) and
# answers through the router.
VICTIM=$(docker ps -q --filter "label=ouro.platform=$PLATFORM" --filter label=ouro.index=2 | head -1)
start=$(now)
echo "kill at $(date -u +%T.%N)" >&2
docker kill "$VICTIM" >/dev/null
# (grep -c, not grep -q: with pipefail an early-exiting grep fails the pipeline)
web2() { [ "$(for _ in $(seq 10); do curl -s -m 2 -H 'Host: bench.localhost' "http://$ROUTER/"; done | grep -c '^web\.2 ')" -gt 0 ]; }
# web.2 answers again (from its replacement: the killed container cannot).
sleep 0.05
wait_for 60 web2
heal_s=$(echo "$(now) - $start" | bc)

# The floor: N plain containers of the same image and command, each answering on its port.
IMAGE=$(docker ps -a --filter "label=ouro.platform=$PLATFORM" --format '{{.Image}}' | head -1)
$BIN/ouro ps:scale web=0 -a bench >/dev/null
docker network create --label "ouro.bench=$PLATFORM" "$PLATFORM-floor" >/dev/null
start=$(now)
for i in $(seq "$N"); do
  docker run -d --label "ouro.bench=$PLATFORM" --network "$PLATFORM-floor" -e PORT=5000 -e DYNO=web.$i \
    "$IMAGE" python3 /app/web.py >/dev/null
done
floor_up() {
  local ips; ips=$(docker ps -q --filter "label=ouro.bench=$PLATFORM" | xargs docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
  for ip in $ips; do curl -s -m 1 "http://$ip:5000/" >/dev/null || return 1; done
  [ "$(echo "$ips" | wc -w)" -ge "$N" ]
}
wait_for 120 floor_up
floor_s=$(echo "$(now) - $start" | bc)

printf 'killed dyno replaced and answering through the router: %.2f s\n' "$heal_s"
printf 'scale 0->%d: ouro %.2f s (until all %d answer through the router), plain docker run %.2f s, ratio %.2fx\n' \
  "$N" "$ouro_s" "$N" "$floor_s" "$(echo "$ouro_s / $floor_s" | bc -l)"
