#!/usr/bin/env bash
# The tools of the deploy and docs tests (tests/deploy), installed by
# `scripts/install-deps.sh --deploy-tests` (CI does). Idempotent; needs root for apt-get.
#   kubectl          kubectl kustomize (an installed kubectl of any version is kept; else
#                    Debian's kubernetes-client, kubectl 1.20 with kustomize 2.0)
#   node, npm        then `npm ci` of tests/deploy/schema (versions pinned by package-lock.json)
#   vagrant          vagrant validate (without recommends: no provider, no VM tools)
#   graphviz         docs/architecture.svg from docs/architecture.dot
#   (shellcheck)     lint of deploy/vagrant/*.sh
#   systemd          systemd-analyze verify of deploy/systemd/sluice-agent.service
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS
missing=()
need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need kubectl kubernetes-client
need node nodejs
need npm npm
need vagrant vagrant
need dot graphviz
need shellcheck shellcheck
need systemd-analyze systemd

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-tools: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "install-tools: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci reinstalls from scratch: skip it when node_modules matches the lock file.
lock=$here/schema/package-lock.json
stamp=$here/schema/node_modules/.sluice-lock.sha256
if [ -f "$stamp" ] && [ "$(sha256sum <"$lock")" = "$(cat "$stamp")" ]; then
  echo "install-tools: tests/deploy/schema/node_modules up to date"
else
  echo "install-tools: npm ci in tests/deploy/schema"
  npm ci --prefix "$here/schema" --no-audit --no-fund --loglevel=error
  sha256sum <"$lock" >"$stamp"
fi
echo "install-tools: done in $((SECONDS - start)) s"
