#!/usr/bin/env bash
# Provision the real engines the launch tests run against: Slurm (+ munge), Docker, an SSH server.
#
# Root-only, and deliberately separate from `make test`: installing system packages is a
# decision for whoever owns the machine (CI does it in .ci/run). Idempotent: when every
# package is already installed it only checks and returns in well under a second.
# Nothing is started or enabled here; the pytest fixtures in tests/_shared/engines.py start
# private instances (own sockets, ports and state under a temp dir) and stop them afterwards.
set -euo pipefail

PACKAGES=(slurm-wlm munge docker.io openssh-server)

if [ "$(id -u)" != 0 ]; then
  echo "make engines: run as root (it installs the Debian packages ${PACKAGES[*]})" >&2
  exit 2
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "engines: ${PACKAGES[*]} already installed"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "make engines: apt-get not found; install ${missing[*]} with this system's package manager" >&2
  exit 2
fi

echo "engines: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps it small; the fixtures need none of the recommended extras.
# Package scripts may try to start services; on machines without an init system that fails
# harmlessly (policy-rc.d) and the fixtures start their own daemons anyway.
apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
echo "engines: installed ${missing[*]}"
