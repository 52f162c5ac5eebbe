#!/usr/bin/env bash
# Run on the Vagrant host by the Vagrantfile's trigger after the last node is up (or by hand
# from the checkout): the in-cluster smoke test on the control plane (smoke.sh), then the
# Service's NodePort on every node from this host, through the private network.
# Usage: deploy/vagrant/host-smoke.sh NODE_IP...
set -euo pipefail

cd "$(dirname "$0")/../.."
node_port=30080
vagrant provision cp --provision-with smoke

passed=0
failed=0
for ip in "$@"; do
  ok=0
  for _ in 1 2 3 4 5; do
    if got=$(curl -fsS --max-time 5 "http://$ip:$node_port/hostname"); then
      ok=1
      break
    fi
    sleep 2
  done
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
    echo "[host-smoke] PASS NodePort $ip:$node_port from the host: $got"
  else
    failed=$((failed + 1))
    echo "[host-smoke] FAIL NodePort $ip:$node_port from the host"
  fi
done
echo "host-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
