#!/usr/bin/env bash
# Benchmark: seconds from `ouro addons:create postgresql` to the app answering with the
# database attached (a request through the router that writes a row with DATABASE_URL), split
# into the API's answer, provisioned (`ouro addons:wait`) and answering (the app's dynos rolled
# to the release with the var). Beside it, in the same run, the floor: a plain `docker run` of
# the same PostgreSQL image (the server app's slug image, same start script, a fresh volume)
# until `psql` on this host gets an answer.
#
# Usage: bench/addons/run.sh [RUNS]   (RUNS add-ons created one after the other, default 3).
# Needs Docker, git, curl, bc, psql, and PyPI from containers (the sample app installs
# psycopg). The untimed warm-up pushes the sample app and waits for the PostgreSQL provider's
# system app to be built and up (minutes on a fresh machine). KEEP_LOGS=DIR keeps the logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib.sh
source "$PWD/bench/lib.sh"
RUNS=${1:-3}
BIN=$PWD/target/release
SAMPLE=$PWD/tests/apps/python-addons
cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench >/dev/null 2>&1 \
  || cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench

WORK=$(mktemp -d /tmp/ouro-bench-addons.XXXXXX)
PLATFORM=benchaddons$$
PIDS=()
FLOOR_IMAGE=$PLATFORM-floor:postgresql
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/*.out "$WORK"/logs "$KEEP_LOGS"/ 2>/dev/null || true; fi
  for label in "ouro.platform=$PLATFORM" "ouro.bench=$PLATFORM"; do
    docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "label=$label" | xargs -r docker volume rm >/dev/null
  done
  docker network ls -q --filter "label=ouro.platform=$PLATFORM" | xargs -r docker network rm >/dev/null
  docker rmi "$FLOOR_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/logs"

echo "== machine: $(machine)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# The platform, as scripts/up runs it: the API on every interface (dynos call it), the router's
# port picked first (the API calls the provider app through it), the PostgreSQL provider only.
ROUTER=127.0.0.1:$(free_port)
OURO_DATA_DIR=$WORK/data OURO_LISTEN=0.0.0.0:0 OURO_ROUTER_URL=http://$ROUTER OURO_ADDON_PROVIDERS=postgresql \
  "$BIN"/ouro-api >"$WORK/api.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-api listening' "$WORK/api.out"
API=http://127.0.0.1:$(listen_line ouro-api "$WORK/api.out" | sed 's/.*://')
TOKEN=$(cat "$WORK/data/admin-token")
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
OURO_RUNNER_SECRET=$SECRET OURO_API_URL=$API OURO_API_TOKEN=$TOKEN OURO_PLATFORM=$PLATFORM OURO_RUNNER_LISTEN=127.0.0.1:0 \
  "$BIN"/ouro-dyno-runner >"$WORK/runner.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-dyno-runner listening' "$WORK/runner.out"
RUNNER=$(listen_line ouro-dyno-runner "$WORK/runner.out")
OURO_RUNNER_SECRET=$SECRET OURO_ROUTES_URL=http://$RUNNER/routes OURO_ROUTER_LISTEN=$ROUTER \
  "$BIN"/ouro-router >"$WORK/router.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-router listening' "$WORK/router.out"

export OURO_CONFIG_DIR=$WORK/cli
$BIN/ouro login --api "$API" <"$WORK/data/admin-token" >/dev/null
ouro() { "$BIN/ouro" "$@"; }
api() { curl -fsS -m 10 -H "Authorization: Bearer $TOKEN" "$API$1"; }

echo "== warm-up (not timed): push the sample app, wait for the PostgreSQL provider app"
APP_DIR=$WORK/bench
mkdir -p "$APP_DIR" "$WORK/home" && cp -a "$SAMPLE/." "$APP_DIR/"
GIT_ENV=(HOME="$WORK/home" PATH="$BIN:$PATH" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.com)
(cd "$APP_DIR" && env "${GIT_ENV[@]}" git init -q --initial-branch=main && env "${GIT_ENV[@]}" git add -A \
  && env "${GIT_ENV[@]}" git commit -q -m sample && env "${GIT_ENV[@]}" "$BIN/ouro" apps:create bench >/dev/null \
  && timeout 1800 env "${GIT_ENV[@]}" git push -q ouro main >"$WORK/logs/push" 2>&1) \
  || { echo "the warm-up push failed:" >&2; cat "$WORK/logs/push" >&2; exit 1; }
get() { curl -s -m 10 -H "Host: bench.localhost" "http://$ROUTER$1"; }
answers() { get "$1" | grep -q "$2"; }
wait_for 120 answers / "DATABASE_URL=unset"
provider_up() {
  local version; version=$(api /apps/ouro-postgresql | "$BENCH_TOOL" json-get current_release)
  api /apps/ouro-postgresql/dynos | "$BENCH_TOOL" json-count type=web state=up "release=$version" | grep -qx 1
}
wait_for 1200 provider_up
echo "   provider build: $(api /apps/ouro-postgresql/builds | "$BENCH_TOOL" json-get -1.status)"

echo "== ouro: addons:create postgresql to the app writing a row with DATABASE_URL (s)"
created=(); provisioned=(); answering=()
for i in $(seq "$RUNS"); do
  start=$(now)
  name=$(ouro addons:create postgresql -a bench 2>&1 | grep -o 'postgresql-[a-z]*-[0-9]*' | head -1)
  t_created=$(now)
  # `addons:wait` beside the app's own polling, which is what is timed.
  (ouro addons:wait "$name" -a bench >/dev/null 2>&1 && now >"$WORK/provisioned") & waiter=$!
  wait_for 120 answers "/pg/add?item=run$i" "items: run$i"
  t_answering=$(now)
  wait "$waiter"
  t_provisioned=$(cat "$WORK/provisioned")
  created+=("$(echo "$t_created - $start" | bc)")
  provisioned+=("$(echo "$t_provisioned - $start" | bc)")
  answering+=("$(echo "$t_answering - $start" | bc)")
  printf 'run %d  API answered %6.2f  provisioned %6.2f  app answering %6.2f\n' "$i" "${created[-1]}" "${provisioned[-1]}" "${answering[-1]}"
  if [ "$i" -eq 1 ]; then
    # The floor runs the very image of this server.
    image=$(docker ps --filter "label=ouro.platform=$PLATFORM" --filter "label=ouro.app=$name" --format '{{.Image}}' | head -1)
    docker tag "$image" "$FLOOR_IMAGE"
  fi
  ouro addons:destroy "$name" -a bench --confirm "$name" >/dev/null
  gone() { [ -z "$(docker ps -aq --filter "label=ouro.platform=$PLATFORM" --filter "label=ouro.app=$name")" ]; }
  wait_for 60 gone
  wait_for 60 answers / "DATABASE_URL=unset"
done

echo "== floor: docker run of the same image (start script, fresh volume) until psql gets an answer (s)"
floor=()
PORT=$(free_port)
for i in $(seq "$RUNS"); do
  volume=$PLATFORM-floor-$i
  docker volume create --label "ouro.bench=$PLATFORM" "$volume" >/dev/null
  docker run --rm --label "ouro.bench=$PLATFORM" --user 0 -v "$volume:/data" "$FLOOR_IMAGE" chown 1000:1000 /data >/dev/null
  start=$(now)
  docker run -d --label "ouro.bench=$PLATFORM" --user 1000:1000 -v "$volume:/data" -p "127.0.0.1:$PORT:5000" \
    -e PORT=5000 -e POSTGRES_USER=bench -e POSTGRES_PASSWORD=bench-pw -e POSTGRES_DB=bench "$FLOOR_IMAGE" \
    /bin/bash -c 'for f in /app/.profile.d/*.sh; do . "$f"; done; exec /app/bin/postgresql-server' >/dev/null
  accepts() { PGPASSWORD=bench-pw PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -p "$PORT" -U bench -d bench -tAc 'SELECT 1' >/dev/null 2>&1; }
  wait_for 120 accepts
  floor+=("$(echo "$(now) - $start" | bc)")
  printf 'run %d  accepting %6.2f\n' "$i" "${floor[-1]}"
  docker ps -aq --filter "label=ouro.bench=$PLATFORM" | xargs -r docker rm -f >/dev/null
done

m_ouro=$(median "${answering[@]}"); m_floor=$(median "${floor[@]}")
echo "== medians: ouro addons:create -> app answering $m_ouro s (API answered $(median "${created[@]}"), provisioned $(median "${provisioned[@]}")); docker run -> accepting $m_floor s; ratio $(ratio "$m_ouro" "$m_floor")"
echo "== load average: before $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)"
