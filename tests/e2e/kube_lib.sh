# shellcheck shell=bash
# Helpers for test_kube.sh: the agent in Kubernetes API mode against
# tests/kube/fake_apiserver.py (TLS + bearer token, in the node netns on
# 127.0.0.1), realistic object JSON, the fake server's control socket, and
# the agent's HTTP endpoints. Source after lib.sh.
#
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

KUBE_DIR=""
KUBE_CTL_SOCK=""
KUBE_API_PID=""
KUBE_API_LOG=""
KUBE_API_PORT=6443
KUBE_TOKEN="e2e-$(od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')"
KUBE_KUBECONFIG=""
KUBE_FAKE="$E2E_ROOT/tests/kube/fake_apiserver.py"
KUBE_REMOTE_NODE="e2e-node-b"

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
    "$E2E_PY" - "$@" <<'EOF'
import json, sys, uuid
kind, args = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
ns = args.get("ns", "default")
ts = "2026-01-01T00:00:00Z"
def uid(s):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sluice-e2e/" + s))
def lst(s):
    return [x for x in (s or "").split(",") if x]
if kind == "service":
    name, ips = args["name"], lst(args["ips"])
    typ = args.get("type", "ClusterIP")
    ports = []
    for p in lst(args["ports"]):
        f = p.split(":")
        d = {"name": f[0], "protocol": f[3], "port": int(f[1]), "targetPort": int(f[2])}
        if len(f) > 4:
            d["nodePort"] = int(f[4])
        ports.append(d)
    spec = {"ports": ports, "selector": {"app": name}, "clusterIP": ips[0], "clusterIPs": ips,
            "type": typ, "sessionAffinity": "None",
            "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in ips],
            "ipFamilyPolicy": "RequireDualStack" if len(ips) > 1 else "SingleStack",
            "internalTrafficPolicy": "Cluster"}
    status = {"loadBalancer": {}}
    if typ in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = args.get("etp", "Cluster")
    if typ == "LoadBalancer":
        spec["allocateLoadBalancerNodePorts"] = True
        if "hc" in args:
            spec["healthCheckNodePort"] = int(args["hc"])
        if "lbip" in args:
            status = {"loadBalancer": {"ingress": [{"ip": args["lbip"], "ipMode": "VIP"}]}}
    obj = {"metadata": {"name": name, "namespace": ns, "uid": uid("svc/" + name),
                        "creationTimestamp": ts, "labels": {"app": name},
                        "annotations": {"e2e.sluice.dev/owner": "test_kube.sh"}},
           "spec": spec, "status": status}
elif kind == "slice":
    name, svc, fam = args["name"], args["svc"], args["fam"]
    eps = []
    for e in lst(args.get("eps")):
        addr, pod, node, st = e.split("/")
        cond = {"ready": {"ready": True, "serving": True, "terminating": False},
                "nr": {"ready": False, "serving": False, "terminating": False},
                "term": {"ready": False, "serving": True, "terminating": True}}[st]
        eps.append({"addresses": [addr], "conditions": cond, "nodeName": node,
                    "zone": "zone-a" if node == "e2e-node" else "zone-b",
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": pod,
                                  "uid": uid("pod/" + pod)}})
    ports = []
    for p in lst(args["ports"]):
        pn, port, proto = p.split(":")
        ports.append({"name": pn, "protocol": proto, "port": int(port)})
    obj = {"metadata": {"name": name, "generateName": svc + "-", "namespace": ns,
                        "creationTimestamp": ts,
                        "labels": {"app": svc, "kubernetes.io/service-name": svc,
                                   "endpointslice.kubernetes.io/managed-by":
                                       "endpointslice-controller.k8s.io"},
                        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": ts},
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc,
                                             "uid": uid("svc/" + svc), "controller": True,
                                             "blockOwnerDeletion": True}]},
           "addressType": "IPv6" if fam == "6" else "IPv4",
           "endpoints": eps or None, "ports": ports}
elif kind == "node":
    name, ips = args["name"], lst(args["ips"])
    obj = {"metadata": {"name": name, "uid": uid("node/" + name), "creationTimestamp": ts,
                        "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                   "kubernetes.io/arch": "amd64",
                                   "topology.kubernetes.io/zone": "zone-a"}},
           "spec": {"podCIDR": lst(args["podcidrs"])[0], "podCIDRs": lst(args["podcidrs"])},
           "status": {"addresses": [{"type": "InternalIP", "address": ip} for ip in ips]
                                   + [{"type": "Hostname", "address": name}],
                      "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                      "message": "kubelet is posting ready status",
                                      "lastHeartbeatTime": ts, "lastTransitionTime": ts}]}}
elif kind == "pod":
    name, ips = args["name"], lst(args["ips"])
    obj = {"metadata": {"name": name, "namespace": ns, "uid": uid("pod/" + name),
                        "creationTimestamp": ts, "labels": {"app": args.get("app", name)}},
           "spec": {"nodeName": args["node"], "restartPolicy": "Always",
                    "containers": [{"name": "server", "image": "sluice-e2e/podserver:1",
                                    "ports": [{"containerPort": 8080, "protocol": "TCP"},
                                              {"containerPort": 5353, "protocol": "UDP"}]}]},
           "status": {"phase": "Running", "hostIP": args.get("hostip", ""),
                      "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips],
                      "conditions": [{"type": "Ready", "status": "True"}]}}
else:
    sys.exit(f"kube_gen: unknown kind {kind}")
print(json.dumps(obj, separators=(",", ":")))
EOF
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

# kube_stream_bg LOGNAME POD URL EXPECT STOPFILE: background client in pod POD
# opening new TCP connections (one GET each, Connection: close) back to back
# until STOPFILE appears (at most 120 s, 100000 connections). Every 0.1 s it
# writes "<connections> <errors>" to $E2E_RUN/LOGNAME.count; at the end a
# summary, error samples (with time stamps) and OK / FAIL (any error, or a
# backend outside EXPECT) in logs/LOGNAME.log. E2E_BG_PID = its pid.
kube_stream_bg() {
    local name=$1 pod=$2 url=$3 expect=$4 stop=$5
    rm -f "$E2E_RUN/$name.count"
    e2e_bg "$name" timeout -k 5 150 ip netns exec "$(e2e_pod_ns "$pod")" "$E2E_PY" -c '
import http.client, os, sys, time, urllib.parse
url, expect, stop, countf = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3], sys.argv[4]
u = urllib.parse.urlsplit(url)
t0 = time.monotonic(); end = t0 + 120
n = errors = 0; backends = {}; samples = []; last = 0.0
def progress():
    with open(countf + ".tmp", "w") as f:
        f.write(f"{n} {errors}\n")
    os.replace(countf + ".tmp", countf)
while n < 100000 and time.monotonic() < end and not os.path.exists(stop):
    n += 1
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=2)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse(); b = r.read().decode(errors="replace").strip()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        backends[b] = backends.get(b, 0) + 1
    except Exception as e:
        errors += 1
        if len(samples) < 10:
            samples.append(f"t={time.monotonic() - t0:.3f}s #{n}: {type(e).__name__}: {e}")
    finally:
        c.close()
    if time.monotonic() - last >= 0.1:
        progress(); last = time.monotonic()
progress()
el = time.monotonic() - t0
print(f"stream {url}: {n} new connections in {el:.1f}s ({n / el:.0f}/s): "
      + " ".join(f"{k}={v}" for k, v in sorted(backends.items())) + f" errors={errors}")
for s in samples:
    print("  error " + s)
bad = sorted(set(backends) - expect)
if errors or bad or not os.path.exists(stop):
    print("FAIL" + (f" {errors} errors" if errors else "") + (f" unexpected backends {bad}" if bad else "")
          + ("" if os.path.exists(stop) else " (ended before the stop file)"))
    sys.exit(1)
print("OK")
' "$url" "$expect" "$stop" "$E2E_RUN/$name.count"
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
