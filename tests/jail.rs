//! `minnow run --jail DIR --uid U --gid G`: the jailed VMM boots tiny guests; while one
//! waits, the host inspects the VMM process (credentials, namespaces, cgroup, limits,
//! its root, mounts and fds); after it exits, nothing is left; bad input gets one line.
//! Needs root and /dev/kvm, like tests/vm.rs.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{guest, minnow, run_with_timeout, text};

/// The jailed VMM's user and group: ids no account on the machine has.
const UID: u32 = 64201;
const GID: u32 = 64202;

/// A jail for one test: a temporary parent directory, DIR inside it, a unique id (its
/// cgroup is `minnow-jail-<id>`).
struct Jail {
    tmp: tempfile::TempDir,
    id: String,
}

impl Jail {
    fn new() -> Jail {
        static N: AtomicU32 = AtomicU32::new(0);
        Jail {
            tmp: tempfile::tempdir().unwrap(),
            id: format!(
                "test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// `minnow run --kernel GUEST --mem-mib 32 --jail DIR --uid U --gid G --jail-id ID EXTRA...`
    fn command(&self, guest_name: &str, extra: &[&str]) -> Command {
        let mut cmd = minnow();
        cmd.arg("run")
            .arg("--kernel")
            .arg(guest(guest_name))
            .args(["--mem-mib", "32", "--jail"])
            .arg(self.dir())
            .args(["--uid", &UID.to_string(), "--gid", &GID.to_string()])
            .args(["--jail-id", &self.id])
            .args(extra)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts halt.elf jailed and waits for its "halting" line.
    fn start_halted(&self, extra: &[&str]) -> Running {
        let mut child = self
            .command("halt.elf", extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("halting"), "first line: {line:?}");
        let vmm = children_of(child.id())
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                panic!("no VMM process under the jailer {}", child.id());
            });
        Running { child, vmm }
    }

    /// The cgroup directories named after this jail, anywhere in the cgroup mounts.
    fn cgroups(&self) -> Vec<PathBuf> {
        let name = format!("minnow-jail-{}", self.id);
        let mut found = Vec::new();
        find_named(Path::new("/sys/fs/cgroup"), &name, 6, &mut found);
        found
    }

    /// Checks that nothing of the jail is left: no cgroup, no mount at or under DIR in
    /// this mount namespace.
    fn assert_nothing_left(&self) {
        assert_eq!(self.cgroups(), Vec::<PathBuf>::new(), "cgroups left behind");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir();
        assert!(
            !mounts.contains(dir.to_str().unwrap()),
            "a mount at {} is left: {mounts}",
            dir.display()
        );
    }
}

/// A jailed halt.elf: the jailer (`child`) and the VMM it runs (`vmm`, a host PID).
struct Running {
    child: Child,
    vmm: u32,
}

impl Running {
    fn proc(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.vmm))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.proc(file)).unwrap()
    }

    /// The value of `key:` in /proc/PID/status.
    fn status(&self, key: &str) -> String {
        self.read("status")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in /proc/{}/status", self.vmm))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// SIGTERM to the jailer; returns minnow's exit code and stderr.
    fn stop(mut self) -> (Option<i32>, String) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the jailer did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), stderr)
    }
}

/// A test that fails while its VM runs still stops it (SIGTERM to the jailer, which cleans
/// up), so no jail outlives the test.
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Host PIDs whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn find_named(dir: &Path, name: &str, depth: u32, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name() == name {
            found.push(e.path());
        } else if depth > 0 {
            find_named(&e.path(), name, depth - 1, found);
        }
    }
}

/// Every path under `root` (relative, "/"-prefixed), not following symlinks.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.insert(format!("/{}", p.strip_prefix(root).unwrap().display()));
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// A 4 KiB disk image starting with `MINNOW-DISK-TEST`, owned by `owner` if given.
fn disk(dir: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    let p = dir.join("vb.img");
    let mut data = b"MINNOW-DISK-TEST".to_vec();
    data.resize(4096, 0x5a);
    std::fs::write(&p, data).unwrap();
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(&p, Some(u), Some(g)).unwrap();
    }
    p
}

#[test]
fn jailed_vmm_boots_a_guest_and_minnow_exits_with_its_status() {
    let jail = Jail::new();
    let out = run_with_timeout(jail.command("exit42.elf", &[]), 30);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("workload exits 42"), "{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(42), "{stderr}");
    assert!(!jail.dir().exists(), "the DIR it created is removed");
    jail.assert_nothing_left();
}

#[test]
fn jailed_guest_writes_its_disk_through_the_jail() {
    let jail = Jail::new();
    let img = disk(jail.tmp.path(), Some((UID, GID)));
    let out = run_with_timeout(
        jail.command("virtioblk.elf", &["--disk", img.to_str().unwrap()]),
        30,
    );
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("virtio-blk: read MINNOW-DISK-TEST") && stdout.contains("done"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(&std::fs::read(&img).unwrap()[..16], b"MINNOW-DISK-DONE");
    jail.assert_nothing_left();
}

#[test]
fn jailed_vmm_runs_as_uid_gid_without_capabilities_in_its_own_namespaces() {
    let jail = Jail::new();
    let vm = jail.start_halted(&[
        "--jail-mem-mib",
        "256",
        "--jail-pids",
        "64",
        "--jail-nofile",
        "512",
        "--jail-fsize",
        "1048576",
    ]);
    assert_eq!(vm.status("Uid"), format!("{UID} {UID} {UID} {UID}"));
    assert_eq!(vm.status("Gid"), format!("{GID} {GID} {GID} {GID}"));
    assert_eq!(vm.status("Groups"), "");
    // PID 1 of its own PID namespace.
    assert_eq!(vm.status("NSpid"), format!("{} 1", vm.vmm));
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(vm.status(set), "0000000000000000", "{set}");
    }
    assert_eq!(vm.status("NoNewPrivs"), "1");
    let ns = |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let me = std::process::id().to_string();
    let vmm = vm.vmm.to_string();
    assert_ne!(ns(&vmm, "mnt"), ns(&me, "mnt"), "own mount namespace");
    assert_ne!(ns(&vmm, "pid"), ns(&me, "pid"), "own PID namespace");
    assert_eq!(
        ns(&vmm, "net"),
        ns(&me, "net"),
        "the host's network by default"
    );
    // Its own session: the terminal, if any, is not its controlling terminal.
    let stat = vm.read("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], vmm, "session id is its own PID: {stat}");
    assert_eq!(vm.read("environ"), "", "empty environment");
    let limits = vm.read("limits");
    let limit = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {limits}"))
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(limit("Max open files"), "512");
    assert_eq!(limit("Max file size"), "1048576");
    // In minnow-jail-<id> in every hierarchy it uses, with the limits written.
    let cgroup = vm.read("cgroup");
    let name = format!("minnow-jail-{}", jail.id);
    let dirs = jail.cgroups();
    assert!(!dirs.is_empty(), "no cgroup {name}");
    for dir in &dirs {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == vmm),
            "{} holds {procs:?}",
            dir.display()
        );
    }
    assert!(cgroup.contains(&name), "{cgroup}");
    let value = |files: &[&str]| {
        dirs.iter()
            .flat_map(|d| files.iter().map(move |f| d.join(f)))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|v| v.trim().to_string())
    };
    assert_eq!(
        value(&["memory.limit_in_bytes", "memory.max"]).as_deref(),
        Some("268435456")
    );
    assert_eq!(value(&["pids.max"]).as_deref(), Some("64"));
    let (code, stderr) = vm.stop();
    assert_eq!(
        code,
        Some(0),
        "SIGTERM reaches the VMM, which stops cleanly: {stderr}"
    );
    assert!(stderr.contains("stopping the VM on a signal"), "{stderr}");
    jail.assert_nothing_left();
}

/// The jailed VMM cannot open a host path outside DIR. Shown from the host, and for every
/// path at once rather than for a sample: what a process can open is what resolves from
/// its root and working directory in its mount namespace, plus what its open fds lead to.
/// So the test checks (1) that its root holds exactly the jail's files, and host paths
/// resolved through its root (/proc/PID/root/...) do not exist; (2) that its mount table
/// holds only the jail's tmpfs and bind mounts (no proc, sysfs or host filesystem root);
/// (3) that its working directory is that root; (4) that no fd above stdio leads to a
/// file; and (the test above) that it has no capabilities and no_new_privs, so it cannot
/// mount, chroot, setns or open_by_handle_at its way out. A path the VMM itself tried to
/// open would only show that one path.
#[test]
fn jailed_vmm_sees_only_its_files() {
    let jail = Jail::new();
    let img = disk(jail.tmp.path(), Some((UID, GID)));
    let ro = jail.tmp.path().join("ro.img");
    std::fs::copy(&img, &ro).unwrap();
    let disks = [
        "--disk",
        img.to_str().unwrap(),
        "--disk",
        &format!("{},ro", ro.display()),
    ];
    let vm = jail.start_halted(&disks);
    let root = vm.proc("root");
    let files = tree(&root);
    let expected_files = [
        "/vm.json",
        "/kernel",
        "/disk0",
        "/disk1",
        "/dev/kvm",
        "/dev/null",
        "/dev/urandom",
    ];
    for f in expected_files {
        assert!(files.contains(f), "{f} missing from the jail: {files:?}");
    }
    let is_dir = |p: &str| root.join(&p[1..]).symlink_metadata().unwrap().is_dir();
    for f in &files {
        let shared_lib = f.contains(".so");
        assert!(
            expected_files.contains(&f.as_str()) || shared_lib || is_dir(f),
            "{f} is in the jail: {files:?}"
        );
    }
    let dirs: Vec<&String> = files.iter().filter(|f| is_dir(f)).collect();
    for d in &dirs {
        assert!(
            *d == "/dev"
                || files
                    .iter()
                    .any(|f| f.starts_with(&format!("{d}/")) && f.contains(".so")),
            "unexpected directory {d} in the jail"
        );
    }
    let kernel = guest("halt.elf");
    assert_eq!(
        std::fs::read(root.join("kernel")).unwrap(),
        std::fs::read(&kernel).unwrap(),
        "/kernel is the host's kernel file"
    );
    let vm_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("vm.json")).unwrap()).unwrap();
    assert_eq!(vm_json["kernel"], "/kernel");
    assert_eq!(vm_json["disks"][1]["path"], "/disk1");
    for host_path in [
        "/etc/passwd",
        "/proc/self",
        "/sys/class",
        "/tmp",
        "/root",
        kernel.to_str().unwrap(),
        img.to_str().unwrap(),
        jail.tmp.path().to_str().unwrap(),
    ] {
        assert!(
            !root.join(&host_path[1..]).exists(),
            "{host_path} resolves inside the jail"
        );
    }
    // /dev/kvm: the host's device numbers, for the jail's user only.
    let kvm = std::fs::metadata(root.join("dev/kvm")).unwrap();
    assert!(kvm.file_type().is_char_device());
    assert_eq!(kvm.rdev(), std::fs::metadata("/dev/kvm").unwrap().rdev());
    assert_eq!(
        (kvm.uid(), kvm.gid(), kvm.mode() & 0o777),
        (UID, GID, 0o600)
    );
    // (2) Mounts: the root tmpfs (read-only) and the bind mounts, nothing else.
    let mountinfo = vm.read("mountinfo");
    let mut points = BTreeSet::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let fstype = line.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        let (point, opts) = (f[4], f[5]);
        points.insert(point.to_string());
        assert!(
            !["proc", "sysfs", "devtmpfs", "cgroup", "cgroup2"].contains(&fstype),
            "{line}"
        );
        assert!(opts.contains("nosuid"), "{line}");
        match point {
            "/" => assert!(fstype == "tmpfs" && opts.starts_with("ro"), "{line}"),
            "/disk0" => assert!(opts.starts_with("rw") && opts.contains("noexec"), "{line}"),
            "/kernel" | "/disk1" => {
                assert!(opts.starts_with("ro") && opts.contains("noexec"), "{line}")
            }
            p => assert!(p.contains(".so") && opts.starts_with("ro"), "{line}"),
        }
    }
    for p in ["/", "/kernel", "/disk0", "/disk1"] {
        assert!(points.contains(p), "{p} not mounted: {mountinfo}");
    }
    // (3) Its working directory is its root.
    assert_eq!(tree(&vm.proc("cwd")), files);
    // (4) No fd but stdio leads to a file: KVM objects, eventfds, epoll, sockets, or the
    // jail's own files (the disks, /dev/kvm).
    for e in std::fs::read_dir(vm.proc("fd")).unwrap().flatten() {
        let n: u32 = e.file_name().to_string_lossy().parse().unwrap();
        let target = std::fs::read_link(e.path()).unwrap();
        let t = target.to_string_lossy();
        if n > 2 {
            assert!(
                t.starts_with("anon_inode:")
                    || t.starts_with("socket:")
                    || t.starts_with("pipe:")
                    || expected_files.contains(&t.as_ref()),
                "fd {n} -> {t}"
            );
        }
    }
    // The host's DIR is untouched: the jail's files live in the VMM's mount namespace.
    assert_eq!(
        std::fs::read_dir(jail.dir()).unwrap().count(),
        0,
        "the host sees nothing in DIR"
    );
    let (code, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    jail.assert_nothing_left();
}

#[test]
fn an_existing_dir_is_left_as_it_was() {
    let jail = Jail::new();
    let dir = jail.dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("marker"), b"mine").unwrap();
    let before = std::fs::metadata(&dir).unwrap();
    let out = run_with_timeout(jail.command("hello64.elf", &[]), 30);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("hello from 64-bit"), "{stdout}");
    let after = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec(), after.mode(), after.uid()),
        (
            before.mtime(),
            before.mtime_nsec(),
            before.mode(),
            before.uid()
        )
    );
    assert_eq!(tree(&dir), BTreeSet::from(["/marker".to_string()]));
    assert_eq!(std::fs::read(dir.join("marker")).unwrap(), b"mine");
    jail.assert_nothing_left();
}

/// A network namespace with a TAP in it, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tap: &str) -> Netns {
        let name = format!("minnow-jail-{}", std::process::id());
        let ip = |args: &[&str]| {
            let ok = Command::new("ip").args(args).status().unwrap().success();
            assert!(ok, "ip {args:?} failed (needs root and iproute2)");
        };
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&[
            "-n", &ns.0, "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr",
        ]);
        ns
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn jailed_vmm_joins_a_network_namespace_and_opens_its_tap() {
    let ns = Netns::new("jtap0");
    let jail = Jail::new();
    let vm = jail.start_halted(&[
        "--jail-netns",
        &ns.path(),
        "--net",
        "tap=jtap0",
        "--log-level",
        "debug",
    ]);
    let vmm_net = std::fs::metadata(vm.proc("ns/net")).unwrap().ino();
    assert_eq!(vmm_net, std::fs::metadata(ns.path()).unwrap().ino());
    let tun = std::fs::metadata(vm.proc("root/dev/net/tun")).unwrap();
    assert_eq!(
        tun.rdev(),
        std::fs::metadata("/dev/net/tun").unwrap().rdev()
    );
    let (code, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("net: jtap0 with MAC"), "{stderr}");
    jail.assert_nothing_left();

    // A TAP the namespace does not have: named before the VMM starts.
    let jail = Jail::new();
    let out = run_with_timeout(
        jail.command(
            "hello64.elf",
            &["--jail-netns", &ns.path(), "--net", "tap=jtap9"],
        ),
        30,
    );
    let e = one_error(&out);
    assert!(
        e.contains("TAP device jtap9 does not exist in the jail's network namespace"),
        "{e}"
    );
    jail.assert_nothing_left();
}

#[test]
fn jailed_vmm_gets_a_new_network_namespace() {
    let jail = Jail::new();
    let vm = jail.start_halted(&["--jail-new-netns"]);
    let net = |p: &Path| std::fs::read_link(p).unwrap();
    assert_ne!(net(&vm.proc("ns/net")), net(Path::new("/proc/self/ns/net")));
    let (code, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    jail.assert_nothing_left();
}

/// minnow failed with exit code 1 and one line `minnow: error: <what>; <fix>`.
fn one_error(out: &std::process::Output) -> String {
    let (_, stderr) = text(out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(
        errors[0].starts_with("minnow: error: ") && errors[0].contains("; "),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

#[test]
fn a_failing_jail_leaves_nothing_behind() {
    // The disk is root's: the check inside the jail, after the namespaces, mounts and
    // cgroup are made, refuses it.
    let jail = Jail::new();
    let img = disk(jail.tmp.path(), None);
    let out = run_with_timeout(
        jail.command("virtioblk.elf", &["--disk", img.to_str().unwrap()]),
        30,
    );
    let e = one_error(&out);
    assert!(
        e.contains(&format!(
            "the jail's user {UID}:{GID} cannot write disk {}",
            img.display()
        )) && e.contains(&format!("chown {UID}:{GID}")),
        "{e}"
    );
    assert!(!jail.dir().exists());
    jail.assert_nothing_left();
    // The same with an existing DIR: still empty, still there.
    std::fs::create_dir(jail.dir()).unwrap();
    let out = run_with_timeout(
        jail.command("virtioblk.elf", &["--disk", img.to_str().unwrap()]),
        30,
    );
    one_error(&out);
    assert_eq!(tree(&jail.dir()), BTreeSet::new());
    jail.assert_nothing_left();
}

#[test]
fn bad_jail_input_gets_one_line_errors() {
    let jail = Jail::new();
    let tmp = jail.tmp.path();
    let file = tmp.join("file");
    std::fs::write(&file, b"x").unwrap();
    let k = guest("hello64.elf");
    let run = |args: &[&str]| {
        let mut cmd = minnow();
        cmd.arg("run").args(args);
        one_error(&run_with_timeout(cmd, 30))
    };
    let (k, f, d) = (k.to_str().unwrap(), file.to_str().unwrap(), jail.dir());
    let d = d.to_str().unwrap();
    let ids = [
        "--uid",
        "64201",
        "--gid",
        "64202",
        "--jail-id",
        jail.id.as_str(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(ids.iter().map(|s| s.to_string()));
        v
    };
    let call = |v: Vec<String>| run(&v.iter().map(String::as_str).collect::<Vec<_>>());

    let e = call(with(&["--kernel", k, "--jail", f]));
    assert!(
        e.contains(&format!("jail directory {f} is not a directory")),
        "{e}"
    );
    let e = run(&["--kernel", k, "--jail", d, "--uid", "nobody", "--gid", "1"]);
    assert!(e.contains("--uid \"nobody\" is not a number"), "{e}");
    let e = run(&["--kernel", k, "--jail", d, "--uid", "1", "--gid", "0"]);
    assert!(e.contains("--gid 0 would run the VMM as root"), "{e}");
    let e = call(with(&["--kernel", "/nonexistent/vmlinux", "--jail", d]));
    assert!(
        e.contains("cannot open kernel /nonexistent/vmlinux") && e.contains("--kernel"),
        "{e}"
    );
    let e = call(with(&[
        "--kernel",
        k,
        "--initrd",
        tmp.to_str().unwrap(),
        "--jail",
        d,
    ]));
    assert!(e.contains("initrd") && e.contains("is not a file"), "{e}");
    let e = run(&["--kernel", k, "--jail", d, "--uid", "1"]);
    assert!(e.contains("--jail needs --uid UID and --gid GID"), "{e}");
    let e = run(&["--kernel", k, "--uid", "1", "--gid", "1"]);
    assert!(e.contains("need --jail DIR"), "{e}");
    let e = call(with(&["--kernel", k, "--jail", "/nonexistent/jail"]));
    assert!(
        e.contains("cannot create jail directory /nonexistent/jail"),
        "{e}"
    );
    let e = call(with(&["--kernel", k, "--jail", d, "--jail-netns", f]));
    assert!(
        e.contains(&format!("cannot join network namespace {f}")),
        "{e}"
    );
    let e = run(&[
        "--kernel",
        k,
        "--jail",
        d,
        "--uid",
        "1",
        "--gid",
        "1",
        "--jail-id",
        "../x",
    ]);
    assert!(e.contains("jail id \"../x\" is not usable"), "{e}");
    let e = call(with(&[
        "--kernel",
        k,
        "--jail",
        d,
        "--net",
        "tap=jt0,create",
    ]));
    assert!(e.contains("no CAP_NET_ADMIN"), "{e}");
    let e = call(with(&["--kernel", k, "--jail", d, "--jail-cpus", "0"]));
    assert!(e.contains("invalid --jail-cpus"), "{e}");
    assert!(!jail.dir().exists());
    jail.assert_nothing_left();
}

#[test]
fn a_second_jail_with_the_same_id_is_refused_and_leaves_the_first_alone() {
    let first = Jail::new();
    let vm = first.start_halted(&[]);
    let cgroups = first.cgroups();
    let second = Jail {
        tmp: tempfile::tempdir().unwrap(),
        id: first.id.clone(),
    };
    let out = run_with_timeout(second.command("hello64.elf", &[]), 30);
    let e = one_error(&out);
    assert!(
        e.contains("already exists") && e.contains("give another id"),
        "{e}"
    );
    assert!(!second.dir().exists());
    assert_eq!(
        first.cgroups(),
        cgroups,
        "the first jail's cgroup is untouched"
    );
    assert_eq!(
        vm.status("State").split(' ').next(),
        Some("S"),
        "the first VMM runs on"
    );
    let (code, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    first.assert_nothing_left();
}
