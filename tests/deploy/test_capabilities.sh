#!/usr/bin/env bash
# The DaemonSet's capability list is exactly what the agent needs. With the capabilities of
# deploy/base/daemonset.yaml as its whole bounding set (setpriv; uid 0, as in the pod, but no
# other capability: no DAC override, no CAP_BPF of its own), the agent must, in a network
# namespace of this test and with its own bpffs:
#   1. start from deploy/base/agent.conf (the ConfigMap's file), load, sync a NodePort Service
#      with a Maglev table, and attach XDP + tc to a native device and tc to a pod device;
#   2. restart on the pinned state: restore (Maglev tables are reopened by map id), recognise
#      its own XDP program (by program id) and attach again;
#   3. --cleanup: detach everything, its XDP program included, and unpin.
# Then the same without each listed capability must fail at some step, and so must the narrower
# CAP_BPF + CAP_PERFMON in place of CAP_SYS_ADMIN (why the list has SYS_ADMIN).
# Needs root (skips with 77 otherwise). Everything stays in the namespace; traps clean up.
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN_DIR:-$root/build/bin}
agent=$bin/sluice-agent

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespace, bpffs, BPF programs)"
command -v setpriv >/dev/null || skip "setpriv (util-linux) is not installed"
ip netns list >/dev/null 2>&1 || skip "'ip netns' is unavailable"
grep -qw bpf /proc/filesystems || skip "no bpf filesystem in this kernel"
[ -x "$agent" ] || { echo "FAIL: $agent not built"; exit 1; }

# The DaemonSet's list, e.g. add: ["NET_ADMIN", "SYS_ADMIN"] -> net_admin sys_admin
mapfile -t caps < <(sed -n 's/.*add: \[\(.*\)\].*/\1/p' "$root/deploy/base/daemonset.yaml" |
  tr -d '" ' | tr ',' '\n' | tr '[:upper:]' '[:lower:]')
[ ${#caps[@]} -gt 0 ] || { echo "FAIL: no capabilities found in deploy/base/daemonset.yaml"; exit 1; }

ns=slcap$$
work=$(mktemp -d /tmp/sluice-deploy-caps.XXXXXX)
bpffs=$work/bpffs
agent_pid=""
cleanup() {
  if [ -n "$agent_pid" ]; then
    kill -KILL "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
  fi
  if ip netns list | grep -qw "$ns"; then
    ip netns exec "$ns" "$agent" --cleanup --bpffs-root "$bpffs" >/dev/null 2>&1 || true
    ip netns del "$ns" || true
  fi
  mountpoint -q "$bpffs" && umount "$bpffs"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$bpffs" "$work/manifests"
mount -t bpf bpf "$bpffs"
ip netns add "$ns"
nsx() { ip netns exec "$ns" "$@"; }
nsx ip link set lo up
nsx ip link add n0 type veth peer name n0p
nsx ip link add vp1 type veth peer name vp1p
nsx ip addr add 192.0.2.1/24 dev n0
for l in n0 n0p vp1 vp1p; do nsx ip link set "$l" up; done

cat >"$work/manifests/cap.yaml" <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: capnode
status:
  addresses:
    - type: InternalIP
      address: 192.0.2.1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  clusterIPs: ["10.96.0.50"]
  ports:
    - name: http
      port: 80
      targetPort: 8080
      nodePort: 30080
      protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-ipv4
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
  - name: http
    port: 8080
    protocol: TCP
endpoints:
  - addresses: ["10.244.1.2"]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: capnode
EOF

# run_agent LOG CAPS: the agent with exactly CAPS ("net_admin,sys_admin") until it has synced
# and attached to both devices, then SIGTERM. Returns 1 (and says why) otherwise. Its health
# and metrics ports (agent.conf's) are the namespace's own.
run_agent() {
  local log=$1 capset=$2 deadline
  # Not through nsx: $! must be the agent itself (ip and setpriv exec it), not a subshell.
  ip netns exec "$ns" setpriv --inh-caps=-all --bounding-set="-all,+${capset//,/,+}" -- \
    "$agent" --config "$root/deploy/base/agent.conf" --manifests "$work/manifests" \
    --bpffs-root "$bpffs" --node-name capnode --devices n0 --xdp-mode generic \
    --pod-devices 'vp*' --lb-algorithm maglev >"$log" 2>&1 &
  agent_pid=$!
  deadline=$((SECONDS + 30))
  until grep -q "synced generation=" "$log" && grep -q "to n0 (ifindex" "$log" &&
    grep -q "lb_pod_ingress to vp1 " "$log"; do
    # Gone, out of time, or told us it could not attach (it would go on without the device).
    if ! kill -0 "$agent_pid" 2>/dev/null || ((SECONDS >= deadline)) ||
      grep -qE "(native|pod) device (n0|vp1): " "$log"; then
      kill -KILL "$agent_pid" 2>/dev/null || true
      wait "$agent_pid" 2>/dev/null || true
      agent_pid=""
      why=$(grep -vF "libbpf:" "$log" | grep -m1 -E '^\S+ (critical|error) ' ||
        grep -vF "libbpf:" "$log" | grep -m1 -E '^\S+ warning ' || tail -n1 "$log")
      why=${why#* * }
      return 1
    fi
    sleep 0.1
  done
  kill -TERM "$agent_pid"
  wait "$agent_pid" || true
  agent_pid=""
}

# scenario CAPS: start, restart, cleanup with CAPS; sets $step and $why on failure.
scenario() {
  local capset=$1 tag=${1//,/-}
  why=""
  step="start"
  run_agent "$work/$tag-1.log" "$capset" || return 1
  grep -q "lb_node_xdp" "$work/$tag-1.log" || { why="XDP not attached"; return 1; }
  step="restart on the pinned state"
  run_agent "$work/$tag-2.log" "$capset" || return 1
  grep -q "lb_node_xdp" "$work/$tag-2.log" || { why="XDP not attached"; return 1; }
  step="cleanup"
  if ! nsx setpriv --inh-caps=-all --bounding-set="-all,+${capset//,/,+}" -- \
    "$agent" --cleanup --bpffs-root "$bpffs" >"$work/$tag-3.log" 2>&1; then
    why=$(tail -n1 "$work/$tag-3.log")
    return 1
  fi
  grep -q "detached lb_node_xdp from n0" "$work/$tag-3.log" ||
    { why="XDP program left attached"; return 1; }
  [ -z "$(find "$bpffs" -mindepth 1 ! -name '*.debug')" ] || { why="pins left"; return 1; }
}

# reset: what a failed scenario left, removed with full privileges
reset() {
  nsx "$agent" --cleanup --bpffs-root "$bpffs" >/dev/null 2>&1 || true
}

pass() { result 0 "$*"; }
fail() { result 1 "$*"; }

all=$(IFS=,; echo "${caps[*]}")
if scenario "$all"; then
  pass "with exactly the DaemonSet's capabilities ($all): start, restart, cleanup"
else
  fail "with the DaemonSet's capabilities ($all): $step failed: $why"
  sed 's/^/    /' "$work/${all//,/-}"-*.log | tail -n 20
fi
reset

# without_cap CAPSET DESCRIPTION: the scenario must fail
must_fail() {
  local capset=$1 what=$2
  if scenario "$capset"; then
    fail "$what: start, restart and cleanup all worked, so the DaemonSet asks for more than it needs"
  else
    pass "$what: $step fails ($why)"
  fi
  reset
}
for c in "${caps[@]}"; do
  rest=$(printf '%s\n' "${caps[@]}" | grep -vx "$c" | paste -sd, -)
  must_fail "${rest:-chown}" "without cap_$c (${rest:-none})"
done
if grep -qw bpf < <(setpriv --list-caps); then
  narrow=$(printf '%s\n' "${caps[@]}" | grep -vx sys_admin | paste -sd, -)
  must_fail "${narrow:+$narrow,}bpf,perfmon" "cap_bpf + cap_perfmon instead of cap_sys_admin"
fi

finish "capabilities"
