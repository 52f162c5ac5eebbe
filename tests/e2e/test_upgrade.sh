#!/usr/bin/env bash
# sluice e2e fault suite: an agent upgrade under load. Two nodes and an external client (the
# north-south topology, northsouth_lib.sh), both agents in `snat` mode with native XDP. While
# the client opens new connections, keeps keep-alive connections and long-lived streams through
# node1's NodePort (XDP, SNAT to a backend on node2) and a pod on node1 does the same through
# a ClusterIP (tc on its veth), each node's agent is replaced by `sluice-agent-next`: the same
# agent with a BPF object built with LB_DATAPATH_REVISION=1 (other program tags, the same maps),
# node1 first, then node2; then node1 goes back to the old build (a rollback).
#
#   bash tests/e2e/test_upgrade.sh
#
# Per replacement: the old agent stops (SIGTERM; the datapath stays attached), the new one
# starts on the same pins; its first sync writes nothing (ops=0, every frontend restored); the
# programs attached to eth0 (XDP, tc ingress, tc egress) and to the pods' veths are then the
# new agent's pinned ones, with another tag than before, and every pinned map has the id it had
# (the maps, conntrack included, were kept). The kernel swaps each program in one step: tc
# filters are replaced in place (same handle and priority), XDP with XDP_FLAGS_REPLACE.
# Totals: "figures:" lines.
#
# Exit: 0 all passed, 1 a check failed, 77 skipped (not root, no ip netns, no ethtool / clang /
# bpftool / curl).
# Env: SLUICE_BIN_DIR (sluice-agent and sluice-agent-next), E2E_KEEP=1 keeps the logs.

set -u -o pipefail

# shellcheck source=northsouth_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/northsouth_lib.sh"

ns_preflight || exit $?
NEXT_BIN=$SLUICE_BIN_DIR/sluice-agent-next
e2e_require_binaries "$NEXT_BIN" || exit 1
OLD_BIN=$E2E_AGENT_BIN

e2e_setup "su$$-" || exit 1
ns_install_traps
e2e_watchdog 200

echo "=== sluice e2e agent upgrade under load, pid $$ ==="

fatal() {
    NS_FINISHED=1
    e2e_result "$*" 1
    e2e_summary
    echo "RESULT: FAIL (upgrade)"
    exit 1
}

ns_topology || fatal "could not build the topology"
ns_start_servers || fatal "pod servers did not start"
ns_write_manifests allow >/dev/null || fatal "could not write manifests"

# start_agent N BIN: node N's agent from BIN (same flags every time)
start_agent() {
    NS_AGENT_BIN=$2 ns_start_agent "$1" --xdp-mode native --lb-mode snat
}
for n in 1 2; do
    start_agent "$n" "$OLD_BIN"
done
for n in 1 2; do
    e2e_check "node$n: agent synced" ns_wait_generation_gt "$n" 0 30 || fatal "agents did not start"
    e2e_check "node$n: attached to eth0" \
        e2e_wait_log "${NS_AGENT_LOG[n]}" "attached lb_node_ingress.* to eth0 " 10 "${NS_AGENT_PID[n]}" ||
        fatal "agents did not attach"
done

NP_PORT=30080
wait_served() { # wait_served NETNS URL: one connection answered within 15 s
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        timeout -k 2 10 ip netns exec "$1" "$E2E_PY" "$E2E_DIR/podclient.py" http "$2" --count 1 \
            --timeout 1 >/dev/null 2>&1 && { echo "$2 answers"; return 0; }
        sleep 0.2
    done
    echo "$2 not answered within 15 s"
    return 1
}
for f in 4 6; do
    e2e_check "IPv$f: node1 NodePort $NP_PORT answers the client" \
        wait_served "$NS_CLIENT" "$(e2e_url "$(ns_node_ip 1 "$f")" "$NP_PORT")" || fatal "NodePort not served"
done
CIP4=10.96.60.10 CIP6=fd00:96::60:10 # np's ClusterIPs (northsouth_manifests.py)

# ---------------------------------------------------------------- load
# bg_client LOGNAME NETNS SUBCOMMAND ARGS...: podclient.py in NETNS in the background
bg_client() {
    local name=$1 ns=$2
    shift 2
    e2e_bg "$name" timeout -k 5 170 ip netns exec "$ns" "$E2E_PY" "$E2E_DIR/podclient.py" "$@"
}
# load: per family, from the client via node1's NodePort and from pod n1p2 via the ClusterIP:
# new connections (conns-*), 4 keep-alive connections (persist-*), 2 long-lived streams
# (flows-*); backends n1p1 (node1) and n2p1 (node2).
declare -A LOAD_PID
LOADS=()
load_start() {
    local f src ns url tag rc=0
    for f in 4 6; do
        for src in client pod; do
            if [[ $src == client ]]; then
                ns=$NS_CLIENT url=$(e2e_url "$(ns_node_ip 1 "$f")" "$NP_PORT")
            else
                ns=$(ns_pod_ns n1p2)
                if [[ $f == 4 ]]; then url=$(e2e_url "$CIP4" 80); else url=$(e2e_url "$CIP6" 80); fi
            fi
            tag=$src$f
            bg_client "conns-$tag" "$ns" conns "$url" --expect n1p1,n2p1 --stop-file "$E2E_RUN/load.stop" \
                --count-file "$E2E_RUN/conns-$tag.count" --max-duration 160
            LOAD_PID[conns-$tag]=$E2E_BG_PID
            bg_client "persist-$tag" "$ns" persist "$url" --conns 4 --interval 0.1 --timeout 2 \
                --ready-file "$E2E_RUN/persist-$tag.ready" --stop-file "$E2E_RUN/load.stop" \
                --extra-rounds 5 --max-duration 160
            LOAD_PID[persist-$tag]=$E2E_BG_PID
            bg_client "flows-$tag" "$ns" streams "$url" --conns 2 --interval-ms 50 --max-gap 1 \
                --ready-file "$E2E_RUN/flows-$tag.ready" --stop-file "$E2E_RUN/load.stop" --max-duration 160
            LOAD_PID[flows-$tag]=$E2E_BG_PID
            LOADS+=("conns-$tag" "persist-$tag" "flows-$tag")
        done
    done
    for tag in client4 client6 pod4 pod6; do
        e2e_wait_file_or_exit "$E2E_RUN/persist-$tag.ready" "${LOAD_PID[persist-$tag]}" 20 &&
            e2e_wait_file_or_exit "$E2E_RUN/flows-$tag.ready" "${LOAD_PID[flows-$tag]}" 20 || {
            echo "$tag: keep-alive connections or streams not ready"
            rc=1
        }
        echo "$tag: keep-alive $(cat "$E2E_RUN/persist-$tag.ready" 2>/dev/null), streams $(cat "$E2E_RUN/flows-$tag.ready" 2>/dev/null)"
    done
    more_conns 50 || rc=1
    return "$rc"
}
conns_count() {
    local n=0 e
    [[ -r $E2E_RUN/conns-$1.count ]] && read -r n e <"$E2E_RUN/conns-$1.count"
    echo "${n:-0}"
}
# more_conns N: every new-connection client makes N more connections (30 s)
more_conns() {
    local tag deadline want
    declare -A want
    for tag in client4 client6 pod4 pod6; do want[$tag]=$(($(conns_count "$tag") + $1)); done
    deadline=$((SECONDS + 30))
    for tag in client4 client6 pod4 pod6; do
        while (($(conns_count "$tag") < want[$tag])); do
            ((SECONDS >= deadline)) && { echo "$tag: not $1 more connections within 30 s"; return 1; }
            sleep 0.05
        done
    done
    echo "connections so far: client4 $(conns_count client4), client6 $(conns_count client6), pod4 $(conns_count pod4), pod6 $(conns_count pod6)"
}

# not through e2e_check: load_start fills LOADS and LOAD_PID in this shell (e2e_check runs its
# command in a subshell), and the totals wait for those clients
load_rc=0
load_start || load_rc=1
e2e_result "load running: new connections, keep-alive connections and streams via node1's NodePort and np's ClusterIP" \
    "$load_rc" || fatal "load did not start"

# ---------------------------------------------------------------- state of a node
# datapath_state N: "KIND DEV PROG_ID" lines for what is attached in node N (XDP and tc on eth0,
# tc ingress on the pods' veths), then "pin NAME ID TAG" for every pin under its bpffs root
datapath_state() {
    local n=$1
    {
        echo "--- net"
        timeout -k 2 10 ip netns exec "${NS_NODE[n]}" bpftool -j net show
        local pin
        for pin in "$(ns_node_bpffs "$n")"/*; do
            case ${pin##*/} in
            *.debug) ;;
            prog_*) echo "--- prog ${pin##*/}"; timeout -k 2 10 bpftool -j prog show pinned "$pin" ;;
            *) echo "--- map ${pin##*/}"; timeout -k 2 10 bpftool -j map show pinned "$pin" ;;
            esac
        done
    } | "$E2E_PY" -c '
import json, sys
what = None
for line in sys.stdin:
    line = line.strip()
    if line.startswith("--- "):
        what = line[4:]
        continue
    if not line:
        continue
    d = json.loads(line)
    if what == "net":
        for e in d:
            for x in e.get("xdp", []):
                print("xdp", x["devname"], x["id"])
            for t in e.get("tc", []):
                print("tc-" + t["kind"].split("/")[-1], t["devname"], t["id"])
    else:
        kind, name = what.split()
        print("pin", name, d["id"], d.get("tag", "-"))
' | sort
}

# upgrade N BIN LABEL: replace node N's agent with BIN under load, check what the new one did
upgrade() {
    local n=$1 bin=$2 label=$3 before after frontends_before pid
    before=$(datapath_state "$n")
    echo "$before" >"$E2E_LOGS/state-node$n-before-$label.txt"
    frontends_before=$(grep -o 'synced generation=.* frontends=[0-9]*' "${NS_AGENT_LOG[n]}" | tail -n 1 |
        grep -o 'frontends=[0-9]*' | cut -d= -f2)
    pid=${NS_AGENT_PID[n]}
    kill -TERM "$pid" 2>/dev/null
    e2e_check "$label: node$n's old agent stops on SIGTERM (the datapath stays)" e2e_wait_pid_exit "$pid" 10
    wait "$pid" 2>/dev/null
    e2e_forget_pid "$pid"
    NS_AGENT_PID[n]=""
    e2e_check "$label: the datapath serves while node$n has no agent (30 more connections each)" more_conns 30
    start_agent "$n" "$bin"
    e2e_check "$label: node$n's new agent ($(basename "$bin")) synced" ns_wait_generation_gt "$n" 0 30 ||
        return 1
    check_first() {
        local line ops fe restored
        line=$(grep -m 1 'synced generation=1 ' "${NS_AGENT_LOG[n]}")
        ops=$(grep -o ' ops=[0-9]*' <<<" $line" | cut -d= -f2)
        fe=$(grep -o ' frontends=[0-9]*' <<<" $line" | cut -d= -f2)
        restored=$(grep -m 1 -o 'restored [0-9]* frontends' "${NS_AGENT_LOG[n]}" | awk '{print $2}')
        echo "${line#*synced }; restored $restored frontends (before: $frontends_before)"
        [[ $ops == 0 && $fe == "$frontends_before" && $restored == "$frontends_before" ]]
    }
    e2e_check "$label: node$n's first sync wrote nothing (ops=0), every frontend restored from the pins" check_first
    local dev
    for dev in eth0 veth-p1 veth-p2; do
        e2e_check "$label: node$n's new agent attached to $dev" \
            e2e_wait_log "${NS_AGENT_LOG[n]}" "attached lb_(node_ingress|pod_ingress).* to $dev " 10 "${NS_AGENT_PID[n]}"
    done
    after=$(datapath_state "$n")
    echo "$after" >"$E2E_LOGS/state-node$n-after-$label.txt"
    compare() {
        "$E2E_PY" - "$E2E_LOGS/state-node$n-before-$label.txt" "$E2E_LOGS/state-node$n-after-$label.txt" <<'PYEOF'
import sys
def load(p):
    att, pins = {}, {}
    for line in open(p):
        f = line.split()
        if f[0] == "pin":
            pins[f[1]] = (f[2], f[3])
        else:
            att[(f[0], f[1])] = f[2]
    return att, pins
(ab, pb), (aa, pa) = load(sys.argv[1]), load(sys.argv[2])
bad = []
want = {("xdp", "eth0"): "prog_lb_node_xdp", ("tc-ingress", "eth0"): "prog_lb_node_ingress",
        ("tc-egress", "eth0"): "prog_lb_node_egress", ("tc-ingress", "veth-p1"): "prog_lb_pod_ingress",
        ("tc-ingress", "veth-p2"): "prog_lb_pod_ingress"}
for hook, pin in want.items():
    old, new = ab.get(hook), aa.get(hook)
    pid, tag = pa.get(pin, ("?", "?"))
    otag = pb.get(pin, ("?", "?"))[1]
    print(f"{hook[0]:10} {hook[1]:8} prog id {old} -> {new} (pin {pin}: id {pid}, tag {otag} -> {tag})")
    if new != pid:
        bad.append(f"{hook} runs {new}, not the new agent's {pin} ({pid})")
    if new == old:
        bad.append(f"{hook} still runs program {old}")
    if tag == otag:
        bad.append(f"{pin}: same tag {tag} as before: not another build")
maps = sorted(k for k in pb if not k.startswith("prog_"))
kept = [m for m in maps if pa.get(m, ("?",))[0] == pb[m][0]]
print(f"pinned maps with the same id as before: {len(kept)} of {len(maps)}")
for m in maps:
    if m not in kept:
        bad.append(f"map {m}: id {pb[m][0]} -> {pa.get(m, ('gone',))[0]}")
for b in bad:
    print("  " + b)
sys.exit(1 if bad or not maps else 0)
PYEOF
    }
    e2e_check "$label: node$n runs the new programs on every hook (new tags), every pinned map kept (same ids)" compare
    e2e_check "$label: node$n XDP still native" eval "s=\$(ns_xdp_state $n eth0); echo \"xdp \$s\"; [[ \$s == native ]]"
    e2e_check "$label: traffic goes on (100 more connections each)" more_conns 100
}

upgrade 1 "$NEXT_BIN" upgrade
upgrade 2 "$NEXT_BIN" upgrade
upgrade 1 "$OLD_BIN" rollback

# ---------------------------------------------------------------- totals
touch "$E2E_RUN/load.stop"
for name in "${LOADS[@]}"; do
    pid=${LOAD_PID[$name]}
    if e2e_wait_pid_exit "$pid" 30; then wait "$pid"; rc=$?; else e2e_kill_pid "$pid"; rc=124; fi
    e2e_forget_pid "$pid"
    grep -v '^{' "$E2E_LOGS/$name.log" | sed 's/^/    /'
    e2e_result "load $name: zero failures across two upgrades and a rollback" "$rc"
done
figures() {
    local src
    for src in client pod; do
        "$E2E_PY" "$E2E_DIR/load_figures.py" "$E2E_LOGS" "upgrade x2 + rollback, $src" \
            --conns "conns-${src}4" "conns-${src}6" --persist "persist-${src}4" "persist-${src}6" \
            --streams "flows-${src}4" "flows-${src}6" || return 1
    done
}
e2e_check "totals" figures

for n in 1 2; do
    pid=${NS_AGENT_PID[n]}
    kill -TERM "$pid" 2>/dev/null
    e2e_wait_pid_exit "$pid" 10
    wait "$pid" 2>/dev/null
    e2e_forget_pid "$pid"
    NS_AGENT_PID[n]=""
done
NS_FINISHED=1
e2e_summary
if ((E2E_FAIL == 0)); then
    echo "RESULT: PASS (upgrade)"
    exit 0
fi
echo "RESULT: FAIL (upgrade)"
exit 1
