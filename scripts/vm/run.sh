#!/usr/bin/env bash
# Boots a real guest under emp-qemu (TCG) with its RAM on EMP: 1 GiB of guest RAM,
# 256 MiB of local DRAM, a loopback vmd as the second tier. The guest (Debian's kernel
# and a busybox initramfs) runs a static memory test over 768 MiB and prints its own
# marker on the serial console; QEMU exits 0 even after a guest panic, so only that
# marker counts. Cases: 1 vCPU, 2 vCPUs, QEMU's seccomp sandbox with a memory-backend-ram
# backend, a virtio-balloon inflated by 256 MiB and deflated again (QMP) while the test
# runs over 512 MiB, the same with shared guest RAM (memory-backend-memfd) on 2 vCPUs,
# and two negative controls that must report FAIL: a word corrupted inside the guest,
# and the second tier (a file here) overwritten behind EMP's back. While each runs,
# `emp stats` samples the QEMU process: its EMP-resident memory must stay within the
# budget plus slack.
#
#   scripts/vm/run.sh [BUILD_DIR]        (make test-vm; ctest -L vm)
#   EMP_VM_CASES="one-vcpu balloon" scripts/vm/run.sh     only those cases
# Exit codes: 0 pass, 1 fail, 77 cannot run here (the reason is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$(realpath "${1:-$ROOT/build/release}")
CACHE=${EMP_VM_CACHE:-$BUILD_DIR/guest}
skip() { echo "test-vm: SKIPPED: $*" >&2; exit 77; }
fail() { echo "test-vm: FAIL: $*" >&2; exit 1; }

EMP_QEMU=$BUILD_DIR/src/qemu/emp-qemu
EMP=$BUILD_DIR/src/cli/emp
VMD=$BUILD_DIR/src/vmd/vmd
MEMTEST=$BUILD_DIR/tests/vm/emp-guest-memtest
for f in "$EMP_QEMU" "$EMP" "$VMD" "$MEMTEST"; do [[ -x $f ]] || skip "build first: $f is missing"; done
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[[ -x /bin/busybox && $(file -b /bin/busybox 2>/dev/null || echo static) == *static* ]] || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || skip "missing packages: ${missing[*]} (run as root to install them)"
  echo "test-vm: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null || skip "apt-get install ${missing[*]} failed"
fi
KERNEL=$("$ROOT/scripts/guest-kernel.sh" "$CACHE") || skip "no guest kernel"

# The initramfs: busybox and the memory test; /init reads its parameters from the kernel
# command line and powers the guest off.
WORK=$(mktemp -d /tmp/emp-vm.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [[ -n ${EMP_VM_KEEP:-} ]] || rm -rf "$WORK"' EXIT
mkdir -p "$WORK/initramfs"/{bin,proc,sys,dev,modules}
cp /bin/busybox "$MEMTEST" "$WORK/initramfs/bin/"
# virtio-balloon and what it needs (Debian builds them as modules), in load order.
MODDIR=$(dirname "$(dirname "$KERNEL")")/lib/modules/$(basename "$KERNEL" | sed 's/^vmlinuz-//')
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon; do
  f=$(find "$MODDIR" -name "$m.ko" | head -1)
  [[ -n $f ]] && cp "$f" "$WORK/initramfs/modules/"
done
cat > "$WORK/initramfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
MIB=$(/bin/busybox sed -n 's/.*emp_memtest=\([0-9]*\).*/\1/p' /proc/cmdline)
MODE=$(/bin/busybox sed -n 's/.*emp_mode=\([a-z]*\).*/\1/p' /proc/cmdline)
if /bin/busybox grep -q emp_balloon /proc/cmdline; then
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon; do
    [ -e /modules/$m.ko ] && /bin/busybox insmod /modules/$m.ko
  done
fi
# The full size is read before the host is told the test runs (it inflates the balloon then).
full=$(/bin/busybox awk '/MemTotal/ {print $2}' /proc/meminfo)
echo "guest: $(/bin/busybox grep MemTotal /proc/meminfo), testing ${MIB} MiB ${MODE}"
if /bin/busybox grep -q emp_balloon /proc/cmdline; then
  # Test passes until the host has inflated the balloon and given the memory back
  # (MemTotal shrinks, then returns), so the cycle happens during a test however fast
  # the test is; at most 20 passes. The first failing pass ends it.
  shrunk=0 pass=0
  while [ $pass -lt 20 ]; do
    /bin/emp-guest-memtest "$MIB" $MODE || break
    pass=$((pass + 1))
    now=$(/bin/busybox awk '/MemTotal/ {print $2}' /proc/meminfo)
    [ "$now" -lt "$full" ] && shrunk=1
    [ $shrunk = 1 ] && [ "$now" -ge "$full" ] && { echo "guest: balloon cycle seen after $pass passes"; break; }
  done
else
  /bin/emp-guest-memtest "$MIB" $MODE
fi
/bin/busybox poweroff -f
INIT
chmod +x "$WORK/initramfs/init"
(cd "$WORK/initramfs" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.gz")

# The donor.
"$VMD" -m 1536 -p 0 -d tcp --bind 127.0.0.1 --grace 1 > "$WORK/vmd.log" 2>&1 &
for _ in $(seq 100); do grep -q "on port" "$WORK/vmd.log" && break; sleep 0.2; done
PORT=$(sed -n 's/.*on port \([0-9]*\).*/\1/p' "$WORK/vmd.log" | head -1)
[[ -n $PORT ]] || fail "vmd did not start: $(cat "$WORK/vmd.log")"

qmp() {  # qmp balloon BYTES: sets the balloon target on the current case's QMP socket and
          # waits (up to 20 s) until the guest has reached it; prints the actual size.
  python3 - "$QMP" "$2" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
def call(cmd):
    f.write(json.dumps(cmd) + "\n"); f.flush()
    while True:
        reply = json.loads(f.readline())
        if "error" in reply: sys.exit("QMP: " + str(reply["error"]))
        if "return" in reply: return reply["return"]
call({"execute": "qmp_capabilities"})
target = int(sys.argv[2])
call({"execute": "balloon", "arguments": {"value": target}})
deadline = time.time() + 20
while True:
    actual = call({"execute": "query-balloon"})["actual"]
    if abs(actual - target) < (8 << 20) or time.time() > deadline: break
    time.sleep(0.5)
print("guest RAM per the balloon: %d MiB" % (actual >> 20))
if abs(actual - target) >= (8 << 20): sys.exit("the balloon did not reach %d MiB" % (target >> 20))
PY
}

run_case() {  # name smp mode expected-marker [more QEMU arguments]
  local name=$1 smp=$2 mode=$3 expect=$4 serial=$WORK/$1.serial
  shift 4
  # EMP_VM_CASES="balloon ..." runs only those cases.
  [[ -z ${EMP_VM_CASES:-} || " $EMP_VM_CASES " == *" $name "* ]] || return 0
  echo "test-vm: $name: -m 1G, dram:256, -smp $smp, memtest ${MEMTEST_MIB:-768} MiB ${mode} $*"
  local start=$SECONDS
  "$EMP_QEMU" -m 1G -accel tcg -smp "$smp" "$@" -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 quiet panic=1 emp_memtest=${MEMTEST_MIB:-768} emp_mode=$mode ${GUEST_FLAGS:-}" -nographic -no-reboot \
    -serial "file:$serial" -monitor none -display none \
    --mem-path "${CASE_MEM_PATH:-dram:256|127.0.0.1:1024:$PORT}" > "$WORK/$name.qemu.log" 2>&1 &
  local launcher=$! pid="" max_resident=0 budget=0 slack=0 fetched="" ballooned=0
  while kill -0 "$launcher" 2>/dev/null; do
    [[ -z $pid ]] && pid=$(pgrep -P "$launcher" -f qemu-system 2>/dev/null || pgrep -f "qemu-system.*$serial" | head -1 || true)
    if [[ -n $pid ]]; then
      json=$("$EMP" stats "$pid" --json 2>/dev/null || true)
      r=$(sed -n 's/.*"resident_bytes":\([0-9]*\).*/\1/p' <<< "$json" | head -1)
      b=$(sed -n 's/.*"budget_bytes":\([0-9]*\).*/\1/p' <<< "$json" | head -1)
      s=$(sed -n 's/.*"slack_bytes":\([0-9]*\).*/\1/p' <<< "$json" | head -1)
      [[ -n $r ]] && ((r > max_resident)) && max_resident=$r
      [[ -n $b ]] && budget=$b
      [[ -n $s ]] && slack=$s
      fetched=$(sed -n 's/.*"faults_fetch":\([0-9]*\).*/\1/p' <<< "$json" | head -1)
      [[ $name == one-vcpu && -n $fetched ]] && ((fetched > 20000)) && "$EMP" stats "$pid" > "$WORK/stats.txt" 2>&1 || true
    fi
    # Tier-corruption case: once blocks have gone to the tier file, overwrite it with
    # garbage (behind EMP's back) every second; the guest must notice.
    if [[ -n ${CORRUPT_TIER:-} && -n ${fetched:-} ]] && grep -aq "testing" "$serial" 2>/dev/null; then
      dirty=$(sed -n 's/.*"evictions_dirty":\([0-9]*\).*/\1/p' <<< "$json" | head -1)
      [[ -n $dirty ]] && ((dirty > 1000)) && dd if=/dev/urandom of="$CORRUPT_TIER" bs=1M count=512 conv=notrunc status=none || true
    fi
    # Balloon case: once the test runs, inflate by 256 MiB, then give it back.
    if [[ -n ${QMP:-} && $ballooned == 0 ]] && grep -aq "testing" "$serial" 2>/dev/null; then
      sleep 3
      qmp balloon 805306368 || fail "$name: inflating the balloon"
      sleep 8
      qmp balloon 1073741824 || fail "$name: deflating the balloon"
      ballooned=1
    fi
    sleep 2
    if ((SECONDS - start >= ${CASE_TIMEOUT:-${EMP_VM_TIMEOUT:-900}})); then
      pkill -f "qemu-system.*$serial" 2>/dev/null || kill "$launcher"
      [[ $expect == NOT-OK ]] && break
      fail "$name: timed out"
    fi
  done
  wait "$launcher" || true
  [[ -e $serial ]] || fail "$name: QEMU did not start: $(tail -c 2000 "$WORK/$name.qemu.log")"
  grep -a "EMP-GUEST-MEMTEST\|balloon cycle" "$serial" | sort | uniq -c | sed "s/^ */  /" || true
  if [[ $expect == NOT-OK ]]; then
    # Corruption behind EMP's back may hit the guest kernel too: a FAIL, a panic or a hang
    # all count as detected; only the OK marker would mean it went unnoticed.
    ! grep -aq "EMP-GUEST-MEMTEST OK" "$serial" || fail "$name: the guest read corrupted memory without noticing"
  else
    grep -aq "EMP-GUEST-MEMTEST $expect" "$serial" || fail "$name: no 'EMP-GUEST-MEMTEST $expect' marker (serial log: $(tail -c 2000 "$serial"))"
    [[ $expect != OK ]] || ! grep -aq "EMP-GUEST-MEMTEST FAIL" "$serial" || fail "$name: a pass of the memory test failed"
  fi
  ((budget == 0 || max_resident <= budget + slack)) ||
    fail "$name: EMP-resident memory peaked at $max_resident bytes, over the budget $budget + slack $slack"
  echo "test-vm: $name: passed in $((SECONDS - start)) s; EMP-resident peak $((max_resident >> 20)) MiB of a $((budget >> 20)) MiB budget"
  sleep 3  # vmd frees the lease after its grace period
}

run_case one-vcpu 1 none OK
[[ -e $WORK/stats.txt ]] && cat "$WORK/stats.txt"
run_case two-vcpus 2 none OK
run_case sandbox-and-ram-backend 1 none OK -sandbox on -object memory-backend-ram,id=ram0,size=1G -machine memory-backend=ram0
QMP=$WORK/qmp.sock MEMTEST_MIB=512 GUEST_FLAGS=emp_balloon \
  run_case balloon 1 none OK -device virtio-balloon-pci,id=balloon0 -qmp "unix:$WORK/qmp.sock,server=on,wait=off"
# Shared guest RAM (memory-backend-memfd): QEMU discards ballooned pages there with
# fallocate(PUNCH_HOLE), which libemp.so turns into EMP discards.
QMP=$WORK/qmp.sock MEMTEST_MIB=512 GUEST_FLAGS=emp_balloon \
  run_case memfd-and-balloon 2 none OK -object memory-backend-memfd,id=ram0,size=1G -machine memory-backend=ram0 \
  -device virtio-balloon-pci,id=balloon0 -qmp "unix:$WORK/qmp.sock,server=on,wait=off"
run_case negative-control 1 corrupt FAIL
CORRUPT_TIER=$WORK/tier CASE_MEM_PATH="dram:256|$WORK/tier:1024:0" CASE_TIMEOUT=150 \
  run_case tier-corruption 1 none NOT-OK
echo "test-vm: PASS"
