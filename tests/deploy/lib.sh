# shellcheck shell=bash
# Shared by tests/deploy/test_*.sh: one PASS/FAIL line per check, the closing
# "NAME: N passed, M failed" line and its exit status, and skips (77).
passed=0
failed=0

# result STATUS DESCRIPTION: counts and prints one check whose exit status is known
result() {
  if [ "$1" = 0 ]; then
    passed=$((passed + 1))
    echo "PASS $2"
  else
    failed=$((failed + 1))
    echo "FAIL $2"
  fi
}

# check DESCRIPTION COMMAND...: runs COMMAND as one check
check() {
  local what=$1
  shift
  if "$@"; then result 0 "$what"; else result 1 "$what"; fi
}

# finish NAME: the closing line; the script's status (0 when nothing failed)
finish() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

skip() {
  echo "SKIP: $*"
  exit 77
}
