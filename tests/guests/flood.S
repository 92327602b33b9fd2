/* flood: a hostile virtio-blk driver and UART writer (tests/vm.rs, the stall test).
 * Sets up the first virtio-blk device like virtioblk.S (polling, VIRTIO_F_VERSION_1
 * only, queue 0 with 8 entries), then
 *   1. submits, one at a time, requests outside the limits the device advertises and
 *      prints each status byte:
 *        discard2     DISCARD listing 2 segments (max_discard_seg = 1)
 *        zeroes2      WRITE_ZEROES listing 2 segments (max_write_zeroes_seg = 1)
 *        segs300      READ through an indirect table with 300 data descriptors
 *                     (seg_max = 254)
 *        huge         READ of one 4 GiB - 4 KiB buffer (beyond memory and disk)
 *      ("minnow-guest: flood: NAME status <hex>"; ff = never written);
 *   2. prints "minnow-guest: flood: flooding", writes the boot timer, and from then on
 *      never stops: it keeps the queue full of DISCARD requests whose indirect table
 *      lists 4094 buffers of 4096 segments each (16 M hole punches, were they carried
 *      out), and writes a UART byte between notifications without looking at LSR.
 * Failures print "minnow-guest: flood: no device | features rejected | queue too small |
 * device failed | timeout" and reset.
 * Guest RAM used: 0x200000 descriptors, 0x201000 avail ring, 0x202000 used ring,
 * 0x205000 status byte, 0x220000 a 512-byte data buffer; the headers, segments and
 * indirect tables are in the image. Needs >= 4 MiB RAM. */
#include "common.inc"
#include "virtio.inc"

#define DATA_BUF		0x220000

/* desc0 = {addr, len, flags, next}; desc1/desc2 as given. */
.macro DESC i, addr, len, flags, next
	movabs	$\addr, %rax
	mov	%rax, VQ_DESC + 16 * \i
	movabs	$DESC_HI(\len, \flags, \next), %rax
	mov	%rax, VQ_DESC + 16 * \i + 8
.endm

/* Offer head 0 as request n, notify, poll the used index up to n; status in %ebx. */
.macro SUBMIT n
	movb	$0xff, REQ_STATUS
	movw	$0, VQ_AVAIL + 4 + 2 * ((\n - 1) % QSIZE)
	mfence
	movw	$\n, VQ_AVAIL + 2
	mfence
	NOTIFY_WAIT_USED $\n
	movzbl	REQ_STATUS, %ebx
.endm

/* Print "minnow-guest: flood: <msg> status <hex %ebx>\n". */
.macro REPORT msg
	PUTS	\msg
	PUT_HEX
	PUTS	msg_newline
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
	mov	VM_VERSION(%rbp), %eax
	cmp	$2, %eax
	jne	no_device
	mov	VM_DEVICE_ID(%rbp), %eax
	cmp	$2, %eax
	jne	no_device

	movl	$0, VM_STATUS(%rbp)
	movl	$S_ACKNOWLEDGE, VM_STATUS(%rbp)
	NEGOTIATE 0
	mov	VM_STATUS(%rbp), %eax
	test	$S_FEATURES_OK, %eax
	jz	features_rejected

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

	/* 1. requests outside the advertised limits, one at a time */
	DESC	0, hdr_discard, 16, D_NEXT, 1
	DESC	1, two_segments, 32, D_NEXT, 2
	DESC	2, REQ_STATUS, 1, D_WRITE, 0
	SUBMIT	1
	REPORT	msg_discard2

	DESC	0, hdr_zeroes, 16, D_NEXT, 1
	SUBMIT	2
	REPORT	msg_zeroes2

	DESC	0, table300, (16*302), D_INDIRECT, 0
	SUBMIT	3
	REPORT	msg_segs300

	DESC	0, hdr_read, 16, D_NEXT, 1
	DESC	1, 0x300000, 0xfffff000, (D_NEXT|D_WRITE), 2
	SUBMIT	4
	REPORT	msg_huge

	/* 2. flood: keep the queue full of enormous discards, and the UART busy */
	PUTS	msg_flooding
	BOOT_TIMER
	DESC	0, table4096, (16*4096), D_INDIRECT, 0
flood:
	movzwl	VQ_USED + 2, %eax
	movzwl	VQ_AVAIL + 2, %ecx
	mov	%ecx, %edx
	sub	%eax, %edx
	and	$0xffff, %edx
	cmp	$QSIZE, %edx
	jae	1f
	inc	%ecx				/* every ring slot already says head 0 */
	mov	%cx, VQ_AVAIL + 2
	movl	$0, VM_QUEUE_NOTIFY(%rbp)
1:
	mov	$'x', %al
	mov	$COM1_THR, %dx
	out	%al, %dx
	jmp	flood

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
	.balign	16
hdr_discard:
	.long	BLK_T_DISCARD, 0
	.quad	0
hdr_zeroes:
	.long	BLK_T_WRITE_ZEROES, 0
	.quad	0
hdr_read:
	.long	BLK_T_IN, 0
	.quad	0
two_segments:				/* {sector, num_sectors, flags} x 2 */
	.quad	0
	.long	1, 0
	.quad	1
	.long	1, 0
/* 4096 discard segments, each "sector 0, 1 sector": what every flood buffer lists */
	.balign	16
segments4096:
	.rept	4096
	.quad	0
	.long	1, 0
	.endr
/* indirect table: header, 300 device-writable 512-byte buffers, status */
	.balign	16
table300:
	.quad	hdr_read
	.long	16
	.word	D_NEXT, 1
	.set	.Li, 1
	.rept	300
	.quad	DATA_BUF
	.long	512
	.word	D_NEXT | D_WRITE, .Li + 1
	.set	.Li, .Li + 1
	.endr
	.quad	REQ_STATUS
	.long	1
	.word	D_WRITE, 0
/* indirect table: header, 4094 buffers of 4096 segments (64 KiB each), status */
	.balign	16
table4096:
	.quad	hdr_discard
	.long	16
	.word	D_NEXT, 1
	.set	.Li, 1
	.rept	4094
	.quad	segments4096
	.long	16 * 4096
	.word	D_NEXT, .Li + 1
	.set	.Li, .Li + 1
	.endr
	.quad	REQ_STATUS
	.long	1
	.word	D_WRITE, 0
	.popsection

	MSG	msg_discard2, "minnow-guest: flood: discard2 status "
	MSG	msg_zeroes2, "minnow-guest: flood: zeroes2 status "
	MSG	msg_segs300, "minnow-guest: flood: segs300 status "
	MSG	msg_huge, "minnow-guest: flood: huge status "
	MSG	msg_flooding, "minnow-guest: flood: flooding\n"
	MSG	msg_no_device, "minnow-guest: flood: no device\n"
	MSG	msg_features, "minnow-guest: flood: features rejected\n"
	MSG	msg_queue, "minnow-guest: flood: queue too small\n"
	MSG	msg_failed, "minnow-guest: flood: device failed\n"
	MSG	msg_timeout, "minnow-guest: flood: timeout\n"
	MSG	msg_newline, "\n"
	PAGE_TABLES_4G
