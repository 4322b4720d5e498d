#!/usr/bin/env bash
# The fleet demo: installs the system packages, builds, and runs `multiplexer demo` — three mock providers
# with strict limits, three gateway processes sharing every limit through a local redis-server, nginx in
# front — sends 120 requests through it and reports how the quotas added up (overshoot must be 0).
# Extra arguments go to `multiplexer demo` (e.g. --requests 300 --concurrency 16, --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --product multiplexer
exec .build/debug/multiplexer demo --nodes 3 --redis --nginx "$@"
