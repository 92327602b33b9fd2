//! minnow-runc against runc: the same bundle (busybox-static and `runc spec`'s
//! config.json, changed per test), the same command, the same expected result, for both
//! runtimes in each test. Needs root, runc and busybox-static (scripts/install-deps.sh).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "runc/tty.rs"]
mod tty;

/// A runtime under test, with a state root of its own.
struct Runtime {
    name: &'static str,
    bin: PathBuf,
    root: tempfile::TempDir,
}

impl Runtime {
    fn both() -> Vec<Runtime> {
        assert!(
            Path::new("/usr/sbin/runc").exists() || which("runc").is_some(),
            "these tests need runc as the control: apt-get install runc"
        );
        assert!(nix::unistd::geteuid().is_root(), "these tests need root");
        vec![
            Runtime {
                name: "runc",
                bin: which("runc").unwrap(),
                root: tempfile::tempdir().unwrap(),
            },
            Runtime {
                name: "minnow-runc",
                bin: PathBuf::from(env!("CARGO_BIN_EXE_minnow-runc")),
                root: tempfile::tempdir().unwrap(),
            },
        ]
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "60"])
            .arg(&self.bin)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `run -d` of the bundle as container `id`, which must succeed.
    fn run_detached(&self, bundle: &Path, id: &str) {
        let o = self
            .cmd(&["run", "-d", "--bundle", bundle.to_str().unwrap(), id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: run -d {id}: {o:?}", self.name);
    }

    /// The state JSON's status, or None when the container does not exist.
    fn status(&self, id: &str) -> Option<String> {
        let o = self.out(&["state", id]);
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        Some(v["status"].as_str().unwrap().to_string())
    }

    fn state(&self, id: &str) -> Value {
        let o = self.out(&["state", id]);
        assert!(o.status.success(), "{}: state: {o:?}", self.name);
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status(id).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{}: {id} never became {want}: {:?}",
                self.name,
                self.status(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A bundle: busybox-static as the root file system, `runc spec`'s config.json with
/// terminal off, `args`, and `edit`'s changes.
fn bundle(args: &[&str], edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "needs busybox-static: apt-get install busybox-static"
    );
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    let o = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "runc spec: {o:?}");
    let path = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(args);
    edit(&mut spec);
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Every cgroup directory named `name` in the host's hierarchies.
fn cgroups_named(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join(name);
        if p.exists() {
            out.push(p);
        }
        if h.path().join("cgroup.procs").exists() && h.file_name() == *name {
            out.push(h.path());
        }
    }
    out
}

/// Mounts of the host that mention `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .map(String::from)
        .collect()
}

#[test]
fn run_gives_the_output_and_exit_code() {
    let b = bundle(&["sh", "-c", "echo hi; echo oops >&2; exit 3"], |_| {});
    for rt in Runtime::both() {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "r1"]);
        assert_eq!(text(&o.stdout), "hi\n", "{}: {o:?}", rt.name);
        assert!(text(&o.stderr).contains("oops"), "{}: {o:?}", rt.name);
        assert_eq!(o.status.code(), Some(3), "{}: {o:?}", rt.name);
        assert_eq!(
            rt.status("r1"),
            None,
            "{}: run leaves no container",
            rt.name
        );
    }
}

#[test]
fn a_missing_command_fails_create() {
    let b = bundle(&["no-such-program"], |_| {});
    for rt in Runtime::both() {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "m1"]);
        assert!(!o.status.success(), "{}: {o:?}", rt.name);
        assert!(
            text(&o.stderr).contains("executable file not found"),
            "{}: {o:?}",
            rt.name
        );
        assert_eq!(rt.status("m1"), None, "{}", rt.name);
    }
}

#[test]
fn lifecycle_create_start_kill_delete() {
    let b = bundle(&["sleep", "30"], |_| {});
    for rt in Runtime::both() {
        let pid_file = b.path().join(format!("{}.pid", rt.name));
        let o = rt
            .cmd(&[
                "create",
                "--bundle",
                b.path().to_str().unwrap(),
                "--pid-file",
                pid_file.to_str().unwrap(),
                "life",
            ])
            // The container inherits these: a pipe would stay open until it exits.
            .stdout(Stdio::null())
            .stderr(fs::File::create(b.path().join(format!("{}.err", rt.name))).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: create: {o:?}", rt.name);
        let st = rt.state("life");
        assert_eq!(st["status"], "created", "{}", rt.name);
        assert_eq!(st["id"], "life");
        assert_eq!(
            st["ociVersion"].as_str().map(|v| v.starts_with("1.")),
            Some(true)
        );
        assert_eq!(
            Path::new(st["bundle"].as_str().unwrap()),
            b.path().canonicalize().unwrap()
        );
        let pid = st["pid"].as_i64().unwrap();
        assert_eq!(
            fs::read_to_string(&pid_file).unwrap().trim(),
            pid.to_string(),
            "{}: --pid-file",
            rt.name
        );
        let cmdline = || text(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
        assert!(
            !cmdline().starts_with("sleep"),
            "{}: the user command runs before start: {}",
            rt.name,
            cmdline()
        );
        let list = rt.out(&["list", "-q"]);
        assert_eq!(text(&list.stdout).trim(), "life", "{}", rt.name);
        let o = rt.out(&["start", "life"]);
        assert!(o.status.success(), "{}: start: {o:?}", rt.name);
        rt.wait_status("life", "running");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cmdline().starts_with("sleep") {
            assert!(Instant::now() < deadline, "{}: never exec'd", rt.name);
            std::thread::sleep(Duration::from_millis(10));
        }
        let ps = rt.out(&["ps", "--format", "json", "life"]);
        let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
        assert_eq!(pids, vec![pid], "{}: ps", rt.name);
        assert!(
            !rt.out(&["delete", "life"]).status.success(),
            "{}: delete of a running container",
            rt.name
        );
        let o = rt.out(&["kill", "life", "KILL"]);
        assert!(o.status.success(), "{}: kill: {o:?}", rt.name);
        rt.wait_status("life", "stopped");
        let o = rt.out(&["delete", "life"]);
        assert!(o.status.success(), "{}: delete: {o:?}", rt.name);
        assert_eq!(rt.status("life"), None, "{}: state after delete", rt.name);
        assert!(
            !rt.root.path().join("life").exists(),
            "{}: state dir left",
            rt.name
        );
    }
    // Nothing of minnow-runc's left: cgroups, mounts.
    assert_eq!(cgroups_named("minnow-runc-life"), Vec::<PathBuf>::new());
    assert_eq!(mounts_under(b.path()), Vec::<String>::new());
}

/// The process's capability and seccomp lines.
fn security_lines(rt: &Runtime, b: &Path, id: &str) -> String {
    let o = rt.out(&["run", "--bundle", b.to_str().unwrap(), id]);
    assert_eq!(o.status.code(), Some(0), "{}: {o:?}", rt.name);
    text(&o.stdout)
}

#[test]
fn default_specs_give_the_same_capabilities_and_seccomp() {
    let script =
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status";
    let args = ["sh", "-c", script];
    // runc spec's own default.
    let plain = bundle(&args, |_| {});
    // Docker's default (14 capabilities, its seccomp profile, masked paths).
    let docker = bundle(&args, |spec| {
        let mut d = serde_json::to_value(minnow_container::defaults::docker_spec()).unwrap();
        d["process"]["args"] = json!(args);
        d["root"] = json!({"path": "rootfs"});
        *spec = d;
    });
    let rts = Runtime::both();
    for (b, name) in [(&plain, "runc-spec"), (&docker, "docker")] {
        let want = security_lines(&rts[0], b.path(), name);
        let got = security_lines(&rts[1], b.path(), name);
        assert!(want.contains("CapEff:"), "{want}");
        assert_eq!(got, want, "{name}: minnow-runc vs runc");
    }
    let docker_lines = security_lines(&rts[1], docker.path(), "d2");
    assert!(
        docker_lines.contains("CapEff:\t00000000a80425fb"),
        "{docker_lines}"
    );
    assert!(docker_lines.contains("Seccomp:\t2"), "{docker_lines}");
}

#[test]
fn a_readonly_root_refuses_writes() {
    let b = bundle(
        &[
            "sh",
            "-c",
            "touch /x && echo wrote; touch /tmp/y; echo done",
        ],
        |s| {
            s["root"]["readonly"] = json!(true);
        },
    );
    for rt in Runtime::both() {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "ro"]);
        assert_eq!(text(&o.stdout), "done\n", "{}: {o:?}", rt.name);
        assert!(
            text(&o.stderr).contains("Read-only file system"),
            "{}: {o:?}",
            rt.name
        );
    }
    assert!(!b.path().join("rootfs/x").exists());
}

#[test]
fn resources_reach_the_cgroup() {
    let b = bundle(
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
        |s| {
            s["linux"]["resources"]["pids"] = json!({"limit": 7});
            s["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        },
    );
    for rt in Runtime::both() {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "res"]);
        assert_eq!(text(&o.stdout), "7\n67108864\n", "{}: {o:?}", rt.name);
    }
}

#[test]
fn update_changes_the_limits() {
    let b = bundle(&["sleep", "30"], |s| {
        s["linux"]["resources"]["pids"] = json!({"limit": 7});
        s["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    });
    let limits = "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes";
    for rt in Runtime::both() {
        rt.run_detached(b.path(), "upd");
        let read = || text(&rt.out(&["exec", "upd", "sh", "-c", limits]).stdout);
        assert_eq!(read(), "7\n67108864\n", "{}", rt.name);
        let o = rt.out(&["update", "--pids-limit", "9", "--memory", "48m", "upd"]);
        assert!(o.status.success(), "{}: update flags: {o:?}", rt.name);
        assert_eq!(read(), "9\n50331648\n", "{}", rt.name);
        // The shim's way: linux.resources as JSON on stdin.
        let mut c = rt.cmd(&["update", "--resources", "-", "upd"]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            br#"{"pids": {"limit": 12}, "memory": {"limit": 33554432}}"#,
        )
        .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{}: update --resources -: {o:?}",
            rt.name
        );
        assert_eq!(read(), "12\n33554432\n", "{}", rt.name);
        // A bad size is refused and changes nothing.
        let o = rt.out(&["update", "--memory", "12x", "upd"]);
        assert!(!o.status.success(), "{}: {o:?}", rt.name);
        assert_eq!(read(), "12\n33554432\n", "{}", rt.name);
        assert!(rt.out(&["delete", "--force", "upd"]).status.success());
        let o = rt.out(&["update", "--pids-limit", "3", "upd"]);
        assert!(
            !o.status.success(),
            "{}: update of a deleted container",
            rt.name
        );
    }
}

#[test]
fn kill_all_and_a_mount_with_options() {
    let b = bundle(
        &[
            "sh",
            "-c",
            "grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; sleep 30 & sleep 30",
        ],
        |s| {
            s["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/data", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "ro", "size=1m"]
            }));
        },
    );
    for rt in Runtime::both() {
        let log = b.path().join(format!("{}.out", rt.name));
        let o = rt
            .cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "ka"])
            .stdout(fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {o:?}", rt.name);
        rt.wait_status("ka", "running");
        let deadline = Instant::now() + Duration::from_secs(5);
        let count = || {
            let ps = rt.out(&["ps", "--format", "json", "ka"]);
            serde_json::from_slice::<Vec<i64>>(&ps.stdout)
                .unwrap()
                .len()
        };
        // The mount's options are written first (grep | cut are processes too, so the
        // count alone could be reached before they are), then the sleeps run.
        let written = || fs::read_to_string(&log).is_ok_and(|t| t.ends_with('\n'));
        while !written() || count() < 2 {
            assert!(Instant::now() < deadline, "{}: ps {}", rt.name, count());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(rt.out(&["kill", "--all", "ka", "9"]).status.success());
        rt.wait_status("ka", "stopped");
        assert!(rt.out(&["delete", "ka"]).status.success());
        let opts = fs::read_to_string(&log).unwrap();
        assert_eq!(
            opts.trim(),
            "ro,nosuid,nodev,noexec,relatime",
            "{}",
            rt.name
        );
    }
}

#[test]
fn pause_and_resume() {
    let b = bundle(&["sleep", "30"], |_| {});
    for rt in Runtime::both() {
        rt.run_detached(b.path(), "pz");
        assert!(rt.out(&["pause", "pz"]).status.success(), "{}", rt.name);
        assert_eq!(rt.status("pz").as_deref(), Some("paused"), "{}", rt.name);
        assert!(rt.out(&["resume", "pz"]).status.success(), "{}", rt.name);
        assert_eq!(rt.status("pz").as_deref(), Some("running"), "{}", rt.name);
        assert!(
            rt.out(&["delete", "--force", "pz"]).status.success(),
            "{}",
            rt.name
        );
        assert_eq!(rt.status("pz"), None, "{}", rt.name);
    }
}

/// A change to a config.json.
type Edit = fn(&mut Value);

/// minnow-runc only: what it refuses, in one line, leaving nothing behind.
#[test]
fn unsupported_fields_are_refused_by_name() {
    let rt = Runtime::both().pop().unwrap();
    let cases: [(&str, Edit); 4] = [
        ("process.selinuxLabel", |s| {
            s["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0")
        }),
        ("process.apparmorProfile", |s| {
            s["process"]["apparmorProfile"] = json!("docker-default")
        }),
        ("hooks.createContainer", |s| {
            s["hooks"] = json!({"createContainer": [{"path": "/bin/true"}]})
        }),
        ("\"time\"", |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "time"}));
        }),
    ];
    for (field, edit) in cases {
        let b = bundle(&["true"], edit);
        // A file, not a pipe: a container created by mistake would hold a pipe open.
        let err_file = b.path().join("err");
        let o = rt
            .cmd(&["create", "--bundle", b.path().to_str().unwrap(), "u1"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&err_file).unwrap())
            .output()
            .unwrap();
        let err = fs::read_to_string(&err_file).unwrap();
        if o.status.success() {
            rt.out(&["delete", "--force", "u1"]);
        }
        assert!(!o.status.success(), "{field}: {o:?}");
        assert!(
            err.starts_with("minnow-runc: error: ") && err.contains(field),
            "{field}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(rt.status("u1"), None);
        assert!(!rt.root.path().join("u1").exists());
    }
    assert!(cgroups_named("minnow-runc-u1").is_empty());
    let o = rt.out(&["--systemd-cgroup", "list"]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("--systemd-cgroup"),
        "{o:?}"
    );
}

/// Adds a new user namespace mapping the container's ids 0..65536 to the host's
/// 100000.., as `runc spec --rootless` bundles are made.
fn with_user_ns(s: &mut Value) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    s["linux"]["uidMappings"] = map.clone();
    s["linux"]["gidMappings"] = map;
}

/// The bundle's rootfs owned by the mapped root (host 100000), and the bundle
/// reachable by it (the temporary directory is 0700).
fn chown_for_user_ns(b: &Path) {
    let o = Command::new("chown")
        .args(["-hR", "100000:100000"])
        .arg(b.join("rootfs"))
        .output()
        .unwrap();
    assert!(o.status.success(), "chown: {o:?}");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(b, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_user_namespace_maps_the_container_root() {
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; \
                  touch /tmp/x && stat -c %u:%g /tmp/x; touch /made; ls -ln /dev/null | cut -c1-10; \
                  echo hi > /dev/null && head -c 4 /dev/zero | wc -c";
    let b = bundle(&["sh", "-c", script], |s| {
        with_user_ns(s);
        s["root"]["readonly"] = json!(false);
    });
    chown_for_user_ns(b.path());
    let map = format!("{:>10} {:>10} {:>10}\n", 0, 100000, 65536);
    let want = format!("0\n0\n{map}{map}0:0\ncrw-rw-rw-\n4\n");
    let made = b.path().join("rootfs/made");
    for rt in Runtime::both() {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "un1"]);
        assert_eq!(text(&o.stdout), want, "{}: {o:?}", rt.name);
        assert_eq!(o.status.code(), Some(0), "{}: {o:?}", rt.name);
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&made).unwrap();
        assert_eq!((m.uid(), m.gid()), (100000, 100000), "{}", rt.name);
        fs::remove_file(&made).unwrap();
        assert_eq!(rt.status("un1"), None, "{}", rt.name);
    }
    assert!(cgroups_named("minnow-runc-un1").is_empty());
}

#[test]
fn exec_joins_the_user_namespace() {
    let b = bundle(&["sleep", "30"], with_user_ns);
    chown_for_user_ns(b.path());
    for rt in Runtime::both() {
        rt.run_detached(b.path(), "ux1");
        let o = rt.out(&["exec", "ux1", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
        let map = format!("{:>10} {:>10} {:>10}\n", 0, 100000, 65536);
        assert_eq!(text(&o.stdout), format!("0\n{map}"), "{}: {o:?}", rt.name);
        let o = rt.out(&["delete", "--force", "ux1"]);
        assert!(o.status.success(), "{}: {o:?}", rt.name);
    }
}

/// A user namespace joined by path (a running container's), with new PID and other
/// namespaces: the PID namespace belongs to the joined user namespace, so `proc` mounts
/// and the init is PID 1, root in it. runc 1.1 asks for the mappings even then; they
/// must be the namespace's (minnow-runc checks, and leaves nothing when they are not).
#[test]
fn a_user_namespace_is_joined_by_path() {
    let a = bundle(&["sleep", "30"], with_user_ns);
    chown_for_user_ns(a.path());
    let script = "id -u; cat /proc/self/uid_map; echo $$; touch /tmp/y && stat -c %u /tmp/y";
    let map = format!("{:>10} {:>10} {:>10}\n", 0, 100000, 65536);
    for rt in Runtime::both() {
        rt.run_detached(a.path(), "uj1");
        let pid = rt.state("uj1")["pid"].as_i64().unwrap();
        let join = move |s: &mut Value| {
            with_user_ns(s);
            let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
            ns.last_mut().unwrap()["path"] = json!(format!("/proc/{pid}/ns/user"));
            s["root"]["readonly"] = json!(false);
        };
        let b = bundle(&["sh", "-c", script], join);
        chown_for_user_ns(b.path());
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "uj2"]);
        assert_eq!(
            text(&o.stdout),
            format!("0\n{map}1\n0\n"),
            "{}: {o:?}",
            rt.name
        );
        if rt.name == "minnow-runc" {
            let b = bundle(&["true"], |s| {
                join(s);
                s["linux"]["uidMappings"][0]["hostID"] = json!(200000);
            });
            chown_for_user_ns(b.path());
            let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "uj3"]);
            let err = text(&o.stderr);
            assert!(
                !o.status.success() && err.contains("not those of the user namespace joined"),
                "{o:?}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(!rt.root.path().join("uj3").exists());
            assert!(cgroups_named("minnow-runc-uj3").is_empty());
        }
        let o = rt.out(&["delete", "--force", "uj1"]);
        assert!(o.status.success(), "{}: {o:?}", rt.name);
    }
}

/// minnow-runc only: mappings the kernel would refuse, or without a user namespace, are
/// refused before anything is made, on one line.
#[test]
fn bad_id_mappings_are_refused_and_leave_nothing() {
    let rt = Runtime::both().pop().unwrap();
    let cases: [(&str, Edit); 5] = [
        ("size 0", |s| {
            with_user_ns(s);
            s["linux"]["uidMappings"][0]["size"] = json!(0);
        }),
        ("overlaps", |s| {
            with_user_ns(s);
            s["linux"]["gidMappings"]
                .as_array_mut()
                .unwrap()
                .push(json!({"containerID": 70000, "hostID": 100005, "size": 10}));
        }),
        ("linux.gidMappings", |s| {
            with_user_ns(s);
            s["linux"]["gidMappings"] = json!([]);
        }),
        ("id 0", |s| {
            with_user_ns(s);
            s["linux"]["uidMappings"][0]["containerID"] = json!(1);
        }),
        ("without a user namespace", |s| {
            with_user_ns(s);
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "user");
        }),
    ];
    for (what, edit) in cases {
        let b = bundle(&["true"], edit);
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "ub1"]);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{what}: {o:?}");
        assert!(
            err.starts_with("minnow-runc: error: config.json: linux.") && err.contains(what),
            "{what}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(rt.status("ub1"), None);
        assert!(!rt.root.path().join("ub1").exists());
        assert!(cgroups_named("minnow-runc-ub1").is_empty());
    }
}

/// minnow-runc only (runc leaves its container behind): a `run` killed with SIGKILL
/// leaves no state directory and no cgroup.
#[test]
fn a_killed_run_leaves_nothing() {
    let rt = Runtime::both().pop().unwrap();
    let b = bundle(&["sleep", "30"], |_| {});
    let mut child = rt
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), "k9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    rt.wait_status("k9", "running");
    assert_eq!(cgroups_named("minnow-runc-k9").len(), 5);
    // The `timeout` wrapper's child is minnow-runc: kill it, not the wrapper.
    let pid =
        fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id())).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.root.path().join("k9").exists() || !cgroups_named("minnow-runc-k9").is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            cgroups_named("minnow-runc-k9")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mounts_under(b.path()), Vec::<String>::new());
}

#[test]
fn hooks_get_the_state_on_stdin() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap().to_string();
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}/$RT.{name}")], "env": ["RT=X"]});
    let b = bundle(&["true"], |s| {
        s["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    for rt in Runtime::both() {
        let cfg = b.path().join("config.json");
        let text = fs::read_to_string(&cfg)
            .unwrap()
            .replace("RT=X", &format!("RT={}", rt.name));
        fs::write(
            &cfg,
            text.replace(
                &format!(
                    "RT={}",
                    if rt.name == "runc" {
                        "minnow-runc"
                    } else {
                        "runc"
                    }
                ),
                &format!("RT={}", rt.name),
            ),
        )
        .unwrap();
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "hk"]);
        assert!(o.status.success(), "{}: {o:?}", rt.name);
        for (name, status) in [
            ("prestart", "creating"),
            ("createRuntime", "creating"),
            ("poststop", "stopped"),
        ] {
            let path = out.path().join(format!("{}.{name}", rt.name));
            let v: Value = serde_json::from_slice(&fs::read(&path).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: {name}: {e}", rt.name));
            assert_eq!(v["id"], "hk", "{}: {name}", rt.name);
            assert_eq!(v["status"], status, "{}: {name}: {v}", rt.name);
            if status == "creating" {
                assert!(v["pid"].as_i64().unwrap() > 0, "{}: {name}: {v}", rt.name);
            }
        }
        assert!(
            out.path().join(format!("{}.poststart", rt.name)).exists(),
            "{}",
            rt.name
        );
    }
}

/// A private dockerd (its own data-root, exec-root and socket) with minnow-runc added as
/// the runtime "minnow"; stopped when dropped.
struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Dockerd {
    fn start() -> Dockerd {
        assert!(
            which("dockerd").is_some(),
            "this test needs dockerd: apt-get install docker.io"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}/sock", d.display()))
            .args(["--iptables=false", "--bridge=none"])
            .arg(format!(
                "--add-runtime=minnow={}",
                env!("CARGO_BIN_EXE_minnow-runc")
            ))
            .stdout(fs::File::create(d.join("log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dockerd = Dockerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dockerd.docker(&["info"]).status.success() {
            assert!(Instant::now() < deadline, "dockerd did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        dockerd
    }

    /// `docker import` of the bundle's root file system as `name`.
    fn import(&self, bundle: &Path, name: &str) {
        let tar = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {}/rootfs && tar -c . | docker -H unix://{}/sock import - {name}",
                bundle.display(),
                self.dir.path().display()
            ))
            .output()
            .unwrap();
        assert!(tar.status.success(), "docker import: {tar:?}");
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-s", "KILL", "60", "docker", "-H"])
            .arg(format!("unix://{}/sock", self.dir.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        // Docker's cgroup parent (made by runc, which leaves it); fails unless empty.
        for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let _ = fs::remove_dir(h.path().join("docker"));
        }
    }
}

#[test]
fn docker_runs_busybox_through_minnow_runc() {
    let b = bundle(&["true"], |_| {});
    let d = Dockerd::start();
    d.import(b.path(), "bb:1");
    let script = "echo hi; grep -E '^(CapEff|Seccomp):' /proc/self/status; touch /x; \
                  cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes; id; exit 5";
    let mut results = Vec::new();
    for rt in ["runc", "minnow"] {
        let o = d.docker(&[
            "run",
            "--runtime",
            rt,
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--memory",
            "32m",
            "--pids-limit",
            "9",
            "--user",
            "1000",
            "bb:1",
            "sh",
            "-c",
            script,
        ]);
        results.push((o.status.code(), text(&o.stdout), text(&o.stderr)));
        // Detached: `docker ps` states, pause, stop.
        let o = d.docker(&[
            "run",
            "-d",
            "--runtime",
            rt,
            "--network",
            "none",
            "bb:1",
            "sleep",
            "100",
        ]);
        assert!(o.status.success(), "{rt}: {o:?}");
        let id = text(&o.stdout).trim().to_string();
        let status = || {
            text(
                &d.docker(&["ps", "--format", "{{.Status}}", "-f", &format!("id={id}")])
                    .stdout,
            )
        };
        assert!(status().starts_with("Up"), "{rt}: {}", status());
        let o = d.docker(&["exec", &id, "sh", "-c", "echo exec-ok; exit 3"]);
        assert_eq!(
            (o.status.code(), text(&o.stdout)),
            (Some(3), "exec-ok\n".into()),
            "{rt}: {o:?}"
        );
        // docker update goes through the shim's `update --resources -`.
        let o = d.docker(&["update", "--pids-limit", "11", &id]);
        assert!(o.status.success(), "{rt}: docker update: {o:?}");
        let o = d.docker(&["exec", &id, "cat", "/sys/fs/cgroup/pids/pids.max"]);
        assert_eq!(text(&o.stdout), "11\n", "{rt}: after docker update: {o:?}");
        assert!(d.docker(&["pause", &id]).status.success(), "{rt}");
        assert!(status().contains("(Paused)"), "{rt}: {}", status());
        assert!(d.docker(&["unpause", &id]).status.success(), "{rt}");
        assert!(d.docker(&["stop", "-t", "1", &id]).status.success(), "{rt}");
        let code = d.docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]);
        assert_eq!(
            text(&code.stdout).trim(),
            "137",
            "{rt}: SIGKILL after the grace time"
        );
        assert!(d.docker(&["rm", &id]).status.success(), "{rt}");
    }
    assert_eq!(results[0].0, Some(5), "{:?}", results[0]);
    assert!(
        results[0]
            .1
            .contains("hi\nCapEff:\t0000000000000000\nSeccomp:\t2\n9\n33554432\nuid=1000"),
        "{:?}",
        results[0]
    );
    assert_eq!(results[1].0, results[0].0, "exit code");
    assert_eq!(results[1].1, results[0].1, "stdout");
    assert!(
        results[1].2.contains("Read-only file system"),
        "{:?}",
        results[1]
    );
}

#[test]
fn docker_oom_cap_drop_and_a_seccomp_profile_through_minnow_runc() {
    let b = bundle(&["true"], |_| {});
    let d = Dockerd::start();
    d.import(b.path(), "bb:1");
    let profile = b.path().join("no-mkdir.json");
    let deny = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    fs::write(&profile, deny.to_string()).unwrap();
    let seccomp = format!("seccomp={}", profile.display());
    // (name, flags, script): an OOM kill above --memory (no swap), chown without
    // CAP_CHOWN, and a profile that makes mkdir fail with EPERM.
    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "oom",
            vec!["--memory", "32m", "--memory-swap", "32m"],
            "x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo survived",
        ),
        (
            "cap-drop",
            vec!["--cap-drop", "ALL"],
            "touch /f && chown 1 /f; echo chown=$?",
        ),
        (
            "seccomp",
            vec!["--security-opt", &seccomp],
            "mkdir /d; echo mkdir=$?; touch /e && echo touch-ok",
        ),
    ];
    let mut results = Vec::new();
    for rt in ["runc", "minnow"] {
        for (name, flags, script) in &cases {
            let mut args = vec!["run", "-d", "--runtime", rt, "--network", "none"];
            args.extend(flags.iter().copied());
            args.extend(["bb:1", "sh", "-c", script]);
            let o = d.docker(&args);
            assert!(o.status.success(), "{rt} {name}: {o:?}");
            let id = text(&o.stdout).trim().to_string();
            assert!(d.docker(&["wait", &id]).status.success(), "{rt} {name}");
            let fmt = "{{.State.ExitCode}} oom={{.State.OOMKilled}}";
            let state = text(&d.docker(&["inspect", "-f", fmt, &id]).stdout);
            let logs = d.docker(&["logs", &id]);
            results.push((state, text(&logs.stdout)));
            assert!(d.docker(&["rm", &id]).status.success(), "{rt} {name}");
        }
    }
    let runc = &results[..3];
    assert_eq!(
        runc[0],
        ("137 oom=true\n".into(), String::new()),
        "runc oom"
    );
    assert_eq!(
        runc[1],
        ("0 oom=false\n".into(), "chown=1\n".into()),
        "runc cap-drop"
    );
    assert_eq!(
        runc[2],
        ("0 oom=false\n".into(), "mkdir=1\ntouch-ok\n".into()),
        "runc seccomp"
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        assert_eq!(
            results[3 + i],
            results[i],
            "minnow-runc against runc: {name}"
        );
    }
}

#[test]
fn exec_inline_and_with_a_process_file() {
    let b = bundle(&["sleep", "30"], |_| {});
    let process = b.path().join("process.json");
    fs::write(
        &process,
        json!({"args": ["sh", "-c", "id -u; pwd; echo $V"], "cwd": "/tmp",
               "user": {"uid": 1000, "gid": 1000}, "env": ["PATH=/bin", "V=file"]})
        .to_string(),
    )
    .unwrap();
    for rt in Runtime::both() {
        rt.run_detached(b.path(), "ex");
        let o = rt.out(&[
            "exec",
            "-e",
            "V=inline",
            "ex",
            "sh",
            "-c",
            "echo $V $$; exit 7",
        ]);
        // The shell is not PID 1: it runs in the container's PID namespace beside sleep.
        assert_eq!(
            text(&o.stdout).split_whitespace().next(),
            Some("inline"),
            "{}: {o:?}",
            rt.name
        );
        assert_ne!(text(&o.stdout).trim(), "inline 1", "{}", rt.name);
        assert_eq!(o.status.code(), Some(7), "{}: {o:?}", rt.name);
        let o = rt.out(&["exec", "--process", process.to_str().unwrap(), "ex"]);
        assert_eq!(text(&o.stdout), "1000\n/tmp\nfile\n", "{}: {o:?}", rt.name);
        let o = rt.out(&["exec", "ex", "no-such-program"]);
        assert!(!o.status.success(), "{}", rt.name);
        assert!(
            text(&o.stderr).contains("executable file not found"),
            "{}: {o:?}",
            rt.name
        );
        assert!(rt.out(&["delete", "--force", "ex"]).status.success());
    }
}

#[test]
fn minnow_runc_spec_runs_under_both_and_features_parse() {
    let b = bundle(&["true"], |_| {});
    let rts = Runtime::both();
    fs::remove_file(b.path().join("config.json")).unwrap();
    let o = rts[1].out(&["spec", "--bundle", b.path().to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let again = rts[1].out(&["spec", "--bundle", b.path().to_str().unwrap()]);
    assert!(!again.status.success(), "spec overwrote config.json");
    let path = b.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["process"]["args"] = json!(["sh", "-c", "hostname; touch /x 2>/dev/null || echo ro"]);
    fs::write(&path, spec.to_string()).unwrap();
    for rt in &rts {
        let o = rt.out(&["run", "--bundle", b.path().to_str().unwrap(), "sp"]);
        assert_eq!(text(&o.stdout), "minnow\nro\n", "{}: {o:?}", rt.name);
    }
    let f = rts[1].out(&["features"]);
    let v: Value = serde_json::from_slice(&f.stdout).unwrap();
    assert!(
        v["hooks"].as_array().unwrap().contains(&json!("prestart")),
        "{v}"
    );
    assert_eq!(v["linux"]["cgroup"]["systemd"], json!(false));
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user")),
        "{v}"
    );
}

#[test]
fn podman_runs_busybox_through_minnow_runc() {
    assert!(
        which("podman").is_some(),
        "this test needs podman: apt-get install podman"
    );
    let b = bundle(&["true"], |_| {});
    let w = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        Command::new("timeout")
            .args(["-s", "KILL", "60", "podman", "--root"])
            .arg(w.path().join("root"))
            .arg("--runroot")
            .arg(w.path().join("runroot"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let tar = w.path().join("bb.tar");
    let o = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(b.path().join("rootfs"))
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(podman(&["import", tar.to_str().unwrap(), "localhost/bb:1"])
        .status
        .success());
    let minnow = env!("CARGO_BIN_EXE_minnow-runc");
    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    let mut results = Vec::new();
    for rt in ["/usr/sbin/runc", minnow] {
        let mut args = vec![
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--runtime",
            rt,
        ];
        args.extend(limits);
        args.extend([
            "localhost/bb:1",
            "sh",
            "-c",
            "echo hi; grep -E '^(CapEff|Seccomp):' /proc/self/status; touch /x; exit 6",
        ]);
        let o = podman(&args);
        results.push((o.status.code(), text(&o.stdout)));
        assert!(
            text(&o.stderr).contains("Read-only file system"),
            "{rt}: {o:?}"
        );
        let mut args = vec!["run", "-d", "--network", "none", "--runtime", rt];
        args.extend(limits);
        args.extend(["localhost/bb:1", "sleep", "100"]);
        let o = podman(&args);
        assert!(o.status.success(), "{rt}: {o:?}");
        let id = text(&o.stdout).trim().to_string();
        let o = podman(&["exec", &id, "sh", "-c", "echo exec-ok; exit 2"]);
        assert_eq!(
            (o.status.code(), text(&o.stdout)),
            (Some(2), "exec-ok\n".into()),
            "{rt}: {o:?}"
        );
        let o = podman(&["rm", "-f", "-t", "1", &id]);
        assert!(o.status.success(), "{rt}: {o:?}");
    }
    assert_eq!(results[0].0, Some(6), "{:?}", results[0]);
    assert!(results[0].1.contains("Seccomp:\t2"), "{:?}", results[0]);
    assert_eq!(results[1], results[0], "minnow-runc vs runc");
}

#[test]
fn containerd_ctr_runs_busybox_through_minnow_runc() {
    for p in ["containerd", "ctr", "podman"] {
        assert!(
            which(p).is_some(),
            "this test needs {p}: apt-get install containerd podman"
        );
    }
    let b = bundle(&["true"], |_| {});
    let w = tempfile::tempdir().unwrap();
    let d = w.path();
    let sock = d.join("sock");
    fs::write(
        d.join("config.toml"),
        format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{1}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
            d.display(),
            sock.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(d.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(d.join("log")).unwrap())
        .spawn()
        .unwrap();
    let ctr = |args: &[&str]| {
        Command::new("timeout")
            .args(["-s", "KILL", "60", "ctr", "--address"])
            .arg(&sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctr(&["version"]).status.success() {
        assert!(Instant::now() < deadline, "containerd did not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    // An OCI archive of the busybox root, by way of podman (as docs/ENGINES.md).
    let img = d.join("img.tar");
    let script = format!(
        "set -e; P='podman --root {0}/proot --runroot {0}/prun --storage-driver vfs --cgroup-manager cgroupfs --events-backend file'; \
         tar -cf {0}/bb.tar -C {1}/rootfs .; $P import {0}/bb.tar localhost/bb:1; $P save --format oci-archive -o {2} localhost/bb:1",
        d.display(), b.path().display(), img.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/bb",
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let mut results = Vec::new();
    for (i, rt) in ["/usr/sbin/runc", env!("CARGO_BIN_EXE_minnow-runc")]
        .iter()
        .enumerate()
    {
        let id = format!("c{i}");
        let o = ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            rt,
            "localhost/bb:1",
            &id,
            "sh",
            "-c",
            "echo hi; grep -E '^(CapEff|Seccomp):' /proc/self/status; exit 6",
        ]);
        results.push((o.status.code(), text(&o.stdout)));
        let id = format!("d{i}");
        let o = ctr(&[
            "run",
            "-d",
            "--runc-binary",
            rt,
            "localhost/bb:1",
            &id,
            "sleep",
            "100",
        ]);
        assert!(o.status.success(), "{rt}: {o:?}");
        let o = ctr(&[
            "task",
            "exec",
            "--exec-id",
            "e1",
            &id,
            "sh",
            "-c",
            "echo exec-ok; exit 3",
        ]);
        assert_eq!(
            (o.status.code(), text(&o.stdout)),
            (Some(3), "exec-ok\n".into()),
            "{rt}: {o:?}"
        );
        assert!(
            ctr(&["task", "kill", "-s", "SIGKILL", &id])
                .status
                .success(),
            "{rt}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctr(&["task", "rm", &id]).status.success() {
            assert!(Instant::now() < deadline, "{rt}: task rm");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ctr(&["containers", "rm", &id]).status.success(), "{rt}");
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = daemon.wait();
    // ctr's cgroup parent (made by runc, which leaves it); fails unless empty.
    for h in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = fs::remove_dir(h.path().join("default"));
    }
    assert_eq!(results[0].0, Some(6), "{:?}", results[0]);
    assert!(results[0].1.starts_with("hi\nCapEff:"), "{:?}", results[0]);
    assert_eq!(results[1], results[0], "minnow-runc vs runc");
    assert_eq!(mounts_under(d), Vec::<String>::new());
}
