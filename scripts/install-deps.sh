#!/usr/bin/env bash
# Installs the system packages Multiplexer builds, tests and runs with (Debian/Ubuntu).
# Idempotent: does nothing when everything is present. Needs root (or sudo) to install.
set -euo pipefail
PKGS=(libhiredis-dev libcurl4-openssl-dev redis-server redis-tools nginx wrk pkg-config python3 python3-venv iptables iproute2 chromium chromium-driver prometheus systemd docker-compose)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts these as system services on install; the project starts its own on free ports.
  for svc in redis-server nginx prometheus; do
    (command -v systemctl >/dev/null && $SUDO systemctl stop "$svc" 2>/dev/null) || true
  done
fi
# Tools from PyPI, in the project's own environment (no system pip changes): the Kubernetes schema validator
# the deployment tests run.
VENV="$(cd "$(dirname "$0")/.." && pwd)/.build/tools-venv"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  echo "installing: kubernetes-validate (PyPI) into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.31.0"
fi
