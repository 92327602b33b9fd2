//! The devices cgroup on cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! made from the same rules v1's `devices.allow`/`devices.deny` get, attached to the
//! container's cgroup (as runc's `devicefilter` does). The kernel runs it on every device
//! open and mknod in the cgroup with (type, access, major, minor); it returns 1 to allow.
//!
//! The rules are checked last to first and the first that matches decides, which is v1's
//! "the later rule wins"; nothing matching is a deny. The program is a straight line of
//! compares, a handful of instructions per rule, hand-encoded: there is no crate for
//! cgroup device programs, and a BPF toolchain would be a build dependency for 20 lines.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::Error;

// Instruction classes, sizes, modes, operations (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx: access_type = access << 16 | type; major; minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// One instruction, as `struct bpf_insn`: code, dst_reg | src_reg << 4, off, imm.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// A rule as the v1 files take it: `a`, or `TYPE MAJOR:MINOR ACCESS` with `*` for any.
struct Rule {
    allow: bool,
    /// None: any type (`a`).
    typ: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

fn parse(allow: bool, line: &str) -> Result<Rule, Error> {
    let bad = || Error::DeviceRule(line.to_string());
    let mut words = line.split_whitespace();
    let typ = match words.next() {
        Some("a") => {
            return Ok(Rule {
                allow,
                typ: None,
                major: None,
                minor: None,
                access: ACC_MKNOD | ACC_READ | ACC_WRITE,
            })
        }
        Some("b") => DEV_BLOCK,
        Some("c") => DEV_CHAR,
        _ => return Err(bad()),
    };
    let (major, minor) = words
        .next()
        .and_then(|n| n.split_once(':'))
        .ok_or_else(bad)?;
    let num = |s: &str| -> Result<Option<i32>, Error> {
        if s == "*" {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| bad())
        }
    };
    let mut access = 0;
    for c in words.next().unwrap_or("rwm").chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(bad()),
        };
    }
    Ok(Rule {
        allow,
        typ: Some(typ),
        major: num(major)?,
        minor: num(minor)?,
        access,
    })
}

/// The program for `rules` (in v1 order: later rules win).
pub fn program(rules: &[(bool, String)]) -> Result<Vec<Insn>, Error> {
    // r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for (allow, line) in rules.iter().rev() {
        let r = parse(*allow, line)?;
        let mut checks = Vec::new();
        if let Some(t) = r.typ {
            checks.push(insn(JMP_JNE_K, 2, 0, 0, t));
        }
        if r.access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every access asked for must be in the rule's: r1 = access & !rule.
            checks.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            checks.push(insn(ALU32_AND_K, 1, 0, 0, !r.access));
            checks.push(insn(JMP_JNE_K, 1, 0, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(insn(JMP_JNE_K, 4, 0, 0, m));
        }
        if let Some(m) = r.minor {
            checks.push(insn(JMP_JNE_K, 5, 0, 0, m));
        }
        // Each failed check jumps past this rule's two-instruction verdict.
        let n = checks.len();
        for (i, c) in checks.iter_mut().enumerate() {
            if c.code == JMP_JNE_K {
                c.off =
                    i16::try_from(n - i - 1 + 2).map_err(|_| Error::DeviceRule(line.clone()))?;
            }
        }
        p.extend(checks);
        p.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(r.allow)));
        p.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if r.typ.is_none() && r.access == ACC_MKNOD | ACC_READ | ACC_WRITE {
            // `a` matches everything: the rules before it cannot be reached.
            return Ok(p);
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(p)
}

fn bpf(cmd: libc::c_long, attr: &[u64]) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` prefix of the given size for
    // `cmd`; the kernel reads at most that many bytes and the pointers inside it (the
    // instructions and the license) outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`.
pub fn attach(dir: &Path, rules: &[(bool, String)]) -> Result<(), Error> {
    let prog = program(rules)?;
    let license = c"Apache-2.0";
    let mut load = [0u64; 6];
    // prog_type, insn_cnt; insns; license; log_level, log_size; log_buf.
    let count = u32::try_from(prog.len()).map_err(|_| Error::DeviceProgram {
        what: "build",
        source: std::io::Error::from_raw_os_error(libc::E2BIG),
    })?;
    load[0] = u64::from(BPF_PROG_TYPE_CGROUP_DEVICE) | (u64::from(count) << 32);
    load[1] = prog.as_ptr() as u64;
    load[2] = license.as_ptr() as u64;
    let fd = bpf(BPF_PROG_LOAD, &load).map_err(|source| Error::DeviceProgram {
        what: "load",
        source,
    })?;
    let fd = i32::try_from(fd).map_err(|_| Error::DeviceProgram {
        what: "load",
        source: std::io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: the kernel just returned this fd for the loaded program; it is owned here.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cgroup = std::fs::File::open(dir).map_err(|e| Error::io("cannot open", dir, e))?;
    // target_fd, attach_bpf_fd; attach_type, attach_flags (0: the only program).
    let target = u32::try_from(cgroup.as_raw_fd()).unwrap_or(0);
    let program = u32::try_from(prog_fd.as_raw_fd()).unwrap_or(0);
    let mut at = [0u64; 2];
    at[0] = u64::from(target) | (u64::from(program) << 32);
    at[1] = u64::from(BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_ATTACH, &at).map_err(|source| Error::DeviceProgram {
        what: "attach",
        source,
    })?;
    // The cgroup holds the program now.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(bool, &str)]) -> Vec<(bool, String)> {
        list.iter().map(|(a, l)| (*a, l.to_string())).collect()
    }

    #[test]
    fn later_rules_come_first_and_an_all_rule_ends_the_program() {
        let p = program(&rules(&[(false, "a"), (true, "c 1:3 rwm")])).unwrap();
        // Prologue 6; `c 1:3 rwm`: type, major, minor checks + verdict 2; `a`: verdict 2.
        assert_eq!(p.len(), 6 + 3 + 2 + 2);
        assert_eq!(p[6], insn(JMP_JNE_K, 2, 0, 4, DEV_CHAR));
        assert_eq!(p[7], insn(JMP_JNE_K, 4, 0, 3, 1));
        assert_eq!(p[8], insn(JMP_JNE_K, 5, 0, 2, 3));
        assert_eq!(p[9], insn(ALU64_MOV_K, 0, 0, 0, 1));
        assert_eq!(p[11], insn(ALU64_MOV_K, 0, 0, 0, 0));
        assert_eq!(p[12].code, JMP_EXIT);
    }

    #[test]
    fn partial_access_and_wildcards() {
        let p = program(&rules(&[(true, "b *:* m")])).unwrap();
        // type, 3 access instructions, no number checks; verdict; then the default deny.
        assert_eq!(p.len(), 6 + 4 + 2 + 2);
        assert_eq!(p[6], insn(JMP_JNE_K, 2, 0, 5, DEV_BLOCK));
        assert_eq!(p[8], insn(ALU32_AND_K, 1, 0, 0, !ACC_MKNOD));
        assert_eq!(p[9], insn(JMP_JNE_K, 1, 0, 2, 0));
        for bad in ["x 1:3 rwm", "c 1 rwm", "c 1:3 rwq", "c a:3 r", ""] {
            assert!(program(&rules(&[(true, bad)])).is_err(), "{bad}");
        }
    }
}
