/* bzimage: a minimal image in the Linux x86 boot protocol (2.12) format.
 *
 * 64-bit boot protocol (what minnow / linux-loader use): the protected-mode
 * part is loaded at 0x100000 and entered at startup_64 = 0x100200 in long
 * mode. startup_64 prints a line, pokes the boot timer and resets.
 *
 * Real-mode path (QEMU -kernel / legacy loaders, for sanity checks only):
 * setup (entered at setup+0x200 in real mode) switches to 32-bit protected
 * mode, jumps to startup_32 = code32_start = 0x100000, which enters long mode
 * and continues at startup_64. */
#include "common.inc"

#define LOAD_ADDR 0x100000

/* ---------------- real-mode setup: boot sector + setup header ---------- */
	.section .bzsetup, "ax"
	.code16
bz_start:
	.org	0x1f1
	.byte	bz_setup_sects		/* 0x1f1 setup_sects */
	.word	0			/* 0x1f2 root_flags */
	.long	bz_syssize		/* 0x1f4 syssize (16-byte units) */
	.word	0			/* 0x1f8 ram_size (obsolete) */
	.word	0xffff			/* 0x1fa vid_mode: normal */
	.word	0			/* 0x1fc root_dev */
	.word	0xaa55			/* 0x1fe boot_flag */
	.byte	0xeb, start_of_setup - 1f /* 0x200 jump */
1:	.ascii	"HdrS"			/* 0x202 header */
	.word	0x020c			/* 0x206 version 2.12 */
	.long	0			/* 0x208 realmode_swtch */
	.word	0			/* 0x20c start_sys_seg */
	.word	kernel_version - 0x200	/* 0x20e kernel_version */
	.byte	0			/* 0x210 type_of_loader */
	.byte	0x01			/* 0x211 loadflags: LOADED_HIGH */
	.word	0			/* 0x212 setup_move_size */
	.long	LOAD_ADDR		/* 0x214 code32_start */
	.long	0			/* 0x218 ramdisk_image */
	.long	0			/* 0x21c ramdisk_size */
	.long	0			/* 0x220 bootsect_kludge */
	.word	0			/* 0x224 heap_end_ptr */
	.byte	0			/* 0x226 ext_loader_ver */
	.byte	0			/* 0x227 ext_loader_type */
	.long	0			/* 0x228 cmd_line_ptr */
	.long	0x7fffffff		/* 0x22c initrd_addr_max */
	.long	0x200000		/* 0x230 kernel_alignment */
	.byte	0			/* 0x234 relocatable_kernel */
	.byte	0			/* 0x235 min_alignment */
	.word	0x0001			/* 0x236 xloadflags: XLF_KERNEL_64 */
	.long	255			/* 0x238 cmdline_size */
	.long	0			/* 0x23c hardware_subarch */
	.quad	0			/* 0x240 hardware_subarch_data */
	.long	0			/* 0x248 payload_offset */
	.long	0			/* 0x24c payload_length */
	.quad	0			/* 0x250 setup_data */
	.quad	LOAD_ADDR		/* 0x258 pref_address */
	.long	bz_init_size		/* 0x260 init_size */
	.long	0			/* 0x264 handover_offset */
	.org	0x268			/* (errors out if the header overran) */

kernel_version:
	.asciz	"minnow-guest bzImage"

	/* Entered at cs = seg+0x20, ip = 0 -> here via the jump at 0x200;
	 * ds = seg. The protected-mode part is already at 0x100000. */
start_of_setup:
	cli
	lgdtl	%ds:setup_gdt_ptr
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	mov	$0x18, %ax		/* flat data, as the 32-bit protocol requires */
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	ljmpl	$0x08, $startup_32

	.balign	8
	.word	0
setup_gdt_ptr:
	.word	gdt64_end - gdt64 - 1
	.long	gdt64			/* absolute: lives in the pm part */

/* ---------------- protected-mode kernel, loaded at 0x100000 ------------ */
	.section .bzhead, "ax"
	.code32
	.globl	startup_32
startup_32:				/* 0x100000: 32-bit entry */
	ENTER_LONG_MODE startup_64

	.org	0x200
	.code64
	.globl	startup_64
startup_64:				/* 0x100200: 64-bit entry */
	USE_OWN_PAGE_TABLES
	PUTS	msg_hello
	BOOT_TIMER
	RESET

	MSG	msg_hello, "minnow-guest: hello from bzImage\n"
	PAGE_TABLES_4G
