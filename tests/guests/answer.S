/* answer: a workload with state: it first writes 16 MiB of memory (0x400000-0x13fffff,
 * a non-zero pattern, so a snapshot holds 16 MiB of data and clones have pages to
 * share), prints a ready line, then waits for a request on COM1 (tight LSR polling).
 * Any byte is answered with "minnow-guest: answer <byte>\n"; 'q' is answered and
 * then the guest resets. Needs >= 32 MiB of RAM. minnow-bench snapshot's workload. */
#include "common.inc"

#define FILL_START	0x400000
#define FILL_BYTES	(16 << 20)

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	mov	$FILL_START, %edi
	mov	$(FILL_BYTES / 8), %ecx
	mov	$0x0123456789abcdef, %rax
	cld
	rep stosq
	PUTS	msg_ready
.Lpoll:
	mov	$COM1_LSR, %dx
	in	%dx, %al
	test	$LSR_DR, %al
	jz	.Lpoll
	mov	$COM1_RBR, %dx
	in	%dx, %al
	mov	%al, %bl
	PUTS	msg_answer
	mov	%bl, %al
	UART_PUTC_AL
	mov	$'\n', %al
	UART_PUTC_AL
	cmp	$'q', %bl
	jne	.Lpoll
	RESET

	MSG	msg_ready, "minnow-guest: answer ready\n"
	MSG	msg_answer, "minnow-guest: answer "
