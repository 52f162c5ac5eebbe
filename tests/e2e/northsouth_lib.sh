# shellcheck shell=bash disable=SC2034  # SC2034: addresses are used by test_northsouth.sh
# Helpers of the north-south e2e test (test_northsouth.sh): two nodes and an external client
# on a LAN, each node with two routed pods and its own sluice-agent. Built on lib.sh (setup,
# traps, processes, checks); see README.md "test_northsouth.sh" for the picture.
#
# Safety: as lib.sh. Every namespace is created here and recorded for cleanup
# (e2e_add_netns); the LAN is a bridge inside the run's own `lan` netns, so nothing links to the
# root netns; XDP/tc are attached only to devices inside the run's node namespaces (by the
# agents, on `eth0` and `veth-p*` there). Each agent pins under its own directory of the run's
# private bpffs. ns_on_exit (EXIT trap) stops the agents by pid, runs `sluice-agent --cleanup`
# in each node netns, then lib.sh's e2e_cleanup (other processes, namespaces, bpffs).
#
#   source northsouth_lib.sh
#   ns_preflight || exit $?; e2e_setup "sn$$-"; ns_install_traps; e2e_watchdog 280
#   ns_topology; ns_start_servers; ns_write_manifests allow
#   ns_start_agent 1 --lb-mode dsr ...; ns_start_agent 2 --lb-mode dsr ...

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS_CLIENT_V4=192.168.50.1
NS_CLIENT_V6=fd50::1
NS_NODE_V4=([1]=192.168.50.11 [2]=192.168.50.12)
NS_NODE_V6=([1]=fd50::11 [2]=fd50::12)
NS_NODE_MAC=([1]=02:50:00:00:00:11 [2]=02:50:00:00:00:12)
NS_CLIENT_MAC=02:50:00:00:00:01
NS_PODS=(n1p1 n1p2 n2p1 n2p2)
# Service addresses and ports: northsouth_manifests.py
NS_LB_V4=192.168.60.10 NS_LB_V6=fd60::10           # np: LoadBalancer ingress
NS_EXT_V4=192.168.60.20 NS_EXT_V6=fd60::20         # np: externalIPs
NS_LOCAL_LB_V4=192.168.60.30 NS_LOCAL_LB_V6=fd60::30
NS_SRC_LB_V4=192.168.60.40 NS_SRC_LB_V6=fd60::40   # np-src: loadBalancerSourceRanges
NS_ALL_LB_V4=192.168.60.50 NS_ALL_LB_V6=fd60::50   # np-all: 4 backends (Maglev)
NS_REMOTE_LB_V4=192.168.60.60 NS_REMOTE_LB_V6=fd60::60
NS_HC_PORT=30300

NS_LAN=""
NS_CLIENT=""
NS_NODE=()
NS_AGENT_PID=()
NS_AGENT_LOG=()
NS_AGENT_ARGS1=()
NS_AGENT_ARGS2=()
NS_AGENT_STARTED=0
NS_FINISHED=0    # set by the test once it printed its summary
NS_AGENT_RUNS=0  # how many times ns_start_agent ran (log names agent-nodeN.K.log)

# ns_preflight: lib.sh's preflight and the tools the north-south tests need; 0 or 77 (skip)
ns_preflight() {
    e2e_preflight || return $?
    local tool
    for tool in ethtool clang bpftool curl; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "SKIP: $tool not found (scripts/install-deps.sh installs it)"
            return 77
        fi
    done
}

# ------------------------------------------------------------------ names and addresses
ns_pod_ns() { printf '%s%s' "$E2E_PREFIX" "$1"; }
ns_pod_node() { printf '%s' "${1:1:1}"; } # n2p1 -> 2
ns_pod_index() { printf '%s' "${1:3:1}"; } # n2p1 -> 1
ns_pod_ip4() { printf '10.201.%s.%d' "$(ns_pod_node "$1")" $((10 + $(ns_pod_index "$1"))); }
ns_pod_ip6() { printf 'fd01:%s::%d' "$(ns_pod_node "$1")" $((10 + $(ns_pod_index "$1"))); }
ns_pod_ip() { if [[ $2 == 4 ]]; then ns_pod_ip4 "$1"; else ns_pod_ip6 "$1"; fi; }
ns_node_ip() { if [[ $2 == 4 ]]; then echo "${NS_NODE_V4[$1]}"; else echo "${NS_NODE_V6[$1]}"; fi; }
ns_client_ip() { if [[ $1 == 4 ]]; then echo "$NS_CLIENT_V4"; else echo "$NS_CLIENT_V6"; fi; }
ns_node_bpffs() { printf '%s/node%s' "$E2E_BPFFS" "$1"; }
ns_node_manifests() { printf '%s/manifests-node%s' "$E2E_WORK" "$1"; }
ns_node_name() { printf 'ns-node%s' "$1"; }

# ns_ethtool NETNS ARGS...: ethtool inside NETNS, bounded
ns_ethtool() {
    local ns=$1
    shift
    timeout -k 2 10 ip netns exec "$ns" ethtool "$@"
}

# ------------------------------------------------------------------ topology
# A veth delivers XDP frames that its peer sends (XDP_TX on a node's eth0, XDP_REDIRECT into a
# pod's veth) only through its own NAPI, which runs when GRO or an XDP program is enabled on it.
# GRO alone was not enough here (kernel 6.18: XDP_TX frames counted in the peer's
# rx_queue_0_xdp_packets but most never reached its stack; with an XDP program on the peer they
# all did), and GRO on a LAN port has a worse effect: the bridge then forwards GRO-merged
# super-packets (GSO, pseudo-header-only TCP checksum) to the node, whose XDP sees what no real
# NIC delivers (measured: the backend counted TcpInCsumErrors on 237 of 354 segments of an
# upload through SNAT; none with GRO off). So every peer a node's program may send XDP frames
# to (the LAN ports of client and nodes, the pods' eth0) gets this do-nothing XDP_PASS program
# (native mode) and GRO off (NS_PEER_GRO); the nodes' eth0 get GRO on, as a NIC: XDP sees
# single frames, the stack and tc (--xdp-mode off) see GRO-merged packets.
NS_XDP_PASS_PIN=""
ns_xdp_pass_load() {
    local src=$E2E_WORK/xdp_pass.c obj=$E2E_WORK/xdp_pass.o
    if ! command -v clang >/dev/null 2>&1 || ! command -v bpftool >/dev/null 2>&1; then
        e2e_err "clang and bpftool are needed for the peers' XDP_PASS program"
        return 1
    fi
    cat >"$src" <<'EOF_XDP'
/* XDP_PASS: keeps the veth's NAPI on, so XDP frames from its peer are delivered */
__attribute__((section("xdp"), used)) int xdp_pass(void *ctx) { return 2; }
char _license[] __attribute__((section("license"), used)) = "GPL";
EOF_XDP
    clang -O2 -target bpf -c "$src" -o "$obj" || return 1
    mkdir -p "$E2E_BPFFS/topology" || return 1
    NS_XDP_PASS_PIN=$E2E_BPFFS/topology/xdp_pass
    bpftool prog load "$obj" "$NS_XDP_PASS_PIN" type xdp || return 1
}

# ns_xdp_reflect_check N: topology self-test of XDP_TX over the LAN: a UDP reflector (datagrams
# to port 9999: MACs, IPv4 addresses and ports swapped, XDP_TX) on node N's eth0, the client
# must get its datagrams back; detached again afterwards.
ns_xdp_reflect_check() {
    local n=$1 src=$E2E_WORK/xdp_reflect.c obj=$E2E_WORK/xdp_reflect.o rc=0
    cat >"$src" <<'EOF_XDP'
struct xdp_md { unsigned int data, data_end; };
__attribute__((section("xdp"), used)) int xdp_reflect(struct xdp_md *ctx)
{
	unsigned char *d = (unsigned char *)(long)ctx->data;
	unsigned char *e = (unsigned char *)(long)ctx->data_end;
	unsigned char t;
	int i;

	if (d + 42 > e || d[12] != 0x08 || d[13] != 0x00 || d[14] != 0x45 || d[23] != 17 ||
	    d[36] != 0x27 || d[37] != 0x0f)
		return 2; /* XDP_PASS: not IPv4 UDP to port 9999 */
	for (i = 0; i < 6; i++) { t = d[i]; d[i] = d[6 + i]; d[6 + i] = t; }
	for (i = 0; i < 4; i++) { t = d[26 + i]; d[26 + i] = d[30 + i]; d[30 + i] = t; }
	for (i = 0; i < 2; i++) { t = d[34 + i]; d[34 + i] = d[36 + i]; d[36 + i] = t; }
	return 3; /* XDP_TX */
}
char _license[] __attribute__((section("license"), used)) = "GPL";
EOF_XDP
    clang -O2 -target bpf -c "$src" -o "$obj" || return 1
    mkdir -p "$E2E_BPFFS/topology" || return 1
    timeout -k 2 10 ip netns exec "${NS_NODE[n]}" bpftool prog load "$obj" \
        "$E2E_BPFFS/topology/xdp_reflect" type xdp || return 1
    ip netns exec "${NS_NODE[n]}" bpftool net attach xdpdrv pinned \
        "$E2E_BPFFS/topology/xdp_reflect" dev eth0 || rc=1
    rm -f "$E2E_BPFFS/topology/xdp_reflect"
    if ((rc == 0)); then
        ns_client udp "${NS_NODE_V4[n]}" 9999 --count 5 --timeout 1 --deadline 10 || rc=1
        ip netns exec "${NS_NODE[n]}" ethtool -S eth0 | grep -E 'xdp_(tx|packets)'
    fi
    ip netns exec "${NS_NODE[n]}" bpftool net detach xdpdrv dev eth0
    return "$rc"
}

# ns_xdp_peer NETNS DEV: the XDP_PASS program (native) on DEV, GRO per NS_PEER_GRO (off)
ns_xdp_peer() {
    ns_ethtool "$1" -K "$2" gro "${NS_PEER_GRO:-off}" >/dev/null || return 1
    if [[ ${NS_PEER_XDP:-1} == 1 ]]; then
        ip netns exec "$1" bpftool net attach xdpdrv pinned "$NS_XDP_PASS_PIN" dev "$2" ||
            return 1
    fi
}

# ns_lan_port DEV: DEV (already in the lan netns) becomes a port of br0, up, and takes XDP
# frames from its peer (ns_xdp_peer)
ns_lan_port() {
    ip -n "$NS_LAN" link set "$1" master br0 || return 1
    ip -n "$NS_LAN" link set "$1" up || return 1
    ns_xdp_peer "$NS_LAN" "$1" || return 1
}

# ns_topology: lan (bridge), client, node1, node2, pods n1p1 n1p2 n2p1 n2p2 (README.md).
ns_topology() {
    local n o
    NS_LAN=${E2E_PREFIX}lan
    NS_CLIENT=${E2E_PREFIX}client
    NS_NODE=([1]=${E2E_PREFIX}node1 [2]=${E2E_PREFIX}node2)
    if ! command -v ethtool >/dev/null 2>&1; then
        e2e_err "ethtool not found (scripts/install-deps.sh installs it)"
        return 1
    fi
    e2e_log "topology: netns $NS_LAN (bridge) $NS_CLIENT ${NS_NODE[1]} ${NS_NODE[2]} + pods ${NS_PODS[*]}"
    if [[ ${NS_PEER_XDP:-1} == 1 ]]; then
        ns_xdp_pass_load || return 1
    fi

    e2e_add_netns "$NS_LAN" || return 1
    ip -n "$NS_LAN" link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0 ||
        return 1
    ip -n "$NS_LAN" link set br0 up || return 1

    # the external client: reaches the nodes on the LAN, the LB / external IPs through node1
    # (ns_client_via switches that), never the pod CIDRs
    e2e_add_netns "$NS_CLIENT" || return 1
    e2e_sysctl "$NS_CLIENT" net.ipv4.conf.all.accept_redirects=0 \
        net.ipv4.conf.default.accept_redirects=0 \
        net.ipv6.conf.all.accept_redirects=0 net.ipv6.conf.default.accept_redirects=0 \
        "net.ipv4.ip_local_reserved_ports=$E2E_FIXED_PORTS" || return 1
    ip -n "$NS_CLIENT" link add eth0 address "$NS_CLIENT_MAC" type veth \
        peer name p-client netns "$NS_LAN" || return 1
    ns_lan_port p-client || return 1
    ip -n "$NS_CLIENT" addr add "$NS_CLIENT_V4/24" dev eth0 || return 1
    ip -n "$NS_CLIENT" addr add "$NS_CLIENT_V6/64" dev eth0 nodad || return 1
    ip -n "$NS_CLIENT" link set eth0 up || return 1
    # full checksums in every packet, as on a wire (XDP sees the frame as sent)
    ns_ethtool "$NS_CLIENT" -K eth0 tx off >/dev/null || return 1
    ip -n "$NS_CLIENT" route add 192.168.60.0/24 via "${NS_NODE_V4[1]}" || return 1
    ip -n "$NS_CLIENT" -6 route add fd60::/64 via "${NS_NODE_V6[1]}" || return 1

    for n in 1 2; do
        o=$((3 - n))
        e2e_add_netns "${NS_NODE[n]}" || return 1
        e2e_sysctl "${NS_NODE[n]}" net.ipv4.ip_forward=1 \
            net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1 \
            net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 ||
            return 1
        ip -n "${NS_NODE[n]}" link add eth0 address "${NS_NODE_MAC[n]}" type veth \
            peer name "p-node$n" netns "$NS_LAN" || return 1
        ns_lan_port "p-node$n" || return 1
        ip -n "${NS_NODE[n]}" addr add "${NS_NODE_V4[n]}/24" dev eth0 || return 1
        ip -n "${NS_NODE[n]}" addr add "${NS_NODE_V6[n]}/64" dev eth0 nodad || return 1
        ip -n "${NS_NODE[n]}" link set eth0 up || return 1
        # node-to-node packets carry full checksums too (a real NIC sends them so)
        ns_ethtool "${NS_NODE[n]}" -K eth0 tx off >/dev/null || return 1
        ns_ethtool "${NS_NODE[n]}" -K eth0 gro on >/dev/null || return 1
        # the other node's pod CIDR through its LAN address (routed, no overlay)
        ip -n "${NS_NODE[n]}" route add "10.201.$o.0/24" via "${NS_NODE_V4[o]}" || return 1
        ip -n "${NS_NODE[n]}" -6 route add "fd01:$o::/64" via "${NS_NODE_V6[o]}" || return 1
        ns_add_pod "n${n}p1" || return 1
        ns_add_pod "n${n}p2" || return 1
    done
    return 0
}

# ns_add_pod NAME (n<node>p<i>): Calico-style routed pod on its node, as lib.sh's routed
# layout: host end veth-p<i> (MAC ee:ee:ee:ee:ee:ee, proxy_arp, fe80::1), a /32 and /128
# route per pod; in the pod eth0 with a /32 and /128, default via 169.254.1.1 / fe80::1.
# The pod's eth0 takes XDP frames (ns_xdp_peer): a node's XDP program may redirect into veth-p<i>.
ns_add_pod() {
    local name=$1 n i pod node
    n=$(ns_pod_node "$name")
    i=$(ns_pod_index "$name")
    pod=$(ns_pod_ns "$name")
    node=${NS_NODE[n]}
    e2e_add_netns "$pod" || return 1
    e2e_sysctl "$pod" net.ipv4.conf.all.accept_redirects=0 \
        net.ipv4.conf.default.accept_redirects=0 \
        net.ipv6.conf.all.accept_redirects=0 net.ipv6.conf.default.accept_redirects=0 \
        "net.ipv4.ip_local_reserved_ports=$E2E_FIXED_PORTS" || return 1
    ip -n "$node" link add "veth-p$i" address ee:ee:ee:ee:ee:ee type veth \
        peer name eth0 netns "$pod" || return 1
    e2e_sysctl "$node" "net.ipv4.conf.veth-p$i.proxy_arp=1" \
        "net.ipv4.conf.veth-p$i.send_redirects=0" || return 1
    ip -n "$node" link set "veth-p$i" up || return 1
    ip -n "$node" addr add fe80::1/64 dev "veth-p$i" nodad || return 1
    ip -n "$node" route add "$(ns_pod_ip4 "$name")/32" dev "veth-p$i" || return 1
    ip -n "$node" -6 route add "$(ns_pod_ip6 "$name")/128" dev "veth-p$i" || return 1
    ip -n "$pod" addr add "$(ns_pod_ip4 "$name")/32" dev eth0 || return 1
    ip -n "$pod" addr add "$(ns_pod_ip6 "$name")/128" dev eth0 nodad || return 1
    ip -n "$pod" link set eth0 up || return 1
    ns_xdp_peer "$pod" eth0 || return 1
    ip -n "$pod" route add default via 169.254.1.1 dev eth0 onlink || return 1
    ip -n "$pod" neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent ||
        return 1
    ip -n "$pod" -6 route add default via fe80::1 dev eth0 || return 1
    ip -n "$pod" -6 neigh replace fe80::1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent ||
        return 1
}

# ns_far_topology: a router on the LAN (192.168.50.254, fd50::fe) and a client behind it
# (192.168.70.2, fd70::2) on a link whose MTU is NS_FAR_MTU on the router's side and 1500 on
# the far client's: its SYN announces MSS 1460, so only the router's ICMP "fragmentation
# needed" / "packet too big" tells a sender of 1500-byte packets (path MTU discovery of
# answers, towards the client). Both nodes route 192.168.70.0/24 and fd70::/64 via the router.
NS_ROUTER=""
NS_FAR=""
NS_FAR_V4=192.168.70.2 NS_FAR_V6=fd70::2
NS_FAR_MTU=1300
ns_far_ip() { if [[ $1 == 4 ]]; then echo "$NS_FAR_V4"; else echo "$NS_FAR_V6"; fi; }
ns_far_topology() {
    local n
    [[ -n $NS_FAR ]] && return 0
    NS_ROUTER=${E2E_PREFIX}router
    NS_FAR=${E2E_PREFIX}far
    e2e_log "far client: netns $NS_ROUTER (LAN 192.168.50.254) -> $NS_FAR (mtu $NS_FAR_MTU on the router's side)"
    e2e_add_netns "$NS_ROUTER" || return 1
    e2e_sysctl "$NS_ROUTER" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 || return 1
    ip -n "$NS_ROUTER" link add eth0 type veth peer name p-router netns "$NS_LAN" || return 1
    ns_lan_port p-router || return 1
    ip -n "$NS_ROUTER" addr add 192.168.50.254/24 dev eth0 || return 1
    ip -n "$NS_ROUTER" addr add fd50::fe/64 dev eth0 nodad || return 1
    ip -n "$NS_ROUTER" link set eth0 up || return 1
    e2e_add_netns "$NS_FAR" || return 1
    e2e_sysctl "$NS_FAR" net.ipv4.conf.all.accept_redirects=0 \
        net.ipv4.conf.default.accept_redirects=0 \
        net.ipv6.conf.all.accept_redirects=0 net.ipv6.conf.default.accept_redirects=0 || return 1
    ip -n "$NS_ROUTER" link add eth1 mtu "$NS_FAR_MTU" type veth peer name eth0 netns "$NS_FAR" ||
        return 1
    ip -n "$NS_ROUTER" addr add 192.168.70.1/24 dev eth1 || return 1
    ip -n "$NS_ROUTER" addr add fd70::1/64 dev eth1 nodad || return 1
    ip -n "$NS_ROUTER" link set eth1 up || return 1
    ip -n "$NS_FAR" addr add "$NS_FAR_V4/24" dev eth0 || return 1
    ip -n "$NS_FAR" addr add "$NS_FAR_V6/64" dev eth0 nodad || return 1
    ip -n "$NS_FAR" link set eth0 up || return 1
    ip -n "$NS_FAR" route add default via 192.168.70.1 || return 1
    ip -n "$NS_FAR" -6 route add default via fd70::1 || return 1
    # full checksums, as on a wire (the nodes' XDP sees the frames as sent)
    ns_ethtool "$NS_FAR" -K eth0 tx off >/dev/null || return 1
    ns_ethtool "$NS_ROUTER" -K eth0 tx off >/dev/null || return 1
    for n in 1 2; do
        ip -n "${NS_NODE[n]}" route add 192.168.70.0/24 via 192.168.50.254 || return 1
        ip -n "${NS_NODE[n]}" -6 route add fd70::/64 via fd50::fe || return 1
    done
}

# ns_far_client SUBCOMMAND ARGS...: podclient.py in the far client's netns
ns_far_client() {
    timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "$NS_FAR" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# ns_node_server N: podserver.py in node N's own netns (a hostNetwork server named nodeN)
ns_node_server() {
    local n=$1
    [[ -f $E2E_RUN/server-node$n.ready ]] && return 0
    e2e_bg "server-node$n" ip netns exec "${NS_NODE[n]}" "$E2E_PY" "$E2E_DIR/podserver.py" \
        --name "node$n" --ready-file "$E2E_RUN/server-node$n.ready"
    e2e_wait_file "$E2E_RUN/server-node$n.ready" 10
}

# ns_client_via N: the client's routes to the LB / external IP ranges go through node N
ns_client_via() {
    ip -n "$NS_CLIENT" route replace 192.168.60.0/24 via "${NS_NODE_V4[$1]}" || return 1
    ip -n "$NS_CLIENT" -6 route replace fd60::/64 via "${NS_NODE_V6[$1]}" || return 1
    echo "client: 192.168.60.0/24 and fd60::/64 now via node$1"
}

# ------------------------------------------------------------------ processes
ns_start_servers() {
    local p
    for p in "${NS_PODS[@]}"; do
        e2e_bg "server-$p" ip netns exec "$(ns_pod_ns "$p")" "$E2E_PY" "$E2E_DIR/podserver.py" \
            --name "$p" --ready-file "$E2E_RUN/server-$p.ready"
    done
    for p in "${NS_PODS[@]}"; do
        if ! e2e_wait_file "$E2E_RUN/server-$p.ready" 10; then
            e2e_err "podserver in $p not ready after 10s"
            tail -n 20 "$E2E_LOGS/server-$p.log" >&2
            return 1
        fi
    done
    e2e_log "pod servers ready in ${NS_PODS[*]} (HTTP :8080, UDP :5353)"
}

# ns_client SUBCOMMAND ARGS...: podclient.py in the client netns (outer timeout as a last resort)
ns_client() {
    timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "$NS_CLIENT" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# ns_pod_client POD SUBCOMMAND ARGS...: podclient.py in a pod netns
ns_pod_client() {
    local p=$1
    shift
    timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "$(ns_pod_ns "$p")" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# ns_node_client N SUBCOMMAND ARGS...: podclient.py in node N's netns
ns_node_client() {
    local n=$1
    shift
    timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "${NS_NODE[n]}" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# ns_client_http_code URL: HTTP status the client gets (000 when none), bounded
ns_client_http_code() {
    timeout -k 2 10 ip netns exec "$NS_CLIENT" curl -s -g -o "$E2E_RUN/curl.body" \
        -w '%{http_code}' --max-time 3 "$1" 2>/dev/null
}

# ------------------------------------------------------------------ manifests
# ns_write_manifests SRC_RANGES [--only NAME...]: the cluster into both nodes' directories
ns_write_manifests() {
    local ranges=$1 n
    shift
    for n in 1 2; do
        mkdir -p "$(ns_node_manifests "$n")" || return 1
        "$E2E_PY" "$E2E_DIR/northsouth_manifests.py" --dir "$(ns_node_manifests "$n")" \
            --staging "$E2E_STAGING" --src-ranges "$ranges" "$@" || return 1
    done
}

# ------------------------------------------------------------------ agents
# ns_agent_missing_flags FLAG...: prints those of the flags the agent's --help does not list
ns_agent_missing_flags() {
    local help f missing=()
    help=$("$E2E_AGENT_BIN" --help 2>&1)
    for f in "$@"; do
        grep -q -e "$f\b" <<<"$help" || missing+=("$f")
    done
    echo "${missing[*]}"
}

# ns_start_agent N EXTRA_ARGS...: sluice-agent in node N's netns with its own manifests,
# --node-name and bpffs root; log logs/agent-nodeN.K.log (K counts the starts of the run).
# NS_AGENT_BIN, when set, is the binary (the upgrade test's other build).
ns_start_agent() {
    local n=$1 log
    shift
    local args=(--manifests "$(ns_node_manifests "$n")" --node-name "$(ns_node_name "$n")"
        --bpffs-root "$(ns_node_bpffs "$n")" --devices eth0 --pod-devices 'veth-p*' "$@")
    NS_AGENT_RUNS=$((NS_AGENT_RUNS + 1))
    log=agent-node$n.$NS_AGENT_RUNS
    if ((n == 1)); then NS_AGENT_ARGS1=("${args[@]}"); else NS_AGENT_ARGS2=("${args[@]}"); fi
    e2e_log "starting sluice-agent in ${NS_NODE[n]}: ${args[*]} (log logs/$log.log)"
    NS_AGENT_LOG[n]=$E2E_LOGS/$log.log
    e2e_bg "$log" ip netns exec "${NS_NODE[n]}" "${NS_AGENT_BIN:-$E2E_AGENT_BIN}" "${args[@]}"
    NS_AGENT_PID[n]=$E2E_BG_PID
    NS_AGENT_STARTED=1
}

ns_agent_generation() {
    local g
    g=$(grep -o 'synced generation=[0-9]*' "${NS_AGENT_LOG[$1]}" 2>/dev/null | tail -n 1 |
        cut -d= -f2)
    echo "${g:-0}"
}

# ns_wait_generation_gt N GEN TIMEOUT_S: node N's agent logged a sync with generation > GEN
ns_wait_generation_gt() {
    local n=$1 gen=$2 deadline=$((SECONDS + $3)) g
    while :; do
        g=$(ns_agent_generation "$n")
        if ((g > gen)); then
            echo "node$n: $(grep "synced generation=$g" "${NS_AGENT_LOG[n]}" | tail -n 1)"
            return 0
        fi
        if ! e2e_pid_alive "${NS_AGENT_PID[n]}"; then
            echo "node$n: sluice-agent exited while waiting for generation > $gen:"
            tail -n 15 "${NS_AGENT_LOG[n]}"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "node$n: no 'synced generation' > $gen within $3s (last seen $g)"
            return 1
        fi
        sleep 0.1
    done
}

# ns_stop_agents: SIGTERM both agents (by pid), wait, reap
ns_stop_agents() {
    local n pid
    for n in 1 2; do
        pid=${NS_AGENT_PID[n]:-}
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null
    done
    for n in 1 2; do
        pid=${NS_AGENT_PID[n]:-}
        [[ -n $pid ]] || continue
        e2e_wait_pid_exit "$pid" 10 || e2e_kill_pid "$pid"
        wait "$pid" 2>/dev/null
        e2e_forget_pid "$pid"
        NS_AGENT_PID[n]=""
    done
}

# ns_agent_cleanup N: `sluice-agent --cleanup` in node N's netns for its bpffs root
ns_agent_cleanup() {
    local n=$1
    e2e_netns_exists "${NS_NODE[n]}" || return 0
    timeout -k 5 30 ip netns exec "${NS_NODE[n]}" "$E2E_AGENT_BIN" --cleanup \
        --bpffs-root "$(ns_node_bpffs "$n")" >>"$E2E_LOGS/cleanup-node$n.log" 2>&1
}

# ns_xdp_state N DEV: "native", "generic", "offload", "multi" or "none"
ns_xdp_state() {
    ip -n "${NS_NODE[$1]}" -j -d link show dev "$2" 2>/dev/null | "$E2E_PY" -c '
import json, sys
try:
    link = json.load(sys.stdin)[0]
except Exception:
    print("unknown"); sys.exit(0)
x = link.get("xdp")
modes = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
print(modes.get(x.get("mode"), str(x.get("mode"))) if x else "none")'
}

# ------------------------------------------------------------------ diagnostics
NS_STAT_NAMES=""
# ns_stats N: node N's lb_stats_v3 (bpftool map dump, summed over CPUs), non-zero entries
ns_stats() {
    local n=$1 map
    map=$(ns_node_bpffs "$n")/lb_stats_v3
    command -v bpftool >/dev/null 2>&1 || { echo "(bpftool not found)"; return 0; }
    [[ -e $map ]] || { echo "(no $map)"; return 0; }
    timeout -k 2 10 ip netns exec "${NS_NODE[n]}" bpftool -j map dump pinned "$map" 2>&1 |
        "$E2E_PY" -c '
import json, re, sys
hdr = open(sys.argv[1]).read()
enum = re.search(r"enum lb_stat \{(.*?)\};", hdr, re.S).group(1)
names, v = {}, 0
for line in enum.splitlines():
    m = re.match(r"\s*(LB_STAT_\w+)\s*(=\s*(\w+))?\s*,", line)
    if not m:
        continue
    if m.group(3):
        v = names.get(m.group(3), v) if not m.group(3).isdigit() else int(m.group(3))
    names[m.group(1)] = v
    v += 1
text = dict(re.findall(r"\[(LB_STAT_\w+)\] = \"(\w+)\"", hdr))
by_index = {}
for k, i in names.items():
    if k in text:
        by_index[i] = text[k]
raw = sys.stdin.read()
try:
    entries = json.loads(raw)
except ValueError:
    print("bpftool: " + raw.strip()[:300]); sys.exit(0)
out = []
for e in entries:
    f = e.get("formatted", e)
    k = f["key"]
    vals = f.get("values") or [{"value": f.get("value")}]
    pk = by = 0
    for cpu in vals:
        val = cpu.get("value", cpu)
        if isinstance(val, dict):
            pk += int(val.get("packets", 0)); by += int(val.get("bytes", 0))
    if pk:
        out.append(f"{by_index.get(k, k)}={pk}")
print(" ".join(out) or "(all zero)")
' "$E2E_ROOT/maps/sluice_abi.h"
}

# ns_masters N: node N's service master entries (slot 0) of NodePort / LB / external
# frontends: address, port, proto, scope, count and flags by name (bpftool, BTF-formatted)
ns_masters() {
    local n=$1 m
    command -v bpftool >/dev/null 2>&1 || return 0
    for m in lb4_services_v1 lb6_services_v1; do
        [[ -e $(ns_node_bpffs "$n")/$m ]] || continue
        timeout -k 2 10 ip netns exec "${NS_NODE[n]}" bpftool -j map dump pinned \
            "$(ns_node_bpffs "$n")/$m" 2>&1 | "$E2E_PY" -c '
import ipaddress, json, struct, sys
raw = sys.stdin.read()
try:
    entries = json.loads(raw)
except ValueError:
    print("bpftool: " + raw.strip()[:200]); sys.exit(0)
names = {1: "AFFINITY", 2: "DROP_EMPTY", 4: "EXTERNAL", 8: "EXT_LOCAL", 16: "SOURCE_RANGES",
         32: "MAGLEV"}
def addr(v):
    words = v if isinstance(v, list) else [v]
    return str(ipaddress.ip_address(b"".join(struct.pack("<I", w) for w in words)))
rows = []
for e in entries:
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    if k["slot"] != 0:
        continue
    a = addr(k["vip"])
    if a.startswith("10.96.") or a.startswith("fd00:96:"):
        continue  # ClusterIPs
    port = struct.unpack(">H", struct.pack("<H", k["port"]))[0]
    fl = "|".join(n for b, n in names.items() if v["flags"] & b) or "0"
    rows.append((a, port, k["proto"], k["scope"], v["count"], fl, v["svc_id"]))
for a, port, proto, scope, count, fl, sid in sorted(rows):
    pname = {6: "tcp", 17: "udp"}.get(proto, proto)
    print(f"{a}:{port} {pname} scope={scope} count={count} flags={fl} svc={sid}")
'
    done
}

# ns_stat_value N NAME: packets of one stat on node N (0 when absent)
ns_stat_value() {
    local v
    v=$(ns_stats "$1" | tr ' ' '\n' | grep -E "^$2=" | cut -d= -f2)
    echo "${v:-0}"
}

# e2e_diag (lib.sh calls it at the first failed check): both nodes' state
e2e_diag() {
    ((E2E_DIAG_DONE)) && return 0
    E2E_DIAG_DONE=1
    ns_diag
}

ns_diag() {
    local n dev
    echo "----- diagnostics at first failure -----"
    for n in 1 2; do
        [[ -n ${NS_NODE[n]:-} ]] && e2e_netns_exists "${NS_NODE[n]}" || continue
        echo "=== node$n (${NS_NODE[n]}) ==="
        if ((NS_AGENT_STARTED)); then
            echo "\$ bpftool map dump pinned $(ns_node_bpffs "$n")/lb_stats_v3 (non-zero, summed over CPUs)"
            ns_stats "$n" | sed 's/^/  /'
            echo "\$ bpftool map dump pinned lb{4,6}_services_v1: masters of external frontends"
            ns_masters "$n" | head -n 40 | sed 's/^/  /'
            if [[ -x $E2E_CTL_BIN ]]; then
                echo "\$ sluicectl stats"
                timeout -k 2 10 ip netns exec "${NS_NODE[n]}" "$E2E_CTL_BIN" \
                    --bpffs-root "$(ns_node_bpffs "$n")" stats 2>&1 | awk 'NR == 1 || $3 != 0' |
                    head -n 40 | sed 's/^/  /'
                echo "\$ sluicectl service list"
                timeout -k 2 10 ip netns exec "${NS_NODE[n]}" "$E2E_CTL_BIN" \
                    --bpffs-root "$(ns_node_bpffs "$n")" service list 2>&1 | head -n 60 |
                    sed 's/^/  /'
            fi
        fi
        echo "\$ ip -d link show eth0 (xdp: $(ns_xdp_state "$n" eth0))"
        ip -n "${NS_NODE[n]}" -d link show dev eth0 | sed 's/^/  /'
        for dev in ingress egress; do
            echo "\$ tc filter show dev eth0 $dev"
            timeout -k 2 10 ip netns exec "${NS_NODE[n]}" tc filter show dev eth0 "$dev" 2>&1 |
                sed 's/^/  /'
        done
        echo "\$ ip -br addr; ip route; ip -6 route; ip neigh"
        ip -n "${NS_NODE[n]}" -br addr | sed 's/^/  /'
        ip -n "${NS_NODE[n]}" route | sed 's/^/  /'
        ip -n "${NS_NODE[n]}" -6 route | sed 's/^/  /'
        ip -n "${NS_NODE[n]}" neigh | head -n 20 | sed 's/^/  /'
        if [[ -n ${NS_AGENT_LOG[n]:-} && -f ${NS_AGENT_LOG[n]} ]]; then
            echo "\$ tail -n 40 ${NS_AGENT_LOG[n]}"
            tail -n 40 "${NS_AGENT_LOG[n]}" | sed 's/^/  /'
        fi
    done
    if [[ -n $NS_CLIENT ]] && e2e_netns_exists "$NS_CLIENT"; then
        echo "=== client ==="
        ip -n "$NS_CLIENT" route | sed 's/^/  /'
        ip -n "$NS_CLIENT" -6 route | sed 's/^/  /'
        ip -n "$NS_CLIENT" neigh | sed 's/^/  /'
    fi
    echo "----- end of diagnostics -----"
}

# ------------------------------------------------------------------ cleanup
ns_install_traps() {
    trap ns_on_exit EXIT
    trap 'e2e_err "interrupted (SIGINT)"; exit 130' INT
    trap 'e2e_err "terminated (SIGTERM)"; exit 143' TERM
}

ns_on_exit() {
    local rc=$? n
    trap '' INT TERM
    if ((!NS_FINISHED && ${#E2E_RESULTS[@]} > 0)); then
        # stopped early (watchdog, signal, set -e style exit): still say what ran
        e2e_summary
        echo "RESULT: FAIL (stopped before the end, exit $rc)"
        ((rc == 0)) && rc=1
    fi
    for n in 1 2; do
        [[ -n ${NS_AGENT_PID[n]:-} ]] && e2e_kill_pid "${NS_AGENT_PID[n]}"
    done
    if ((NS_AGENT_STARTED)) && ((E2E_BPFFS_MOUNTED)) && [[ -x $E2E_AGENT_BIN ]]; then
        for n in 1 2; do
            [[ -n ${NS_NODE[n]:-} ]] || continue
            if ! ns_agent_cleanup "$n"; then
                e2e_err "sluice-agent --cleanup failed on node$n (log: $E2E_LOGS/cleanup-node$n.log)"
                tail -n 20 "$E2E_LOGS/cleanup-node$n.log" >&2
            fi
        done
    fi
    # the peers' XDP_PASS pin goes with the bpffs; unpin it first so no "pins left" note
    [[ -n $NS_XDP_PASS_PIN ]] && rm -f "$NS_XDP_PASS_PIN" && rmdir "$E2E_BPFFS/topology" 2>/dev/null
    e2e_cleanup
    exit "$rc"
}

# ------------------------------------------------------------------ self-test of the checks
# NS_EMULATE=nft (test_northsouth.sh snat): instead of sluice, node N gets kube-proxy-like
# nftables rules with the `snat` semantics the checks expect (DNAT to a random backend,
# masquerade only towards a backend behind eth0, eTP=Local drop, source ranges, hostPort), so
# the checks themselves can be verified on this machine without the north-south datapath.
# ns_emulate_rules N RANGES(allow|deny): prints node N's ruleset (nft -f input)
ns_emulate_rules() {
    "$E2E_PY" - "$1" "$2" <<'EOF_NFT'
import sys
n, ranges = int(sys.argv[1]), sys.argv[2]
node = {1: ("192.168.50.11", "fd50::11"), 2: ("192.168.50.12", "fd50::12")}[n]
pod = {"n1p1": ("10.201.1.11", "fd01:1::11"), "n1p2": ("10.201.1.12", "fd01:1::12"),
       "n2p1": ("10.201.2.11", "fd01:2::11"), "n2p2": ("10.201.2.12", "fd01:2::12")}
# service: (nodePort tcp, udp, LB/external IPs v4, v6, backends, node-local only)
svcs = {
    "np": (30080, 30053, ["192.168.60.10", "192.168.60.20"], ["fd60::10", "fd60::20"],
           ["n1p1", "n2p1"], False),
    "np-local": (30180, 30153, ["192.168.60.30"], ["fd60::30"], ["n2p2"], True),
    "np-src": (30280, 30253, ["192.168.60.40"], ["fd60::40"], ["n1p1", "n2p1"], False),
    "np-all": (30380, 30353, ["192.168.60.50"], ["fd60::50"], ["n1p1", "n1p2", "n2p1", "n2p2"],
               False),
    "np-remote": (30480, 30453, ["192.168.60.60"], ["fd60::60"], ["n2p1"], False),
}
allow = {"allow": ("192.168.50.1/32", "fd50::1/128"), "deny": ("10.99.0.0/16", "fd99::/64")}[ranges]
nat, drop = [], []
def dnat(fam, daddrs, proto, dport, backends, tport):
    f = "ip" if fam == 0 else "ip6"
    to = ", ".join(f"{i} : {pod[b][fam]}" for i, b in enumerate(backends))
    nat.append(f"{f} daddr {{ {', '.join(daddrs)} }} {proto} dport {dport} "
               f"dnat {f} to numgen random mod {len(backends)} map {{ {to} }} : {tport}")
for name, (tnp, unp, lb4, lb6, backends, local) in svcs.items():
    for fam, lbs in ((0, lb4), (1, lb6)):
        f = "ip" if fam == 0 else "ip6"
        if local:
            backends_here = [b for b in backends if b.startswith(f"n{n}")]
            if not backends_here:
                drop.append(f"{f} daddr {node[fam]} meta l4proto {{ tcp, udp }} th dport {{ {tnp}, {unp} }} drop")
                drop.append(f"{f} daddr {{ {', '.join(lbs)} }} meta l4proto {{ tcp, udp }} th dport {{ 80, 53 }} drop")
                continue
            backends = backends_here
        if name == "np-src":
            drop.append(f"{f} daddr {{ {', '.join(lbs)} }} {f} saddr != {allow[fam]} drop")
        dnat(fam, [node[fam]], "tcp", tnp, backends, 8080)
        dnat(fam, [node[fam]], "udp", unp, backends, 5353)
        dnat(fam, lbs, "tcp", 80, backends, 8080)
        dnat(fam, lbs, "udp", 53, backends, 5353)
if n == 2:
    for fam in (0, 1):
        dnat(fam, [node[fam]], "tcp", 18080, ["n2p2"], 8080)
        dnat(fam, [node[fam]], "udp", 18053, ["n2p2"], 5353)
print("table inet nsemu\ndelete table inet nsemu\ntable inet nsemu {")
print("  chain filt {\n    type filter hook prerouting priority -300; policy accept;")
for r in drop:
    print("    " + r)
print("  }\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;")
for r in nat:
    print("    " + r)
print("  }\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;")
print('    oifname "eth0" ct status dnat masquerade')
print("  }\n}")
EOF_NFT
}

# ns_emulate_apply RANGES: (re)load both nodes' rulesets
ns_emulate_apply() {
    local n
    for n in 1 2; do
        ns_emulate_rules "$n" "$1" | ip netns exec "${NS_NODE[n]}" nft -f - || return 1
    done
}
