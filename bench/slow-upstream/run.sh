#!/usr/bin/env bash
# The slow-upstream benchmark: real providers take seconds to answer. 1,000 concurrent clients call one
# gateway node whose only provider answers every request after 1 s — plain (headers after 1 s) and streaming
# (10 events 100 ms apart) — over plain HTTP/1.1 (a self-hosted vLLM/TGI/Ollama) and over HTTPS with HTTP/2
# (nginx with a throw-away test CA in front of the same mock, a hosted API's shape). A gateway that never
# queues serves ≈ 1,000 requests/s with ≈ 0 added latency. Reports requests/s, p50/p99 and the latency added
# over the same load sent to the provider directly, upstream connections opened (gateway metric; nginx's
# access log for HTTP/2), connection waits, and the gateway's peak RSS.
#
#   bench/slow-upstream/run.sh           # DURATION=15 CONNECTIONS=1000 BIN=<a built multiplexer> (results in bench/slow-upstream/results/)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-1000}
OUT=$ROOT/bench/slow-upstream/results
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n 16384 || true

bash scripts/install-deps.sh
if [ -z "${BIN:-}" ]; then
  swift build -c release --product multiplexer 2>&1 | tail -1
  BIN=$ROOT/.build/release/multiplexer
fi

DIR=$(mktemp -d /tmp/mux-slow.XXXXXX)
mkdir -p "$DIR/tmp"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
. bench/gateway/common.sh

# A throw-away CA and a certificate for 127.0.0.1 / localhost.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=mux bench CA" -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DIR/san.ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 -extfile "$DIR/san.ext" -out "$DIR/server.pem" 2>/dev/null

MOCK_PLAIN=$(freeport); MOCK_SSE=$(freeport); TLS_PLAIN=$(freeport); TLS_SSE=$(freeport); GW=$(freeport)
"$BIN" mock-provider --port "$MOCK_PLAIN" --latency-ms 1000 > "$DIR/mock-plain.log" 2>&1 & PIDS+=($!)
"$BIN" mock-provider --port "$MOCK_SSE" --stream-chunks 10 --chunk-delay-ms 100 > "$DIR/mock-sse.log" 2>&1 & PIDS+=($!)
for pair in "plain $MOCK_PLAIN $TLS_PLAIN" "sse $MOCK_SSE $TLS_SSE"; do
  set -- $pair
  sed -e "s#@DIR@#$DIR/$1#g" -e "s#@MOCK_PORT@#$2#g" -e "s#@TLS_PORT@#$3#g" bench/slow-upstream/nginx-tls.conf.template > "$DIR/nginx-$1.conf"
  mkdir -p "$DIR/$1/tmp"; cp "$DIR/server.pem" "$DIR/server.key" "$DIR/$1/"
  nginx -g 'daemon off;' -p "$DIR/$1" -c "$DIR/nginx-$1.conf" & PIDS+=($!)
done
cat > "$DIR/gw.yaml" <<YAML
server: { host: 127.0.0.1, port: $GW, node_id: slow-bench }
providers:
  - { name: h1-plain, base_url: "http://127.0.0.1:$MOCK_PLAIN/v1", model: m, timeout_seconds: 30 }
  - { name: h1-sse, base_url: "http://127.0.0.1:$MOCK_SSE/v1", model: m, timeout_seconds: 30 }
  - { name: h2-plain, base_url: "https://127.0.0.1:$TLS_PLAIN/v1", model: m, timeout_seconds: 30, tls: { ca_file: "$DIR/ca.pem" } }
  - { name: h2-sse, base_url: "https://127.0.0.1:$TLS_SSE/v1", model: m, timeout_seconds: 30, tls: { ca_file: "$DIR/ca.pem" } }
models:
  - { name: h1-plain, primary: [{ provider: h1-plain }] }
  - { name: h1-sse, primary: [{ provider: h1-sse }] }
  - { name: h2-plain, primary: [{ provider: h2-plain }] }
  - { name: h2-sse, primary: [{ provider: h2-sse }] }
YAML
"$BIN" serve --config "$DIR/gw.yaml" --log-level warning > "$DIR/gw.log" 2>&1 & PIDS+=($!)
GW_PID=$!
for p in "$MOCK_PLAIN" "$MOCK_SSE" "$TLS_PLAIN" "$TLS_SSE" "$GW"; do wait_port "$p"; done
sleep 1

# A counter of the gateway's /metrics as an integer (0 when absent).
metric() { curl -s "http://127.0.0.1:$GW/metrics" | awk -v m="$1" '$1 == m {v = $2} END {printf "%d\n", v + 0}'; }
lua() { # $1 model $2 stream
  cat <<LUA
wrk.method = "POST"
wrk.body = '{"model":"$1",$( [ "$2" = 1 ] && echo '"stream":true,' )"messages":[{"role":"user","content":"Answer slowly."}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
LUA
}
# The gateway's CPU time so far (user + system), in clock ticks.
cputicks() { awk '{print $14 + $15}' "/proc/$GW_PID/stat"; }
# run NAME URL MODEL STREAM: one wrk run; prints a TSV row.
run() {
  lua "$3" "$4" > "$DIR/$1.lua"
  local cpu0; cpu0=$(cputicks)
  local opened0 waits0; opened0=$(metric multiplexer_upstream_connections_opened_total); waits0=$(metric multiplexer_upstream_connection_waits_total)
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 20s --latency -s "$DIR/$1.lua" "$2" > "$DIR/$1.wrk" 2>&1 || true
  local rps p50 p99 non2xx errors
  rps=$(awk '/Requests\/sec/{print $2}' "$DIR/$1.wrk")
  p50=$(awk '$1=="50%"{print $2}' "$DIR/$1.wrk"); p99=$(awk '$1=="99%"{print $2}' "$DIR/$1.wrk")
  non2xx=$(awk '/Non-2xx/{print $NF}' "$DIR/$1.wrk"); errors=$(awk '/Socket errors/{print}' "$DIR/$1.wrk")
  local opened waits requests cpu_us
  requests=$(awk '/requests in/{print $1}' "$DIR/$1.wrk")
  cpu_us=$(awk -v t="$(( $(cputicks) - cpu0 ))" -v hz="$(getconf CLK_TCK)" -v n="${requests:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }')
  opened=$(( $(metric multiplexer_upstream_connections_opened_total) - opened0 ))
  waits=$(( $(metric multiplexer_upstream_connection_waits_total) - waits0 ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "$opened" "$waits" "$cpu_us" "${errors:-none}"
}

{
  echo "# slow-upstream benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $CONNECTIONS connections, ${DURATION}s per run"
  printf 'run\treq/s\tp50\tp99\tnon-2xx\tupstream conns opened\tconnection waits\tgateway CPU µs/request\tsocket errors\n'
  run direct-h1-plain "http://127.0.0.1:$MOCK_PLAIN/v1/chat/completions" h1-plain 0
  run gw-h1-plain "http://127.0.0.1:$GW/v1/chat/completions" h1-plain 0
  run direct-h1-sse "http://127.0.0.1:$MOCK_SSE/v1/chat/completions" h1-sse 1
  run gw-h1-sse "http://127.0.0.1:$GW/v1/chat/completions" h1-sse 1
  : > "$DIR/plain/nginx-tls.access.log"; : > "$DIR/sse/nginx-tls.access.log"
  run gw-h2-plain "http://127.0.0.1:$GW/v1/chat/completions" h2-plain 0
  run gw-h2-sse "http://127.0.0.1:$GW/v1/chat/completions" h2-sse 1
  echo "# HTTP/2 connections nginx saw (distinct \$connection), and requests by protocol:"
  for m in plain sse; do
    printf '#   h2-%s: %s connections; %s\n' "$m" "$(awk '{print $1}' "$DIR/$m/nginx-tls.access.log" | sort -u | wc -l)" \
      "$(awk '{print $3}' "$DIR/$m/nginx-tls.access.log" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
  done
  echo "# gateway peak RSS: $(awk '/VmHWM/{print $2}' /proc/$GW_PID/status) kB"
} | tee "$OUT/results.tsv"
