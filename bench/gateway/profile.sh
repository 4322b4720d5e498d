#!/usr/bin/env bash
# Profile one gateway under wrk load: starts the benchmark's nginx upstream (and Redis for STORE=redis),
# one `multiplexer serve` (release build), runs wrk, and records the gateway with `perf record -g`
# (cpu-clock sampling: hardware counters are not available on every machine).
#
#   STORE=redis C=64 DURATION=8 bench/gateway/profile.sh     # prints the top symbols; perf.data in $OUT
#   PERF=0 STORE=memory|redis|hop bench/gateway/profile.sh    # CPU µs/request of each process instead
#                                                             # (hop: the nginx proxy_pass hop in the gateway's place)
#   TRACING=1 ...                                             # with `tracing:` (every request sampled; spans
#                                                             # exported to the nginx upstream, which answers 200)
#   BIN=/path/to/multiplexer ...                              # that binary, not built here (A/B runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STORE=${STORE:-redis}; C=${C:-64}; DURATION=${DURATION:-8}; MODE=${MODE:-plain}
OUT=${OUT:-$ROOT/bench/gateway/results/profile-$STORE-c$C}
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  swift build -c release --product multiplexer 2>&1 | tail -1
  BIN=$ROOT/.build/release/multiplexer
fi
DIR=$(mktemp -d /tmp/mux-prof.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
. bench/gateway/common.sh
UP=$(freeport); GW=$(freeport); REDIS=$(freeport)
sed -e "s#@DIR@#$DIR#g" -e "s#@UPSTREAM_PORT@#$UP#g" bench/gateway/nginx-upstream.conf.template > "$DIR/upstream.conf"
nginx -p "$DIR" -c "$DIR/upstream.conf" & PIDS+=($!)
if [ "$STORE" = hop ]; then
  # The nginx proxy_pass hop listens where the gateway would; the LB block's ports are unused.
  sed -e "s#@DIR@#$DIR#g" -e "s#@UPSTREAM_PORT@#$UP#g" -e "s#@PROXY_PORT@#$GW#g" -e "s#@LB_PORT@#$(freeport)#g" \
      -e "s#@GW1@#1#g" -e "s#@GW2@#2#g" -e "s#@GW3@#3#g" bench/gateway/nginx-proxy.conf.template > "$DIR/proxy.conf"
  nginx -p "$DIR" -c "$DIR/proxy.conf" & PIDS+=($!)
fi
if [ "$STORE" = redis ]; then
  redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" > "$DIR/redis.log" 2>&1 & PIDS+=($!)
  wait_port "$REDIS"
fi
gateway_config "$GW" profile "$UP" "$([ "$STORE" = redis ] && echo "$REDIS")" > "$DIR/gw.yaml"
if [ "${TRACING:-0}" = 1 ]; then
  printf 'tracing:\n  otlp_endpoint: http://127.0.0.1:%s/otlp\n  sample_ratio: 1.0\n' "$UP" >> "$DIR/gw.yaml"
fi
if [ "$STORE" = hop ]; then
  wait_port "$UP"; wait_port "$GW"
  GW_PID=$(pgrep -f "nginx: worker process" -P "$(cat "$DIR/proxy.pid")" | head -1)
else
  "$BIN" serve --config "$DIR/gw.yaml" --log-level info > "$DIR/gw.log" 2>&1 & PIDS+=($!)
  GW_PID=$!
  wait_port "$UP"; wait_port "$GW"
fi
threads=1; [ "$C" -ge 64 ] && threads=2
wrk -t"$threads" -c"$C" -d1s -s "bench/gateway/$MODE.lua" "http://127.0.0.1:$GW/v1/chat/completions" > /dev/null
ticks0() { if [ -n "$1" ]; then ticks "$1"; else echo 0; fi; }
if [ "${PERF:-1}" != 1 ]; then
  # No profiler: where the machine's CPU goes, per request, process by process.
  NGX=$(pgrep -f "nginx: worker process" -P "$(cat "$DIR/upstream.pid")" | head -1)
  RP=""; [ "$STORE" = redis ] && RP=$(pgrep -f "redis-server 127.0.0.1:$REDIS" | head -1)
  g0=$(ticks0 "$GW_PID"); n0=$(ticks0 "$NGX"); r0=$(ticks0 "$RP")
  /usr/bin/time -f "%U %S" -o "$DIR/wrk.time" wrk -t"$threads" -c"$C" -d"${DURATION}s" --latency -s "bench/gateway/$MODE.lua" \
    "http://127.0.0.1:$GW/v1/chat/completions" > "$OUT/wrk.txt"
  g1=$(ticks0 "$GW_PID"); n1=$(ticks0 "$NGX"); r1=$(ticks0 "$RP")
  grep -E "Requests/sec|50%|99%" "$OUT/wrk.txt"
  N=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
  awk -v who="$([ "$STORE" = hop ] && echo "nginx proxy" || echo gateway)" -v n="$N" -v g=$((g1 - g0)) -v x=$((n1 - n0)) -v r=$((r1 - r0)) -v w="$(cat "$DIR/wrk.time" | tail -1)" 'BEGIN {
    split(w, a, " "); wt = (a[1] + a[2]) * 100
    printf "CPU µs/request: %s %.1f, redis-server %.1f, nginx upstream %.1f, wrk %.1f, total %.1f\n", who, g*10000/n, r*10000/n, x*10000/n, wt*10000/n, (g+r+x+wt)*10000/n }'
  exit 0
fi
perf record -F ${PERF_FREQ:-2000} -e cpu-clock --call-graph ${CALLGRAPH:-fp} -p "$GW_PID" -o "$OUT/perf.data" -- sleep "$DURATION" 2> /dev/null &
PERF=$!
wrk -t"$threads" -c"$C" -d"${DURATION}s" --latency -s "bench/gateway/$MODE.lua" "http://127.0.0.1:$GW/v1/chat/completions" | tee "$OUT/wrk.txt" | grep -E "Requests/sec|50%|99%"
wait $PERF || true
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' | head -60 | tee "$OUT/top.txt"
