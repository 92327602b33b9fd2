//! The rows of `minnow bench startup`: how each way of starting the command is prepared,
//! timed and torn down.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::report::Status;
use crate::startup::StartupArgs;
use crate::util::{is_root, sh, tail};
use minnow_host::{is_pvm, which};
use minnow_image::{store_path, Store};

pub const BOOT_LINE: &str = "guest boot time: ";
pub(crate) const DOCKER_IMAGE: &str = "minnow-bench:latest";

/// Files shared by every row, made once on the host (visible to the lab over 9p).
pub struct Ctx {
    /// Host-side work directory (kept on /tmp so the lab sees it).
    pub work: PathBuf,
    /// Scratch on a local file system (a tmpfs inside the lab): store, bundle, docker.
    pub scratch: PathBuf,
    pub minnow: PathBuf,
    /// Flattened image root, a copy on scratch.
    pub rootfs: PathBuf,
    /// The microVM rows' kernel and disk, or why they do not run.
    pub vm: std::result::Result<(PathBuf, PathBuf), Status>,
    pub docker: Option<Docker>,
    lab_tmpfs: bool,
}

pub struct Docker {
    daemon: Child,
    pub host: String,
    /// Started with minnow-runc as the runtime `minnow` (`--add-runtime`).
    pub has_minnow: bool,
}

/// Installs a Debian package when `bin` is missing (root only, unless --no-install).
fn ensure(bin: &str, pkg: &str, a: &StartupArgs) -> Result<PathBuf> {
    if let Some(p) = which(bin) {
        return Ok(p);
    }
    if a.no_install {
        return Err(Error::missing(
            format!("{bin} not installed (Debian package {pkg})"),
            "--no-install given",
        ));
    }
    if !is_root() {
        return Err(Error::missing(
            format!("{bin} not installed"),
            format!("run as root or apt-get install {pkg}"),
        ));
    }
    eprintln!("bench: installing {pkg} (apt-get) ...");
    let mut cmd = Command::new("timeout");
    cmd.args(["900", "apt-get", "-o", "DPkg::Lock::Timeout=600", "install"])
        .args(["-y", "--no-install-recommends", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive");
    sh(&mut cmd, &format!("apt-get install {pkg}"))?;
    which(bin).ok_or_else(|| {
        Error::missing(
            format!("{bin} still missing after installing {pkg}"),
            "install it by hand",
        )
    })
}

fn cp_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(Error::create_dir(dst))?;
    let mut c = Command::new("cp");
    c.arg("-a").arg(format!("{}/.", src.display())).arg(dst);
    sh(&mut c, &format!("cp -a {}", src.display())).map(drop)
}

impl Ctx {
    /// On the host: private copies of minnow, the flattened image, the microVM's kernel
    /// and disk; missing runtimes installed.
    pub fn prepare(a: &StartupArgs) -> Result<Ctx> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let work = PathBuf::from(format!(
            "/tmp/minnow-bench-startup.{}.{nanos:x}",
            std::process::id()
        ));
        fs::create_dir_all(&work).map_err(Error::create_dir(&work))?;
        let minnow = crate::util::minnow_path(a.minnow.as_deref())?;
        crate::util::private_binaries(&work, &minnow)?;
        // Flatten the image (bottom layer first; whiteouts are not applied).
        let store = Store::open(&store_path(a.store.clone())).map_err(Error::Image)?;
        let image = store.resolve_or_default(&a.image).map_err(Error::Image)?;
        let image_root = work.join("rootfs");
        for layer in store.layer_dirs(&image).map_err(Error::Image)? {
            cp_tree(&layer, &image_root)?;
        }
        // Runtimes, installed up front (never from inside the lab).
        for (bin, pkg) in [("runc", "runc"), ("crun", "crun"), ("dockerd", "docker.io")] {
            if let Err(e) = ensure(bin, pkg, a) {
                eprintln!("bench: {e}");
            }
        }
        let vm = if a.no_vm {
            Err(Status::Skipped("--no-vm".into()))
        } else {
            prepare_vm(a, &work, &image_root)
        };
        let ctx = Ctx {
            scratch: work.join("scratch"),
            rootfs: work.join("scratch/rootfs"),
            minnow: work.join("minnow"),
            vm,
            docker: None,
            lab_tmpfs: false,
            work,
        };
        // overlayfs for the container rows inside the lab (its kernel has it as a module).
        let lab_modules = if a.in_lab {
            let r = sh(
                Command::new("bash").arg("bench/lab-modules.sh"),
                "bench/lab-modules.sh",
            );
            if let Err(e) = &r {
                eprintln!("bench: {e}; container rows in the lab may lack overlayfs");
            }
            r.ok().map(|o| o.trim().to_string())
        } else {
            None
        };
        let meta = json!({
            "vm": match &ctx.vm { Ok((k, d)) => json!({"kernel": k, "disk": d}), Err(e) => json!({"error": e.to_string()}) },
            "lab_modules": lab_modules,
        });
        let ctx_json = ctx.work.join("ctx.json");
        fs::write(&ctx_json, meta.to_string()).map_err(Error::write(&ctx_json))?;
        if !a.in_lab {
            ctx.make_scratch()?;
        }
        Ok(ctx)
    }

    /// Inside the lab: the host prepared `work`; scratch goes on a tmpfs.
    pub fn load(_a: &StartupArgs, work: &Path) -> Result<Ctx> {
        let path = work.join("ctx.json");
        let text = fs::read_to_string(&path).map_err(Error::read(
            &path,
            "the host side prepares it: run without --lab-inner",
        ))?;
        let meta: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.clone(),
            what: "bench work description",
            source,
        })?;
        let vm = match meta["vm"]["error"].as_str() {
            Some(e) => Err(Status::from(e.to_string())),
            None => Ok((
                PathBuf::from(meta["vm"]["kernel"].as_str().unwrap_or_default()),
                PathBuf::from(meta["vm"]["disk"].as_str().unwrap_or_default()),
            )),
        };
        let scratch = work.join("scratch");
        fs::create_dir_all(&scratch).map_err(Error::create_dir(&scratch))?;
        let lab_tmpfs = std::env::var_os("MINNOW_LAB").is_some();
        if lab_tmpfs {
            lab_host_setup(meta["lab_modules"].as_str());
            // overlayfs upper dirs, runc bundles and docker's data can't live on 9p.
            nix::mount::mount(
                Some("tmpfs"),
                &scratch,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("mode=755"),
            )
            .map_err(|source| Error::Mount {
                fstype: "tmpfs",
                path: scratch.clone(),
                source,
            })?;
        }
        let ctx = Ctx {
            rootfs: scratch.join("rootfs"),
            minnow: work.join("minnow"),
            scratch,
            vm,
            docker: None,
            lab_tmpfs,
            work: work.to_path_buf(),
        };
        ctx.make_scratch()?;
        Ok(ctx)
    }

    fn make_scratch(&self) -> Result<()> {
        cp_tree(&self.work.join("rootfs"), &self.rootfs)
    }

    pub fn cleanup(&self) {
        if self.lab_tmpfs {
            let _ = nix::mount::umount2(&self.scratch, nix::mount::MntFlags::MNT_DETACH);
            // The host-side run removes the work directory.
            return;
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// Inside the lab: load the extra modules and mount cgroup2 if no cgroup is mounted.
fn lab_host_setup(modules: Option<&str>) {
    if let Some(dir) = modules {
        let order = fs::read_to_string(Path::new(dir).join("order")).unwrap_or_default();
        for m in order.lines().filter(|m| !m.is_empty()) {
            let name = m.replace('-', "_");
            if Path::new(&format!("/sys/module/{name}")).exists() {
                continue;
            }
            if let Err(e) = sh(
                Command::new("insmod").arg(Path::new(dir).join(format!("{m}.ko"))),
                "insmod",
            ) {
                eprintln!("bench: lab: {e}");
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !mounts.lines().any(|l| l.contains(" /sys/fs/cgroup")) {
        if let Err(e) = nix::mount::mount(
            Some("cgroup2"),
            "/sys/fs/cgroup",
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            eprintln!("bench: lab: mount cgroup2 on /sys/fs/cgroup: {e}");
        }
    }
}

fn prepare_vm(
    a: &StartupArgs,
    work: &Path,
    image_root: &Path,
) -> std::result::Result<(PathBuf, PathBuf), Status> {
    if is_pvm() && !a.in_lab && std::env::var_os("MINNOW_LAB").is_none() {
        return Err(Status::NotRunHere(
            "/dev/kvm is PVM (kvm_pvm) and stock kernels cannot boot on it; rerun with --in-lab"
                .into(),
        ));
    }
    let cache = std::env::var("MINNOW_CACHE").unwrap_or_else(|_| "/var/cache/minnow".into());
    let kernel = a
        .kernel
        .clone()
        .unwrap_or_else(|| PathBuf::from(cache).join("kernel/current/bzImage"));
    if !kernel.is_file() {
        return Err(Status::Unavailable(format!(
            "no kernel {}; build it with bash resources/guest/kernel/build.sh",
            kernel.display()
        )));
    }
    let unavailable = |e: Error| Status::Unavailable(e.to_string());
    let k = work.join("bzImage");
    crate::error::copy(&kernel, &k, "check --kernel").map_err(unavailable)?;
    let mkrootfs = Path::new("resources/guest/mkrootfs.sh");
    crate::util::require_repo("resources/guest/mkrootfs.sh").map_err(unavailable)?;
    let disk = work.join("vm.ext4");
    let mut c = Command::new("bash");
    c.arg(mkrootfs).arg(&disk);
    if a.image != minnow_image::DEFAULT_IMAGE {
        // mkrootfs's own tree is busybox already; other images go on top of it.
        c.arg("--add").arg(image_root);
    }
    sh(&mut c, "resources/guest/mkrootfs.sh").map_err(unavailable)?;
    Ok((k, disk))
}

/// Builds a row's argv for run `i` and command `cmd`.
type ArgvFn = Box<dyn Fn(usize, &[String]) -> Vec<String>>;

/// One way of starting the command.
pub struct Row {
    pub key: String,
    pub name: String,
    pub describe: String,
    /// Why the row does not run (skipped, not run here, unavailable).
    pub unavailable: Option<Status>,
    pub samples: Vec<f64>,
    pub failures: Vec<String>,
    /// Builds the command for a run (its index makes container ids unique).
    argv: Option<ArgvFn>,
    /// Index of the row fed from this row's `guest boot time` lines.
    boot_row: Option<usize>,
    pub is_vm: bool,
    derived: bool,
    /// In the memory and density tables (the breakdown's variants are not).
    pub in_memory: bool,
}

impl Row {
    pub(crate) fn new(key: &str, name: &str) -> Row {
        Row {
            key: key.into(),
            name: name.into(),
            describe: String::new(),
            unavailable: None,
            samples: Vec::new(),
            failures: Vec::new(),
            argv: None,
            boot_row: None,
            is_vm: false,
            derived: false,
            in_memory: true,
        }
    }

    pub(crate) fn with(mut self, f: impl Fn(usize, &[String]) -> Vec<String> + 'static) -> Row {
        self.describe = f(0, &["CMD".to_string()]).join(" ");
        self.argv = Some(Box::new(f));
        self
    }

    pub(crate) fn or_unavailable(mut self, r: Result<()>) -> Row {
        if let Err(e) = r {
            self.unavailable = Some(Status::Unavailable(e.to_string()));
        }
        self
    }

    pub fn available(&self) -> bool {
        self.unavailable.is_none() && self.argv.is_some()
    }

    pub fn argv_for(&self, i: usize, cmd: &[String]) -> Option<Vec<String>> {
        self.argv.as_ref().map(|f| f(i, cmd))
    }

    /// The row as the report shows it: a row that could not start is unavailable (or
    /// skipped); a row whose warm-up ran but whose timed runs all failed has failed.
    pub fn report_row(&self) -> crate::report::Row {
        let r = crate::report::Row::new(&self.key, &self.name, "ms");
        let r = match &self.unavailable {
            Some(st) => r.with_status(st.clone()),
            None => r.measured(self.samples.clone(), self.failures.clone(), false),
        };
        if self.describe.is_empty() {
            r
        } else {
            r.with_command(&self.describe)
        }
    }
}

pub(crate) fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Quotes a command for the kernel command line (only double quotes are understood).
fn kernel_quote(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| {
            if w.contains(char::is_whitespace) {
                format!("\"{w}\"")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn runtime_bundle(ctx: &Ctx, a: &StartupArgs, rt: &Path) -> Result<PathBuf> {
    let bundle = ctx.scratch.join("bundle");
    let cfg = bundle.join("config.json");
    if !cfg.exists() {
        fs::create_dir_all(&bundle).map_err(Error::create_dir(&bundle))?;
        let mut c = Command::new(rt);
        c.arg("spec").current_dir(&bundle);
        sh(&mut c, &format!("{} spec", rt.display()))?;
    }
    let text = fs::read_to_string(&cfg).map_err(Error::read(&cfg, "rerun the bench"))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: cfg.clone(),
        what: "OCI runtime spec",
        source,
    })?;
    for_bench(&mut v, ctx, a);
    fs::write(&cfg, serde_json::to_string_pretty(&v).unwrap_or_default())
        .map_err(Error::write(&cfg))?;
    Ok(bundle)
}

/// A runtime spec (as JSON) made the bench's: its command, no terminal, the shared
/// root file system read-only (every runtime row uses the one copy), the memory limit.
pub(crate) fn for_bench(v: &mut Value, ctx: &Ctx, a: &StartupArgs) {
    v["process"]["args"] = json!(a.command);
    v["process"]["terminal"] = json!(false);
    v["root"] = json!({"path": s(&ctx.rootfs), "readonly": true});
    v["linux"]["resources"]["memory"] = json!({"limit": a.mem_mib * 1024 * 1024});
}

/// A sibling of `base` whose config.json runs `cmd` instead.
fn bundle_for(base: &Path, cmd: &[String]) -> Result<String> {
    let tag: String = cmd
        .join("_")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
    let dir = base.with_file_name(format!("{}-{tag}", name.unwrap_or_default()));
    let cfg = base.join("config.json");
    let text = fs::read_to_string(&cfg).map_err(Error::read(&cfg, "rerun the bench"))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: cfg.clone(),
        what: "OCI runtime spec",
        source,
    })?;
    v["process"]["args"] = json!(cmd);
    fs::create_dir_all(&dir).map_err(Error::create_dir(&dir))?;
    let out = dir.join("config.json");
    fs::write(&out, v.to_string()).map_err(Error::write(&out))?;
    Ok(s(&dir))
}

/// `row` as `BIN --root STATE run --bundle BUNDLE ID`: an OCI runtime (runc, crun,
/// minnow-runc) running the bundle at `base`, or a sibling of it for another command.
pub(crate) fn oci_row(row: Row, ctx: &Ctx, a: &StartupArgs, bin: &Path, base: PathBuf) -> Row {
    let tag: String = row
        .key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let state = s(&ctx.scratch.join(format!("{tag}-state")));
    let bin = s(bin);
    let pid = std::process::id();
    let default_cmd = a.command.clone();
    row.with(move |i, cmd| {
        // The command lives in config.json: one bundle per command.
        let bundle = if cmd == default_cmd.as_slice() || cmd == ["CMD"] {
            s(&base)
        } else {
            bundle_for(&base, cmd).unwrap_or_else(|_| s(&base))
        };
        vec![
            bin.clone(),
            "--root".into(),
            state.clone(),
            "run".into(),
            "--bundle".into(),
            bundle,
            format!("mb-{tag}-{pid}-{i}"),
        ]
    })
}

fn start_docker(ctx: &Ctx) -> Result<Docker> {
    let not_installed = |what: &str| {
        Error::missing(
            format!("{what} not installed (Debian package docker.io)"),
            "apt-get install docker.io",
        )
    };
    let dockerd = which("dockerd").ok_or_else(|| not_installed("dockerd"))?;
    let docker = which("docker").ok_or_else(|| not_installed("docker CLI"))?;
    let d = ctx.scratch.join("d");
    fs::create_dir_all(&d).map_err(Error::create_dir(&d))?;
    let sock = d.join("docker.sock");
    let log_path = d.join("dockerd.log");
    let log = fs::File::create(&log_path).map_err(Error::write(&log_path))?;
    let log2 = log.try_clone().map_err(Error::write(&log_path))?;
    let minnow_runc = ctx.work.join("minnow-runc");
    let has_minnow = minnow_runc.is_file();
    let mut daemon = Command::new(&dockerd);
    if has_minnow {
        daemon.arg(format!("--add-runtime=minnow={}", minnow_runc.display()));
    }
    let mut daemon = daemon
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .arg("--data-root")
        .arg(d.join("data"))
        .arg("--exec-root")
        .arg(d.join("exec"))
        .arg("--pidfile")
        .arg(d.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(log2)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(Error::spawn("dockerd"))?;
    let host = format!("unix://{}", sock.display());
    let deadline = Instant::now() + Duration::from_secs(90);
    let log_tail = || {
        tail(
            &fs::read_to_string(d.join("dockerd.log")).unwrap_or_default(),
            2,
        )
    };
    loop {
        if let Ok(Some(st)) = daemon.try_wait() {
            return Err(Error::Command {
                what: "dockerd".into(),
                status: st.to_string(),
                output: log_tail(),
            });
        }
        let ok = Command::new(&docker)
            .args(["-H", &host, "version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        if Instant::now() > deadline {
            let mut dk = Docker {
                daemon,
                host,
                has_minnow,
            };
            dk.stop();
            return Err(Error::missing(
                format!("dockerd not ready after 90 s: {}", log_tail()),
                "see dockerd.log in the work directory",
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut dk = Docker {
        daemon,
        host,
        has_minnow,
    };
    let mut c = Command::new(&docker);
    c.args(["-H", &dk.host, "import"])
        .arg(ctx.work.join("rootfs.tar"))
        .arg(DOCKER_IMAGE);
    let tar = ctx.work.join("rootfs.tar");
    let made: Result<String> = if tar.exists() {
        Ok(String::new())
    } else {
        sh(
            Command::new("tar")
                .arg("-C")
                .arg(&ctx.rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            "tar rootfs",
        )
    };
    if let Err(e) = made.and_then(|_| sh(&mut c, "docker import")) {
        dk.stop();
        return Err(e);
    }
    Ok(dk)
}

impl Docker {
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.daemon.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.daemon.wait();
    }
}

/// The rows, in report order. Rows that cannot run here carry the reason.
pub fn build_rows(a: &StartupArgs, ctx: &mut Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    let m = s(&ctx.minnow);
    let root = s(&ctx.rootfs);
    let scratch = ctx.scratch.clone();
    let mem = a.mem_mib.to_string();

    rows.push(
        Row::new("host", "host process (chroot)").with(move |_, cmd| {
            let mut v = vec!["chroot".to_string(), root.clone()];
            v.extend_from_slice(cmd);
            v
        }),
    );

    // minnow's own runtime, on a private store holding the flattened image as `bench`.
    let store = scratch.join("store");
    let imported = Store::open(&store).and_then(|st| st.import(&ctx.rootfs, "bench").map(drop));
    let (m2, st2, mem2) = (m.clone(), s(&store), mem.clone());
    rows.push(
        Row::new(
            "minnow-container",
            &format!("minnow container (--mem-mib {mem})"),
        )
        .with(move |_, cmd| {
            let mut v: Vec<String> = [&m2, "container", "--store", &st2, "run"]
                .iter()
                .map(|x| x.to_string())
                .collect();
            v.extend([
                "--mem-mib".into(),
                mem2.clone(),
                "bench".into(),
                "--".into(),
            ]);
            v.extend_from_slice(cmd);
            v
        })
        .or_unavailable(
            imported.map_err(|e| Error::missing(format!("image import: {e}"), "check --image")),
        ),
    );

    for rt in ["runc", "crun"] {
        let row = Row::new(rt, &format!("{rt} run (OCI bundle, memory limit)"));
        let r = which(rt)
            .ok_or_else(|| {
                Error::missing(
                    format!("{rt} not installed (Debian package {rt})"),
                    format!("apt-get install {rt}"),
                )
            })
            .and_then(|bin| runtime_bundle(ctx, a, &bin).map(|b| (bin, b)));
        rows.push(match r {
            Ok((bin, bundle)) => oci_row(row, ctx, a, &bin, bundle),
            Err(e) => row.or_unavailable(Err(e)),
        });
    }
    let docker_row = Row::new(
        "docker",
        &format!("docker run --rm --network none --memory {mem}m"),
    );
    rows.push(match start_docker(ctx) {
        Ok(dk) => {
            let host = dk.host.clone();
            ctx.docker = Some(dk);
            let mem3 = mem.clone();
            docker_row.with(move |_, cmd| {
                let mut v: Vec<String> =
                    ["docker", "-H", &host, "run", "--rm", "--network", "none"]
                        .iter()
                        .map(|x| x.to_string())
                        .collect();
                v.extend(["--memory".into(), format!("{mem3}m"), DOCKER_IMAGE.into()]);
                v.extend_from_slice(cmd);
                v
            })
        }
        Err(e) => docker_row.or_unavailable(Err(e)),
    });
    rows.extend(crate::parity::rows(a, ctx));

    // microVM rows.
    let vm_mem = a.vm_mem_mib.to_string();
    let mut exit_row = Row::new("vm-exit", "minnow microVM: boot to workload exit");
    let mut init_row = Row::new("vm-init", "minnow microVM: boot to init (boot-timer line)");
    init_row.derived = true;
    init_row.is_vm = true;
    exit_row.is_vm = true;
    match &ctx.vm {
        Ok((kernel, disk)) => {
            let (m3, k, d, vm_mem) = (m.clone(), s(kernel), s(disk), vm_mem.clone());
            exit_row = exit_row.with(move |_, cmd| {
                vec![
                    m3.clone(),
                    "run".into(),
                    "--kernel".into(),
                    k.clone(),
                    "--disk".into(),
                    format!("{d},ro"),
                    "--mem-mib".into(),
                    vm_mem.clone(),
                    "--cmdline".into(),
                    format!("quiet -- {}", kernel_quote(cmd)),
                ]
            });
            init_row.describe = "same runs: minnow's `guest boot time` log line".into();
            exit_row.boot_row = Some(rows.len() + 1);
        }
        Err(e) => {
            exit_row.unavailable = Some(e.clone());
            init_row.unavailable = Some(e.clone());
        }
    }
    rows.push(exit_row);
    rows.push(init_row);

    let mut img_row = Row::new(
        "vm-image",
        "container image in a microVM (minnow run --image)",
    );
    img_row.is_vm = true;
    let help = crate::util::minnow_run_help(&ctx.minnow);
    match &ctx.vm {
        Err(e) => img_row.unavailable = Some(e.clone()),
        Ok(_) if !help.contains("--image") => {
            img_row.unavailable = Some(Status::Unavailable(
                "this minnow's `run` has no --image yet".into(),
            ))
        }
        Ok((kernel, _)) => {
            let (m4, st4, k) = (m.clone(), s(&store), s(kernel));
            let has_store = help.contains("--store");
            let has_kernel = help.contains("--kernel");
            img_row = img_row.with(move |_, cmd| {
                let mut v = vec![m4.clone(), "run".into(), "--image".into(), "bench".into()];
                if has_store {
                    v.extend(["--store".into(), st4.clone()]);
                }
                if has_kernel {
                    v.extend(["--kernel".into(), k.clone()]);
                }
                v.extend(["--mem-mib".into(), vm_mem.clone(), "--".into()]);
                v.extend_from_slice(cmd);
                v
            });
        }
    }
    rows.push(img_row);

    let mut ct_row = Row::new(
        "vm-container",
        "container in a microVM (minnow run --image --container)",
    );
    ct_row.is_vm = true;
    match &ctx.vm {
        Err(e) => ct_row.unavailable = Some(e.clone()),
        Ok(_) if !help.contains("--container") => {
            ct_row.unavailable = Some(Status::Unavailable(
                "this minnow's `run` has no --image --container yet".into(),
            ))
        }
        Ok((kernel, _)) => {
            let (m5, st5, k) = (m.clone(), s(&store), s(kernel));
            let vm_mem = a.vm_mem_mib.to_string();
            ct_row = ct_row.with(move |_, cmd| {
                let mut v: Vec<String> = [&m5, "run", "--image", "bench", "--container"]
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                v.extend(["--store".into(), st5.clone(), "--kernel".into(), k.clone()]);
                v.extend(["--mem-mib".into(), vm_mem.clone(), "--".into()]);
                v.extend_from_slice(cmd);
                v
            });
        }
    }
    rows.push(ct_row);
    rows
}

/// What one run did.
pub struct RunOut {
    pub ok: bool,
    pub wall_ms: f64,
    pub stderr: String,
    pub why: String,
}

/// Spawns `argv` in its own process group with `stdin`, stdout and stderr piped.
pub fn spawn_piped(argv: &[String], stdin: Stdio) -> std::io::Result<Child> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// Drains `pipe` on a thread of its own, handing each chunk read to `each`.
pub fn pump(mut pipe: impl Read + Send + 'static, mut each: impl FnMut(&[u8]) + Send + 'static) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            each(&buf[..n]);
        }
    });
}

/// Spawns `argv` in its own process group; its output comes as chunks on the channel.
pub fn spawn(argv: &[String]) -> std::io::Result<(Child, mpsc::Receiver<String>)> {
    let mut child = spawn_piped(argv, Stdio::null())?;
    let (tx, rx) = mpsc::channel();
    let send = move |tx: mpsc::Sender<String>| {
        move |b: &[u8]| {
            let _ = tx.send(String::from_utf8_lossy(b).into_owned());
        }
    };
    if let Some(out) = child.stdout.take() {
        pump(out, send(tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pump(err, send(tx));
    }
    Ok((child, rx))
}

/// Runs `argv` once: wall time from spawn to exit, with a kill after `timeout`.
pub fn run_once(argv: &[String], timeout: Duration) -> RunOut {
    let t0 = Instant::now();
    let (mut child, rx) = match spawn(argv) {
        Ok(x) => x,
        Err(e) => {
            return RunOut {
                ok: false,
                wall_ms: 0.0,
                stderr: String::new(),
                why: format!("cannot start {}: {e}", argv[0]),
            }
        }
    };
    let pid = child.id() as i32;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return true;
        }
        false
    });
    let status = child.wait();
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let mut out = String::new();
    let drain_until = Instant::now() + Duration::from_secs(2);
    while let Ok(chunk) = rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
        out.push_str(&chunk);
    }
    let ok = matches!(&status, Ok(s) if s.success()) && !timed_out;
    let why = if timed_out {
        format!(
            "timed out after {} s; output: {}",
            timeout.as_secs(),
            tail(&out, 3)
        )
    } else if ok {
        String::new()
    } else {
        format!(
            "{}; output: {}",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            tail(&out, 3)
        )
    };
    RunOut {
        ok,
        wall_ms,
        stderr: out,
        why,
    }
}

pub fn boot_ms(out: &str) -> Option<f64> {
    let at = out.find(BOOT_LINE)? + BOOT_LINE.len();
    out[at..].split_whitespace().next()?.parse().ok()
}

/// One untimed warm-up run per row (a failure there makes the row unavailable, with
/// the reason), then `runs` rounds, each running every row once in turn.
pub fn measure(
    a: &StartupArgs,
    _ctx: &Ctx,
    rows: &mut [Row],
    after_round: &mut dyn FnMut(&[Row], usize),
) {
    let timeout = Duration::from_secs(a.timeout);
    let runs = a.runs as usize;
    for round in 0..=runs {
        if round == 1 {
            eprintln!(
                "bench: {runs} rounds over {} rows ...",
                rows.iter().filter(|r| r.available() && !r.derived).count()
            );
        }
        for idx in 0..rows.len() {
            if !rows[idx].available() || rows[idx].derived {
                continue;
            }
            let Some(argv) = rows[idx].argv_for(round, &a.command) else {
                continue;
            };
            let out = run_once(&argv, timeout);
            let boot = boot_ms(&out.stderr);
            let row = &mut rows[idx];
            if round == 0 {
                if !out.ok {
                    row.unavailable = Some(Status::Unavailable(format!(
                        "warm-up run failed: {}",
                        out.why
                    )));
                    if let Some(b) = row.boot_row {
                        rows[b].unavailable =
                            Some(Status::Unavailable("its boot-to-exit row failed".into()));
                    }
                } else {
                    eprintln!("bench: warm-up {}: {:.1} ms", row.name, out.wall_ms);
                }
                continue;
            }
            if out.ok {
                row.samples.push(out.wall_ms);
                if let Some(b) = row.boot_row {
                    match boot {
                        Some(ms) => rows[b].samples.push(ms),
                        None => rows[b]
                            .failures
                            .push(format!("run {round}: no `{BOOT_LINE}` line")),
                    }
                }
            } else {
                row.failures.push(format!("run {round}: {}", out.why));
            }
        }
        if round > 0 {
            eprintln!("bench: round {round}/{runs} done");
            after_round(rows, round);
        }
    }
}

pub fn teardown(ctx: &mut Ctx) {
    if let Some(mut d) = ctx.docker.take() {
        d.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_boot_line_and_quotes() {
        assert_eq!(
            boot_ms("x\nminnow: guest boot time: 812.5 ms from VMM start to guest init\n"),
            Some(812.5)
        );
        assert_eq!(boot_ms("nothing"), None);
        let cmd = ["sh", "-c", "echo hi"].map(String::from);
        assert_eq!(kernel_quote(&cmd), "sh -c \"echo hi\"");
    }
}
