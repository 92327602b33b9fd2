/* blkloop: drives the first virtio-blk device (virtio-mmio v2 at 0xd0001000)
 * by polling, like virtioblk.S, then for n = 0, 1, 2, ... forever:
 *   if n > 0: READ sector (n-1) % 64 and check that its first 8 bytes are n-1
 *             (what the previous round wrote: across a snapshot, a restored
 *             copy reads what the original wrote before it);
 *   WRITE sector n % 64 with n in its first 8 bytes (the rest is the buffer's);
 *   print "minnow-guest: blk <hex n>";
 *   spin 2^12 iterations (~10 ms on the PVM host).
 * n lives in %rbx and the request count (the avail index) in %r14 only.
 * Failures print one line and reset:
 *   blk no device | blk setup failed | blk timeout |
 *   blk status <hex> | blk mismatch <hex found>
 * Needs a disk of >= 64 sectors (32 KiB) and >= 8 MiB RAM; the snapshot tests. */
#include "common.inc"
#include "virtio.inc"

#define NSECT			64

/* Offer the chain at head 0 as request %r14 + 1, notify, poll the used index
 * until it gets there (NOTIFY_WAIT_USED); status in %r12d.
 * Clobbers %eax, %edx, %r13. */
.macro SUBMIT
	movb	$0xff, REQ_STATUS
	mov	%r14d, %eax
	and	$(QSIZE - 1), %eax
	movw	$0, VQ_AVAIL + 4(,%rax,2)
	inc	%r14d
	mfence
	movw	%r14w, VQ_AVAIL + 2
	mfence
	NOTIFY_WAIT_USED %r14w
	movzbl	REQ_STATUS, %r12d
	test	%r12d, %r12d
	jnz	bad_status
.endm

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	mov	$VIRTIO_MMIO_BASE, %ebp
	mov	VM_MAGIC(%rbp), %eax
	cmp	$VIRTIO_MAGIC, %eax
	jne	no_device
	mov	VM_DEVICE_ID(%rbp), %eax
	cmp	$2, %eax
	jne	no_device

	movl	$0, VM_STATUS(%rbp)
	NEGOTIATE 0
	movl	$0, VM_QUEUE_SEL(%rbp)
	QUEUE_START QSIZE, VQ_DESC, VQ_AVAIL, VQ_USED
	movl	$(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), VM_STATUS(%rbp)
	mov	VM_STATUS(%rbp), %eax
	test	$(S_NEEDS_RESET | S_FAILED), %eax
	jnz	setup_failed
	test	$S_DRIVER_OK, %eax
	jz	setup_failed

	/* header(0) -> data(1) -> status(2) */
	movq	$REQ_HDR, VQ_DESC + 0
	movabs	$DESC_HI(16, D_NEXT, 1), %rax
	mov	%rax, VQ_DESC + 8
	movq	$REQ_DATA, VQ_DESC + 16
	movabs	$DESC_HI(512, D_NEXT, 2), %rax
	mov	%rax, VQ_DESC + 24
	movq	$REQ_STATUS, VQ_DESC + 32
	movabs	$DESC_HI(1, D_WRITE, 0), %rax
	mov	%rax, VQ_DESC + 40

	xor	%r14d, %r14d
	xor	%ebx, %ebx
.Lround:
	test	%rbx, %rbx
	jz	.Lwrite
	/* READ sector (n-1) % NSECT: data device-writable */
	lea	-1(%rbx), %rax
	and	$(NSECT - 1), %eax
	mov	%rax, REQ_HDR + 8
	movl	$BLK_T_IN, REQ_HDR
	movw	$(D_NEXT | D_WRITE), VQ_DESC + 16 + 12
	movq	$0, REQ_DATA
	SUBMIT
	lea	-1(%rbx), %rax
	cmp	REQ_DATA, %rax
	jne	mismatch
.Lwrite:
	/* WRITE sector n % NSECT with n: data device-readable */
	mov	%rbx, REQ_DATA
	mov	%rbx, %rax
	and	$(NSECT - 1), %eax
	mov	%rax, REQ_HDR + 8
	movl	$BLK_T_OUT, REQ_HDR
	movw	$D_NEXT, VQ_DESC + 16 + 12
	SUBMIT
	PUTS	msg_blk
	PUT_HEX
	PUTS	msg_newline
	inc	%rbx
	mov	$(1 << 12), %r8d
.Lspin:
	dec	%r8d
	jnz	.Lspin
	jmp	.Lround

mismatch:
	mov	REQ_DATA, %rbx
	PUTS	msg_mismatch
	PUT_HEX
	PUTS	msg_newline
	RESET
bad_status:
	mov	%r12, %rbx
	PUTS	msg_status
	PUT_HEX
	PUTS	msg_newline
	RESET
no_device:
	PUTS	msg_no_device
	RESET
setup_failed:
	PUTS	msg_setup
	RESET
timeout:
	PUTS	msg_timeout
	RESET

	MSG	msg_blk, "minnow-guest: blk "
	MSG	msg_mismatch, "minnow-guest: blk mismatch "
	MSG	msg_status, "minnow-guest: blk status "
	MSG	msg_no_device, "minnow-guest: blk no device\n"
	MSG	msg_setup, "minnow-guest: blk setup failed\n"
	MSG	msg_timeout, "minnow-guest: blk timeout\n"
	MSG	msg_newline, "\n"
	PAGE_TABLES_4G
