#!/usr/bin/env bash
# Runs every test: installs missing system packages, builds, then runs the suites.
# The Redis, topology and fleet tests start their own redis-server / cluster / sentinels / nginx /
# gateways on free loopback ports. Heavy multi-process suites run in their own phase, after the
# unit and integration suites, so their load cannot starve the timing-sensitive tests (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --build-tests
# Suites that assert wall-clock bounds (upstream timeouts) run alone, on a quiet machine.
TIMING='UpstreamErrorTaxonomyTests|OpenAIUpstreamTransportTests|CurlClientTests'
# Suites that start many processes (cluster, sentinels, fleets) run last, serialized within.
HEAVY='RedisTopologyIntegrationTests|FleetTests'
echo "== phase 1: unit and integration suites =="
swift test --skip-build --skip "$TIMING|$HEAVY"
echo "== phase 2: upstream timeouts (wall-clock bounds) =="
swift test --skip-build --filter "$TIMING"
echo "== phase 3: Redis Cluster and Sentinel topologies, fleet (real processes) =="
swift test --skip-build --filter "$HEAVY"
