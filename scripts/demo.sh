#!/bin/sh
# make demo: a real workload with a quarter of its memory local, the rest on a
# loopback vmd donor (or, if vmd is not built, a file tier), verified, with a summary.
set -eu
build=${1:-build/release}
bench="$build/bench/emp-bench"
vmd="$build/src/vmd/vmd"
work=$(mktemp -d /var/tmp/emp-demo.XXXXXX)
vmd_pid=""
cleanup() {
  [ -n "$vmd_pid" ] && kill "$vmd_pid" 2>/dev/null && wait "$vmd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

size=${EMP_DEMO_SIZE:-1G}
if [ -x "$vmd" ]; then
  port=$((20000 + $$ % 10000))
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/key")
  echo "demo: starting a memory donor: vmd -m 2048 -p $port -d tcp --bind 127.0.0.1"
  "$vmd" -m 2048 -p "$port" -d tcp --bind 127.0.0.1 --auth-key-file "$work/key" >"$work/vmd.log" 2>&1 &
  vmd_pid=$!
  for _ in $(seq 300); do
    grep -q "serving" "$work/vmd.log" 2>/dev/null && break
    sleep 0.1
  done
  tier="127.0.0.1:2048:$port"
  export EMP_AUTH_KEY_FILE="$work/key"
else
  echo "demo: vmd is not built; using a file on the local disk as the second tier"
  tier="$work/emp.tier:2048:0"
fi

echo "demo: Zipf key access over $size, 25% of it in local DRAM, second tier $tier"
echo "demo: (EMP run first, then the same work on plain memory for the ratio; ~1 minute)"
"$bench" --tier "$tier" --working-set "$size" --local 25% --pattern zipf --threads 2 \
  --block-size 4K --subblock-size 4K > "$work/out.txt" &
bench_pid=$!
while kill -0 "$bench_pid" 2>/dev/null; do printf '.'; sleep 2; done
echo
status=0
wait "$bench_pid" || status=$?
grep -v '^{' "$work/out.txt"
if [ "$status" -eq 0 ]; then
  echo "demo: OK: every byte verified"
else
  echo "demo: FAILED (exit $status)"
fi
exit "$status"
