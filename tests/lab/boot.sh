#!/usr/bin/env bash
# Tier 3, run inside the lab (lab/run.sh): boots the Debian cloud kernel with the busybox
# initramfs under minnow on real (nested) KVM and checks what came back.
#   - the init's marker and `nproc` equal to --vcpus (SMP through ACPI's MADT)
#   - the boot-timer write was logged
#   - reboot -f (i8042 reset) and poweroff -f (ACPI S5) both end minnow with exit 0
#   - virtio-blk found through ACPI: read/write an ext4 disk, a read-only disk stays intact
# Prints "N passed, M failed" and exits non-zero if any check failed.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need boot-test
G=${MINNOW_CACHE:-/var/cache/minnow}/guest
KERNEL=$G/vmlinuz-cloud
INITRD=$G/initramfs.cpio.gz

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

boot() { # name, extra cmdline, vcpus, extra minnow args...
    local name=$1 cmdline=$2 vcpus=$3
    shift 3
    timeout 300 "$MINNOW" run --kernel "$KERNEL" --initrd "$INITRD" --vcpus "$vcpus" \
        --mem-mib 512 --cmdline "quiet $cmdline" "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
    echo "--- $name: exit $(cat "$T/$name.rc"); guest lines of interest and minnow's log:"
    tr -d '\r' <"$T/$name.out" | grep -a -E 'MINNOW|nproc=|blk:' | sed 's/^/    /'
    sed 's/^/    /' "$T/$name.err"
}

has() { grep -q -- "$2" "$T/$1"; }
rc_is() { [ "$(cat "$T/$1.rc")" = "$2" ]; }

boot reboot "" 2
check "marker printed by the guest's init" has reboot.out MINNOW-GUEST-UP
check "nproc in the guest equals --vcpus 2" has reboot.out "nproc=2"
check "boot time logged from the boot-timer write" has reboot.err "guest boot time:"
check "reboot -f (i8042 reset) exits 0" rc_is reboot 0
check "minnow reports the reset" has reboot.err "VM stopped: Reset"

boot poweroff "minnow.poweroff" 1
check "single vCPU guest sees nproc=1" has poweroff.out "nproc=1"
check "poweroff -f (ACPI S5) exits 0" rc_is poweroff 0
check "minnow reports the power-off" has poweroff.err "VM stopped: PowerOff"

# virtio-blk through ACPI: the cloud kernel has virtio_mmio as a module without
# cmdline devices, so it must find the disks in minnow's DSDT.
mkdir -p "$T/stage"
echo "hello-from-host" >"$T/stage/hello.txt"
mkfs.ext4 -q -F -d "$T/stage" "$T/root.ext4" 16M
head -c 1M /dev/urandom >"$T/ro.img"
ro_sum=$(sha256sum <"$T/ro.img")
boot blk "minnow.blktest" 1 --disk "$T/root.ext4" --disk "$T/ro.img,ro"
check "cloud kernel finds vda through ACPI" has blk.out "blk: vda 32768 sectors ro=0"
check "read-only disk is read-only in the guest" has blk.out "blk: vdb 2048 sectors ro=1"
check "guest reads a file from the ext4 disk" has blk.out "hello.txt says hello-from-host"
check "guest write refused on the read-only disk" has blk.out "blk: vdb write refused"
guest_file=$(debugfs -R "cat /guest.txt" "$T/root.ext4" 2>/dev/null)
check "file the guest wrote is on the host's image" test "$guest_file" = "written-by-guest"
check "read-only image is byte-identical" test "$(sha256sum <"$T/ro.img")" = "$ro_sum"
check "blk run exits 0" rc_is blk 0

finish boot-test
