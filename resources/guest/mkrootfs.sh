#!/usr/bin/env bash
# resources/guest/mkrootfs.sh OUT.ext4 [--size MiB] [--add DIR]...
#
# Builds an ext4 root filesystem image for minnow guests (virtio-blk root,
# e.g. `root=/dev/vda rw`) without loop mounts or root privileges:
# busybox-static with applet symlinks in /bin, /sbin, /usr/bin, /usr/sbin,
# a small /etc, and /init (also /sbin/init), packed with `mkfs.ext4 -d`.
# Each --add DIR copies DIR's contents on top of the tree (later wins).
# --size defaults to 64 MiB. Needs busybox-static and e2fsprogs.
#
# /init is resources/guest/init.sh (the one copy; `minnow run --image` installs
# the same script). It (PID 1) mounts proc, sysfs, devtmpfs, devpts, tmpfs
# /tmp and /run, cgroup2; remounts / rw when it is ro and the disk is writable; hostname
# minnow; brings lo up; boot-timer write `devmem 0xd0000000 8 123`. Then:
#  - minnow.cmd=BASE64 (a shell-quoted command line) or else the arguments
#    after ` -- ` on the kernel command line (init's argv) are the workload:
#    run it with stdin /dev/null and stdout/stderr on the console, then kill leftover processes, sync, remount / ro (clean journal), wait
#    for the console to drain, log `minnow-init: exit RC` to /dev/kmsg at <1>,
#    report RC with `devmem 0xd0000004 8 RC` (after the log line, in case the
#    VMM stops right there), reboot -f;
#  - no arguments: interactive shell on the console (setsid cttyhack sh),
#    then the same kill/sync/remount-ro and reboot -f.
# `minnow.poweroff` on the kernel command line: poweroff -f instead of reboot -f.
set -euo pipefail

die() { echo "mkrootfs: error: $*" >&2; exit 1; }
usage() { echo "usage: $0 OUT.ext4 [--size MiB] [--add DIR]..." >&2; exit 2; }

OUT= SIZE=64 ADDS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE=${2:?}; shift 2 ;;
        --size=*) SIZE=${1#*=}; shift ;;
        --add) [ -d "${2:-}" ] || die "--add: not a directory: ${2:-}"; ADDS+=("$2"); shift 2 ;;
        --add=*) [ -d "${1#*=}" ] || die "--add: not a directory: ${1#*=}"; ADDS+=("${1#*=}"); shift ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) [ -z "$OUT" ] || usage; OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || usage
[[ "$SIZE" =~ ^[0-9]+$ ]] && [ "$SIZE" -ge 8 ] || die "--size must be an integer >= 8 (MiB)"

PATH=$PATH:/sbin:/usr/sbin
MKFS=$(command -v mkfs.ext4 || true)
[ -n "$MKFS" ] || die "mkfs.ext4 not found (apt-get install e2fsprogs)"
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && { BUSYBOX=$b; break; }; done
[ -n "$BUSYBOX" ] || die "busybox not found (apt-get install busybox-static)"
if command -v file >/dev/null && file -L "$BUSYBOX" | grep -q 'dynamically linked'; then
    die "$BUSYBOX is dynamic; install busybox-static"
fi
"$BUSYBOX" --list | grep -qx devmem || echo "mkrootfs: warning: busybox has no devmem applet; boot timer / exit status reporting will not work" >&2

# Stage on a tmpfs: the device node below must not be created on a 9p mount (as in the
# lab, where QEMU's 9p server declares the client broken when it meets one).
STAGE_PARENT=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && STAGE_PARENT=/dev/shm
T=$(mktemp -d -p "$STAGE_PARENT")
trap 'rm -rf "$T"' EXIT
R=$T/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc,mnt,var/tmp}
chmod 1777 "$R/tmp" "$R/var/tmp"
chmod 700 "$R/root"
cp "$BUSYBOX" "$R/bin/busybox"
chmod 755 "$R/bin/busybox"
# Same layout as `busybox --install -s`: each applet at its canonical path.
while IFS= read -r app; do
    case "$app" in */*) ;; *) continue ;; esac
    [ -e "$R/$app" ] || [ -L "$R/$app" ] || ln -s /bin/busybox "$R/$app"
done < <("$BUSYBOX" --list-full)
[ -e "$R/bin/sh" ] || ln -s /bin/busybox "$R/bin/sh"
ln -sfn /init "$R/sbin/init"
# The kernel mounts devtmpfs on /dev before starting init (DEVTMPFS_MOUNT);
# a console node helps kernels without it (only possible as root).
mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || true

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'root::0:0:99999:7:::' >"$R/etc/shadow"; chmod 600 "$R/etc/shadow"
echo minnow >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost minnow\n::1\tlocalhost\n' >"$R/etc/hosts"
ln -s /proc/mounts "$R/etc/mtab"
cat >"$R/etc/profile" <<'EOF'
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PS1='minnow:\w\$ '
EOF

install -m 755 "$(dirname "$0")/init.sh" "$R/init"

for d in "${ADDS[@]}"; do
    cp -a "$d/." "$R/" || die "copying $d failed"
done

need=$(du -s -B1M --apparent-size "$R" | cut -f1)
[ $((need + 4 + SIZE / 10)) -le "$SIZE" ] || die "content needs ~${need} MiB; --size $SIZE is too small"

mkdir -p "$(dirname "$OUT")"
TMP=$OUT.tmp.$$
rm -f "$TMP"
"$MKFS" -q -F -t ext4 -b 4096 -m 0 -L minnow-root -E root_owner=0:0 -d "$R" "$TMP" "${SIZE}M" >/dev/null \
    || { rm -f "$TMP"; die "mkfs.ext4 failed"; }

# Not root: mkfs.ext4 -d copied our uid/gid; make everything root-owned.
if [ "$(id -u)" != 0 ]; then
    command -v debugfs >/dev/null || die "debugfs not found (e2fsprogs)"
    ( cd "$R" && find . -mindepth 1 ) | sed 's|^\.||' | while IFS= read -r p; do
        printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$p" "$p"
    done >"$T/chown.cmds"
    debugfs -w -f "$T/chown.cmds" "$TMP" >/dev/null 2>&1 || { rm -f "$TMP"; die "debugfs chown failed"; }
fi
mv "$TMP" "$OUT"
echo "mkrootfs: wrote $OUT (${SIZE} MiB ext4, $(du -h "$OUT" | cut -f1) allocated, busybox $("$BUSYBOX" | head -1 | awk '{print $2}'))" >&2
