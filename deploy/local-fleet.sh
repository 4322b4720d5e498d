#!/usr/bin/env bash
# A whole fleet on this machine without Docker: redis-server, N × `multiplexer serve`, nginx as the
# load balancer (config, pid and temp files in a temp folder), and mock providers with strict limits.
# It is `multiplexer demo --keep-running` in the background; stop stops every process it started.
#
#   deploy/local-fleet.sh start [NODES]   # default 3 nodes; prints the endpoints
#   deploy/local-fleet.sh status
#   deploy/local-fleet.sh stop
#
# Environment: MULTIPLEXER_BINARY (default .build/debug/multiplexer, built if missing),
# FLEET_STATE_DIR (default /tmp/multiplexer-local-fleet), FLEET_REQUESTS (demo traffic first, default 0).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE="${FLEET_STATE_DIR:-/tmp/multiplexer-local-fleet}"
BIN="${MULTIPLEXER_BINARY:-.build/debug/multiplexer}"
PIDFILE="$STATE/pid"
LOG="$STATE/fleet.log"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

endpoints() { sed -n '/The fleet keeps running/,$p' "$LOG"; }

case "${1:-}" in
  start)
    if running; then echo "already running (pid $(cat "$PIDFILE"))"; endpoints; exit 0; fi
    nodes="${2:-3}"
    if [ ! -x "$BIN" ]; then
      bash scripts/install-deps.sh
      swift build --product multiplexer
    fi
    mkdir -p "$STATE"
    : > "$LOG"
    nohup "$BIN" demo --nodes "$nodes" --redis --nginx --requests "${FLEET_REQUESTS:-0}" --keep-running >>"$LOG" 2>&1 </dev/null &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 300); do
      if grep -q "The fleet keeps running" "$LOG"; then endpoints; echo "(pid $(cat "$PIDFILE"), log $LOG)"; exit 0; fi
      if ! running; then echo "the fleet did not start:"; cat "$LOG"; rm -f "$PIDFILE"; exit 1; fi
      sleep 0.2
    done
    echo "the fleet did not come up within 60 s:"; cat "$LOG"; "$0" stop; exit 1
    ;;
  status)
    if ! running; then echo "not running"; exit 3; fi
    echo "running (pid $(cat "$PIDFILE"))"
    endpoints | grep -E '^  (gateway|load balancer)' | while read -r kind name url _; do
      [ "$kind" = "load" ] && continue
      printf '  %s %s  /readyz: %s\n' "$name" "$url" "$(curl -s -m 2 "$url/readyz" || echo unreachable)"
    done
    endpoints | grep -E '^  load balancer' || true
    ;;
  stop)
    if ! running; then echo "not running"; rm -f "$PIDFILE"; exit 0; fi
    pid="$(cat "$PIDFILE")"
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "still running after 30 s: SIGKILL (its children die with it)"; kill -KILL "$pid"
    fi
    rm -f "$PIDFILE"
    echo "stopped"
    ;;
  *)
    echo "usage: $0 start [NODES] | status | stop" >&2
    exit 2
    ;;
esac
