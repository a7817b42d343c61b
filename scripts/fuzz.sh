#!/bin/sh
# Runs each libFuzzer target of BUILD_DIR for SECONDS, reading the seed corpus in
# fuzz/corpus/<target> and keeping new inputs in BUILD_DIR/corpus/<target>; prints the
# inputs each executed and exits non-zero if any target found a crash (its input is in
# BUILD_DIR/artifacts). usage: scripts/fuzz.sh BUILD_DIR SECONDS TARGET...
set -u
build=$1
seconds=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/artifacts"
status=0
total=0
summary=""
for target in "$@"; do
  mkdir -p "$build/corpus/$target"
  log="$build/fuzz-$target.log"
  echo "fuzz: $target for ${seconds}s (log: $log)"
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$build/artifacts/$target-" "$build/corpus/$target" "$root/fuzz/corpus/$target" \
    > "$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  runs=${runs:-0}
  total=$((total + runs))
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; see $log)"
    status=1
  fi
  summary="$summary$(printf '%-16s %12s inputs  %s' "$target" "$runs" "$result")\n"
done
printf '\n%b' "$summary"
printf '%-16s %12s inputs\n' "total" "$total"
exit $status
