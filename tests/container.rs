//! minnow's container runtime and image store, end to end. Needs root (namespaces,
//! mounts, cgroups) and the host's busybox-static; each test has its own store.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Store {
    dir: tempfile::TempDir,
}

/// The container tests need root and busybox-static; without them they fail (never
/// skip), saying what is missing.
fn usable() -> bool {
    assert!(
        nix_root(),
        "container tests need root (namespaces, mounts, cgroups)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "container tests need busybox-static: apt-get install busybox-static"
    );
    true
}

fn nix_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

fn bin() -> Command {
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "120", env!("CARGO_BIN_EXE_minnow")]);
    c
}

impl Store {
    fn new() -> Store {
        Store {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, group: &str, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg(group).arg("--store").arg(self.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn image(&self, args: &[&str]) -> Output {
        self.cmd("image", args).output().unwrap()
    }

    fn container(&self, args: &[&str]) -> Output {
        self.cmd("container", args).output().unwrap()
    }

    /// Runs `sh -c script` in a busybox container with extra flags; returns (code, stdout).
    fn sh(&self, flags: &[&str], script: &str) -> (i32, String, String) {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "--", "sh", "-c", script]);
        let out = self.container(&args);
        let (o, e) = text(&out);
        (out.status.code().unwrap_or(-1), o, e)
    }

    fn container_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.path().join("containers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Checks nothing of container `id` is left: no mount under the store, no cgroup, no
    /// directory.
    fn assert_clean(&self, id: &str) {
        let store = self.path().to_str().unwrap();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(store),
            "mount left behind under {store}:\n{mounts}"
        );
        assert!(
            cgroups_of(id).is_empty(),
            "cgroups left behind: {:?}",
            cgroups_of(id)
        );
        assert!(
            !self.path().join("containers").join(id).exists(),
            "container dir {id} left behind"
        );
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Cgroup directories named after container `id`, in any hierarchy.
fn cgroups_of(id: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy() == name {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("minnow-{id}"),
        4,
        &mut out,
    );
    out
}

/// The one error line, checked for shape.
fn one_error(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("minnow: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

#[test]
fn own_hostname_and_pid_1() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let (code, out, err) = s.sh(
        &["--name", "box1"],
        "hostname; echo $$; cat /proc/1/comm; true",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "box1\n1\nsh\n");
    assert!(s.container_dirs().is_empty());
}

#[test]
fn cannot_see_host_processes_or_network() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let (code, out, err) = s.sh(&[], "ls /proc | grep -c '^[0-9]'; ls /sys/class/net");
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let procs: u32 = lines.next().unwrap().parse().unwrap();
    assert!(procs <= 4, "container sees {procs} processes: {out}");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["lo"],
        "--net none should have only lo"
    );
}

#[test]
fn exit_code_passes_through() {
    if !usable() {
        return;
    }
    let s = Store::new();
    assert_eq!(s.sh(&[], "exit 7").0, 7);
    assert_eq!(
        s.sh(&[], "echo out; echo err >&2; exit 0"),
        (0, "out\n".into(), "err\n".into())
    );
    let (code, _, err) = s.sh(&[], "nosuchcommand-xyz");
    assert_eq!(code, 127, "{err}");
}

#[test]
fn writes_stay_in_the_container() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let (code, id, err) = s.sh(
        &[],
        "echo evil >> /etc/passwd; echo x > /bin/newfile; rm /bin/ls; hostname",
    );
    assert_eq!(code, 0, "{err}");
    let layers: Vec<PathBuf> = fs::read_dir(s.path().join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("rootfs"))
        .collect();
    assert_eq!(layers.len(), 1);
    let passwd = fs::read_to_string(layers[0].join("etc/passwd")).unwrap();
    assert!(!passwd.contains("evil"), "{passwd}");
    assert!(!layers[0].join("bin/newfile").exists());
    assert!(layers[0].join("bin/ls").symlink_metadata().is_ok());
    s.assert_clean(id.trim());
    // A new container starts from the image again.
    let (_, out, _) = s.sh(
        &[],
        "grep -c evil /etc/passwd; ls /bin/newfile 2>&1 | grep -c 'No such'",
    );
    assert_eq!(out, "0\n1\n");
}

#[test]
fn memory_limit_kills_a_big_allocation() {
    if !usable() {
        return;
    }
    let s = Store::new();
    // awk doubles a string to 64 MiB (holding ~128 MiB at the end): over 32 MiB.
    let big = "awk 'BEGIN{s=\"a\"; while(length(s)<67108864) s=s s; print length(s)}'";
    let (code, out, err) = s.sh(&["--mem-mib", "32"], &format!("{big}; echo rc=$?"));
    assert_eq!((code, out.as_str()), (0, "rc=137\n"), "{err}");
    // As PID 1, the allocation's SIGKILL comes back as 128+9.
    let out = s.container(&[
        "run",
        "--mem-mib",
        "32",
        "busybox",
        "--",
        "awk",
        "BEGIN{s=\"a\"; while(length(s)<67108864) s=s s}",
    ]);
    assert_eq!(out.status.code(), Some(137), "{:?}", text(&out));
    // Within the limit it works.
    let small = "awk 'BEGIN{s=\"a\"; while(length(s)<4194304) s=s s; print length(s)}'";
    assert_eq!(
        s.sh(&["--mem-mib", "64", "--cpus", "0.5", "--pids", "32"], small)
            .1,
        "4194304\n"
    );
}

#[test]
fn pids_limit_refuses_forks() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let (code, _, err) = s.sh(
        &["--pids", "4"],
        "for i in 1 2 3 4 5 6; do sleep 2 & done; wait",
    );
    assert_ne!(code, 0);
    assert!(err.contains("can't fork"), "{err}");
}

#[test]
fn nothing_left_after_a_killed_container() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let mut child = s
        .cmd("container", &["run", "busybox", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for it to run, then kill the workload from the host.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (id, pid) = loop {
        let state = s
            .container_dirs()
            .first()
            .and_then(|d| fs::read_to_string(d.join("state.json")).ok())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        if v["status"] == "running" {
            break (
                v["id"].as_str().unwrap().to_string(),
                v["pid"].as_i64().unwrap(),
            );
        }
        assert!(Instant::now() < deadline, "container never ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!cgroups_of(&id).is_empty());
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    s.assert_clean(&id);
}

#[test]
fn nothing_left_when_the_supervisor_is_signalled() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let mut child = s
        .cmd("container", &["run", "busybox", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let state = s
            .container_dirs()
            .first()
            .and_then(|d| fs::read_to_string(d.join("state.json")).ok())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        if v["status"] == "running" {
            break v["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "container never ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    // `timeout` is our child; minnow is its child. Signal minnow twice (TERM, then KILL).
    let minnow =
        fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id())).unwrap();
    for _ in 0..2 {
        Command::new("kill")
            .args(["-TERM", minnow.trim()])
            .status()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    s.assert_clean(&id);
}

#[test]
fn detached_ls_stop_rm() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let out = s.container(&["run", "-d", "--name", "bg", "busybox", "--", "sleep", "60"]);
    let (id, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let id = id.trim().to_string();
    let (ls, _) = text(&s.container(&["ls"]));
    assert!(
        ls.contains(&id) && ls.contains("bg") && ls.contains("running"),
        "{ls}"
    );
    let out = s.container(&["stop", "-t", "0.2", "bg"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let (ls, _) = text(&s.container(&["ls"]));
    assert!(ls.contains("exited (137)"), "{ls}");
    assert!(cgroups_of(&id).is_empty());
    let out = s.container(&["rm", "bg"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    s.assert_clean(&id);
    // A running one needs --force.
    let (id2, _) = text(&s.container(&["run", "-d", "busybox", "--", "sleep", "60"]));
    let e = one_error(&text(&s.container(&["rm", id2.trim()])).1);
    assert!(e.contains("is running") && e.contains("--force"), "{e}");
    assert_eq!(
        s.container(&["rm", "--force", id2.trim()]).status.code(),
        Some(0)
    );
    s.assert_clean(id2.trim());
}

#[test]
fn corrupt_layer_is_refused() {
    if !usable() {
        return;
    }
    let s = Store::new();
    assert!(s.image(&["import", "--default"]).status.success());
    let blobs = s.path().join("blobs/sha256");
    let layer = fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = fs::read(&layer).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    fs::write(&layer, data).unwrap();
    let out = s.container(&["run", "busybox", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let e = one_error(&text(&out).1);
    assert!(
        e.contains("digest mismatch") && e.contains("import it again"),
        "{e}"
    );
    assert!(s.container_dirs().is_empty());
    assert_eq!(
        fs::read_dir(s.path().join("layers")).unwrap().count(),
        0,
        "a corrupt layer was extracted"
    );
}

#[test]
fn built_layer_is_visible_and_ls_rm_work() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let add = tempfile::tempdir().unwrap();
    fs::create_dir(add.path().join("etc")).unwrap();
    fs::write(add.path().join("etc/motd"), "from the new layer\n").unwrap();
    let out = s.image(&[
        "build",
        "--from",
        "busybox",
        "--add",
        add.path().to_str().unwrap(),
        "--tag",
        "withmotd",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = s.container(&["run", "withmotd", "--", "cat", "/etc/motd"]);
    assert_eq!(text(&out).0, "from the new layer\n");
    let out = s.container(&["run", "busybox", "--", "cat", "/etc/motd"]);
    assert_ne!(out.status.code(), Some(0));
    let (ls, _) = text(&s.image(&["ls"]));
    assert!(ls.contains("withmotd") && ls.contains("busybox"), "{ls}");
    // OCI layout that other tools read.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(s.path().join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert!(names.contains(&"withmotd"), "{index}");
    assert!(s.path().join("oci-layout").exists());
    let before = fs::read_dir(s.path().join("blobs/sha256")).unwrap().count();
    assert!(s.image(&["rm", "withmotd"]).status.success());
    let after = fs::read_dir(s.path().join("blobs/sha256")).unwrap().count();
    assert_eq!(
        before - after,
        3,
        "manifest, config and the added layer are collected"
    );
    assert_eq!(fs::read_dir(s.path().join("layers")).unwrap().count(), 1);
}

#[test]
fn errors_are_one_line_and_leave_nothing() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let out = s.container(&["run", "nosuchimage", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    let e = one_error(&text(&out).1);
    assert!(
        e.contains("no image \"nosuchimage\"") && e.contains("minnow image import"),
        "{e}"
    );

    // A host without a memory controller (simulated) cannot enforce --mem-mib.
    let out = s
        .cmd(
            "container",
            &["run", "--mem-mib", "16", "busybox", "--", "true"],
        )
        .env("MINNOW_MOUNTINFO", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = one_error(&text(&out).1);
    assert!(e.contains("cannot enforce --mem-mib"), "{e}");
    assert!(s.container_dirs().is_empty());

    let out = s.container(&["run", "--cpus", "0", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error(&text(&out).1).contains("invalid --cpus"));

    let out = s.container(&["run", "--name", "bad/name", "busybox", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error(&text(&out).1).contains("invalid container name"));

    let out = s.container(&["stop", "nope"]);
    assert!(one_error(&text(&out).1).contains("no container"));
    assert!(s.container_dirs().is_empty());

    // Not root.
    let mut c = Command::new(env!("CARGO_BIN_EXE_minnow"));
    c.args(["container", "--store"])
        .arg(s.path())
        .args(["run", "busybox", "--", "true"])
        .uid(65534)
        .gid(65534);
    if let Ok(out) = c.output() {
        if out.status.code() != Some(126) {
            assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
            assert!(one_error(&text(&out).1).contains("run minnow as root"));
        }
    }
}

/// `--net veth`, run inside a network namespace of the test's own: eth0 has MINNOW_IP,
/// the host end answers ping, and no mv* interface is left afterwards.
#[test]
fn veth_network_reaches_the_host_end() {
    if !usable() {
        return;
    }
    let ns = format!("minnow-ctest-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap();
    assert!(ok.success(), "ip netns add {ns} failed");
    let s = Store::new();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "timeout", "-s", "KILL", "120"])
        .arg(env!("CARGO_BIN_EXE_minnow"))
        .args(["container", "--store"])
        .arg(s.path())
        .args(["run", "--net", "veth", "busybox", "--", "sh", "-c"])
        .arg("ip -o -4 addr show eth0 | grep -F \" $MINNOW_IP/30\" && ping -c 1 -W 5 $MINNOW_HOST_IP")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let links = Command::new("ip")
        .args(["-n", &ns, "-o", "link"])
        .output()
        .unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert!(o.contains("1 packets received"), "{o}");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|n| n.starts_with("mv"))),
        "veth host end left behind: {links}"
    );
}
