# Shared by bench/gateway/run.sh and profile.sh (sourced, not run).

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }

# gateway_config PORT NODE_ID UPSTREAM_PORT [REDIS_PORT|""] [SLOW_MOCK_PORT]: a gateway configuration with
# the benchmark's providers (limits set, so admission does its full work), one client key with an rpm
# limit (the load sends it) and model groups on stdout.
gateway_config() {
  local port=$1 node=$2 up=$3 redis=${4:-} slow=${5:-}
  cat <<YAML
server: { host: 127.0.0.1, port: $port, node_id: $node }
$( [ -n "$redis" ] && echo "redis: { url: 'redis://127.0.0.1:$redis/0', namespace: bench, timeout_ms: 200 }" )
providers:
  - name: bench-plain
    base_url: http://127.0.0.1:$up/plain/v1
    model: bench-model
    limits: { rpm: 1000000000, tpm: 1000000000000, max_concurrent: 1000000 }
  - name: bench-sse
    base_url: http://127.0.0.1:$up/sse/v1
    model: bench-model
    limits: { rpm: 1000000000, tpm: 1000000000000, max_concurrent: 1000000 }
$( [ -n "$slow" ] && printf '  - name: bench-slow\n    base_url: http://127.0.0.1:%s/v1\n    model: slow-model\n    stream_idle_timeout_seconds: 30\n' "$slow" )
keys:
  - { name: bench, key: bench-client-key-0001, limits: { rpm: 1000000000 } }
models:
  - { name: plain, primary: [{ provider: bench-plain }] }
  - { name: sse, primary: [{ provider: bench-sse }] }
$( [ -n "$slow" ] && echo "  - { name: slow, primary: [{ provider: bench-slow }] }" )
YAML
}
