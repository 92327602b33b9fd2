/* count: prints "minnow-guest: count <hex>\n" for 0, 1, 2, ... forever, spinning
 * 2^12 iterations between lines (about 10 ms on the PVM host, where an
 * iteration costs ~3 us). The snapshot tests stop it
 * mid-count and check that a restored copy goes on from the last line. The
 * counter lives in %rbx only: a restore that lost the registers starts again
 * from 0 or stops. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	xor	%ebx, %ebx
.Lcount_next:
	PUTS	msg_count
	PUT_HEX
	mov	$'\n', %al
	UART_PUTC_AL
	inc	%rbx
	mov	$(1 << 12), %r8d
.Lcount_spin:
	dec	%r8d
	jnz	.Lcount_spin
	jmp	.Lcount_next

	MSG	msg_count, "minnow-guest: count "
