/* virtioblk: drives the first virtio-blk device (virtio-mmio v2 window at
 * 0xd0001000) by polling, no interrupts:
 *   reset, ACKNOWLEDGE, DRIVER, VIRTIO_F_VERSION_1 only, FEATURES_OK,
 *   queue 0 with 8 entries, DRIVER_OK; print the capacity;
 *   1. READ sector 0, print its first 16 bytes;
 *   2. WRITE sector 0 back with the first 16 bytes set to MINNOW-DISK-DONE;
 *   3. FLUSH;
 * then "done" and reset.  Prints (each line prefixed "minnow-guest: virtio-blk: "):
 *   capacity 0x<hex sectors>
 *   read-only                        (only if the device offers VIRTIO_BLK_F_RO)
 *   read <16 bytes of sector 0>
 *   write status <hex>               (only on a read-only disk; expected 1 = IOERR)
 *   done
 * Failures print one of these and reset without "done":
 *   no device | features rejected | queue too small | device failed |
 *   timeout | read status <hex> | write status <hex> | flush status <hex>
 * (status <hex> is the status byte; "ff" means the device never wrote it.)
 *
 * Guest RAM used (zero-filled at start, so nothing is cleared):
 *   0x200000 descriptor table, 0x201000 avail ring, 0x202000 used ring,
 *   0x203000 request header, 0x204000 data sector, 0x205000 status byte,
 *   0x206000 NUL-terminated copy of the 16 bytes read.  Needs >= 8 MiB RAM. */
#include "common.inc"
#include "virtio.inc"

#define TEXT_COPY		0x206000

/* Offer the chain at head 0 as request number n (1, 2, 3), notify, and poll
 * the used index until it reaches n (NOTIFY_WAIT_USED); then leave the status
 * byte in %ebx.  The status byte is preset to 0xff so a request the device
 * never completed is not mistaken for success.  %rbp = MMIO base; clobbers
 * %eax, %edx, %r13. */
.macro SUBMIT n
	movb	$0xff, REQ_STATUS
	movw	$0, VQ_AVAIL + 4 + 2 * ((\n - 1) % QSIZE)	/* ring[n-1] = head 0 */
	mfence
	movw	$\n, VQ_AVAIL + 2				/* avail idx */
	mfence
	NOTIFY_WAIT_USED $\n
	movzbl	REQ_STATUS, %ebx
.endm

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	mov	$VIRTIO_MMIO_BASE, %ebp

	/* is there a virtio-blk device? (32-bit MMIO loads only) */
	mov	VM_MAGIC(%rbp), %eax
	cmp	$VIRTIO_MAGIC, %eax
	jne	no_device
	mov	VM_VERSION(%rbp), %eax
	cmp	$2, %eax
	jne	no_device
	mov	VM_DEVICE_ID(%rbp), %eax
	cmp	$2, %eax
	jne	no_device

	/* reset, ACKNOWLEDGE, DRIVER */
	movl	$0, VM_STATUS(%rbp)
	movl	$S_ACKNOWLEDGE, VM_STATUS(%rbp)
	movl	$(S_ACKNOWLEDGE | S_DRIVER), VM_STATUS(%rbp)

	/* remember VIRTIO_BLK_F_RO (device features, low word) in %r12d */
	movl	$0, VM_DEVICE_FEATURES_SEL(%rbp)
	mov	VM_DEVICE_FEATURES(%rbp), %r12d
	and	$BLK_F_RO, %r12d

	/* accept VIRTIO_F_VERSION_1 (bit 32) and nothing else */
	movl	$1, VM_DRIVER_FEATURES_SEL(%rbp)
	movl	$1, VM_DRIVER_FEATURES(%rbp)
	movl	$0, VM_DRIVER_FEATURES_SEL(%rbp)
	movl	$0, VM_DRIVER_FEATURES(%rbp)
	movl	$(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK), VM_STATUS(%rbp)
	mov	VM_STATUS(%rbp), %eax
	test	$S_FEATURES_OK, %eax
	jz	features_rejected

	/* queue 0: 8 entries in our RAM */
	movl	$0, VM_QUEUE_SEL(%rbp)
	mov	VM_QUEUE_NUM_MAX(%rbp), %eax
	cmp	$QSIZE, %eax
	jb	queue_too_small
	QUEUE_START QSIZE, VQ_DESC, VQ_AVAIL, VQ_USED
	movl	$(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), VM_STATUS(%rbp)
	mov	VM_STATUS(%rbp), %eax
	test	$(S_NEEDS_RESET | S_FAILED), %eax
	jnz	device_failed
	test	$S_DRIVER_OK, %eax
	jz	device_failed

	/* capacity (u64 at config 0, read as two 32-bit halves) */
	mov	VM_CONFIG + 4(%rbp), %ebx
	shl	$32, %rbx
	mov	VM_CONFIG(%rbp), %eax
	or	%rax, %rbx
	PUTS	msg_capacity
	PUT_HEX
	PUTS	msg_newline
	test	%r12d, %r12d
	jz	1f
	PUTS	msg_read_only
1:
	/* descriptor chain header(0) -> data(1) -> status(2); sector 0 */
	movq	$REQ_HDR, VQ_DESC + 0
	movabs	$DESC_HI(16, D_NEXT, 1), %rax
	mov	%rax, VQ_DESC + 8
	movq	$REQ_DATA, VQ_DESC + 16
	movabs	$DESC_HI(512, D_NEXT | D_WRITE, 2), %rax
	mov	%rax, VQ_DESC + 24
	movq	$REQ_STATUS, VQ_DESC + 32
	movabs	$DESC_HI(1, D_WRITE, 0), %rax
	mov	%rax, VQ_DESC + 40

	/* 1. READ sector 0 */
	movl	$BLK_T_IN, REQ_HDR
	SUBMIT	1
	test	%ebx, %ebx
	jz	2f
	PUTS	msg_read_status
	jmp	print_status
2:
	mov	REQ_DATA, %rax			/* NUL-terminated copy of 16 bytes */
	mov	%rax, TEXT_COPY
	mov	REQ_DATA + 8, %rax
	mov	%rax, TEXT_COPY + 8
	PUTS	msg_read
	PUTS	TEXT_COPY
	PUTS	msg_newline

	/* 2. WRITE sector 0 back, first 16 bytes replaced */
	mov	disk_done_text, %rax
	mov	%rax, REQ_DATA
	mov	disk_done_text + 8, %rax
	mov	%rax, REQ_DATA + 8
	movl	$BLK_T_OUT, REQ_HDR
	movw	$D_NEXT, VQ_DESC + 16 + 12	/* data now device-readable */
	SUBMIT	2
	test	%r12d, %r12d
	jnz	3f				/* read-only: always report */
	test	%ebx, %ebx
	jz	4f
3:
	PUTS	msg_write_status
	PUT_HEX
	PUTS	msg_newline
	test	%r12d, %r12d
	jz	fail
4:
	/* 3. FLUSH: header(0) -> status(2) */
	movl	$BLK_T_FLUSH, REQ_HDR
	movw	$2, VQ_DESC + 14		/* desc0.next = 2 */
	SUBMIT	3
	test	%ebx, %ebx
	jz	5f
	PUTS	msg_flush_status
	jmp	print_status
5:
	PUTS	msg_done
	RESET

print_status:				/* finish a "... status " line with %ebx */
	PUT_HEX
	PUTS	msg_newline
	jmp	fail
no_device:
	PUTS	msg_no_device
	jmp	fail
features_rejected:
	PUTS	msg_features
	jmp	fail
queue_too_small:
	PUTS	msg_queue
	jmp	fail
device_failed:
	PUTS	msg_failed
	jmp	fail
timeout:
	PUTS	msg_timeout
fail:
	RESET

	.pushsection .rodata
disk_done_text:
	.ascii	"MINNOW-DISK-DONE"
	.popsection
	MSG	msg_capacity, "minnow-guest: virtio-blk: capacity 0x"
	MSG	msg_read_only, "minnow-guest: virtio-blk: read-only\n"
	MSG	msg_read, "minnow-guest: virtio-blk: read "
	MSG	msg_read_status, "minnow-guest: virtio-blk: read status "
	MSG	msg_write_status, "minnow-guest: virtio-blk: write status "
	MSG	msg_flush_status, "minnow-guest: virtio-blk: flush status "
	MSG	msg_done, "minnow-guest: virtio-blk: done\n"
	MSG	msg_no_device, "minnow-guest: virtio-blk: no device\n"
	MSG	msg_features, "minnow-guest: virtio-blk: features rejected\n"
	MSG	msg_queue, "minnow-guest: virtio-blk: queue too small\n"
	MSG	msg_failed, "minnow-guest: virtio-blk: device failed\n"
	MSG	msg_timeout, "minnow-guest: virtio-blk: timeout\n"
	MSG	msg_newline, "\n"
	PAGE_TABLES_4G
