#!/usr/bin/env bash
# sluice e2e: north-south (NodePort, LoadBalancer, ExternalIPs, HostPort at XDP / tc on the
# nodes' native devices), two nodes and an external client.
#
#   bash tests/e2e/test_northsouth.sh topology              # namespaces + tools, no agent
#   bash tests/e2e/test_northsouth.sh snat|dsr|hybrid [native|generic|off]
#
# The second argument is the agents' --xdp-mode (default native; `off` exercises the tc
# fallback on eth0). Topology, services and checks: README.md "test_northsouth.sh".
#   1/2  client -> node1 and node2 NodePorts, TCP and UDP: every backend reached, and each
#        backend sees the source the mode promises (client / the load-balancing node)
#   3    LoadBalancer IP and ExternalIP (client routes 192.168.60.0/24 through node1)
#   5    externalTrafficPolicy Local: served with the client address where the endpoint is,
#        silently dropped elsewhere; healthCheckNodePort 200 / 503
#   6    loadBalancerSourceRanges: allowed, then (manifest edit) dropped
#   7    hostPort on node2
#   8    a 2 MB upload through node1's NodePort to a node2 backend behind a 1400-byte veth
#        (node2 sends ICMP "fragmentation needed" / "packet too big"), after a 1500 baseline;
#        a 1500-byte UDP datagram with DF (DSR: node1 announces the MTU less the option); a
#        2 MB download by a client behind a router with a 1300-byte link (the router's error
#        about an answer reaches the backend)
#   4    agents restarted (--cleanup, fresh) with --lb-algorithm maglev and the same seed: a
#        fixed client port lands on the same backend via node1 and via node2
#
# Exit: 0 all passed, 1 a check failed, 77 skipped (not root, no ip netns, no ethtool / clang /
# bpftool / curl).
# Env: SLUICE_BIN_DIR, E2E_KEEP=1 (keep logs), NS_FAMILIES (default "4 6"),
#      NS_EMULATE=nft (with `snat`: a self-test of the checks, kube-proxy-like nftables rules
#      on the nodes instead of sluice; no Maglev phase, no healthCheckNodePort).

set -u -o pipefail

MODE=${1:-}
XDP_MODE=${2:-native}
case $MODE in
topology | snat | dsr | hybrid) ;;
*)
    echo "usage: $0 topology | snat|dsr|hybrid [native|generic|off]" >&2
    exit 2
    ;;
esac
case $XDP_MODE in
native | generic | off) ;;
*)
    echo "usage: $0 snat|dsr|hybrid [native|generic|off]" >&2
    exit 2
    ;;
esac

# shellcheck source=northsouth_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/northsouth_lib.sh"

ns_preflight || exit $?
EMULATE=${NS_EMULATE:-}
if [[ -n $EMULATE ]]; then
    if [[ $EMULATE != nft || $MODE != snat ]] || ! command -v nft >/dev/null 2>&1; then
        echo "usage: NS_EMULATE=nft $0 snat (needs nft)" >&2
        exit 2
    fi
elif [[ $MODE != topology ]]; then
    e2e_require_binaries || exit 1
fi

FAMILIES=${NS_FAMILIES:-4 6}
MAGLEV_SEED=${NS_MAGLEV_SEED:-c2x1aWNlLWUyZS0x} # base64 of 12 bytes ("sluice-e2e-1"), as Cilium's seed
UPLOAD_BYTES=$((2 << 20))

e2e_setup "sn$$-" || exit 1
ns_install_traps
e2e_watchdog 280

echo "=== sluice e2e north-south, mode=$MODE xdp=$XDP_MODE families=$FAMILIES${EMULATE:+ EMULATED by $EMULATE rules, no sluice}, pid $$ ==="

fatal() {
    NS_FINISHED=1
    e2e_result "$*" 1
    e2e_summary
    echo "RESULT: FAIL (north-south $MODE/$XDP_MODE)"
    exit 1
}

finish() {
    NS_FINISHED=1
    e2e_summary
    if ((E2E_FAIL == 0)); then
        echo "RESULT: PASS (north-south $MODE/$XDP_MODE)"
        exit 0
    fi
    echo "RESULT: FAIL (north-south $MODE/$XDP_MODE)"
    exit 1
}

# ---------------------------------------------------------------- topology
ns_topology || fatal "could not build the topology"
ns_start_servers || fatal "pod servers did not start"

# the topology on its own: what every later check relies on
topology_checks() {
    local f n p c ip
    for f in $FAMILIES; do
        for n in 1 2; do
            e2e_check "topology IPv$f: client pings node$n $(ns_node_ip "$n" "$f")" \
                ns_client ping "$(ns_node_ip "$n" "$f")" --deadline 5
        done
        # cross-node pod traffic through the nodes' routes (no NAT: the pod sees the pod)
        e2e_check "topology IPv$f: n1p1 -> n2p1 $(ns_pod_ip n2p1 "$f"):8080 (routed via node2), source kept" \
            ns_pod_client n1p1 http "$(e2e_url "$(ns_pod_ip n2p1 "$f")" 8080)" --count 5 \
            --expect n2p1 --only --min-each 5 --peer --peer-expect "n2p1=$(ns_pod_ip n1p1 "$f")"
        e2e_check "topology IPv$f: n2p2 -> n1p2 $(ns_pod_ip n1p2 "$f"):5353 UDP" \
            ns_pod_client n2p2 udp "$(ns_pod_ip n1p2 "$f")" 5353 --count 5 \
            --expect n1p2 --only --min-each 5 --peer --peer-expect "n1p2=$(ns_pod_ip n2p2 "$f")"
        for n in 1 2; do
            p=n${n}p1
            e2e_check "topology IPv$f: node$n -> its pod $p $(ns_pod_ip "$p" "$f"):8080" \
                ns_node_client "$n" http "$(e2e_url "$(ns_pod_ip "$p" "$f")" 8080)" --count 3 \
                --expect "$p" --only --min-each 3
        done
        # the client has no route to any pod: DSR replies must come from the service address
        for p in n1p1 n2p1; do
            ip=$(ns_pod_ip "$p" "$f")
            e2e_check "topology IPv$f: the client cannot reach pod $p $ip" \
                eval "! ns_client ping '$ip' --deadline 1 --max-probes 3"
        done
        # nothing listens on the NodePort or the LB IP yet
        e2e_check "topology IPv$f: without agents node1:30080 refuses" \
            ns_client refused "$(ns_node_ip 1 "$f")" 30080 --count 1 --within 1.0
    done
    # the settings XDP_TX / redirect on veth rely on
    for c in p-client p-node1 p-node2; do
        e2e_check "topology: lan port $c takes XDP frames from its peer (XDP_PASS attached, GRO ${NS_PEER_GRO:-off})" \
            eval "ns_ethtool '$NS_LAN' -k '$c' | grep -x 'generic-receive-offload: ${NS_PEER_GRO:-off}' && ip -n '$NS_LAN' -d link show dev '$c' | grep -o 'prog/xdp id [0-9]* name [a-z_]*'"
    done
    e2e_check "topology: client eth0 sends full checksums (tx-checksumming off)" \
        eval "ns_ethtool '$NS_CLIENT' -k eth0 | grep -x 'tx-checksumming: off'"
    for n in 1 2; do
        e2e_check "topology: XDP_TX over the LAN: a reflector on node$n's eth0 (native XDP) returns the client's UDP datagrams" \
            ns_xdp_reflect_check "$n"
    done
    # path MTU discovery across the nodes, without sluice: n1p1 uploads to n2p1 through
    # node2's 1400-byte veth; node2 must answer with ICMP frag-needed / packet-too-big
    ip -n "${NS_NODE[2]}" link set veth-p1 mtu 1400
    for f in $FAMILIES; do
        e2e_check "topology IPv$f: n1p1 uploads 2 MB to n2p1 behind node2's 1400-byte veth (PMTU)" \
            ns_pod_client n1p1 upload "$(e2e_url "$(ns_pod_ip n2p1 "$f")" 8080)" \
            --bytes "$UPLOAD_BYTES" --timeout 20 --expect n2p1
    done
    ip -n "${NS_NODE[2]}" link set veth-p1 mtu 1500
}

if [[ $MODE == topology ]]; then
    topology_checks
    finish
fi

# a short subset before the agents start: a broken environment fails here, not later
for f in $FAMILIES; do
    e2e_check "topology IPv$f: client pings node1 and node2" \
        eval "ns_client ping $(ns_node_ip 1 "$f") --deadline 5 && ns_client ping $(ns_node_ip 2 "$f") --deadline 5" ||
        fatal "topology broken before the agents started (run: $0 topology)"
done

# ---------------------------------------------------------------- agents
if [[ -z $EMULATE ]]; then
    lacking=$(ns_agent_missing_flags --devices --xdp-mode --lb-mode)
    [[ -z $lacking ]] || fatal "sluice-agent --help lacks the north-south flags: $lacking"
fi

ns_write_manifests allow >/dev/null || fatal "could not write manifests"

AGENT_FLAGS=(--xdp-mode "$XDP_MODE" --lb-mode "$MODE")

# shellcheck disable=SC2120 # phase 2 passes the Maglev flags through AGENT_FLAGS
start_agents() {
    local n rc=0
    for n in 1 2; do
        ns_start_agent "$n" "${AGENT_FLAGS[@]}" "$@"
    done
    for n in 1 2; do
        e2e_check "node$n: agent synced (generation >= 1 within 30 s)" \
            ns_wait_generation_gt "$n" 0 30 || rc=1
    done
    return "$rc"
}

# wait_served URL...: bounded readiness wait (the first sync may not carry every object yet):
# one of the URLs answers (tried in turn, so one broken backend cannot stall the run)
wait_served() {
    local deadline=$((SECONDS + 15)) url
    while ((SECONDS < deadline)); do
        for url in "$@"; do
            if ns_client http "$url" --count 1 --timeout 1 >/dev/null 2>&1; then
                echo "$url answers"
                return 0
            fi
        done
        sleep 0.2
    done
    echo "none of $* answered within 15s"
    return 1
}

attach_checks() {
    local n want dev
    case $XDP_MODE in
    native) want=native ;;
    generic) want=generic ;;
    off) want=none ;;
    esac
    for n in 1 2; do
        e2e_check "node$n: agent logged the attachment to eth0 (within 10 s)" \
            e2e_wait_log "${NS_AGENT_LOG[n]}" "attached lb_node_ingress.* to eth0 " 10 \
            "${NS_AGENT_PID[n]}"
        e2e_check "node$n: XDP on eth0 is '$want' (--xdp-mode $XDP_MODE)" \
            eval "s=\$(ns_xdp_state $n eth0); echo \"ip link: xdp \$s\"; [[ \$s == $want ]]"
        for dev in ingress egress; do
            e2e_check "node$n: tc $dev on eth0 runs lb_node_$dev" \
                eval "out=\$(timeout -k 2 10 ip netns exec ${NS_NODE[n]} tc filter show dev eth0 $dev); echo \"\$out\"; grep -qw lb_node_$dev <<<\"\$out\""
        done
    done
}

if [[ -n $EMULATE ]]; then
    ns_emulate_apply allow || fatal "could not load the emulation's nftables rules"
else
    start_agents || fatal "agents did not start"
    attach_checks
fi
for f in $FAMILIES; do
    e2e_check "IPv$f ready: node1 NodePort 30080 or 30480 answers (within 15 s)" \
        wait_served "$(e2e_url "$(ns_node_ip 1 "$f")" 30080)" \
        "$(e2e_url "$(ns_node_ip 1 "$f")" 30480)" ||
        fatal "the NodePort is not served (IPv$f)"
done

# what a backend on another node than the load-balancing node N sees as the source
remote_src() { # N FAMILY PROTO
    local n=$1 f=$2 proto=$3
    case $MODE/$proto in
    snat/*) ns_node_ip "$n" "$f" ;;
    dsr/*) ns_client_ip "$f" ;;
    hybrid/tcp) ns_client_ip "$f" ;;
    hybrid/udp) ns_node_ip "$n" "$f" ;;
    esac
}

# ---------------------------------------------------------------- 1 2 3
# check_pair NAME DST TCP_PORT UDP_PORT LB_NODE: TCP and UDP to DST, both backends of np
# (n1p1 on node1, n2p1 on node2) reached; the backend on LB_NODE sees the client, the other
# one what the mode promises
check_np() {
    local f=$1 label=$2 dst=$3 tport=$4 uport=$5 n=$6 near far client
    client=$(ns_client_ip "$f")
    if ((n == 1)); then near=n1p1 far=n2p1; else near=n2p1 far=n1p1; fi
    e2e_check "IPv$f $label TCP $dst:$tport: 20 new connections reach n1p1 and n2p1; $near (local) sees $client, $far (remote) sees $(remote_src "$n" "$f" tcp)" \
        ns_client http "$(e2e_url "$dst" "$tport")" --count 20 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n1p1,n2p1 --only --peer \
        --peer-expect "$near=$client,$far=$(remote_src "$n" "$f" tcp)"
    e2e_check "IPv$f $label UDP $dst:$uport: 20 datagrams answered by n1p1 and n2p1; $near sees $client, $far sees $(remote_src "$n" "$f" udp)" \
        ns_client udp "$dst" "$uport" --count 20 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n1p1,n2p1 --only --peer \
        --peer-expect "$near=$client,$far=$(remote_src "$n" "$f" udp)"
}

checks_123() {
    local f=$1 n1 n2
    n1=$(ns_node_ip 1 "$f")
    n2=$(ns_node_ip 2 "$f")
    echo "--- IPv$f: 1+2 NodePort ---"
    check_np "$f" "1+2 NodePort via node1" "$n1" 30080 30053 1
    check_np "$f" "1+2 NodePort via node2" "$n2" 30080 30053 2
    e2e_check "IPv$f 1+2 np-remote TCP $n1:30480 (only backend n2p1, on node2): sees $(remote_src 1 "$f" tcp)" \
        ns_client http "$(e2e_url "$n1" 30480)" --count 10 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n2p1 --only --min-each 10 --peer --peer-expect "n2p1=$(remote_src 1 "$f" tcp)"
    e2e_check "IPv$f 1+2 np-remote UDP $n1:30453 (only backend n2p1): sees $(remote_src 1 "$f" udp)" \
        ns_client udp "$n1" 30453 --count 10 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n2p1 --only --min-each 10 --peer --peer-expect "n2p1=$(remote_src 1 "$f" udp)"
    echo "--- IPv$f: 3 LoadBalancer IP and ExternalIP (client routes via node1) ---"
    local lb ext
    if [[ $f == 4 ]]; then lb=$NS_LB_V4 ext=$NS_EXT_V4; else lb=$NS_LB_V6 ext=$NS_EXT_V6; fi
    check_np "$f" "3 LoadBalancer IP" "$lb" 80 53 1
    check_np "$f" "3 ExternalIP" "$ext" 80 53 1
}

# ---------------------------------------------------------------- 5 eTP=Local
checks_5() {
    local f=$1 n1 n2 client lb
    n1=$(ns_node_ip 1 "$f")
    n2=$(ns_node_ip 2 "$f")
    client=$(ns_client_ip "$f")
    echo "--- IPv$f: 5 externalTrafficPolicy Local (np-local: endpoint n2p2 on node2) ---"
    e2e_check "IPv$f 5 np-local TCP node2 $n2:30180: served by n2p2, which sees the client $client" \
        ns_client http "$(e2e_url "$n2" 30180)" --count 10 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n2p2 --only --min-each 10 --peer --peer-expect "n2p2=$client"
    e2e_check "IPv$f 5 np-local UDP node2 $n2:30153: answered by n2p2, which sees $client" \
        ns_client udp "$n2" 30153 --count 10 --timeout 1 --give-up-after 3 --deadline 15 \
        --expect n2p2 --only --min-each 10 --peer --peer-expect "n2p2=$client"
    e2e_check "IPv$f 5 np-local TCP node1 $n1:30180 (no local endpoint): silently dropped (timeout, no RST)" \
        ns_client blackhole "$n1" 30180 --count 2 --timeout 1
    if [[ $f == 4 ]]; then lb=$NS_LOCAL_LB_V4; else lb=$NS_LOCAL_LB_V6; fi
    e2e_check "IPv$f 5 np-local LB IP $lb:80 via node1 (no local endpoint): silently dropped" \
        ns_client blackhole "$lb" 80 --count 1 --timeout 1
    local n want url
    if [[ -n $EMULATE ]]; then
        echo "    (emulation: no agent serves the healthCheckNodePort; not checked)"
        return 0
    fi
    for n in 1 2; do
        if ((n == 1)); then want=503; else want=200; fi
        url=$(e2e_url "$(ns_node_ip "$n" "$f")" "$NS_HC_PORT")
        e2e_check "IPv$f 5 healthCheckNodePort $url answers $want (node$n has $((n - 1)) local endpoints)" \
            eval "code=\$(ns_client_http_code '$url'); echo \"HTTP \$code: \$(head -c 300 $E2E_RUN/curl.body 2>/dev/null | tr '\n\t' '  ')\"; [[ \$code == $want ]]"
    done
}

# ---------------------------------------------------------------- 6 source ranges
checks_6() {
    local f lb gens=() n rc
    echo "--- 6 loadBalancerSourceRanges (np-src, LB IPs via node1) ---"
    for f in $FAMILIES; do
        if [[ $f == 4 ]]; then lb=$NS_SRC_LB_V4; else lb=$NS_SRC_LB_V6; fi
        e2e_check "IPv$f 6 np-src $lb:80 with ranges [192.168.50.1/32, fd50::1/128]: the client connects" \
            ns_client http "$(e2e_url "$lb" 80)" --count 10 --timeout 1 --give-up-after 3 --deadline 15 \
            --expect n1p1,n2p1 --only
    done
    for n in 1 2; do gens[n]=$(ns_agent_generation "$n"); done
    ns_write_manifests deny --only svc-np-src >/dev/null
    rc=0
    if [[ -n $EMULATE ]]; then
        ns_emulate_apply deny
    else
        for n in 1 2; do
            e2e_check "6 node$n synced np-src with ranges [10.99.0.0/16, fd99::/64] (generation > ${gens[n]})" \
                ns_wait_generation_gt "$n" "${gens[n]}" 15 || rc=1
        done
    fi
    local before after
    before=$(ns_stat_value 1 drop_source_range)
    for f in $FAMILIES; do
        if [[ $f == 4 ]]; then lb=$NS_SRC_LB_V4; else lb=$NS_SRC_LB_V6; fi
        e2e_check "IPv$f 6 np-src $lb:80 with ranges excluding the client: new connections dropped" \
            ns_client blackhole "$lb" 80 --count 2 --timeout 1
    done
    after=$(ns_stat_value 1 drop_source_range)
    echo "    info: node1 drop_source_range $before -> $after"
    # back to allow (a later phase starts from the same manifests)
    for n in 1 2; do gens[n]=$(ns_agent_generation "$n"); done
    ns_write_manifests allow --only svc-np-src >/dev/null
    if [[ -n $EMULATE ]]; then
        ns_emulate_apply allow
    else
        for n in 1 2; do ns_wait_generation_gt "$n" "${gens[n]}" 15 >/dev/null; done
    fi
}

# ---------------------------------------------------------------- 7 hostPort
checks_7() {
    local f=$1 n1 n2 client
    n1=$(ns_node_ip 1 "$f")
    n2=$(ns_node_ip 2 "$f")
    client=$(ns_client_ip "$f")
    echo "--- IPv$f: 7 hostPort (n2p2 on node2: 18080/TCP, 18053/UDP) ---"
    e2e_check "IPv$f 7 hostPort TCP $n2:18080 reaches n2p2 (sees the client $client)" \
        ns_client http "$(e2e_url "$n2" 18080)" --count 5 --timeout 1 --give-up-after 3 --deadline 10 \
        --expect n2p2 --only --min-each 5 --peer --peer-expect "n2p2=$client"
    e2e_check "IPv$f 7 hostPort UDP $n2:18053 reaches n2p2" \
        ns_client udp "$n2" 18053 --count 5 --timeout 1 --give-up-after 3 --deadline 10 \
        --expect n2p2 --only --min-each 5
    e2e_check "IPv$f 7 hostPort is node2's only: $n1:18080 refuses" \
        ns_client refused "$n1" 18080 --count 1 --within 1.0
}

# ---------------------------------------------------------------- 8 MTU
checks_8() {
    local f n1 before after
    echo "--- 8 path MTU: client uploads ${UPLOAD_BYTES} bytes via node1:30480 to n2p1 (node2) ---"
    local base_ok=()
    for f in $FAMILIES; do
        n1=$(ns_node_ip 1 "$f")
        e2e_check "IPv$f 8a baseline: upload through node1:30480 to n2p1, all MTUs 1500 (within 10 s)" \
            ns_client upload "$(e2e_url "$n1" 30480)" --bytes "$UPLOAD_BYTES" --timeout 10 \
            --expect n2p1 && base_ok[f]=1
    done
    ip -n "${NS_NODE[2]}" link set veth-p1 mtu 1400 || return 1
    echo "    node2: veth-p1 (host side of n2p1) mtu 1400, n2p1's eth0 stays 1500"
    before=$(ns_stat_value 1 icmp_translated)/$(ns_stat_value 2 icmp_translated)
    for f in $FAMILIES; do
        n1=$(ns_node_ip 1 "$f")
        if [[ -z ${base_ok[f]:-} ]]; then
            e2e_result "IPv$f 8b not run: the baseline upload (8a) failed already" 1
            continue
        fi
        e2e_check "IPv$f 8b upload through node1:30480 to n2p1 behind a 1400-byte veth completes (ICMP too-big from node2 reaches the client's socket; within 10 s)" \
            ns_client upload "$(e2e_url "$n1" 30480)" --bytes "$UPLOAD_BYTES" --timeout 10 \
            --expect n2p1
    done
    after=$(ns_stat_value 1 icmp_translated)/$(ns_stat_value 2 icmp_translated)
    echo "    info: icmp_translated node1/node2: $before -> $after"
    ip -n "${NS_NODE[2]}" link set veth-p1 mtu 1500

    # 8c: a UDP datagram that fills the client's 1500-byte link, DF set, to np-remote's LB IP
    # (routed via node1; the node addresses carry a path MTU from 8b in the client's cache).
    # With DSR the option would make it 8 / 24 bytes too big for node1's eth0: node1 answers
    # "fragmentation needed" / "packet too big" with the MTU less the option and the smaller
    # datagram gets through; otherwise (SNAT: UDP in hybrid too) it is forwarded as it is.
    local want mtu lb
    before=$(ns_stat_value 1 drop_frag_needed)
    for f in $FAMILIES; do
        if [[ $f == 4 ]]; then lb=$NS_REMOTE_LB_V4; else lb=$NS_REMOTE_LB_V6; fi
        if [[ $MODE == dsr ]]; then
            mtu=$((f == 4 ? 1492 : 1476))
            want="node1 announces MTU $mtu (1500 less the DSR option), the smaller datagram reaches n2p1"
            e2e_check "IPv$f 8c UDP: a 1500-byte datagram (DF) to $lb:53: $want" \
                ns_client udp-pmtu "$lb" 53 --l3-size 1500 --expect-mtu "$mtu" --expect n2p1
        else
            e2e_check "IPv$f 8c UDP: a 1500-byte datagram (DF) to $lb:53 reaches n2p1 as it is" \
                ns_client udp-pmtu "$lb" 53 --l3-size 1500 --expect n2p1
        fi
    done
    after=$(ns_stat_value 1 drop_frag_needed)
    echo "    info: node1 drop_frag_needed: $before -> $after"

    # 8d: answers too big for the client's side: a client behind a router whose link to it has
    # MTU $NS_FAR_MTU downloads; the router's ICMP error about an answer goes to the service
    # address (node1) and must reach the backend, else the transfer stalls (a PMTU blackhole).
    if ! ns_far_topology || ! ns_node_server 1; then
        e2e_result "8d not run: the far client or node1's own server could not be set up" 1
        return 0
    fi
    before=$(ns_stat_value 1 icmp_translated)
    for f in $FAMILIES; do
        n1=$(ns_node_ip 1 "$f")
        base_ok[f]=""
        e2e_check "IPv$f 8d baseline: the far client downloads ${UPLOAD_BYTES} bytes from node1's own server (router's ICMP to node1 itself; within 10 s)" \
            ns_far_client download "$(e2e_url "$n1" 8080)" --bytes "$UPLOAD_BYTES" --timeout 10 \
            --expect node1 && base_ok[f]=1
        if [[ -z ${base_ok[f]} ]]; then
            e2e_result "IPv$f 8d not run: the baseline download failed already" 1
            continue
        fi
        e2e_check "IPv$f 8d the far client downloads ${UPLOAD_BYTES} bytes via node1:30480 from n2p1 (the router's error about the answer reaches n2p1; within 10 s)" \
            ns_far_client download "$(e2e_url "$n1" 30480)" --bytes "$UPLOAD_BYTES" --timeout 10 \
            --expect n2p1
    done
    after=$(ns_stat_value 1 icmp_translated)
    echo "    info: node1 icmp_translated: $before -> $after"
}

# ---------------------------------------------------------------- 4 Maglev
checks_4() {
    local f lb first saved
    for f in $FAMILIES; do
        if [[ $f == 4 ]]; then lb=$NS_ALL_LB_V4 first=41000; else lb=$NS_ALL_LB_V6 first=42000; fi
        saved=$E2E_RUN/maglev-ipv$f.json
        echo "--- IPv$f: 4 Maglev: np-all $lb:80 (4 backends) from fixed client ports $first..$((first + 7)) ---"
        ns_client_via 1 >/dev/null
        e2e_check "IPv$f 4 via node1: a GET from each of 8 fixed ports" \
            ns_client ports "$(e2e_url "$lb" 80)" --first-port "$first" --count 8 --save "$saved"
        ns_client_via 2 >/dev/null
        e2e_check "IPv$f 4 via node2 (client route switched): each port reaches the same backend as via node1" \
            ns_client ports "$(e2e_url "$lb" 80)" --first-port "$first" --count 8 \
            --compare "$saved"
        ns_client_via 1 >/dev/null
        # the destination is not hashed (docs/architecture.md): node1's and node2's NodePorts
        # give the same backend for the same client port too
        e2e_check "IPv$f 4 NodePort node1:30380: a GET from each of 8 fixed ports $((first + 8))..$((first + 15))" \
            ns_client ports "$(e2e_url "$(ns_node_ip 1 "$f")" 30380)" --first-port $((first + 8)) \
            --count 8 --save "$saved.np"
        e2e_check "IPv$f 4 NodePort node2:30380: each port reaches the same backend as via node1:30380" \
            ns_client ports "$(e2e_url "$(ns_node_ip 2 "$f")" 30380)" --first-port $((first + 8)) \
            --count 8 --compare "$saved.np"
        e2e_check "IPv$f 4 Maglev still spreads: 40 connections to $lb:80 reach at least 3 of 4 backends" \
            eval "out=\$(ns_client http '$(e2e_url "$lb" 80)' --count 40 --timeout 1 --give-up-after 3 --deadline 15); echo \"\$out\" | grep -v '^{'; n=\$(echo \"\$out\" | head -n 1 | grep -o 'n[12]p[12]=' | wc -l); ((n >= 3))"
    done
}

# ---------------------------------------------------------------- run
echo "=== phase 1: --lb-mode $MODE --xdp-mode $XDP_MODE --lb-algorithm random (default) ==="
for f in $FAMILIES; do
    checks_123 "$f"
    checks_5 "$f"
    checks_7 "$f"
done
checks_6
checks_8
for n in 1 2; do
    echo "    node$n lb_stats_v3: $(ns_stats "$n")"
done

if [[ -n $EMULATE ]]; then
    echo "=== emulation: no phase 2 (Maglev needs sluice) ==="
    finish
fi
echo "=== phase 2: agents stopped, --cleanup, started with --lb-algorithm maglev --maglev-hash-seed $MAGLEV_SEED ==="
ns_stop_agents
for n in 1 2; do
    e2e_check "node$n: sluice-agent --cleanup exits 0" ns_agent_cleanup "$n"
done
lacking=$(ns_agent_missing_flags --lb-algorithm --maglev-hash-seed)
if [[ -n $lacking ]]; then
    e2e_result "phase 2 (Maglev) not run: sluice-agent --help lacks $lacking" 1
    finish
fi
AGENT_FLAGS+=(--lb-algorithm maglev --maglev-hash-seed "$MAGLEV_SEED")
if start_agents; then
    for f in $FAMILIES; do
        e2e_check "IPv$f maglev ready: node1 NodePort 30080 or 30480 answers (within 15 s)" \
            wait_served "$(e2e_url "$(ns_node_ip 1 "$f")" 30080)" \
            "$(e2e_url "$(ns_node_ip 1 "$f")" 30480)"
    done
    checks_4
fi
for n in 1 2; do
    echo "    node$n lb_stats_v3: $(ns_stats "$n")"
done
finish
