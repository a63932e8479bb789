#!/usr/bin/env bash
# Install the Debian packages neuralcodec needs at run time, only when they are missing:
#   libusb-1.0-0  (open3d imports it)
#   chromium      (the demo's browser test)
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: missing system packages ${missing[*]} (install them with apt-get as root)" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
