/* qemu-shim: NOT a test guest. A PVH ELF linked at 0x800000 that emulates
 * minnow's 64-bit entry contract so the 64-bit ELF guests can be
 * sanity-checked under QEMU/TCG, which cannot enter them directly:
 *
 *   qemu-system-x86_64 -accel tcg -nographic -no-reboot \
 *       -kernel OUT/qemu-shim.elf -device loader,file=OUT/hello64.elf
 *
 * It enters long mode (identity map of 4 GiB, cs 0x10, ds/ss 0x18),
 * sets rsi = 0x7000, rsp = 0x8ff0 and jumps to 0x100000 (the guests' e_entry).
 */
#define GUEST_32BIT
#include "common.inc"

	.section .text.entry, "ax"
	.code32
	.globl	shim_start
shim_start:
	ENTER_LONG_MODE shim64
	.code64
shim64:
	mov	$0x7000, %esi
	mov	$0x8ff0, %esp
	mov	$0x100000, %eax
	jmp	*%rax

	PAGE_TABLES_4G

	.section .note.Xen, "a", @note
	.balign	4
	.long	4, 8, 18		/* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.quad	shim_start
