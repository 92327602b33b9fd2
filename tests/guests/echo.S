/* echo: prints a ready line, then echoes every byte received on COM1.
 * On 'q' it prints a done line and resets. Tight LSR polling by design. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	PUTS	msg_ready
.Lpoll:
	mov	$COM1_LSR, %dx
	in	%dx, %al
	test	$LSR_DR, %al
	jz	.Lpoll
	mov	$COM1_RBR, %dx
	in	%dx, %al
	mov	%al, %bl
	UART_PUTC_AL
	cmp	$'q', %bl
	jne	.Lpoll
	PUTS	msg_done
	RESET

	MSG	msg_ready, "minnow-guest: echo ready\n"
	MSG	msg_done, "\nminnow-guest: echo done\n"
