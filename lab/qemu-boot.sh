#!/usr/bin/env bash
# lab/qemu-boot.sh [pc|microvm] [--smp N] [--mem MiB] [--timeout S] [--kernel F] [--initrd F] [-q] [-- EXTRA QEMU ARGS]
#
# Reference boot for benchmarks. Meant to run inside the lab (MINNOW_LAB=1,
# e.g. `bash lab/run.sh -- bash lab/qemu-boot.sh pc`), where /dev/kvm is real
# (nested SVM). Boots the Debian cloud kernel + resources/guest initramfs with
# `qemu-system-x86_64 -enable-kvm -M pc|microvm`, echoes the guest console, and
# prints the wall time until `MINNOW-GUEST-UP` appears and the total time.
# Exits 0 when the marker (and the nproc line) was seen and QEMU exited.
set -uo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MINNOW_CACHE:-/var/cache/minnow}
MODE=pc SMP=2 MEM=512 TIMEOUT=120 QUIET=0
KERNEL=$CACHE/guest/vmlinuz-cloud
INITRD=$CACHE/guest/initramfs.cpio.gz
EXTRA=()

while [ $# -gt 0 ]; do
    case "$1" in
        pc|microvm) MODE=$1; shift ;;
        --smp) SMP=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --kernel) KERNEL=$2; shift 2 ;;
        --initrd) INITRD=$2; shift 2 ;;
        -q|--quiet) QUIET=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "usage: $0 [pc|microvm] [--smp N] [--mem MiB] [--timeout S] [--kernel F] [--initrd F] [-q] [-- QEMU ARGS]" >&2; exit 2 ;;
    esac
done

die() { echo "qemu-boot: $*" >&2; exit 1; }
[ "${MINNOW_LAB:-}" = 1 ] || echo "qemu-boot: warning: MINNOW_LAB is not set; -enable-kvm needs a real (nested) KVM" >&2
[ -c /dev/kvm ] || die "no /dev/kvm"
[ -s "$KERNEL" ] || die "no guest kernel at $KERNEL (run lab/setup.sh outside the lab)"
if [ ! -s "$INITRD" ]; then
    INITRD=$(mktemp /tmp/minnow-guest-initrd.XXXXXX.cpio.gz)
    trap 'rm -f "$INITRD"' EXIT
    bash "$LAB_DIR/../resources/guest/mkinitramfs.sh" "$INITRD" || die "mkinitramfs failed"
fi

APPEND="console=ttyS0 reboot=k panic=1 quiet"
case "$MODE" in
    pc) MACHINE=(-M pc) ;;
    # microvm: no PCI; legacy PIC/PIT/RTC on, ISA serial on; ACPI left at default.
    # microvm has no i8042, so reboot=k spins ~1 min in kb_wait before falling
    # back; use a triple fault (reboot=t) there instead.
    microvm) MACHINE=(-M microvm,x-option-roms=off,isa-serial=on,pic=on,pit=on,rtc=on)
             APPEND=${APPEND/reboot=k/reboot=t} ;;
esac

t0=$(date +%s%N)
tup=
qrc=?
seen_nproc=0
while IFS= read -r line; do
    line=${line%$'\r'}
    if [[ "$line" == QEMU-EXIT-STATUS=* ]]; then qrc=${line#QEMU-EXIT-STATUS=}; continue; fi
    [ "$QUIET" = 1 ] || printf 'guest| %s\n' "$line"
    if [ -z "$tup" ] && [[ "$line" == *MINNOW-GUEST-UP* ]]; then tup=$(date +%s%N); fi
    [[ "$line" == *nproc=* ]] && seen_nproc=1
done < <(timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -enable-kvm -cpu host "${MACHINE[@]}" \
            -smp "$SMP" -m "$MEM" -nodefaults -no-user-config -nographic -no-reboot \
            -serial stdio -monitor none \
            -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" "${EXTRA[@]}" </dev/null 2>&1;
         echo "QEMU-EXIT-STATUS=$?")
t1=$(date +%s%N)

ms() { echo "$(( ($1 - t0) / 1000000 ))"; }
if [ -n "$tup" ]; then
    echo "qemu-boot: mode=$MODE smp=$SMP marker after $(ms "$tup") ms, total $(ms "$t1") ms (qemu status $qrc)"
else
    echo "qemu-boot: mode=$MODE smp=$SMP NO MARKER after $(ms "$t1") ms (qemu status $qrc)"
fi
[ -n "$tup" ] && [ "$seen_nproc" = 1 ] && [ "$qrc" = 0 ]
