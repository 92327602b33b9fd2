/* first: the smallest honest "VMM start -> first guest instruction" probe (bench 1d/1e).
 * A PVH ELF whose very first instruction writes the boot timer (paging is off, so
 * 0xd0000000 is a plain physical address), then resets through the i8042: two exits,
 * no other guest work. */
#define GUEST_32BIT
#include "common.inc"

	.section .text.entry, "ax"
	.code32
	.globl	pvh_start
pvh_start:
	movb	$BOOT_TIMER_MAGIC, BOOT_TIMER_ADDR
	RESET

	PVH_NOTE pvh_start
