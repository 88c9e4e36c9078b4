#!/usr/bin/env bash
# Build the docker/ images with podman (no registry needed), bring docker/compose.yaml up, run
# the boto3 smoke test against every location in it, and bring it down, always.
#
#   bash docker/ci-smoke.sh            tools, base, build, up, pytest tests/docker, down
#   bash docker/ci-smoke.sh tools      install podman, runc, podman-compose, debootstrap (apt)
#   bash docker/ci-smoke.sh up         tools, base, build, up, wait (ports from the environment)
#   bash docker/ci-smoke.sh down       stop and remove the stack
#
# Ports: GATEWAY_PORT GATEWAY_METRICS_PORT POSTGRES_PORT MOTO_PORT AZURITE_PORT FAKE_GCS_PORT
# SWIFT_PORT (free ones are picked when unset). The swift profile runs too (every location type:
# S3GW_LOCATIONS=locationConfig.swift.json). Project name: S3GW_COMPOSE_PROJECT (default
# s3gw-ci), the same every run, so a stack a killed run left behind is cleared by the next one.
# The workarounds for this CI machine (shared/reference/containers-on-ci.md): runc and explicit
# ulimits (docker/ci/containers.conf), a debootstrap base image trusting the host's extra CAs
# (docker/ci/make-base-image.sh), and polling ports instead of healthchecks (no systemd).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi  # rootful podman, apt

t() { printf '[docker %4ss] %s\n' "$SECONDS" "$*" >&2; }
export CONTAINERS_CONF=$PWD/docker/ci/containers.conf
export BASE_IMAGE=${BASE_IMAGE:-localhost/s3gw-base:3.11-slim}
export BUILDAH_FORMAT=docker   # keep HEALTHCHECK and STOPSIGNAL (OCI format drops HEALTHCHECK)
PROJECT=${S3GW_COMPOSE_PROJECT:-s3gw-ci}
export S3GW_LOCATIONS=${S3GW_LOCATIONS:-locationConfig.swift.json}  # with the swift location
PORTS="GATEWAY_PORT GATEWAY_METRICS_PORT POSTGRES_PORT MOTO_PORT AZURITE_PORT FAKE_GCS_PORT SWIFT_PORT"
LOGS=${S3GW_COMPOSE_LOGS:-/tmp/$PROJECT}
mkdir -p "$LOGS"

tools() {
  if [ -n "${S3GW_SKIP_DOCKER:-}" ]; then return; fi
  if command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null \
     && command -v podman-compose >/dev/null; then return; fi
  t "apt-get install podman runc podman-compose debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc podman-compose debootstrap \
    >/dev/null
}

free_ports() {
  local name
  for name in $PORTS; do
    if [ -z "${!name:-}" ]; then
      export "$name=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    fi
  done
}

compose() {
  # podman-compose 1.0.3 (Debian 12) knows no profiles and starts every service; later ones do.
  local profile=()
  if podman-compose --help 2>/dev/null | grep -q -- --profile; then profile=(--profile swift); fi
  podman-compose "${profile[@]}" -p "$PROJECT" -f docker/compose.yaml "$@"
}

down() {
  t "down"
  compose down -t 5 >"$LOGS/down.log" 2>&1 || true
  # podman-compose 1.0.3 leaves the project's network behind.
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}

wait_http() {  # URL SECONDS: any HTTP answer counts, 200 is not required (emulators answer 4xx)
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(url, timeout=2).close(); break
    except urllib.error.HTTPError:
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"not ready after {sys.argv[2]} s: {url}")
        time.sleep(0.2)
PY
}

up() {
  tools
  free_ports
  t "base image $BASE_IMAGE"
  bash docker/ci/make-base-image.sh "$BASE_IMAGE" >"$LOGS/base.log" 2>&1 \
    || { tail -30 "$LOGS/base.log"; return 1; }
  t "down (whatever an earlier run left)"; down
  t "build"
  compose build >"$LOGS/build.log" 2>&1 || { tail -40 "$LOGS/build.log"; return 1; }
  t "up"
  compose up -d >"$LOGS/up.log" 2>&1 || { cat "$LOGS/up.log"; return 1; }
  local url
  for url in "http://127.0.0.1:$MOTO_PORT/" "http://127.0.0.1:$AZURITE_PORT/" \
             "http://127.0.0.1:$FAKE_GCS_PORT/storage/v1/b" "http://127.0.0.1:$SWIFT_PORT/healthcheck"; do
    wait_http "$url" 120 || { compose logs >"$LOGS/logs.txt" 2>&1; tail -60 "$LOGS/logs.txt"; return 1; }
  done
  # The gateway listens once the seed step made every bucket and PostgreSQL answered; a
  # gateway that exits (bad config, a broken tree) fails the run at once, with its log.
  local waited=0
  until wait_http "http://127.0.0.1:$GATEWAY_PORT/_/healthcheck" 2 2>/dev/null; do
    waited=$((waited + 2))
    if [ "$(podman container inspect -f '{{.State.Status}}' "${PROJECT}_gateway_1" 2>/dev/null)" = exited ] \
       || [ $waited -ge 180 ]; then
      podman logs "${PROJECT}_gateway_1" 2>&1 | tail -40; echo "gateway not ready" >&2; return 1
    fi
  done
  t "ready: gateway http://127.0.0.1:$GATEWAY_PORT"
  local name  # on stdout, for `eval` or a test's environment
  for name in $PORTS; do
    echo "$name=${!name}"
  done
}

case "${1:-all}" in
  tools) tools ;;
  up) up ;;
  down) down ;;
  all)
    cleanup() {
      local rc=$?
      if [ $rc -ne 0 ]; then compose logs >"$LOGS/logs.txt" 2>&1 || true; tail -60 "$LOGS/logs.txt" || true; fi
      down; exit $rc
    }
    trap cleanup EXIT
    up
    t "pytest tests/docker"
    S3GW_STACK=up python3 -m pytest -q -p no:cacheprovider tests/docker
    ;;
  *) echo "usage: $0 [all|tools|up|down]" >&2; exit 2 ;;
esac
