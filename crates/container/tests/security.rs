//! Seccomp filters and capability sets applied for real (root): each case runs in a
//! forked child, since neither can be undone, and reports what the kernel did. runc is
//! the control: the same Docker default spec under runc gives the same process state.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use minnow_container::{caps, defaults, seccomp};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp};

const DENY_MKDIR: &str = include_str!("../testdata/docker/seccomp-deny-mkdir.profile.json");

/// Runs `f` in a forked child; returns its report, or how it died.
fn in_child(f: impl FnOnce() -> Result<String, String>) -> Result<String, String> {
    let (r, w) = pipe().unwrap();
    // SAFETY: the test binary's threads are idle test runners; the child runs `f`
    // (syscalls, small allocations) and leaves with _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(r);
            let (code, text) = match f() {
                Ok(t) => (0, t),
                Err(t) => (1, t),
            };
            let mut w = std::fs::File::from(w);
            let _ = w.write_all(text.as_bytes());
            drop(w);
            // SAFETY: ends the forked child without the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            std::fs::File::from(r).read_to_string(&mut text).unwrap();
            match waitpid(child, None).unwrap() {
                WaitStatus::Exited(_, 0) => Ok(text),
                WaitStatus::Exited(_, _) => Err(text),
                other => Err(format!("child ended with {other:?}; it said: {text}")),
            }
        }
    }
}

fn errno_of(rc: libc::c_long) -> Option<i32> {
    (rc < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The `Cap*`, `NoNewPrivs` and `Seccomp*` lines of a /proc/PID/status text.
fn security_lines(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs") || l.starts_with("Seccomp"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in status"))
}

fn self_status() -> String {
    std::fs::read_to_string("/proc/self/status").unwrap()
}

fn deny_mkdir() -> LinuxSeccomp {
    serde_json::from_str(DENY_MKDIR).unwrap()
}

fn cache() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// mkdir(2) and mkdirat(2) on `dir/name`, raw: the errno of each.
fn raw_mkdirs(dir: &Path) -> (Option<i32>, Option<i32>) {
    let a = std::ffi::CString::new(dir.join("a").into_os_string().into_encoded_bytes()).unwrap();
    let b = std::ffi::CString::new(dir.join("b").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: mkdir/mkdirat with valid NUL-terminated paths.
    let ra = unsafe { libc::syscall(libc::SYS_mkdir, a.as_ptr(), 0o755) };
    let ea = errno_of(ra);
    // SAFETY: as above; AT_FDCWD with an absolute path.
    let rb = unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, b.as_ptr(), 0o755) };
    (ea, errno_of(rb))
}

#[test]
fn deny_mkdir_profile_fails_mkdir_with_eperm_in_the_child_only() {
    assert_eq!(
        status_field(&self_status(), "Seccomp"),
        "0",
        "the test runs unconfined"
    );
    let dir = tempfile::tempdir().unwrap();
    let filter = seccomp::compile_cached(&deny_mkdir(), None).unwrap();
    let d = dir.path().to_path_buf();
    let report = in_child(move || {
        filter.load().map_err(|e| e.to_string())?;
        let (a, b) = raw_mkdirs(&d);
        let std = std::fs::create_dir(d.join("c")).map_err(|e| e.raw_os_error());
        let st = self_status();
        Ok(format!(
            "{a:?} {b:?} {std:?} {} {}",
            status_field(&st, "Seccomp"),
            status_field(&st, "NoNewPrivs")
        ))
    })
    .unwrap();
    assert_eq!(
        report, "Some(1) Some(1) Err(Some(1)) 2 0",
        "EPERM for both syscalls and std"
    );
    assert!(!dir.path().join("a").exists() && !dir.path().join("c").exists());
    // The parent is unaffected.
    std::fs::create_dir(dir.path().join("a")).unwrap();
    assert_eq!(raw_mkdirs(dir.path()), (Some(libc::EEXIST), None));
}

/// A syscall through the i386 ABI (`int 0x80`), which seccomp checks against the
/// filter's x86 section.
fn i386_syscall(nr: i64, a: i64, b: i64) -> i64 {
    let ret: i64;
    // SAFETY: int 0x80 is the i386 syscall entry; the syscalls used (getpid, mkdir with a
    // pointer below 4 GiB or an invalid one) touch no memory of ours.
    unsafe {
        // rbx is LLVM's; swap the first argument into it around the call.
        std::arch::asm!("xchg {a}, rbx", "int 0x80", "xchg {a}, rbx", a = inout(reg) a => _,
            inlateout("rax") nr => ret, in("rcx") b, options(nostack));
    }
    ret
}

#[test]
fn architectures_cover_the_i386_abi() {
    // Without the x86 section, an i386 syscall is a bad architecture: the thread is killed.
    let mut only64 = deny_mkdir();
    only64.set_architectures(Some(vec![oci_spec::runtime::Arch::ScmpArchX86_64]));
    let f = seccomp::compile_cached(&only64, None).unwrap();
    let r = in_child(move || {
        f.load().map_err(|e| e.to_string())?;
        Ok(format!("survived: {}", i386_syscall(20, 0, 0)))
    });
    let e = r.unwrap_err();
    assert!(e.contains("SIGSYS"), "{e}");

    // With it (Docker's list): i386 getpid works, i386 mkdir (39) gets EPERM.
    let f = seccomp::compile_cached(&deny_mkdir(), None).unwrap();
    let report = in_child(move || {
        f.load().map_err(|e| e.to_string())?;
        let pid = i386_syscall(20, 0, 0);
        let mkdir = i386_syscall(39, 1, 0o755); // bad pointer: EFAULT if it got through
        Ok(format!("{} {mkdir}", pid == i64::from(std::process::id())))
    })
    .unwrap();
    assert_eq!(report, format!("true {}", -libc::EPERM));
}

#[test]
fn docker_default_profile_then_caps_in_runc_order() {
    let cache = cache();
    let spec = seccomp::docker_default(&caps::DOCKER_DEFAULT);
    let filter = seccomp::compile_cached(&spec, Some(cache.path())).unwrap();
    let second = seccomp::compile_cached(&deny_mkdir(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let report = in_child(move || {
        // noNewPrivileges false: load while CAP_SYS_ADMIN is still held, then drop caps.
        filter.load().map_err(|e| e.to_string())?;
        caps::apply(&caps::docker_default()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        // SAFETY: each raw syscall below either fails in the filter or, if the filter
        // were wrong, does something harmless to this throwaway child (a grandchild of
        // clone exits at once).
        unsafe {
            out.push(format!(
                "unshare {:?}",
                errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS))
            ));
            out.push(format!(
                "clone3 {:?}",
                errno_of(libc::syscall(libc::SYS_clone3, 0usize, 0usize))
            ));
            let rc = libc::syscall(
                libc::SYS_clone,
                libc::CLONE_NEWUTS | libc::SIGCHLD,
                0,
                0,
                0,
                0,
            );
            if rc == 0 {
                libc::_exit(0);
            }
            out.push(format!("clone(NEWUTS) {:?}", errno_of(rc)));
            let rc = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            if rc == 0 {
                libc::_exit(7);
            }
            let mut st = 0;
            libc::waitpid(rc as i32, &mut st, 0);
            out.push(format!("fork {}", libc::WEXITSTATUS(st)));
            out.push(format!(
                "personality(query) {:?}",
                errno_of(libc::syscall(libc::SYS_personality, 0xffff_ffffu64))
            ));
            out.push(format!(
                "personality(0x40000) {:?}",
                errno_of(libc::syscall(libc::SYS_personality, 0x0040000u64))
            ));
            let src = c"none";
            out.push(format!(
                "mount {:?}",
                errno_of(libc::syscall(
                    libc::SYS_mount,
                    src.as_ptr(),
                    src.as_ptr(),
                    src.as_ptr(),
                    0,
                    0
                ))
            ));
            out.push(format!("i386 getpid ok {}", i386_syscall(20, 0, 0) > 0));
        }
        let st = self_status();
        for k in [
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "Seccomp",
            "NoNewPrivs",
        ] {
            out.push(format!("{k} {}", status_field(&st, k)));
        }
        // A second filter now needs no_new_privs: CAP_SYS_ADMIN is gone.
        let e = second.clone().load().unwrap_err();
        out.push(format!(
            "second load: {}",
            matches!(e, seccomp::Error::NeedsPrivilege(_))
        ));
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        second.load().map_err(|e| e.to_string())?;
        out.push(format!("mkdir after nnp {:?}", raw_mkdirs(&d)));
        Ok(out.join("\n"))
    })
    .unwrap();
    let expected = [
        "unshare Some(1)",
        "clone3 Some(38)",
        "clone(NEWUTS) Some(1)",
        "fork 7",
        "personality(query) None",
        "personality(0x40000) Some(1)",
        "mount Some(1)",
        "i386 getpid ok true",
        "CapInh 0000000000000000",
        "CapPrm 00000000a80425fb",
        "CapEff 00000000a80425fb",
        "CapBnd 00000000a80425fb",
        "CapAmb 0000000000000000",
        "Seccomp 2",
        "NoNewPrivs 0",
        "second load: true",
        "mkdir after nnp (Some(1), Some(1))",
    ];
    assert_eq!(report.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn caps_docker_default_in_a_forked_child() {
    let report = in_child(|| {
        caps::apply(&caps::docker_default()).map_err(|e| e.to_string())?;
        let st = self_status();
        Ok(["CapEff", "CapBnd", "CapPrm", "CapInh", "CapAmb"]
            .map(|k| status_field(&st, k))
            .join(" "))
    })
    .unwrap();
    assert_eq!(
        report,
        "00000000a80425fb 00000000a80425fb 00000000a80425fb 0000000000000000 0000000000000000"
    );
}

fn set(caps: &[Capability]) -> Option<oci_spec::runtime::Capabilities> {
    Some(caps.iter().copied().collect())
}

/// `cat /proc/self/status` run as uid/gid 1000 after `pre` in the child.
fn status_after_exec_as_1000(keep: bool, spec: LinuxCapabilities) -> std::io::Result<String> {
    let mut cmd = Command::new("/bin/cat");
    cmd.arg("/proc/self/status");
    // SAFETY: the closure runs between fork and exec in the child: prctl, setgroups,
    // setres[ug]id, capset and small allocations (glibc's malloc is fork-safe).
    unsafe {
        cmd.pre_exec(move || {
            let err = |e: String| std::io::Error::other(e);
            if keep {
                caps::keep_caps_for_setuid().map_err(|e| err(e.to_string()))?;
            }
            let id = nix::unistd::Gid::from_raw(1000);
            nix::unistd::setgroups(&[]).map_err(|e| err(e.to_string()))?;
            nix::unistd::setresgid(id, id, id).map_err(|e| err(e.to_string()))?;
            let u = nix::unistd::Uid::from_raw(1000);
            nix::unistd::setresuid(u, u, u).map_err(|e| err(e.to_string()))?;
            caps::apply(&spec).map_err(|e| err(e.to_string()))
        });
    }
    let out = cmd.output()?;
    assert!(out.status.success(), "{out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn caps_survive_the_uid_switch_with_keepcaps_and_exec_through_ambient() {
    let nbs = Capability::NetBindService; // bit 10
    let mut spec = LinuxCapabilities::default();
    spec.set_bounding(set(&[nbs, Capability::Chown]))
        .set_effective(set(&[nbs]))
        .set_permitted(set(&[nbs]))
        .set_inheritable(set(&[nbs]))
        .set_ambient(set(&[nbs]));
    let st = status_after_exec_as_1000(true, spec.clone()).unwrap();
    assert_eq!(
        status_field(&st, "Uid").split_whitespace().next(),
        Some("1000")
    );
    for k in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status_field(&st, k), "0000000000000400", "{k}");
    }
    assert_eq!(status_field(&st, "CapBnd"), "0000000000000401");

    // Docker's --user 1000: bounding only; the non-root process ends with no capability.
    let mut docker_user = caps::docker_default();
    docker_user.set_effective(None).set_permitted(None);
    let st = status_after_exec_as_1000(true, docker_user).unwrap();
    assert_eq!(status_field(&st, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&st, "CapBnd"), "00000000a80425fb");

    // Without PR_SET_KEEPCAPS the switch empties the permitted set: a clear error
    // (checked in a plain child: Command passes only an errno out of pre_exec).
    assert!(status_after_exec_as_1000(false, spec.clone()).is_err());
    let e = in_child(move || {
        let u = nix::unistd::Uid::from_raw(1000);
        nix::unistd::setresuid(u, u, u).map_err(|e| e.to_string())?;
        caps::apply(&spec)
            .map(|_| String::new())
            .map_err(|e| e.to_string())
    })
    .unwrap_err();
    assert!(
        e.contains("process.capabilities.permitted: CAP_NET_BIND_SERVICE")
            && e.contains("keep_caps_for_setuid"),
        "{e}"
    );
}

#[test]
fn apply_refuses_inconsistent_sets() {
    let mut spec = caps::docker_default();
    spec.set_effective(set(&[Capability::SysAdmin]));
    let e = in_child(move || {
        caps::apply(&spec)
            .map(|_| String::new())
            .map_err(|e| e.to_string())
    })
    .unwrap_err();
    assert!(
        e.starts_with("process.capabilities.effective: CAP_SYS_ADMIN is not in permitted"),
        "{e}"
    );
    let mut spec = caps::docker_default();
    spec.set_ambient(set(&[Capability::Chown]));
    let e = in_child(move || {
        caps::apply(&spec)
            .map(|_| String::new())
            .map_err(|e| e.to_string())
    })
    .unwrap_err();
    assert!(
        e.starts_with("process.capabilities.ambient: CAP_CHOWN"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------
// runc as the control

fn busybox() -> PathBuf {
    let p = PathBuf::from("/bin/busybox");
    assert!(
        p.exists(),
        "busybox-static is needed (bash scripts/install-deps.sh)"
    );
    p
}

const SCRIPT: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
    mkdir \"$1/made\" 2>/dev/null && echo mkdir-ok || echo mkdir-failed";

/// The script under runc with `spec` (root = a busybox root filesystem).
fn under_runc(mut spec: oci_spec::runtime::Spec, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "grep", "mkdir"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "sh".into(),
        "/tmp".into(),
    ]));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap();
    root.set_path(rootfs);
    spec.set_root(Some(root));
    spec.set_hostname(Some("minnow-ocisec".into()));
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    spec.save(bundle.join("config.json")).unwrap();
    let id = format!("minnow-ocisec-{name}-{}", std::process::id());
    let state = dir.path().join("state");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc is needed (bash scripts/install-deps.sh)");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The script on the host after minnow's seccomp + caps, in runc's order.
fn under_minnow(spec: &oci_spec::runtime::Spec) -> String {
    let dir = tempfile::tempdir().unwrap();
    let process = spec.process().clone().unwrap();
    let c = process.capabilities().clone().unwrap();
    let filter = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| seccomp::compile_cached(s, None).unwrap());
    let mut cmd = Command::new(busybox());
    cmd.args(["sh", "-c", SCRIPT, "sh"]).arg(dir.path());
    // SAFETY: between fork and exec: the seccomp(2)/prctl/capset calls of load and apply.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(f) = filter.clone() {
                f.load().map_err(std::io::Error::other)?;
            }
            caps::apply(&c).map_err(std::io::Error::other)
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn docker_spec_gives_the_same_process_as_runc() {
    let spec = defaults::docker_spec();
    let runc = under_runc(spec.clone(), "default");
    let ours = under_minnow(&spec);
    assert_eq!(
        security_lines(&ours),
        security_lines(&runc),
        "minnow:\n{ours}\nrunc:\n{runc}"
    );
    assert!(
        runc.contains("CapEff:\t00000000a80425fb") && runc.contains("Seccomp:\t2"),
        "{runc}"
    );
    assert!(
        ours.ends_with("mkdir-ok\n") && runc.ends_with("mkdir-ok\n"),
        "{ours}{runc}"
    );

    // --security-opt seccomp=FILE (the deny-mkdir profile): mkdir fails under both.
    let mut spec = defaults::docker_spec();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), DENY_MKDIR).unwrap();
    defaults::seccomp_opt(&mut spec, file.path().to_str().unwrap()).unwrap();
    let runc = under_runc(spec.clone(), "denymkdir");
    let ours = under_minnow(&spec);
    assert_eq!(security_lines(&ours), security_lines(&runc));
    assert!(
        ours.ends_with("mkdir-failed\n") && runc.ends_with("mkdir-failed\n"),
        "{ours}{runc}"
    );
}
