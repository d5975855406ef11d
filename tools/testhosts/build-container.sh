#!/usr/bin/env bash
# Build the system-container test host: a Debian 12 minbase root with systemd as PID 1, imported
# into rootful podman. Called by testhosts.py with: OUT_DIR IMAGE_REF KEY MIRROR.
set -euo pipefail
out=$1 image=$2 key=$3 mirror=$4
here=$(cd "$(dirname "$0")" && pwd)
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root"
include=$(grep -v '^#' "$here/packages-container.txt" | paste -sd, -)
debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 \
  || { tail -20 "$out/debootstrap.log" >&2; exit 1; }
echo testhost >"$root/etc/hostname"
# Timers that would run apt or man-db in the middle of a test, and units that cannot work in a container.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service systemd-remount-fs.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
tar -C "$root" -c . | podman import --change 'CMD ["/sbin/init"]' --change "LABEL gpunas.testhost.key=$key" - "$image" >/dev/null
rm -rf "$root"
