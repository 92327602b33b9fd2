/* pvh: ELF64 image with a Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY).
 * Entered in 32-bit protected mode, paging off, %ebx = hvm_start_info. */
#define GUEST_32BIT
#include "common.inc"

	.section .text.entry, "ax"
	.code32
	.globl	pvh_start
pvh_start:
	cmpl	$PVH_START_MAGIC, (%ebx)
	jne	.Lbad_magic
	PUTS	msg_hello
	jmp	.Lout
.Lbad_magic:
	PUTS	msg_bad
.Lout:
	BOOT_TIMER			/* paging is off: plain physical address */
	RESET

	MSG	msg_hello, "minnow-guest: hello from PVH\n"
	MSG	msg_bad, "minnow-guest: PVH bad magic\n"

	PVH_NOTE pvh_start
