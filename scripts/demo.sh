#!/usr/bin/env bash
# sluice demo: an eBPF ClusterIP load balancer in network namespaces.
#
#   sudo scripts/demo.sh            (needs a build in build/bin: cmake --build build)
#
# Builds a throw-away "node" network namespace with a bridge and 4 pod
# namespaces (pod1 = client, pod2..pod4 = backends of Service "web"), starts
# sluice-agent in the node namespace on the manifests in examples/, and shows
# 100 requests per family spreading over the backends, a backend being taken
# out live, and a service without endpoints refusing at once. Everything is
# removed at the end, also on Ctrl-C. Nothing touches the machine's own
# network namespace. Runs for well under a minute.
#
# Env: SLUICE_BIN_DIR (default <repo>/build/bin).

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${SLUICE_BIN_DIR:=$ROOT/build/bin}"
# shellcheck source=../tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"

REQUESTS=100
STEP=0
step() {
    STEP=$((STEP + 1))
    printf '\n\033[1m== %d. %s\033[0m\n' "$STEP" "$*"
}
die() {
    echo "demo: $*" >&2
    e2e_agent_tail 30 >&2
    exit 1
}

if ! e2e_preflight; then
    echo "demo: cannot run here (see above); it needs root and 'ip netns'." >&2
    exit 1
fi
# shellcheck disable=SC2119
e2e_require_binaries || exit 1

e2e_setup "sldemo$$-" || exit 1
e2e_install_traps
e2e_watchdog 55

step "Topology: netns ${E2E_PREFIX}node with bridge br0 (10.244.0.1/24, fd00:244::1/64) and 4 pods"
e2e_topology bridge 4 || die "could not build the topology"
for i in 1 2 3 4; do
    printf '   pod%d  netns %-16s eth0 %-12s %-14s  (host side: veth-p%d on br0)\n' \
        "$i" "$(e2e_pod_ns "$i")" "$(e2e_pod_ip4 "$i")" "$(e2e_pod_ip6 "$i")" "$i"
done

step "Pod servers: HTTP :8080 and UDP echo :5353 in every pod, answering with the pod's name"
e2e_start_servers || die "pod servers did not start"

step "Manifests: copying $ROOT/examples/*.yaml to $E2E_MANIFESTS"
cp "$ROOT"/examples/*.yaml "$E2E_MANIFESTS"/ || die "cannot copy the examples"
for f in "$E2E_MANIFESTS"/*.yaml; do echo "   ${f##*/}"; done
echo "   web   10.96.0.10 / fd00:96::10  :80/TCP -> 8080, :53/UDP -> 5353   backends pod2 pod3 pod4"
echo "   empty 10.96.0.20 / fd00:96::20  :80/TCP                            no endpoints"
echo "   self  10.96.0.30 / fd00:96::30  :80/TCP, :53/UDP                   backend pod1 (hairpin)"

step "sluice-agent in the node netns: tc program on every 'veth-p*', maps from the manifests"
echo "   ip netns exec $E2E_NODE sluice-agent --manifests $E2E_MANIFESTS --pod-devices 'veth-p*' \\"
echo "       --bpffs-root $E2E_BPFFS --node-name $E2E_NODE_NAME"
e2e_start_agent "$E2E_MANIFESTS"
e2e_wait_generation_gt 0 20 || die "the agent did not sync"
if [[ -x $E2E_CTL_BIN ]]; then
    echo "   \$ sluicectl service list"
    e2e_ctl service list | head -n 20 | sed 's/^/   /'
fi

# run_table TITLE: 100 HTTP + 100 UDP requests per family from pod1 to web,
# one fresh connection / socket (new source port) each; prints a table.
run_table() {
    local out=$E2E_RUN/table.json
    {
        e2e_client 1 http "$(e2e_url "$E2E_WEB_V4" 80)" --count $REQUESTS --deadline 15 | sed -n 2p
        e2e_client 1 http "$(e2e_url "$E2E_WEB_V6" 80)" --count $REQUESTS --deadline 15 | sed -n 2p
        e2e_client 1 udp "$E2E_WEB_V4" 53 --count $REQUESTS --deadline 15 | sed -n 2p
        e2e_client 1 udp "$E2E_WEB_V6" 53 --count $REQUESTS --deadline 15 | sed -n 2p
    } >"$out"
    "$E2E_PY" - "$out" <<'EOF'
import json, sys
cols = ["HTTP 10.96.0.10", "HTTP [fd00:96::10]", "UDP 10.96.0.10", "UDP [fd00:96::10]"]
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
runs += [{"backends": {}, "errors": 0}] * (len(cols) - len(runs))
names = sorted({b for r in runs for b in r["backends"]} | {"pod2", "pod3", "pod4"})
print("   %-8s" % "backend" + "".join("%20s" % c for c in cols))
for n in names:
    print("   %-8s" % n + "".join("%20d" % r["backends"].get(n, 0) for r in runs))
print("   %-8s" % "errors" + "".join("%20d" % r["errors"] for r in runs))
EOF
}

step "Traffic: pod1 -> web, $REQUESTS new connections / datagrams per column"
run_table

step "Scale down: remove pod4 from both EndpointSlices (atomic mv), wait for the agent"
gen=$(e2e_agent_generation)
e2e_write_web_slice "$E2E_MANIFESTS" 4 2 3 || die "cannot edit the IPv4 slice"
e2e_wait_generation_gt "$gen" 15 || die "no sync after the IPv4 edit"
gen=$(e2e_agent_generation)
e2e_write_web_slice "$E2E_MANIFESTS" 6 2 3 || die "cannot edit the IPv6 slice"
e2e_wait_generation_gt "$gen" 15 || die "no sync after the IPv6 edit"
run_table

step "Service without endpoints: pod1 -> empty (10.96.0.20:80, [fd00:96::20]:80)"
e2e_client 1 refused "$E2E_EMPTY_V4" 80 --count 1 --within 1.0 | sed -n 1p | sed 's/^/   /'
e2e_client 1 refused "$E2E_EMPTY_V6" 80 --count 1 --within 1.0 | sed -n 1p | sed 's/^/   /'

step "Hairpin: pod1 -> self (10.96.0.30:80, [fd00:96::30]:80), whose only backend is pod1"
e2e_client 1 http "$(e2e_url "$E2E_SELF_V4" 80)" --count 5 --deadline 10 | sed -n 1p | sed 's/^/   /'
e2e_client 1 http "$(e2e_url "$E2E_SELF_V6" 80)" --count 5 --deadline 10 | sed -n 1p | sed 's/^/   /'

step "Cleaning up: stop the agent, sluice-agent --cleanup, delete the namespaces, unmount bpffs"
e2e_stop_agent 10
e2e_cleanup
left=$(ip netns list | grep "^$E2E_PREFIX")
if [[ -n $left ]] || mountpoint -q "$E2E_BPFFS" 2>/dev/null; then
    echo "   WARNING: left behind: ${left:-} $(mountpoint -q "$E2E_BPFFS" 2>/dev/null && echo "$E2E_BPFFS")"
    exit 1
fi
echo "   done: no namespace, mount or process of this demo is left"
