#!/usr/bin/env bash
# Tier 3, run inside the lab (lab/run.sh): virtio-net over TAP with the minimal kernel.
#   - a guest gets its address from ip=, pings the host over a TAP,
#   - moves a 64 MiB TCP stream each way with busybox nc, checked by sha256 on both
#     ends,
#   - two microVMs on one bridge ping each other.
# Everything lives in a network namespace this script creates, with link-local
# addresses. Prints "N passed, M failed"; exits non-zero if a check failed.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need net-test kernel

# Files on the lab's tmpfs, not its 9p root: this tests virtio-net, not 9p (and with them on
# 9p guests triple-faulted far more often: docs/lab.md, "Pitfalls").
T=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
NS=minnow-net-$$
cleanup() { ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$NS" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
ip netns add "$NS" || { echo "net-test: ip netns add failed" >&2; exit 2; }
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

# The guest side of the tests, put on the root filesystem.
mkdir -p "$T/add/test"
cat >"$T/add/test/stream.sh" <<'G'
#!/bin/sh
# Guest: ping the host, send it 64 MiB, receive 64 MiB from it; print both checksums.
ping -c 3 -W 5 169.254.100.1 || exit 10
head -c 67108864 /dev/urandom >/tmp/out
echo "guest-sent $(sha256sum </tmp/out | cut -d' ' -f1)"
nc 169.254.100.1 5001 </tmp/out || exit 11
rm /tmp/out
# busybox's small nc quits at EOF on either side: give it a stdin that stays open with
# nothing to send (a FIFO opened read-write), so it reads until the host closes.
mkfifo /tmp/hold
nc 169.254.100.1 5002 <>/tmp/hold >/tmp/in || exit 12
echo "guest-received $(sha256sum </tmp/in | cut -d' ' -f1) $(wc -c </tmp/in)"
# For the record: interrupts taken per virtio device (the disk is virtio0, the NIC virtio1).
echo "guest-interrupts $(grep virtio /proc/interrupts | tr -s ' ' | tr '\n' ';')"
G
cat >"$T/add/test/peer.sh" <<'G'
#!/bin/sh
# Guest on the bridge: wait (up to about 2 minutes) for the other VM to answer, ping it
# 3 times, then stay up a while so that the other VM, if it booted later, can ping us.
# (busybox ping -c N sends N pings whatever -w says, so waiting needs a loop.)
n=0
until ping -c 1 -W 1 "$1" >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$n" -lt 120 ] || break
done
ping -c 3 -W 5 "$1" || exit 1
sleep 30
G
chmod +x "$T/add/test/"*.sh
rootfs net-test --size 64 --add "$T/add" "$T/rootfs.ext4"
cp "$T/rootfs.ext4" "$T/rootfs-b.ext4"

run_vm() { # out-prefix, rootfs, net, guest command...
    local name=$1 disk=$2 net=$3; shift 3
    in_ns timeout 600 "$MINNOW" run --kernel "$KDIR/bzImage" --disk "$disk" --mem-mib 512 \
        --net "$net" --cmdline "quiet -- $*" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
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
