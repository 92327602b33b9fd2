#!/usr/bin/env bash
# resources/guest/mkinitramfs.sh OUTPUT.cpio.gz
#
# Builds a tiny busybox initramfs for guest kernels booted by minnow (or QEMU in
# the lab). Its /init mounts proc/sys/devtmpfs, prints `MINNOW-GUEST-UP` and
# `nproc=N` (to the console and to /dev/kmsg at <1>), pokes the boot-timer
# device (MMIO byte write of 123 to 0xd0000000, Firecracker's convention), and
# then `reboot -f` (the VMM uses reboot=k: an i8042 reset). Kernel command-line flags,
# which combine: `minnow.blktest` (disk checks on vda/vdb), `minnow.shell` (a shell on
# the console first), `minnow.poweroff` (poweroff -f instead of reboot -f).
# Needs busybox-static (Debian package) and cpio.
set -euo pipefail

die() { echo "mkinitramfs: error: $*" >&2; exit 1; }
MODULES=
if [ "${1:-}" = --modules ]; then MODULES=${2:?}; shift 2; fi
[ $# -eq 1 ] || die "usage: $0 [--modules DIR] OUTPUT.cpio.gz"
OUT=$1

BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && { BUSYBOX=$b; break; }; done
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
if command -v file >/dev/null && file -L "$BUSYBOX" | grep -q 'dynamically linked'; then
    die "$BUSYBOX is dynamic; install busybox-static"
fi
command -v cpio >/dev/null || die "cpio not found"
"$BUSYBOX" --list | grep -qx devmem || echo "mkinitramfs: warning: busybox has no devmem applet; boot-timer write skipped" >&2

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
R=$T/root
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,root,etc}
cp "$BUSYBOX" "$R/bin/busybox"
for app in $("$BUSYBOX" --list); do
    [ -e "$R/bin/$app" ] || ln -s busybox "$R/bin/$app"
done
if [ -n "$MODULES" ]; then
    # Kernel modules (DIR/*.ko and DIR/order), loaded by /init in that order.
    mkdir -p "$R/lib/modules"
    cp "$MODULES"/*.ko "$MODULES/order" "$R/lib/modules/"
fi
# The kernel opens /dev/console before running /init; devtmpfs is not there yet.
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true

cat >"$R/init" <<'EOF'
#!/bin/busybox sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
[ -t 1 ] || exec </dev/console >/dev/console 2>&1
say() { echo "$1"; echo "<1>$1" >/dev/kmsg; }
if [ -f /lib/modules/order ]; then
    for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
fi
say "MINNOW-GUEST-UP"
say "nproc=$(nproc)"
# minnow's boot-timer device (same convention as Firecracker): MMIO byte write.
devmem 0xd0000000 8 123 || echo "boot-timer: devmem write failed"
# The flags below combine (tests/lab/boot.sh boots with minnow.blktest and minnow.shell).
CMDLINE=" $(cat /proc/cmdline) "
case "$CMDLINE" in
*" minnow.blktest "*)
    # vda: ext4 with hello.txt (write guest.txt); vdb: read-only (a write must fail).
    sleep 0.2   # let the block devices appear
    for d in vda vdb; do
        [ -e /sys/block/$d ] && say "blk: $d $(cat /sys/block/$d/size) sectors ro=$(cat /sys/block/$d/ro)"
    done
    mkdir -p /mnt
    if mount -t ext4 /dev/vda /mnt; then
        say "blk: hello.txt says $(cat /mnt/hello.txt)"
        echo "written-by-guest" >/mnt/guest.txt && sync && say "blk: wrote guest.txt"
        umount /mnt
    fi
    if [ -e /dev/vdb ]; then
        if echo x | dd of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; then
            say "blk: vdb write ACCEPTED"
        else
            say "blk: vdb write refused"
        fi
    fi
    sync
    ;;
esac
case "$CMDLINE" in
*" minnow.shell "*)
    echo "minnow.shell: starting a shell (exit or 'reboot -f' to leave)"
    setsid cttyhack sh -l
    ;;
esac
case "$CMDLINE" in
*" minnow.poweroff "*)
    sleep 0.1   # let the console drain
    poweroff -f
    ;;
esac
sleep 0.1   # let the console drain
reboot -f
EOF
chmod 755 "$R/init"

mkdir -p "$(dirname "$OUT")"
( cd "$R" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet ) | gzip -9 >"$OUT.tmp.$$"
mv "$OUT.tmp.$$" "$OUT"
echo "mkinitramfs: wrote $OUT ($(du -h "$OUT" | cut -f1))" >&2
