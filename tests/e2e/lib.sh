# shellcheck shell=bash
# Shared helpers for the sluice e2e tests and scripts/demo.sh.
#
# Safety (DESIGN.md §4): everything runs in network namespaces created here,
# none of which has a link or route to the root namespace; nothing is attached
# in the root namespace; each run has its own bpffs mount and name prefix; the
# EXIT/INT/TERM traps kill the processes started here (by pid), run
# `sluice-agent --cleanup` in the node netns, delete the namespaces and unmount
# the bpffs, also when a test fails. Every traffic loop and every wait is
# bounded (count and deadline).
#
# Usage (see test_clusterip.sh):
#   source lib.sh
#   e2e_preflight || exit $?          # 77 = skip
#   e2e_setup "sl$$-"                 # work dir + private bpffs
#   e2e_install_traps; e2e_watchdog 270
#   e2e_topology bridge|routed 4      # node netns + pod1..pod4
#   e2e_start_servers; e2e_write_manifests "$E2E_MANIFESTS"; e2e_start_agent
#   later: e2e_add_pod 5; e2e_start_server 5; e2e_wait_server 5 10
#          e2e_stop_agent 10; e2e_restart_agent LOGNAME (same args + bpffs)
#
# Names: netns ${prefix}node and ${prefix}pod<i>; in the node netns the host end
# of pod i's veth is veth-p<i> (so --pod-devices 'veth-p*'), in the pod it is eth0.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_PY=/usr/bin/python3
: "${SLUICE_BIN_DIR:=$E2E_ROOT/build/bin}"
E2E_AGENT_BIN="$SLUICE_BIN_DIR/sluice-agent"
E2E_CTL_BIN="$SLUICE_BIN_DIR/sluicectl"

E2E_PREFIX=""
E2E_WORK=""
E2E_BPFFS=""
E2E_MANIFESTS=""
E2E_STAGING=""
E2E_RUN=""
E2E_LOGS=""
E2E_BPFFS_MOUNTED=0
E2E_LAYOUT=""
E2E_NPODS=0
E2E_NODE=""
E2E_NODE_NAME="e2e-node"
E2E_PIDS=()
E2E_NETNS=()
E2E_AGENT_PID=""
E2E_AGENT_LOG=""
E2E_AGENT_PREV_LOGS=()
E2E_AGENT_ARGS=()
E2E_AGENT_STARTED=0
E2E_WATCHDOG_PID=""
E2E_CLEANED=0
E2E_PASS=0
E2E_FAIL=0
E2E_RESULTS=()
E2E_DIAG_DONE=0
E2E_LAST_OUT=""  # output of the last e2e_check (e2e_diag looks for ports in it)

# Service addresses (not assigned anywhere: pods reach them via their default route)
E2E_WEB_V4=10.96.0.10
E2E_WEB_V6=fd00:96::10
E2E_EMPTY_V4=10.96.0.20
E2E_EMPTY_V6=fd00:96::20
E2E_SELF_V4=10.96.0.30
E2E_SELF_V6=fd00:96::30

# Local ports tests bind explicitly (podclient.py reuse --first-port: 41000.., 42000..);
# reserved in every pod netns (see e2e_add_pod)
E2E_FIXED_PORTS=41000-42999

e2e_log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }
e2e_err() { printf '[e2e %s] ERROR: %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }

# ------------------------------------------------------------------ preflight
# Returns 0 when the e2e tier can run, 77 (skip) otherwise, with a message.
e2e_preflight() {
    if [[ $EUID -ne 0 ]]; then
        echo "SKIP: e2e tests need root (network namespaces, bpffs, tc)"
        return 77
    fi
    if [[ ! -x $E2E_PY ]]; then
        echo "SKIP: $E2E_PY not found"
        return 77
    fi
    local t
    for t in ip tc timeout sysctl mount umount; do
        if ! command -v "$t" >/dev/null 2>&1; then
            echo "SKIP: '$t' not found"
            return 77
        fi
    done
    if ! ip netns list >/dev/null 2>&1; then
        echo "SKIP: 'ip netns' is unavailable"
        return 77
    fi
    if ! grep -qw bpf /proc/filesystems; then
        echo "SKIP: bpf filesystem not supported by this kernel"
        return 77
    fi
    return 0
}

# The binaries are a build product: missing ones are an error, not a skip.
e2e_require_binaries() {
    local b
    for b in "$E2E_AGENT_BIN" "$@"; do
        if [[ ! -x $b ]]; then
            echo "FAIL: $b not found (build first: cmake --build build; or set SLUICE_BIN_DIR)"
            return 1
        fi
    done
}

# ------------------------------------------------------------------ setup / cleanup
# e2e_setup PREFIX: work dir under /tmp and a private bpffs mounted in it.
e2e_setup() {
    E2E_PREFIX=$1
    E2E_WORK=$(mktemp -d "/tmp/sluice-e2e.${E2E_PREFIX}XXXXXX") || return 1
    E2E_BPFFS=$E2E_WORK/bpffs
    E2E_MANIFESTS=$E2E_WORK/manifests
    E2E_STAGING=$E2E_WORK/staging
    E2E_RUN=$E2E_WORK/run
    E2E_LOGS=$E2E_WORK/logs
    mkdir -p "$E2E_BPFFS" "$E2E_MANIFESTS" "$E2E_STAGING" "$E2E_RUN" "$E2E_LOGS" || return 1
    if ! mount -t bpf bpf "$E2E_BPFFS"; then
        e2e_err "cannot mount bpffs on $E2E_BPFFS"
        return 1
    fi
    E2E_BPFFS_MOUNTED=1
    e2e_log "work dir $E2E_WORK (bpffs $E2E_BPFFS), name prefix $E2E_PREFIX"
}

e2e_install_traps() {
    trap e2e_on_exit EXIT
    trap 'e2e_err "interrupted (SIGINT)"; exit 130' INT
    trap 'e2e_err "terminated (SIGTERM)"; exit 143' TERM
}

e2e_on_exit() {
    local rc=$?
    e2e_cleanup
    exit "$rc"
}

# e2e_watchdog SECONDS: SIGTERM this shell (-> traps -> cleanup) if the run
# takes longer, so an outer timeout (ctest) never has to SIGKILL us.
e2e_watchdog() {
    local secs=$1 main=$$
    (
        trap - EXIT INT
        trap 'kill "$sp" 2>/dev/null; exit 0' TERM
        sleep "$secs" &
        sp=$!
        wait "$sp"
        echo "[e2e] watchdog: run exceeded ${secs}s, terminating" >&2
        kill -TERM "$main"
    ) &
    E2E_WATCHDOG_PID=$!
}

# true when pid exists and is not a zombie
e2e_pid_alive() {
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

# e2e_wait_pid_exit PID TIMEOUT_S: poll until PID is gone (or zombie)
e2e_wait_pid_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while e2e_pid_alive "$pid"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.05
    done
    return 0
}

# e2e_kill_pid PID: SIGTERM, up to 3 s grace, SIGKILL; reaps our child.
e2e_kill_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    if e2e_pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        if ! e2e_wait_pid_exit "$pid" 3; then
            kill -KILL "$pid" 2>/dev/null
            e2e_wait_pid_exit "$pid" 3
        fi
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# what is pinned in this run's bpffs, without the kernel's own preload
# iterators (maps.debug, progs.debug appear in every fresh bpffs)
e2e_bpffs_pins() {
    find "$E2E_BPFFS" -mindepth 1 2>/dev/null |
        grep -v -x -e "$E2E_BPFFS/maps.debug" -e "$E2E_BPFFS/progs.debug"
}

e2e_netns_exists() { [[ -e /run/netns/$1 ]]; }

e2e_cleanup() {
    ((E2E_CLEANED)) && return 0
    E2E_CLEANED=1
    trap '' INT TERM
    local i pid ns
    if [[ -n $E2E_WATCHDOG_PID ]]; then
        kill -TERM "$E2E_WATCHDOG_PID" 2>/dev/null
        wait "$E2E_WATCHDOG_PID" 2>/dev/null
    fi
    # processes we started, newest first
    for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do
        e2e_kill_pid "${E2E_PIDS[i]}"
    done
    # detach + unpin (only the agent knows what it pinned and attached)
    if ((E2E_AGENT_STARTED)) && [[ -n $E2E_NODE ]] && e2e_netns_exists "$E2E_NODE" &&
        ((E2E_BPFFS_MOUNTED)) && [[ -x $E2E_AGENT_BIN ]]; then
        if ! timeout -k 5 30 ip netns exec "$E2E_NODE" "$E2E_AGENT_BIN" --cleanup \
            --bpffs-root "$E2E_BPFFS" >>"$E2E_LOGS/cleanup.log" 2>&1; then
            e2e_err "sluice-agent --cleanup failed (log: $E2E_LOGS/cleanup.log)"
            tail -n 20 "$E2E_LOGS/cleanup.log" >&2
        fi
    fi
    # namespaces, newest first; anything still inside one of them was started by this run
    for ((i = ${#E2E_NETNS[@]} - 1; i >= 0; i--)); do
        ns=${E2E_NETNS[i]}
        e2e_netns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null || e2e_err "could not delete netns $ns"
    done
    if ((E2E_BPFFS_MOUNTED)); then
        local left
        left=$(e2e_bpffs_pins | head -n 20 | tr '\n' ' ')
        [[ -n $left ]] && e2e_log "note: pins left in bpffs after cleanup: $left"
        umount "$E2E_BPFFS" 2>/dev/null || umount -l "$E2E_BPFFS" 2>/dev/null ||
            e2e_err "could not unmount $E2E_BPFFS"
        E2E_BPFFS_MOUNTED=0
    fi
    if [[ -n $E2E_WORK && -d $E2E_WORK ]]; then
        if [[ ${E2E_KEEP:-0} == 1 ]]; then
            rmdir "$E2E_BPFFS" 2>/dev/null
            e2e_log "E2E_KEEP=1: logs kept in $E2E_WORK"
        elif ! mountpoint -q "$E2E_BPFFS" 2>/dev/null; then
            rm -rf "$E2E_WORK"
        fi
    fi
}

# ------------------------------------------------------------------ topology
e2e_pod_ns() { printf '%spod%s' "$E2E_PREFIX" "$1"; }

e2e_pod_ip4() {
    case $E2E_LAYOUT in
    bridge) printf '10.244.0.%d' $((10 + $1)) ;;
    routed) printf '10.244.1.%d' $((10 + $1)) ;;
    esac
}

e2e_pod_ip6() {
    case $E2E_LAYOUT in
    bridge) printf 'fd00:244::%d' $((10 + $1)) ;;
    routed) printf 'fd00:244:1::%d' $((10 + $1)) ;;
    esac
}

# e2e_sysctl NETNS key=value...
e2e_sysctl() {
    local ns=$1
    shift
    ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

e2e_add_netns() {
    ip netns add "$1" || return 1
    E2E_NETNS+=("$1")
    ip -n "$1" link set lo up || return 1
    # before any other interface exists, so all of them inherit it
    e2e_sysctl "$1" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# e2e_topology LAYOUT NPODS: node netns + pod netns pod1..podN (see README.md)
e2e_topology() {
    local layout=$1 n=$2 i
    case $layout in
    bridge | routed) ;;
    *)
        e2e_err "unknown layout '$layout' (bridge|routed)"
        return 1
        ;;
    esac
    E2E_LAYOUT=$layout
    E2E_NPODS=$n
    E2E_NODE=${E2E_PREFIX}node
    e2e_log "topology '$layout': netns $E2E_NODE + $n pods"
    e2e_add_netns "$E2E_NODE" || return 1
    e2e_sysctl "$E2E_NODE" net.ipv4.ip_forward=1 \
        net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1 \
        net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 || return 1
    if [[ $layout == bridge ]]; then
        ip -n "$E2E_NODE" link add br0 address 02:00:0a:f4:00:01 type bridge \
            forward_delay 0 stp_state 0 mcast_snooping 0 || return 1
        e2e_sysctl "$E2E_NODE" net.ipv4.conf.br0.send_redirects=0 || return 1
        ip -n "$E2E_NODE" addr add 10.244.0.1/24 dev br0 || return 1
        ip -n "$E2E_NODE" addr add fd00:244::1/64 dev br0 nodad || return 1
        ip -n "$E2E_NODE" link set br0 up || return 1
    else
        # node's own addresses (source of its ARP requests towards the pods)
        ip -n "$E2E_NODE" addr add 10.244.1.1/32 dev lo || return 1
        ip -n "$E2E_NODE" addr add fd00:244:1::1/128 dev lo || return 1
    fi
    for ((i = 1; i <= n; i++)); do
        e2e_add_pod "$i" || return 1
    done
    return 0
}

# e2e_add_pod I: pod netns ${prefix}pod<I> wired into the node netns for the
# current layout (E2E_LAYOUT, set by e2e_topology): veth-p<I> in the node, eth0
# in the pod, addresses/routes/neighbours as described in README.md. Used by
# e2e_topology for pod1..podN and by tests that add a pod later; the netns is
# recorded for cleanup (e2e_add_netns).
e2e_add_pod() {
    local i=$1 pod layout=$E2E_LAYOUT
    case $layout in
    bridge | routed) ;;
    *)
        e2e_err "e2e_add_pod: no topology yet (run e2e_topology first)"
        return 1
        ;;
    esac
    pod=$(e2e_pod_ns "$i")
    e2e_add_netns "$pod" || return 1
    # E2E_FIXED_PORTS: kept out of automatic (ephemeral) port allocation, IPv4 and
    # IPv6, so a client binding one of them explicitly never finds it held by an
    # earlier connection's TIME_WAIT (bind() fails then, even with SO_REUSEADDR)
    e2e_sysctl "$pod" net.ipv4.conf.all.accept_redirects=0 \
        net.ipv4.conf.default.accept_redirects=0 \
        net.ipv6.conf.all.accept_redirects=0 net.ipv6.conf.default.accept_redirects=0 \
        "net.ipv4.ip_local_reserved_ports=$E2E_FIXED_PORTS" ||
        return 1
    if [[ $layout == bridge ]]; then
        ip -n "$E2E_NODE" link add "veth-p$i" type veth peer name eth0 netns "$pod" || return 1
        ip -n "$E2E_NODE" link set "veth-p$i" master br0 || return 1
        ip -n "$E2E_NODE" link set "veth-p$i" up || return 1
        ip -n "$pod" addr add "$(e2e_pod_ip4 "$i")/24" dev eth0 || return 1
        ip -n "$pod" addr add "$(e2e_pod_ip6 "$i")/64" dev eth0 nodad || return 1
        ip -n "$pod" link set eth0 up || return 1
        ip -n "$pod" route add default via 10.244.0.1 dev eth0 || return 1
        ip -n "$pod" -6 route add default via fd00:244::1 dev eth0 || return 1
    else
        # Calico-style: every host-side veth has MAC ee:ee:ee:ee:ee:ee and no
        # IPv4 address; the pod's gateway 169.254.1.1 / fe80::1 is that MAC.
        ip -n "$E2E_NODE" link add "veth-p$i" address ee:ee:ee:ee:ee:ee type veth \
            peer name eth0 netns "$pod" || return 1
        e2e_sysctl "$E2E_NODE" "net.ipv4.conf.veth-p$i.proxy_arp=1" \
            "net.ipv4.conf.veth-p$i.send_redirects=0" || return 1
        ip -n "$E2E_NODE" link set "veth-p$i" up || return 1
        ip -n "$E2E_NODE" addr add fe80::1/64 dev "veth-p$i" nodad || return 1
        ip -n "$E2E_NODE" route add "$(e2e_pod_ip4 "$i")/32" dev "veth-p$i" || return 1
        ip -n "$E2E_NODE" -6 route add "$(e2e_pod_ip6 "$i")/128" dev "veth-p$i" || return 1
        ip -n "$pod" addr add "$(e2e_pod_ip4 "$i")/32" dev eth0 || return 1
        ip -n "$pod" addr add "$(e2e_pod_ip6 "$i")/128" dev eth0 nodad || return 1
        ip -n "$pod" link set eth0 up || return 1
        ip -n "$pod" route add default via 169.254.1.1 dev eth0 onlink || return 1
        ip -n "$pod" neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 \
            nud permanent || return 1
        ip -n "$pod" -6 route add default via fe80::1 dev eth0 || return 1
        ip -n "$pod" -6 neigh replace fe80::1 lladdr ee:ee:ee:ee:ee:ee dev eth0 \
            nud permanent || return 1
    fi
    return 0
}

# ------------------------------------------------------------------ processes
# e2e_bg LOGNAME CMD...: start CMD in the background, output to logs/LOGNAME.log
# (appended); sets E2E_BG_PID and records it for cleanup.
e2e_bg() {
    local name=$1
    shift
    "$@" >>"$E2E_LOGS/$name.log" 2>&1 </dev/null &
    E2E_BG_PID=$!
    E2E_PIDS+=("$E2E_BG_PID")
}

# e2e_forget_pid PID: drop an exited, reaped PID from the cleanup list, so the
# traps never signal a pid number the system may have handed to someone else
e2e_forget_pid() {
    local i
    for i in "${!E2E_PIDS[@]}"; do
        [[ ${E2E_PIDS[i]} == "$1" ]] && unset 'E2E_PIDS[i]'
    done
    E2E_PIDS=("${E2E_PIDS[@]}")
}

# e2e_wait_file FILE TIMEOUT_S
e2e_wait_file() {
    local f=$1 deadline=$((SECONDS + $2))
    until [[ -e $f ]]; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.05
    done
}

# e2e_wait_file_or_exit FILE PID TIMEOUT_S: until FILE exists (0), PID exits (2)
# or the timeout passes (1)
e2e_wait_file_or_exit() {
    local f=$1 pid=$2 deadline=$((SECONDS + $3))
    until [[ -e $f ]]; do
        e2e_pid_alive "$pid" || { [[ -e $f ]] && return 0; return 2; }
        ((SECONDS >= deadline)) && return 1
        sleep 0.05
    done
}

# e2e_start_server I: podserver in pod I (name podI), ready file in the run dir
e2e_start_server() {
    local i=$1
    e2e_bg "server-pod$i" ip netns exec "$(e2e_pod_ns "$i")" "$E2E_PY" "$E2E_DIR/podserver.py" \
        --name "pod$i" --ready-file "$E2E_RUN/server-pod$i.ready"
}

# e2e_wait_server I TIMEOUT_S: until pod I's podserver has bound its sockets
e2e_wait_server() {
    local i=$1
    if ! e2e_wait_file "$E2E_RUN/server-pod$i.ready" "$2"; then
        e2e_err "podserver in pod$i not ready after $2s"
        tail -n 20 "$E2E_LOGS/server-pod$i.log" >&2
        return 1
    fi
}

e2e_start_servers() {
    local i
    for ((i = 1; i <= E2E_NPODS; i++)); do
        e2e_start_server "$i"
    done
    for ((i = 1; i <= E2E_NPODS; i++)); do
        e2e_wait_server "$i" 10 || return 1
    done
    e2e_log "pod servers ready in pod1..pod$E2E_NPODS (HTTP :8080, UDP echo :5353)"
}

# e2e_client POD_INDEX SUBCOMMAND ARGS...: podclient.py inside pod i, bounded by
# an outer timeout as a last resort (the client has its own deadlines).
e2e_client() {
    local i=$1
    shift
    timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "$(e2e_pod_ns "$i")" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# e2e_pod_names 2 3 4 -> pod2,pod3,pod4 (the backend names podclient's --expect takes).
e2e_pod_names() {
    local out="" i
    for i in "$@"; do out+="${out:+,}pod$i"; done
    echo "$out"
}

# e2e_reach_direct NPODS: pod1 pings pod2..podNPODS over IPv4 and IPv6, straight to their
# addresses (the topology works before any agent runs).
e2e_reach_direct() {
    local i rc=0
    for ((i = 2; i <= $1; i++)); do
        e2e_client 1 ping "$(e2e_pod_ip4 "$i")" --deadline 5 | grep -v '^{' || rc=1
        e2e_client 1 ping "$(e2e_pod_ip6 "$i")" --deadline 5 | grep -v '^{' || rc=1
    done
    return "$rc"
}

# e2e_client_bg LOGNAME POD_INDEX SUBCOMMAND ARGS...: podclient.py in the
# background (E2E_BG_PID = the outer `timeout`, which forwards signals to it);
# output in logs/LOGNAME.log.
e2e_client_bg() {
    local name=$1 i=$2
    shift 2
    e2e_bg "$name" timeout -k 5 "${E2E_CLIENT_TIMEOUT:-120}" \
        ip netns exec "$(e2e_pod_ns "$i")" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}

# e2e_url IP PORT -> http://IP:PORT/ (brackets for IPv6)
e2e_url() {
    if [[ $1 == *:* ]]; then
        printf 'http://[%s]:%s/' "$1" "$2"
    else
        printf 'http://%s:%s/' "$1" "$2"
    fi
}

# ------------------------------------------------------------------ agent
# e2e_start_agent [MANIFESTS [EXTRA_ARGS...]]: sluice-agent in the node netns,
# log in logs/agent.log. The full argument list is kept in E2E_AGENT_ARGS so
# e2e_restart_agent can start it again identically.
e2e_start_agent() {
    local manifests=${1:-$E2E_MANIFESTS}
    shift || true
    E2E_AGENT_ARGS=(--manifests "$manifests" --pod-devices 'veth-p*'
        --bpffs-root "$E2E_BPFFS" --node-name "$E2E_NODE_NAME" "$@")
    e2e_log "starting sluice-agent in $E2E_NODE (manifests $manifests, pod devices 'veth-p*')"
    e2e_launch_agent agent
}

# e2e_launch_agent LOGNAME: start the agent with E2E_AGENT_ARGS, output to
# logs/LOGNAME.log (which becomes E2E_AGENT_LOG); the pid is in E2E_PIDS, so the
# traps stop whichever agent is current.
e2e_launch_agent() {
    [[ -n $E2E_AGENT_LOG && $E2E_AGENT_LOG != "$E2E_LOGS/$1.log" ]] &&
        E2E_AGENT_PREV_LOGS+=("$E2E_AGENT_LOG")
    E2E_AGENT_LOG=$E2E_LOGS/$1.log
    e2e_bg "$1" ip netns exec "$E2E_NODE" "$E2E_AGENT_BIN" "${E2E_AGENT_ARGS[@]}"
    E2E_AGENT_PID=$E2E_BG_PID
    E2E_AGENT_STARTED=1
}

# e2e_restart_agent LOGNAME: start the agent again (after e2e_stop_agent) with the
# arguments and bpffs of e2e_start_agent; its log is logs/LOGNAME.log, so
# e2e_agent_generation & co. see only the new process's lines.
e2e_restart_agent() {
    if [[ -n $E2E_AGENT_PID ]] && e2e_pid_alive "$E2E_AGENT_PID"; then
        e2e_err "e2e_restart_agent: agent $E2E_AGENT_PID still running (stop it first)"
        return 1
    fi
    e2e_log "starting sluice-agent again in $E2E_NODE (same arguments, log logs/$1.log)"
    e2e_launch_agent "$1"
}

# e2e_wait_log FILE ERE TIMEOUT_S [PID]: poll until a line of FILE matches ERE
# (prints it); fails on timeout or, with PID, when that process is gone first.
e2e_wait_log() {
    local f=$1 re=$2 deadline=$((SECONDS + $3)) pid=${4:-} line
    while :; do
        line=$(grep -E -m 1 -e "$re" "$f" 2>/dev/null)
        if [[ -n $line ]]; then
            echo "$line"
            return 0
        fi
        if [[ -n $pid ]] && ! e2e_pid_alive "$pid"; then
            # one last look: the line may have been written just before the exit
            grep -E -m 1 -e "$re" "$f" 2>/dev/null && return 0
            echo "process $pid exited before a line matching /$re/ appeared in $f"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "no line matching /$re/ in $f within $3s"
            return 1
        fi
        sleep 0.05
    done
}

# e2e_agent_attached_re DEV: ERE for the agent's "attached lb_pod_ingress to DEV" line
e2e_agent_attached_re() {
    printf 'attached lb_pod_ingress to %s \\(' "${1//./\\.}"
}

# highest generation in a "synced generation=N" line so far (0 if none)
e2e_agent_generation() {
    local g
    g=$(grep -o 'synced generation=[0-9]*' "$E2E_AGENT_LOG" 2>/dev/null | tail -n 1 | cut -d= -f2)
    echo "${g:-0}"
}

# e2e_wait_generation_gt N TIMEOUT_S: wait for a sync with generation > N
e2e_wait_generation_gt() {
    local n=$1 deadline=$((SECONDS + $2)) g
    while :; do
        g=$(e2e_agent_generation)
        if ((g > n)); then
            e2e_log "agent: $(grep "synced generation=$g" "$E2E_AGENT_LOG" | tail -n 1)"
            return 0
        fi
        if ! e2e_pid_alive "$E2E_AGENT_PID"; then
            e2e_err "sluice-agent exited while waiting for generation > $n"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            e2e_err "no 'synced generation' > $n within $2s (last seen $g)"
            return 1
        fi
        sleep 0.1
    done
}

# e2e_stop_agent TIMEOUT_S: SIGTERM the agent; returns its exit status (124 if it
# did not stop in time, in which case it is killed).
e2e_stop_agent() {
    local pid=$E2E_AGENT_PID rc
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null
    if ! e2e_wait_pid_exit "$pid" "${1:-10}"; then
        e2e_kill_pid "$pid"
        e2e_forget_pid "$pid"
        E2E_AGENT_PID=""
        return 124
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    e2e_forget_pid "$pid"
    E2E_AGENT_PID=""
    return "$rc"
}

e2e_agent_tail() {
    local n=${1:-60} prev
    [[ -n $E2E_AGENT_LOG && -f $E2E_AGENT_LOG ]] || return 0
    for prev in "${E2E_AGENT_PREV_LOGS[@]}"; do
        [[ -f $prev ]] || continue
        echo "----- earlier sluice-agent process (last 20 lines: $prev) -----"
        tail -n 20 "$prev"
    done
    echo "----- sluice-agent log (last $n lines: $E2E_AGENT_LOG) -----"
    tail -n "$n" "$E2E_AGENT_LOG"
    echo "----- end of agent log -----"
}

# e2e_tc_ingress_has DEV PROG: the node's tc ingress filters on DEV (printed) include
# a BPF program named PROG
e2e_tc_ingress_has() {
    local out
    out=$(timeout -k 2 10 ip netns exec "$E2E_NODE" tc filter show dev "$1" ingress 2>&1)
    echo "\$ tc filter show dev $1 ingress"
    echo "${out:-(no filters)}"
    grep -qw -e "$2" <<<"$out"
}

# e2e_tc_ingress_prog_id DEV: id of the BPF program in DEV's tc ingress filter ("" if none)
e2e_tc_ingress_prog_id() {
    timeout -k 2 10 ip netns exec "$E2E_NODE" tc filter show dev "$1" ingress 2>/dev/null |
        grep -o ' id [0-9]*' | head -n 1 | awk '{print $2}'
}

# e2e_ctl ARGS...: sluicectl against this run's pins, bounded; never fails the caller
e2e_ctl() {
    [[ -x $E2E_CTL_BIN ]] || return 0
    timeout -k 2 10 ip netns exec "$E2E_NODE" "$E2E_CTL_BIN" --bpffs-root "$E2E_BPFFS" "$@" 2>&1
}

# e2e_ct_dump: this run's conntrack entries (both families), one line each, via
# bpftool (skipped when it is missing). Diagnostics only.
e2e_ct_dump() {
    command -v bpftool >/dev/null 2>&1 || { echo "(bpftool not found: no conntrack dump)"; return 0; }
    local m
    for m in lb4_ct_v2 lb6_ct_v2; do
        [[ -e $E2E_BPFFS/$m ]] || continue
        timeout -k 2 10 ip netns exec "$E2E_NODE" bpftool -j map dump pinned "$E2E_BPFFS/$m" 2>&1 |
            "$E2E_PY" -c '
import ipaddress, json, struct, sys
raw = sys.stdin.read()
try:
    entries = json.loads(raw)
except ValueError:
    print("bpftool: " + raw.strip()[:200]); sys.exit(0)
def addr(v):  # be32 or be32[4], printed by bpftool as host-order integers
    words = v if isinstance(v, list) else [v]
    return str(ipaddress.ip_address(b"".join(struct.pack("<I", w) for w in words)))
def port(v):
    return struct.unpack(">H", struct.pack("<H", v))[0]
def hostport(a, p):
    return f"[{a}]:{p}" if ":" in a else f"{a}:{p}"
proto = {6: "tcp", 17: "udp"}
for e in entries:
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    st = v["state"]
    d = {1: "FORWARD", 2: "REPLY"}.get(st["dir"], str(st["dir"]))
    what = "dst ->" if st["dir"] == 1 else "src ->"
    src = hostport(addr(k["saddr"]), port(k["sport"]))
    dst = hostport(addr(k["daddr"]), port(k["dport"]))
    nat = hostport(addr(v["nat_addr"]), port(st["nat_port"]))
    pr = proto.get(k["proto"], str(k["proto"]))
    print("%-7s %s %s -> %s  %s %s flags=%#x backend=%d svc=%d"
          % (d, pr, src, dst, what, nat, st["flags"], st["backend_id"], st["svc_id"]))
'
    done
}

# diagnostics printed once, at the first failed check, while state is still live
e2e_diag() {
    ((E2E_DIAG_DONE)) && return 0
    E2E_DIAG_DONE=1
    echo "----- diagnostics at first failure -----"
    if ((E2E_AGENT_STARTED)) && ((E2E_BPFFS_MOUNTED)); then
        local what
        for what in "service list" "stats"; do
            echo "\$ sluicectl $what"
            # shellcheck disable=SC2086
            e2e_ctl $what | head -n 60
        done
        echo "\$ bpffs pins"
        e2e_bpffs_pins | head -n 40
        local ct=$E2E_LOGS/ct-at-first-failure.txt
        e2e_ct_dump >"$ct" 2>&1
        echo "\$ conntrack: $(wc -l <"$ct") entries in $ct (E2E_KEEP=1 keeps it)"
        # entries for the local ports the failed check reported (podclient: "local port N")
        local lport
        for lport in $(grep -o 'local port [0-9]*' <<<"$E2E_LAST_OUT" | awk '{print $3}' | sort -u); do
            echo "  entries with client port $lport:"
            grep -E ":$lport( |$)" "$ct" | sed 's/^/    /'
        done
    fi
    if [[ -n $E2E_NODE ]] && e2e_netns_exists "$E2E_NODE"; then
        echo "\$ ip -n $E2E_NODE -br addr; ip -n $E2E_NODE route; ip -n $E2E_NODE -6 route"
        ip -n "$E2E_NODE" -br addr
        ip -n "$E2E_NODE" route
        ip -n "$E2E_NODE" -6 route
        echo "\$ ip -n $E2E_NODE neigh"
        ip -n "$E2E_NODE" neigh | head -n 40
    fi
    echo "----- end of diagnostics -----"
}

# ------------------------------------------------------------------ checks
# e2e_check "NAME" CMD...: run CMD (in a subshell: it cannot change this shell's
# state), show its output indented, print PASS/FAIL.
e2e_check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    [[ -n $out ]] && sed 's/^/    /' <<<"$out"
    E2E_LAST_OUT=$out
    e2e_result "$name" "$rc"
}

# e2e_result "NAME" RC: record and print PASS (RC 0) or FAIL.
e2e_result() {
    local name=$1 rc=$2
    if ((rc == 0)); then
        echo "PASS: $name"
        E2E_PASS=$((E2E_PASS + 1))
        E2E_RESULTS+=("PASS: $name")
    else
        echo "FAIL: $name (exit $rc)"
        E2E_FAIL=$((E2E_FAIL + 1))
        E2E_RESULTS+=("FAIL: $name")
        e2e_diag
    fi
    return "$rc"
}

e2e_summary() {
    local r
    echo "================ summary ($E2E_PASS passed, $E2E_FAIL failed) ================"
    for r in "${E2E_RESULTS[@]}"; do
        echo "$r"
    done
}

# ------------------------------------------------------------------ manifests
# e2e_service_yaml NAME IP4 IP6 PORTSPEC...   PORTSPEC = name:port:targetPort:PROTO
# IP6 may be empty (single-stack IPv4).
e2e_service_yaml() {
    local name=$1 ip4=$2 ip6=$3 p pname port tport proto
    shift 3
    cat <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $name
  namespace: default
spec:
  type: ClusterIP
  selector:
    app: $name
  clusterIP: "$ip4"
  clusterIPs:
    - "$ip4"
EOF
    if [[ -n $ip6 ]]; then
        cat <<EOF
    - "$ip6"
  ipFamilyPolicy: RequireDualStack
  ipFamilies:
    - IPv4
    - IPv6
EOF
    else
        cat <<EOF
  ipFamilyPolicy: SingleStack
  ipFamilies:
    - IPv4
EOF
    fi
    echo "  ports:"
    for p in "$@"; do
        IFS=: read -r pname port tport proto <<<"$p"
        cat <<EOF
    - name: $pname
      port: $port
      targetPort: $tport
      protocol: $proto
EOF
    done
}

# e2e_slice_yaml NAME SERVICE FAMILY(4|6) PORTSPECS POD_INDEX...
#   PORTSPECS = "name:port:PROTO name:port:PROTO" (space separated, one arg)
# No pod index -> an EndpointSlice with an empty endpoint list.
e2e_slice_yaml() {
    local name=$1 svc=$2 fam=$3 ports=$4 p pname port proto i addr
    shift 4
    cat <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name
  namespace: default
  labels:
    kubernetes.io/service-name: $svc
    endpointslice.kubernetes.io/managed-by: sluice-e2e
addressType: IPv$fam
ports:
EOF
    for p in $ports; do
        IFS=: read -r pname port proto <<<"$p"
        cat <<EOF
  - name: $pname
    port: $port
    protocol: $proto
EOF
    done
    if (($# == 0)); then
        echo "endpoints: []"
        return 0
    fi
    echo "endpoints:"
    for i in "$@"; do
        if [[ $fam == 4 ]]; then addr=$(e2e_pod_ip4 "$i"); else addr=$(e2e_pod_ip6 "$i"); fi
        cat <<EOF
  - addresses:
      - "$addr"
    conditions:
      ready: true
      serving: true
      terminating: false
    nodeName: $E2E_NODE_NAME
    targetRef:
      kind: Pod
      namespace: default
      name: pod$i
EOF
    done
}

E2E_WEB_SLICE_PORTS="http:8080:TCP dns:5353:UDP"

# e2e_write_web_slice DIR FAMILY POD_INDEX...: (re)write web's slice for one
# family atomically (temp file in the staging dir + mv into DIR).
e2e_write_web_slice() {
    local dir=$1 fam=$2 tmp
    shift 2
    tmp=$E2E_STAGING/web-ipv$fam.yaml.$$
    e2e_slice_yaml "web-ipv$fam" web "$fam" "$E2E_WEB_SLICE_PORTS" "$@" >"$tmp" || return 1
    mv -f "$tmp" "$dir/web-slice-ipv$fam.yaml"
}

# e2e_write_manifests DIR: web (backends pod2..podN), empty, self (pod1). One object
# per file; each file is written to the staging dir and moved in atomically.
e2e_write_manifests() {
    local dir=$1 i backends=() f
    for ((i = 2; i <= E2E_NPODS; i++)); do backends+=("$i"); done
    e2e_service_yaml web "$E2E_WEB_V4" "$E2E_WEB_V6" http:80:8080:TCP dns:53:5353:UDP \
        >"$E2E_STAGING/web-service.yaml"
    e2e_service_yaml empty "$E2E_EMPTY_V4" "$E2E_EMPTY_V6" http:80:8080:TCP \
        >"$E2E_STAGING/empty-service.yaml"
    # IPv4: a slice with no endpoints; IPv6: no slice at all
    e2e_slice_yaml empty-ipv4 empty 4 "http:8080:TCP" >"$E2E_STAGING/empty-slice-ipv4.yaml"
    e2e_service_yaml self "$E2E_SELF_V4" "$E2E_SELF_V6" http:80:8080:TCP dns:53:5353:UDP \
        >"$E2E_STAGING/self-service.yaml"
    e2e_slice_yaml self-ipv4 self 4 "$E2E_WEB_SLICE_PORTS" 1 >"$E2E_STAGING/self-slice-ipv4.yaml"
    e2e_slice_yaml self-ipv6 self 6 "$E2E_WEB_SLICE_PORTS" 1 >"$E2E_STAGING/self-slice-ipv6.yaml"
    for f in "$E2E_STAGING"/*.yaml; do
        mv -f "$f" "$dir/" || return 1
    done
    e2e_write_web_slice "$dir" 4 "${backends[@]}" || return 1
    e2e_write_web_slice "$dir" 6 "${backends[@]}" || return 1
    e2e_log "manifests in $dir: $(cd "$dir" && echo *.yaml)"
}
