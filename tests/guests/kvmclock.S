/* kvmclock: checks that the guest is offered KVM's paravirtual clock the way Linux
 * looks for it: the KVM signature at CPUID 0x40000000, KVM_FEATURE_CLOCKSOURCE2 in
 * CPUID 0x40000001 EAX, and MSR_KVM_SYSTEM_TIME_NEW turning on a pvclock area that KVM
 * then fills in (version even and non-zero, tsc_to_system_mul non-zero). Prints
 * "minnow-guest: kvmclock ok" or what is missing, then resets. */
#include "common.inc"

#define KVM_SIGNATURE_EBX 0x4b4d564b	/* "KVMK" */
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1 << 3)

	.section .text.entry, "ax"
	.code64
	.globl	_start
_start:
	USE_OWN_PAGE_TABLES
	mov	$0x40000000, %eax
	cpuid
	cmp	$KVM_SIGNATURE_EBX, %ebx
	jne	.Lno_signature
	mov	$0x40000001, %eax
	cpuid
	test	$KVM_FEATURE_CLOCKSOURCE2, %eax
	jz	.Lno_feature
	mov	$MSR_KVM_SYSTEM_TIME_NEW, %ecx
	mov	$pvclock, %eax
	or	$1, %eax		/* enable */
	xor	%edx, %edx
	wrmsr
	mov	pvclock, %eax		/* version: even (not mid-update) and non-zero */
	test	%eax, %eax
	jz	.Lnot_filled
	test	$1, %eax
	jnz	.Lnot_filled
	mov	pvclock + 24, %eax	/* tsc_to_system_mul */
	test	%eax, %eax
	jz	.Lnot_filled
	PUTS	msg_ok
	jmp	.Lout
.Lno_signature:
	PUTS	msg_no_signature
	jmp	.Lout
.Lno_feature:
	PUTS	msg_no_feature
	jmp	.Lout
.Lnot_filled:
	PUTS	msg_not_filled
.Lout:
	RESET

	MSG	msg_ok, "minnow-guest: kvmclock ok\n"
	MSG	msg_no_signature, "minnow-guest: no KVM signature at CPUID 0x40000000\n"
	MSG	msg_no_feature, "minnow-guest: no KVM_FEATURE_CLOCKSOURCE2\n"
	MSG	msg_not_filled, "minnow-guest: pvclock area not filled in\n"

	/* struct pvclock_vcpu_time_info (32 bytes), 32-byte aligned */
	.section .data
	.balign	32
pvclock:
	.fill	32, 1, 0
	PAGE_TABLES_4G
