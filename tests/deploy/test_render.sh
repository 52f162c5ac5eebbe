#!/usr/bin/env bash
# deploy/ as kubectl renders it: each overlay (and deploy/vagrant) through `kubectl kustomize`,
# then
#   - every object against the Kubernetes API schema (schema/validate.mjs: kubernetes-models
#     validators and the API types with unknown fields as errors), after a self-test that shows
#     the validator rejects broken objects;
#   - the objects against each other and the agent (schema/check_render.mjs): namespaces,
#     ServiceAccount/RBAC wiring, the ClusterRole equal to what agent/sources/kube lists and
#     watches, --config files mounted from the ConfigMap, probes on the health port, the
#     overlay's own settings;
#   - the ConfigMap's flag files parsed by the built sluice-agent itself (--config ... --help).
# Skips (77) only when kubectl, node or the npm packages are missing: scripts/install-deps.sh
# --deploy-tests installs them, as CI does.
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN_DIR:-$root/build/bin}
schema=$root/tests/deploy/schema

command -v kubectl >/dev/null || skip "kubectl is not installed (bash scripts/install-deps.sh --deploy-tests)"
command -v node >/dev/null || skip "node is not installed (bash scripts/install-deps.sh --deploy-tests)"
if [ ! -d "$schema/node_modules/kubernetes-models" ] || [ ! -d "$schema/node_modules/typescript" ]; then
  skip "npm packages missing: npm ci --prefix tests/deploy/schema (install-deps.sh --deploy-tests)"
fi
agent=$bin/sluice-agent
[ -x "$agent" ] || { echo "FAIL: $agent not built"; exit 1; }

work=$(mktemp -d /tmp/sluice-deploy-render.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$agent" --help >"$work/agent-help.txt"
echo "kubectl $(kubectl version --client 2>/dev/null | head -n1)"


rendered=()
set +e
node "$schema/validate.mjs" --self-test
result $? "the schema validator rejects broken objects"

# The agent's --config must reject what it does not know, or a typo would go unnoticed.
printf 'pod-devices = "veth*"\ndevicez = "eth0"\n' >"$work/typo.conf"
printf 'xdp-mode = "fast"\n' >"$work/bad-value.conf"
! "$agent" --config="$work/typo.conf" --help >/dev/null 2>&1 &&
  ! "$agent" --config="$work/bad-value.conf" --help >/dev/null 2>&1
result $? "sluice-agent --config rejects an unknown flag name and a bad value"

# overlay directory, then the settings it must end with (an empty value: must be unset)
check_overlay() {
  local dir=$1 name
  shift
  name=$(basename "$dir")
  local out=$work/$name.yaml
  if ! kubectl kustomize "$root/$dir" >"$out" 2>"$work/$name.err"; then
    cat "$work/$name.err"
    result 1 "$dir: kubectl kustomize"
    return
  fi
  # kustomize 5 warns about the v2-compatible fields (bases, commonLabels): not an error.
  grep -v "is deprecated" "$work/$name.err"
  result 0 "$dir: kubectl kustomize ($(grep -c '^kind:' "$out") objects)"
  rendered+=("$out")
  node "$schema/check_render.mjs" --conf-out "$work/$name.conf" "$out" "$work/agent-help.txt" \
    "$root/agent/sources/kube/reflector.cc" "$@"
  result $? "$dir: objects consistent with each other and with the agent"
  local args=() f
  for f in "$work/$name.conf"/*; do
    args+=("--config=$f")
  done
  if [ ${#args[@]} -gt 0 ] && "$agent" "${args[@]}" --node-name=n --help >/dev/null; then
    result 0 "$dir: sluice-agent parses the ConfigMap's flag files (${#args[@]})"
  else
    result 1 "$dir: sluice-agent parses the ConfigMap's flag files"
  fi
}

check_overlay deploy/overlays/kube-proxy-free \
  k8s-api-server=https://API-SERVER-ADDRESS:6443 service-proxy-name= devices='eth*,ens*,enp*,eno*'
check_overlay deploy/overlays/beside-kube-proxy \
  service-proxy-name=sluice k8s-api-server= devices='eth*,ens*,enp*,eno*'
check_overlay deploy/vagrant \
  k8s-api-server=https://192.168.56.10:6443 service-proxy-name= devices=eth1 xdp-mode=generic
# One compile of the API types for all of them.
node "$schema/validate.mjs" "${rendered[@]}"
result $? "Kubernetes schema of every rendered object (${#rendered[@]} overlays)"
set -e

finish "deploy render"
