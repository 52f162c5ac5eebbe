#!/usr/bin/env bash
# The control-plane node: kubeadm without the kube-proxy addon, sluice (built here from the
# synced checkout, deploy/vagrant overlay), then flannel. The workers join with the token.
# Usage (as root, from the Vagrantfile): control-plane.sh NODE_IP TOKEN POD_CIDR IMAGE_PORT
set -euo pipefail

node_ip=$1
token=$2
pod_cidr=$3
image_port=$4
flannel_version=v0.25.7

log() { printf '[control-plane] %s\n' "$*"; }
export KUBECONFIG=/etc/kubernetes/admin.conf

if [ ! -f /etc/kubernetes/admin.conf ]; then
  log "kubeadm init --skip-phases=addon/kube-proxy"
  kubeadm init --apiserver-advertise-address="$node_ip" --pod-network-cidr="$pod_cidr" \
    --token "$token" --token-ttl 2h --skip-phases=addon/kube-proxy
fi
install -d -o vagrant -g vagrant /home/vagrant/.kube
install -o vagrant -g vagrant -m 0600 /etc/kubernetes/admin.conf /home/vagrant/.kube/config

# The image, once for the whole cluster: built here, imported into containerd, and served to
# the workers on the private network for two hours (they import it while joining).
bash /vagrant/deploy/vagrant/image.sh build "$node_ip" "$image_port"

log "sluice (deploy/vagrant)"
kubectl apply -k /vagrant/deploy/vagrant
kubectl -n kube-system rollout status ds/sluice-agent --timeout=5m

# flannel reaches the API server in-cluster, i.e. through the `kubernetes` ClusterIP; a host
# process (flannel runs with hostNetwork) reaches ClusterIPs only with socket-LB, so it gets
# the API server's real address, as sluice does.
log "flannel $flannel_version"
curl -fsSL "https://github.com/flannel-io/flannel/releases/download/$flannel_version/kube-flannel.yml" \
  -o /root/kube-flannel.yml
# host-gw: routes to the other nodes' pods go out of eth1, one of sluice's devices, so a backend
# there is reached (and its answers come back) through sluice's north-south path. With VXLAN
# they would use flannel.1, which this setup does not give sluice.
sed -i 's/"Type": "vxlan"/"Type": "host-gw"/' /root/kube-flannel.yml
grep -q '"Type": "host-gw"' /root/kube-flannel.yml
kubectl apply -f /root/kube-flannel.yml
kubectl -n kube-flannel set env ds/kube-flannel-ds \
  KUBERNETES_SERVICE_HOST="$node_ip" KUBERNETES_SERVICE_PORT=6443
kubectl -n kube-flannel patch ds/kube-flannel-ds --type json -p \
  '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--iface=eth1"}]'
kubectl -n kube-flannel rollout status ds/kube-flannel-ds --timeout=5m
kubectl wait --for=condition=Ready "node/$(hostname)" --timeout=5m
log "ready; the workers join next"
