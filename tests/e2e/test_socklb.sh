#!/usr/bin/env bash
# sluice e2e: socket-LB (cgroup connect/sendmsg/recvmsg/getpeername programs) for the node's
# own processes and for pods.
#
#   bash tests/e2e/test_socklb.sh [routed|bridge]        (default routed)
#
# lib.sh's topology (node netns + pod1..pod4, podserver in pods 2-4), a cgroup v2 of this run
# (made under the cgroup2 mount, removed at exit), the agent with --cgroup pointing at it.
# "Host" = a process in the node's netns, "pod" = a process in pod1's; both are moved into the
# test cgroup before they open a socket (sockclient.py --cgroup). Checks (see README.md):
#   1 host and pod reach ClusterIP (v4, v6), NodePort on the node's addresses (v4, v6) and on
#     127.0.0.1 (host only; a pod's 127.0.0.1 stays its own), LoadBalancer IPs (v4, v6) and
#     the ExternalIP, over TCP and UDP; getpeername() and recvfrom() show the service address
#   2 the per-packet path left all of it alone: no conntrack entry, no packet translated
#   3 a service without endpoints: connect() and sendto() fail with ECONNREFUSED at once
#   4 ClientIP affinity: one backend per namespace
#   5 the agent stops: the pinned links keep serving; a new agent replaces the programs
#   6 --socket-lb-host-only: pods use the per-packet path, the host the socket
#   7 --socket-lb=false: links gone, pods per packet, the host no longer translated
#   8 --external-ip-mitigation: the ExternalIP (not the node's) is not translated in-cluster
#   9 a UDP client on a fixed source port (connected, DNS-like) in the pod, then on the host:
#     its backend pod goes dark (no answer, no ICMP) and is removed from the slice; the agent
#     destroys the socket, the client reopens and is answered by another backend within 5 s,
#     then never misses
#  10 --cleanup removes the links (no socket program left on the cgroup)
#
# Exit: 0 all passed, 1 a check failed, 77 skipped (not root / no ip netns).
# Env: SLUICE_BIN_DIR (default <repo>/build/bin), E2E_KEEP=1 keeps the logs.

set -u -o pipefail

LAYOUT=${1:-routed}
case $LAYOUT in
bridge | routed) ;;
*)
    echo "usage: $0 [routed|bridge]" >&2
    exit 2
    ;;
esac

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_preflight || exit $?
# shellcheck disable=SC2119
e2e_require_binaries || exit 1

NPODS=4
WEB=(2 3 4)
TCP_COUNT=40  # 3 backends: P(one never chosen) = 3 * (2/3)^40 < 1e-6
CG_MOUNT=""
CG=""

e2e_setup "sk$$-" || exit 1

# The test cgroup lives in a cgroup2 mount of this run, outside the work directory: `ip netns
# exec` (the agent, the clients) mounts a fresh /sys, so /sys/fs/cgroup is not visible there,
# while /tmp is. Removed after lib.sh's cleanup (the agent's --cleanup unpins the links first);
# processes still inside are ours (clients) and are killed. Only rmdir and umount here: a
# recursive delete in a cgroup2 mount would remove other empty cgroups of the machine.
socklb_on_exit() {
    local rc=$? pid i
    e2e_cleanup
    if [[ -n $CG && -d $CG ]]; then
        for i in 1 2 3 4 5; do
            for pid in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            rmdir "$CG" 2>/dev/null && break
            sleep 0.2
        done
        [[ -d $CG ]] && e2e_err "could not remove cgroup $CG"
    fi
    if [[ -n $CG_MOUNT ]]; then
        umount "$CG_MOUNT" 2>/dev/null || e2e_err "could not unmount $CG_MOUNT"
        mountpoint -q "$CG_MOUNT" || rmdir "$CG_MOUNT" 2>/dev/null
    fi
    exit "$rc"
}
e2e_install_traps
trap socklb_on_exit EXIT
e2e_watchdog 420

echo "=== sluice e2e socket-LB, layout=$LAYOUT, pid $$ ==="

fatal() {
    echo "FAIL: $*"
    e2e_diag
    e2e_agent_tail 80
    e2e_summary
    exit 1
}

CG_MOUNT=$(mktemp -d /tmp/sluice-e2e-cgroup2.XXXXXX) || fatal "mktemp"
mount -t cgroup2 none "$CG_MOUNT" || { rmdir "$CG_MOUNT"; CG_MOUNT=""; fatal "cannot mount cgroup2"; }
CG=$CG_MOUNT/sluice-e2e-$$
mkdir "$CG" || fatal "cannot create cgroup $CG"
e2e_log "test cgroup $CG (a cgroup2 mount of this run)"

if [[ $LAYOUT == routed ]]; then NODE4=10.244.1.1 NODE6=fd00:244:1::1; else NODE4=10.244.0.1 NODE6=fd00:244::1; fi
VIP4=10.96.0.10 VIP6=fd00:96::10 LB4=192.0.2.10 LB6=2001:db8:b::10 EXT4=203.0.113.20
EMPTY4=10.96.0.20 EMPTY6=fd00:96::20 STICKY4=10.96.0.30

# sock NETNS ARGS...: sockclient.py in NETNS, inside the test cgroup; bounded
sock() {
    local ns=$1
    shift
    timeout -k 5 90 ip netns exec "$ns" "$E2E_PY" "$E2E_DIR/sockclient.py" --cgroup "$CG" "$@"
}
host() { sock "$E2E_NODE" "$@"; }
pod() { sock "$(e2e_pod_ns 1)" "$@"; }
who() { [[ $1 == host ]] && echo "host process" || echo "pod1 process"; }

write_manifests() {
    "$E2E_PY" "$E2E_DIR/socklb_manifests.py" --dir "$E2E_MANIFESTS" --staging "$E2E_STAGING" \
        --layout "$LAYOUT" --web "$(IFS=,; echo "${WEB[*]}")"
}

# counter NAME: a datapath counter (sluicectl stats), 0 when unknown
counter() {
    e2e_ctl -j stats | "$E2E_PY" -c '
import json, sys
try:
    rows = json.load(sys.stdin)["verdicts"]
except (ValueError, KeyError, TypeError):
    rows = []
print(next((r["packets"] for r in rows if r["reason"] == sys.argv[1]), 0))' "$1"
}

# the agent attached (or replaced) all nine socket programs: its log says so for the last one
wait_sock_attached() {
    e2e_wait_log "$E2E_AGENT_LOG" "socket-LB: lb_sock_release (attached to|on .*program replaced)" \
        15 "$E2E_AGENT_PID"
}

BASE_ARGS=()
# restart_agent LOGNAME EXTRA...: SIGTERM the agent, start it with the base arguments + EXTRA
restart_agent() {
    local log=$1 rc
    shift
    e2e_stop_agent 10
    rc=$?
    ((rc == 0 || rc == 143)) || e2e_err "agent exited with status $rc"
    E2E_AGENT_ARGS=("${BASE_ARGS[@]}" "$@")
    e2e_restart_agent "$log"
    e2e_wait_generation_gt 0 30
}

# ---------------------------------------------------------------- topology, agent
e2e_topology "$LAYOUT" "$NPODS" || fatal "could not build the $LAYOUT topology"
for i in "${WEB[@]}"; do e2e_start_server "$i"; done
for i in "${WEB[@]}"; do e2e_wait_server "$i" 10 || fatal "podserver in pod$i"; done

write_manifests || fatal "could not write manifests"
e2e_start_agent "$E2E_MANIFESTS" --cgroup "$CG" ${SOCKLB_AGENT_EXTRA:-}
BASE_ARGS=("${E2E_AGENT_ARGS[@]}")
e2e_wait_generation_gt 0 30 || fatal "sluice-agent did not sync"
e2e_check "agent attached the nine socket programs to $CG" wait_sock_attached ||
    fatal "socket-LB not attached"

check_pins() {
    local n
    n=$(find "$E2E_BPFFS" -maxdepth 1 -name 'link_cgroup_*' | wc -l)
    echo "$n link pins: $(cd "$E2E_BPFFS" && echo link_cgroup_*)"
    ((n == 9))
}
e2e_check "the nine cgroup links are pinned under the bpffs root" check_pins

wait_ready() {
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        host reach "$VIP4" 80 --count 1 --timeout 1 >/dev/null 2>&1 && { echo "answers"; return 0; }
        sleep 0.1
    done
    echo "$VIP4:80 did not answer the host within 15 s"
    return 1
}
e2e_check "ready: the host reaches web $VIP4:80" wait_ready || fatal "web never answered"

# ---------------------------------------------------------------- 1 reach matrix
echo "--- 1 every frontend from a socket ---"
xlate0=$(counter sock_translated)
fwd0=$(counter forward_new)
WEB_NAMES=$(e2e_pod_names "${WEB[@]}")
for client in host pod; do
    frontends=("$VIP4 80 53" "$VIP6 80 53" "$NODE4 30080 30053" "$NODE6 30080 30053"
        "$LB4 80 53" "$LB6 80 53" "$EXT4 80 53")
    [[ $client == host ]] && frontends+=("127.0.0.1 30080 30053")
    for f in "${frontends[@]}"; do
        read -r addr tport uport <<<"$f"
        e2e_check "1 $(who $client) -> $addr:$tport TCP: $TCP_COUNT connections reach $WEB_NAMES, getpeername() = the service" \
            "$client" reach "$addr" "$tport" --proto tcp --count "$TCP_COUNT" --expect "$WEB_NAMES" --only
        e2e_check "1 $(who $client) -> $addr:$uport UDP: sendto and connected sockets answered by $WEB_NAMES from the service address" \
            "$client" reach "$addr" "$uport" --proto udp --count "$TCP_COUNT" --expect "$WEB_NAMES" --only
    done
done
e2e_check "1 a pod's 127.0.0.1:30080 is its own (not the node's NodePort)" \
    pod unserved 127.0.0.1 30080

# ---------------------------------------------------------------- 2 per-packet path untouched
echo "--- 2 the per-packet path leaves socket-translated flows alone ---"
check_untouched() {
    local xlate fwd ct
    xlate=$(counter sock_translated)
    fwd=$(counter forward_new)
    ct=$(e2e_ct_dump | grep -c -E '^(FORWARD|REPLY)')
    echo "sock_translated +$((xlate - xlate0)), forward_new +$((fwd - fwd0)), conntrack entries $ct"
    ((xlate - xlate0 > 0 && fwd == fwd0 && ct == 0))
}
e2e_check "2 socket-LB translated, the tc program none of it (no conntrack entry)" check_untouched

# ---------------------------------------------------------------- 3 refusal
echo "--- 3 no endpoints ---"
for client in host pod; do
    e2e_check "3 $(who $client) -> empty $EMPTY4: TCP connect, UDP connect and sendto refused (< 1 s)" \
        "$client" refused "$EMPTY4" 80 --udp-port 53
    e2e_check "3 $(who $client) -> empty $EMPTY6: TCP connect, UDP connect and sendto refused (< 1 s)" \
        "$client" refused "$EMPTY6" 80 --udp-port 53
done

# ---------------------------------------------------------------- 4 affinity
echo "--- 4 ClientIP affinity ---"
for client in host pod; do
    e2e_check "4 $(who $client) -> sticky $STICKY4:80: 20 connections, one backend" \
        "$client" reach "$STICKY4" 80 --proto tcp --count 20 --same
done

# ---------------------------------------------------------------- 5 agent restart
echo "--- 5 agent stop and restart ---"
e2e_stop_agent 10
rc=$?
e2e_result "5 agent stops on SIGTERM (status $rc)" "$(((rc == 0 || rc == 143) ? 0 : 1))"
for client in host pod; do
    e2e_check "5 no agent: $(who $client) -> $VIP4:80 still translated (pinned links)" \
        "$client" reach "$VIP4" 80 --proto tcp --count 10
done
E2E_AGENT_ARGS=("${BASE_ARGS[@]}")
e2e_restart_agent agent-restart
e2e_check "5 restarted agent synced" e2e_wait_generation_gt 0 30
e2e_check "5 restarted agent replaced the programs in the pinned links" \
    e2e_wait_log "$E2E_AGENT_LOG" "socket-LB: lb_sock_release on .*program replaced" 15 "$E2E_AGENT_PID"
e2e_check "5 host -> $VIP4:80 through the new programs" \
    host reach "$VIP4" 80 --proto tcp --count 10

# ---------------------------------------------------------------- 6 host only
echo "--- 6 --socket-lb-host-only ---"
restart_agent agent-hostonly --socket-lb-host-only || fatal "agent with --socket-lb-host-only"
wait_sock_attached >/dev/null
x0=$(counter sock_translated) f0=$(counter forward_new)
e2e_check "6 pod -> $VIP4:80 answered (per-packet path)" \
    pod reach "$VIP4" 80 --proto tcp --count 10
x1=$(counter sock_translated) f1=$(counter forward_new)
e2e_result "6 the pod's connections were translated by tc (forward_new +$((f1 - f0))), not the socket (+$((x1 - x0)))" \
    "$(((f1 - f0 >= 10 && x1 == x0) ? 0 : 1))"
e2e_check "6 host -> $VIP4:80 answered" host reach "$VIP4" 80 --proto tcp --count 10
x2=$(counter sock_translated)
e2e_result "6 the host's connections were translated at the socket (+$((x2 - x1)))" \
    "$(((x2 - x1 >= 10) ? 0 : 1))"

# ---------------------------------------------------------------- 7 socket-LB off
echo "--- 7 --socket-lb=false ---"
restart_agent agent-off --socket-lb=false || fatal "agent with --socket-lb=false"
e2e_check "7 the agent unpinned the nine links" \
    e2e_wait_log "$E2E_AGENT_LOG" "socket-LB: unpinned \\(detached\\) .*link_cgroup_lb_sock_release" 5
check_no_pins() {
    local left
    left=$(find "$E2E_BPFFS" -maxdepth 1 -name 'link_cgroup_*')
    [[ -z $left ]] || { echo "left: $left"; return 1; }
}
e2e_check "7 no link pin left" check_no_pins
f0=$(counter forward_new)
e2e_check "7 pod -> $VIP4:80 still answered (per-packet path)" \
    pod reach "$VIP4" 80 --proto tcp --count 10
f1=$(counter forward_new)
e2e_result "7 by tc: forward_new +$((f1 - f0))" "$(((f1 - f0 >= 10) ? 0 : 1))"
# detaching is asynchronous in the kernel (a work item frees the link): poll
host_unserved() {
    local deadline=$((SECONDS + 5))
    until host unserved "$VIP4" 80 --timeout 1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
e2e_check "7 host -> $VIP4:80 no longer translated (nothing serves the ClusterIP itself)" host_unserved

# ---------------------------------------------------------------- 8 ExternalIP mitigation
echo "--- 8 --external-ip-mitigation ---"
restart_agent agent-mitigation --external-ip-mitigation || fatal "agent with --external-ip-mitigation"
wait_sock_attached >/dev/null
o0=$(counter sock_outside_only)
for client in host pod; do
    e2e_check "8 $(who $client) -> ExternalIP $EXT4:80 (not the node's) is not translated" \
        "$client" unserved "$EXT4" 80 --timeout 1
done
o1=$(counter sock_outside_only)
e2e_result "8 sock_outside_only counted both (+$((o1 - o0)))" "$(((o1 - o0 >= 2) ? 0 : 1))"
e2e_check "8 host -> LB IP $LB4:80 still translated" host reach "$LB4" 80 --proto tcp --count 5

# back to the defaults for the rest
restart_agent agent-final || fatal "agent restart"
wait_sock_attached >/dev/null

# ---------------------------------------------------------------- 9 UDP client on a fixed port
echo "--- 9 connected UDP clients whose backend goes away ---"
# dnsloop_phase CLIENT SPORT: the client's backend pod goes dark (its eth0 down: datagrams to it
# vanish at the node, with no ICMP error and no local error that would make the client reopen
# by itself) and is removed from web's slices
dnsloop_phase() {
    local client=$1 sport=$2 ns pid ready mark stop out backend idx gen rest=() i prc
    [[ $client == host ]] && ns=$E2E_NODE || ns=$(e2e_pod_ns 1)
    ready=$E2E_RUN/dns-$client.ready mark=$E2E_RUN/dns-$client.mark stop=$E2E_RUN/dns-$client.stop
    out=$E2E_LOGS/dns-$client.log
    e2e_bg "dns-$client" timeout -k 5 90 ip netns exec "$ns" "$E2E_PY" "$E2E_DIR/sockclient.py" \
        --cgroup "$CG" dnsloop "$VIP4" 53 --sport "$sport" --interval 0.1 --timeout 0.5 \
        --ready-file "$ready" --mark-file "$mark" --stop-file "$stop" --extra-rounds 10 \
        --recover-within 5 --after-recovery 20 --max-duration 60
    pid=$E2E_BG_PID
    if ! e2e_wait_file_or_exit "$ready" "$pid" 15; then
        e2e_kill_pid "$pid"
        sed 's/^/    /' "$out"
        e2e_result "9 $(who "$client"): DNS-like client on port $sport answered" 1
        return 1
    fi
    backend=$(cat "$ready")
    idx=${backend#pod}
    echo "    $(who "$client") from port $sport talks to $backend; $backend goes dark and leaves web"
    ip -n "$(e2e_pod_ns "$idx")" link set eth0 down
    for i in "${WEB[@]}"; do ((i != idx)) && rest+=("$i"); done
    WEB=("${rest[@]}")
    gen=$(e2e_agent_generation)
    write_manifests >/dev/null
    touch "$mark"
    e2e_check "9 $(who "$client"): the agent synced $backend's removal" e2e_wait_generation_gt "$gen" 15
    e2e_check "9 $(who "$client"): the agent destroyed the socket (log)" \
        e2e_wait_log "$E2E_AGENT_LOG" "destroyed [1-9][0-9]* connected sockets" 10 "$E2E_AGENT_PID"
    # the client ends by itself 20 answered rounds after its recovery (5 s at most after the
    # mark) or, failing that, 10 rounds after the stop file
    e2e_wait_pid_exit "$pid" 15 || touch "$stop"
    if e2e_wait_pid_exit "$pid" 20; then
        wait "$pid"
        prc=$?
    else
        e2e_kill_pid "$pid"
        prc=124
    fi
    e2e_forget_pid "$pid"
    grep -v '^{' "$out" | sed 's/^/    /'
    e2e_result "9 $(who "$client"): after $backend went dark the fixed-port client was answered by another backend within 5 s and then always" \
        "$prc"
    "$E2E_PY" -c '
import json, sys
res = next(json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))
sys.exit(0 if res["reopen_reasons"].get("ECONNABORTED", 0) >= 1 else 1)' "$out"
    e2e_result "9 $(who "$client"): it recovered because its socket was destroyed (ECONNABORTED), reopened on port $sport" $?
}
dnsloop_phase pod 41000
# a fresh log for the next phase's "destroyed" line
restart_agent agent-dns-host || fatal "agent restart"
wait_sock_attached >/dev/null
dnsloop_phase host 41001

# ---------------------------------------------------------------- 10 cleanup
echo "--- 10 --cleanup ---"
e2e_stop_agent 10
cleanup_links() {
    local rc deadline=$((SECONDS + 5)) n
    timeout -k 5 30 ip netns exec "$E2E_NODE" "$E2E_AGENT_BIN" --cleanup \
        --bpffs-root "$E2E_BPFFS" 2>&1 | grep -c link_cgroup_ | sed 's/^/unpinned links: /'
    rc=${PIPESTATUS[0]}
    ((rc == 0)) || return 1
    # the links go with their pins (asynchronously): then nothing translates the host's calls
    until host unserved "$VIP4" 80 --timeout 1 >/dev/null; do
        ((SECONDS < deadline)) || { echo "still translated 5 s after --cleanup"; return 1; }
        sleep 0.1
    done
    if command -v bpftool >/dev/null 2>&1; then
        n=$(bpftool cgroup show "$CG" 2>/dev/null | grep -c -E 'lb[46]_')
        echo "bpftool cgroup show $CG: $n sluice programs"
        ((n == 0)) || return 1
    fi
}
e2e_check "10 --cleanup unpins the links: the host's calls are no longer translated" cleanup_links

e2e_summary
if ((E2E_FAIL > 0)); then
    e2e_agent_tail 80
    echo "RESULT: FAIL ($LAYOUT)"
    exit 1
fi
echo "RESULT: PASS ($LAYOUT)"
exit 0
