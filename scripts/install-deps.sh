#!/bin/sh
# Installs the Debian packages given as arguments that are not installed yet.
# Needs root only when something is missing.
set -eu
missing=""
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $pkg"
  fi
done
[ -z "$missing" ] && exit 0
echo "emp: installing missing Debian packages:$missing"
if [ "$(id -u)" != 0 ]; then
  echo "emp: error: installing packages needs root (run as root, or: apt-get install$missing)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || true
apt-get install -y -q --no-install-recommends $missing
