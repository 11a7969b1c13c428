#!/usr/bin/env bash
# Benchmark: seconds from the start of `git push` until the new release of the Python sample
# (tests/apps/python-requests) answers through the router, cold (a fresh app, empty build
# cache) and warm (small commits, cache kept), split into receive / build / slug / release /
# boot from the push's own `remote:` lines as they arrive. Beside it, in the same run, the
# floor a user would pick instead: `docker build` of an equivalent Dockerfile on the same run
# stack image, then `docker run` until it answers; cold (--no-cache) and warm (one source line
# changed, the requirements layer cached).
#
# Usage: bench/push/run.sh [WARM]   (WARM warm pushes and warm floor builds, default 3).
# Needs Docker, git, curl, bc, and network access from containers to PyPI (both the
# buildpack and the Dockerfile install from it). The stack images are built by the runner if
# missing (minutes) during the untimed warm-up push. KEEP_LOGS=DIR keeps the logs.
#
# The API listens on 0.0.0.0 (a random port): build dynos call it from their containers
# through host.docker.internal. Everything else is on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
WARM=${1:-3}
BIN=$PWD/target/release
SAMPLE=$PWD/tests/apps/python-requests
cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench >/dev/null 2>&1 \
  || cargo build --release --locked -p ouro-api -p ouro-cli -p ouro-dyno-runner -p ouro-router -p ouro-builder -p ouro-addons -p ouro-bench

WORK=$(mktemp -d /tmp/ouro-bench-push.XXXXXX)
PLATFORM=benchpush$$
PIDS=()
IMAGES=() # slug images of this run's apps and the floor's images: removed at exit
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -r "$WORK"/*.out "$WORK"/logs "$KEEP_LOGS"/ 2>/dev/null || true; fi
  for label in "ouro.platform=$PLATFORM" "ouro.bench=$PLATFORM"; do
    docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  done
  docker network ls -q --filter "label=ouro.platform=$PLATFORM" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=ouro.platform=$PLATFORM" | xargs -r docker volume rm >/dev/null
  # Without -f: an image some other container uses stays.
  for image in "${IMAGES[@]}"; do docker rmi "$image" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=../lib.sh
source "$PWD/bench/lib.sh"
mkdir -p "$WORK/logs"

echo "== machine: $(machine)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
had_stack=$(docker images -q ouro/stack | wc -l); had_build_stack=$(docker images -q ouro/stack-build | wc -l)
echo "== before the run: ouro/stack images: $had_stack, ouro/stack-build images: $had_build_stack"

# The platform. The API on every interface (build dynos reach it from containers), the rest on
# loopback; the runner and the CLI use the API over loopback.
OURO_DATA_DIR=$WORK/data OURO_LISTEN=0.0.0.0:0 $BIN/ouro-api >"$WORK/api.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-api listening' "$WORK/api.out"
API=http://127.0.0.1:$(listen_line ouro-api "$WORK/api.out" | sed 's/.*://')
TOKEN=$(cat "$WORK/data/admin-token")
OURO_API_URL=$API OURO_API_TOKEN=$TOKEN OURO_PLATFORM=$PLATFORM OURO_RUNNER_LISTEN=127.0.0.1:0 \
  $BIN/ouro-dyno-runner >"$WORK/runner.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-dyno-runner listening' "$WORK/runner.out"
RUNNER=$(listen_line ouro-dyno-runner "$WORK/runner.out")
OURO_ROUTES_URL=http://$RUNNER/routes OURO_ROUTER_LISTEN=127.0.0.1:0 OURO_ROUTER_TLS_LISTEN=127.0.0.1:0 \
  $BIN/ouro-router >"$WORK/router.out" 2>&1 & PIDS+=($!)
wait_for 60 grep -q 'ouro-router listening' "$WORK/router.out"
ROUTER=$(listen_line ouro-router "$WORK/router.out")

export OURO_CONFIG_DIR=$WORK/cli
$BIN/ouro login --api "$API" <"$WORK/data/admin-token" >/dev/null
# git as a user's: its own HOME, no system config; `ouro` (the credential helper) on PATH.
GIT_ENV=(HOME="$WORK/home" PATH="$BIN:$PATH" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.com)
mkdir -p "$WORK/home"
in_repo() { local dir=$1; shift; (cd "$dir" && env "${GIT_ENV[@]}" "$@"); }

# new_app APP: a checkout of the sample with the app created (and its `ouro` remote) in it.
new_app() {
  local dir=$WORK/$1
  mkdir -p "$dir" && cp -a "$SAMPLE/." "$dir/"
  in_repo "$dir" git init -q --initial-branch=main
  in_repo "$dir" git add -A
  in_repo "$dir" git commit -q -m "the python-requests sample"
  in_repo "$dir" "$BIN/ouro" apps:create "$1" >/dev/null
}
# say APP TEXT: commit a change of the page's first words to TEXT.
say() {
  sed -i -E "s/f\"[^\"{]* from six/f\"$2 from six/" "$WORK/$1/web.py"
  grep -q "f\"$2 from six" "$WORK/$1/web.py"
  in_repo "$WORK/$1" git commit -q -am "say $2"
}
answers() { curl -s -m 2 -H "Host: $1.localhost" "http://$ROUTER/" | grep -q "$2"; }
# Web containers of APP running (old and new releases while they overlap).
web_containers() { docker ps -q --filter "label=ouro.platform=$PLATFORM" --filter "label=ouro.app=$1" --filter label=ouro.type=web | wc -l; }
one_web_container() { [ "$(web_containers "$1")" -eq 1 ]; }

# push NAME APP EXPECT [TIMEOUT]: times `git push ouro main` and the wait until the page has
# EXPECT; prints the phases; sets PHASES (receive build slug release boot total).
push() {
  local name=$1 app=$2 expect=$3 limit=${4:-600} log=$WORK/logs/$1.push
  if ! timeout "$limit" "$BENCH_TOOL" timed push "$log" -- env "${GIT_ENV[@]}" git -C "$WORK/$app" push ouro main; then
    echo "git push ($name) failed:" >&2; cat "$log" >&2; return 1
  fi
  wait_for 120 answers "$app" "$expect"
  local served; served=$(now)
  PHASES=$("$BENCH_TOOL" timed phases "$log" "$served")
  printf '%-8s receive %5s  build %5s  slug %5s  release %5s  boot %5s  = %6s s\n' "$name" $PHASES
  "$BENCH_TOOL" timed runner "$log" "$WORK/runner.out" "$app" "$served"
  IMAGES+=("$(docker ps --filter "label=ouro.platform=$PLATFORM" --filter "label=ouro.app=$app" --filter label=ouro.type=web --format '{{.Image}}' | head -1)")
  # The previous release's dyno drains and stops before the next run starts.
  wait_for 90 one_web_container "$app"
}

echo "== warm-up (not timed): one push of a throwaway app, so that the stack images and the builder's slug image exist"
new_app warmup
push warmup warmup "hello from six 1.17.0" 1800
# (The runner logs the builder's slug image build, as any other.)
if grep -q 'slug image built app=ouro-builder' "$WORK/runner.out"; then builder_note="was built during the warm-up"; else builder_note="existed before the run"; fi
echo "   stack images existed before the run: run $([ "$had_stack" -gt 0 ] && echo yes || echo no), build $([ "$had_build_stack" -gt 0 ] && echo yes || echo no); the builder slug image $builder_note"

echo "== ouro: git push to serving (s), per phase"
new_app bench
push cold bench "hello from six 1.17.0"
read -r _ _ _ _ _ ouro_cold <<<"$PHASES"
ouro_warm=(); phase_rows=()
for i in $(seq "$WARM"); do
  say bench "push-$i"
  push "warm-$i" bench "push-$i from six"
  ouro_warm+=("$(echo "$PHASES" | awk '{print $6}')")
  phase_rows+=("$PHASES")
done
# Median of each phase over the warm pushes.
warm_phase_medians=()
for col in 1 2 3 4 5; do
  warm_phase_medians+=("$(median $(printf '%s\n' "${phase_rows[@]}" | awk -v c=$col '{print $c}'))")
done
printf '%-8s receive %5s  build %5s  slug %5s  release %5s  boot %5s  (medians)\n' "warm" "${warm_phase_medians[@]}"
echo "   the last warm push, line by line:"
"$BENCH_TOOL" timed lines "$WORK/logs/warm-$WARM.push" | grep -v '^ *+ *[0-9.]*s  *remote: *$'

# The floor: the same app as a Dockerfile on the run stack that the app's slug image is built on.
SLUG_IMAGE=${IMAGES[-1]}
STACK=
layers=$(docker history -q "$SLUG_IMAGE" 2>/dev/null || true)
for tag in $(docker images --format '{{.Repository}}:{{.Tag}}' ouro/stack); do
  if grep -q "$(docker images -q "$tag")" <<<"$layers"; then STACK=$tag; break; fi
done
STACK=${STACK:-$(docker images --format '{{.Repository}}:{{.Tag}}' ouro/stack | head -1)}
FLOOR=$WORK/floor
mkdir -p "$FLOOR" && cp -a "$SAMPLE/." "$FLOOR/"
# As the buildpack: a venv of the stack's python3 without pip, pip's newest wheel from PyPI
# installed into it, then the requirements; the requirements layer before the app's files.
# (pip's wheel from the simple index, as the buildpack does: PyPI's JSON API may give relative URLs.)
cat >"$FLOOR/Dockerfile" <<'EOF'
FROM STACK
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1
RUN python3 -m venv --without-pip /app/.venv \
 && url=$(curl -fsSL --retry 3 https://pypi.org/simple/pip/ | python3 -c 'import re, sys; links = re.findall(r"href=\"([^\"]*/pip-([0-9.]+)-py3-none-any[.]whl)#sha256=", sys.stdin.read()); links.sort(key=lambda l: tuple(int(x) for x in l[1].split("."))); print(links[-1][0])') \
 && whl=/tmp/$(basename "$url") && curl -fsSL --retry 3 -o "$whl" "$url" \
 && python "$whl/pip" install --quiet --no-index "$whl" && rm "$whl"
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
CMD python web.py
EOF
sed -i "s|^FROM STACK\$|FROM $STACK|" "$FLOOR/Dockerfile"
PORT=$(free_port)
floor_answers() { curl -s -m 2 "http://127.0.0.1:$PORT/" | grep -q "$1"; }
# floor NAME EXPECT [BUILD FLAGS]: docker build, then docker run until the page has EXPECT;
# sets FLOOR_S (build run total).
floor() {
  local name=$1 expect=$2; shift 2
  docker ps -aq --filter "label=ouro.bench=$PLATFORM" | xargs -r docker rm -f >/dev/null
  local image=$PLATFORM-floor:$name start built answered
  IMAGES+=("$image")
  start=$(now)
  if ! timeout 900 docker build "$@" -t "$image" "$FLOOR" >"$WORK/logs/floor-$name.build" 2>&1; then
    echo "docker build ($name) failed:" >&2; cat "$WORK/logs/floor-$name.build" >&2; return 1
  fi
  built=$(now)
  docker run -d --label "ouro.bench=$PLATFORM" -p "127.0.0.1:$PORT:5000" -e PORT=5000 "$image" >/dev/null
  wait_for 60 floor_answers "$expect"
  answered=$(now)
  FLOOR_S="$(echo "$built - $start" | bc) $(echo "$answered - $built" | bc) $(echo "$answered - $start" | bc)"
  printf '%-8s docker build %5.2f  docker run until it answers %5.2f  = %6.2f s\n' "$name" $FLOOR_S
}

echo "== floor: docker build (FROM $STACK) + docker run until it answers on 127.0.0.1:$PORT (s)"
floor cold "hello from six 1.17.0" --no-cache
floor_cold=$(echo "$FLOOR_S" | awk '{print $3}')
floor_warm=(); floor_rows=()
for i in $(seq "$WARM"); do
  sed -i -E "s/f\"[^\"{]* from six/f\"floor-$i from six/" "$FLOOR/web.py"
  floor "warm-$i" "floor-$i from six"
  floor_warm+=("$(echo "$FLOOR_S" | awk '{printf "%.2f", $3}')")
  floor_rows+=("$FLOOR_S")
done
printf '%-8s docker build %5.2f  docker run until it answers %5.2f  (medians)\n' warm \
  "$(median $(printf '%s\n' "${floor_rows[@]}" | awk '{print $1}'))" "$(median $(printf '%s\n' "${floor_rows[@]}" | awk '{print $2}'))"

ow=$(median "${ouro_warm[@]}"); fw=$(median "${floor_warm[@]}")
echo
echo "| | ouro git push → serving | docker build + run → serving | ouro / floor |"
echo "|---|---|---|---|"
printf '| cold | %.2f s | %.2f s | %.2f× |\n' "$ouro_cold" "$floor_cold" "$(ratio "$ouro_cold" "$floor_cold")"
printf '| warm (median of %d) | %.2f s (%s) | %.2f s (%s) | %.2f× |\n' "$WARM" "$ow" "${ouro_warm[*]}" "$fw" "${floor_warm[*]}" "$(ratio "$ow" "$fw")"
echo
verdict() { if (( $(echo "$1" | bc) )); then echo met; else echo "NOT met"; fi; }
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (at the start: $LOAD_START)"
echo "target warm ≤ 1.5× floor: $(verdict "$ow <= 1.5 * $fw"); target warm < 10 s: $(verdict "$ow < 10")"
