#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine with Python 3.11 and Node 20:
# the project with its test extras, Azurite and s3rver (npm), memcached, rclone and PostgreSQL
# (apt), and an OpenStack
# Swift all-in-one in its own virtualenv. Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [ ! -x node_modules/.bin/azurite-blob ] || [ ! -x node_modules/.bin/s3rver ]; then
  npm install --no-audit --no-fund --loglevel=error
fi

missing=()
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
# Debian keeps initdb off PATH, under /usr/lib/postgresql/<version>/bin.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# tests/console: headless Chromium and its driver, Debian's own (selenium drives them).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

SWIFT_VENV="${SWIFT_VENV:-/opt/swift-venv}"
if [ ! -x "$SWIFT_VENV/bin/swift-proxy-server" ]; then
  python3 -m venv "$SWIFT_VENV"
  "$SWIFT_VENV/bin/pip" install --quiet --disable-pip-version-check swift
fi

# tests/docker: podman, runc, podman-compose and debootstrap (apt) to build and run docker/;
# pg_auto_failover for the PostgreSQL failover test (the extension of the server's version).
bash docker/ci-smoke.sh tools
if ! command -v pg_autoctl >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  pg_major=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1 | cut -d/ -f5)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pg-auto-failover-cli \
    "postgresql-$pg_major-auto-failover" >/dev/null
fi
