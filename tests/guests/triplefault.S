/* triplefault: prints a line, loads a zero-limit IDT and executes ud2.
 * #UD -> #GP (vector beyond IDT limit) -> #DF -> triple fault -> shutdown. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	PUTS	msg_fault
	lidt	idt_null(%rip)
	ud2
	HALT_FOREVER		/* not reached */

	MSG	msg_fault, "minnow-guest: faulting\n"

	.section .rodata
	.balign	16
	.word	0
idt_null:
	.word	0		/* limit 0 */
	.quad	0		/* base 0 */
