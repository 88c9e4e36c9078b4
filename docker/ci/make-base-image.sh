#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim without any registry: a debootstrap'd Debian
# bookworm with python3 + pip, trusting the host's extra CA certificates (TLS to PyPI and npm is
# re-signed by an egress proxy on the CI machine). Skipped when the image is already in local
# storage, so it is built once per machine.
# Usage: docker/ci/make-base-image.sh [IMAGE]   (default localhost/s3gw-base:3.11-slim)
set -euo pipefail
IMAGE=${1:-localhost/s3gw-base:3.11-slim}
if podman image exists "$IMAGE"; then echo "base $IMAGE already present"; exit 0; fi
# The mirror apt uses on this machine (deb822 or one-line format).
MIRROR=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
         | grep -v security | head -1 || true)
[ -n "$MIRROR" ] || MIRROR=$(grep -hoE '^deb +\S+' /etc/apt/sources.list | awk '{print $2}' \
                             | grep -v security | head -1)
SEC=${MIRROR%/debian}/debian-security
T=$(mktemp -d /var/tmp/s3gw-rootfs.XXXXXX); trap 'rm -rf "$T"' EXIT
R=$T/rootfs
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  bookworm "$R" "$MIRROR" >"$T/debootstrap.log" 2>&1 || { tail -30 "$T/debootstrap.log"; exit 1; }
cat > "$R/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SEC bookworm-security main
SRC
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
  > "$R/etc/apt/apt.conf.d/90container"
cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$R" update-ca-certificates >/dev/null 2>&1
# Behave like python:3.11-slim: pip may install into the system interpreter.
rm -f "$R"/usr/lib/python3*/EXTERNALLY-MANAGED
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* \
       "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/locale/*
tar -C "$R" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
echo "built $IMAGE"
