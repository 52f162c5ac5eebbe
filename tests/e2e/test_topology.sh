#!/usr/bin/env bash
# sluice e2e: the test topology and tools on their own, without the agent.
#
#   bash tests/e2e/test_topology.sh bridge|routed
#
# Builds the same node + pod namespaces as test_clusterip.sh, starts the pod
# servers and checks pod-to-pod traffic (ping, HTTP, UDP, keep-alive, refused)
# in both families. When this fails, ClusterIP failures are environment
# problems, not sluice bugs. Needs no sluice binary. Exit 0/1, 77 = skipped.

set -u -o pipefail

LAYOUT=${1:-}
case $LAYOUT in
bridge | routed) ;;
*)
    echo "usage: $0 bridge|routed" >&2
    exit 2
    ;;
esac

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_preflight || exit $?
NPODS=4

e2e_setup "slt$$-" || exit 1
e2e_install_traps
e2e_watchdog 120

echo "=== sluice e2e topology self-test, layout=$LAYOUT, pid $$ ==="
if ! e2e_topology "$LAYOUT" "$NPODS" || ! e2e_start_servers; then
    echo "FAIL: could not build the $LAYOUT topology"
    exit 1
fi

for ((i = 2; i <= NPODS; i++)); do
    for ip in "$(e2e_pod_ip4 "$i")" "$(e2e_pod_ip6 "$i")"; do
        e2e_check "pod1 pings pod$i $ip" e2e_client 1 ping "$ip" --deadline 5
        e2e_check "pod1 -> pod$i $ip:8080 HTTP x20" \
            e2e_client 1 http "$(e2e_url "$ip" 8080)" --count 20 --expect "pod$i" --only --min-each 20
        e2e_check "pod1 -> pod$i $ip:5353 UDP x20" \
            e2e_client 1 udp "$ip" 5353 --count 20 --expect "pod$i" --only --min-each 20
    done
done

for ip in "$(e2e_pod_ip4 2)" "$(e2e_pod_ip6 2)"; do
    e2e_check "closed port $ip:81 refuses at once" e2e_client 1 refused "$ip" 81 --within 1.0
    stop=$E2E_RUN/stop-$ip
    touch "$stop"  # present from the start: 1 + 10 rounds
    e2e_check "pod1 -> pod2 $ip keep-alive x4 conns, 11 rounds" \
        e2e_client 1 persist "$(e2e_url "$ip" 8080)" --conns 4 --stop-file "$stop" \
        --extra-rounds 10 --max-duration 20
done

# without the agent nothing answers on the service addresses
for vip in "$E2E_WEB_V4" "$E2E_WEB_V6"; do
    e2e_check "without the agent $vip:80 is not served" \
        eval "! e2e_client 1 http '$(e2e_url "$vip" 80)' --count 1 --timeout 1 --deadline 3 >/dev/null"
done

e2e_summary
((E2E_FAIL == 0)) || {
    echo "RESULT: FAIL ($LAYOUT topology)"
    exit 1
}
echo "RESULT: PASS ($LAYOUT topology)"
