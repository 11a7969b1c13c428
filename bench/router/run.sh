#!/usr/bin/env bash
# Benchmark: requests/s and p99 latency of one backend reached directly, through ouro-router, and
# through nginx configured as the same reverse proxy (upstream keep-alive, forwarded headers, one
# access-log line per request), with `wrk -t2 -c50 -d10s` on loopback. Prints the figures and
# the ratios to the direct backend and to nginx.
#
# Usage: bench/router/run.sh   (env: DURATION=10s CONNECTIONS=50 THREADS=2 WARMUP=2s)
# Needs: cargo, curl; installs wrk and nginx with apt-get when missing.
# Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
HOST=bench.localhost

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -p ouro-router -p ouro-bench --bin ouro-router --bin ouro-bench --example bench_backend >/dev/null 2>&1 \
  || cargo build --release -p ouro-router -p ouro-bench --bin ouro-router --bin ouro-bench --example bench_backend
BIN=target/release

WORK=$(mktemp -d /tmp/ouro-bench-router.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...: polls every 50 ms.
wait_for() {
  local limit=$1; shift
  local tries=$((limit * 20))
  until "$@"; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then echo "timed out: $*" >&2; return 1; fi
    sleep 0.05
  done
}
listen_line() { grep -o "$1 listening on http://[0-9.:]*" "$2" | head -1 | sed 's/.*http:\/\///'; }
free_port() { $BIN/ouro-bench free-port; }
answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "http://$1/")" = 200 ]; }

# The backend.
$BIN/examples/bench_backend 127.0.0.1:0 >"$WORK/backend.out" 2>&1 & PIDS+=($!)
wait_for 10 grep -q listening "$WORK/backend.out"
BACKEND=$(listen_line bench-backend "$WORK/backend.out")

# ouro-router, following a static route source. Its request log goes to /dev/null, so the port
# is chosen here rather than read from its stdout.
$BIN/ouro-bench route-source "$HOST" "$BACKEND" >"$WORK/routes.out" 2>&1 & PIDS+=($!)
wait_for 10 grep -q listening "$WORK/routes.out"
ROUTES=$(listen_line route-source "$WORK/routes.out")
ROUTER=127.0.0.1:$(free_port)
OURO_ROUTES_URL=http://$ROUTES/routes OURO_ROUTER_LISTEN=$ROUTER $BIN/ouro-router >/dev/null 2>"$WORK/router.err" & PIDS+=($!)
wait_for 10 answers "$ROUTER"

# nginx as the same reverse proxy: keep-alive to the upstream, the same request headers added,
# one access-log line per request (like the router's log line), as many workers as cores.
NGINX_ADDR=127.0.0.1:$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log /dev/null;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream app { server $BACKEND; keepalive 64; }
  server {
    listen $NGINX_ADDR;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_set_header X-Request-Id \$request_id;
      proxy_set_header X-Request-Start \$msec;
      proxy_set_header Via "1.1 nginx";
      add_header X-Request-Id \$request_id;
    }
  }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx.out" 2>&1 & PIDS+=($!)
wait_for 10 answers "$NGINX_ADDR"

# bench NAME ADDR: warm up, run wrk, print "NAME rps p99_ms".
bench() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "Host: $HOST" "http://$2/" >/dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Host: $HOST" "http://$2/" >"$WORK/$1.wrk"
  if grep -q "Non-2xx" "$WORK/$1.wrk"; then echo "$1: non-2xx answers" >&2; cat "$WORK/$1.wrk" >&2; return 1; fi
  local rps p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/$1.wrk")
  p99=$(awk '$1 == "99%" { v = $2;
          if (v ~ /us$/) { sub(/us$/, "", v); v = v / 1000 }
          else if (v ~ /ms$/) { sub(/ms$/, "", v) }
          else if (v ~ /s$/) { sub(/s$/, "", v); v = v * 1000 }
          print v }' "$WORK/$1.wrk")
  echo "$1 $rps $p99"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores, loopback"
{
  bench backend "$BACKEND"
  bench ouro-router "$ROUTER"
  bench nginx "$NGINX_ADDR"
} >"$WORK/results"
awk '
  { name[NR] = $1; rps[$1] = $2; p99[$1] = $3 }
  END {
    printf "%-12s %12s %10s\n", "target", "requests/s", "p99 ms"
    for (i = 1; i <= NR; i++) printf "%-12s %12.0f %10.2f\n", name[i], rps[name[i]], p99[name[i]]
    printf "ouro-router / backend: %.2f of the requests/s, p99 x%.2f\n", rps["ouro-router"] / rps["backend"], p99["ouro-router"] / p99["backend"]
    printf "nginx / backend:       %.2f of the requests/s, p99 x%.2f\n", rps["nginx"] / rps["backend"], p99["nginx"] / p99["backend"]
    printf "ouro-router / nginx:   %.2f of the requests/s, p99 x%.2f\n", rps["ouro-router"] / rps["nginx"], p99["ouro-router"] / p99["nginx"]
  }' "$WORK/results"
