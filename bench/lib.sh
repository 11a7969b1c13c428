# Shell helpers the benchmarks share; `source "$(dirname "$0")/../lib.sh"`.

# The benchmarks' own helper program (bench/tool: a free port, push timing, JSON reading); each
# script builds it with the platform (`cargo build --release --locked … -p ouro-bench`).
BENCH_TOOL=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/ouro-bench

now() { date +%s.%N; }
# Seconds since boot (monotonic), for deadlines: the wall clock may step.
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# wait_for SECONDS COMMAND...: polls every 50 ms.
wait_for() {
  local limit=$1; shift
  local began; began=$(uptime_s)
  local wall; wall=$(now)
  until "$@"; do
    if (( $(echo "$(uptime_s) > $began + $limit" | bc) )); then
      echo "timed out after ${limit}s: $* (waited $(echo "$(uptime_s) - $began" | bc) s by uptime, $(echo "$(now) - $wall" | bc) s by the wall clock)" >&2
      return 1
    fi
    sleep 0.05
  done
}
# listen_line NAME LOG: the address of NAME's `<name> listening on http://…` line in LOG.
listen_line() { grep -o "$1 listening on http://[0-9.:]*" "$2" | head -1 | sed 's/.*http:\/\///'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ratio() { echo "scale=4; $1 / $2" | bc -l; }
free_port() { "$BENCH_TOOL" free-port; }
machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Docker $(docker version -f '{{.Server.Version}}'), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
}
# remove_platform PLATFORM: every container, network and volume of an installation (label
# ouro.platform=PLATFORM), as a benchmark's cleanup.
remove_platform() {
  docker ps -aq --filter "label=ouro.platform=$1" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=ouro.platform=$1" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=ouro.platform=$1" | xargs -r docker volume rm >/dev/null
}
