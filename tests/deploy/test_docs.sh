#!/usr/bin/env bash
# The user docs stay true to the tree and the binaries:
#   - docs/README.md links every page and picture in docs/, and README.md links docs/README.md;
#   - every relative link in README.md, docs/*.md and deploy/README.md points to a file that
#     exists;
#   - on every line of docs/*.md that names sluice-agent or sluicectl, each --flag after the
#     name is one of that binary's flags (from its --help), so an example cannot name a flag
#     that is gone.
# (docs/configuration.md's flag reference itself: docs_configuration, scripts/gen-config-doc.)
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN_DIR:-$root/build/bin}
for b in sluice-agent sluicectl; do
  [ -x "$bin/$b" ] || { echo "FAIL: $bin/$b not built"; exit 1; }
done
cd "$root"

indexed() {
  local f missing=0
  for f in docs/*.md docs/*.svg; do
    [ "$f" = docs/README.md ] && continue
    grep -qF "($(basename "$f"))" docs/README.md || { echo "  docs/README.md does not link $f"; missing=1; }
  done
  grep -qF "(docs/README.md)" README.md || { echo "  README.md does not link docs/README.md"; missing=1; }
  return "$missing"
}
check "docs/README.md indexes docs/, README.md links it" indexed

links_resolve() {
  local f target broken=0
  for f in README.md docs/*.md deploy/README.md; do
    while read -r target; do
      target=${target%%#*}
      [ -z "$target" ] && continue
      [ -e "$(dirname "$f")/$target" ] || { echo "  $f: $target does not exist"; broken=1; }
    done < <(grep -oE '\]\([^)]+\)' "$f" | sed -E 's/^\]\(//; s/\)$//' | grep -vE '^(https?:|mailto:|#)')
  done
  return "$broken"
}
check "relative links resolve" links_resolve

flags_of() { "$bin/$1" --help | grep -oE '^\s+(-\w,)?--[a-z0-9-]+' | grep -oE -- '--[a-z0-9-]+' | sort -u; }
agent_flags=" $(flags_of sluice-agent | tr '\n' ' ') "
ctl_flags=" $(flags_of sluicectl | tr '\n' ' ') "
flags_exist() {
  local f line n flag bad=0 known rest
  for f in docs/*.md; do
    n=0
    while IFS= read -r line; do
      n=$((n + 1))
      # The flags after the program's name: `sluicectl -j service list`,
      # `kubectl exec ... -- sluicectl ...`, `sluice-agent --config F --help`.
      if [[ $line == *sluicectl* ]]; then
        known=$ctl_flags rest=${line##*sluicectl}
      elif [[ $line == *sluice-agent* ]]; then
        known=$agent_flags rest=${line#*sluice-agent}
      else
        continue
      fi
      while read -r flag; do
        [[ $known == *" $flag "* ]] || { echo "  $f:$n: $flag is not a flag of that binary"; bad=1; }
      done < <(grep -oE -- '(^|[ `(])--[a-z][a-z0-9-]*' <<<"$rest" | grep -oE -- '--[a-z0-9-]+')
    done <"$f"
  done
  return "$bad"
}
check "docs use only flags the binaries have" flags_exist

finish "docs"
