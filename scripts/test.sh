#!/usr/bin/env bash
# Runs every test: installs missing system packages, builds, then runs the whole suite.
# The Redis and fleet tests start their own redis-server / nginx on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
