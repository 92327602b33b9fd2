#!/usr/bin/env bash
# Tier 3, run inside the lab: minnow's own minimal kernel (resources/guest/kernel) booting
# from an ext4 root filesystem on virtio-blk (found through virtio_mmio.device= on the
# command line), as a bzImage and as a PVH vmlinux.
#   - a file the guest writes and syncs is in the image afterwards (debugfs)
#   - a read-only root refuses writes and the image stays byte-identical
#   - the workload's exit status is minnow's exit code
#   - SMP through the MP table (this kernel has no ACPI): nproc = --vcpus
#   - the guest's timer is the TSC-deadline LAPIC timer minnow's CPUID offers
# Prints "N passed, M failed"; exits non-zero if a check failed.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need minimal-test kernel
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
rootfs minimal-test --size 32 "$T/rootfs.ext4"

vm() { # name, kernel, disk, vcpus, guest command...
    local name=$1 kernel=$2 disk=$3 vcpus=$4; shift 4
    timeout 300 "$MINNOW" run --kernel "$kernel" --disk "$disk" --vcpus "$vcpus" --mem-mib 256 \
        --cmdline "quiet -- $*" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
    echo "--- $name: exit $(cat "$T/$name.rc")"
    tr -d '\r' <"$T/$name.out" | grep -a -v '^\[' | grep -a . | sed 's/^/    /' | head -20
    sed 's/^/    /' "$T/$name.err"
}
has() { tr -d '\r' <"$T/$1.out" | grep -a -q -- "$2"; }
rc() { cat "$T/$1.rc"; }

vm write "$KDIR/bzImage" "$T/rootfs.ext4" 2 /bin/sh -c "\"echo from-the-guest >/written; sync; echo nproc=\$(nproc); echo timer=\$(cat /sys/devices/system/clockevents/clockevent0/current_device)\""
check "bzImage boots from the ext4 root and its command exits 0" test "$(rc write)" = 0
check "nproc = --vcpus 2 through the MP table" has write "nproc=2"
check "the LAPIC timer runs in TSC-deadline mode (CPUID leaf 1)" has write "timer=lapic-deadline"
check "the file the guest wrote is in the image" test "$(debugfs -R 'cat /written' "$T/rootfs.ext4" 2>/dev/null)" = "from-the-guest"
check "boot time logged" grep -q "guest boot time" "$T/write.err"

vm pvh "$KDIR/vmlinux" "$T/rootfs.ext4" 1 /bin/sh -c "\"echo pvh-ok; exit 7\""
check "PVH vmlinux boots and runs its command" has pvh "pvh-ok"
check "the workload's exit status 7 is minnow's exit code" test "$(rc pvh)" = 7

sum=$(sha256sum <"$T/rootfs.ext4")
vm ro "$KDIR/bzImage" "$T/rootfs.ext4,ro" 1 /bin/sh -c "\"echo x >/nope && echo write-accepted || echo write-refused\""
check "read-only root refuses the write" has ro "write-refused"
check "read-only image is byte-identical" test "$(sha256sum <"$T/rootfs.ext4")" = "$sum"

finish minimal-test
