/* first: the smallest honest "VMM start -> first guest instruction" probe (bench 1d/1e).
 * A PVH ELF whose very first instruction writes the boot timer (paging is off, so
 * 0xd0000000 is a plain physical address), then resets through the i8042: two exits,
 * no other guest work. */
#define GUEST_32BIT
#include "common.inc"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .text.entry, "ax"
	.code32
	.globl	pvh_start
pvh_start:
	movb	$BOOT_TIMER_MAGIC, BOOT_TIMER_ADDR
	RESET

	.section .note.Xen, "a", @note
	.balign	4
	.long	4			/* namesz */
	.long	8			/* descsz */
	.long	XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.quad	pvh_start
