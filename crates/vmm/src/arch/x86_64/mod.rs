//! x86_64 VM setup: the guest address map, descriptor tables, boot registers,
//! CPUID, MSRs, the local APIC and the MP table.

pub mod acpi;
pub mod cpuid;
pub mod gdt;
pub mod interrupts;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;
