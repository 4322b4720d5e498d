#!/usr/bin/env bash
# Runs every test: installs missing system packages, builds, then runs the suites.
# The Redis, topology and fleet tests start their own redis-server / cluster / sentinels / nginx /
# gateways on free loopback ports. Heavy multi-process suites run in their own phase, after the
# unit and integration suites, so their load cannot starve the timing-sensitive tests (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --build-tests
# Suites that assert wall-clock bounds (upstream timeouts, the mock's latencies and trickles) run alone,
# on a quiet machine.
TIMING='UpstreamErrorTaxonomyTests|OpenAIUpstreamTransportTests|CurlClientTests|SlowUpstreamTests|MultiplexerMockProviderTests'
# Suites that start many processes (cluster, sentinels, fleets) run last, serialized within.
HEAVY='RedisTopologyIntegrationTests|FleetTests|ClientTimeoutTests'
# One node against hundreds of connections, or hostile clients timed by the node's own timeouts (slowloris,
# idle keep-alives, stalled bodies, the connection cap): alone,
# one test at a time (next to the fleet suites they made those miss their bounds).
# The live-operations and dashboard suites time reloads, key propagation and a headless browser: alone too.
ONE_NODE='RealProviderFleetTests|HostileClientFleetTests|ClientTimeoutTests|LiveOperationsFleetTests|DashboardBrowserFleetTests'
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
echo "== phase 1: unit and integration suites =="
swift test --skip-build --skip "$TIMING|$HEAVY" 2>&1 | tee -a "$LOG"
echo "== phase 2: upstream timeouts, mock provider timing (wall-clock bounds) =="
swift test --skip-build --filter "$TIMING" 2>&1 | tee -a "$LOG"
echo "== phase 3: Redis Cluster and Sentinel topologies, fleet (real processes) =="
swift test --skip-build --filter "$HEAVY" --skip "$ONE_NODE" 2>&1 | tee -a "$LOG"
echo "== phase 4: one real node: real providers' shapes, hostile clients (one test at a time) =="
swift test --skip-build --no-parallel --filter "$ONE_NODE" 2>&1 | tee -a "$LOG"
echo "== phase 5: fuzz targets (JSON and request validation, SSE, configuration, Redis replies), 30 s each =="
scripts/fuzz.sh 30 2>&1 | tee -a "$LOG"
# Every phase passed (set -o pipefail stops at the first failure): one closing line for all of them.
passed=$(grep -E 'Test run with [0-9]+ tests? .*passed' "$LOG" | sed -E 's/.*Test run with ([0-9]+) tests?.*/\1/' | awk '{s += $1} END {print s + 0}')
echo
echo "${passed:-0} passed, 0 failed; 4 fuzz targets ran 30 s each without a finding"
