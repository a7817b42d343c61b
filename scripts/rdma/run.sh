#!/usr/bin/env bash
# Runs the remote-tier and vmd tests over libfabric's verbs provider on soft-RoCE, or
# (SUITE=engine) the engine's unit and integration suites on the guest's older kernel.
#
# The build machines have no RDMA hardware and cannot load kernel modules, so this
# boots Debian's own kernel under QEMU (TCG), loads rdma_rxe inside the guest, creates
# a soft-RoCE device (rxe0) on the guest's virtio NIC, and runs emp_remote_tests with
# EMP_TEST_PROVIDER=verbs plus the transport benchmark over verbs. The guest's serial
# console is the log; the run passes only on the guest's own result marker.
#
#   scripts/rdma/run.sh [BUILD_DIR]              (make test-rdma; ctest -L rdma)
#   scripts/rdma/run.sh [BUILD_DIR] engine       (make test-old-kernel; ctest -L old-kernel)
#
# The engine suite checks every fallback path on Debian 12's 6.1 kernel, which lacks
# what the fast paths use on newer ones (process_madvise(PIDFD_SELF), UFFDIO_MOVE,
# WP_ASYNC): the probes must pick the fallbacks and every test must still pass.
#
# Needs qemu-system-x86, busybox-static, cpio and kmod (installed with apt-get when run
# as root) and the Debian kernel package (downloaded once into BUILD_DIR/rdma).
# Exit codes: 0 pass, 1 fail, 77 cannot run here (the reason is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$(realpath "${1:-$ROOT/build/release}")
SUITE=${2:-remote}
[[ $SUITE == remote || $SUITE == engine ]] || { echo "usage: $0 [BUILD_DIR] [remote|engine]" >&2; exit 2; }
CACHE=${EMP_RDMA_CACHE:-$BUILD_DIR/rdma}
TIMEOUT=${EMP_RDMA_TIMEOUT:-1500}
GUEST_IP=10.0.2.15
NAME=test-rdma
[[ $SUITE == engine ]] && NAME=test-old-kernel
skip() { echo "$NAME: SKIPPED: $*" >&2; exit 77; }

TESTS=$BUILD_DIR/tests/remote/emp_remote_tests
VMD=$BUILD_DIR/src/vmd/vmd
BENCH=$BUILD_DIR/bench/emp-transport-bench
[[ -x $TESTS && -x $VMD ]] || skip "build first: $TESTS and $VMD are missing"

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
[[ -x /bin/busybox && $(file -b /bin/busybox 2>/dev/null || echo static) == *static* ]] || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v depmod >/dev/null || missing+=(kmod)
command -v rdma >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "$NAME: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null || skip "apt-get install ${missing[*]} failed"
  else
    skip "missing packages: ${missing[*]} (run as root to install them)"
  fi
fi

# 1. The guest kernel: Debian's linux-image (the same kernel Debian users run).
mkdir -p "$CACHE"
KDIR=$CACHE/kernel
if ! ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | grep -o 'linux-image-[0-9][^ ]*-amd64' | head -1)
  [[ -n $pkg ]] || skip "cannot find the Debian kernel package (apt-get update?)"
  echo "$NAME: downloading $pkg"
  (cd "$CACHE" && rm -f linux-image-*.deb && apt-get download "$pkg" >/dev/null) || skip "apt-get download $pkg failed"
  rm -rf "$KDIR" && dpkg-deb -x "$CACHE"/linux-image-*.deb "$KDIR"
fi
KERNEL=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
KVER=${KERNEL##*/vmlinuz-}
MODDIR=$KDIR/lib/modules/$KVER
[[ -f $MODDIR/modules.dep ]] || depmod -b "$KDIR" "$KVER"

# 2. The initramfs: busybox, our binaries and their libraries at the same paths (the
# tests find vmd by its build path), the verbs user-space driver, and the modules.
INITRD_DIR=$CACHE/initramfs-$SUITE
rm -rf "$INITRD_DIR"
mkdir -p "$INITRD_DIR"/{bin,dev,proc,sys,tmp,etc/libibverbs.d,var/tmp}
cp /bin/busybox "$INITRD_DIR/bin/busybox"
copy() {  # copy a file to the same absolute path inside the initramfs
  local f=$1
  [[ -e $INITRD_DIR$f ]] && return 0
  mkdir -p "$INITRD_DIR$(dirname "$f")"
  cp -L "$f" "$INITRD_DIR$f"
}
copy_with_libs() {
  copy "$1"
  ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do [[ -e $lib ]] && copy "$lib"; done
}
UNIT=$BUILD_DIR/tests/emp_unit_tests
INTEGRATION=$BUILD_DIR/tests/emp_integration_tests
if [[ $SUITE == engine ]]; then
  [[ -x $UNIT && -x $INTEGRATION ]] || skip "build first: $UNIT and $INTEGRATION are missing"
  binaries=("$UNIT" "$INTEGRATION")
else
  binaries=("$TESTS" "$VMD" "$(command -v rdma)")
fi
[[ -x $BENCH ]] && binaries+=("$BENCH")
for b in "${binaries[@]}"; do copy_with_libs "$b"; done
for drv in /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so; do copy_with_libs "$drv"; done
[[ -d /usr/lib/x86_64-linux-gnu/libfabric ]] && for p in /usr/lib/x86_64-linux-gnu/libfabric/*.so; do copy_with_libs "$p"; done
echo "driver rxe" > "$INITRD_DIR/etc/libibverbs.d/rxe.driver"
echo "root:x:0:0:root:/:/bin/sh" > "$INITRD_DIR/etc/passwd"

# Modules in dependency order (post-order walk of modules.dep).
declare -A seen=()
order=()
visit() {
  local mod=$1 deps
  [[ -n ${seen[$mod]:-} ]] && return 0
  seen[$mod]=1
  deps=$(grep "^$mod:" "$MODDIR/modules.dep" | cut -d: -f2)
  for d in $deps; do visit "$d"; done
  order+=("$mod")
}
for wanted in virtio_pci virtio_net crc32_generic rdma_rxe rdma_ucm ib_uverbs; do
  path=$(grep -o "^[^:]*/$wanted\.ko[^:]*" "$MODDIR/modules.dep" | head -1)
  [[ -n $path ]] || skip "module $wanted not in $KVER"
  visit "$path"
done
: > "$INITRD_DIR/modules.order"
for mod in "${order[@]}"; do
  mkdir -p "$INITRD_DIR/modules/$(dirname "$mod")"
  cp "$MODDIR/$mod" "$INITRD_DIR/modules/$mod"
  echo "/modules/$mod" >> "$INITRD_DIR/modules.order"
done

cat > "$INITRD_DIR/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/sbin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /tmp /var/tmp  # the initramfs root is already RAM-backed
for m in \$(cat /modules.order); do insmod \$m 2>/dev/null || echo "insmod \$m failed"; done
ip link set lo up; ip link set eth0 up; ip addr add $GUEST_IP/24 dev eth0
rdma link add rxe0 type rxe netdev eth0 && rdma link show
ls -l /dev/infiniband
ulimit -l unlimited
echo 1 > /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null
export EMP_TEST_PROVIDER=verbs EMP_TEST_DEVICE=rxe0 EMP_TEST_HOST=$GUEST_IP EMP_TEST_TIME_SCALE=8
cd /tmp
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
if [ $SUITE = engine ]; then
  echo "=== engine suites on \$(uname -r) ==="
  $UNIT --gtest_color=no && $INTEGRATION --gtest_color=no --gtest_filter='Engine*-*AccessMatrix*2threads*:*AccessMatrix*4threads*'
  rc=\$?
  echo "EMP-RDMA-RESULT rc=\$rc"
  poweroff -f
fi
echo "=== emp_remote_tests over libfabric verbs (soft-RoCE rxe0) ==="
$TESTS --gtest_color=no
rc=\$?
if [ -x $BENCH ]; then
  echo "=== emp-transport-bench over verbs (TCG: absolute times are emulated) ==="
  $BENCH --candidates verbs,emp-tcp,emp-shm --device rxe0 --host $GUEST_IP --iterations 200 --depth 8
fi
echo "EMP-RDMA-RESULT rc=\$rc"
poweroff -f
INIT
chmod +x "$INITRD_DIR/init"
INITRD=$CACHE/initrd-$SUITE.cpio.gz
(cd "$INITRD_DIR" && find . | cpio -o -H newc --quiet | gzip -1) > "$INITRD"

# 3. Boot.
LOG=$CACHE/serial-$SUITE.log
echo "$NAME: booting $KVER under QEMU/TCG (log: $LOG)"
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 -nographic -no-reboot \
  -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 panic=-1 loglevel=4" \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 -serial "file:$LOG" -monitor none -display none
qemu_rc=$?
set -e
grep -E "^\[( +OK| +FAILED|  SKIPPED|  PASSED|==========)|EMP-RDMA-RESULT|rxe0|machine|libfabric verbs|socket|engine suites|userfaultfd via" "$LOG" || true
if grep -q "EMP-RDMA-RESULT rc=0" "$LOG"; then
  echo "$NAME: PASSED"
  exit 0
fi
echo "$NAME: FAILED (qemu exit $qemu_rc); see $LOG" >&2
exit 1
