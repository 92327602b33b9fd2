/* exit42: like a guest init whose workload failed: reports exit status 42 through
 * minnow's workload-exit register (0xd0000004), then resets. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	PUTS	msg_exit
	mov	$0xd0000004, %edi
	movb	$42, (%rdi)
	RESET

	MSG	msg_exit, "minnow-guest: workload exits 42\n"
	PAGE_TABLES_4G
