#!/usr/bin/env bash
# Installs what sluice needs on Debian 12. Idempotent: packages already present are skipped, so a
# second run is quick. Needs root.
#   install-deps.sh                 build, test and demo dependencies (README, CI, the image's
#                                   build stage)
#   install-deps.sh --runtime       only what sluice-agent and sluicectl need to run (the image's
#                                   runtime stage, deploy/Containerfile)
#   install-deps.sh --deploy-tests  the build dependencies and the tools of the deploy tests
#                                   (tests/deploy/install-tools.sh), as CI does
set -euo pipefail

build_packages=(
  build-essential cmake pkg-config git
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  libcli11-dev doctest-dev libyaml-cpp-dev nlohmann-json3-dev libsimdjson-dev libspdlog-dev libfmt-dev
  libcurl4-openssl-dev libevent-dev openssl curl
  iproute2 ethtool python3 procps kmod
  clang-19 libclang-rt-19-dev  # the sanitizer and fuzz build (libFuzzer, ASan, UBSan runtimes)
)
# The shared libraries the two binaries link (tests/deploy checks this list against ldd), CA
# certificates for the API server's TLS, bpftool and iproute2 for troubleshooting in the pod.
runtime_packages=(
  libbpf1 libelf1 zlib1g libstdc++6 libgcc-s1 libc6 libfmt9 libspdlog1.10 libyaml-cpp0.7
  libsimdjson14 libcurl4 libevent-2.1-7 libevent-pthreads-2.1-7
  ca-certificates bpftool iproute2
)

mode=${1:-}
case "$mode" in
  "" | --deploy-tests) packages=("${build_packages[@]}") ;;
  --runtime) packages=("${runtime_packages[@]}") ;;
  *) echo "usage: $0 [--runtime | --deploy-tests]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
elif [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$mode" = --deploy-tests ]; then
  bash "$(dirname "$0")/../tests/deploy/install-tools.sh"
fi
