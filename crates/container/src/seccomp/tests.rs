//! Unit tests (no root): Docker's profile against what Docker passed to runc, compiling,
//! and the one-line errors. Loading is tested in tests/security.rs (root).

use std::collections::BTreeMap;

use super::*;
use crate::caps::DOCKER_DEFAULT;

const GROUND_TRUTH: &str =
    include_str!("../../testdata/docker/docker-default-seccomp.compiled.json");
const DENY_MKDIR: &str = include_str!("../../testdata/docker/seccomp-deny-mkdir.profile.json");

/// The machine the ground truth was taken on: x86_64, kernel 6.18.
const HOST: Host = Host {
    arch: "amd64",
    seccomp_arch: Some(Arch::ScmpArchX86_64),
    kernel: Some((6, 18)),
};

fn saved_seccomp(config: &str) -> LinuxSeccomp {
    let v: serde_json::Value = serde_json::from_str(config).unwrap();
    serde_json::from_value(v["linux"]["seccomp"].clone()).unwrap()
}

/// (sorted names, action, args, errnoRet) → how many rules have it.
fn rules(s: &LinuxSeccomp) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in s.syscalls().iter().flatten() {
        let mut names = r.names().clone();
        names.sort();
        let key = serde_json::json!([names, r.action(), r.args(), r.errno_ret()]).to_string();
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

fn assert_same(ours: &LinuxSeccomp, theirs: &LinuxSeccomp) {
    assert_eq!(ours.default_action(), theirs.default_action());
    assert_eq!(ours.default_errno_ret(), theirs.default_errno_ret());
    assert_eq!(ours.architectures(), theirs.architectures());
    assert_eq!(rules(ours), rules(theirs));
}

#[test]
fn docker_default_equals_what_docker_passed() {
    let theirs: LinuxSeccomp = serde_json::from_str(GROUND_TRUTH).unwrap();
    let ours = docker_default_for(&DOCKER_DEFAULT, &HOST);
    assert_same(&ours, &theirs);
    assert_eq!(
        ours.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
    let names: usize = ours
        .syscalls()
        .iter()
        .flatten()
        .map(|r| r.names().len())
        .sum();
    assert_eq!(names, 357);
    // And the same in the saved config.json of that run.
    let in_config = saved_seccomp(include_str!("../../testdata/docker/17-default.json"));
    assert_same(&ours, &in_config);
}

#[test]
fn docker_default_follows_the_bounding_set() {
    // --cap-add SYS_ADMIN --cap-add NET_ADMIN: the SYS_ADMIN group (mount, unshare,
    // setns, clone without the namespace mask, clone3 allowed) replaces the masked clone.
    let mut caps = DOCKER_DEFAULT.to_vec();
    caps.extend([Capability::SysAdmin, Capability::NetAdmin]);
    let theirs = saved_seccomp(include_str!("../../testdata/docker/24-capadd.json"));
    assert_same(&docker_default_for(&caps, &HOST), &theirs);
    // --cap-drop ALL: no chroot rule.
    let theirs = saved_seccomp(include_str!("../../testdata/docker/23-capdrop.json"));
    let ours = docker_default_for(&[], &HOST);
    assert_same(&ours, &theirs);
    assert!(!rules(&ours).keys().any(|k| k.contains("\"chroot\"")));
}

#[test]
fn min_kernel_and_arch_filters() {
    let old = Host {
        kernel: Some((4, 4)),
        ..HOST
    };
    let has_ptrace = |s: &LinuxSeccomp| {
        s.syscalls()
            .iter()
            .flatten()
            .any(|r| r.names() == &["ptrace".to_string()])
    };
    assert!(has_ptrace(&docker_default_for(&DOCKER_DEFAULT, &HOST)));
    assert!(
        !has_ptrace(&docker_default_for(&DOCKER_DEFAULT, &old)),
        "minKernel 4.8"
    );
    let unknown = Host {
        kernel: None,
        ..HOST
    };
    assert!(!has_ptrace(&docker_default_for(&DOCKER_DEFAULT, &unknown)));

    let arm = Host {
        arch: "arm64",
        seccomp_arch: Some(Arch::ScmpArchAarch64),
        kernel: Some((6, 18)),
    };
    let s = docker_default_for(&DOCKER_DEFAULT, &arm);
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
    );
    let all: Vec<&String> = s
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|r| r.names())
        .collect();
    assert!(all.iter().any(|n| *n == "arm_fadvise64_64"));
    assert!(!all.iter().any(|n| *n == "arch_prctl"), "amd64/x32 only");
}

#[test]
fn release_parsing_as_moby() {
    assert_eq!(parse_release("6.18.44-amd64\n"), Some((6, 18)));
    assert_eq!(parse_release("3.12-1-amd64"), Some((3, 12)));
    assert_eq!(parse_release("4.8"), Some((4, 8)));
    assert_eq!(parse_release("garbage"), None);
    assert_eq!(parse_min_kernel("4.8"), Some((4, 8)));
    assert_eq!(parse_min_kernel("0.0"), None);
    assert_eq!(parse_min_kernel("4"), None);
    assert!(
        Host::current().kernel.is_some(),
        "this machine's release parses"
    );
}

#[test]
fn custom_profile_file_as_docker_converts_it() {
    // --security-opt seccomp=FILE: what Docker passed for the deny-mkdir file.
    let theirs = saved_seccomp(include_str!("../../testdata/docker/27-seccomp-file.json"));
    let ours = from_docker_profile(DENY_MKDIR, &DOCKER_DEFAULT, &HOST)
        .unwrap()
        .unwrap();
    assert_same(&ours, &theirs);
    // A profile with nothing in it is "unconfined", as in moby.
    assert!(from_docker_profile("{}", &DOCKER_DEFAULT, &HOST)
        .unwrap()
        .is_none());
}

#[test]
fn docker_default_compiles_for_three_arches() {
    let f = compile(&docker_default_for(&DOCKER_DEFAULT, &HOST)).unwrap();
    assert!(
        f.len() > 100 && f.len() <= BPF_MAXINSNS,
        "{} instructions",
        f.len()
    );
    // Every name of Docker 20.10's profile is known to libseccomp 2.5.4 but these.
    let mut skipped = f.skipped().to_vec();
    skipped.sort();
    skipped.dedup();
    for n in &skipped {
        assert!(
            ScmpSyscall::from_name(n).is_err(),
            "{n} was skipped but resolves"
        );
    }
    // A single-arch filter is smaller: the x86/x32 sections are really there.
    let mut native = docker_default_for(&DOCKER_DEFAULT, &HOST);
    native.set_architectures(None);
    assert!(compile(&native).unwrap().len() < f.len());
}

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

fn error_of(json: serde_json::Value) -> String {
    let e = compile(&profile(json)).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let f = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "no_such_syscall_xyz"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert_eq!(f.skipped(), ["no_such_syscall_xyz".to_string()]);
}

#[test]
fn every_action_and_operator_compiles() {
    let mut rules = Vec::new();
    for (i, act) in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
    ]
    .iter()
    .enumerate()
    {
        let op = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ][i];
        rules.push(serde_json::json!({
            "names": ["ioctl"], "action": act, "errnoRet": 5,
            "args": [{"index": 1, "value": 0x5401 + i as u64, "valueTwo": 0x5401, "op": op}]
        }));
    }
    // Two conditions on the same argument: separate rules (OR), as runc.
    rules.push(serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}));
    let f = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": rules
    })))
    .unwrap();
    assert_eq!(
        f.flags,
        SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW | SECCOMP_FILTER_FLAG_TSYNC
    );
    // A rule with the default action is redundant and skipped (libseccomp refuses it).
    compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                     {"names": ["write"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
}

#[test]
fn refused_fields_name_themselves() {
    let e = error_of(
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}),
    );
    assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
    let e =
        error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    assert!(e.contains("linux.seccomp.listenerMetadata"), "{e}");
    let e = error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(
        e.contains("syscalls[0] (mkdir)") && e.contains("SCMP_ACT_NOTIFY"),
        "{e}"
    );
    let e = error_of(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
    let e = error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
    assert!(e.contains("linux.seccomp.flags"), "{e}");
    let e = error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.contains("syscalls[0].args") && e.contains("index 6"),
        "{e}"
    );
    let e =
        error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}));
    assert!(e.contains("linux.seccomp.defaultErrnoRet"), "{e}");
    let e = error_of(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 70000}]}));
    assert!(e.contains("linux.seccomp.syscalls[0].errnoRet"), "{e}");
}

#[test]
fn docker_profile_errors() {
    let e = from_docker_profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
        &[],
        &HOST,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ArchAndArchMap));
    let e = from_docker_profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"read","names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#,
        &[],
        &HOST,
    )
    .unwrap_err();
    assert!(e.to_string().contains("syscalls[0]"), "{e}");
    let e = from_docker_profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}]}"#,
        &[],
        &HOST,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("syscalls[0].includes.minKernel"),
        "{e}"
    );
    let e = from_docker_profile(r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#, &[], &HOST).unwrap_err();
    assert!(!e.to_string().contains('\n'));
    // `name` (singular) works as in moby.
    let s = from_docker_profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO"}]}"#,
        &[],
        &HOST,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        s.syscalls().as_ref().unwrap()[0].names(),
        &["mkdir".to_string()]
    );
}

fn program(f: &Filter) -> Vec<(u16, u8, u8, u32)> {
    f.program
        .iter()
        .map(|i| (i.code, i.jt, i.jf, i.k))
        .collect()
}

#[test]
fn cache_returns_the_same_program() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("seccomp");
    let spec = docker_default_for(&DOCKER_DEFAULT, &HOST);
    let fresh = compile_cached(&spec, None).unwrap();
    let first = compile_cached(&spec, Some(&cache)).unwrap();
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert_eq!(entries.len(), 1, "one entry, no temporary files left");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let hit = compile_cached(&spec, Some(&cache)).unwrap();
    assert_eq!(program(&first), program(&fresh));
    assert_eq!(program(&hit), program(&fresh));
    assert_eq!(hit.flags, fresh.flags);
    assert_eq!(hit.skipped(), fresh.skipped());

    // Another object gets another entry; a cached object is still validated.
    let deny: LinuxSeccomp = profile(serde_json::from_str(DENY_MKDIR).unwrap());
    let d = compile_cached(&deny, Some(&cache)).unwrap();
    assert_ne!(program(&d), program(&fresh));
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);

    // A damaged entry is ignored (and replaced), never loaded.
    let entry = entries[0].as_ref().unwrap().path();
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let again = compile_cached(&spec, Some(&cache)).unwrap();
    assert_eq!(program(&again), program(&fresh));
    assert_ne!(std::fs::read(&entry).unwrap(), bytes, "rewritten");

    // A directory others can write to is not trusted: nothing is read from it.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let n = bytes.len();
    // A well-formed but different program under the key: must not be used.
    let other = compile_cached(&deny, None).unwrap();
    bytes.clear();
    for i in &other.program {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.extend_from_slice(&[i.jt, i.jf]);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    use sha2::Digest;
    let sum = sha2::Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    assert_ne!(bytes.len(), n);
    std::fs::write(&entry, &bytes).unwrap();
    let untrusted = compile_cached(&spec, Some(&cache)).unwrap();
    assert_eq!(program(&untrusted), program(&fresh));
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let trusted = compile_cached(&spec, Some(&cache)).unwrap();
    assert_eq!(
        program(&trusted),
        program(&other),
        "the planted entry is read once trusted"
    );
}

#[test]
fn cached_objects_fail_like_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(compile_cached(&bad, Some(dir.path())).is_err());
    // Even with an entry under its key (planted: a bad object is never cached).
    let good = compile_cached(&profile(serde_json::from_str(DENY_MKDIR).unwrap()), None).unwrap();
    cache::write(dir.path(), &cache_key(&bad), &good.program).unwrap();
    let e = compile_cached(&bad, Some(dir.path())).unwrap_err();
    assert!(matches!(e, Error::Notify { .. }), "{e}");
}
