#!/usr/bin/env bash
# deploy/systemd: the unit passes `systemd-analyze verify` (no output at all: verify reports
# unknown keys only as warnings), its ExecStart flags exist, its example agent.conf parses with
# the built agent, and its capabilities are the DaemonSet's. Skips (77) without systemd-analyze
# (scripts/install-deps.sh --deploy-tests installs it).
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN_DIR:-$root/build/bin}
unit=$root/deploy/systemd/sluice-agent.service
command -v systemd-analyze >/dev/null ||
  skip "systemd-analyze is not installed (bash scripts/install-deps.sh --deploy-tests)"
agent=$bin/sluice-agent
[ -x "$agent" ] || { echo "FAIL: $agent not built"; exit 1; }

work=$(mktemp -d /tmp/sluice-deploy-systemd.XXXXXX)
trap 'rm -rf "$work"' EXIT

# verify checks that ExecStart's binary exists: the copy runs the built one, nothing else changes.
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
sed "s|^ExecStart=$exec_path|ExecStart=$agent|" "$unit" >"$work/sluice-agent.service"
verify() { # verify UNIT: silent and successful
  local out
  out=$(systemd-analyze verify "$1" 2>&1) && [ -z "$out" ] && return 0
  echo "$out"
  return 1
}
check "systemd-analyze verify $(basename "$unit")" verify "$work/sluice-agent.service"
mkdir "$work/typo"
sed 's/^ProtectSystem=/ProtectSytem=/' "$work/sluice-agent.service" >"$work/typo/sluice-agent.service"
typo_reported() { ! verify "$work/typo/sluice-agent.service" >/dev/null; }
check "systemd-analyze verify reports a misspelt key (the check above can fail)" typo_reported
check "ExecStart runs $exec_path (where the image and the README install it)" \
  test "$exec_path" = /usr/local/bin/sluice-agent

# ExecStart's arguments with the example config, parsed by the agent (paths made local).
read -r -a args <<<"$(sed -n 's/^ExecStart=[^ ]* //p' "$unit")"
mkdir "$work/manifests"
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    /etc/sluice/agent.conf) args[i]=$root/deploy/systemd/agent.conf ;;
    /etc/sluice/manifests) args[i]=$work/manifests ;;
  esac
done
parses() { "$agent" "${args[@]}" --help >/dev/null; }
check "sluice-agent parses ExecStart's flags with deploy/systemd/agent.conf" parses

unit_caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr ' ' '\n' | sort | tr '\n' ' ')
ds_caps=$(sed -n 's/.*add: \[\(.*\)\].*/\1/p' "$root/deploy/base/daemonset.yaml" |
  tr -d '" ' | tr ',' '\n' | sed 's/^/CAP_/' | sort | tr '\n' ' ')
check "capabilities ($unit_caps) are the DaemonSet's ($ds_caps)" test "$unit_caps" = "$ds_caps"

finish "systemd unit"
