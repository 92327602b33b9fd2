//! `minnow-bench snapshot` (issue 15's benchmarks, the tiny-guest variant on this host):
//!
//! 1. restore to the workload's first answer: `tests/guests/answer.S` writes 16 MiB of
//!    state, waits on COM1 and answers `q` with `minnow-guest: answer q`; a snapshot is
//!    taken once while it
//!    waits, then rounds interleave `minnow run --restore DIR` (request written to its
//!    stdin at spawn, time until the answer line), the cold boot of the same guest to the
//!    same answer, `runc run` of `/bin/true` on a busybox bundle and `minnow-runc run` of
//!    the same bundle; goal: restore p50 below runc's;
//! 2. memory of clones: PSS summed over N restored clones of one snapshot against N
//!    cold-booted VMs, every one alive and waiting for input;
//! 3. snapshot size and time as guest memory grows.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::report::{Facts, Report, Row, Status, Table};
use crate::rows;
use crate::util::{sh, tail, WorkDir};
use minnow_host::which;
use minnow_image::{store_path, Store};

pub const TITLE: &str = "Snapshots: restore to first answer, clones' memory, snapshot size";

/// The guest's line that says it waits for input, and its answer to `q`.
const READY: &str = "minnow-guest: answer ready";
const ANSWER: &str = "minnow-guest: answer q";
const REQUEST: &[u8] = b"q";

#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// Timed runs of each start-up row (after one untimed warm-up each).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Numbers of clones for the memory table (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 8, 32])]
    pub clones: Vec<u64>,
    /// Guest memory sizes (MiB) for the snapshot size and time table (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [128u64, 512, 2048])]
    pub sizes: Vec<u64>,
    /// Snapshots taken of each size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub size_runs: u64,
    /// Guest memory (MiB) of the start-up and clone rows.
    #[arg(long, default_value_t = 128)]
    pub mem_mib: u64,
    /// Image store holding (or to build) busybox for the runc bundle [default: minnow's].
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Time limit per run, seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Directory with the built test guests [default: built from tests/guests].
    #[arg(long)]
    pub guests: Option<PathBuf>,
    /// Output directory: snapshot.md, .json, .csv, .svg.
    #[arg(long, default_value = "bench/results/snapshot")]
    pub out: PathBuf,
}

/// A process started by the bench, in its own process group, killed when dropped.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Everything it wrote to stderr (and stdout once its line was seen).
    log: Arc<Mutex<String>>,
    /// When each watched line came (`READY`, `ANSWER`).
    lines: mpsc::Receiver<(&'static str, Instant)>,
}

impl Proc {
    fn spawn(argv: &[String]) -> std::io::Result<Proc> {
        let mut child = rows::spawn_piped(argv, Stdio::piped())?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let now = Instant::now();
                    for pat in [READY, ANSWER] {
                        if line.contains(pat) {
                            let _ = tx.send((pat, now));
                        }
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            rows::pump(err, move |b| {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&String::from_utf8_lossy(b));
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            child,
            stdin,
            log,
            lines,
        })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn send(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        let w = self.stdin.as_mut().ok_or("stdin closed")?;
        w.write_all(bytes)
            .and_then(|_| w.flush())
            .map_err(|e| format!("writing the request: {e}"))
    }

    /// Waits for `pat` until `deadline`; why not, with the end of the output.
    fn wait_for(&mut self, pat: &str, deadline: Instant) -> std::result::Result<Instant, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok((p, t)) if p == pat => return Ok(t),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("exited ({st}) before `{pat}`; {}", self.tail()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        return Err(format!("no `{pat}` in time; {}", self.tail()));
                    }
                }
            }
        }
    }

    fn tail(&self) -> String {
        std::thread::sleep(Duration::from_millis(20));
        let l = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        format!("output: {}", tail(&l, 3))
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `d` for the exit; then kills the group.
    fn finish(mut self, d: Duration) -> bool {
        self.stdin = None;
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[derive(Clone)]
struct Ctx {
    work: PathBuf,
    minnow: PathBuf,
    guest: PathBuf,
    mem_mib: u64,
    timeout: Duration,
}

impl Ctx {
    fn cold_argv(&self, mem_mib: u64, sock: Option<&Path>) -> Vec<String> {
        let mut v = vec![
            s(&self.minnow),
            "run".into(),
            "--mem-mib".into(),
            mem_mib.to_string(),
            "--kernel".into(),
            s(&self.guest),
        ];
        if let Some(p) = sock {
            v.extend(["--api-sock".into(), s(p)]);
        }
        v
    }

    fn restore_argv(&self, dir: &Path) -> Vec<String> {
        vec![s(&self.minnow), "run".into(), "--restore".into(), s(dir)]
    }

    fn vm(&self, cmd: &str, sock: &Path, extra: Option<&Path>) -> Result<()> {
        let mut c = Command::new(&self.minnow);
        c.args(["vm", cmd, "--api-sock"]).arg(sock);
        if let Some(d) = extra {
            c.arg(d);
        }
        sh(&mut c, &format!("minnow vm {cmd}")).map(drop)
    }

    /// Boots answer.elf with `mem_mib`, waits until it waits for input, pauses it and
    /// snapshots it into `dir` (replaced); the time of `minnow vm snapshot`, ms.
    fn take_snapshot(&self, mem_mib: u64, dir: &Path) -> Result<f64> {
        let _ = fs::remove_dir_all(dir);
        let sock = self.work.join(format!("snap-{mem_mib}.sock"));
        let _ = fs::remove_file(&sock);
        let argv = self.cold_argv(mem_mib, Some(&sock));
        let mut p = Proc::spawn(&argv).map_err(Error::spawn("minnow run"))?;
        p.wait_for(READY, Instant::now() + self.timeout)
            .map_err(|why| {
                Error::missing(
                    format!("answer.elf did not get ready: {why}"),
                    "see tests/guests/answer.S",
                )
            })?;
        self.vm("pause", &sock, None)?;
        let t0 = Instant::now();
        self.vm("snapshot", &sock, Some(dir))?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        drop(p);
        let _ = fs::remove_file(&sock);
        Ok(ms)
    }

    /// Spawns `argv`, writes the request at once, times spawn → the answer line.
    fn answer_once(&self, argv: &[String]) -> std::result::Result<f64, String> {
        let t0 = Instant::now();
        let mut p = Proc::spawn(argv).map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        p.send(REQUEST)?;
        let t = p.wait_for(ANSWER, t0 + self.timeout)?;
        let ms = t.duration_since(t0).as_secs_f64() * 1000.0;
        // The guest resets after its answer: minnow exits 0.
        if !p.finish(Duration::from_secs(5)) {
            return Err("answered, but minnow did not exit cleanly after the reset".into());
        }
        Ok(ms)
    }
}

/// One timed run of a start-up row (its index makes container ids unique): ms, or why not.
type RunFn = Box<dyn Fn(usize) -> std::result::Result<f64, String>>;

/// A start-up row: how to run it once, or why it cannot run.
struct StartRow {
    id: &'static str,
    name: &'static str,
    command: String,
    run: std::result::Result<RunFn, Status>,
    samples: Vec<f64>,
    failures: Vec<String>,
}

fn cp_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(Error::create_dir(dst))?;
    let mut c = Command::new("cp");
    c.arg("-a").arg(format!("{}/.", src.display())).arg(dst);
    sh(&mut c, &format!("cp -a {}", src.display())).map(drop)
}

/// A busybox bundle running /bin/true (`runc spec`, as the startup bench's runc row).
fn bundle(work: &Path, runc: &Path, store: Option<PathBuf>) -> Result<PathBuf> {
    let store = Store::open(&store_path(store)).map_err(Error::Image)?;
    let image = store
        .resolve_or_default(minnow_image::DEFAULT_IMAGE)
        .map_err(Error::Image)?;
    let rootfs = work.join("rootfs");
    for layer in store.layer_dirs(&image).map_err(Error::Image)? {
        cp_tree(&layer, &rootfs)?;
    }
    let b = work.join("bundle");
    fs::create_dir_all(&b).map_err(Error::create_dir(&b))?;
    sh(Command::new(runc).arg("spec").current_dir(&b), "runc spec")?;
    let cfg = b.join("config.json");
    let text = fs::read_to_string(&cfg).map_err(Error::read(&cfg, "rerun the bench"))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: cfg.clone(),
        what: "OCI runtime spec",
        source,
    })?;
    v["process"]["args"] = json!(["/bin/true"]);
    v["process"]["terminal"] = json!(false);
    v["root"] = json!({"path": s(&rootfs), "readonly": true});
    v["linux"]["resources"]["memory"] = json!({"limit": 64u64 << 20});
    fs::write(&cfg, v.to_string()).map_err(Error::write(&cfg))?;
    Ok(b)
}

fn oci(
    bin: &Path,
    bundle: &Path,
    state: PathBuf,
    tag: &'static str,
    timeout: Duration,
) -> (String, RunFn) {
    let bin = s(bin);
    let bundle = s(bundle);
    let state = s(&state);
    let pid = std::process::id();
    let describe = format!("{bin} --root STATE run --bundle BUNDLE ID (/bin/true)");
    let f = move |i: usize| {
        let argv: Vec<String> = vec![
            bin.clone(),
            "--root".into(),
            state.clone(),
            "run".into(),
            "--bundle".into(),
            bundle.clone(),
            format!("mbs-{tag}-{pid}-{i}"),
        ];
        let out = rows::run_once(&argv, timeout);
        if out.ok {
            Ok(out.wall_ms)
        } else {
            Err(out.why)
        }
    };
    (describe, Box::new(f))
}

/// PSS (kB → MiB) of one process from /proc/PID/smaps_rollup.
fn pss_mib(pid: i32) -> Option<f64> {
    let t = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb: u64 = t
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb as f64 / 1024.0)
}

/// Starts `n` instances, each alive and waiting for input, sums their PSS, kills them.
fn pss_of(ctx: &Ctx, n: u64, dir: Option<&Path>) -> std::result::Result<f64, String> {
    let mut procs = Vec::new();
    for i in 0..n {
        let (argv, sock) = match dir {
            Some(d) => {
                let sock = ctx.work.join(format!("clone-{i}.sock"));
                let _ = fs::remove_file(&sock);
                let mut a = ctx.restore_argv(d);
                a.extend(["--api-sock".into(), s(&sock)]);
                (a, Some(sock))
            }
            None => (ctx.cold_argv(ctx.mem_mib, None), None),
        };
        let p = Proc::spawn(&argv).map_err(|e| format!("cannot start minnow: {e}"))?;
        procs.push((p, sock));
    }
    // Instances start at once and the ready ones spin their vCPUs: 3 s more per instance.
    let deadline = Instant::now() + ctx.timeout + Duration::from_secs(3 * n);
    for (i, (p, sock)) in procs.iter_mut().enumerate() {
        match sock {
            // A restored clone prints nothing (its ready line is in the snapshot): it
            // is up once its control socket answers `minnow vm status`.
            Some(sock) => loop {
                if sock.exists() && ctx.vm("status", sock, None).is_ok() {
                    break;
                }
                if !p.alive() || Instant::now() > deadline {
                    return Err(format!("clone {i} did not come up; {}", p.tail()));
                }
                std::thread::sleep(Duration::from_millis(10));
            },
            None => {
                p.wait_for(READY, deadline)
                    .map_err(|why| format!("VM {i}: {why}"))?;
            }
        }
    }
    // Let every guest spin in its input loop a moment.
    std::thread::sleep(Duration::from_millis(500));
    let mut total = 0.0;
    for (i, (p, _)) in procs.iter_mut().enumerate() {
        if !p.alive() {
            return Err(format!("instance {i} died; {}", p.tail()));
        }
        total += pss_mib(p.pid()).ok_or_else(|| format!("no smaps_rollup for instance {i}"))?;
    }
    drop(procs);
    for i in 0..n {
        let _ = fs::remove_file(ctx.work.join(format!("clone-{i}.sock")));
    }
    Ok(total)
}

/// Disk usage and apparent size of a file, MiB.
fn sizes(p: &Path) -> Option<(f64, f64)> {
    let m = fs::metadata(p).ok()?;
    Some((
        (m.blocks() * 512) as f64 / 1048576.0,
        m.len() as f64 / 1048576.0,
    ))
}

pub fn run(a: &SnapshotArgs) -> Result<Report> {
    let t_start = Instant::now();
    let work = WorkDir::new(Path::new("/tmp"), "minnow-bench-snapshot")?;
    let src = crate::util::minnow_path(a.minnow.as_deref())?;
    let (minnow, _) = crate::util::private_binaries(&work.path, &src)?;
    let guests = match &a.guests {
        Some(g) => g.clone(),
        None => {
            let g = work.path.join("guests");
            crate::util::build_guests(&g)?;
            g
        }
    };
    let ctx = Ctx {
        work: work.path.clone(),
        minnow: minnow.clone(),
        guest: guests.join("answer.elf"),
        mem_mib: a.mem_mib,
        timeout: Duration::from_secs(a.timeout),
    };
    let mut r = Report::new("snapshot", TITLE, Facts::here(Some(&minnow)));
    r.param("runs", a.runs);
    r.param("clones", &a.clones);
    r.param("sizes_mib", &a.sizes);
    r.param("size_runs", a.size_runs);
    r.param("mem_mib", a.mem_mib);
    r.summary = format!(
        "Tiny guest tests/guests/answer.S (16 MiB of state written at boot) ({} MiB) on this host's /dev/kvm: request `q` on \
         its serial input, answer `{ANSWER}`; {} interleaved rounds after one warm-up.\n",
        a.mem_mib, a.runs
    );

    // 1. Restore to the first answer, beside cold boot, runc and minnow-runc.
    let snap = work.path.join("snap");
    let prepared = ctx.take_snapshot(a.mem_mib, &snap);
    let restore_cmd = format!(
        "{} (request `q` on stdin at spawn)",
        ctx.restore_argv(&snap).join(" ")
    );
    let cold_cmd = format!(
        "{} (request `q` on stdin at spawn)",
        ctx.cold_argv(a.mem_mib, None).join(" ")
    );
    let timeout = ctx.timeout;
    let mut rows: Vec<StartRow> = Vec::new();
    {
        let c = ctx.clone();
        let dir = snap.clone();
        rows.push(StartRow {
            id: "restore",
            name: "minnow run --restore: spawn → first answer",
            command: restore_cmd,
            run: match &prepared {
                Ok(_) => Ok(Box::new(move |_| c.answer_once(&c.restore_argv(&dir)))),
                Err(e) => Err(Status::Failed(format!("taking the snapshot: {e}"))),
            },
            samples: Vec::new(),
            failures: Vec::new(),
        });
    }
    {
        let c = ctx.clone();
        rows.push(StartRow {
            id: "cold",
            name: "minnow cold boot: spawn → first answer",
            command: cold_cmd,
            run: Ok(Box::new(move |_| {
                c.answer_once(&c.cold_argv(c.mem_mib, None))
            })),
            samples: Vec::new(),
            failures: Vec::new(),
        });
    }
    let runc = which("runc");
    let b = match &runc {
        Some(rc) => {
            bundle(&work.path, rc, a.store.clone()).map_err(|e| Status::Unavailable(e.to_string()))
        }
        None => Err(Status::Unavailable(
            "runc not installed (apt-get install runc)".into(),
        )),
    };
    let mrunc = minnow.with_file_name("minnow-runc");
    for (id, name, bin) in [
        ("runc", "runc run /bin/true (busybox bundle)", runc.clone()),
        (
            "minnow-runc",
            "minnow-runc run /bin/true (the same bundle)",
            mrunc.is_file().then(|| mrunc.clone()),
        ),
    ] {
        let (command, run) = match (&b, bin) {
            (Err(st), _) => (String::new(), Err(st.clone())),
            (Ok(_), None) => (
                String::new(),
                Err(Status::Unavailable(format!("no {id} binary beside minnow"))),
            ),
            (Ok(bd), Some(bin)) => {
                let (d, f) = oci(&bin, bd, work.path.join(format!("{id}-state")), id, timeout);
                (d, Ok(f))
            }
        };
        rows.push(StartRow {
            id,
            name,
            command,
            run,
            samples: Vec::new(),
            failures: Vec::new(),
        });
    }
    for round in 0..=a.runs as usize {
        for row in rows.iter_mut() {
            let Ok(f) = &row.run else { continue };
            let res = f(round);
            match (round, res) {
                (0, Ok(ms)) => eprintln!("bench: warm-up {}: {ms:.1} ms", row.id),
                (0, Err(why)) => {
                    row.run = Err(Status::Unavailable(format!("warm-up run failed: {why}")))
                }
                (_, Ok(ms)) => row.samples.push(ms),
                (_, Err(why)) => row.failures.push(format!("run {round}: {why}")),
            }
        }
        if round > 0 && round % 5 == 0 {
            eprintln!("bench: round {round}/{} done", a.runs);
        }
    }
    for row in rows {
        let rr = Row::new(row.id, row.name, "ms");
        let rr = match row.run {
            Err(st) => rr.with_status(st),
            Ok(_) => rr.measured(row.samples, row.failures, false),
        };
        r.rows.push(if row.command.is_empty() {
            rr
        } else {
            rr.with_command(row.command)
        });
    }
    r.compare(
        "restore/runc",
        "restore to answer / runc run",
        "restore",
        "runc",
        "< 1 = the restored workload answers sooner than runc starts /bin/true",
    );
    r.compare(
        "restore/cold",
        "restore to answer / cold boot to answer",
        "restore",
        "cold",
        "< 1 = restoring is faster than booting",
    );
    r.compare(
        "minnow-runc/runc",
        "minnow-runc / runc",
        "minnow-runc",
        "runc",
        "< 1 = minnow-runc faster",
    );
    r.goal_ratio(
        "restore/runc",
        "restore-to-answer p50 / runc run /bin/true p50",
        "issue 15: a workload started from a snapshot answers sooner than runc starts /bin/true",
        "<",
        1.0,
    );

    // 2. PSS of clones against cold-booted VMs.
    let mut table = Table {
        title: format!(
            "Memory: PSS summed over N instances of answer.elf ({} MiB), each alive and waiting for input (/proc/PID/smaps_rollup)",
            a.mem_mib
        ),
        columns: [
            "N",
            "restored clones: PSS MiB",
            "per clone MiB",
            "cold-booted VMs: PSS MiB",
            "per VM MiB",
            "clones / cold",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for &n in &a.clones {
        let clones = match &prepared {
            Ok(_) => pss_of(&ctx, n, Some(&snap)),
            Err(e) => Err(format!("taking the snapshot: {e}")),
        };
        let cold = pss_of(&ctx, n, None);
        let mut cells: Vec<Value> = vec![json!(n)];
        for (kind, res) in [("clones", &clones), ("cold", &cold)] {
            let row = Row::new(
                format!("pss.{kind}.{n}"),
                format!(
                    "PSS of {n} {}",
                    if kind == "clones" {
                        "restored clones"
                    } else {
                        "cold-booted VMs"
                    }
                ),
                "MiB",
            );
            r.rows.push(match res {
                Ok(v) => {
                    cells.extend([json!(v), json!(v / n as f64)]);
                    row.measured(vec![*v], Vec::new(), true)
                }
                Err(why) => {
                    cells.extend([Value::Null, Value::Null]);
                    row.measured(Vec::new(), vec![why.clone()], true)
                }
            });
        }
        cells.push(match (&clones, &cold) {
            (Ok(c), Ok(d)) if *d > 0.0 => json!(c / d),
            _ => Value::Null,
        });
        table.rows.push(cells);
        eprintln!("bench: clones {n}: {clones:?} vs cold {cold:?}");
    }
    r.tables.push(table);

    // 3. Snapshot size and time.
    let mut table = Table {
        title: "Snapshot size and time (answer.elf paused while waiting for input; `minnow vm snapshot` wall time; memory file)".into(),
        columns: [
            "guest MiB",
            "snapshot p50 ms",
            "memory file on disk (du) MiB",
            "apparent size MiB",
            "state file KiB",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for &mib in &a.sizes {
        let dir = work.path.join(format!("size-{mib}"));
        let mut samples = Vec::new();
        let mut failures = Vec::new();
        for i in 0..a.size_runs {
            match ctx.take_snapshot(mib, &dir) {
                Ok(ms) => samples.push(ms),
                Err(e) => failures.push(format!("run {}: {e}", i + 1)),
            }
        }
        let row = Row::new(
            format!("snap.{mib}"),
            format!("minnow vm snapshot, {mib} MiB guest"),
            "ms",
        )
        .with_command(format!(
            "minnow vm pause + minnow vm snapshot --api-sock SOCK DIR ({} --mem-mib {mib})",
            s(&ctx.guest)
        ))
        .measured(samples, failures, true);
        let (du, app) = sizes(&dir.join("memory"))
            .map_or((Value::Null, Value::Null), |(d, a)| (json!(d), json!(a)));
        let state = fs::metadata(dir.join("state"))
            .map(|m| json!(m.len() as f64 / 1024.0))
            .unwrap_or(Value::Null);
        table.rows.push(vec![
            json!(mib),
            row.p50().map_or(Value::Null, |v| json!(v)),
            du,
            app,
            state,
        ]);
        r.rows.push(row);
        let _ = fs::remove_dir_all(&dir);
    }
    r.tables.push(table);
    r.notes.push(
        "restore and cold: t = 0 just before the spawn; the request byte is written to minnow's stdin at once (it waits in the pipe and the UART until the guest polls), the sample is the time the answer line was read from minnow's stdout. The guest then resets and minnow must exit 0.".into(),
    );
    r.notes.push(
        "runc and minnow-runc: spawn → exit of `run` of the same busybox bundle (`runc spec`, /bin/true, read-only root, 64 MiB memory limit), fresh id per run.".into(),
    );
    r.notes.push(
        "Clones: N `minnow run --restore DIR --api-sock` of one snapshot, each up once `minnow vm status` answers; cold: N `minnow run` each up at its ready line; 0.5 s later every PSS is read, then all are killed. answer.S polls the UART (no interrupts), so every instance spins a vCPU.".into(),
    );
    r.notes.push(
        "answer.S writes 16 MiB at boot, so a cold-booted VM holds it as its own anonymous memory; a restored clone maps the snapshot's memory file privately and loads a page on first touch, so while it waits for input it holds only the pages it touched since the restore (its code, the UART loop), and pages it reads later are the page cache's, shared between clones (PSS splits them), until it writes them.".into(),
    );
    r.elapsed_s = t_start.elapsed().as_secs_f64();
    r.settle();
    Ok(r)
}
