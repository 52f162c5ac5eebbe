#!/usr/bin/env bash
# sluice e2e: ClusterIP through the per-pod-veth tc datapath, IPv4 and IPv6.
#
#   bash tests/e2e/test_clusterip.sh bridge|routed
#
# Builds a node netns and 4 pod netns (layout per argument, see lib.sh), runs a
# podserver in every pod, runs sluice-agent in the node netns on generated
# Service/EndpointSlice manifests, then checks per family from pod1:
#   1 new TCP connections spread over every backend, no errors
#   2 UDP datagrams answered by every backend
#   3 removing a backend (atomic mv of the EndpointSlice): persistent connections
#     to the other backends survive, new connections never reach it
#   4 a service without endpoints refuses connections at once (< 1 s)
#   5 hairpin: pod1 -> a service whose only backend is pod1
#   6 traffic that is not for a service (pod1 -> pod2 direct) is untouched, also
#     a direct connection reusing the local port of a just-closed service flow
# then once:
#   7 a pod created while the agent runs (pod5): the agent attaches to its veth by
#     itself and pod5's service traffic is translated
#   8 sluicectl: names and Services not proxied (a headless and an ExternalName Service
#     are added), trace of pod1 -> web in both families leaves no flow behind
#   9 agent restart (SIGTERM, same arguments and bpffs) with keep-alive connections
#     running: restored state, first sync writes nothing (ops=0), zero failures
# and finally that the datapath outlives the agent process (SIGTERM) and that
# `sluice-agent --cleanup` removes it (exit 0, no pins, VIP no longer served).
#
# Exit: 0 all passed, 1 a check failed, 77 skipped (not root / no ip netns).
# Env: SLUICE_BIN_DIR (default <repo>/build/bin), E2E_KEEP=1 keeps the logs.

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
# shellcheck disable=SC2119
e2e_require_binaries || exit 1

NPODS=4
BACKENDS=(2 3 4)  # pods behind `web`
REMOVED=4         # the backend removed in check 3
HTTP_COUNT=200
UDP_COUNT=100

e2e_setup "sl$$-" || exit 1
e2e_install_traps
e2e_watchdog 270

echo "=== sluice e2e ClusterIP, layout=$LAYOUT, pid $$ ==="

# a fair spread floor: each backend gets at least a quarter of its fair share
# (uniform random choice makes anything lower astronomically unlikely)
spread_floor() { echo $(($1 / ($2 * 4) > 0 ? $1 / ($2 * 4) : 1)); }

fatal() {
    echo "FAIL: $*"
    e2e_diag
    e2e_agent_tail 80
    e2e_summary
    exit 1
}

# ---------------------------------------------------------------- topology
e2e_topology "$LAYOUT" "$NPODS" || fatal "could not build the $LAYOUT topology"
e2e_start_servers || fatal "pod servers did not start"

e2e_check "topology: pod1 pings pod2..pod$NPODS (IPv4+IPv6) before the agent runs" \
    e2e_reach_direct "$NPODS" || fatal "topology broken before the agent started"

# ---------------------------------------------------------------- agent
e2e_write_manifests "$E2E_MANIFESTS" || fatal "could not write manifests"
e2e_start_agent "$E2E_MANIFESTS"
e2e_wait_generation_gt 0 30 || fatal "sluice-agent did not sync"

# Readiness gate: the first sync may not be the last one for the initial
# manifest set; wait (bounded) until the VIP answers on both families.
wait_vip() {
    local url=$1 deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        if e2e_client 1 http "$url" --count 1 --timeout 1 >/dev/null 2>&1; then
            echo "$url answers"
            return 0
        fi
        e2e_pid_alive "$E2E_AGENT_PID" || { echo "agent died"; return 1; }
        sleep 0.1
    done
    echo "$url did not answer within 15s"
    return 1
}
for vip in "$E2E_WEB_V4" "$E2E_WEB_V6"; do
    e2e_check "agent ready: web answers on $vip:80 (within 15 s)" wait_vip "$(e2e_url "$vip" 80)"
done

# ---------------------------------------------------------------- checks
check_remove_backend() {
    local fam=$1 vip=$2 url kept=() i ready stop out pid gen prc rc=0
    url=$(e2e_url "$vip" 80)
    for i in "${BACKENDS[@]}"; do ((i != REMOVED)) && kept+=("$i"); done
    ready=$E2E_RUN/persist$fam.ready
    stop=$E2E_RUN/persist$fam.stop
    out=$E2E_LOGS/persist$fam.log

    # 16 keep-alive connections, one request each per 100 ms; they stop 10
    # rounds (~1 s) after the stop file appears, or after 60 s at the latest
    e2e_client_bg "persist$fam" 1 persist "$url" --conns 16 --interval 0.1 --timeout 2 \
        --ready-file "$ready" --stop-file "$stop" --extra-rounds 10 \
        --max-duration 60 --removed "pod$REMOVED"
    pid=$E2E_BG_PID
    if ! e2e_wait_file_or_exit "$ready" "$pid" 15; then
        e2e_kill_pid "$pid"
        grep -v '^{' "$out" | sed 's/^/    /'
        e2e_result "IPv$fam 3 16 persistent connections to $vip:80 opened" 1
        return 1
    fi
    echo "    persistent connections open (conn -> backend): $(cat "$ready")"

    gen=$(e2e_agent_generation)
    e2e_log "removing pod$REMOVED from EndpointSlice web-ipv$fam (atomic mv), generation now $gen"
    e2e_write_web_slice "$E2E_MANIFESTS" "$fam" "${kept[@]}" || rc=1
    e2e_check "IPv$fam 3 agent synced the EndpointSlice edit (generation > $gen)" \
        e2e_wait_generation_gt "$gen" 15 || rc=1

    e2e_check "IPv$fam 3b $((HTTP_COUNT / 2)) new connections never reach removed pod$REMOVED" \
        e2e_client 1 http "$url" --count $((HTTP_COUNT / 2)) --timeout 2 --deadline 60 \
        --expect "$(e2e_pod_names "${kept[@]}")" --only --forbid "pod$REMOVED" || rc=1

    touch "$stop"
    if e2e_wait_pid_exit "$pid" 20; then
        wait "$pid"
        prc=$?
    else
        echo "    persist client did not finish within 20s after the stop file"
        e2e_kill_pid "$pid"
        prc=124
    fi
    grep -v '^{' "$out" | sed 's/^/    /'
    e2e_result "IPv$fam 3a persistent connections to kept backends had zero failures" "$prc" ||
        rc=1
    # informational: what happened to the connections pinned to the removed backend
    /usr/bin/python3 - "$out" "pod$REMOVED" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        conns = [c for c in json.loads(line)["conns"] if c["backend"] == sys.argv[2]]
        alive = sum(1 for c in conns if c["alive"])
        errs = sorted({c["error"] for c in conns if c["error"]})
        print(f"    info: {len(conns)} persistent connections were on {sys.argv[2]}: "
              f"{alive} still served after its removal, {len(conns) - alive} broke {errs[:2]}")
EOF
    return "$rc"
}

run_family() {
    local fam=$1 web empty self p2 nb=${#BACKENDS[@]} direct i ip
    if [[ $fam == 4 ]]; then
        web=$E2E_WEB_V4 empty=$E2E_EMPTY_V4 self=$E2E_SELF_V4 p2=$(e2e_pod_ip4 2)
    else
        web=$E2E_WEB_V6 empty=$E2E_EMPTY_V6 self=$E2E_SELF_V6 p2=$(e2e_pod_ip6 2)
    fi
    direct=""
    for i in "${BACKENDS[@]}"; do
        if [[ $fam == 4 ]]; then ip=$(e2e_pod_ip4 "$i"); else ip=$(e2e_pod_ip6 "$i"); fi
        direct+="${direct:+,}pod$i=$ip"
    done
    echo "--- IPv$fam ---"

    e2e_check "IPv$fam 1 $HTTP_COUNT new HTTP connections to $web:80 reach every backend, no errors" \
        e2e_client 1 http "$(e2e_url "$web" 80)" --count "$HTTP_COUNT" --timeout 2 --deadline 90 \
        --expect "$(e2e_pod_names "${BACKENDS[@]}")" --only \
        --min-each "$(spread_floor "$HTTP_COUNT" "$nb")"

    e2e_check "IPv$fam 2 $UDP_COUNT UDP datagrams to $web:53 answered by every backend" \
        e2e_client 1 udp "$web" 53 --count "$UDP_COUNT" --timeout 1 --deadline 60 \
        --expect "$(e2e_pod_names "${BACKENDS[@]}")" --only \
        --min-each "$(spread_floor "$UDP_COUNT" "$nb")"

    check_remove_backend "$fam" "$web"

    e2e_check "IPv$fam 4 service without endpoints ($empty:80) refuses at once (< 1 s)" \
        e2e_client 1 refused "$empty" 80 --count 3 --timeout 2 --within 1.0

    e2e_check "IPv$fam 5 hairpin: pod1 -> self $self:80 (TCP) answered by pod1" \
        e2e_client 1 http "$(e2e_url "$self" 80)" --count 10 --timeout 2 --deadline 30 \
        --expect pod1 --only --min-each 10
    e2e_check "IPv$fam 5 hairpin: pod1 -> self $self:53 (UDP) answered by pod1" \
        e2e_client 1 udp "$self" 53 --count 10 --timeout 1 --deadline 30 \
        --expect pod1 --only --min-each 10

    e2e_check "IPv$fam 6 non-service traffic pod1 -> pod2 $p2 direct (TCP)" \
        e2e_client 1 http "$(e2e_url "$p2" 8080)" --count 20 --timeout 2 --deadline 30 \
        --expect pod2 --only --min-each 20
    e2e_check "IPv$fam 6 non-service traffic pod1 -> pod2 $p2 direct (UDP)" \
        e2e_client 1 udp "$p2" 5353 --count 20 --timeout 1 --deadline 30 \
        --expect pod2 --only --min-each 20
    # clients reuse a local port as soon as the server closed first: a direct
    # connection must not be caught by the finished service flow's NAT state
    e2e_check "IPv$fam 6b direct connection to a backend from the port of a just-closed service connection" \
        e2e_client 1 reuse "$(e2e_url "$web" 80)" --direct "$direct" --count 3 \
        --first-port $((fam == 4 ? 41000 : 42000)) --timeout 2 --deadline 20
}

run_family 4
run_family 6

KEPT=()  # web's backends from here on (check 3 removed pod$REMOVED in both families)
for i in "${BACKENDS[@]}"; do ((i != REMOVED)) && KEPT+=("$i"); done

# ---------------------------------------------------------------- sluicectl
# The agent's names reach sluicectl (a headless and an ExternalName Service show as not
# proxied), and `trace` explains a packet from pod1 against the live maps without leaving a
# flow behind. The restart below then also proves the name maps cost no write.
echo "--- sluicectl ---"
write_unproxied() {
    cat >"$E2E_STAGING/db-service.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
spec:
  clusterIP: None
  selector:
    app: db
  ports:
    - name: pg
      port: 5432
EOF
    cat >"$E2E_STAGING/ext-service.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: ext
  namespace: default
spec:
  type: ExternalName
  externalName: db.example.com
EOF
    mv -f "$E2E_STAGING/db-service.yaml" "$E2E_STAGING/ext-service.yaml" "$E2E_MANIFESTS/"
}
ctl_gen=$(e2e_agent_generation)
write_unproxied || fatal "could not write the headless and ExternalName manifests"
e2e_check "sluicectl: agent synced the headless and ExternalName Services (generation > $ctl_gen)" \
    e2e_wait_generation_gt "$ctl_gen" 15

check_ctl_service_list() {
    local out
    out=$(e2e_ctl -j service list) || { echo "$out"; return 1; }
    "$E2E_PY" - "$out" "$E2E_WEB_V4" "$E2E_WEB_V6" <<'EOF'
import json, sys
doc = json.loads(sys.argv[1])
ok = True
for vip in sys.argv[2:]:
    fes = [f for f in doc["frontends"] if f["address"] == vip and f["port"] == 80]
    if len(fes) != 1:
        print(f"no single frontend {vip}:80 in {[f['frontend'] for f in doc['frontends']]}")
        ok = False
        continue
    f = fes[0]
    got = (f["type"], f["namespace"], f["name"], f["port_name"], len(f["backends"]))
    print(f"{f['frontend']}: {got}")
    ok &= got == ("ClusterIP", "default", "web", "http", 2)
skipped = {(u["namespace"], u["name"]): u for u in doc["not_proxied"]}
print(f"not proxied: {sorted(skipped)}")
ok &= skipped.get(("default", "db"), {}).get("reason") == "headless"
ok &= skipped.get(("default", "ext"), {}).get("external_name") == "db.example.com"
sys.exit(0 if ok else 1)
EOF
}
e2e_check "sluicectl service list: web's frontends with kind and name, db and ext not proxied" \
    check_ctl_service_list

check_ctl_trace() {
    # 61999 lies above the default ephemeral range (32768-60999): no real client
    # of the earlier steps can own a flow from that port and make the check fail
    local fam=$1 src dst out flows
    if [[ $fam == 4 ]]; then
        src="$(e2e_pod_ip4 1):61999" dst="$E2E_WEB_V4:80"
    else
        src="[$(e2e_pod_ip6 1)]:61999" dst="[$E2E_WEB_V6]:80"
    fi
    out=$(e2e_ctl -j trace pod dev veth-p1 tcp "$src" "$dst") || { echo "$out"; return 1; }
    "$E2E_PY" - "$out" <<'EOF' || return 1
import json, sys
t = json.loads(sys.argv[1])
print(f"{t['verdict']} ({t['action']}): backend {t['backend']['address']}, output {t['output']}, "
      f"checksums {t['output_checksums']}")
sys.exit(0 if t["verdict"] == "forward_new" and t["action"] == "TC_ACT_OK"
         and t["output_checksums"] == "ok" and t["service"]["name"] == "default/web:http" else 1)
EOF
    flows=$(e2e_ctl -j ct list port 61999) || { echo "$flows"; return 1; }
    [[ $flows == "[]" ]] || { echo "the trace left conntrack entries: $flows"; return 1; }
}
for fam in 4 6; do
    e2e_check "sluicectl trace: pod1 -> web (IPv$fam) is a new flow to a backend, no flow left behind" \
        check_ctl_trace "$fam"
done

# ---------------------------------------------------------------- late pod device
# A pod created while the agent runs: the agent must attach to its veth on its
# own (rtnetlink link events), and the pod's service traffic must be translated.
echo "--- late pod device ---"
LATE=$((NPODS + 1))
LATE_DEV=veth-p$LATE
late_rc=0
e2e_add_pod "$LATE" || late_rc=1
if ((late_rc == 0)); then
    e2e_start_server "$LATE"
    e2e_wait_server "$LATE" 10 || late_rc=1
fi
e2e_result "late pod: pod$LATE ($LATE_DEV, $LAYOUT wiring, podserver) created after the agent synced" \
    "$late_rc"
if ((late_rc == 0)); then
    e2e_check "late pod: agent attached lb_pod_ingress to $LATE_DEV by itself (within 10 s)" \
        e2e_wait_log "$E2E_AGENT_LOG" "$(e2e_agent_attached_re "$LATE_DEV")" 10 "$E2E_AGENT_PID"
    e2e_check "late pod: tc ingress filter lb_pod_ingress on $LATE_DEV" \
        e2e_tc_ingress_has "$LATE_DEV" lb_pod_ingress
    for vip in "$E2E_WEB_V4" "$E2E_WEB_V6"; do
        e2e_check "late pod: pod$LATE -> web $vip:80, 20 new connections answered by $(e2e_pod_names "${KEPT[@]}"), no errors" \
            e2e_client "$LATE" http "$(e2e_url "$vip" 80)" --count 20 --timeout 2 --deadline 30 \
            --expect "$(e2e_pod_names "${KEPT[@]}")" --only
    done
fi

# ---------------------------------------------------------------- agent restart
# SIGTERM the agent and start it again on the same bpffs while persistent
# connections run: it restores its ids from the pinned maps, so its first sync
# writes nothing, and established flows never notice.
echo "--- agent restart ---"
restart_devs=()
for ((i = 1; i <= NPODS; i++)); do restart_devs+=("veth-p$i"); done
((late_rc == 0)) && restart_devs+=("$LATE_DEV")

frontends_before=$(grep -o 'synced generation=[0-9]* frontends=[0-9]*' "$E2E_AGENT_LOG" |
    tail -n 1 | sed 's/.*frontends=//')
echo "    frontends before the restart: ${frontends_before:-unknown}"

# persistent connections from pod1 to web, both families; each stops 10 rounds
# (~1 s) after its stop file appears, after 60 s at the latest
restart_pids=()
for fam in 4 6; do
    if [[ $fam == 4 ]]; then vip=$E2E_WEB_V4; else vip=$E2E_WEB_V6; fi
    e2e_client_bg "restart-persist$fam" 1 persist "$(e2e_url "$vip" 80)" --conns 8 \
        --interval 0.1 --timeout 2 --ready-file "$E2E_RUN/restart-persist$fam.ready" \
        --stop-file "$E2E_RUN/restart-persist$fam.stop" --extra-rounds 10 --max-duration 60
    restart_pids[fam]=$E2E_BG_PID
done
restart_ready=0
for fam in 4 6; do
    if e2e_wait_file_or_exit "$E2E_RUN/restart-persist$fam.ready" "${restart_pids[fam]}" 15; then
        echo "    IPv$fam persistent connections open (conn -> backend): $(cat "$E2E_RUN/restart-persist$fam.ready")"
    else
        grep -v '^{' "$E2E_LOGS/restart-persist$fam.log" | sed 's/^/    /'
        restart_ready=1
    fi
done
e2e_result "restart: 2 x 8 persistent connections from pod1 to web open before the restart" \
    "$restart_ready"

prog_before=$(e2e_tc_ingress_prog_id veth-p1)
e2e_stop_agent 10
rc=$?
echo "    sluice-agent exited with status $rc after SIGTERM"
e2e_result "restart: agent stops on SIGTERM within 10 s (status 0 or 143)" \
    "$(((rc == 0 || rc == 143) ? 0 : 1))"

e2e_restart_agent agent-restart
e2e_check "restart: new agent synced generation=1 (within 30 s)" e2e_wait_generation_gt 0 30

check_restart_ops() {
    local line
    line=$(grep -m 1 'synced generation=1 ' "$E2E_AGENT_LOG") || {
        echo "no 'synced generation=1' line"
        return 1
    }
    echo "$line"
    [[ " $line " == *" ops=0 "* ]] || {
        echo "the first sync after the restart wrote to the maps (want ops=0)"
        return 1
    }
}
e2e_check "restart: first sync after the restart has ops=0 (nothing to write)" check_restart_ops

check_restored() {
    local line n
    line=$(grep -m 1 -o 'restored [0-9]* frontends and [0-9]* backends' "$E2E_AGENT_LOG") || {
        echo "no 'restored N frontends' line"
        return 1
    }
    echo "$line (frontends before the restart: ${frontends_before:-unknown})"
    n=$(awk '{print $2}' <<<"$line")
    [[ -n $frontends_before && $n == "$frontends_before" ]]
}
e2e_check "restart: agent restored as many frontends from the pinned maps as there were" \
    check_restored

wait_reattached() {
    local dev rc=0
    for dev in "${restart_devs[@]}"; do
        e2e_wait_log "$E2E_AGENT_LOG" "$(e2e_agent_attached_re "$dev")" 10 "$E2E_AGENT_PID" ||
            rc=1
    done
    return "$rc"
}
e2e_check "restart: new agent attached lb_pod_ingress to ${restart_devs[*]}" wait_reattached
# informational: the flows below run through the new agent's program
echo "    info: lb_pod_ingress on veth-p1: prog id ${prog_before:-none} before the restart, $(e2e_tc_ingress_prog_id veth-p1) after"

# the persistent connections ran through stop, restart and re-attach: end them now
for fam in 4 6; do
    touch "$E2E_RUN/restart-persist$fam.stop"
done
for fam in 4 6; do
    pid=${restart_pids[fam]}
    if e2e_wait_pid_exit "$pid" 20; then
        wait "$pid"
        prc=$?
    else
        echo "    persist client did not finish within 20s after the stop file"
        e2e_kill_pid "$pid"
        prc=124
    fi
    e2e_forget_pid "$pid"
    grep -v '^{' "$E2E_LOGS/restart-persist$fam.log" | sed 's/^/    /'
    e2e_result "restart: IPv$fam 8 persistent connections had zero failures across the agent restart" \
        "$prc"
done

for vip in "$E2E_WEB_V4" "$E2E_WEB_V6"; do
    e2e_check "restart: 50 new connections to $vip:80 right after spread over $(e2e_pod_names "${KEPT[@]}"), no errors" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 50 --timeout 2 --deadline 60 \
        --expect "$(e2e_pod_names "${KEPT[@]}")" --only --min-each "$(spread_floor 50 "${#KEPT[@]}")"
done

# ---------------------------------------------------------------- lifecycle
echo "--- agent lifecycle ---"

e2e_stop_agent 10
rc=$?
echo "    sluice-agent exited with status $rc after SIGTERM"
e2e_result "agent stops on SIGTERM within 10 s (status 0 or 143)" \
    "$(((rc == 0 || rc == 143) ? 0 : 1))"

for vip in "$E2E_WEB_V4" "$E2E_WEB_V6"; do
    e2e_check "datapath keeps serving $vip after the agent stopped" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 20 --timeout 2 --deadline 30 \
        --expect "$(e2e_pod_names "${KEPT[@]}")" --only
done

cleanup_agent() {
    local rc left
    timeout -k 5 30 ip netns exec "$E2E_NODE" "$E2E_AGENT_BIN" --cleanup \
        --bpffs-root "$E2E_BPFFS" 2>&1 | tail -n 5
    rc=${PIPESTATUS[0]}
    echo "sluice-agent --cleanup exit status $rc"
    left=$(e2e_bpffs_pins)
    if [[ -n $left ]]; then
        echo "pins left behind:"
        echo "$left"
        return 1
    fi
    echo "bpffs $E2E_BPFFS is empty"
    return "$rc"
}
e2e_check "sluice-agent --cleanup exits 0 and leaves no pins" cleanup_agent

# after cleanup nothing translates the VIP any more: the node has no route for
# it, so the connection must fail (quickly: ICMP unreachable or timeout 1 s)
e2e_check "after --cleanup $E2E_WEB_V4:80 is no longer served" \
    eval "! e2e_client 1 http '$(e2e_url "$E2E_WEB_V4" 80)' --count 2 --timeout 1 --deadline 5 >/dev/null"
e2e_check "after --cleanup pod1 -> pod2 direct still works" \
    e2e_client 1 http "$(e2e_url "$(e2e_pod_ip4 2)" 8080)" --count 5 --timeout 2 --deadline 15 \
    --expect pod2 --only

e2e_summary
if ((E2E_FAIL > 0)); then
    e2e_agent_tail 80
    echo "RESULT: FAIL ($LAYOUT)"
    exit 1
fi
echo "RESULT: PASS ($LAYOUT)"
exit 0
