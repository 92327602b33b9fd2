#!/usr/bin/env bash
# make demo: fetch a Debian cloud kernel and build a busybox initramfs, boot it with
# minnow and print the boot time. On a PVM host (whose /dev/kvm cannot run stock
# kernels) the boot runs inside the nested-KVM lab, and the output says so.
set -euo pipefail
cd "$(dirname "$0")/.."

G=${MINNOW_CACHE:-/var/cache/minnow}/guest
echo "demo: preparing the kernel and initramfs (first run downloads packages)"
bash lab/setup.sh
echo "demo: building minnow"
cargo build --release --quiet
cmd=(target/release/minnow run --kernel "$G/vmlinuz-cloud" --initrd "$G/initramfs.cpio.gz"
     --vcpus 2 --mem-mib 512 --cmdline quiet)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ -e /sys/module/kvm_pvm ]; then
    echo "demo: this host's /dev/kvm is PVM, which cannot run a stock kernel:"
    echo "demo: booting inside the nested-KVM lab (QEMU TCG + kvm_amd); times there are inflated"
    bash lab/run.sh -- "${cmd[@]}" 2> >(tee "$log" >&2)
else
    "${cmd[@]}" </dev/null 2> >(tee "$log" >&2)
fi
sleep 0.2
line=$(grep -o 'guest boot time: [0-9.]* ms' "$log" || true)
if [ -z "$line" ]; then
    echo "demo: the guest did not report its boot time" >&2
    exit 1
fi
echo "demo: Debian $(cat "$G/cloud-kver") with 2 vCPUs: ${line#guest } from minnow start to the guest's init"
