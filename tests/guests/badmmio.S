/* badmmio: does things a hostile/buggy guest may do; the VMM must survive.
 *  - reads/writes to unbacked guest-physical addresses (MMIO exits)
 *  - odd accesses to the boot-timer page (wrong value, wrong width, read)
 *  - in/out of several widths on unhandled ports (0x1234, PCI 0xcf8/0xcfc,
 *    POST 0x80, CMOS 0x70/0x71)
 *  - garbage in the UART's IER/FCR/LCR/MCR/SCR and the i8042 data port
 * then restores a sane UART state (DLAB off, loopback off), prints a line
 * and resets. */
#include "common.inc"

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES		/* map the whole low 4 GiB */

	/* unbacked MMIO: byte/dword/qword reads and writes */
	mov	$0xe0000000, %edi
	mov	(%rdi), %eax
	movl	$0xdeadbeef, (%rdi)
	movb	$0x5a, 7(%rdi)
	mov	$0xfffff000, %edi
	mov	(%rdi), %rax
	movq	$-1, 0xff8(%rdi)
	mov	$0xfec00000, %edi	/* IOAPIC-ish, may or may not be emulated */
	mov	(%rdi), %eax

	/* boot timer page: wrong value, wrong width, other offset, read */
	mov	$BOOT_TIMER_ADDR, %edi
	movb	$0x55, (%rdi)
	movl	$BOOT_TIMER_MAGIC, 4(%rdi)
	mov	(%rdi), %eax

	/* unhandled ports */
	mov	$0x1234, %dx
	in	%dx, %al
	in	%dx, %ax
	in	%dx, %eax
	mov	$0xa5a5a5a5, %eax
	out	%al, %dx
	out	%ax, %dx
	out	%eax, %dx
	mov	$0xcf8, %dx
	in	%dx, %eax
	mov	$0x80000000, %eax	/* PCI config address: bus 0 dev 0 fn 0 */
	out	%eax, %dx
	mov	$0xcfc, %dx
	in	%dx, %eax
	out	%eax, %dx
	mov	$0x12, %al
	out	%al, $0x80
	out	%al, $0x70
	in	$0x71, %al

	/* UART registers other than THR/LSR */
	mov	$0xff, %al
	mov	$COM1_IER, %dx
	out	%al, %dx
	mov	$COM1_IIR_FCR, %dx
	in	%dx, %al
	mov	$0xc7, %al
	out	%al, %dx
	mov	$COM1_LCR, %dx
	mov	$0x9b, %al		/* DLAB on + garbage */
	out	%al, %dx
	mov	$COM1_THR, %dx		/* with DLAB set these are the divisor */
	mov	$0x01, %al
	out	%al, %dx
	mov	$COM1_IER, %dx
	mov	$0x00, %al
	out	%al, %dx
	mov	$COM1_MCR, %dx
	mov	$0xff, %al		/* includes loopback */
	out	%al, %dx
	mov	$COM1_MSR, %dx
	in	%dx, %al
	mov	$COM1_SCR, %dx
	mov	$0x5a, %al
	out	%al, %dx
	in	%dx, %al

	/* restore: 8N1 with DLAB off, loopback off, interrupts off */
	mov	$COM1_LCR, %dx
	mov	$0x03, %al
	out	%al, %dx
	mov	$COM1_MCR, %dx
	mov	$0x08, %al		/* OUT2 only */
	out	%al, %dx
	mov	$COM1_IER, %dx
	xor	%eax, %eax
	out	%al, %dx

	/* i8042: garbage to the data port, read status and data */
	mov	$0x42, %al
	out	%al, $I8042_DATA
	in	$I8042_CMD, %al
	in	$I8042_DATA, %al

	PUTS	msg_survived
	RESET

	MSG	msg_survived, "minnow-guest: survived\n"
	PAGE_TABLES_4G
