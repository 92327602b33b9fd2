/* halt: prints a line, then cli; hlt forever. The VMM must block, not spin. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	PUTS	msg_halt
	HALT_FOREVER

	MSG	msg_halt, "minnow-guest: halting\n"
