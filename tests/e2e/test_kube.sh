#!/usr/bin/env bash
# sluice e2e: the agent in Kubernetes API mode (list/watch against
# tests/kube/fake_apiserver.py over TLS + bearer token) programming real traffic.
#
#   bash tests/e2e/test_kube.sh [routed|bridge]        (default routed)
#
# Node netns + pod1..pod5 (lib.sh); the fake API server runs in the node netns
# on https://127.0.0.1:6443 (throwaway CA, token file, kubeconfig with
# certificate-authority + tokenFile), preloaded with a Node, Pods, Services and
# EndpointSlices. Checks (see README.md "test_kube.sh"): initial programming and
# kube-proxy endpoints; watch events (add endpoint, not ready, delete Service,
# Service without endpoints then with, UDP 0 -> N, healthCheckNodePort 200/503);
# watch faults (410 relist, dropped watches) without map churn; kill -9 of the
# agent during a stream of new connections (zero failures, persistent
# connections and long-lived streams survive, also a second kill during start-up,
# first sync ops=0, totals printed as "figures:"); an endpoint change while the agent
# is dead (the restarted agent's first sync writes exactly the delta).
#
# Exit: 0 all passed, 1 a check failed, 77 skipped (not root / no ip netns / no curl, openssl).
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
# shellcheck source=kube_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/kube_lib.sh"

kube_preflight || exit $?

NPODS=5
HC_PORT=32100
NODE=$E2E_NODE_NAME
WEB4=$E2E_WEB_V4 WEB6=$E2E_WEB_V6
GONE4=10.96.0.40
LB4=10.96.0.50
LATE4=10.96.0.60 LATE6=fd00:96::60

e2e_setup "sl$$-" || exit 1
kube_on_exit() {
    local rc=$?
    e2e_cleanup # newest first: the agent, then the fake API server (by pid)
    [[ -n $KUBE_CTL_SOCK ]] && rm -f "$KUBE_CTL_SOCK"
    exit "$rc"
}
e2e_install_traps
trap kube_on_exit EXIT
e2e_watchdog 420

echo "=== sluice e2e Kubernetes API mode, layout=$LAYOUT, pid $$ ==="

fatal() {
    echo "FAIL: $*"
    e2e_diag
    e2e_agent_tail 80
    echo "----- fake API server log (last 20 lines) -----"
    tail -n 20 "$KUBE_API_LOG" 2>/dev/null
    e2e_summary
    exit 1
}

# ---------------------------------------------------------------- topology
e2e_topology "$LAYOUT" "$NPODS" || fatal "could not build the $LAYOUT topology"
e2e_start_servers || fatal "pod servers did not start"
e2e_check "topology: pod1 pings pod2..pod$NPODS (IPv4+IPv6) before the agent runs" \
    e2e_reach_direct "$NPODS" || fatal "topology broken before the agent started"

# ---------------------------------------------------------------- cluster objects
if [[ $LAYOUT == routed ]]; then
    NODE_IPS=10.244.1.1,fd00:244:1::1 POD_CIDRS=10.244.1.0/24,fd00:244:1::/64
else
    NODE_IPS=10.244.0.1,fd00:244::1 POD_CIDRS=10.244.0.0/24,fd00:244::/64
fi
WEB_PORTS=http:8080:TCP,dns:5353:UDP

# slice NAME SVC FAM PORTS "EPSPECS" -> JSON (EPSPECS: "I:L|R[:ready|nr|term] ...")
slice() { kube_gen slice name="$1" svc="$2" fam="$3" ports="$4" eps="$(kube_ep_list "$3" "$5")"; }

write_preload() {
    local f=$1 i nodes pods svcs slices
    nodes=$(kube_gen node name="$NODE" ips="$NODE_IPS" podcidrs="$POD_CIDRS") || return 1
    nodes+=",$(kube_gen node name="$KUBE_REMOTE_NODE" ips=192.0.2.2 podcidrs=10.244.9.0/24)"
    pods=""
    for ((i = 1; i <= NPODS; i++)); do
        # pod3 claims to run on the other node: its endpoints are remote
        pods+="${pods:+,}$(kube_gen pod name="pod$i" node="$([[ $i == 3 ]] && echo "$KUBE_REMOTE_NODE" || echo "$NODE")" \
            ips="$(e2e_pod_ip4 "$i"),$(e2e_pod_ip6 "$i")" hostip="${NODE_IPS%%,*}")"
    done
    svcs="$(kube_gen service name=web ips="$WEB4,$WEB6" ports=http:80:8080:TCP,dns:53:5353:UDP)"
    svcs+=",$(kube_gen service name=gone ips="$GONE4" ports=http:80:8080:TCP)"
    svcs+=",$(kube_gen service name=lb type=LoadBalancer etp=Local hc="$HC_PORT" lbip=192.0.2.50 \
        ips="$LB4" ports=http:80:8080:TCP:31080)"
    slices="$(slice web-abc12 web 4 "$WEB_PORTS" "2:L 3:R")"
    slices+=",$(slice web-def34 web 6 "$WEB_PORTS" "2:L 3:R")"
    slices+=",$(slice gone-x1y2z gone 4 http:8080:TCP "2:L")"
    slices+=",$(slice lb-q9w8e lb 4 http:8080:TCP "3:R 4:L 5:L")"
    printf '{"nodes":[%s],"pods":[%s],"services":[%s],"endpointslices":[%s]}\n' \
        "$nodes" "$pods" "$svcs" "$slices" >"$f"
}

kube_setup || fatal "could not create the PKI/kubeconfig"
write_preload "$KUBE_DIR/preload.json" || fatal "could not write the preload file"
kube_start_apiserver "$KUBE_DIR/preload.json" || fatal "fake API server did not start"

check_api_auth() {
    local code
    code=$(kube_fetch "https://127.0.0.1:$KUBE_API_PORT/api/v1/services" --cacert "$KUBE_DIR/ca.crt")
    echo "no token: HTTP $code"
    [[ $code == 401 ]] || return 1
    code=$(kube_fetch "https://127.0.0.1:$KUBE_API_PORT/api/v1/services" --cacert "$KUBE_DIR/ca.crt" \
        -H "Authorization: Bearer $KUBE_TOKEN")
    echo "with token: HTTP $code, $(grep -o '"name":"[a-z]*","namespace"' "$E2E_RUN/fetch.body" | wc -l) services"
    [[ $code == 200 ]]
}
e2e_check "fake API server: HTTPS with the test CA, 401 without the token, 200 with it" check_api_auth
kube_ctl POST /reset_requests >/dev/null # the agent's requests only from here on

# ---------------------------------------------------------------- agent
E2E_AGENT_ARGS=(--kubeconfig "$KUBE_KUBECONFIG" --node-name "$NODE" --pod-devices 'veth-p*'
    --bpffs-root "$E2E_BPFFS" --healthz-bind-address 0.0.0.0:10256
    --metrics-bind-address 127.0.0.1:10249)
e2e_log "starting sluice-agent in $E2E_NODE (kube mode, kubeconfig $KUBE_KUBECONFIG)"
e2e_launch_agent agent
e2e_wait_generation_gt 0 30 || fatal "sluice-agent did not sync from the API server"
FIRST_SYNC=$(grep -m 1 'synced generation=1 ' "$E2E_AGENT_LOG")
FIRST_OPS=$(kube_field "$FIRST_SYNC" ops)

wait_attached() {
    local i rc=0
    for ((i = 1; i <= NPODS; i++)); do
        e2e_wait_log "$E2E_AGENT_LOG" "$(e2e_agent_attached_re "veth-p$i")" 10 "$E2E_AGENT_PID" || rc=1
    done
    return "$rc"
}
e2e_check "agent attached lb_pod_ingress to veth-p1..veth-p$NPODS" wait_attached ||
    fatal "agent did not attach"

check_initial_requests() {
    local reqs rc=0 r
    reqs=$(kube_requests_since 0) || return 1
    echo "$reqs" | head -n 12
    for r in services endpointslices nodes pods; do
        grep -q "^200 list $r 1 " <<<"$reqs" || { echo "no successful authenticated list of $r"; rc=1; }
        grep -q "^200 watch $r 1 " <<<"$reqs" || { echo "no authenticated watch of $r"; rc=1; }
    done
    grep -q "^[0-9]* list nodes 1 .*fieldSelector=metadata.name=$NODE" <<<"$reqs" ||
        { echo "nodes not listed with fieldSelector metadata.name=$NODE"; rc=1; }
    grep -q "^[0-9]* list pods 1 .*fieldSelector=spec.nodeName=$NODE" <<<"$reqs" ||
        { echo "pods not listed with fieldSelector spec.nodeName=$NODE"; rc=1; }
    if grep -qv '^[0-9]* [a-z]* [^ ]* 1 ' <<<"$reqs"; then
        echo "requests without our bearer token:"
        grep -v '^[0-9]* [a-z]* [^ ]* 1 ' <<<"$reqs" | head -n 5
        rc=1
    fi
    return "$rc"
}
e2e_check "API requests: list+watch of services, endpointslices, nodes (metadata.name), pods (spec.nodeName), all with the bearer token" \
    check_initial_requests

# Readiness gate: poll until the VIP answers (bounded)
wait_answer() { # wait_answer POD URL WANT_BACKEND_RE TIMEOUT
    local pod=$1 url=$2 re=$3 deadline=$((SECONDS + $4)) out
    while ((SECONDS < deadline)); do
        out=$(e2e_client "$pod" http "$url" --count 1 --timeout 1 2>&1)
        if grep -qE "^http .*: ($re)=1 errors=0" <<<"$out"; then
            echo "$url answered: $(head -n 1 <<<"$out")"
            return 0
        fi
        e2e_pid_alive "$E2E_AGENT_PID" || { echo "agent died"; return 1; }
        sleep 0.1
    done
    echo "$url not answered by /$re/ within $4s: $(head -n 1 <<<"$out")"
    return 1
}
for vip in "$WEB4" "$WEB6"; do
    e2e_check "agent ready: web answers on $vip:80 (within 15 s)" wait_answer 1 "$(e2e_url "$vip" 80)" 'pod[23]' 15
done

echo "--- initial state from the API ---"
for vip in "$WEB4" "$WEB6"; do
    e2e_check "web $vip:80: 100 new connections reach exactly pod2,pod3" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 100 --timeout 2 --deadline 60 \
        --expect pod2,pod3 --only --min-each 10
    e2e_check "web $vip:53: 50 UDP datagrams answered by exactly pod2,pod3" \
        e2e_client 1 udp "$vip" 53 --count 50 --timeout 1 --deadline 60 \
        --expect pod2,pod3 --only --min-each 5
done
e2e_check "gone $GONE4:80 -> pod2" \
    e2e_client 1 http "$(e2e_url "$GONE4" 80)" --count 10 --timeout 2 --deadline 30 --expect pod2 --only
e2e_check "lb (LoadBalancer, eTP Local) clusterIP $LB4:80 -> pod3,pod4,pod5 (internalTrafficPolicy Cluster)" \
    e2e_client 1 http "$(e2e_url "$LB4" 80)" --count 60 --timeout 2 --deadline 30 \
    --expect pod3,pod4,pod5 --only --min-each 3

check_healthz() {
    local code body
    code=$(kube_fetch http://127.0.0.1:10256/healthz)
    body=$(cat "$E2E_RUN/fetch.body" 2>/dev/null)
    echo "/healthz $code $body"
    [[ $code == 200 && $body == '{"lastUpdated": "'*'","currentTime": "'*'", "nodeEligible": true}' &&
        $body != *'"lastUpdated": "0001-'* ]] || return 1
    [[ $(kube_header Content-Type) == application/json ]] || { echo "Content-Type $(kube_header Content-Type)"; return 1; }
    code=$(kube_fetch http://127.0.0.1:10256/livez)
    body=$(cat "$E2E_RUN/fetch.body" 2>/dev/null)
    echo "/livez $code $body"
    [[ $code == 200 && $body == '{"lastUpdated": "'*'","currentTime": "'*'"}' ]]
}
e2e_check "/healthz 200 with lastUpdated (nodeEligible true), /livez 200" check_healthz

check_metrics() {
    local code m rc=0
    code=$(kube_fetch http://127.0.0.1:10249/metrics)
    echo "/metrics $code, $(wc -l <"$E2E_RUN/fetch.body") lines"
    [[ $code == 200 ]] || rc=1
    for m in sluice_frontends kubeproxy_sync_proxy_rules_duration_seconds; do
        if grep -q "^$m" "$E2E_RUN/fetch.body"; then
            grep "^$m" "$E2E_RUN/fetch.body" | head -n 2 | sed 's/^/  /'
        else
            echo "missing $m"
            rc=1
        fi
    done
    code=$(kube_fetch http://127.0.0.1:10249/proxyMode)
    echo "/proxyMode $code $(cat "$E2E_RUN/fetch.body")"
    [[ $code == 200 && -s $E2E_RUN/fetch.body ]] || rc=1
    return "$rc"
}
e2e_check "/metrics has sluice_frontends and kubeproxy_sync_proxy_rules_duration_seconds; /proxyMode 200" \
    check_metrics

# check_hc CODE LOCAL: healthCheckNodePort answer as kube-proxy's (service_health.go)
check_hc() {
    local want_code=$1 n=$2 code body want healthy=true rc=0
    code=$(kube_fetch "http://127.0.0.1:$HC_PORT/")
    body=$(cat "$E2E_RUN/fetch.body" 2>/dev/null)
    want=$(printf '{\n\t"service": {\n\t\t"namespace": "default",\n\t\t"name": "lb"\n\t},\n\t"localEndpoints": %d,\n\t"serviceProxyHealthy": %s\n}' "$n" "$healthy")
    echo "HTTP $code"
    tr -d '\r' <"$E2E_RUN/fetch.headers" | grep -i -e '^content-type' -e '^x-' | sed 's/^/  /'
    echo "$body" | sed 's/^/  | /'
    [[ $code == "$want_code" ]] || { echo "status $code, want $want_code"; rc=1; }
    [[ $body == "$want" ]] || { echo "body differs from kube-proxy's (want localEndpoints $n)"; rc=1; }
    [[ $(kube_header Content-Type) == application/json ]] || { echo "bad Content-Type"; rc=1; }
    [[ $(kube_header X-Content-Type-Options) == nosniff ]] || { echo "no X-Content-Type-Options: nosniff"; rc=1; }
    [[ $(kube_header X-Load-Balancing-Endpoint-Weight) == "$n" ]] ||
        { echo "X-Load-Balancing-Endpoint-Weight '$(kube_header X-Load-Balancing-Endpoint-Weight)', want $n"; rc=1; }
    return "$rc"
}
# wait_hc CODE LOCAL TIMEOUT: poll until the answer matches, then show it
wait_hc() {
    local deadline=$((SECONDS + $3))
    until check_hc "$1" "$2" >/dev/null 2>&1; do
        ((SECONDS >= deadline)) && break
        sleep 0.1
    done
    check_hc "$1" "$2"
}
e2e_check "healthCheckNodePort $HC_PORT: 200, kube-proxy's body with localEndpoints 2, headers" \
    wait_hc 200 2 10

# ---------------------------------------------------------------- events
echo "--- watch events ---"
# put_wait RESOURCE JSON: one write (one watch event), then wait for the next sync
put_wait() {
    local g
    g=$(e2e_agent_generation)
    kube_put "$1" "$2" || { echo "control write failed"; return 1; }
    e2e_wait_generation_gt "$g" 15
}
delete_wait() {
    local g
    g=$(e2e_agent_generation)
    kube_delete "$1" "$2" "$3" || { echo "control delete failed"; return 1; }
    e2e_wait_generation_gt "$g" 15
}

# E1: a new endpoint pod4 in both web slices
e2e_check "event: pod4 added to web's EndpointSlices (IPv4, IPv6), agent synced" eval \
    'put_wait endpointslices "$(slice web-abc12 web 4 "$WEB_PORTS" "2:L 3:R 4:L")" &&
     put_wait endpointslices "$(slice web-def34 web 6 "$WEB_PORTS" "2:L 3:R 4:L")"'
for vip in "$WEB4" "$WEB6"; do
    e2e_check "web $vip:80: new connections reach pod2,pod3 and the added pod4" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 90 --timeout 2 --deadline 60 \
        --expect pod2,pod3,pod4 --only --min-each 5
done

# E2: pod3 not ready (ready=false, serving=false)
e2e_check "event: pod3 marked not ready in web's slices, agent synced" eval \
    'put_wait endpointslices "$(slice web-abc12 web 4 "$WEB_PORTS" "2:L 3:R:nr 4:L")" &&
     put_wait endpointslices "$(slice web-def34 web 6 "$WEB_PORTS" "2:L 3:R:nr 4:L")"'
for vip in "$WEB4" "$WEB6"; do
    e2e_check "web $vip:80: 100 new connections never reach not-ready pod3" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 100 --timeout 2 --deadline 60 \
        --expect pod2,pod4 --only --forbid pod3 --min-each 10
done

# E3: Service deleted (then its slice): no frontend, packets pass untouched; the
# node has no route for the VIP, so nothing answers
e2e_check "event: Service gone deleted, agent synced" delete_wait services default gone
e2e_check "event: gone's EndpointSlice deleted" kube_delete endpointslices default gone-x1y2z
not_served() {
    local out
    out=$(e2e_client 1 http "$(e2e_url "$1" 80)" --count 3 --timeout 1 --deadline 10 2>&1)
    head -n 1 <<<"$out"
    grep '^{' <<<"$out" | "$E2E_PY" -c 'import json,sys; print("errors:", json.load(sys.stdin)["error_samples"][:2])'

    grep -q '^http .*: (none) errors=3 ' <<<"$out"
}
e2e_check "deleted Service's VIP $GONE4:80 is no longer translated (no backend answers)" not_served "$GONE4"

# E4: a new Service without endpoints: an empty IPv4 slice, no IPv6 slice
e2e_check "event: Service late created (no endpoints), agent synced" eval \
    'put_wait services "$(kube_gen service name=late ips="$LATE4,$LATE6" ports=http:80:8080:TCP,dns:53:5353:UDP)" &&
     put_wait endpointslices "$(slice late-v4aaa late 4 "$WEB_PORTS" "")"'
for vip in "$LATE4" "$LATE6"; do
    e2e_check "late $vip:80 without endpoints refuses TCP at once (< 1 s)" \
        e2e_client 1 refused "$vip" 80 --count 3 --timeout 2 --within 1.0
done

# udp_same_port HOST PORT SPORT: one datagram from local port SPORT; prints the
# answer or the error (exit 0 only when answered)
udp_same_port() {
    timeout -k 2 10 ip netns exec "$(e2e_pod_ns 1)" "$E2E_PY" -c '
import socket, sys
host, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", sport)); s.settimeout(1.0)
try:
    s.connect((host, port)); s.send(b"ping"); print("answered by", s.recv(2048).decode().strip())
except Exception as e:
    print("no answer from port", sport, type(e).__name__, e); sys.exit(1)
' "$@"
}
# like kube-proxy's REJECT for a service without endpoints: ICMP unreachable at once
udp_rejected() {
    local out
    out=$(udp_same_port "$@")
    echo "$out"
    [[ $out == *ConnectionRefusedError* ]]
}
e2e_check "late $LATE4:53 without endpoints: UDP datagram from port 41600 rejected (ICMP -> ECONNREFUSED)" \
    udp_rejected "$LATE4" 53 41600
e2e_check "late $LATE6:53 without endpoints: UDP datagram from port 42600 rejected (ICMP -> ECONNREFUSED)" \
    udp_rejected "$LATE6" 53 42600

# E5: endpoints appear: UDP must be served at once (first datagram after the sync,
# also from the source port whose earlier datagram found no endpoint)
e2e_check "event: late gets endpoint pod5 (IPv4 slice), agent synced" \
    put_wait endpointslices "$(slice late-v4aaa late 4 "$WEB_PORTS" "5:L")"
e2e_check "late $LATE4:53 UDP served at once, from the same source port as the unanswered datagram" \
    udp_same_port "$LATE4" 53 41600
e2e_check "late $LATE4:53: 20 UDP datagrams right after, all answered by pod5" \
    e2e_client 1 udp "$LATE4" 53 --count 20 --timeout 1 --deadline 20 --expect pod5 --only --min-each 20
e2e_check "late $LATE4:80: TCP now answered by pod5" \
    e2e_client 1 http "$(e2e_url "$LATE4" 80)" --count 20 --timeout 2 --deadline 20 --expect pod5 --only --min-each 20
e2e_check "event: late gets an IPv6 slice with pod5, agent synced" \
    put_wait endpointslices "$(slice late-v6bbb late 6 "$WEB_PORTS" "5:L")"
e2e_check "late $LATE6:53 UDP served at once, from the same source port as the unanswered datagram" \
    udp_same_port "$LATE6" 53 42600
e2e_check "late $LATE6:80: TCP now answered by pod5" \
    e2e_client 1 http "$(e2e_url "$LATE6" 80)" --count 20 --timeout 2 --deadline 20 --expect pod5 --only --min-each 20

# E6: healthCheckNodePort follows the local endpoints: none local -> 503
e2e_check "event: lb's local endpoints pod4, pod5 become not ready (pod3 on the other node stays), agent synced" \
    put_wait endpointslices "$(slice lb-q9w8e lb 4 http:8080:TCP "3:R 4:L:nr 5:L:term")"
e2e_check "healthCheckNodePort $HC_PORT: 503, localEndpoints 0, headers" wait_hc 503 0 10
e2e_check "lb clusterIP $LB4:80 -> pod3 only now" \
    e2e_client 1 http "$(e2e_url "$LB4" 80)" --count 20 --timeout 2 --deadline 30 --expect pod3 --only --min-each 20

# ---------------------------------------------------------------- faults
echo "--- watch faults ---"
e2e_check "fault error_410_on_watches: every resource relisted, no map churn, next change programmed" \
    kube_fault_no_churn 410 '{"error_410_on_watches":true}' list \
    "$(slice late-v4aaa late 4 "$WEB_PORTS" "5:L 4:L")"
e2e_check "late $LATE4:80 -> pod4,pod5 after the relist" \
    e2e_client 1 http "$(e2e_url "$LATE4" 80)" --count 40 --timeout 2 --deadline 30 --expect pod4,pod5 --only --min-each 4
e2e_check "fault drop_watches: every resource watched again (no relist), no map churn, next change programmed" \
    kube_fault_no_churn drop '{"drop_watches":true}' watch \
    "$(slice late-v4aaa late 4 "$WEB_PORTS" "5:L")"
e2e_check "late $LATE4:80 -> pod5 only after the re-watch" \
    e2e_client 1 http "$(e2e_url "$LATE4" 80)" --count 20 --timeout 2 --deadline 30 --expect pod5 --only --min-each 20

# token rotation: the server accepts only a new token from now on and the agent's
# tokenFile holds it; the next relist gets 401 once, the agent re-reads the file
# (at the top level: KUBE_TOKEN must change in this shell, not in a check's subshell)
OLD_TOKEN=$KUBE_TOKEN
ROTATE_N0=$(kube_requests_count)
KUBE_TOKEN="e2e-rotated-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s,sluice-agent,uid-sluice,system:node-proxier\n' "$KUBE_TOKEN" >"$KUBE_DIR/token.csv.tmp" &&
    mv -f "$KUBE_DIR/token.csv.tmp" "$KUBE_DIR/token.csv"
printf '%s\n' "$KUBE_TOKEN" >"$KUBE_DIR/token.tmp" && mv -f "$KUBE_DIR/token.tmp" "$KUBE_DIR/token"
e2e_log "token rotated: the server accepts only the new one, the agent's tokenFile holds it"
check_token_rotation() {
    local n0=$ROTATE_N0 reqs rc=0
    kube_fault_no_churn rotate '{"error_410_on_watches":true}' list \
        "$(slice late-v4aaa late 4 "$WEB_PORTS" "5:L 2:L")" || rc=1
    reqs=$(kube_requests_since "$n0")
    echo "requests after the rotation: $(grep -c ' 1 ' <<<"$reqs") with the new token, $(grep -c '^401 ' <<<"$reqs") answered 401"
    grep -q '^200 list services 1 ' <<<"$reqs" || { echo "no list with the new token"; rc=1; }
    [[ $OLD_TOKEN != "$KUBE_TOKEN" ]] || rc=1
    return "$rc"
}
e2e_check "token rotation: the agent re-reads its tokenFile after a 401, relists, no map churn" \
    check_token_rotation
e2e_check "late $LATE4:80 -> pod2,pod5 after the rotation" \
    e2e_client 1 http "$(e2e_url "$LATE4" 80)" --count 40 --timeout 2 --deadline 30 --expect pod2,pod5 --only --min-each 4

# ---------------------------------------------------------------- kill -9
echo "--- kill -9 of the agent during new connections and long-lived streams ---"
KEPT=(2 4) # web's ready backends now

persist_start() { # persist_start TAG VIP
    e2e_client_bg "persist-$1" 1 persist "$(e2e_url "$2" 80)" --conns 8 --interval 0.1 --timeout 2 \
        --ready-file "$E2E_RUN/persist-$1.ready" --stop-file "$E2E_RUN/persist-$1.stop" \
        --extra-rounds 10 --max-duration 100
    PERSIST_PID[$1]=$E2E_BG_PID
}
# Long-lived streams: a line every 50 ms each; a gap over 1 s or a lost line breaks one.
flows_start() { # flows_start TAG VIP
    E2E_CLIENT_TIMEOUT=130 e2e_client_bg "flows-$1" 1 streams "$(e2e_url "$2" 80)" --conns 4 \
        --interval-ms 50 --max-gap 1 --ready-file "$E2E_RUN/flows-$1.ready" \
        --stop-file "$E2E_RUN/stream.stop" --max-duration 110
    FLOWS_PID[$1]=$E2E_BG_PID
}
declare -A PERSIST_PID STREAM_PID FLOWS_PID
persist_start 4 "$WEB4"
persist_start 6 "$WEB6"
flows_start 4 "$WEB4"
flows_start 6 "$WEB6"
ready=0
for fam in 4 6; do
    if e2e_wait_file_or_exit "$E2E_RUN/persist-$fam.ready" "${PERSIST_PID[$fam]}" 15; then
        echo "    IPv$fam persistent connections (conn -> backend): $(cat "$E2E_RUN/persist-$fam.ready")"
    else
        grep -v '^{' "$E2E_LOGS/persist-$fam.log" | sed 's/^/    /'
        ready=1
    fi
    if e2e_wait_file_or_exit "$E2E_RUN/flows-$fam.ready" "${FLOWS_PID[$fam]}" 15; then
        echo "    IPv$fam long-lived streams (stream -> backend): $(cat "$E2E_RUN/flows-$fam.ready")"
    else
        grep -v '^{' "$E2E_LOGS/flows-$fam.log" | sed 's/^/    /'
        ready=1
    fi
done
e2e_result "kill -9: 2 x 8 persistent connections and 2 x 4 long-lived streams to web open" "$ready"

# new connections back to back from pod1, one stream per family, until the stop file
for fam in 4 6; do
    if [[ $fam == 4 ]]; then vip=$WEB4; else vip=$WEB6; fi
    kube_stream_bg "stream$fam" 1 "$(e2e_url "$vip" 80)" "$(e2e_pod_names "${KEPT[@]}")" "$E2E_RUN/stream.stop"
    STREAM_PID[$fam]=$E2E_BG_PID
done
e2e_check "kill -9: both new-connection streams running (> 100 connections each)" \
    eval 'kube_wait_stream stream4 100 30 && kube_wait_stream stream6 100 30'

frontends_before=$(kube_field "$(grep 'synced generation=' "$E2E_AGENT_LOG" | tail -n 1)" frontends)
prog_before=$(e2e_tc_ingress_prog_id veth-p1)
kill_agent() {
    local pid=$E2E_AGENT_PID
    kill -KILL "$pid" 2>/dev/null
    if ! e2e_wait_pid_exit "$pid" 10; then
        echo "agent $pid still alive 10 s after SIGKILL"
        return 1
    fi
    wait "$pid" 2>/dev/null
    echo "agent $pid killed, exit status $?"
    e2e_forget_pid "$pid"
    E2E_AGENT_PID=""
}
more_conns() { # more_conns N: both streams make N more connections (30 s)
    local s4 s6
    s4=$(kube_stream_count stream4) s6=$(kube_stream_count stream6)
    kube_wait_stream stream4 $((s4 + $1)) 30 && kube_wait_stream stream6 $((s6 + $1)) 30
}
kill_agent
e2e_result "kill -9: agent killed with SIGKILL" $?
e2e_log "agent killed; streams at $(kube_stream_count stream4) (IPv4) and $(kube_stream_count stream6) (IPv6) connections"
e2e_check "kill -9: the datapath serves the streams while no agent runs (100 more connections each)" \
    more_conns 100

# A crash while starting: the restarted agent is killed again as soon as it has loaded the
# datapath (pins reused, new programs pinned, nothing attached or written yet), then started
# once more. Neither may disturb the datapath the first agent left running.
e2e_restart_agent agent-crashloop
e2e_check "kill -9 during start-up: the restarted agent loaded the datapath" \
    e2e_wait_log "$E2E_AGENT_LOG" 'datapath loaded' 30 "$E2E_AGENT_PID"
kill_agent
e2e_result "kill -9 during start-up: killed with SIGKILL before its first sync" $?
e2e_check "kill -9 during start-up: the streams go on (100 more connections each)" more_conns 100

e2e_restart_agent agent-restart
e2e_check "kill -9: new agent synced generation=1 (within 30 s)" e2e_wait_generation_gt 0 30
e2e_check "kill -9: new agent re-attached lb_pod_ingress to veth-p1..veth-p$NPODS" wait_attached
e2e_check "kill -9: streams go on after the restart (100 more connections each)" more_conns 100
touch "$E2E_RUN/stream.stop" "$E2E_RUN/persist-4.stop" "$E2E_RUN/persist-6.stop"

check_first_sync() { # check_first_sync WANT(zero|delta)
    local line ops fe
    line=$(grep -m 1 'synced generation=1 ' "$E2E_AGENT_LOG") || { echo "no generation=1 line"; return 1; }
    echo "${line#*synced }"
    ops=$(kube_field "$line" ops) fe=$(kube_field "$line" frontends)
    [[ $fe == "$frontends_before" ]] || { echo "frontends=$fe, before the kill $frontends_before"; return 1; }
    if [[ $1 == zero ]]; then
        [[ $ops == 0 ]] || { echo "ops=$ops: the first sync after the restart wrote to the maps"; return 1; }
    else
        ((ops > 0 && ops < FIRST_OPS)) ||
            { echo "ops=$ops: want the delta only (0 < ops < $FIRST_OPS, the first agent's full programming)"; return 1; }
    fi
}
e2e_check "kill -9: first sync after the restart has ops=0 and frontends=$frontends_before as before" \
    check_first_sync zero
check_restored() {
    local line
    line=$(grep -m 1 -o 'restored [0-9]* frontends and [0-9]* backends' "$E2E_AGENT_LOG") ||
        { echo "no 'restored N frontends' line"; return 1; }
    echo "$line (frontends before the kill: $frontends_before)"
    [[ $(awk '{print $2}' <<<"$line") == "$frontends_before" ]]
}
e2e_check "kill -9: agent restored as many frontends from the pins as there were" check_restored
echo "    info: lb_pod_ingress on veth-p1: prog id ${prog_before:-none} before the kill, $(e2e_tc_ingress_prog_id veth-p1) after"

# reap PID: wait for a background client (20 s), its exit status (124: killed)
reap() {
    local pid=$1 rc
    if e2e_wait_pid_exit "$pid" 20; then wait "$pid"; rc=$?; else e2e_kill_pid "$pid"; rc=124; fi
    e2e_forget_pid "$pid"
    return "$rc"
}
for fam in 4 6; do
    reap "${STREAM_PID[$fam]}"
    src=$?
    e2e_check "kill -9: IPv$fam stream of new connections had zero failures (before, during, after two kills)" \
        eval "grep -v '^{' '$E2E_LOGS/stream$fam.log'; exit $src"
done
for fam in 4 6; do
    reap "${PERSIST_PID[$fam]}"
    prc=$?
    grep -v '^{' "$E2E_LOGS/persist-$fam.log" | sed 's/^/    /'
    e2e_result "kill -9: IPv$fam 8 persistent connections survived (zero failures)" "$prc"
    reap "${FLOWS_PID[$fam]}"
    prc=$?
    grep -v '^{' "$E2E_LOGS/flows-$fam.log" | sed 's/^/    /'
    e2e_result "kill -9: IPv$fam 4 long-lived streams unbroken (no lost line, no gap over 1 s)" "$prc"
done
# The denominators, in one line per kind (docs/reliability.md quotes them).
kill_figures() {
    "$E2E_PY" "$E2E_DIR/load_figures.py" "$E2E_LOGS" "kill -9 x2 (one during start-up)" \
        --conns stream4 stream6 --persist persist-4 persist-6 --streams flows-4 flows-6
}
e2e_check "kill -9: totals" kill_figures
e2e_check "kill -9: /healthz 200 again from the new agent" check_healthz
e2e_check "kill -9: healthCheckNodePort served again by the new agent (503, localEndpoints 0)" wait_hc 503 0 10

echo "--- kill -9, endpoint change while the agent is dead ---"
kill_agent
e2e_result "dead-change: agent killed with SIGKILL" $?
frontends_before=$(kube_field "$(grep 'synced generation=' "$E2E_AGENT_LOG" | tail -n 1)" frontends)
e2e_check "dead-change: pod3 ready again in web's slices while no agent runs" eval \
    'kube_put endpointslices "$(slice web-abc12 web 4 "$WEB_PORTS" "2:L 3:R 4:L")" &&
     kube_put endpointslices "$(slice web-def34 web 6 "$WEB_PORTS" "2:L 3:R 4:L")"'
e2e_check "dead-change: the datapath still serves the old set pod2,pod4 meanwhile" \
    e2e_client 1 http "$(e2e_url "$WEB4" 80)" --count 20 --timeout 2 --deadline 20 --expect pod2,pod4 --only
e2e_restart_agent agent-restart2
e2e_check "dead-change: restarted agent synced generation=1" e2e_wait_generation_gt 0 30
# The agent programs only after complete lists, so its first sync includes the change
e2e_check "dead-change: the first sync writes the delta (0 < ops < first full programming), same frontends" \
    check_first_sync delta
for vip in "$WEB4" "$WEB6"; do
    e2e_check "dead-change: web $vip:80 reaches pod2,pod3,pod4 (pod3 back)" \
        e2e_client 1 http "$(e2e_url "$vip" 80)" --count 90 --timeout 2 --deadline 60 \
        --expect pod2,pod3,pod4 --only --min-each 5
done
e2e_check "dead-change: a further event is programmed by the new agent (pod3 removed again)" eval \
    'put_wait endpointslices "$(slice web-abc12 web 4 "$WEB_PORTS" "2:L 4:L")"'
e2e_check "dead-change: web $WEB4:80 never reaches pod3 after that" \
    e2e_client 1 http "$(e2e_url "$WEB4" 80)" --count 60 --timeout 2 --deadline 60 \
    --expect pod2,pod4 --only --forbid pod3

# ---------------------------------------------------------------- end
e2e_stop_agent 10
rc=$?
e2e_result "agent stops on SIGTERM within 10 s (status 0 or 143)" "$(((rc == 0 || rc == 143) ? 0 : 1))"
kube_stop_apiserver
e2e_check "fake API server stopped, control socket removed" eval '[[ ! -e $KUBE_CTL_SOCK ]]'

e2e_summary
if ((E2E_FAIL > 0)); then
    e2e_agent_tail 80
    echo "RESULT: FAIL ($LAYOUT)"
    exit 1
fi
echo "RESULT: PASS ($LAYOUT)"
exit 0
