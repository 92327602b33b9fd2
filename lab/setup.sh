#!/usr/bin/env bash
# lab/setup.sh - prepare the nested-KVM lab (see docs/lab.md).
#
# Idempotent: everything lands in ${MINNOW_CACHE:-/var/cache/minnow} and is
# only rebuilt when missing or when the recipe changed.
#   $MINNOW_CACHE/lab/host-vmlinuz       generic Debian 6.1 kernel (lab host)
#   $MINNOW_CACHE/lab/host-initrd.img    busybox + virtio/9p/kvm_amd modules
#   $MINNOW_CACHE/lab/host-kver          its ABI version (e.g. 6.1.0-56-amd64)
#   $MINNOW_CACHE/guest/vmlinuz-cloud    Debian cloud kernel 6.1 (guest for benchmarks)
#   $MINNOW_CACHE/guest/cloud-kver       its ABI version
#   $MINNOW_CACHE/guest/initramfs.cpio.gz  built by resources/guest/mkinitramfs.sh
#   $MINNOW_CACHE/guest/vmlinuz-cloud-6.12, cloud-6.12-kver, initramfs-6.12.cpio.gz
#                                        the same for Debian 12's 6.12 cloud kernel
#
# Env: MINNOW_CACHE, MINNOW_SETUP_QUIET=1 (no output when nothing to do).
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_DIR/.." && pwd)
CACHE=${MINNOW_CACHE:-/var/cache/minnow}
QUIET=${MINNOW_SETUP_QUIET:-0}

say() { echo "lab-setup: $*" >&2; }
die() { echo "lab-setup: error: $*" >&2; exit 1; }
APT=(apt-get -o DPkg::Lock::Timeout=600 -q)

TMPD=
cleanup() { [ -n "$TMPD" ] && rm -rf "$TMPD"; return 0; }
trap cleanup EXIT
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

mktmp() { [ -n "$TMPD" ] || { mkdir -p "$CACHE"; TMPD=$(mktemp -d "$CACHE/.setup.XXXXXX"); }; }

# ---- 1. Debian packages ---------------------------------------------------
apt_updated=0
apt_update() {
    [ "$apt_updated" = 1 ] && return 0
    say "apt-get update"
    "${APT[@]}" update >/dev/null 2>&1 || "${APT[@]}" update >&2 || die "apt-get update failed"
    apt_updated=1
}

need_pkgs=()
for p in qemu-system-x86 busybox-static cpio kmod; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install: ${need_pkgs[*]}"
    apt_update
    say "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null \
        || die "apt-get install ${need_pkgs[*]} failed"
fi
for c in qemu-system-x86_64 busybox cpio modinfo depmod dpkg-deb gzip; do
    command -v "$c" >/dev/null || [ -x "/sbin/$c" ] || [ -x "/usr/sbin/$c" ] || die "missing command $c"
done
export PATH="$PATH:/usr/sbin:/sbin"
BUSYBOX=$(command -v busybox)

# Resolve "the package that META depends on" (e.g. linux-image-6.1.0-56-amd64).
resolve_dep() {
    local meta=$1 dep
    dep=$(apt-cache depends "$meta" 2>/dev/null | awk '/^  Depends: linux-image-/{print $2; exit}')
    if [ -z "$dep" ]; then
        apt_update
        dep=$(apt-cache depends "$meta" 2>/dev/null | awk '/^  Depends: linux-image-/{print $2; exit}')
    fi
    [ -n "$dep" ] || die "cannot resolve the kernel package $meta depends on"
    echo "$dep"
}

# Download and unpack a kernel package into $TMPD/<dir>; prints the ABI version.
fetch_kernel() {
    local pkg=$1 dir=$2 deb kver
    mkdir -p "$TMPD/dl" "$TMPD/$dir"
    say "downloading $pkg"
    ( cd "$TMPD/dl" && "${APT[@]}" download "$pkg" >/dev/null 2>&1 ) \
        || { apt_update; ( cd "$TMPD/dl" && "${APT[@]}" download "$pkg" >&2 ); } \
        || die "apt-get download $pkg failed"
    deb=$(ls "$TMPD"/dl/"${pkg}"_*.deb | head -n1)
    say "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$TMPD/$dir"
    kver=$(ls "$TMPD/$dir/lib/modules" | head -n1)
    [ -n "$kver" ] && [ -f "$TMPD/$dir/boot/vmlinuz-$kver" ] || die "no kernel in $deb"
    echo "$kver"
}

# collect_modules ROOT KVER DEST MODULE...: copies MODULEs and their dependencies
# (depth-first, dependencies first) from an unpacked kernel package into DEST,
# decompressed, with DEST/order listing the load order.
collect_modules() {
    local root=$1 kver=$2 dest=$3; shift 3
    declare -A seen=()
    local order=()
    visit() {
        local m=${1//-/_} d f
        [ -n "${seen[$m]:-}" ] && return 0
        seen[$m]=1
        for d in $(modinfo -b "$root" -k "$kver" -F depends "$m" | tr ',' ' '); do visit "$d"; done
        f=$(modinfo -b "$root" -k "$kver" -F filename "$m") || die "module $m not found in $kver"
        case "$f" in (*builtin*) return 0 ;; esac
        [ -f "$f" ] || die "module $m: no file ($f)"
        case "$f" in
            *.ko.xz)  xz -dc "$f" >"$dest/$m.ko" ;;
            *.ko.zst) zstd -qdc "$f" >"$dest/$m.ko" ;;
            *.ko.gz)  gzip -dc "$f" >"$dest/$m.ko" ;;
            *)        cp "$f" "$dest/$m.ko" ;;
        esac
        order+=("$m")
    }
    mkdir -p "$dest"
    depmod -b "$root" "$kver"
    for m in "$@"; do visit "$m"; done
    printf '%s\n' "${order[@]}" >"$dest/order"
}

# ---- 2. lab-host kernel + module set --------------------------------------
LAB=$CACHE/lab
mkdir -p "$LAB" "$CACHE/guest"
# Modules the lab host needs; their dependencies are added automatically.
# tun, bridge and veth are for the network tests (TAPs, bridges, container-path veths).
ROOT_MODULES="virtio_pci 9pnet_virtio 9p kvm_amd tun bridge veth"

if [ ! -s "$LAB/host-vmlinuz" ] || [ ! -s "$LAB/modules/order" ] || [ ! -s "$LAB/host-kver" ] \
    || [ "$(cat "$LAB/modules/roots" 2>/dev/null)" != "$ROOT_MODULES" ]; then
    pkg=$(resolve_dep linux-image-amd64)
    mktmp
    kver=$(fetch_kernel "$pkg" host)
    root=$TMPD/host
    say "resolving module dependencies for $ROOT_MODULES ($kver)"
    rm -rf "$LAB/modules.new"
    collect_modules "$root" "$kver" "$LAB/modules.new" $ROOT_MODULES
    echo "$ROOT_MODULES" >"$LAB/modules.new/roots"
    rm -rf "$LAB/modules"; mv "$LAB/modules.new" "$LAB/modules"
    cp "$root/boot/vmlinuz-$kver" "$LAB/host-vmlinuz.new" && mv "$LAB/host-vmlinuz.new" "$LAB/host-vmlinuz"
    echo "$kver" >"$LAB/host-kver"
    rm -f "$LAB/host-initrd.img"
    rm -rf "$root"
    say "lab-host kernel $kver, modules: $(tr '\n' ' ' <"$LAB/modules/order")"
fi

# ---- 3. lab-host initramfs --------------------------------------------------
# The /init of the lab host. Kernel cmdline: minnow.run=/tmp/minnow-lab.XXXX
# (a directory on the host's root holding job.sh; rc is written there).
read -r -d '' LAB_INIT <<'EOF' || true
#!/bin/busybox sh
export PATH=/bin:/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
fail() { echo "minnow-lab: $*"; echo "<1>minnow-lab: $*" >/dev/kmsg; sleep 1; poweroff -f; }
for m in $(cat /modules/order); do
    insmod /modules/$m.ko || fail "insmod $m failed"
done
RUN=
for a in $(cat /proc/cmdline); do
    case "$a" in minnow.run=*) RUN=${a#minnow.run=} ;; esac
done
[ -n "$RUN" ] || fail "no minnow.run= on the kernel command line"
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 host /host || fail "9p mount failed"
mount --bind /dev /host/dev
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=0755 run /host/run 2>/dev/null
[ -c /dev/kvm ] || echo "minnow-lab: warning: no /dev/kvm" >/dev/ttyS2
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
[ -f "/host$RUN/job.sh" ] || fail "no job at $RUN"
echo "$(cut -d' ' -f1 /proc/uptime)" >"/host$RUN/job-start"
chroot /host /bin/bash "$RUN/job.sh" </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo $? >"/host$RUN/rc"
sync
# closing the serial ttys above waited for their output to drain
poweroff -f
EOF

LAB_STAMP=$( { printf '%s\n' "$LAB_INIT"; cat "$LAB/modules/order"; cat "$LAB/host-kver"; md5sum <"$BUSYBOX"; } | md5sum | cut -d' ' -f1)
if [ ! -s "$LAB/host-initrd.img" ] || [ "$(cat "$LAB/host-initrd.img.stamp" 2>/dev/null)" != "$LAB_STAMP" ]; then
    say "building lab-host initramfs"
    mktmp
    ir=$TMPD/initrd
    rm -rf "$ir"; mkdir -p "$ir"/{bin,sbin,dev,proc,sys,host,modules,tmp}
    cp "$BUSYBOX" "$ir/bin/busybox"
    for app in $("$BUSYBOX" --list); do
        [ -e "$ir/bin/$app" ] || ln -s busybox "$ir/bin/$app"
    done
    cp "$LAB"/modules/*.ko "$LAB/modules/order" "$ir/modules/"
    printf '%s\n' "$LAB_INIT" >"$ir/init"; chmod 755 "$ir/init"
    mknod -m 600 "$ir/dev/console" c 5 1 2>/dev/null || true
    ( cd "$ir" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet ) | gzip -6 >"$LAB/host-initrd.img.new"
    mv "$LAB/host-initrd.img.new" "$LAB/host-initrd.img"
    echo "$LAB_STAMP" >"$LAB/host-initrd.img.stamp"
    say "lab-host initramfs: $(du -h "$LAB/host-initrd.img" | cut -f1)"
fi

# ---- 4. guest kernels (Debian cloud flavour) and their initramfs -----------
G=$CACHE/guest
# Modules the guest's initramfs loads to find minnow's virtio-mmio devices via ACPI.
GUEST_MODULES="virtio_mmio virtio_blk virtio_net"
MK=$REPO/resources/guest/mkinitramfs.sh

# guest_kernel META SUFFIX: the kernel package META depends on, as
# $G/vmlinuz-cloud$SUFFIX, cloud$SUFFIX-kver, config-cloud$SUFFIX, modules$SUFFIX/ and
# an initramfs with those modules, initramfs$SUFFIX.cpio.gz.
guest_kernel() {
    local meta=$1 sfx=$2 pkg kver stamp
    local vmlinuz=$G/vmlinuz-cloud$sfx kverf=$G/cloud$sfx-kver mods=$G/modules$sfx
    local initrd=$G/initramfs$sfx.cpio.gz
    if [ ! -s "$vmlinuz" ] || [ ! -s "$kverf" ] || [ ! -s "$mods/order" ]; then
        pkg=$(resolve_dep "$meta")
        mktmp
        kver=$(fetch_kernel "$pkg" "cloud$sfx")
        rm -rf "$mods.new"
        collect_modules "$TMPD/cloud$sfx" "$kver" "$mods.new" $GUEST_MODULES
        rm -rf "$mods"; mv "$mods.new" "$mods"
        cp "$TMPD/cloud$sfx/boot/vmlinuz-$kver" "$vmlinuz.new" && mv "$vmlinuz.new" "$vmlinuz"
        cp "$TMPD/cloud$sfx/boot/config-$kver" "$G/config-cloud$sfx" 2>/dev/null || true
        echo "$kver" >"$kverf"
        rm -rf "${TMPD:?}/cloud$sfx"
        say "guest kernel $kver"
    fi
    stamp=$( { cat "$MK"; md5sum <"$BUSYBOX"; cat "$mods/order"; } | md5sum | cut -d' ' -f1)
    if [ ! -s "$initrd" ] || [ "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
        say "building guest initramfs for $(cat "$kverf")"
        bash "$MK" --modules "$mods" "$initrd.new" >&2
        mv "$initrd.new" "$initrd"
        echo "$stamp" >"$initrd.stamp"
    fi
}

# Debian 12's cloud kernel (6.1), and the 6.12 one from its security suite.
guest_kernel linux-image-cloud-amd64 ""
guest_kernel linux-image-6.12-cloud-amd64 -6.12

[ "$QUIET" = 1 ] || say "ready: lab host $(cat "$LAB/host-kver"), guests $(cat "$G/cloud-kver") and $(cat "$G/cloud-6.12-kver") in $CACHE"
