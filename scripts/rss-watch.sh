#!/bin/sh
# Runs a command and samples its VmRSS from /proc/<pid>/status every 50 ms; prints the
# maximum seen when it exits (to stderr) and exits with the command's status.
#   scripts/rss-watch.sh build/release/bench/emp-bench --tier ... --no-baseline
set -u
"$@" &
pid=$!
max=0
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ -n "$rss" ] && [ "$rss" -gt "$max" ] && max=$rss
  sleep 0.05
done
wait "$pid"
status=$?
echo "rss-watch: max VmRSS of pid $pid: $((max / 1024)) MiB" >&2
exit "$status"
