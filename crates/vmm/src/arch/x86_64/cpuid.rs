//! CPUID as the guest sees it: KVM's supported CPUID, normalised per vCPU so that APIC
//! IDs, the topology leaves and the hypervisor bit describe this VM.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX: running under a hypervisor.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX: the LAPIC timer has TSC-deadline mode. KVM's in-kernel LAPIC always
/// emulates it (KVM_CAP_TSC_DEADLINE_TIMER, Linux 3.0+) but KVM_GET_SUPPORTED_CPUID
/// leaves the bit for the VMM to set, as QEMU, Firecracker and Cloud Hypervisor do.
/// Without it Linux calibrates the LAPIC timer against the PIT at boot and runs its
/// IO-APIC timer check (docs/lab.md, "Pitfalls").
const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX: more than one logical processor per package.
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 0xb ECX[15:8] level types.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;
/// KVM's hypervisor signature, "KVMKVMKVM\0\0\0", as EBX, ECX, EDX.
pub const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

/// Bits needed to number `n` items (ceil(log2(n))).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Rewrites `entries` for vCPU `index` of `count`: one socket, one thread per core,
/// `count` cores, APIC ID = `index`.
pub fn normalize(entries: &mut [kvm_cpuid_entry2], index: u8, count: u8) {
    let apic_id = u32::from(index);
    let n = u32::from(count);
    for e in entries.iter_mut() {
        match e.function {
            0x1 => {
                e.ebx = (apic_id << 24) | (n << 16) | (8 << 8) | (e.ebx & 0xff);
                e.ecx |= LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE;
                if n > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                } else {
                    e.edx &= !LEAF1_EDX_HTT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: EAX[31:26] = cores per package - 1,
                // EAX[25:14] = logical CPUs sharing this cache - 1 (L3 shared by all).
                let cache_level = (e.eax >> 5) & 0x7;
                let sharing = if cache_level >= 3 { n - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | ((n - 1) << 26) | (sharing << 14);
            }
            0xb => {
                e.edx = apic_id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (LEVEL_TYPE_SMT << 8) | e.index;
                    }
                    1 => {
                        e.eax = bits_for(n);
                        e.ebx = n;
                        e.ecx = (LEVEL_TYPE_CORE << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            0x4000_0000 => {
                e.ebx = KVM_SIGNATURE[0];
                e.ecx = KVM_SIGNATURE[1];
                e.edx = KVM_SIGNATURE[2];
            }
            0x8000_0008 => {
                // AMD: ECX[7:0] = cores - 1, ECX[15:12] = APIC ID bits.
                e.ecx = (e.ecx & !0xf0ff) | (n - 1) | (bits_for(n) << 12);
            }
            0x8000_001e => {
                // AMD extended APIC ID, compute unit (core) ID, node ID.
                e.eax = apic_id;
                e.ebx = apic_id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx: 0xdead_beef,
            ecx: 0x1234_5678,
            edx: 0xffff_ffff,
            eax: 0x0000_0063,
            ..Default::default()
        }
    }

    #[test]
    fn leaf1_carries_apic_id_count_hypervisor_and_tsc_deadline_bits() {
        let mut e = [entry(1, 0)];
        normalize(&mut e, 3, 4);
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(e[0].ecx & LEAF1_ECX_TSC_DEADLINE, 0);
        assert_ne!(e[0].edx & LEAF1_EDX_HTT, 0);
        let mut single = [entry(1, 0)];
        normalize(&mut single, 0, 1);
        assert_eq!(single[0].edx & LEAF1_EDX_HTT, 0);
    }

    #[test]
    fn topology_leaf_describes_cores() {
        let mut e = [entry(0xb, 0), entry(0xb, 1), entry(0xb, 2)];
        normalize(&mut e, 1, 3);
        assert_eq!(e.iter().map(|x| x.edx).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert_eq!((e[0].ebx, (e[0].ecx >> 8) & 0xff), (1, LEVEL_TYPE_SMT));
        assert_eq!((e[1].eax, e[1].ebx), (2, 3));
        assert_eq!((e[1].ecx >> 8) & 0xff, LEVEL_TYPE_CORE);
        assert_eq!((e[2].eax, e[2].ebx, e[2].ecx), (0, 0, 2));
    }

    #[test]
    fn cache_leaf_counts_cores() {
        let mut l1 = entry(4, 0);
        l1.eax = 1 << 5 | 1;
        let mut l3 = entry(4, 3);
        l3.eax = 3 << 5 | 3;
        let mut e = [l1, l3];
        normalize(&mut e, 0, 2);
        assert_eq!(e[0].eax >> 26, 1);
        assert_eq!((e[0].eax >> 14) & 0xfff, 0);
        assert_eq!((e[1].eax >> 14) & 0xfff, 1);
        assert_eq!(e[1].eax & 0x3fff, 3 << 5 | 3);
    }

    #[test]
    fn hypervisor_leaf_says_kvm() {
        let mut e = [entry(0x4000_0000, 0), entry(0x8000_0008, 0)];
        normalize(&mut e, 0, 2);
        assert_eq!([e[0].ebx, e[0].ecx, e[0].edx], KVM_SIGNATURE);
        assert_eq!(e[1].ecx & 0xff, 1);
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(bits_for), [0, 1, 2, 2, 3, 3, 4]);
    }
}
