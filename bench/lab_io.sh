#!/usr/bin/env bash
# bench/lab_io.sh [--rounds K] [--out FILE.md]
# Run inside the nested-KVM lab:  bash lab/run.sh --timeout 2400 -- bash bench/lab_io.sh
#
# minnow's own minimal kernel + busybox rootfs, K interleaved rounds (default 3) of:
#   1. boot to init: minnow vs QEMU -M microvm (same bzImage, rootfs on virtio-blk)
#   2. sequential 4 KiB dd on a 64 MiB second disk: guest vs the lab host on the same image
#   3. 64 MiB TCP each way (busybox nc): guest <-> host over TAP vs two netns over veth
# Writes FILE.md and FILE.json (default bench/results/lab-io.{md,json}) and prints the table.
# No speed thresholds: exits 1 only if a measurement did not run (its row says why).
# Env: MINNOW (default target/release/minnow), MINNOW_CACHE (default /var/cache/minnow).
set -uo pipefail
export PYTHONDONTWRITEBYTECODE=1

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
ROUNDS=3 OUT=$BENCH/results/lab-io.md
usage() { sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "lab-io: unknown argument: $1" >&2; usage ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "lab-io: --rounds must be a positive integer" >&2; exit 2; }
die() { echo "lab-io: $*" >&2; exit 1; }
KDIR=${MINNOW_CACHE:-/var/cache/minnow}/kernel/current
MINNOW_SRC=$(realpath "${MINNOW:-$REPO/target/release/minnow}")
[ -e /dev/kvm ] || die "no /dev/kvm; run me through lab/run.sh"
[ "${MINNOW_LAB:-}" = 1 ] || echo "lab-io: warning: MINNOW_LAB is not set; this is meant to run inside lab/run.sh" >&2
[ -f "$KDIR/bzImage" ] || die "no minimal kernel in $KDIR; run resources/guest/kernel/build.sh"
[ -x "$MINNOW_SRC" ] || die "$MINNOW_SRC missing; cargo build --release"
for c in python3 qemu-system-x86_64 busybox ip; do command -v "$c" >/dev/null || die "$c not found"; done
case "$OUT" in *.md) JSON=${OUT%.md}.json ;; *) JSON=$OUT.json ;; esac
mkdir -p "$(dirname "$OUT")" || die "cannot create $(dirname "$OUT")"

# Everything the VMs touch lives on tmpfs (/dev/shm in the lab): no 9p in the I/O paths,
# no device nodes on 9p, and private copies (a concurrent rebuild can't change them).
W=$(mktemp -d -p /dev/shm minnow-io.XXXXXX) || die "mktemp failed"
NSP=minnow-io-$$
cleanup() {
    for ns in "$NSP-a" "$NSP-b"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$W"
}
trap cleanup EXIT
cp "$MINNOW_SRC" "$W/minnow" && cp "$KDIR/bzImage" "$W/bzImage" || die "cannot copy minnow / bzImage"
KINFO=$(sed -n "s/^kernel_release=//p" "$KDIR/info" 2>/dev/null)

# Guest side of 2 and 3, put on the rootfs as /bench/*.sh.
mkdir -p "$W/add/bench"
cat >"$W/add/bench/disk.sh" <<'G'
#!/bin/sh
# 64 MiB sequential read then write of /dev/vdb, 4 KiB blocks, O_DIRECT when dd can.
# busybox dd prints no timing line: time it with /proc/uptime (10 ms resolution).
up() { cut -d' ' -f1 /proc/uptime; }
mode=direct
dd if=/dev/vdb of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || mode=cached
echo "DISK-MODE $mode"
if [ $mode = direct ]; then RF=iflag=direct WF=oflag=direct; else RF= WF=; sync; echo 3 >/proc/sys/vm/drop_caches; fi
a=$(up); dd if=/dev/vdb of=/dev/null bs=4k $RF 2>/dev/null; rc=$?; b=$(up)
echo "DISK-READ rc=$rc start=$a end=$b"
[ $mode = direct ] || echo 3 >/proc/sys/vm/drop_caches
a=$(up); dd if=/dev/zero of=/dev/vdb bs=4k count=16384 $WF conv=fsync 2>/dev/null; rc=$?; b=$(up)
echo "DISK-WRITE rc=$rc start=$a end=$b"
G
cat >"$W/add/bench/tcp.sh" <<'G'
#!/bin/sh
# 64 MiB to the host (port 5001), then 64 MiB from it (port 5002); the host times both.
dd if=/dev/zero of=/tmp/out bs=65536 count=1024 2>/dev/null
nc -w 10 "$1" 5001 </tmp/out || { echo "TCP-FAIL send"; exit 11; }
rm -f /tmp/out
nc -w 10 "$1" 5002 >/dev/null || { echo "TCP-FAIL recv"; exit 12; }
echo TCP-DONE
G
chmod +x "$W/add/bench/"*.sh
bash "$REPO/resources/guest/mkrootfs.sh" --size 32 --add "$W/add" "$W/rootfs.ext4" 2>"$W/mkrootfs.err" \
    || die "mkrootfs failed: $(tail -n 1 "$W/mkrootfs.err")"

COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && COMMIT+=+dirty
python3 "$BENCH/lab_io.py" run --minnow "$W/minnow" --kernel "$W/bzImage" --kernel-info "$KINFO" \
    --rootfs "$W/rootfs.ext4" --work "$W/run" --rounds "$ROUNDS" --json "$JSON" --md "$OUT" \
    --commit "$COMMIT" --ns-prefix "$NSP"
