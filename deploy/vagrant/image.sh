#!/usr/bin/env bash
# The sluice-agent image for the Vagrant cluster, built once with deploy/Containerfile:
#   image.sh build CP_IP PORT   (control plane) podman build, import into containerd, serve
#                               the archive on CP_IP:PORT for two hours
#   image.sh fetch CP_IP PORT   (workers) download that archive and import it
# The deploy/vagrant overlay names the image localhost/sluice-agent:dev, imagePullPolicy Never.
set -euo pipefail

action=$1
cp_ip=$2
port=$3
image=localhost/sluice-agent:dev
share=/var/lib/sluice-image

log() { printf '[image %s] %s\n' "$(hostname)" "$*"; }

case "$action" in
  build)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends podman python3
    log "podman build -f deploy/Containerfile (about 10 minutes)"
    podman build -f /vagrant/deploy/Containerfile -t "$image" /vagrant
    install -d "$share"
    rm -f "$share/sluice-agent.tar"
    podman save --format docker-archive -o "$share/sluice-agent.tar" "$image"
    ctr -n k8s.io images import "$share/sluice-agent.tar"
    systemctl stop sluice-image-share 2>/dev/null || true
    systemd-run --unit sluice-image-share --property=RuntimeMaxSec=7200 \
      python3 -m http.server "$port" --bind "$cp_ip" --directory "$share"
    ;;
  fetch)
    log "importing $image from $cp_ip:$port"
    deadline=$((SECONDS + 900))
    until curl -fsS -o /tmp/sluice-agent.tar "http://$cp_ip:$port/sluice-agent.tar"; do
      if ((SECONDS >= deadline)); then
        log "the control plane does not serve the image; run 'vagrant provision cp' first" >&2
        exit 1
      fi
      sleep 10
    done
    ctr -n k8s.io images import /tmp/sluice-agent.tar
    rm -f /tmp/sluice-agent.tar
    ;;
  *)
    echo "usage: $0 build|fetch CP_IP PORT" >&2
    exit 2
    ;;
esac
