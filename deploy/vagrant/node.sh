#!/usr/bin/env bash
# Every node of the Vagrant cluster (Vagrantfile): containerd, kubeadm/kubelet/kubectl, the
# kernel settings Kubernetes and flannel need. No kube-proxy anywhere: sluice replaces it.
# Usage (as root, from the Vagrantfile): node.sh NODE_IP K8S_MINOR   e.g. 192.168.56.11 v1.31
set -euo pipefail

node_ip=$1
k8s_minor=$2

log() { printf '[node %s] %s\n' "$(hostname)" "$*"; }

export DEBIAN_FRONTEND=noninteractive
log "packages"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  containerd apt-transport-https ca-certificates curl gpg bpftool iproute2

log "kernel settings"
swapoff -a
sed -i '/\sswap\s/d' /etc/fstab
cat >/etc/modules-load.d/k8s.conf <<'EOF'
overlay
br_netfilter
EOF
modprobe overlay
modprobe br_netfilter
cat >/etc/sysctl.d/90-k8s.conf <<'EOF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
EOF
sysctl -q --system
# sluice pins its maps here; systemd mounts it at boot, this covers a box that does not.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

log "containerd (systemd cgroups)"
mkdir -p /etc/containerd
containerd config default >/etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
systemctl restart containerd

log "kubeadm, kubelet, kubectl $k8s_minor"
install -d -m 0755 /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/$k8s_minor/deb/Release.key" |
  gpg --batch --yes --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/$k8s_minor/deb/ /" \
  >/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
apt-get install -y -qq --no-install-recommends kubelet kubeadm kubectl
apt-mark hold kubelet kubeadm kubectl
# The private network's address, not the NAT one every VirtualBox VM shares.
echo "KUBELET_EXTRA_ARGS=--node-ip=$node_ip" >/etc/default/kubelet
systemctl enable kubelet
