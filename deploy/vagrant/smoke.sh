#!/usr/bin/env bash
# Smoke test of the Vagrant cluster, on the control plane (as root): every node Ready with a
# ready sluice-agent, then one LoadBalancer Service (so it also has a ClusterIP and a NodePort)
# over two agnhost pods, reached
#   - by ClusterIP and by name from a pod (east-west, and cluster DNS through sluice),
#   - by NodePort on a worker from this node's own stack (north-south at the worker's eth1),
#   - by its LoadBalancer IP, routed to a worker (nothing announces it: no LB controller here).
# host-smoke.sh adds the NodePorts from the Vagrant host. Every wait has a deadline.
# Usage: smoke.sh LB_IP WORKER_IP [NODES]   e.g. smoke.sh 192.168.56.240 192.168.56.11 3
set -euo pipefail

lb_ip=$1
worker_ip=$2
nodes=${3:-3}
node_port=30080
export KUBECONFIG=/etc/kubernetes/admin.conf

passed=0
failed=0
log() { printf '[smoke] %s\n' "$*"; }
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1))
    log "PASS $what: $(echo "$out" | tail -n1)"
  else
    failed=$((failed + 1))
    log "FAIL $what: $(echo "$out" | tail -n3 | tr '\n' ' ')"
  fi
}

# wait_for SECONDS COMMAND...: retries every 2 s until COMMAND succeeds or time is up.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
}

ready_nodes() {
  [ "$(kubectl get nodes --no-headers | awk '$2 == "Ready"' | wc -l)" -ge "$nodes" ]
}
check "$nodes nodes Ready" wait_for 600 ready_nodes
check "sluice-agent ready on every node" \
  kubectl -n kube-system rollout status ds/sluice-agent --timeout=5m
check "no kube-proxy" bash -c '! kubectl -n kube-system get ds kube-proxy 2>/dev/null'

kubectl apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
  selector:
    matchLabels: {app: echo}
  template:
    metadata:
      labels: {app: echo}
    spec:
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels: {app: echo}
      containers:
        - name: agnhost
          image: registry.k8s.io/e2e-test-images/agnhost:2.52
          args: ["netexec", "--http-port=8080"]
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports:
    - port: 80
      targetPort: 8080
      nodePort: $node_port
---
apiVersion: v1
kind: Pod
metadata:
  name: smoke-client
spec:
  containers:
    - name: client
      image: registry.k8s.io/e2e-test-images/agnhost:2.52
      args: ["pause"]
EOF
check "echo pods ready" kubectl rollout status deploy/echo --timeout=5m
check "client pod ready" kubectl wait --for=condition=Ready pod/smoke-client --timeout=5m
# No cloud controller assigns LoadBalancer IPs here: the test writes the status as one would.
kubectl patch svc echo --subresource=status --type=merge \
  -p "{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"$lb_ip\"}]}}}" >/dev/null

cluster_ip=$(kubectl get svc echo -o jsonpath='{.spec.clusterIP}')
backends=$(kubectl get pods -l app=echo -o jsonpath='{.items[*].metadata.name}')
# get URL: the backend pod's name from agnhost's /hostname, which must be one of the echo pods
from_pod() { kubectl exec smoke-client -- curl -fsS --max-time 5 "$1"; }
from_node() { curl -fsS --max-time 5 "$1"; }
is_backend() {
  local got
  got=$("$@") || return 1
  echo "$got"
  [[ " $backends " == *" $got "* ]]
}
check "ClusterIP $cluster_ip from a pod" wait_for 60 is_backend from_pod "http://$cluster_ip/hostname"
check "Service name (cluster DNS) from a pod" \
  wait_for 60 is_backend from_pod "http://echo.default.svc.cluster.local/hostname"
check "NodePort $worker_ip:$node_port from this node" \
  wait_for 60 is_backend from_node "http://$worker_ip:$node_port/hostname"
ip route replace "$lb_ip/32" via "$worker_ip"
check "LoadBalancer IP $lb_ip (routed to $worker_ip) from this node" \
  wait_for 60 is_backend from_node "http://$lb_ip/hostname"
ip route del "$lb_ip/32" via "$worker_ip" || true

log "sluicectl service list on $(hostname):"
kubectl -n kube-system exec "$(kubectl -n kube-system get pods -l app.kubernetes.io/name=sluice \
  --field-selector "spec.nodeName=$(hostname)" -o jsonpath='{.items[0].metadata.name}')" \
  -c agent -- sluicectl service list || true

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
