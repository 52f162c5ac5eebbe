#!/usr/bin/env bash
# One fuzz test (ctest label `fuzz`): every input of the checked-in corpus, then SECONDS of
# mutation starting from it. Fails only when the target finds a crash, a sanitizer report, a
# leak, a broken property or an input slower than 30 s; the input is then saved in WORK_DIR as
# crash-*/leak-*/timeout-* (the reproducer) and the command to replay it is printed.
#   usage: run.sh FUZZER CORPUS_DIR WORK_DIR SECONDS [RUNS [SEED]]
# RUNS bounds the mutated inputs (-1: no bound), SEED fixes their sequence (0: random).
set -euo pipefail
fuzzer=$1 corpus=$2 work=$3 seconds=$4 runs=${5:--1} seed=${6:-0}

# New inputs the run finds go to WORK_DIR/found (kept between local runs, so a build directory's
# fuzzing gets better each time); the checked-in corpus is only read.
mkdir -p "$work/found"
rc=0
"$fuzzer" -max_total_time="$seconds" -runs="$runs" -seed="$seed" -max_len=16384 -timeout=30 -rss_limit_mb=2048 \
  -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/found" "$corpus" || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "fuzz: $(basename "$fuzzer") failed; reproducer(s):" >&2
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$f" ] || continue
    echo "  $fuzzer $f            # replay" >&2
    echo "  $fuzzer -minimize_crash=1 -runs=20000 $f   # minimize" >&2
  done
fi
exit "$rc"
