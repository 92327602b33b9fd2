#!/usr/bin/env bash
# Tier 3, run inside the lab (lab/run.sh): virtio-net over TAP with the minimal kernel.
#   - a guest gets its address from ip=, pings the host over a TAP,
#   - moves 64 MiB over TCP each way (busybox httpd + wget; busybox's small nc quits at
#     EOF on stdin, so it cannot carry a stream one way), checked by sha256 on both ends,
#   - two microVMs on one bridge ping each other.
# Everything lives in a network namespace this script creates, with link-local
# addresses. Prints "N passed, M failed"; exits non-zero if a check failed.
# Writes transfer timings to $MINNOW_NET_TIMES if set (used by make bench).
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need net-test kernel

T=$(mktemp -d)
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
# Guest: ping the host, fetch 64 MiB from it, serve 64 MiB to it; print both checksums.
ping -c 3 -W 5 169.254.100.1 || exit 10
mkdir -p /tmp/srv
head -c 67108864 /dev/urandom >/tmp/srv/out
echo "guest-serves $(sha256sum </tmp/srv/out | cut -d' ' -f1)"
httpd -p 8080 -h /tmp/srv || exit 11
wget -q -O /tmp/in http://169.254.100.1:8080/to_guest || exit 12
echo "guest-received $(sha256sum </tmp/in | cut -d' ' -f1) $(wc -c </tmp/in)"
rm /tmp/in
# Stay up until the host has fetched /out and says so.
nc -l -p 5003 >/dev/null
G
cat >"$T/add/test/peer.sh" <<'G'
#!/bin/sh
# Guest on the bridge: ping the other VM (give it time to boot).
ping -c 3 -w 120 "$1"
G
chmod +x "$T/add/test/"*.sh
bash "$LAB_TESTS/../../resources/guest/mkrootfs.sh" --size 64 --add "$T/add" "$T/rootfs.ext4" 2>/dev/null
cp "$T/rootfs.ext4" "$T/rootfs-b.ext4"

run_vm() { # out-prefix, rootfs, net, guest command...
    local name=$1 disk=$2 net=$3; shift 3
    in_ns timeout 600 "$MINNOW" run --kernel "$KDIR/bzImage" --disk "$disk" --mem-mib 512 \
        --net "$net" --cmdline "quiet -- $*" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}

# --- one VM, host <-> guest over a TAP ---------------------------------------------
in_ns "$MINNOW" net setup mtap0 --host-ip 169.254.100.1/30 || { echo "net-test: TAP set-up failed" >&2; exit 1; }
mkdir -p "$T/srv"
head -c 67108864 /dev/urandom >"$T/srv/to_guest"
in_ns busybox httpd -f -p 169.254.100.1:8080 -h "$T/srv" &
httpd_pid=$!
run_vm stream "$T/rootfs.ext4" "tap=mtap0,guest-ip=169.254.100.2/30,host-ip=169.254.100.1/30" /bin/sh /test/stream.sh &
vm_pid=$!
# Fetch the guest's 64 MiB once its server is up (bounded), then let the guest stop.
fetched=0 start=
for _ in $(seq 600); do
    kill -0 "$vm_pid" 2>/dev/null || break
    start=$(date +%s.%N)
    if in_ns busybox wget -q -T 30 -O "$T/from_guest" http://169.254.100.2:8080/out 2>/dev/null; then
        fetched=1
        end=$(date +%s.%N)
        break
    fi
    sleep 1
done
[ "$fetched" = 1 ] && echo done | in_ns busybox nc 169.254.100.2 5003
wait "$vm_pid"
kill "$httpd_pid" 2>/dev/null
tr -d '\r' <"$T/stream.out" | grep -a -E "guest-|packets" | sed 's/^/    /'
sed 's/^/    /' "$T/stream.err"
served=$(tr -d '\r' <"$T/stream.out" | sed -n 's/.*guest-serves \([0-9a-f]*\).*/\1/p')
received=$(tr -d '\r' <"$T/stream.out" | sed -n 's/.*guest-received \([0-9a-f]*\).*/\1/p')
check "guest pings the host and both transfers complete (exit 0)" test "$(cat "$T/stream.rc")" = 0
check "64 MiB guest->host arrives intact (sha256)" test "$fetched" = 1 -a -n "$served" -a "$served" = "$(sha256sum <"$T/from_guest" | cut -d' ' -f1)"
check "64 MiB host->guest arrives intact (sha256)" test -n "$received" -a "$received" = "$(sha256sum <"$T/srv/to_guest" | cut -d' ' -f1)"
[ -n "${MINNOW_NET_TIMES:-}" ] && [ "$fetched" = 1 ] && echo "guest_to_host_seconds $(echo "$end - $start" | bc)" >>"$MINNOW_NET_TIMES"

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
done
check "VM a reaches VM b over the bridge" test "$(cat "$T/peer-a.rc")" = 0
check "VM b reaches VM a over the bridge" test "$(cat "$T/peer-b.rc")" = 0

finish net-test
