#!/bin/bash
# make demo: redis-server holding ~420 MiB of values, run twice: all-local (plain, no EMP),
# then under EMP with a quarter of its all-local peak RSS as local DRAM and the rest on a
# loopback vmd donor (or, if vmd is not built, a file tier under /var/tmp). Both runs load
# the same values, serve the same Zipf-skewed GETs and read every value back; the demo
# fails unless every value is right and both runs read back the same bytes (sha256).
# scripts/demo/redis_demo.py drives redis; this script owns the donor, the temp dir and
# the clean-up (also on Ctrl-C). Sizes: DEMO_KEYS (values of 1000 bytes), DEMO_GETS.
set -eu
build=${1:-build/release}
helper="$(cd "$(dirname "$0")" && pwd)/demo/redis_demo.py"
emp="$build/src/cli/emp"
vmd="$build/src/vmd/vmd"
keys=${DEMO_KEYS:-400000}
gets=${DEMO_GETS:-400000}

die() { echo "demo: FAILED: $*" >&2; exit 1; }
for program in redis-server python3; do
  command -v "$program" >/dev/null || die "$program is not installed (Debian: apt-get install redis-server python3)"
done
[ -x "$emp" ] || die "$emp is not built (make build)"

work=$(mktemp -d /var/tmp/emp-demo.XXXXXX)
vmd_pid=""
# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$vmd_pid" ]; then kill "$vmd_pid" 2>/dev/null || true; wait "$vmd_pid" 2>/dev/null || true; fi
  # The helper stops redis itself; this catches a redis left behind if the helper was killed.
  for pidfile in "$work"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] && kill "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up" >&2; exit 130' INT TERM

# Runs the workload once: run_redis NAME [COMMAND PREFIX...] (redis-server is appended).
run_redis() {
  local name=$1
  shift
  python3 "$helper" run "$work/$name.json" --keys "$keys" --gets "$gets" --socket "$work/redis.sock" \
    --log "$work/redis-$name.log" ${emp_stats:+--emp "$emp_stats"} -- "$@" redis-server ||
    { echo "demo: the end of redis-server's log:" >&2; tail -n 20 "$work/redis-$name.log" | sed 's/^/  | /' >&2
      die "the $name run did not complete"; }
}

started=$(date +%s)
echo "demo: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $keys values of 1000 bytes," \
  "$gets Zipf(0.99) GETs, then every value read back and compared"
echo "demo: [1/3] all-local: plain redis-server, no EMP"
emp_stats="" run_redis all-local

peak_mib=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["peak_rss"] >> 20)' "$work/all-local.json")
local_mib=$((peak_mib / 4))
tier_mib=$(((peak_mib * 2 + 255) / 256 * 256))
if [ -x "$vmd" ]; then
  echo "demo: [2/3] memory donor: vmd -m $tier_mib -d tcp --bind 127.0.0.1 --auth-key-file (a new key) -p 0 (a free port)"
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/key")
  # A session of its own: Ctrl-C stops redis first (the helper), then cleanup stops vmd.
  setsid "$vmd" -m "$tier_mib" -p 0 -d tcp --bind 127.0.0.1 --auth-key-file "$work/key" >"$work/vmd.log" 2>&1 &
  vmd_pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^vmd: serving .* on port \([0-9]*\).*/\1/p' "$work/vmd.log")
    [ -n "$port" ] && break
    kill -0 "$vmd_pid" 2>/dev/null || { cat "$work/vmd.log" >&2; die "vmd did not start"; }
    sleep 0.1
  done
  [ -n "$port" ] || die "vmd did not report its port within 10 s"
  echo "demo:       $(grep '^vmd: serving' "$work/vmd.log")"
  tier="127.0.0.1:$tier_mib:$port"
  export EMP_AUTH_KEY_FILE="$work/key"
else
  echo "demo: [2/3] $vmd is not built: the second tier is a file under /var/tmp instead of a donor"
  tier="$work/emp.tier:$tier_mib:0"
fi

mem_path="dram:$local_mib|$tier"
blocks="--block-size 4K --subblock-size 4K"  # redis reads scattered small values: 4 KiB blocks
echo "demo: [3/3] under EMP, a quarter of the all-local peak RSS ($peak_mib MiB) local:"
echo "demo:       ${EMP_AUTH_KEY_FILE:+EMP_AUTH_KEY_FILE=(the key) }emp run --mem-path \"$mem_path\" $blocks -- redis-server"
# shellcheck disable=SC2086 # $blocks is a list of flags
emp_stats="$emp" run_redis emp "$emp" run --mem-path "$mem_path" $blocks --

echo
status=0
python3 "$helper" summary "$work/all-local.json" "$work/emp.json" "$tier" || status=$?
if [ "$status" -eq 0 ]; then
  echo "demo: OK in $(($(date +%s) - started)) s"
fi
exit "$status"
