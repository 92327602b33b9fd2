#!/usr/bin/env bash
# Tier 3, run inside the lab (lab/run.sh): virtio-net over TAP with the minimal kernel.
#   - a guest gets its address from ip=, pings the host over a TAP,
#   - moves a 64 MiB TCP stream each way with busybox nc, checked by sha256 on both
#     ends,
#   - two microVMs on one bridge ping each other.
# Everything lives in a network namespace this script creates, with link-local
# addresses. Prints "N passed, M failed"; exits non-zero if a check failed.
#
#   net.sh [--vmm minnow|qemu] [--files tmpfs|9p]
# --vmm qemu runs the same guests under QEMU (-M microvm, virtio-net-device on the same
# TAPs) as a control; --files 9p keeps the host's files on the lab's 9p root. Both are
# for the nested-fault experiments in docs/lab.md ("Pitfalls"); make test runs the default.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need net-test kernel
usage() { echo "usage: $0 [--vmm minnow|qemu] [--files tmpfs|9p]" >&2; exit 2; }
VMM=minnow FILES=tmpfs
while [ $# -gt 0 ]; do
    case "$1" in
        --vmm) VMM=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        --files) FILES=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        *) usage ;;
    esac
done
case "$VMM:$FILES" in minnow:tmpfs | minnow:9p | qemu:tmpfs | qemu:9p) ;; *) usage ;; esac

# Files on the lab's tmpfs by default, not its 9p root: this tests virtio-net, not 9p.
if [ "$FILES" = 9p ]; then T=$(mktemp -d -p /var/tmp); else T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d); fi
NS=minnow-net-$$
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$NS" 2>/dev/null
    rm -rf "$T"
    [ "${TRACING:-0}" = 0 ] || echo 0 >"$TRACE/events/kvm/kvm_exit/enable"
}
trap cleanup EXIT
ip netns add "$NS" || { echo "net-test: ip netns add failed" >&2; exit 2; }
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

# The guest side of the tests (tests/lab/guest/), put on the root filesystem.
mkdir -p "$T/add"
cp -r "$LAB_TESTS/guest" "$T/add/test"
rootfs net-test --size 64 --add "$T/add" "$T/rootfs.ext4"
cp "$T/rootfs.ext4" "$T/rootfs-b.ext4"

# In the lab (AMD SVM), the lab KVM's shutdown exits (a nested guest's triple fault) are
# traced and printed after each VM run, with where the guest was: QEMU exits 0 on a guest
# reset, so this is what tells a fault from a clean stop (a QEMU guest's own reboot=t
# reboot is one too, in the reboot path). The event is switched off again on exit.
TRACE=/sys/kernel/tracing
TRACING=0
if [ "${MINNOW_LAB:-}" = 1 ] && grep -q -w svm /proc/cpuinfo; then
    [ -d "$TRACE/events" ] || mount -t tracefs nodev "$TRACE" 2>/dev/null
    if [ -w "$TRACE/events/kvm/kvm_exit/filter" ]; then
        echo 'exit_reason == 127' >"$TRACE/events/kvm/kvm_exit/filter" # SVM_EXIT_SHUTDOWN
        echo 1 >"$TRACE/events/kvm/kvm_exit/enable" && TRACING=1
    fi
fi
shutdowns() { grep -a 'reason shutdown' "$TRACE/trace" 2>/dev/null; }

# mask PREFIX: the dotted netmask of a prefix length.
mask() {
    local m=$(((0xffffffff << (32 - $1)) & 0xffffffff))
    echo "$((m >> 24)).$(((m >> 16) & 255)).$(((m >> 8) & 255)).$((m & 255))"
}

# qemu_args ROOTFS NET COMMAND...: sets QEMU_ARGS to run the guest under QEMU, with the
# ip= parameter minnow builds from NET (tap=NAME,guest-ip=A/P[,host-ip=H/P]).
qemu_args() {
    local disk=$1 net=$2 tap guest gw b c d
    shift 2
    tap=$(echo "$net" | sed -n 's/.*tap=\([^,]*\).*/\1/p')
    guest=$(echo "$net" | sed -n 's/.*guest-ip=\([^,]*\).*/\1/p')
    gw=$(echo "$net" | sed -n 's/.*host-ip=\([^/,]*\).*/\1/p')
    # One MAC per guest address (QEMU would give every VM the same one).
    IFS=. read -r _ b c d <<<"${guest%/*}"
    QEMU_ARGS=(-enable-kvm -cpu host -M microvm,acpi=off,auto-kernel-cmdline=off -m 512 -smp 1
        -nographic -no-reboot -kernel "$KDIR/bzImage"
        -append "console=ttyS0 reboot=t panic=1 quiet root=/dev/vda rw virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11 ip=${guest%/*}::$gw:$(mask "${guest#*/}")::eth0:off -- $*"
        -drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0
        -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "virtio-net-device,netdev=n0,mac=$(printf '52:54:00:%02x:%02x:%02x' "$b" "$c" "$d")")
}

run_vm() { # out-prefix, rootfs, net, guest command...
    local name=$1 disk=$2 net=$3 before=0 rc
    shift 3
    [ "$TRACING" = 1 ] && before=$(shutdowns | wc -l)
    if [ "$VMM" = qemu ]; then
        qemu_args "$disk" "$net" "$@"
        in_ns timeout 600 qemu-system-x86_64 "${QEMU_ARGS[@]}" </dev/null >"$T/$name.out" 2>"$T/$name.err"
        # QEMU does not pass the workload's exit code on: take minnow-init's report of it.
        rc=$(tr -d '\r' <"$T/$name.out" | sed -n 's/.*minnow-init: exit \([0-9]*\).*/\1/p' | tail -n1)
        rc=${rc:-2}
    else
        in_ns timeout 600 "$MINNOW" run --kernel "$KDIR/bzImage" --disk "$disk" --mem-mib 512 \
            --net "$net" --cmdline "quiet -- $*" </dev/null >"$T/$name.out" 2>"$T/$name.err"
        rc=$?
    fi
    echo "$rc" >"$T/$name.rc"
    [ "$TRACING" = 0 ] || shutdowns | tail -n +$((before + 1)) | sed 's/.*\(rip [0-9a-fx]*\).*\(intr_info [0-9a-fx]*\).*/lab KVM shutdown exit (a guest triple fault) while this VM ran: \1 \2/' >>"$T/$name.err"
}

# --- one VM, host <-> guest over a TAP ---------------------------------------------
in_ns "$MINNOW" net setup mtap0 --host-ip 169.254.100.1/30 || { echo "net-test: TAP set-up failed" >&2; exit 1; }
head -c 67108864 /dev/urandom >"$T/to_guest"
# busybox's small nc quits at EOF on its stdin: keep this listener's stdin open so it
# reads the guest's stream until the guest closes the connection.
sleep 3599 | in_ns busybox nc -l -p 5001 >"$T/from_guest" &
nc_pid=$!
# This one sends the file and closes the connection at its end (the guest reads to EOF).
in_ns busybox nc -l -p 5002 <"$T/to_guest" &
nc_out_pid=$!
run_vm stream "$T/rootfs.ext4" "tap=mtap0,guest-ip=169.254.100.2/30,host-ip=169.254.100.1/30" /bin/sh /test/stream.sh
kill "$nc_pid" "$nc_out_pid" 2>/dev/null
pkill -x -f "sleep 3599" 2>/dev/null
if [ "$(cat "$T/stream.rc")" = 0 ]; then
    tr -d '\r' <"$T/stream.out" | grep -a -E "guest-|packets" | sed 's/^/    /'
else # the guest console's last lines say how far it got
    tr -d '\r' <"$T/stream.out" | tail -n 20 | sed 's/^/    console| /'
fi
sed 's/^/    /' "$T/stream.err"
sent=$(tr -d '\r' <"$T/stream.out" | sed -n 's/.*guest-sent \([0-9a-f]*\).*/\1/p')
received=$(tr -d '\r' <"$T/stream.out" | sed -n 's/.*guest-received \([0-9a-f]*\).*/\1/p')
check "guest pings the host and both transfers complete (exit 0)" test "$(cat "$T/stream.rc")" = 0
check "64 MiB guest->host arrives intact (sha256)" test -n "$sent" -a "$sent" = "$(sha256sum <"$T/from_guest" | cut -d' ' -f1)"
check "64 MiB host->guest arrives intact (sha256)" test -n "$received" -a "$received" = "$(sha256sum <"$T/to_guest" | cut -d' ' -f1)"

# --- two VMs on one bridge -------------------------------------------------------
in_ns ip link add mbr0 type bridge
in_ns ip link set mbr0 up
for t in mtapa mtapb; do
    in_ns "$MINNOW" net setup "$t"
    in_ns ip link set "$t" master mbr0
done
run_vm peer-a "$T/rootfs.ext4" "tap=mtapa,guest-ip=169.254.101.1/24" /bin/sh /test/peer.sh 169.254.101.2 &
run_vm peer-b "$T/rootfs-b.ext4" "tap=mtapb,guest-ip=169.254.101.2/24" /bin/sh /test/peer.sh 169.254.101.1 &
wait
for v in peer-a peer-b; do
    tr -d '\r' <"$T/$v.out" | grep -a -E "packets" | sed "s/^/    $v: /"
    echo "    $v: exit $(cat "$T/$v.rc")"
    sed "s/^/    $v: /" "$T/$v.err"
done
check "VM a reaches VM b over the bridge" test "$(cat "$T/peer-a.rc")" = 0
check "VM b reaches VM a over the bridge" test "$(cat "$T/peer-b.rc")" = 0

finish net-test
