#!/usr/bin/env bash
# The gateway benchmark: one command, one machine. Measures, side by side in the same run:
#   direct      wrk → nginx upstream (fixed chat completion / fixed SSE stream)
#   nginx-hop   wrk → nginx proxy_pass → upstream           (the practical limit of any proxy)
#   gw-memory   wrk → multiplexer serve (in-memory store) → upstream
#   gw-redis    wrk → multiplexer serve (Redis store) → upstream
#   fleet-3     wrk → nginx LB → 3 × multiplexer serve (Redis) → upstream
# at concurrency 1, 16, 64, 256, non-streaming and streaming: requests/s, p50/p90/p99, latency added
# over direct, gateway CPU µs/request, Redis commands per request, peak RSS; then RSS idle and with
# 1,000 concurrent open streams. Writes bench/gateway/results/{results.tsv,report.md,plot.png}.
#
#   bench/gateway/run.sh                 # DURATION=5 CONCURRENCY="1 16 64 256" SETUPS="…" MODES="plain sse"
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-5}
CONCURRENCY=${CONCURRENCY:-"1 16 64 256"}
SETUPS=${SETUPS:-"direct nginx-hop gw-memory gw-redis fleet-3"}
MODES=${MODES:-"plain sse"}
OUT=$ROOT/bench/gateway/results
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 8192 || true

bash scripts/install-deps.sh
swift build -c release --product multiplexer 2>&1 | tail -1
BIN=$ROOT/.build/release/multiplexer

DIR=$(mktemp -d /tmp/mux-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

. bench/gateway/common.sh
hwm() { awk '/VmHWM/{print $2}' /proc/"$1"/status; }
rss() { awk '/VmRSS/{print $2}' /proc/"$1"/status; }

UP=$(freeport); PROXY=$(freeport); LB=$(freeport); GW_MEM=$(freeport); GW_REDIS=$(freeport)
GW1=$(freeport); GW2=$(freeport); GW3=$(freeport); REDIS=$(freeport); SLOW=$(freeport)
for f in upstream proxy; do
  sed -e "s#@DIR@#$DIR#g" -e "s#@UPSTREAM_PORT@#$UP#g" -e "s#@PROXY_PORT@#$PROXY#g" -e "s#@LB_PORT@#$LB#g" \
      -e "s#@GW1@#$GW1#g" -e "s#@GW2@#$GW2#g" -e "s#@GW3@#$GW3#g" bench/gateway/nginx-$f.conf.template > "$DIR/$f.conf"
  nginx -p "$DIR" -c "$DIR/$f.conf" & PIDS+=($!)
done
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --maxmemory-policy noeviction > "$DIR/redis.log" 2>&1 & PIDS+=($!)
REDIS_PID=$!
"$BIN" mock-provider --port "$SLOW" --stream-chunks 100 --chunk-delay-ms 100 > "$DIR/slow.log" 2>&1 & PIDS+=($!)
wait_port "$UP"; wait_port "$PROXY"; wait_port "$REDIS"; wait_port "$SLOW"

start_gw() { # $1 port $2 node $3 redis
  gateway_config "$1" "$2" "$UP" "$([ "$3" = 1 ] && echo "$REDIS")" "$SLOW" > "$DIR/$2.yaml"
  "$BIN" serve --config "$DIR/$2.yaml" --log-level info > "$DIR/$2.log" 2>&1 & PIDS+=($!)
  echo $!
}
GWM_PID=$(start_gw "$GW_MEM" gw-memory 0)
GWR_PID=$(start_gw "$GW_REDIS" gw-redis 1)
F1=$(start_gw "$GW1" fleet-1 1); F2=$(start_gw "$GW2" fleet-2 1); F3=$(start_gw "$GW3" fleet-3 1)
# start_gw runs in a command substitution (a subshell): its PIDS+= is lost, so the gateways are added here
# (they were left running after the benchmark before).
PIDS+=("$GWM_PID" "$GWR_PID" "$F1" "$F2" "$F3")
for p in "$GW_MEM" "$GW_REDIS" "$GW1" "$GW2" "$GW3" "$LB"; do wait_port "$p"; done
sleep 1
IDLE_RSS=$(rss "$GWM_PID"); IDLE_RSS_REDIS=$(rss "$GWR_PID")

redis_calls() { redis-cli -p "$REDIS" INFO commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_/ && $1 != "cmdstat_info" {s += $3} END {print s+0}'; }
redis_top() { redis-cli -p "$REDIS" INFO commandstats | tr -d '\r' | awk -F'[=,:]' '/^cmdstat_evalsha/ {print $3}'; }

url_for() { # setup mode
  local path=/v1/chat/completions
  case "$1" in
    direct) [ "$2" = sse ] && echo "http://127.0.0.1:$UP/sse/v1/chat/completions" || echo "http://127.0.0.1:$UP/plain/v1/chat/completions" ;;
    nginx-hop) [ "$2" = sse ] && echo "http://127.0.0.1:$PROXY/sse/v1/chat/completions" || echo "http://127.0.0.1:$PROXY$path" ;;
    gw-memory) echo "http://127.0.0.1:$GW_MEM$path" ;;
    gw-redis) echo "http://127.0.0.1:$GW_REDIS$path" ;;
    fleet-3) echo "http://127.0.0.1:$LB$path" ;;
  esac
}
pids_for() {
  case "$1" in gw-memory) echo "$GWM_PID" ;; gw-redis) echo "$GWR_PID" ;; fleet-3) echo "$F1 $F2 $F3" ;; *) echo "" ;; esac
}
to_ms() { # wrk latency value (e.g. 1.23ms, 850.00us, 1.02s) → ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

TSV=$OUT/results.tsv
printf "setup\tmode\tconcurrency\treq_s\tp50_ms\tp90_ms\tp99_ms\tgw_cpu_us_req\tredis_cmds_req\tredis_evalsha_req\tpeak_rss_kb\terrors\n" > "$TSV"
for mode in $MODES; do
  for setup in $SETUPS; do
    for c in $CONCURRENCY; do
      url=$(url_for "$setup" "$mode"); pids=$(pids_for "$setup")
      t0=0; for p in $pids; do t0=$((t0 + $(ticks "$p"))); done
      r0=$(redis_calls); e0=$(redis_top); e0=${e0:-0}
      threads=1; [ "$c" -ge 64 ] && threads=2
      out=$(wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s "bench/gateway/$mode.lua" "$url" 2>&1)
      t1=0; for p in $pids; do t1=$((t1 + $(ticks "$p"))); done
      r1=$(redis_calls); e1=$(redis_top); e1=${e1:-0}
      reqs=$(echo "$out" | awk '/requests in/ {print $1}')
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
      p90=$(to_ms "$(echo "$out" | awk '$1=="90%" {print $2}')")
      p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
      errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {s = s $0 " "} END {print s}')
      cpu="-"; rcmd="-"; revs="-"; peak="-"
      if [ -n "$pids" ] && [ "${reqs:-0}" -gt 0 ]; then
        cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" 'BEGIN {printf "%.1f", (b-a)*10000/n}')
        peak=0; for p in $pids; do h=$(hwm "$p"); [ "$h" -gt "$peak" ] && peak=$h; done
        if [ "$setup" != gw-memory ]; then
          rcmd=$(awk -v a="$r0" -v b="$r1" -v n="$reqs" 'BEGIN {printf "%.1f", (b-a)/n}')
          revs=$(awk -v a="$e0" -v b="$e1" -v n="$reqs" 'BEGIN {printf "%.2f", (b-a)/n}')
        fi
      fi
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$setup" "$mode" "$c" "$rps" "$p50" "$p90" "$p99" "$cpu" "$rcmd" "$revs" "$peak" "${errs:-}" | tee -a "$TSV"
    done
  done
done

# Memory: 1,000 concurrent open streams through one gateway (the slow upstream streams for ~10 s).
cat > "$DIR/slow.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"model":"slow","stream":true,"messages":[{"role":"user","content":"a long stream"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-client-key-0001"
LUA
wrk -t2 -c1000 -d12s --timeout 30s -s "$DIR/slow.lua" "http://127.0.0.1:$GW_MEM/v1/chat/completions" > "$DIR/streams.txt" 2>&1 &
WRK=$!
# Sample every half second while the streams run; keep the sample with the most streams open (wrk opens
# its 1,000 connections over the first seconds) and the highest RSS seen.
OPEN=0; STREAM_RSS=0
for _ in $(seq 1 20); do
  sleep 0.5
  o=$(curl -s "http://127.0.0.1:$SLOW/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])' 2>/dev/null || echo 0)
  r=$(rss "$GWM_PID")
  [ "$o" -gt "$OPEN" ] && OPEN=$o
  [ "$r" -gt "$STREAM_RSS" ] && STREAM_RSS=$r
done
wait $WRK || true
{
  printf "memory\tidle_rss_kb_memory_store\t%s\n" "$IDLE_RSS"
  printf "memory\tidle_rss_kb_redis_store\t%s\n" "$IDLE_RSS_REDIS"
  printf "memory\tpeak_rss_kb_with_open_streams\t%s\n" "$STREAM_RSS"
  printf "memory\tmost_streams_open_at_once\t%s\n" "$OPEN"
} | tee "$OUT/memory.tsv"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB, $(uname -sr), $(swift --version 2>&1 | head -1)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*\///'), redis: $(redis-server --version | awk '{print $3}'), wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "command: DURATION=$DURATION CONCURRENCY=\"$CONCURRENCY\" bench/gateway/run.sh"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
PY=python3
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  [ -x .build/bench-venv/bin/python ] || { python3 -m venv .build/bench-venv && .build/bench-venv/bin/pip install -q matplotlib; }
  PY=.build/bench-venv/bin/python
fi
"$PY" bench/gateway/report.py "$OUT"
echo "results in $OUT (report.md, plot.png)"
