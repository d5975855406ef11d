#!/usr/bin/env bash
# Build the VM test host: Debian 12 with Debian's own kernel, the ZFS module built by DKMS for
# that kernel, and the storage tools; boots under QEMU from a read-only qcow2 base image.
# Called by testhosts.py with: OUT_DIR MIRROR. Writes OUT_DIR/{base.qcow2,vmlinuz,initrd.img,id_ed25519,kernel}.
set -euo pipefail
out=$1 mirror=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$out/rootfs
log=$out/build.log
: >"$log"
cleanup() {
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done
  return 0
}
trap cleanup EXIT
rm -rf "$root"
mkdir -p "$root"
include=$(grep -v '^#' "$here/packages-vm.txt" | paste -sd, -)
echo "debootstrap (about 2 min)" >&2
debootstrap --variant=minbase --components=main,contrib --include="$include" bookworm "$root" "$mirror" >>"$log" 2>&1 \
  || { tail -20 "$log" >&2; exit 1; }
kver=$(ls "$root/lib/modules" | sort -V | tail -1)
echo "$kver" >"$out/kernel"

echo testhost >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 testhost\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$root/etc/fstab"
printf 'deb %s bookworm main contrib\n' "$mirror" >"$root/etc/apt/sources.list"
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/20-eth0.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
rm -f "$root/etc/resolv.conf"
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
# Units that only slow a test VM's boot, or would run apt and man-db in the middle of a test.
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer systemd-udev-settle.service \
  networking.service samba-ad-dc.service e2scrub_reap.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$out/id_ed25519" "$out/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C gpunas-testhost -f "$out/id_ed25519"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$out/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
# QEMU's -kernel boot would bring back the image's first initramfs on every reboot, hiding what a
# role put into the guest's own (mdadm.conf, module blacklists). So a reboot kexecs into the guest's
# /vmlinuz and /initrd.img instead, as a boot loader would: kexec-tools loads them at shutdown and
# this hook executes them in place of the firmware reset.
sed -i 's/^LOAD_KEXEC=.*/LOAD_KEXEC=true/' "$root/etc/default/kexec"
install -d "$root/usr/lib/systemd/system-shutdown"
printf '#!/bin/sh\n[ "$1" = reboot ] && [ "$(cat /sys/kernel/kexec_loaded)" = 1 ] && exec /usr/sbin/kexec -e\nexit 0\n' \
  >"$root/usr/lib/systemd/system-shutdown/kexec-reboot"
chmod 0755 "$root/usr/lib/systemd/system-shutdown/kexec-reboot"
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >>"$root/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"

echo "ZFS module with DKMS for $kver (about 5 min)" >&2
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q update >>"$log" 2>&1
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends \
  "linux-headers-$kver" zfs-dkms zfsutils-linux zfs-zed >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
test -e "$root/lib/modules/$kver/updates/dkms/zfs.ko" || { echo "zfs.ko was not built for $kver" >&2; exit 1; }
chroot "$root" update-initramfs -u -k "$kver" >>"$log" 2>&1
chroot "$root" apt-get clean
rm -f "$root/usr/sbin/policy-rc.d"
cleanup
rm -rf "$root/var/lib/apt/lists/"*

cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
echo "disk image" >&2
rm -f "$out/root.img"
truncate -s 8G "$out/root.img"
mkfs.ext4 -q -F -L root -d "$root" "$out/root.img" >>"$log" 2>&1
qemu-img convert -c -O qcow2 -o compression_type=zstd "$out/root.img" "$out/base.qcow2"
rm -rf "$root" "$out/root.img"
