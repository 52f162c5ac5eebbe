# shellcheck shell=bash
# Helpers for test_kube.sh and test_faults.sh: the agent in Kubernetes API mode against
# tests/kube/fake_apiserver.py (TLS + bearer token, in the node netns on
# 127.0.0.1), realistic object JSON, the fake server's control socket, and
# the agent's HTTP endpoints. Source after lib.sh.
#
#   kube_preflight                  root, tools, binaries (77 = skip)
#   kube_setup                      PKI, token, kubeconfig under $E2E_WORK/kube
#   kube_start_apiserver PRELOAD    fake API server (pid in E2E_PIDS), waits for "ready"
#   kube_gen KIND key=value...      one object as JSON (service|slice|node|pod)
#   kube_put RESOURCE JSON          create/replace through the control socket
#   kube_delete RESOURCE NS NAME
#   kube_ctl METHOD PATH [BODY]     raw control request (prints the reply body)
#   kube_fetch URL [CURLARGS]       curl inside the node netns (status; headers, body in files)
#   kube_requests_since N           the fake server's API request log after the first N
#   kube_stop_apiserver             SIGTERM by pid, sockets removed
#   kube_stream_bg NAME POD URL EXPECT STOPFILE   new connections back to back until STOPFILE
#   kube_stream_count NAME / kube_wait_stream NAME N TIMEOUT   its progress
#   kube_fault_no_churn NAME FAULT KIND PROBE   a watch fault causes no map write; probe programmed

KUBE_DIR=""
KUBE_CTL_SOCK=""
KUBE_API_PID=""
KUBE_API_LOG=""
KUBE_API_PORT=6443
KUBE_TOKEN="e2e-$(od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')"
KUBE_KUBECONFIG=""
KUBE_FAKE="$E2E_ROOT/tests/kube/fake_apiserver.py"
KUBE_REMOTE_NODE="e2e-node-b"

# kube_preflight: what the Kubernetes-mode tests need (lib.sh's preflight, curl, openssl, the
# binaries): 0, or 77 (skip) / 1 (not built) with the reason printed
kube_preflight() {
    e2e_preflight || return $?
    local t
    for t in curl openssl; do
        command -v "$t" >/dev/null 2>&1 || {
            echo "SKIP: '$t' not found"
            return 77
        }
    done
    # shellcheck disable=SC2119
    e2e_require_binaries
}

# kube_setup: throwaway CA + server certificate (SAN IP:127.0.0.1, DNS:localhost),
# a token file and a kubeconfig (certificate-authority + tokenFile).
kube_setup() {
    KUBE_DIR=$E2E_WORK/kube
    KUBE_CTL_SOCK=$E2E_RUN/apiserver-control.sock
    KUBE_API_LOG=$E2E_LOGS/apiserver.log
    mkdir -p "$KUBE_DIR" || return 1
    (
        cd "$KUBE_DIR" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.crt -days 2 -subj "/CN=sluice-e2e-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout server.key -out server.csr -subj "/CN=kube-apiserver" &&
            printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
                "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >server.ext &&
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out server.crt -days 2 -extfile server.ext
    ) >"$E2E_LOGS/pki.log" 2>&1 || {
        e2e_err "openssl failed (log $E2E_LOGS/pki.log)"
        tail -n 20 "$E2E_LOGS/pki.log" >&2
        return 1
    }
    printf '%s,sluice-agent,uid-sluice,system:node-proxier\n' "$KUBE_TOKEN" >"$KUBE_DIR/token.csv"
    printf '%s\n' "$KUBE_TOKEN" >"$KUBE_DIR/token"
    chmod 600 "$KUBE_DIR/token" "$KUBE_DIR/token.csv" "$KUBE_DIR"/*.key
    KUBE_KUBECONFIG=$KUBE_DIR/kubeconfig
    cat >"$KUBE_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$KUBE_API_PORT
    certificate-authority: $KUBE_DIR/ca.crt
users:
- name: sluice-agent
  user:
    tokenFile: $KUBE_DIR/token
contexts:
- name: e2e
  context:
    cluster: e2e
    user: sluice-agent
current-context: e2e
EOF
}

# kube_start_apiserver PRELOAD_JSON: fake API server in the node netns, HTTPS on
# 127.0.0.1:$KUBE_API_PORT, bearer tokens from token.csv, control socket
# $KUBE_CTL_SOCK; waits (bounded) for its "ready" line.
kube_start_apiserver() {
    e2e_bg apiserver ip netns exec "$E2E_NODE" "$E2E_PY" "$KUBE_FAKE" \
        --listen "127.0.0.1:$KUBE_API_PORT" --tls-cert "$KUBE_DIR/server.crt" \
        --tls-key "$KUBE_DIR/server.key" --token-file "$KUBE_DIR/token.csv" \
        --control "$KUBE_CTL_SOCK" --preload "$1" --bookmark-interval-ms 2000
    KUBE_API_PID=$E2E_BG_PID
    if ! e2e_wait_log "$KUBE_API_LOG" '^ready$' 30 "$KUBE_API_PID" >/dev/null; then
        e2e_err "fake API server not ready within 30 s"
        tail -n 20 "$KUBE_API_LOG" >&2
        return 1
    fi
    e2e_log "fake API server pid $KUBE_API_PID: https://127.0.0.1:$KUBE_API_PORT in $E2E_NODE, control $KUBE_CTL_SOCK"
}

# kube_stop_apiserver: SIGTERM (it removes its sockets), SIGKILL after 3 s; the
# socket files are removed here too in case it had to be killed.
kube_stop_apiserver() {
    if [[ -n $KUBE_API_PID ]]; then
        e2e_kill_pid "$KUBE_API_PID"
        e2e_forget_pid "$KUBE_API_PID"
        KUBE_API_PID=""
    fi
    [[ -n $KUBE_CTL_SOCK ]] && rm -f "$KUBE_CTL_SOCK"
    return 0
}

# kube_ctl METHOD PATH [BODY]: one control request; prints the body, fails on
# a non-2xx status (the body is printed anyway).
kube_ctl() {
    local method=$1 path=$2 body=${3:-} out code
    out=$(curl -sS --max-time 30 --unix-socket "$KUBE_CTL_SOCK" -X "$method" \
        -H 'Content-Type: application/json' ${body:+--data-binary "$body"} \
        -w '\n%{http_code}' "http://control$path" 2>&1) || {
        echo "control $method $path failed: $out"
        return 1
    }
    code=${out##*$'\n'}
    printf '%s\n' "${out%$'\n'*}"
    [[ $code == 2* ]]
}

kube_put() { kube_ctl POST /objects "{\"resource\":\"$1\",\"object\":$2}" >/dev/null; }

kube_delete() {
    kube_ctl POST /delete "{\"resource\":\"$1\",\"namespace\":\"$2\",\"name\":\"$3\"}" >/dev/null
}

kube_fault() { kube_ctl POST /faults "$1" >/dev/null; }

# kube_wait_watches TIMEOUT_S: until a watch is open on each of the four resources
kube_wait_watches() {
    kube_ctl POST /wait "{\"open_watches\":{\"services\":1,\"endpointslices\":1,\"nodes\":1,\"pods\":1},\"timeout_ms\":$(($1 * 1000))}"
}

# kube_requests_count: number of API requests logged so far
kube_requests_count() {
    kube_ctl GET /requests | "$E2E_PY" -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

# kube_ep_list FAM "I:L|R[:ready|nr|term] ...": endpoint specs for kube_gen slice
# (addr/pod/node/state, comma separated); L = this node, R = another node
kube_ep_list() {
    local fam=$1 out="" e i loc st addr node
    for e in $2; do
        IFS=: read -r i loc st <<<"$e"
        if [[ $fam == 4 ]]; then addr=$(e2e_pod_ip4 "$i"); else addr=$(e2e_pod_ip6 "$i"); fi
        if [[ $loc == L ]]; then node=$E2E_NODE_NAME; else node=$KUBE_REMOTE_NODE; fi
        out+="${out:+,}$addr/pod$i/$node/${st:-ready}"
    done
    echo "$out"
}

# kube_gen KIND key=value...: one realistic object (as the API server would hold it
# after the controllers ran), JSON on stdout.
#   service name= ips=V4[,V6] ports=name:port:target:PROTO[:nodePort],... [type=LoadBalancer
#           etp=Local hc=PORT lbip=IP]
#   slice   name= svc= fam=4|6 ports=name:port:PROTO,... eps=addr/pod/node/state,... (empty: null)
#   node    name= ips=A,B podcidrs=C,D
#   pod     name= node= ips=A,B
kube_gen() {
    "$E2E_PY" "$E2E_DIR/kube_gen.py" "$@"
}

# kube_gen_lines: one object per input line ("KIND key=value ..."), one JSON per output line
# (one Python process for all: a preload of many objects)
kube_gen_lines() {
    "$E2E_PY" "$E2E_DIR/kube_gen.py" --lines
}

# kube_sync_lines_since N: the agent log's sync lines after line N of $E2E_AGENT_LOG
kube_sync_lines_since() {
    tail -n +"$(($1 + 1))" "$E2E_AGENT_LOG" | grep 'synced generation='
}

# kube_field LINE KEY: value of KEY=... in a sync line
kube_field() { grep -o " $2=[0-9]*" <<<" $1" | head -n 1 | cut -d= -f2; }

kube_log_lines() { wc -l <"$E2E_AGENT_LOG" 2>/dev/null || echo 0; }

# kube_fetch URL [CURL_ARGS...]: HTTP GET from inside the node netns; prints the
# status code, leaves the headers in $E2E_RUN/fetch.headers and the body in
# $E2E_RUN/fetch.body
kube_fetch() {
    local url=$1
    shift
    rm -f "$E2E_RUN/fetch.headers" "$E2E_RUN/fetch.body"
    timeout -k 2 15 ip netns exec "$E2E_NODE" curl -sS --max-time 5 -D "$E2E_RUN/fetch.headers" \
        -o "$E2E_RUN/fetch.body" -w '%{http_code}' "$@" "$url" 2>&1
}

# kube_header NAME: value of header NAME in the last kube_fetch (CR stripped)
kube_header() {
    grep -i "^$1:" "$E2E_RUN/fetch.headers" 2>/dev/null | head -n 1 | cut -d: -f2- |
        sed -e 's/^ *//' -e 's/\r$//'
}

# kube_requests_since N: the API requests logged after the first N, one per line:
# "STATUS KIND RESOURCE AUTHOK QUERY" (KIND list|watch|get, AUTHOK 1 when the
# bearer token is ours)
kube_requests_since() {
    kube_ctl GET /requests | "$E2E_PY" -c '
import json, sys
n, token = int(sys.argv[1]), sys.argv[2]
for r in json.load(sys.stdin)[n:]:
    p, q = r["path"], r.get("query") or {}
    res = p.rstrip("/").split("/")[-1]
    if res not in ("services", "endpointslices", "nodes", "pods", "endpoints"):
        res = p
    kind = "watch" if q.get("watch") in ("1", "true") or "/watch/" in p else "list"
    auth = 1 if r.get("authorization") == "Bearer " + token else 0
    qs = "&".join(f"{k}={v}" for k, v in sorted(q.items())) or "-"
    print(r["status"], kind, res, auth, qs)
' "$1" "$KUBE_TOKEN"
}

# kube_stream_bg LOGNAME POD URL EXPECT STOPFILE [ARGS...]: background client in pod POD
# opening new TCP connections (one GET each, Connection: close) back to back until STOPFILE
# appears (at most 150 s, 100000 connections; podclient.py conns). Every 0.1 s it writes
# "<connections> <errors>" to $E2E_RUN/LOGNAME.count; at the end a summary, error samples (with
# time stamps) and OK / FAIL (any error, or a backend outside EXPECT) in logs/LOGNAME.log.
# ARGS go to podclient (e.g. --forbid-file F). E2E_BG_PID = its pid.
kube_stream_bg() {
    local name=$1 pod=$2 url=$3 expect=$4 stop=$5
    shift 5
    rm -f "$E2E_RUN/$name.count"
    E2E_CLIENT_TIMEOUT=${E2E_CLIENT_TIMEOUT:-170} e2e_client_bg "$name" "$pod" conns "$url" --expect "$expect" \
        --stop-file "$stop" --count-file "$E2E_RUN/$name.count" --max-duration 150 "$@"
}

# kube_stream_count LOGNAME: connections the stream has completed so far
kube_stream_count() {
    local n=0 e
    [[ -r $E2E_RUN/$1.count ]] && read -r n e <"$E2E_RUN/$1.count"
    echo "${n:-0}"
}

# kube_wait_stream LOGNAME N TIMEOUT_S: until the stream completed more than N connections
kube_wait_stream() {
    local deadline=$((SECONDS + $3))
    while (($(kube_stream_count "$1") <= $2)); do
        ((SECONDS >= deadline)) && { echo "stream $1: not beyond $2 connections within $3s"; return 1; }
        sleep 0.05
    done
    echo "stream $1: $(kube_stream_count "$1") connections"
}

# kube_wait_requests N0 KIND TIMEOUT: until every resource has a KIND request after the first N0
kube_wait_requests() {
    local n0=$1 kind=$2 deadline=$((SECONDS + $3)) reqs r missing
    while :; do
        reqs=$(kube_requests_since "$n0")
        missing=""
        for r in services endpointslices nodes pods; do
            grep -q "^200 $kind $r 1 " <<<"$reqs" || missing+=" $r"
        done
        if [[ -z $missing ]]; then
            echo "after the fault: $(grep -c ' list ' <<<"$reqs") lists, $(grep -c ' watch ' <<<"$reqs") watches"
            return 0
        fi
        ((SECONDS >= deadline)) && { echo "no $kind of$missing within $3s"; return 1; }
        sleep 0.1
    done
}

# kube_fault_no_churn NAME FAULT_JSON KIND PROBE_SLICE_JSON [WAIT_S]
#   inject FAULT; wait (WAIT_S, default 20 s) until every resource has a new KIND request
#   (list = relist, watch = re-watch); then make one real change (the probe). Every sync line
#   between the fault and the probe must say ops=0 (with the same frontends
#   count); the probe's sync (the first with ops>0 after it) must come.
kube_fault_no_churn() {
    local name=$1 fault=$2 kind=$3 probe=$4 wait=${5:-20} n0 l0 l1 fe0 line lines rc=0
    n0=$(kube_requests_count) || return 1
    l0=$(kube_log_lines)
    fe0=$(kube_field "$(grep 'synced generation=' "$E2E_AGENT_LOG" | tail -n 1)" frontends)
    kube_fault "$fault" || { echo "fault injection failed"; return 1; }
    kube_wait_requests "$n0" "$kind" "$wait" || rc=1
    [[ $kind == list ]] && { kube_wait_requests "$n0" watch "$wait" || rc=1; }
    kube_wait_watches "$wait" >/dev/null || { echo "watches not open again within $wait s"; rc=1; }
    l1=$(kube_log_lines)
    kube_put endpointslices "$probe" || { echo "probe write failed"; return 1; }
    # the sync lines after the fault, "RELATIVE_LINE_NUMBER:line"; wait for the first
    # one with ops>0, which must be the probe's (written after line l1)
    local deadline=$((SECONDS + 15)) first="" nbefore=0
    while :; do
        lines=$(tail -n +"$((l0 + 1))" "$E2E_AGENT_LOG" | grep -n 'synced generation=')
        first=$(grep -v -m 1 ' ops=0 ' <<<"$lines")
        [[ -n $first ]] && break
        ((SECONDS >= deadline)) && { echo "no sync with ops>0 within 15 s of the probe"; rc=1; break; }
        sleep 0.1
    done
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        [[ $line == "$first" ]] && break
        nbefore=$((nbefore + 1))
        echo "  ${line#*synced }"
        [[ $(kube_field "$line" ops) == 0 ]] || { echo "  ^ map churn without a change"; rc=1; }
        [[ $(kube_field "$line" frontends) == "$fe0" ]] || { echo "  ^ frontends changed (was $fe0)"; rc=1; }
    done <<<"$lines"
    echo "sync lines after the fault before the first with ops>0: $nbefore"
    if [[ -n $first ]]; then
        echo "first sync with ops>0: ${first#*synced }"
        ((${first%%:*} > l1 - l0)) || { echo "  ^ written before the probe: map churn from the fault"; rc=1; }
    fi
    if [[ $kind == watch ]]; then
        # a broken watch is resumed from the last resourceVersion, as client-go: no relist
        local nl
        nl=$(kube_requests_since "$n0" | grep -c '^[0-9]* list ')
        echo "list requests after the fault: $nl (want 0: watch again from the last resourceVersion)"
        ((nl == 0)) || rc=1
    fi
    grep -i -E 'relist|410|expired|watch' <(tail -n +"$((l0 + 1))" "$E2E_AGENT_LOG") | head -n 4 | sed 's/^/  agent: /'
    return "$rc"
}
