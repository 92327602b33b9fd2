//! minnow's container runtime and image store, end to end. Needs root (namespaces,
//! mounts, cgroups) and the host's busybox-static; each test has its own store.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Docker's security defaults and flags (issue 12, part 1).
#[path = "container/security.rs"]
mod security;

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

/// Every `minnow-*` cgroup directory, in any hierarchy (v1 ones may sit under the
/// caller's own cgroup, a few levels down).
fn minnow_cgroups() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with("minnow-") {
                out.insert(e.path());
            } else if depth > 0 {
                walk(&e.path(), depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new("/sys/fs/cgroup"), 5, &mut out);
    out
}

/// Fails if a `minnow-*` cgroup that was not there `before` stays behind. Other tests of
/// this binary run containers at the same time, so a new cgroup counts as left behind
/// only while it holds no process (a running container's does) and has not gone away
/// within a few seconds (one being set up or torn down does).
fn assert_no_new_cgroups(before: &BTreeSet<PathBuf>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<PathBuf> = minnow_cgroups()
            .difference(before)
            .filter(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .map(|p| p.trim().is_empty())
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "cgroups left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines of /proc/self/mountinfo that mention `path`.
fn mounts_mentioning(path: &Path) -> Vec<String> {
    let path = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(path))
        .map(String::from)
        .collect()
}

/// Runs a command that must fail as a user error: exit code 1, nothing on stdout, and
/// on stderr exactly one line, `minnow: error: ...` (no panic, backtrace or log line).
/// Afterwards nothing may be left: no container directory, no mount mentioning the
/// store, no new minnow cgroup. Returns the error line.
fn fails_cleanly(s: &Store, mut cmd: Command) -> String {
    let mounts = mounts_mentioning(s.path());
    let cgroups = minnow_cgroups();
    let out = cmd.output().unwrap();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "stdout: {o}\nstderr: {e}");
    assert_eq!(o, "", "nothing on stdout");
    assert_eq!(e.lines().count(), 1, "stderr must be one line: {e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    let line = one_error(&e);
    assert!(
        s.container_dirs().is_empty(),
        "container dirs left behind: {:?}",
        s.container_dirs()
    );
    assert_eq!(mounts_mentioning(s.path()), mounts, "mounts left behind");
    assert_no_new_cgroups(&cgroups);
    line
}

/// A tool from another OCI implementation (installed by scripts/install-deps.sh). The
/// interop tests fail, never skip, when it is missing.
fn tool(name: &str) -> Command {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: the OCI interop tests need it; run scripts/install-deps.sh (apt-get install {name})"
    );
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{cmd:?} failed: {o}{e}");
    o
}

/// `index.json`'s entry named `name` (its `org.opencontainers.image.ref.name`).
fn index_entry(store: &Path, name: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {index}"))
        .clone()
}

/// A JSON blob of the store, by digest.
fn blob_json(store: &Path, digest: &serde_json::Value) -> serde_json::Value {
    let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
    serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// Writes `v` as a blob, the way any OCI tool would; returns its descriptor.
fn put_blob_json(store: &Path, media_type: &str, v: &serde_json::Value) -> serde_json::Value {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(v).unwrap();
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    fs::write(store.join("blobs/sha256").join(&hex), &bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// Adds `desc` to index.json under `name`.
fn name_in_index(store: &Path, name: &str, mut desc: serde_json::Value) {
    let path = store.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    index["manifests"].as_array_mut().unwrap().push(desc);
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A directory with `etc/NAME` holding `contents`, for building a small image on top of
/// busybox.
fn etc_file_dir(name: &str, contents: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc").join(name), contents).unwrap();
    dir
}

/// `minnow image build --from busybox` adding /etc/NAME = `contents`, tagged `tag`.
fn build_etc_file_image(s: &Store, tag: &str, name: &str, contents: &str) {
    let add = etc_file_dir(name, contents);
    let out = s.image(&[
        "build",
        "--from",
        "busybox",
        "--add",
        add.path().to_str().unwrap(),
        "--tag",
        tag,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
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

/// The workload runs in the container's own cgroup in every hierarchy that enforces a
/// limit: v1 lines name their controllers, a v2-only controller uses the "0::" line.
#[test]
fn workload_is_in_its_cgroup_for_every_limit() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let flags = ["--mem-mib", "64", "--cpus", "0.5", "--pids", "32"];
    let (code, out, err) = s.sh(&flags, "cat /proc/self/cgroup");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<(Vec<&str>, &str)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.split(',').collect(), path))
        })
        .collect();
    for ctrl in ["memory", "cpu", "pids"] {
        let path = lines
            .iter()
            .find(|(c, _)| c.contains(&ctrl))
            .or_else(|| lines.iter().find(|(c, _)| c == &[""]))
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no cgroup line for {ctrl} in {out}"));
        let leaf = path.rsplit('/').next().unwrap_or("");
        assert!(leaf.starts_with("minnow-"), "{ctrl}: {path} ({out})");
    }
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
    build_etc_file_image(&s, "withmotd", "motd", "from the new layer\n");
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
    // Build busybox first, so no failing run below logs "building the default image".
    assert!(s.image(&["import", "--default"]).status.success());
    let run = |args: &[&str]| {
        let mut v = vec!["run"];
        v.extend_from_slice(args);
        s.cmd("container", &v)
    };

    let e = fails_cleanly(&s, run(&["nosuchimage", "--", "true"]));
    assert!(
        e.contains("no image \"nosuchimage\"") && e.contains("minnow image import"),
        "{e}"
    );

    // A host without a memory controller (simulated) cannot enforce --mem-mib.
    let mut c = run(&["--mem-mib", "16", "busybox", "--", "true"]);
    c.env("MINNOW_MOUNTINFO", "/dev/null");
    let e = fails_cleanly(&s, c);
    assert!(
        e.contains("cannot enforce --mem-mib") && e.contains("drop --mem-mib"),
        "{e}"
    );

    // A limit the kernel refuses (pids.max is at most 4194304): the cgroups already
    // exist when the write fails, and must go again.
    let e = fails_cleanly(&s, run(&["--pids", "99999999", "busybox", "--", "true"]));
    assert!(
        e.contains("cannot enforce --pids") && e.contains("pids.max"),
        "{e}"
    );

    // More MiB than bytes fit in 64 bits (this used to wrap around to a limit of 0).
    let e = fails_cleanly(
        &s,
        run(&["--mem-mib", "17592186044416", "busybox", "--", "true"]),
    );
    assert!(e.contains("invalid --mem-mib"), "{e}");

    let e = fails_cleanly(&s, run(&["--cpus", "0", "busybox"]));
    assert!(e.contains("invalid --cpus"), "{e}");

    let e = fails_cleanly(&s, run(&["--name", "bad/name", "busybox", "--", "true"]));
    assert!(e.contains("invalid container name"), "{e}");

    // --net veth without iproute2: fails after the cgroup exists.
    let path = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/bin/timeout", path.path().join("timeout")).unwrap();
    let mut c = run(&["--net", "veth", "busybox", "--", "true"]);
    c.env("PATH", path.path());
    let e = fails_cleanly(&s, c);
    assert!(
        e.contains("needs ip") && e.contains("install iproute2"),
        "{e}"
    );

    // Set-up fails inside the cloned child (its working directory is a file): the
    // child is in the cgroup and has mounted the overlay in its own namespace.
    let busybox = index_entry(s.path(), "busybox");
    let mut manifest = blob_json(s.path(), &busybox["digest"]);
    let mut config = blob_json(s.path(), &manifest["config"]["digest"]);
    config["config"]["WorkingDir"] = "/etc/passwd".into();
    manifest["config"] = put_blob_json(
        s.path(),
        "application/vnd.oci.image.config.v1+json",
        &config,
    );
    let desc = put_blob_json(
        s.path(),
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    name_in_index(s.path(), "badworkdir", desc);
    let e = fails_cleanly(&s, run(&["badworkdir", "--", "true"]));
    assert!(
        e.contains("set-up failed") && e.contains("/etc/passwd"),
        "{e}"
    );

    let e = fails_cleanly(&s, s.cmd("container", &["stop", "nope"]));
    assert!(e.contains("no container"), "{e}");

    // No rights: as nobody, the one line says root is needed. The binary is copied
    // where nobody may run it when its own directory is closed to others.
    let mut exe = PathBuf::from(env!("CARGO_BIN_EXE_minnow"));
    let open_to_all = exe
        .ancestors()
        .all(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    let copy = tempfile::tempdir().unwrap();
    if !open_to_all {
        fs::set_permissions(copy.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::copy(&exe, copy.path().join("minnow")).unwrap();
        exe = copy.path().join("minnow");
    }
    let mut c = Command::new(&exe);
    c.args(["container", "--store"])
        .arg(s.path())
        .args(["run", "busybox", "--", "true"])
        .stdin(Stdio::null())
        .uid(65534)
        .gid(65534);
    let e = fails_cleanly(&s, c);
    assert!(
        e.contains("containers need root") && e.contains("run minnow as root"),
        "{e}"
    );
}

/// umoci and skopeo read minnow's store as the OCI image layout it claims to be: an
/// imported rootfs and a built image unpack with umoci (layers and config), and skopeo
/// inspects them.
#[test]
fn umoci_and_skopeo_read_the_store() {
    if !usable() {
        return;
    }
    let (umoci, skopeo) = (|| tool("umoci"), || tool("skopeo"));
    let s = Store::new();
    let store = s.path().to_str().unwrap();
    let rootfs = etc_file_dir("greeting", "imported\n");
    let out = s.image(&["import", rootfs.path().to_str().unwrap(), "--name", "plain"]);
    assert!(out.status.success(), "{:?}", text(&out));
    build_etc_file_image(&s, "built", "greeting", "built\n");

    let names = ok(umoci().args(["ls", "--layout", store]));
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["built", "busybox", "plain"]);

    let work = tempfile::tempdir().unwrap();
    for (image, greeting) in [("plain", "imported\n"), ("built", "built\n")] {
        let bundle = work.path().join(image);
        ok(umoci()
            .args(["unpack", "--image", &format!("{store}:{image}")])
            .arg(&bundle));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/greeting")).unwrap(),
            greeting
        );
        // The runtime config umoci generates comes from minnow's image config.
        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["process"]["args"], serde_json::json!(["/bin/sh"]));
    }
    // The built image's lower layer is busybox.
    assert!(work.path().join("built/rootfs/bin/busybox").is_file());

    let inspect: serde_json::Value = serde_json::from_str(&ok(
        skopeo().args(["inspect", &format!("oci:{store}:built")])
    ))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Architecture"], "amd64");
}

/// skopeo and umoci write into minnow's store, and minnow lists and runs what they
/// wrote: a copy under a new tag, gzip-compressed layers under a full reference name,
/// a layer and config changes made by umoci (with a whiteout). minnow's garbage
/// collection afterwards leaves the store readable to them.
#[test]
fn skopeo_and_umoci_write_the_store() {
    if !usable() {
        return;
    }
    let (umoci, skopeo) = (|| tool("umoci"), || tool("skopeo"));
    let s = Store::new();
    let store = s.path().to_str().unwrap();
    build_etc_file_image(&s, "hello", "greeting", "hello\n");
    let greet = |image: &str| {
        let out = s.container(&["run", image, "--", "cat", "/etc/greeting"]);
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{image}: {o}{e}");
        o
    };

    // A plain copy under another tag.
    ok(skopeo().args([
        "copy",
        "-q",
        &format!("oci:{store}:hello"),
        &format!("oci:{store}:copied"),
    ]));
    let (ls, _) = text(&s.image(&["ls"]));
    assert!(
        ls.lines().any(|l| l.starts_with("copied ")),
        "skopeo's tag not listed: {ls}"
    );
    assert_eq!(greet("copied"), "hello\n");

    // Through another layout with gzip layers, back under a full reference name.
    let other = tempfile::tempdir().unwrap();
    let other = other.path().join("layout");
    let other = other.to_str().unwrap();
    ok(skopeo().args([
        "copy",
        "-q",
        "--dest-compress",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{store}:hello"),
        &format!("oci:{other}:gz"),
    ]));
    let name = "example.com/team/hello:gz";
    ok(skopeo().args([
        "copy",
        "-q",
        &format!("oci:{other}:gz"),
        &format!("oci:{store}:{name}"),
    ]));
    let manifest = blob_json(s.path(), &index_entry(s.path(), name)["digest"]);
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{manifest}"
        );
    }
    assert_eq!(greet(name), "hello\n");
    // And it is a base minnow can build on.
    let more = tempfile::tempdir().unwrap();
    fs::write(more.path().join("more"), "more\n").unwrap();
    let out = s.image(&[
        "build",
        "--from",
        name,
        "--add",
        more.path().to_str().unwrap(),
        "--tag",
        "ongz",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = s.container(&["run", "ongz", "--", "cat", "/etc/greeting", "/more"]);
    assert_eq!(text(&out).0, "hello\nmore\n", "{:?}", text(&out));

    // umoci: a new layer (a file added, one deleted: a whiteout) and config changes.
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle");
    ok(umoci()
        .args(["unpack", "--image", &format!("{store}:hello")])
        .arg(&bundle));
    fs::write(bundle.join("rootfs/etc/umoci"), "from umoci\n").unwrap();
    fs::remove_file(bundle.join("rootfs/etc/greeting")).unwrap();
    ok(umoci()
        .args(["repack", "--image", &format!("{store}:repacked")])
        .arg(&bundle));
    ok(umoci().args([
        "config",
        "--image",
        &format!("{store}:repacked"),
        "--config.workingdir",
        "/etc",
        "--config.env",
        "FROM_UMOCI=yes",
    ]));
    let out = s.container(&[
        "run",
        "repacked",
        "--",
        "sh",
        "-c",
        "pwd; echo $FROM_UMOCI; cat umoci; ls greeting 2>/dev/null || echo gone",
    ]);
    assert_eq!(
        text(&out).0,
        "/etc\nyes\nfrom umoci\ngone\n",
        "{:?}",
        text(&out)
    );

    // minnow's garbage collection keeps what the tools' images use.
    assert!(s.image(&["rm", "hello"]).status.success());
    assert!(s.image(&["rm", "ongz"]).status.success());
    ok(skopeo().args(["inspect", &format!("oci:{store}:copied")]));
    ok(skopeo().args(["inspect", &format!("oci:{store}:{name}")]));
    ok(umoci()
        .args(["unpack", "--image", &format!("{store}:repacked")])
        .arg(work.path().join("again")));
    assert_eq!(greet("copied"), "hello\n");
}

/// A multi-platform image, as `skopeo copy --all` leaves it in an OCI layout: index.json
/// names an image index whose entries are per-platform manifests. minnow runs the
/// linux/amd64 one, and its garbage collection keeps every blob the index refers to.
#[test]
fn multi_platform_index_runs_and_survives_gc() {
    if !usable() {
        return;
    }
    let skopeo = || tool("skopeo");
    let s = Store::new();
    let store = s.path().to_str().unwrap();
    build_etc_file_image(&s, "single", "greeting", "multi\n");
    let entry = index_entry(s.path(), "single");
    let manifest = |arch: &str| {
        serde_json::json!({
            "mediaType": entry["mediaType"],
            "digest": entry["digest"],
            "size": entry["size"],
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = put_blob_json(
        s.path(),
        "application/vnd.oci.image.index.v1+json",
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [manifest("arm64"), manifest("amd64")],
        }),
    );
    name_in_index(s.path(), "handmade", index);
    // skopeo copies the whole index (all platforms) to another name in the store.
    ok(skopeo().args([
        "copy",
        "-q",
        "--all",
        &format!("oci:{store}:handmade"),
        &format!("oci:{store}:multi"),
    ]));
    assert_eq!(
        index_entry(s.path(), "multi")["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(s.image(&["rm", "single"]).status.success());
    assert!(s.image(&["rm", "handmade"]).status.success());
    let (ls, _) = text(&s.image(&["ls"]));
    assert!(
        ls.lines()
            .any(|l| l.starts_with("multi ") && !l.contains("corrupt")),
        "{ls}"
    );
    let out = s.container(&["run", "multi", "--", "cat", "/etc/greeting"]);
    assert_eq!(text(&out).0, "multi\n", "{:?}", text(&out));
    ok(skopeo().args(["inspect", &format!("oci:{store}:multi")]));
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

/// Mount points under /sys in a mountinfo text, with their per-mount options.
fn sys_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (point, opts) = (*f.get(4)?, *f.get(5)?);
            (point == "/sys" || point.starts_with("/sys/")).then(|| (point.into(), opts.into()))
        })
        .collect()
}

/// The container's /sys is read-only all the way down (issue 10, part 2): with the
/// host's /sys bound (MINNOW_SYSFS=bind, as where a new sysfs cannot be mounted) every
/// mount under it is read-only, and making a cgroup in a hierarchy mounted under
/// /sys/fs/cgroup fails with EROFS; the new sysfs (the default) is read-only too.
#[test]
fn sys_is_read_only_all_the_way_down() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let host = sys_mounts(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    let nested: Vec<&String> = host
        .iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with("/sys/fs/cgroup/"))
        .collect();
    assert!(
        !nested.is_empty(),
        "this host has no cgroup mount under /sys/fs/cgroup to check: {host:?}"
    );
    let probe = format!("minnow-sysprobe-{}", std::process::id());
    let mut script = String::from("cat /proc/self/mountinfo; echo ---;");
    for p in &nested {
        script.push_str(&format!(
            "mkdir {p}/{probe} 2>/dev/null && echo MADE {p} || echo REFUSED {p} $?;"
        ));
    }
    script.push_str("echo 1 > /sys/fs/cgroup/pids/cgroup.clone_children && echo WROTE; true");
    for bind in [true, false] {
        let mut c = s.cmd("container", &["run", "busybox", "--", "sh", "-c", &script]);
        if bind {
            c.env("MINNOW_SYSFS", "bind");
        }
        let out = c.output().unwrap();
        let (stdout, stderr) = text(&out);
        for p in &nested {
            let _ = fs::remove_dir(format!("{p}/{probe}"));
        }
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let (mounts, results) = stdout.split_once("---\n").unwrap();
        let inside = sys_mounts(mounts);
        if bind {
            // Plus the masked paths' mounts (Docker's /sys/firmware, ...).
            let masked = ["/sys/firmware", "/sys/devices/virtual/powercap"];
            let bound = inside.iter().filter(|(p, _)| !masked.contains(&p.as_str()));
            assert_eq!(bound.count(), host.len(), "the bind has the host's mounts");
        }
        for (point, opts) in &inside {
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "{point} is writable in the container ({opts}); bind={bind}"
            );
        }
        assert!(
            !results.contains("MADE") && !results.contains("WROTE"),
            "bind={bind}: {results}"
        );
        assert!(
            stderr.is_empty() || !bind || !stderr.contains("MADE"),
            "{stderr}"
        );
    }
}

/// Item 7 of issue 10: a missing source says it is missing (it said it could not name
/// the image); junk says it is not a tar, in printable text (it printed the file's
/// bytes); nothing is left in the store either way.
#[test]
fn import_errors_say_what_is_wrong_in_printable_text() {
    if !usable() {
        return;
    }
    let s = Store::new();
    let out = s.image(&["import", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let e = one_error(&text(&out).1);
    assert!(
        e.contains("/nonexistent") && e.contains("No such file") && e.contains("; pass"),
        "{e}"
    );
    assert!(!e.contains("cannot name"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar");
    let mut bytes = b"\x1b[31mjunk\x07\r\n\x00".to_vec();
    bytes.extend((0..4000u32).map(|i| (i * 7919 % 251) as u8));
    fs::write(&junk, &bytes).unwrap();
    let out = s.image(&["import", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = std::str::from_utf8(&out.stderr).expect("the error line is UTF-8");
    let e = one_error(stderr);
    assert!(e.contains("is not a tar archive"), "{e}");
    assert!(
        !stderr
            .trim_end_matches('\n')
            .chars()
            .any(|c| c.is_control())
            && !stderr.contains('\u{fffd}'),
        "{stderr:?}"
    );
    assert_eq!(
        fs::read_dir(s.path().join("blobs/sha256")).unwrap().count(),
        0,
        "the junk blob stayed"
    );
}
