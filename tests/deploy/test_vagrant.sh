#!/usr/bin/env bash
# The Vagrantfile without booting anything: `vagrant validate` (provider settings ignored: no
# hypervisor here) accepts it, and rejects a copy whose provisioning script is missing (so the
# check can fail); the provisioning scripts are shellcheck-clean and every /vagrant/... path
# they use exists in the checkout. Skips (77) without vagrant (scripts/install-deps.sh
# --deploy-tests installs it, without recommends: no provider, no VM tools).
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
command -v vagrant >/dev/null ||
  skip "vagrant is not installed (bash scripts/install-deps.sh --deploy-tests)"

work=$(mktemp -d /tmp/sluice-deploy-vagrant.XXXXXX)
trap 'rm -rf "$work"' EXIT
# Vagrant's own state and the kubeadm token file go to the scratch directory, not the checkout
# or root's home.
export VAGRANT_HOME=$work/home VAGRANT_DOTFILE_PATH=$work/dotfile VAGRANT_CHECKPOINT_DISABLE=1

validate() { (cd "$1" && vagrant validate --ignore-provider); }
check "vagrant validate ($(vagrant --version))" validate "$root"
check "a kubeadm token was made in VAGRANT_DOTFILE_PATH" \
  grep -Eqx '[a-z0-9]{6}\.[a-z0-9]{16}' "$VAGRANT_DOTFILE_PATH/sluice-kubeadm-token"

mkdir "$work/broken"
sed 's|deploy/vagrant/node.sh|deploy/vagrant/no-such-script.sh|' "$root/Vagrantfile" >"$work/broken/Vagrantfile"
ln -s "$root/deploy" "$work/broken/deploy"
rejects_broken() { ! validate "$work/broken" >"$work/broken.out" 2>&1 && grep -q no-such-script "$work/broken.out"; }
check "vagrant validate rejects a Vagrantfile whose provisioning script is missing" rejects_broken

scripts=("$root"/deploy/vagrant/*.sh)
if command -v shellcheck >/dev/null; then
  check "shellcheck ${scripts[*]#"$root/"}" shellcheck "${scripts[@]}"
else
  echo "SKIP shellcheck is not installed"
fi
paths_exist() {
  local p missing=0
  while read -r p; do
    [ -e "$root/$p" ] || { echo "missing: /vagrant/$p"; missing=1; }
  done < <(grep -ohP '(?<![\w./-])/vagrant/[\w./-]+' "${scripts[@]}" | sed 's|^/vagrant/||' | sort -u)
  return "$missing"
}
check "every /vagrant/... path the scripts use exists in the checkout" paths_exist

finish "vagrant"
