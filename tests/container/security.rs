//! `minnow container run` is secure by default with Docker's defaults (issue 12, part 1):
//! Docker's 14 capabilities, its seccomp profile, masked and read-only paths, device nodes
//! usable only in /dev's standard set; Docker's flags lift them. runc running Docker's
//! default config.json is the control for the process's security state.

use super::*;

const DENY_MKDIR: &str = "crates/container/testdata/docker/seccomp-deny-mkdir.profile.json";

/// The value of a `/proc/PID/status` line in `out`, e.g. `field(out, "CapEff")`.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"))
}

const STATUS: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status";

/// The `Cap*`, `NoNewPrivs`, `Seccomp` lines, whitespace normalised.
fn security_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs") || l.starts_with("Seccomp"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn ok_run(s: &Store, flags: &[&str], script: &str) -> String {
    let (code, out, err) = s.sh(flags, script);
    assert_eq!(code, 0, "flags {flags:?}, script {script:?}: {err}");
    out
}

#[test]
fn default_has_dockers_capabilities_and_seccomp_privileged_lifts_them() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let out = ok_run(&s, &[], STATUS);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(&out, key), "00000000a80425fb", "{key}:\n{out}");
    }
    assert_eq!(field(&out, "CapInh"), "0000000000000000");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "NoNewPrivs"), "0", "{out}");

    // --privileged: today's behaviour, every capability this host has, no filter.
    let host = fs::read_to_string("/proc/self/status").unwrap();
    let out = ok_run(&s, &["--privileged"], STATUS);
    assert_eq!(field(&out, "CapEff"), field(&host, "CapBnd"), "{out}");
    assert_ne!(field(&out, "CapEff"), "00000000a80425fb");
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");

    let out = ok_run(&s, &["--security-opt", "no-new-privileges"], STATUS);
    assert_eq!(field(&out, "NoNewPrivs"), "1", "{out}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "CapEff"), "00000000a80425fb", "{out}");

    let out = ok_run(&s, &["--security-opt", "seccomp=unconfined"], STATUS);
    assert_eq!(field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(field(&out, "CapEff"), "00000000a80425fb", "{out}");

    let out = ok_run(
        &s,
        &["--cap-add", "NET_ADMIN", "--cap-drop", "chown"],
        STATUS,
    );
    assert_eq!(field(&out, "CapEff"), "00000000a80435fa", "{out}");
}

/// The paths of `list` this host's kernel has (this one has no /proc/kcore or
/// /proc/sysrq-trigger, for instance); each is checked in the container.
fn on_this_host<'a>(list: impl IntoIterator<Item = &'a &'a str>) -> Vec<&'a str> {
    list.into_iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect()
}

/// A mount point of `mountinfo` with its per-mount options.
fn mount_opts<'a>(mountinfo: &'a str, point: &str) -> Option<&'a str> {
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(4) == Some(&point))
            .then(|| f.get(5).copied())
            .flatten()
    })
}

#[test]
fn proc_sys_and_sysrq_trigger_are_read_only() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let knob = "/proc/sys/kernel/printk_ratelimit";
    let host = fs::read_to_string(knob).unwrap().trim().to_string();
    let other = if host == "7" { "8" } else { "7" };
    let sysrq = Path::new("/proc/sysrq-trigger").exists();
    let mut script = format!("echo {other} > {knob}; echo rc=$?; ");
    if sysrq {
        script.push_str("echo h > /proc/sysrq-trigger; echo rc=$?; ");
    }
    script.push_str("echo ---; cat /proc/self/mountinfo");
    let (code, out, err) = s.sh(&[], &script);
    assert_eq!(code, 0, "{err}");
    let after = fs::read_to_string(knob).unwrap().trim().to_string();
    if after != host {
        fs::write(knob, &host).unwrap(); // put it back before failing
    }
    assert_eq!(after, host, "the container changed the host's {knob}");
    let (writes, mountinfo) = out.split_once("---\n").unwrap();
    let want = if sysrq { "rc=1\nrc=1\n" } else { "rc=1\n" };
    assert_eq!(writes, want, "{err}");
    let erofs = err.matches("Read-only file system").count();
    assert_eq!(erofs, want.lines().count(), "{err}");
    let ro = on_this_host(&minnow_container::defaults::READONLY_PATHS);
    assert!(ro.contains(&"/proc/sys"), "{ro:?}");
    for p in ro {
        let opts = mount_opts(mountinfo, p).unwrap_or_else(|| panic!("{p} not a mount"));
        assert!(opts.split(',').any(|o| o == "ro"), "{p}: {opts}");
    }
    // The control: privileged, the same knob is writable (its own value: no change).
    let script = format!("echo {host} > {knob}; echo rc=$?");
    assert_eq!(ok_run(&s, &["--privileged"], &script), "rc=0\n");
}

#[test]
fn masked_paths_read_empty() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let masked = on_this_host(
        minnow_container::defaults::MASKED_PATHS
            .iter()
            .chain(&minnow_container::security::EXTRA_MASKED_PATHS),
    );
    assert!(masked.contains(&"/proc/keys") && masked.contains(&"/sys/firmware"));
    // A file reads empty and is /dev/null (1:3); a directory is empty and read-only.
    let mut script = String::new();
    for p in &masked {
        if Path::new(p).is_dir() {
            script.push_str(&format!(
                "[ -z \"$(ls -A {p})\" ] && ! mkdir {p}/x 2>/dev/null && echo masked {p}; "
            ));
        } else {
            script.push_str(&format!(
                "[ \"$(stat -c %t:%T {p}):$(wc -c < {p})\" = 1:3:0 ] && echo masked {p}; "
            ));
        }
    }
    script.push_str("echo ---; cat /proc/self/mountinfo");
    let out = ok_run(&s, &[], &script);
    let (checks, mountinfo) = out.split_once("---\n").unwrap();
    let want: String = masked.iter().map(|p| format!("masked {p}\n")).collect();
    assert_eq!(checks, want);
    for p in &masked {
        assert!(mount_opts(mountinfo, p).is_some(), "{p} is not a mount");
    }
    // The control: privileged, none is masked, and /sys/firmware is the host's.
    let out = ok_run(
        &s,
        &["--privileged"],
        "ls /sys/firmware; echo ---; cat /proc/self/mountinfo",
    );
    let (firmware, mountinfo) = out.split_once("---\n").unwrap();
    assert!(!firmware.is_empty(), "{out}");
    for p in &masked {
        assert!(
            mount_opts(mountinfo, p).is_none(),
            "{p} masked under --privileged"
        );
    }
}

#[test]
fn cap_drop_all_makes_chown_fail() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let script = "touch /tmp/f && chown 1000 /tmp/f && echo chowned; grep CapEff /proc/self/status";
    let out = ok_run(&s, &[], script);
    assert!(out.starts_with("chowned\n"), "{out}");
    let (code, out, err) = s.sh(&["--cap-drop", "ALL"], script);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("chowned"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(field(&out, "CapEff"), "0000000000000000");
}

#[test]
fn a_seccomp_file_denying_mkdir_makes_mkdir_fail() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join(DENY_MKDIR);
    let opt = format!("seccomp={}", profile.display());
    let script = "mkdir /made && echo made; grep Seccomp: /proc/self/status";
    assert_eq!(ok_run(&s, &[], script), "made\nSeccomp:\t2\n");
    let (code, out, err) = s.sh(&["--security-opt", &opt], script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Seccomp:\t2\n");
    assert!(
        err.contains("Operation not permitted"),
        "mkdir should fail with EPERM: {err}"
    );
}

#[test]
fn user_1000_has_no_capabilities() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let script = "id -u; id -g; grep -E '^Cap(Eff|Bnd)' /proc/self/status";
    let out = ok_run(&s, &["--user", "1000"], script);
    assert!(out.starts_with("1000\n0\n"), "{out}");
    assert_eq!(field(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(field(&out, "CapBnd"), "00000000a80425fb", "{out}");
    let out = ok_run(&s, &["-u", "1000:1000"], script);
    assert!(out.starts_with("1000\n1000\n"), "{out}");
    let out = ok_run(&s, &[], script);
    assert!(out.starts_with("0\n0\n"), "{out}");
}

#[test]
fn read_only_root() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let script = "touch /x && echo root-ok; touch /dev/shm/x && echo shm-ok; true";
    assert_eq!(ok_run(&s, &[], script), "root-ok\nshm-ok\n");
    let (code, out, err) = s.sh(&["--read-only"], script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "shm-ok\n");
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn a_device_node_made_with_mknod_cannot_be_opened() {
    if !usable() {
        return;
    }
    let s = Store::new();
    // A block device of this host (one byte read, nothing written), and /dev/null again.
    let parts = fs::read_to_string("/proc/partitions").unwrap();
    let (major, minor) = parts
        .lines()
        .skip(2)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string()))
        })
        .expect("this host has no block device to check with");
    let script = format!(
        "mknod /dev/blk b {major} {minor} && head -c 1 /dev/blk | wc -c; \
         mknod /tmp/blk b {major} {minor} && head -c 1 /tmp/blk | wc -c; \
         mknod /dev/null2 c 1 3 && echo x > /dev/null2 && echo null2-ok; \
         echo x > /dev/null && head -c 1 /dev/zero | wc -c; true"
    );
    let (code, out, err) = s.sh(&[], &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "0\n0\n1\n",
        "only /dev's standard nodes open: {out}{err}"
    );
    assert_eq!(err.matches("Permission denied").count(), 3, "{err}");
    // The control: privileged, the copy of /dev/null opens, and the block device opens
    // or is refused by the host's own devices cgroup (EPERM; this one's refuses it), not
    // by nodev (EACCES).
    let (code, out, err) = s.sh(&["--privileged"], &script);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("null2-ok\n1\n"), "{out}{err}");
    assert!(!err.contains("Permission denied"), "{err}");
}

#[test]
fn bad_security_flags_are_one_line_and_leave_nothing() {
    if !usable() {
        return;
    }
    let s = Store::new();
    assert!(s.image(&["import", "--default"]).status.success());
    let bad = tempfile::tempdir().unwrap();
    let junk = bad.path().join("junk.json");
    fs::write(&junk, "{\"defaultAction\": \"SCMP_ACT_FLY\"}").unwrap();
    let junk_opt = format!("seccomp={}", junk.display());
    let cases: [(&[&str], &str); 6] = [
        (&["--cap-add", "FLY"], "--cap-add \"FLY\""),
        (&["--cap-drop", "CAP_SWIM"], "--cap-drop \"CAP_SWIM\""),
        (&["--security-opt", "apparmor=x"], "unknown option"),
        (
            &["--security-opt", "seccomp=/nonexistent.json"],
            "cannot read",
        ),
        (&["--security-opt", &junk_opt], "SCMP_ACT_FLY"),
        (&["--user", "1000:"], "--user"),
    ];
    for (flags, want) in cases {
        let mut v = vec!["run"];
        v.extend_from_slice(flags);
        v.extend_from_slice(&["busybox", "--", "true"]);
        let e = fails_cleanly(&s, s.cmd("container", &v));
        assert!(e.contains(want) && e.contains("; "), "{flags:?}: {e}");
    }
    // A user name the image does not have (checked against its /etc/passwd).
    let e = fails_cleanly(
        &s,
        s.cmd(
            "container",
            &["run", "-u", "ghost", "busybox", "--", "true"],
        ),
    );
    assert!(e.contains("ghost"), "{e}");
}

/// Docker's default config.json under runc: a busybox root, `args` = `script`.
fn under_runc(spec: &mut oci_spec::runtime::Spec, script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    for d in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.into()]));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap();
    root.set_path(rootfs);
    spec.set_root(Some(root));
    spec.set_hostname(Some("minnow-runc-control".into()));
    let bundle = dir.path().join("bundle");
    fs::create_dir(&bundle).unwrap();
    spec.save(bundle.join("config.json")).unwrap();
    let id = format!("minnow-ctl-{}", std::process::id());
    let state = dir.path().join("state");
    let out = tool("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = tool("runc")
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id])
        .output();
    let (o, e) = text(&out);
    assert!(out.status.success(), "runc: {e}");
    o
}

/// runc as the control: the same Docker defaults and flags give the same `Cap*`,
/// `NoNewPrivs` and `Seccomp` lines under runc and under `minnow container run`.
#[test]
fn same_process_security_as_runc_with_dockers_config() {
    if !usable() {
        return;
    }
    use minnow_container::defaults::{apply_flags, docker_spec, Flags};
    let s = Store::new();
    let cases: [(&[&str], Flags); 4] = [
        (&[], Flags::default()),
        (
            &["--security-opt", "no-new-privileges"],
            Flags {
                security_opt: vec!["no-new-privileges".into()],
                ..Flags::default()
            },
        ),
        (
            &["--cap-drop", "ALL", "--cap-add", "NET_RAW"],
            Flags {
                cap_drop: vec!["ALL".into()],
                cap_add: vec!["NET_RAW".into()],
                ..Flags::default()
            },
        ),
        (
            &["--user", "1000"],
            Flags {
                user: Some("1000".into()),
                ..Flags::default()
            },
        ),
    ];
    for (flags, docker) in cases {
        let mut spec = docker_spec();
        apply_flags(&mut spec, &docker, None).unwrap();
        let runc = security_lines(&under_runc(&mut spec, STATUS));
        let ours = security_lines(&ok_run(&s, flags, STATUS));
        assert_eq!(ours, runc, "{flags:?}");
        assert_eq!(
            ours.len(),
            8,
            "Cap*, NoNewPrivs, Seccomp, Seccomp_filters: {ours:?}"
        );
    }
}
