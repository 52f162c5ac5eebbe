#!/usr/bin/env bash
# Installs everything sluice needs to build, test and run its demo on Debian 12. Idempotent:
# packages already present are skipped, so a second run is quick. Needs root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  libcli11-dev doctest-dev libyaml-cpp-dev nlohmann-json3-dev libsimdjson-dev libspdlog-dev libfmt-dev
  libcurl4-openssl-dev libevent-dev openssl curl
  iproute2 ethtool python3 procps kmod
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
