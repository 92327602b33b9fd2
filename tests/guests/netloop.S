/* netloop: drives the first virtio-net device (virtio-mmio v2 at 0xd0001000: no
 * disk before it) by polling, then for n = 0, 1, 2, ... forever:
 *   read the MAC from the device's config space (every round: a restore may have
 *   given the device another, and the guest must use it);
 *   send an ICMP echo request from 169.254.1.2 at that MAC to 169.254.1.1 at
 *   02:00:00:00:00:fe (id 0x1234, sequence n % 65536, n in the payload);
 *   wait for the echo reply: a frame to that MAC, IPv4, ICMP type 0, id 0x1234,
 *   sequence n (any other frame is given back to the device); none within
 *   RETRY_TSC: start the round again (the same n);
 *   print "minnow-guest: net <hex n>"; spin 2^12 iterations.
 * The host end answers: a TAP with 169.254.1.1/24, MAC 02:00:00:00:00:fe and a
 * permanent neighbour entry for 169.254.1.2 at the guest's MAC (tests/snapshot.rs).
 * n lives in %rbx, the TX avail index in %r14, the RX avail index in %r12 and the
 * RX used entries taken in %r15 only.  Failures print one line and reset:
 *   net no device | net setup failed | net timeout (a TX that never completes)
 * Needs >= 8 MiB RAM; the snapshot tests. */
#include "common.inc"
#include "virtio.inc"

#define RXQ_DESC	VQ_DESC			/* queue 0: receive */
#define RXQ_AVAIL	VQ_AVAIL
#define RXQ_USED	VQ_USED
#define TXQ_DESC	0x206000		/* queue 1: transmit */
#define TXQ_AVAIL	0x207000
#define TXQ_USED	0x208000
#define RXBUF		0x210000		/* QSIZE buffers of 2 KiB */
#define RXBUF_SHIFT	11
#define TXBUF		0x220000
#define HDR		12			/* struct virtio_net_hdr_v1 */
#define ETH		(TXBUF + HDR)
#define IP		(ETH + 14)
#define ICMP		(IP + 20)
#define PAYLOAD		32
#define FRAME_LEN	(HDR + 14 + 20 + 8 + PAYLOAD)
#define RETRY_TSC	(1 << 31)		/* ~0.5-2 s */
#define NET_F_MAC	(1 << 5)

/* The ones' complement checksum of `words` 16-bit words at `addr`, in %ax as it is
 * stored (the sum is the same in either byte order).
 * Clobbers %eax, %ecx, %edx, %esi. */
.macro CSUM addr, words
	mov	$\addr, %esi
	mov	$\words, %ecx
	xor	%eax, %eax
.Lcsum\@:
	movzwl	(%rsi), %edx
	add	%edx, %eax
	add	$2, %rsi
	dec	%ecx
	jnz	.Lcsum\@
.Lfold\@:
	mov	%eax, %edx
	shr	$16, %edx
	jz	.Lfolded\@
	and	$0xffff, %eax
	add	%edx, %eax
	jmp	.Lfold\@
.Lfolded\@:
	not	%eax
.endm

/* The deadline RETRY_TSC from now in %r13.  Clobbers %eax, %edx. */
.macro DEADLINE
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	movabs	$RETRY_TSC, %r13
	add	%rax, %r13
.endm

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	cld
	mov	$VIRTIO_MMIO_BASE, %ebp
	mov	VM_MAGIC(%rbp), %eax
	cmp	$VIRTIO_MAGIC, %eax
	jne	no_device
	mov	VM_DEVICE_ID(%rbp), %eax
	cmp	$1, %eax
	jne	no_device

	movl	$0, VM_STATUS(%rbp)
	NEGOTIATE NET_F_MAC
	movl	$0, VM_QUEUE_SEL(%rbp)
	QUEUE_START QSIZE, RXQ_DESC, RXQ_AVAIL, RXQ_USED
	movl	$1, VM_QUEUE_SEL(%rbp)
	QUEUE_START QSIZE, TXQ_DESC, TXQ_AVAIL, TXQ_USED
	movl	$(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK), VM_STATUS(%rbp)
	mov	VM_STATUS(%rbp), %eax
	test	$(S_NEEDS_RESET | S_FAILED), %eax
	jnz	setup_failed
	test	$S_DRIVER_OK, %eax
	jz	setup_failed

	/* RX: descriptor i is buffer i (device-writable), all offered */
	xor	%ecx, %ecx
.Lrx_desc:
	mov	%rcx, %rax
	shl	$RXBUF_SHIFT, %rax
	add	$RXBUF, %rax
	mov	%rcx, %rdx
	shl	$4, %rdx
	mov	%rax, RXQ_DESC(%rdx)
	movabs	$DESC_HI(1 << RXBUF_SHIFT, D_WRITE, 0), %rax
	mov	%rax, RXQ_DESC + 8(%rdx)
	movw	%cx, RXQ_AVAIL + 4(,%rcx,2)
	inc	%ecx
	cmp	$QSIZE, %ecx
	jne	.Lrx_desc
	mov	$QSIZE, %r12d
	mfence
	movw	%r12w, RXQ_AVAIL + 2
	mfence
	movl	$0, VM_QUEUE_NOTIFY(%rbp)
	xor	%r15d, %r15d

	/* TX: descriptor 0 is the frame; its constant part and IP checksum once */
	movq	$TXBUF, TXQ_DESC
	movabs	$DESC_HI(FRAME_LEN, 0, 0), %rax
	mov	%rax, TXQ_DESC + 8
	mov	$frame, %esi
	mov	$TXBUF, %edi
	mov	$FRAME_LEN, %ecx
	rep movsb
	CSUM	IP, 10
	mov	%ax, IP + 10
	xor	%r14d, %r14d
	xor	%ebx, %ebx

.Lround:
	xor	%ecx, %ecx
.Lmac:
	movb	VM_CONFIG(%rbp,%rcx), %al
	movb	%al, ETH + 6(%rcx)
	inc	%ecx
	cmp	$6, %ecx
	jne	.Lmac
	mov	%ebx, %eax
	xchg	%al, %ah
	mov	%ax, ICMP + 6				/* sequence, big-endian */
	mov	%rbx, ICMP + 8
	movw	$0, ICMP + 2
	CSUM	ICMP, (8 + PAYLOAD) / 2
	mov	%ax, ICMP + 2

	mov	%r14d, %eax
	and	$(QSIZE - 1), %eax
	movw	$0, TXQ_AVAIL + 4(,%rax,2)
	inc	%r14d
	mfence
	movw	%r14w, TXQ_AVAIL + 2
	mfence
	NOTIFY_WAIT_USED %r14w, 1, TXQ_USED

	DEADLINE
.Lwait:
	movzwl	RXQ_USED + 2, %eax
	cmp	%r15w, %ax
	jne	.Lgot
	pause
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	cmp	%r13, %rax
	jb	.Lwait
	jmp	.Lround					/* no answer: again */
.Lgot:
	mfence
	mov	%r15d, %eax
	and	$(QSIZE - 1), %eax
	mov	RXQ_USED + 4(,%rax,8), %edi		/* the buffer's descriptor */
	and	$(QSIZE - 1), %edi
	inc	%r15d
	mov	%rdi, %rsi
	shl	$RXBUF_SHIFT, %rsi
	add	$(RXBUF + HDR), %rsi			/* its Ethernet frame */
	xor	%r8d, %r8d				/* 1: the answer */
	mov	(%rsi), %eax
	cmp	ETH + 6, %eax
	jne	.Lgive_back
	movzwl	4(%rsi), %eax
	movzwl	ETH + 10, %ecx
	cmp	%ecx, %eax
	jne	.Lgive_back
	cmpw	$0x0008, 12(%rsi)			/* IPv4 */
	jne	.Lgive_back
	cmpb	$1, 14 + 9(%rsi)			/* ICMP */
	jne	.Lgive_back
	cmpb	$0, 14 + 20(%rsi)			/* echo reply */
	jne	.Lgive_back
	cmpw	$0x3412, 14 + 20 + 4(%rsi)		/* id 0x1234 */
	jne	.Lgive_back
	movzwl	14 + 20 + 6(%rsi), %eax
	movzwl	ICMP + 6, %ecx
	cmp	%ecx, %eax
	jne	.Lgive_back
	mov	$1, %r8d
.Lgive_back:
	mov	%r12d, %eax
	and	$(QSIZE - 1), %eax
	movw	%di, RXQ_AVAIL + 4(,%rax,2)
	inc	%r12d
	mfence
	movw	%r12w, RXQ_AVAIL + 2
	mfence
	movl	$0, VM_QUEUE_NOTIFY(%rbp)
	test	%r8d, %r8d
	jz	.Lwait

	PUTS	msg_net
	PUT_HEX
	PUTS	msg_newline
	inc	%rbx
	mov	$(1 << 12), %r8d
.Lspin:
	dec	%r8d
	jnz	.Lspin
	jmp	.Lround

no_device:
	PUTS	msg_no_device
	RESET
setup_failed:
	PUTS	msg_setup
	RESET
timeout:
	PUTS	msg_timeout
	RESET

	.pushsection .rodata
frame:
	.fill	HDR, 1, 0
	.byte	0x02, 0, 0, 0, 0, 0xfe			/* to the host's TAP */
	.fill	6, 1, 0					/* from: the config's MAC */
	.byte	0x08, 0x00
	.byte	0x45, 0, 0, 20 + 8 + PAYLOAD		/* IPv4, 20-byte header */
	.byte	0, 0, 0x40, 0				/* DF */
	.byte	64, 1, 0, 0				/* TTL, ICMP, checksum */
	.byte	169, 254, 1, 2
	.byte	169, 254, 1, 1
	.byte	8, 0, 0, 0				/* echo request */
	.byte	0x12, 0x34, 0, 0			/* id, sequence */
	.fill	PAYLOAD, 1, 0x5a			/* n in the first 8 */
	.popsection

	MSG	msg_net, "minnow-guest: net "
	MSG	msg_no_device, "minnow-guest: net no device\n"
	MSG	msg_setup, "minnow-guest: net setup failed\n"
	MSG	msg_timeout, "minnow-guest: net timeout\n"
	MSG	msg_newline, "\n"
	PAGE_TABLES_4G
