#!/usr/bin/env bash
# Prints the path of a Debian kernel (vmlinuz) for test guests, downloading Debian's
# linux-image package into CACHE_DIR once (apt-get download + dpkg-deb -x).
#   scripts/guest-kernel.sh CACHE_DIR      exit 77 with the reason when it cannot
set -euo pipefail
CACHE=$1
KDIR=$CACHE/kernel
mkdir -p "$CACHE"
if ! ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | grep -o 'linux-image-[0-9][^ ]*-amd64' | head -1)
  [[ -n $pkg ]] || { echo "cannot find the Debian kernel package (apt-get update?)" >&2; exit 77; }
  echo "downloading $pkg" >&2
  (cd "$CACHE" && rm -f linux-image-*.deb && apt-get download "$pkg" >/dev/null) || { echo "apt-get download $pkg failed" >&2; exit 77; }
  rm -rf "$KDIR" && dpkg-deb -x "$CACHE"/linux-image-*.deb "$KDIR"
fi
ls "$KDIR"/boot/vmlinuz-* | head -1
