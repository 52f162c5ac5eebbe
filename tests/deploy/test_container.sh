#!/usr/bin/env bash
# deploy/Containerfile, checked without a container engine (none runs here):
#   - two stages, build and runtime, both on Debian 12;
#   - both install with scripts/install-deps.sh (no args in build, --runtime in runtime);
#   - the build stage builds like the README (cmake -B build -S .) and copies the binaries from
#     where CMake puts them (CMAKE_RUNTIME_OUTPUT_DIRECTORY = build/bin, as in SLUICE_BIN_DIR);
#   - ENTRYPOINT is where the binary was copied, and is the DaemonSet's command;
#   - install-deps.sh --runtime installs the Debian package of every shared library the built
#     sluice-agent and sluicectl link directly (DT_NEEDED; apt brings their dependencies),
#     under names dpkg knows;
#   - .dockerignore keeps build output and node_modules out of the build context.
set -euo pipefail
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN_DIR:-$root/build/bin}
file=$root/deploy/Containerfile

# Instructions with line continuations joined.
instructions=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$file" | grep -v '^\s*#' | grep -v '^\s*$')
from_lines=$(grep -E '^FROM ' <<<"$instructions")
debian_arg=$(sed -n 's/^ARG DEBIAN_IMAGE=//p' <<<"$instructions")

check "two stages named build and runtime, in that order" \
  test "$(awk '{print $NF}' <<<"$from_lines" | tr '\n' ' ')" = "build runtime "
on_debian12() {
  # shellcheck disable=SC2016 # the literal ARG reference
  [[ $debian_arg =~ debian:(12|bookworm)(-slim)?$ ]] &&
    [ "$(grep -cF 'FROM ${DEBIAN_IMAGE} AS' <<<"$from_lines")" = 2 ]
}
check "both stages on Debian 12 ($debian_arg)" on_debian12

# stage_of NAME: the instructions of one stage
stage_of() { awk -v s="$1" '/^FROM /{on = ($NF == s)} on' <<<"$instructions"; }
build=$(stage_of build)
runtime=$(stage_of runtime)
# installs STAGE_TEXT RUN_PATTERN: the stage copies the installer and runs it so
installs() { grep -q '^COPY scripts/install-deps.sh ' <<<"$1" && grep -Eq "$2" <<<"$1"; }
check "build stage installs with scripts/install-deps.sh (no arguments)" \
  installs "$build" '^RUN bash [^ ]*install-deps.sh( *&&|$)'
check "runtime stage installs with scripts/install-deps.sh --runtime" \
  installs "$runtime" '^RUN bash [^ ]*install-deps.sh --runtime'
builds_like_readme() {
  grep -qF 'cmake -B build -S .' <<<"$build" && grep -qF -- '--target sluice-agent sluicectl' <<<"$build"
}
check "build stage builds as the README does (cmake -B build -S .) both binaries" builds_like_readme

workdir=$(sed -n 's/^WORKDIR //p' <<<"$build" | tail -n1)
copy=$(grep '^COPY --from=build ' <<<"$runtime")
dest=$(awk '{print $NF}' <<<"$copy")
# shellcheck disable=SC2016 # the literal CMake variable
check "CMake puts binaries in build/bin" \
  grep -qF 'CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin' "$root/CMakeLists.txt"
copied() { grep -qF " $workdir/build/bin/$1 " <<<"$copy " && [ -x "$bin/$1" ]; }
for b in sluice-agent sluicectl; do
  check "$b copied from $workdir/build/bin (built here: $bin/$b)" copied "$b"
done
entry=$(sed -n 's/^ENTRYPOINT \["\([^"]*\)".*/\1/p' <<<"$runtime")
check "ENTRYPOINT $entry is where the agent was copied ($dest)" \
  test "$entry" = "${dest%/}/sluice-agent"
check "the DaemonSet runs the same path" \
  grep -q "command: \[\"$entry\"\]" "$root/deploy/base/daemonset.yaml"

# Runtime packages against the libraries the built binaries link.
mapfile -t runtime_packages < <(bash -c "$(sed -n '/^runtime_packages=(/,/^)/p' "$root/scripts/install-deps.sh"); printf '%s\n' \"\${runtime_packages[@]}\"")
check "install-deps.sh --runtime lists packages (${#runtime_packages[@]})" test "${#runtime_packages[@]}" -gt 5
unknown=()
for p in "${runtime_packages[@]}"; do
  dpkg-query -W "$p" >/dev/null 2>&1 || unknown+=("$p")
done
check "every runtime package is a Debian package installed here${unknown:+ (not: ${unknown[*]})}" \
  test ${#unknown[@]} -eq 0
# Which Debian package ships each library, for every spelling of its path (merged /usr): one
# dpkg-query for all of them, as "package: path" lines.
declare -A needed_libs=()
for b in sluice-agent sluicectl; do
  while read -r lib; do
    needed_libs[$lib]+=" $b"
  done < <(ldd "$bin/$b" | awk -v needed=" $(readelf -d "$bin/$b" |
    sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')" \
    '$2 == "=>" && $3 ~ /^\// && index(needed, " " $1 " ") {print $3}')
done
spellings() { printf '%s\n' "$1" "$(realpath "$1")" "/usr$1" "${1#/usr}"; }
owners=$(for lib in "${!needed_libs[@]}"; do spellings "$lib"; done | sort -u |
  xargs dpkg-query -S 2>/dev/null || true)
package_of() {
  local path
  while read -r path; do
    awk -F': ' -v p="$path" '$2 == p {sub(/:.*/, "", $1); print $1; found = 1; exit}
      END {exit !found}' <<<"$owners" &&
      return 0
  done < <(spellings "$1")
  return 1
}
for b in sluice-agent sluicectl; do
  uncovered=()
  for lib in "${!needed_libs[@]}"; do
    [[ ${needed_libs[$lib]} == *" $b"* ]] || continue
    pkg=$(package_of "$lib") || { uncovered+=("$lib(no package)"); continue; }
    [[ " ${runtime_packages[*]} " == *" $pkg "* ]] || uncovered+=("$lib($pkg)")
  done
  check "install-deps.sh --runtime covers every library $b links${uncovered:+ (missing: ${uncovered[*]})}" \
    test ${#uncovered[@]} -eq 0
done

ignored() { for p in build/ .git/ '**/node_modules/'; do grep -qxF "$p" "$root/.dockerignore" || return 1; done; }
check ".dockerignore keeps build/, .git/ and node_modules/ out of the context" ignored

finish "container recipe"
