/* hello64: vmlinux-style ELF guest entered in 64-bit long mode at 0x100000.
 * Prints a line, pokes the boot timer, resets via the i8042. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	PUTS	msg_hello
	BOOT_TIMER
	RESET

	MSG	msg_hello, "minnow-guest: hello from 64-bit\n"
	PAGE_TABLES_4G
