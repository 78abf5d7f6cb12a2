#!/usr/bin/env bash
# Builds a minimal Debian bookworm image with python3 and python3-venv from Debian's packages, for
# machines that cannot pull from a container registry, and prints its name on stdout.
#
# The image is named lipsync-ci-base:<hash>, where the hash covers this script and the host's CA bundle
# (copied in so that pip and apt inside `docker build --network host` trust the same TLS roots as the
# host). A rerun with the same inputs finds the image and returns at once.
#
# Usage (as root): deploy/scripts/bootstrap-base-image.sh
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), HOST_CA_BUNDLE.
set -euo pipefail

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { printf 'bootstrap-base-image: %s\n' "$*" >&2; }

[[ -r "$HOST_CA_BUNDLE" ]] || { log "error: cannot read $HOST_CA_BUNDLE"; exit 1; }
hash=$(cat "${BASH_SOURCE[0]}" "$HOST_CA_BUNDLE" <(printf '%s\n' "$SUITE" "$PACKAGES" "$DEBIAN_MIRROR") \
  | sha256sum | cut -c1-12)
image="lipsync-ci-base:$hash"

if docker image inspect "$image" >/dev/null 2>&1; then
  log "reusing $image"
  printf '%s\n' "$image"
  exit 0
fi

rootfs=$(mktemp -d /var/tmp/lipsync-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap $SUITE into $rootfs (a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >&2
cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
# Package caches and lists only make the image bigger; images that need apt run apt-get update.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

log "importing $image"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["/bin/bash"]' \
  - "$image" >&2
printf '%s\n' "$image"
