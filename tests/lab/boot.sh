#!/usr/bin/env bash
# Tier 3, run inside the lab (lab/run.sh): boots Debian's cloud kernels (6.1, and 6.12
# from bookworm-security) with the busybox initramfs under minnow on real (nested) KVM
# and checks what came back. Two boots per kernel:
#   reboot: the default init on 1 vCPU
#     - the init's marker and `nproc=1` written by userspace to the console (the init
#       also copies them to /dev/kmsg, and the kernel's copy alone does not count)
#     - the boot-timer write was logged; reboot -f (i8042 reset) ends minnow with exit 0
#   shell: 2 vCPUs, two disks and a TAP; the init runs the disk checks, then a shell on
#     the serial console, into which this script types (minnow's stdin is a FIFO):
#     - a command's output shows the input reached the shell, with nproc=2 (SMP through
#       the MADT) and the UART on an IO-APIC interrupt
#     - virtio-blk found through ACPI: read/write an ext4 disk, a read-only disk stays intact
#     - virtio-net found through ACPI: the guest pings the host over the TAP
#     - poweroff -f (ACPI S5) ends minnow with exit 0
#
#   boot.sh [VERSION...]   kernels to test (6.1, 6.12; default both)
# Prints "boot-test: N passed, M failed" and exits non-zero if any check failed.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need boot-test
G=${MINNOW_CACHE:-/var/cache/minnow}/guest
KERNELS=("$@")
[ ${#KERNELS[@]} -gt 0 ] || KERNELS=(6.1 6.12)

# On the lab's tmpfs: its 9p root cannot hold the FIFO that is the shell's input.
T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
NS=minnow-boot-$$
VM_PID= STARTED=0
cleanup() {
    [ -n "$VM_PID" ] && kill "$VM_PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
ip netns add "$NS" || { echo "boot-test: ip netns add failed" >&2; exit 2; }
in_ns ip link set lo up
HOST_IP=169.254.102.1 GUEST_IP=169.254.102.2

has() { tr -d '\r' <"$T/$1" | grep -a -q -F -- "$2"; }
rc_is() { [ "$(cat "$T/$1.rc")" = "$2" ]; }
# said NAME TEXT: the guest's userspace wrote TEXT to the console: it occurs more often
# than the kernel's copies of it ("[ uptime] TEXT", from the init's /dev/kmsg echo).
said() {
    local all kernel
    all=$(tr -d '\r' <"$T/$1.out" | grep -a -o -F -- "$2" | wc -l)
    kernel=$(tr -d '\r' <"$T/$1.out" | grep -a -o -E -- "\] $2" | wc -l)
    [ "$all" -gt "$kernel" ]
}
show() { # name: exit status, time taken, the console lines of interest and minnow's log
    echo "--- $1: exit $(cat "$T/$1.rc") after $((SECONDS - STARTED)) s; guest lines of interest and minnow's log:"
    tr -d '\r' <"$T/$1.out" | grep -a -E 'MINNOW|nproc=|blk:|typed-|irq-|net-|minnow.shell' | sed 's/^/    /'
    sed 's/^/    /' "$T/$1.err"
}

boot() { # name, extra cmdline, vcpus, extra minnow args...
    local name=$1 cmdline=$2 vcpus=$3
    shift 3
    STARTED=$SECONDS
    timeout 300 "$MINNOW" run --kernel "$KERNEL" --initrd "$INITRD" --vcpus "$vcpus" \
        --mem-mib 512 --cmdline "quiet $cmdline" "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
    show "$name"
}

# start_shell NAME CMDLINE VCPUS MINNOW-ARGS...: boots in the network namespace with the
# init's console shell; stdin is a FIFO that type_line writes to (fd $IN). VM_PID is
# minnow's own (ip netns exec execs it), so stop_shell's kill reaches minnow itself.
start_shell() {
    local name=$1 cmdline=$2 vcpus=$3
    shift 3
    STARTED=$SECONDS
    mkfifo "$T/$name.in" || return 1
    exec {IN}<>"$T/$name.in"
    in_ns "$MINNOW" run --kernel "$KERNEL" --initrd "$INITRD" --vcpus "$vcpus" \
        --mem-mib 512 --cmdline "quiet minnow.shell $cmdline" "$@" \
        <&"$IN" >"$T/$name.out" 2>"$T/$name.err" &
    VM_PID=$!
}
type_line() { printf '%s\n' "$1" >&"$IN"; }
# wait_for NAME TEXT SECONDS: until the console shows TEXT (false if the VM ended first).
wait_for() {
    local end=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$end" ]; do
        has "$1.out" "$2" && return 0
        kill -0 "$VM_PID" 2>/dev/null || break
        sleep 0.5
    done
    has "$1.out" "$2"
}
# stop_shell NAME: waits for the VM to end (up to 120 s, then stops it with SIGTERM) and
# records its status.
stop_shell() {
    local end=$((SECONDS + 120)) rc=1
    if [ -n "$VM_PID" ]; then
        while kill -0 "$VM_PID" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.5; done
        kill "$VM_PID" 2>/dev/null
        wait "$VM_PID"
        rc=$?
        VM_PID=
    fi
    [ -n "${IN:-}" ] && exec {IN}>&-
    IN=
    echo "$rc" >"$T/$1.rc"
    show "$1"
}

# The disks for the shell boot: an ext4 root the guest reads and writes, a read-only one.
mkdir -p "$T/stage"
echo "hello-from-host" >"$T/stage/hello.txt"
head -c 1M /dev/urandom >"$T/ro.img"
ro_sum=$(sha256sum <"$T/ro.img")
taps=0

for v in "${KERNELS[@]}"; do
    # lab/setup.sh's names: 6.1 unsuffixed, other versions with -VERSION.
    sfx=-$v
    [ "$v" = 6.1 ] && sfx=
    KERNEL=$G/vmlinuz-cloud$sfx INITRD=$G/initramfs$sfx.cpio.gz
    echo "=== Debian cloud kernel $v ($(cat "$G/cloud$sfx-kver" 2>/dev/null))"
    if [ ! -s "$KERNEL" ] || [ ! -s "$INITRD" ]; then
        check "$v: kernel and initramfs present (lab/setup.sh)" false
        continue
    fi

    boot "reboot-$v" "" 1
    check "$v: init's marker on the console from userspace" said "reboot-$v" MINNOW-GUEST-UP
    check "$v: init's nproc=1 on the console from userspace (1 vCPU)" said "reboot-$v" "nproc=1"
    check "$v: boot time logged from the boot-timer write" has "reboot-$v.err" "guest boot time:"
    check "$v: reboot -f (i8042 reset) exits 0" rc_is "reboot-$v" 0
    check "$v: minnow reports the reset" has "reboot-$v.err" "VM stopped: Reset"

    # virtio-blk and virtio-net through ACPI: the cloud kernel has virtio_mmio as a
    # module without cmdline devices, so it must find them in minnow's DSDT.
    mkfs.ext4 -q -F -d "$T/stage" "$T/root-$v.ext4" 16M
    name=shell-$v tap=mboot$((++taps))
    up=0
    if in_ns "$MINNOW" net setup "$tap" --host-ip "$HOST_IP/30" &&
        start_shell "$name" "minnow.blktest" 2 --disk "$T/root-$v.ext4" --disk "$T/ro.img,ro" \
            --net "tap=$tap"; then
        wait_for "$name" "minnow.shell: starting a shell" 300 && wait_for "$name" "# " 60 && up=1
        echo "    ($name: shell prompt after $((SECONDS - STARTED)) s)"
    else
        : >"$T/$name.out"
        echo "boot-test: could not start the VM" >"$T/$name.err"
    fi
    check "$v: the init's shell starts on the console" test "$up" = 1
    if [ "$up" = 1 ]; then
        # What is typed is echoed as typed; only the shell's output has the results.
        type_line 'echo typed-$((40 + 2)) nproc=$(nproc) irq-$(grep -c "IO-APIC.*4-edge.*ttyS0" /proc/interrupts)'
        wait_for "$name" "typed-42 " 60
        echo "    ($name: typed command answered after $((SECONDS - STARTED)) s)"
        type_line "ip addr add $GUEST_IP/30 dev eth0 && ip link set eth0 up && ping -c 1 -W 20 $HOST_IP >/dev/null && echo net-\$((1 + 1))-ok"
        wait_for "$name" "net-2-ok" 90
        echo "    ($name: ping answered after $((SECONDS - STARTED)) s)"
        type_line "poweroff -f"
    fi
    stop_shell "$name"
    in_ns "$MINNOW" net teardown "$tap"
    check "$v: console input reaches the guest's shell" has "$name.out" "typed-42 "
    check "$v: nproc in the guest equals --vcpus 2" has "$name.out" "typed-42 nproc=2 "
    check "$v: the UART has an IO-APIC interrupt (GSI 4)" has "$name.out" "nproc=2 irq-1"
    check "$v: finds vda through ACPI" has "$name.out" "blk: vda 32768 sectors ro=0"
    check "$v: read-only disk is read-only in the guest" has "$name.out" "blk: vdb 2048 sectors ro=1"
    check "$v: guest reads a file from the ext4 disk" has "$name.out" "hello.txt says hello-from-host"
    check "$v: guest write refused on the read-only disk" has "$name.out" "blk: vdb write refused"
    guest_file=$(debugfs -R "cat /guest.txt" "$T/root-$v.ext4" 2>/dev/null)
    check "$v: file the guest wrote is on the host's image" test "$guest_file" = "written-by-guest"
    check "$v: read-only image is byte-identical" test "$(sha256sum <"$T/ro.img")" = "$ro_sum"
    check "$v: guest pings the host over virtio-net" has "$name.out" "net-2-ok"
    check "$v: poweroff -f (ACPI S5) exits 0" rc_is "$name" 0
    check "$v: minnow reports the power-off" has "$name.err" "VM stopped: PowerOff"
done

finish boot-test
