#!/usr/bin/env bash
# Upstream client benchmark: UpstreamBench (libcurl client through OpenAIUpstreamTransport) and wrk against the
# same local nginx, at concurrency 1, 16 and 64, in one run. Prints a Markdown table.
#
#   bench/upstream/run.sh            (DURATION=5 PORT=18090 CONCURRENCY="1 16 64" to change)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-5}
PORT=${PORT:-18090}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nginx wrk)" >&2; exit 1; }
done

swift build -c release --product UpstreamBench >&2
BENCH=$(swift build -c release --show-bin-path)/UpstreamBench

SCRATCH=$(mktemp -d /tmp/upstream-bench.XXXXXX)
sed "s#@SCRATCH@#$SCRATCH#g; s#@PORT@#$PORT#g" bench/upstream/nginx.conf.template > "$SCRATCH/nginx.conf"
nginx -p "$SCRATCH" -c "$SCRATCH/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; wait $NGINX 2>/dev/null; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.1
done
WORKER=$(pgrep -P "$NGINX" | head -1)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }   # utime+stime in clock ticks
HZ=$(getconf CLK_TCK)

echo "| concurrency | client | requests/s | client CPU µs/request | nginx CPU µs/request |"
echo "|---:|---|---:|---:|---:|"
for C in $CONCURRENCY; do
  # wrk: its CPU from /usr/bin/time, requests from its summary.
  n0=$(ticks "$WORKER")
  /usr/bin/time -f "%U %S" -o "$SCRATCH/wrk.time" \
    wrk -t1 -c"$C" -d"${DURATION}s" -s bench/upstream/post.lua "http://127.0.0.1:$PORT/v1/chat/completions" > "$SCRATCH/wrk.out"
  n1=$(ticks "$WORKER")
  reqs=$(awk '/requests in/ {print $1}' "$SCRATCH/wrk.out")
  rps=$(awk '/Requests\/sec/ {printf "%d", $2}' "$SCRATCH/wrk.out")
  wcpu=$(awk -v r="$reqs" '{printf "%.1f", ($1+$2)*1e6/r}' "$SCRATCH/wrk.time")
  ncpu=$(awk -v a="$n0" -v b="$n1" -v r="$reqs" -v hz="$HZ" 'BEGIN {printf "%.1f", (b-a)*1e6/hz/r}')
  echo "| $C | wrk -t1 -c$C | $rps | $wcpu | $ncpu |"

  n0=$(ticks "$WORKER")
  line=$("$BENCH" --url "http://127.0.0.1:$PORT/v1" --concurrency "$C" --duration "$DURATION" | tail -1)
  n1=$(ticks "$WORKER")
  reqs=$(echo "$line" | cut -f2)
  rps=$(echo "$line" | cut -f4)
  ccpu=$(echo "$line" | cut -f5)
  ncpu=$(awk -v a="$n0" -v b="$n1" -v r="$reqs" -v hz="$HZ" 'BEGIN {printf "%.1f", (b-a)*1e6/hz/r}')
  echo "| $C | UpstreamBench (libcurl) | $rps | $ccpu | $ncpu |"
done
