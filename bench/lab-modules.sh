#!/usr/bin/env bash
# bench/lab-modules.sh: kernel modules the container rows of `minnow bench startup --in-lab`
# need in the lab host (overlayfs for minnow container and docker's overlay2), taken from
# the same Debian kernel package the lab boots, into $MINNOW_CACHE/bench/lab-modules/
# (MOD.ko files + `order`). Idempotent: a cached set is reused. Prints the directory.
set -euo pipefail
CACHE=${MINNOW_CACHE:-/var/cache/minnow}
KVER=$(cat "$CACHE/lab/host-kver" 2>/dev/null) || { echo "lab-modules: lab not set up (no $CACHE/lab/host-kver); run bash lab/setup.sh" >&2; exit 1; }
OUT=$CACHE/bench/lab-modules
MODS=(overlay)
if [ -s "$OUT/order" ] && [ "$(cat "$OUT/kver" 2>/dev/null)" = "$KVER" ]; then echo "$OUT"; exit 0; fi
TMPD=$(mktemp -d "$CACHE/bench-mod.XXXXXX"); trap 'rm -rf "$TMPD"' EXIT
pkg=linux-image-$KVER
( cd "$TMPD" && timeout 600 apt-get download "$pkg" >/dev/null 2>&1 ) \
    || { apt-get update -qq >/dev/null 2>&1; ( cd "$TMPD" && timeout 600 apt-get download "$pkg" >&2 ); } \
    || { echo "lab-modules: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$TMPD"/"$pkg"_*.deb "$TMPD/root"
rm -rf "$OUT.new"; mkdir -p "$OUT.new"
depmod -b "$TMPD/root" "$KVER"
order=()
for m in "${MODS[@]}"; do
    for d in $(modinfo -b "$TMPD/root" -k "$KVER" -F depends "$m" | tr ',' ' ') "$m"; do
        f=$(modinfo -b "$TMPD/root" -k "$KVER" -F filename "$d")
        case "$f" in
            *builtin*) continue ;;
            *.ko.xz) xz -dc "$f" >"$OUT.new/$d.ko" ;;
            *.ko.zst) zstd -qdc "$f" >"$OUT.new/$d.ko" ;;
            *) cp "$f" "$OUT.new/$d.ko" ;;
        esac
        order+=("$d")
    done
done
printf '%s\n' "${order[@]}" >"$OUT.new/order"
echo "$KVER" >"$OUT.new/kver"
rm -rf "$OUT"; mv "$OUT.new" "$OUT"
echo "$OUT"
