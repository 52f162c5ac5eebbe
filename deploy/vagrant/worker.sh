#!/usr/bin/env bash
# A worker of the Vagrant cluster: the sluice image from the control plane, then kubeadm join.
# Usage (as root, from the Vagrantfile): worker.sh CP_IP TOKEN IMAGE_PORT
set -euo pipefail

cp_ip=$1
token=$2
image_port=$3

log() { printf '[worker %s] %s\n' "$(hostname)" "$*"; }

# Imported before joining: the DaemonSet's pod starts as soon as the node registers.
bash /vagrant/deploy/vagrant/image.sh fetch "$cp_ip" "$image_port"

if [ ! -f /etc/kubernetes/kubelet.conf ]; then
  log "kubeadm join $cp_ip:6443"
  # A throwaway local cluster: the token is the only secret, the CA is not pinned.
  kubeadm join "$cp_ip:6443" --token "$token" --discovery-token-unsafe-skip-ca-verification
fi
log "joined"
