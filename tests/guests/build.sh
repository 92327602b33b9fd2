#!/bin/sh
# Build the minnow test guests.  Usage: tests/guests/build.sh OUTDIR
# Needs only gcc (as the assembler driver + cpp), ld and objcopy.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

CC=${CC:-gcc}
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}
ASFLAGS="-c -nostdlib -ffreestanding -Wa,--fatal-warnings -I$src"
LDFLAGS="-nostdlib -static -z max-page-size=0x1000 -z noexecstack --build-id=none --no-warn-rwx-segments --fatal-warnings"

obj=$(mktemp -d "${TMPDIR:-/tmp}/minnow-guests.XXXXXX")
trap 'rm -rf "$obj"' EXIT

asm() { # name
	$CC $ASFLAGS -o "$obj/$1.o" "$src/$1.S"
}

# vmlinux-style ELF64 guests, entered in long mode at e_entry = 0x100000
for g in hello64 halt triplefault echo badmmio virtioblk exit42 kvmclock flood count answer blkloop netloop; do
	asm $g
	$LD $LDFLAGS -T "$src/elf.ld" -o "$out/$g.elf" "$obj/$g.o"
done

# PVH ELF64 with a Xen PHYS32_ENTRY note, entry 0x100000 (32-bit)
# (first: the boot-timer write is its first instruction; bench 1d/1e)
for g in pvh first; do
	asm $g
	$LD $LDFLAGS -T "$src/pvh.ld" -o "$out/$g.elf" "$obj/$g.o"
done

# bzImage: link setup + protected-mode part in one ELF, flatten by LMA
asm bzimage
$LD $LDFLAGS -T "$src/bzimage.ld" -o "$obj/bzimage.elf" "$obj/bzimage.o"
$OBJCOPY -O binary "$obj/bzimage.elf" "$out/bzimage.bin"

# Test aid only (not a guest): PVH shim to run the 64-bit ELFs under QEMU
asm qemu-shim
$LD $LDFLAGS -T "$src/pvh.ld" --defsym=guest_base=0x800000 --entry=shim_start \
	-o "$out/qemu-shim.elf" "$obj/qemu-shim.o"
