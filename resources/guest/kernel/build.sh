#!/usr/bin/env bash
# resources/guest/kernel/build.sh [--force] [-j N]
#
# Builds minnow's guest kernel: Debian's linux-source-6.1, `make tinyconfig`,
# plus the fragment resources/guest/kernel/minnow.config, `make olddefconfig`,
# then checks that every assignment of the fragment survived (tinyconfig
# silently drops options whose dependencies are missing) and builds bzImage.
#
# Outputs (MINNOW_CACHE defaults to /var/cache/minnow):
#   $MINNOW_CACHE/kernel/<hash>/{bzImage,vmlinux,config,info}
#       <hash> = sha256 of (fragment, source package version, recipe version)
#   $MINNOW_CACHE/kernel/current -> <hash>   (stable paths: current/bzImage ...)
#   vmlinux is the uncompressed ELF with the Xen PVH entry note (CONFIG_PVH).
# Internals: source unpacked once into $MINNOW_CACHE/kernel/src/, objects in
# $MINNOW_CACHE/kernel/obj/ (reused, so a changed fragment rebuilds
# incrementally), log in $MINNOW_CACHE/kernel/obj/build.log.
# A cached build returns at once; --force rebuilds anyway. Non-interactive;
# installs its build dependencies with apt-get when they are missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FRAGMENT=$HERE/minnow.config
CACHE=${MINNOW_CACHE:-/var/cache/minnow}
K=$CACHE/kernel
SRCPKG=linux-source-6.1
RECIPE=1            # bump when the build steps change in a way that changes the output
JOBS=$(nproc)
FORCE=0

log() { echo "kernel: $*" >&2; }
die() { echo "kernel: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1; shift ;;
        -j) JOBS=${2:?}; shift 2 ;;
        -j*) JOBS=${1#-j}; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "usage: $0 [--force] [-j N]" ;;
    esac
done
[ -f "$FRAGMENT" ] || die "missing $FRAGMENT"

SUDO=
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null && SUDO="sudo -n"
fi

mkdir -p "$K" 2>/dev/null || $SUDO mkdir -p "$K" || die "cannot create $K"
[ -w "$K" ] || $SUDO chown "$(id -u):$(id -g)" "$K" || die "$K is not writable"

# One build at a time (also serialises the cached path with a running build).
exec 9>"$K/.lock"
if ! flock -n 9; then
    log "waiting for another build (lock $K/.lock)"
    flock 9
fi

# Source version: installed package, else the apt candidate (what we would install).
srcver() {
    local v
    v=$(dpkg-query -W -f='${Status} ${Version}\n' "$SRCPKG" 2>/dev/null | awk '$3=="installed"{print $4}')
    [ -n "$v" ] || v=$(apt-cache policy "$SRCPKG" 2>/dev/null | awk '/Candidate:/{print $2}')
    [ -n "$v" ] && [ "$v" != "(none)" ] || die "$SRCPKG is not available from apt (Debian 12 bookworm repos needed)"
    echo "$v"
}
SRCVER=$(srcver)
HASH=$( { cat "$FRAGMENT"; echo "src=$SRCPKG $SRCVER recipe=$RECIPE arch=x86_64"; } | sha256sum | cut -c1-16)
OUT=$K/$HASH

publish_current() {
    ln -sfn "$HASH" "$K/.current.tmp.$$" && mv -T "$K/.current.tmp.$$" "$K/current"
}

if [ "$FORCE" = 0 ] && [ -s "$OUT/bzImage" ] && [ -s "$OUT/vmlinux" ] && [ -s "$OUT/config" ]; then
    publish_current
    log "cached: $OUT (bzImage $(du -h --apparent-size "$OUT/bzImage" | cut -f1), $SRCPKG $SRCVER)"
    log "current -> $K/current/{bzImage,vmlinux,config}"
    exit 0
fi

T0=$SECONDS

# ---- build dependencies ----
PKGS=(build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils binutils "$SRCPKG")
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >"$K/apt.log" 2>&1; then
        log "apt-get install failed; trying apt-get update first"
        $SUDO apt-get -o DPkg::Lock::Timeout=600 update >>"$K/apt.log" 2>&1 || true
        $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >>"$K/apt.log" 2>&1 \
            || { tail -n 20 "$K/apt.log" >&2; die "apt-get install failed (log: $K/apt.log)"; }
    fi
    SRCVER=$(srcver)
    HASH=$( { cat "$FRAGMENT"; echo "src=$SRCPKG $SRCVER recipe=$RECIPE arch=x86_64"; } | sha256sum | cut -c1-16)
    OUT=$K/$HASH
fi

# ---- unpack the source once per package version ----
TARBALL=/usr/src/$SRCPKG.tar.xz
[ -f "$TARBALL" ] || die "$TARBALL not found (is $SRCPKG installed?)"
SRC=$K/src/$SRCPKG
if [ "$(cat "$K/src/.version" 2>/dev/null)" != "$SRCVER" ] || [ ! -f "$SRC/Makefile" ]; then
    log "unpacking $TARBALL ($SRCPKG $SRCVER) into $K/src/"
    rm -rf "$K/src" "$K/obj"
    mkdir -p "$K/src.tmp.$$"
    tar -C "$K/src.tmp.$$" -xf "$TARBALL"
    [ -f "$K/src.tmp.$$/$SRCPKG/Makefile" ] || die "unexpected tarball layout (no $SRCPKG/Makefile)"
    echo "$SRCVER" >"$K/src.tmp.$$/.version"
    mv "$K/src.tmp.$$" "$K/src"
    log "unpacked in $((SECONDS - T0)) s"
fi

# ---- configure ----
OBJ=$K/obj
mkdir -p "$OBJ"
LOG=$OBJ/build.log
: >"$LOG"
MK=(make -C "$SRC" O="$OBJ" ARCH=x86_64 KBUILD_BUILD_USER=minnow KBUILD_BUILD_HOST=minnow)
log "configuring: tinyconfig + $(basename "$FRAGMENT") + olddefconfig"
"${MK[@]}" tinyconfig >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "make tinyconfig failed (log: $LOG)"; }
cat "$FRAGMENT" >>"$OBJ/.config"
"${MK[@]}" olddefconfig >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "make olddefconfig failed (log: $LOG)"; }

# Every assignment in the fragment must be in the final .config verbatim, and
# every "is not set" must not have become =y/=m.
lost=()
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*)
            grep -qxF -- "$line" "$OBJ/.config" || {
                sym=${line%%=*}
                got=$(grep -E "^(# )?$sym[= ]" "$OBJ/.config" || true)
                lost+=("$line  (final: ${got:-absent})")
            } ;;
        "# CONFIG_"*" is not set")
            sym=${line#\# }; sym=${sym%% *}
            if grep -qE "^$sym=[ym]$" "$OBJ/.config"; then lost+=("$line  (final: $(grep -E "^$sym=" "$OBJ/.config"))"); fi ;;
    esac
done <"$FRAGMENT"
if [ ${#lost[@]} -gt 0 ]; then
    log "these fragment options did not survive olddefconfig (missing dependencies?):"
    printf '  %s\n' "${lost[@]}" >&2
    die "config check failed ($OBJ/.config)"
fi
log "config check ok: all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$FRAGMENT") fragment lines survived"

# ---- build ----
log "building bzImage with make -j$JOBS ($SRCPKG $SRCVER, gcc $(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)); log: $LOG"
TB=$SECONDS
"${MK[@]}" -j"$JOBS" bzImage >>"$LOG" 2>&1 &
MPID=$!
trap 'kill $MPID 2>/dev/null' EXIT INT TERM
while kill -0 "$MPID" 2>/dev/null; do
    for _ in $(seq 60); do kill -0 "$MPID" 2>/dev/null || break; sleep 1; done
    kill -0 "$MPID" 2>/dev/null && log "  ... still building ($((SECONDS - TB)) s, $(grep -c '^  CC ' "$LOG") files compiled)"
done
if ! wait "$MPID"; then
    trap - EXIT INT TERM
    grep -E 'error|Error' "$LOG" | tail -n 20 >&2 || tail -n 20 "$LOG" >&2
    die "kernel build failed (log: $LOG)"
fi
trap - EXIT INT TERM

# ---- publish ----
STAGE=$K/.out.tmp.$$
rm -rf "$STAGE"; mkdir -p "$STAGE"
cp "$OBJ/arch/x86/boot/bzImage" "$STAGE/bzImage"
cp "$OBJ/vmlinux" "$STAGE/vmlinux"
cp "$OBJ/.config" "$STAGE/config"
if command -v readelf >/dev/null; then
    if readelf -n "$STAGE/vmlinux" | grep -q 'Xen'; then pvh=yes; else pvh=no; log "warning: vmlinux has no Xen PVH note"; fi
else
    pvh=unknown
fi
KREL=$(cat "$OBJ/include/config/kernel.release" 2>/dev/null || echo '?')
{
    echo "source=$SRCPKG $SRCVER"
    echo "kernel_release=$KREL"
    echo "fragment_sha256=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) jobs=$JOBS build_seconds=$((SECONDS - TB))"
    echo "bzImage_bytes=$(stat -c %s "$STAGE/bzImage") vmlinux_bytes=$(stat -c %s "$STAGE/vmlinux") pvh_note=$pvh"
} >"$STAGE/info"
rm -rf "$OUT"
mv "$STAGE" "$OUT"
publish_current

log "built $KREL in $((SECONDS - T0)) s total (compile $((SECONDS - TB)) s)"
log "  $OUT/bzImage  $(du -h --apparent-size "$OUT/bzImage" | cut -f1)"
log "  $OUT/vmlinux  $(du -h --apparent-size "$OUT/vmlinux" | cut -f1) (ELF, PVH note: $pvh)"
log "current -> $K/current/{bzImage,vmlinux,config}"
