//! `minnow-bench host`: VMM start-up (rows 1a-1f) and memory overhead (rows 2) with the
//! tiny test guests on this host's /dev/kvm.
//!
//! Every row is measured for each entry of [`VARIANTS`]: a name and the extra
//! `minnow run` flags (seccomp on/off, a jail on/off, ...). A variant is one line in that
//! table; its rows get `@KEY` after their ids, and its goals are checked like the
//! default's.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use regex::Regex;

use crate::error::{Error, Result};
use crate::firstline;
use crate::mem;
use crate::report::{Facts, Report, Row, Status};
use crate::rows::spawn;
use crate::util::{self, tail, WorkDir};

/// One way of running minnow for the host rows.
pub struct Variant {
    /// Row-id suffix (`1b@KEY`); the first variant's rows have none.
    pub key: &'static str,
    pub name: &'static str,
    /// Added to `minnow run` before `--kernel`.
    pub flags: &'static [&'static str],
}

/// The host start-up variants. Add a row by adding a line, e.g.
/// `Variant { key: "seccomp-off", name: "seccomp off", flags: &["--seccomp", "off"] }`.
/// A variant whose first flag this minnow's `run --help` lacks is reported as unavailable.
pub const VARIANTS: &[Variant] = &[
    Variant {
        key: "default",
        name: "default flags",
        flags: &[],
    },
    Variant {
        key: "seccomp-off",
        name: "seccomp off",
        flags: &["--seccomp", "off"],
    },
    Variant {
        key: "jail",
        name: "jailed (run --jail)",
        flags: &["--jail", JAIL_DIR, "--uid", JAIL_ID, "--gid", JAIL_ID],
    },
    Variant {
        key: "jail-netns",
        name: "jailed, new network namespace",
        flags: &[
            "--jail",
            JAIL_DIR,
            "--uid",
            JAIL_ID,
            "--gid",
            JAIL_ID,
            "--jail-new-netns",
        ],
    },
];

/// One way of running the floor VMM (`minnow-floor`, crates/bench/src/bin/minnow-floor.rs):
/// only the VM, one memory slot and one vCPU, plus the KVM objects in `flags`.
pub struct Floor {
    /// Row-id suffix: `1g.KEY`, `1h.KEY`.
    pub key: &'static str,
    pub name: &'static str,
    pub flags: &'static [&'static str],
}

/// The floor rows, each run once per round beside minnow's first variant.
pub const FLOORS: &[Floor] = &[
    Floor {
        key: "floor",
        name: "floor VMM: VM, memory, vCPU",
        flags: &[],
    },
    Floor {
        key: "floor-irqchip",
        name: "floor + KVM_CREATE_IRQCHIP",
        flags: &["--irqchip"],
    },
    Floor {
        key: "floor-irqchip-pit",
        name: "floor + KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2",
        flags: &["--irqchip", "--pit"],
    },
];

/// The end of hello64.elf's UART line `minnow-guest: hello from 64-bit` (rows 1g): only
/// the end, because stdout and stderr share the bench's pipe and minnow's stderr log (its
/// boot-time line) can land inside the guest's line, which then ends on a line of its own.
const HELLO_RX: &str = r"-bit$";

/// The KVM objects `minnow run --kernel hello64.elf --mem-mib 32` creates (crates/vmm:
/// lib.rs `open_vm`/`setup_irqchip`/`create_vcpus`, memory.rs, vcpu.rs, device_manager.rs).
pub const MINNOW_KVM_OBJECTS: &str = "KVM_CREATE_VM; KVM_SET_TSS_ADDR and \
     KVM_SET_IDENTITY_MAP_ADDR; KVM_CREATE_IRQCHIP (PIC, IO-APIC, LAPICs); KVM_CREATE_PIT2 \
     (speaker dummy); one memory slot; KVM_CREATE_VCPU with KVM_SET_CPUID2, boot MSRs, \
     KVM_SET_LAPIC (LINT0 ExtINT, LINT1 NMI), sregs, regs, FPU; an irqfd for COM1 (IRQ 4); \
     for each virtio device (none here) an irqfd and an ioeventfd per queue";

/// Where the jailed variants' jail goes (created and removed by each run).
const JAIL_DIR: &str = "/tmp/minnow-bench-jail";
/// The jailed VMM's uid and gid.
const JAIL_ID: &str = "64301";

pub const BOOT_RX: &str = r"guest boot time: ([0-9.]+) ms";
const CPU_RX: &str = r"VMM CPU so far ([0-9.]+) ms";
const HALTING: &str = "minnow-guest: halting";
const FC_CPU: &str = "Firecracker spec: 8 CPU ms to API readiness";
const FC_MEM: &str = "Firecracker: VMM overhead ≤ 5 MiB";
/// Guest sizes of rows 2.
const MEM_SIZES: [u64; 2] = [128, 1024];

#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// Timed runs of each start-up row (after one untimed warm-up each).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Runs of each memory row.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub mem_runs: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Directory with the built test guests [default: built from tests/guests].
    #[arg(long)]
    pub guests: Option<PathBuf>,
    /// Only these variants (keys of the variant table; repeatable) [default: all].
    #[arg(long = "variant")]
    pub variants: Vec<String>,
    /// Output directory: host.md, host.json, host.csv, host.svg.
    #[arg(long, default_value = "bench/results/host")]
    pub out: PathBuf,
}

/// Row id of `base` for variant number `v`.
fn id(base: &str, v: &Variant, first: bool) -> String {
    if first {
        base.to_string()
    } else {
        format!("{base}@{}", v.key)
    }
}

/// Samples of one (variant, guest) start-up series.
#[derive(Default)]
struct Boot {
    boot_ms: Vec<f64>,
    /// Spawn → the guest's UART line (hello64 only).
    line_ms: Vec<f64>,
    cpu_to_guest_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    failures: Vec<String>,
}

/// Samples of one (variant, guest size) memory series, in MiB.
#[derive(Default)]
struct Mem {
    rss_overhead: Vec<f64>,
    pss_overhead: Vec<f64>,
    total_rss: Vec<f64>,
    guest_rss: Vec<f64>,
    failures: Vec<String>,
}

fn boot_argv(minnow: &Path, v: &Variant, kernel: &Path, mib: u64) -> Vec<String> {
    let mut a = vec![minnow.display().to_string(), "run".into()];
    a.extend(v.flags.iter().map(|f| f.to_string()));
    a.extend([
        "--kernel".into(),
        kernel.display().to_string(),
        "--mem-mib".into(),
        mib.to_string(),
    ]);
    a
}

/// One run of a start-up row: exit 0 with a boot-timer line carrying the CPU time.
fn boot_once(argv: &[String], rx: &Patterns, run: usize, into: &mut Boot) {
    let r = firstline::run(
        argv,
        &[("boot", &rx.boot), ("cpu", &rx.cpu), ("line", &rx.hello)],
        Duration::from_secs(20),
        None,
    );
    match (
        r.ok(),
        r.group("boot", 1),
        r.group("cpu", 1),
        r.cpu_ms,
        r.wall_ms,
    ) {
        (true, Some(b), Some(c), Some(cpu_ms), Some(wall)) => {
            into.boot_ms.push(b);
            into.line_ms.extend(r.at("line"));
            into.cpu_to_guest_ms.push(c);
            into.cpu_ms.push(cpu_ms);
            into.wall_ms.push(wall);
        }
        (true, ..) => into.failures.push(format!(
            "run {run}: exit 0 but no boot-time line with the VMM's CPU time"
        )),
        _ => into.failures.push(r.reason(&format!("run {run}"))),
    }
}

/// The patterns of a start-up run.
struct Patterns {
    boot: Regex,
    cpu: Regex,
    hello: Regex,
}

/// Samples of one floor series: spawn → hello64's line, spawn → exit.
#[derive(Default)]
struct FloorRuns {
    line_ms: Vec<f64>,
    exit_ms: Vec<f64>,
    failures: Vec<String>,
}

fn floor_argv(floor: &Path, f: &Floor, guest: &Path) -> Vec<String> {
    let mut a = vec![floor.display().to_string()];
    a.extend(f.flags.iter().map(|s| s.to_string()));
    a.extend(["--mem-mib".into(), "32".into(), guest.display().to_string()]);
    a
}

/// One run of a floor row: exit 0 with hello64's line.
fn floor_once(argv: &[String], hello: &Regex, run: usize, into: &mut FloorRuns) {
    let r = firstline::run(argv, &[("line", hello)], Duration::from_secs(20), None);
    match (r.ok(), r.at("line"), r.wall_ms) {
        (true, Some(l), Some(w)) => {
            into.line_ms.push(l);
            into.exit_ms.push(w);
        }
        (true, ..) => into.failures.push(format!(
            "run {run}: exit 0 but no guest line; last output: {}",
            r.last(3)
        )),
        _ => into.failures.push(r.reason(&format!("run {run}"))),
    }
}

/// One memory run: the halted guest's VMM's smaps, then SIGTERM, which must give exit 0.
/// The process holding the guest memory: `pid` itself, else the first of its children
/// that has one anonymous rw mapping of `kib` (a jailer's VMM).
fn vmm_pid(pid: i32, kib: u64) -> i32 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let has_guest = |p: i32| mem::smaps(p, kib).is_some_and(|s| s.guest.len() == 1);
    if has_guest(pid) {
        return pid;
    }
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|&c| has_guest(c))
        .unwrap_or(pid)
}

/// What minnow logs once it starts dropping guest output nobody reads.
const DROPPING: &str = "guest console output is being dropped";
/// Runs of the stall row.
const STALL_RUNS: usize = 3;

/// One run of row 1j: `flood.elf` floods virtio-blk with requests past every advertised
/// limit and the UART with output while nobody reads minnow's stdout; once minnow says it
/// drops output, SIGTERM; returns the ms from SIGTERM to exit. Alive 10 s after SIGTERM
/// is a stall (an error, not a slow sample).
fn stall_once(minnow: &Path, guests: &Path, dir: &Path) -> std::result::Result<f64, String> {
    let disk = dir.join("flood.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .map_err(|e| format!("cannot make {}: {e}", disk.display()))?;
    let argv: Vec<String> = [
        minnow.display().to_string(),
        "run".into(),
        "--kernel".into(),
        guests.join("flood.elf").display().to_string(),
        "--mem-mib".into(),
        "32".into(),
        "--disk".into(),
        disk.display().to_string(),
    ]
    .to_vec();
    // Only stderr is read: stdout stays an unread pipe, which is what the row is about.
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let pid = Pid::from_raw(child.id() as i32);
    let stderr = child.stderr.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        if let Some(e) = stderr {
            for line in std::io::BufReader::new(e).lines().map_while(|l| l.ok()) {
                if line.contains(DROPPING) {
                    let _ = tx.send(());
                }
            }
        }
    });
    let stop = |child: &mut std::process::Child| {
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.wait();
    };
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        stop(&mut child);
        return Err("minnow never said it drops the unread output".into());
    }
    let t = Instant::now();
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = t + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(t.elapsed().as_secs_f64() * 1000.0),
            Ok(Some(st)) => return Err(format!("{st} after SIGTERM")),
            _ if Instant::now() > deadline => {
                stop(&mut child);
                return Err("still running 10 s after SIGTERM (a stall)".into());
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn mem_once(argv: &[String], mib: u64) -> std::result::Result<mem::Smaps, String> {
    let (mut child, rx) = spawn(argv).map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let pid = child.id() as i32;
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut res: std::result::Result<mem::Smaps, String> = loop {
        while let Ok(c) = rx.try_recv() {
            out.push_str(&c);
        }
        if out.contains(HALTING) {
            std::thread::sleep(Duration::from_millis(200)); // let the vCPU settle in hlt
                                                            // The VMM is the spawned process, or (jailed) the jailer's child.
            let vmm = vmm_pid(pid, mib << 10);
            break match mem::smaps(vmm, mib << 10) {
                None => Err(format!("cannot read /proc/{vmm}/smaps")),
                Some(s) if s.guest.len() != 1 => Err(format!(
                    "found {} anonymous rw mappings of {mib} MiB (want 1)",
                    s.guest.len()
                )),
                Some(s) => Ok(s),
            };
        }
        if let Ok(Some(_)) = child.try_wait() {
            break Err("minnow exited before the guest halted".into());
        }
        if Instant::now() > deadline {
            break Err(format!("no '{HALTING}' within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let drain = Instant::now() + Duration::from_secs(1);
    while let Ok(c) = rx.recv_timeout(drain.saturating_duration_since(Instant::now())) {
        out.push_str(&c);
    }
    let last = tail(&out, 3);
    match status {
        None => {
            res = Err(match res {
                Err(e) => format!("{e}; did not exit within 10 s of SIGTERM"),
                Ok(_) => "did not exit within 10 s of SIGTERM".into(),
            })
        }
        Some(st) if !st.success() && res.is_ok() => {
            res = Err(format!("{st} after SIGTERM (want exit 0)"))
        }
        _ => {}
    }
    res.map_err(|e| format!("{e}; output: {last}"))
}

pub fn run(a: &HostArgs) -> Result<Report> {
    let t0 = Instant::now();
    let minnow_src = util::minnow_path(a.minnow.as_deref())?;
    let work = WorkDir::new(Path::new("/tmp"), "minnow-bench-host")?;
    let (minnow, _) = util::private_binaries(&work.path, &minnow_src)?;
    // The floor VMM: `minnow-floor` beside this program, copied like minnow.
    let floor_src = std::env::current_exe()
        .map_err(Error::spawn("minnow-bench (current_exe)"))?
        .with_file_name("minnow-floor");
    let floor = work.path.join("minnow-floor");
    let floor_missing = std::fs::copy(&floor_src, &floor).err().map(|e| {
        format!(
            "no floor VMM at {} ({e}); cargo build --release -p minnow-bench",
            floor_src.display()
        )
    });
    let guests = match &a.guests {
        Some(g) => g.clone(),
        None => {
            let g = work.path.join("guests");
            util::build_guests(&g)?;
            g
        }
    };
    for g in ["first.elf", "hello64.elf", "halt.elf", "flood.elf"] {
        if !guests.join(g).is_file() {
            return Err(Error::missing(
                format!("no test guest {}", guests.join(g).display()),
                "build them with sh tests/guests/build.sh DIR and pass --guests DIR",
            ));
        }
    }
    let variants: Vec<&Variant> = VARIANTS
        .iter()
        .filter(|v| a.variants.is_empty() || a.variants.iter().any(|k| k == v.key))
        .collect();
    if variants.is_empty() {
        let keys: Vec<&str> = VARIANTS.iter().map(|v| v.key).collect();
        return Err(Error::missing(
            format!("no variant named {}", a.variants.join(", ")),
            format!("choose --variant from: {}", keys.join(", ")),
        ));
    }
    let help = util::minnow_run_help(&minnow);
    // Why a variant cannot run with this minnow, if it cannot.
    let unsupported: Vec<Option<String>> = variants
        .iter()
        .map(|v| {
            v.flags
                .first()
                .filter(|f| !help.contains(**f))
                .map(|f| format!("this minnow's `run` has no {f}"))
        })
        .collect();
    let rx = Patterns {
        boot: Regex::new(BOOT_RX).map_err(|e| Error::missing(e.to_string(), "fix BOOT_RX"))?,
        cpu: Regex::new(CPU_RX).map_err(|e| Error::missing(e.to_string(), "fix CPU_RX"))?,
        hello: Regex::new(HELLO_RX).map_err(|e| Error::missing(e.to_string(), "fix HELLO_RX"))?,
    };
    let mut floors: Vec<FloorRuns> = FLOORS.iter().map(|_| Default::default()).collect();

    // 1: rounds over variants x guests, round 0 an untimed warm-up.
    let runs = a.runs as usize;
    let guests_1 = [("first", "first.elf"), ("hello64", "hello64.elf")];
    let mut boots: Vec<[Boot; 2]> = variants.iter().map(|_| Default::default()).collect();
    eprintln!(
        "bench: 1. start-up, {runs} rounds of first.elf and hello64.elf x {} variant(s) ...",
        variants.len()
    );
    for round in 0..=runs {
        for (vi, v) in variants.iter().enumerate() {
            if unsupported[vi].is_some() {
                continue;
            }
            for (gi, (_, file)) in guests_1.iter().enumerate() {
                let argv = boot_argv(&minnow, v, &guests.join(file), 32);
                if round == 0 {
                    let mut warm = Boot::default();
                    boot_once(&argv, &rx, 0, &mut warm);
                    continue;
                }
                boot_once(&argv, &rx, round, &mut boots[vi][gi]);
            }
        }
        // 1g/1h: the floor VMM in the same rounds as minnow's rows.
        if floor_missing.is_none() {
            for (fi, f) in FLOORS.iter().enumerate() {
                let argv = floor_argv(&floor, f, &guests.join("hello64.elf"));
                if round == 0 {
                    floor_once(&argv, &rx.hello, 0, &mut FloorRuns::default());
                    continue;
                }
                floor_once(&argv, &rx.hello, round, &mut floors[fi]);
            }
        }
    }
    // 2: rounds over variants x guest sizes.
    let mut mems: Vec<[Mem; 2]> = variants.iter().map(|_| Default::default()).collect();
    eprintln!(
        "bench: 2. memory, {} rounds of halt.elf with 128 and 1024 MiB ...",
        a.mem_runs
    );
    for round in 1..=a.mem_runs as usize {
        for (vi, v) in variants.iter().enumerate() {
            if unsupported[vi].is_some() {
                continue;
            }
            for (si, mib) in MEM_SIZES.iter().enumerate() {
                let argv = boot_argv(&minnow, v, &guests.join("halt.elf"), *mib);
                let m = &mut mems[vi][si];
                match mem_once(&argv, *mib) {
                    Ok(s) => {
                        let g = s.guest[0];
                        let mib = |kib: u64| kib as f64 / 1024.0;
                        m.rss_overhead.push(mib(s.total_rss_kib - g.0));
                        m.pss_overhead.push(mib(s.total_pss_kib - g.1));
                        m.total_rss.push(mib(s.total_rss_kib));
                        m.guest_rss.push(mib(g.0));
                    }
                    Err(e) => m.failures.push(format!("run {round}: {e}")),
                }
            }
        }
    }

    // 1j: a guest cannot stall the VMM (issue 10, part 5).
    eprintln!("bench: 1j. SIGTERM under flood.elf, {STALL_RUNS} runs ...");
    let (mut stall, mut stall_failures) = (Vec::new(), Vec::new());
    for i in 1..=STALL_RUNS {
        match stall_once(&minnow, &guests, &work.path) {
            Ok(ms) => stall.push(ms),
            Err(e) => stall_failures.push(format!("run {i}: {e}")),
        }
    }

    let mut r = Report::new(
        "host",
        "VMM start-up and memory (tiny guests, this host's /dev/kvm)",
        Facts::here(Some(&minnow)),
    );
    r.summary = format!(
        "{runs} runs of each start-up row after one warm-up, {} of each memory row; \
         rounds interleave every row.",
        a.mem_runs
    );
    r.param("runs", a.runs);
    r.param("mem_runs", a.mem_runs);
    let vnames: Vec<String> = variants
        .iter()
        .map(|v| {
            if v.flags.is_empty() {
                format!("{}: no extra flags", v.key)
            } else {
                format!("{}: {}", v.key, v.flags.join(" "))
            }
        })
        .collect();
    r.param("variants", vnames);
    r.param("minnow_kvm_objects", MINNOW_KVM_OBJECTS);
    let mut minnow_hello = FloorRuns::default();
    let mut minnow_unsupported = None;
    for (vi, v) in variants.iter().enumerate() {
        let first = vi == 0;
        let suffix = if first {
            String::new()
        } else {
            format!(" [{}]", v.name)
        };
        let [fb, mut hb] = std::mem::take(&mut boots[vi]);
        if first {
            // 1g.minnow/1h.minnow: the first variant's hello64 runs, beside the floor's.
            minnow_hello = FloorRuns {
                line_ms: std::mem::take(&mut hb.line_ms),
                exit_ms: hb.wall_ms.clone(),
                failures: hb.failures.clone(),
            };
            minnow_unsupported = unsupported[vi].clone();
        }
        let cmd = |file: &str, mib: u64| {
            boot_argv(Path::new("minnow"), v, Path::new(file), mib).join(" ")
        };
        let mut rows = vec![
            Row::new(
                id("1a", v, first),
                format!("VMM start → first guest instruction (first.elf's boot-timer write), 32 MiB{suffix}"),
                "ms",
            )
            .measured(fb.boot_ms, fb.failures.clone(), true)
            .with_command(cmd("first.elf", 32)),
            Row::new(
                id("1b", v, first),
                format!("CPU (user+sys, all threads) of minnow from exec to that first guest instruction{suffix}"),
                "ms",
            )
            .measured(fb.cpu_to_guest_ms, fb.failures.clone(), true),
            Row::new(
                id("1c", v, first),
                format!("CPU of the whole first.elf run, exec → exit incl. VM teardown (wait4){suffix}"),
                "ms",
            )
            .measured(fb.cpu_ms, fb.failures.clone(), true),
            Row::new(
                id("1d", v, first),
                format!("VMM start → guest boot-timer write, hello64.elf (a UART line first), 32 MiB{suffix}"),
                "ms",
            )
            .measured(hb.boot_ms, hb.failures.clone(), true)
            .with_command(cmd("hello64.elf", 32)),
            Row::new(
                id("1e", v, first),
                format!("CPU of the whole hello64 run, exec → exit (wait4){suffix}"),
                "ms",
            )
            .measured(hb.cpu_ms, hb.failures.clone(), true),
            Row::new(
                id("1f", v, first),
                format!("wall time of the whole hello64 run, spawn → exit{suffix}"),
                "ms",
            )
            .measured(hb.wall_ms, hb.failures, true),
        ];
        let ms = std::mem::take(&mut mems[vi]);
        for (mib, m) in MEM_SIZES.iter().zip(ms) {
            let base = format!("2.{mib}");
            let what = format!("halt.elf, {mib} MiB guest");
            rows.push(
                Row::new(
                    id(&format!("{base}.rss"), v, first),
                    format!("VMM memory overhead, {what}: RSS − guest-memory RSS{suffix}"),
                    "MiB",
                )
                .measured(m.rss_overhead, m.failures.clone(), true)
                .with_command(cmd("halt.elf", *mib)),
            );
            rows.push(
                Row::new(
                    id(&format!("{base}.pss"), v, first),
                    format!("VMM memory overhead, {what}: PSS − guest-memory PSS{suffix}"),
                    "MiB",
                )
                .measured(m.pss_overhead, m.failures.clone(), true),
            );
            rows.push(
                Row::new(
                    id(&format!("{base}.total"), v, first),
                    format!("total RSS, {what}{suffix}"),
                    "MiB",
                )
                .measured(m.total_rss, m.failures.clone(), true),
            );
            rows.push(
                Row::new(
                    id(&format!("{base}.guest"), v, first),
                    format!("guest-memory RSS, {what}{suffix}"),
                    "MiB",
                )
                .measured(m.guest_rss, m.failures, true),
            );
        }
        if let Some(why) = &unsupported[vi] {
            rows = rows
                .into_iter()
                .map(|row| {
                    Row {
                        failures: Vec::new(),
                        ..row
                    }
                    .with_status(Status::Unavailable(why.clone()))
                })
                .collect();
        }
        r.rows.extend(rows);
        r.goal_p50(
            &id("1b", v, first),
            &format!("1b{suffix} CPU ms to the first guest instruction, p50"),
            FC_CPU,
            "<",
            4.0,
        );
        for mib in MEM_SIZES {
            r.goal_p50(
                &id(&format!("2.{mib}.rss"), v, first),
                &format!("2.{mib}{suffix} VMM memory overhead (RSS), p50"),
                FC_MEM,
                "<",
                2.5,
            );
        }
    }
    floor_rows(
        &mut r,
        variants[0],
        (minnow_hello, minnow_unsupported),
        floors,
        floor_missing,
    );
    r.rows.push(
        Row::new(
            "1j",
            "SIGTERM → exit while flood.elf floods virtio-blk past its limits and the UART, stdout unread",
            "ms",
        )
        .measured(stall, stall_failures, true)
        .with_command("minnow run --kernel flood.elf --mem-mib 32 --disk flood.img (1 MiB), stdout a pipe nobody reads"),
    );
    let stall_max = r
        .row("1j")
        .and_then(|row| row.stats.as_ref().map(|s| s.max));
    r.goal(
        "1j",
        "1j every SIGTERM → exit under the flood, max",
        "issue 10: a guest cannot stall the VMM",
        stall_max,
        "ms",
        "<",
        1000.0,
    );
    r.notes = vec![
        "1a and 1d are minnow's own `guest boot time` log line (its clock starts at the top of \
         `main`, so exec and dynamic loading are excluded). first.elf is a PVH guest whose first \
         instruction is the boot-timer write (then an i8042 reset), so 1a is VMM start → first \
         guest instruction plus one MMIO exit. hello64 first switches CR3 and prints a 33-byte \
         UART line (2 port-I/O exits per byte) before its write."
            .into(),
        "1b is the `VMM CPU so far` part of that line: getrusage(RUSAGE_SELF) at the boot-timer \
         write, i.e. all CPU the minnow process used from exec (the kernel's exec and page faults, \
         KVM's VM and vCPU creation included) to the guest's first instruction: the analogue of \
         Firecracker's CPU ms to API readiness. 1c and 1e are wait4() rusage of the whole process, \
         exec → exit, so they add the guest's work and KVM's VM teardown. 1f is spawn → exit as \
         seen by the bench (`minnow-bench firstline`)."
            .into(),
        "2 reads /proc/PID/smaps after the guest printed `minnow-guest: halting`; the guest mapping \
         is the one anonymous rw mapping of exactly the guest size. RSS counts shared libc/ld pages \
         fully; PSS splits them. Then SIGTERM; the exit status must be 0. The 1024 MiB rows show \
         the overhead does not grow with the guest."
            .into(),
        format!(
            "1g and 1h put minnow's hello64.elf run (the first variant's, the same runs as \
             1d-1f) beside the floor VMM `minnow-floor` (crates/bench/src/bin/minnow-floor.rs) in \
             the same rounds: it opens /dev/kvm, creates the VM, one 32 MiB memory slot and one \
             vCPU in long mode (minnow's GDT, page tables and registers), loads the ELF and runs \
             it on the main thread, printing COM1 writes a line at a time; no CPUID, MSRs, \
             devices, threads or seccomp. floor-irqchip adds KVM_CREATE_IRQCHIP, \
             floor-irqchip-pit KVM_CREATE_PIT2 as well, both before the vCPU as minnow does. \
             1g is spawn → the end of the line `minnow-guest: hello from 64-bit` as the bench read \
             it (the first line ending in `-bit`: minnow's stderr can split it), 1h \
             spawn → exit. What minnow itself creates: {MINNOW_KVM_OBJECTS}."
        ),
    ];
    r.settle();
    r.elapsed_s = t0.elapsed().as_secs_f64();
    Ok(r)
}

/// Rows 1g (spawn → hello64's line) and 1h (spawn → exit) of minnow's first variant
/// and of every floor VMM, and the ratios minnow / floor of each.
fn floor_rows(
    r: &mut Report,
    v: &Variant,
    (minnow, unsupported): (FloorRuns, Option<String>),
    floors: Vec<FloorRuns>,
    missing: Option<String>,
) {
    let FloorRuns {
        line_ms: line,
        exit_ms: exit,
        failures,
    } = minnow;
    let mcmd = boot_argv(Path::new("minnow"), v, Path::new("hello64.elf"), 32).join(" ");
    let mut rows = vec![
        Row::new(
            "1g.minnow",
            format!("minnow ({}): spawn → hello64.elf's UART line", v.name),
            "ms",
        )
        .measured(line, failures.clone(), true)
        .with_command(mcmd),
        Row::new(
            "1h.minnow",
            format!("minnow ({}): spawn → exit, hello64.elf (= 1f)", v.name),
            "ms",
        )
        .measured(exit, failures, true),
    ];
    if let Some(why) = unsupported {
        for row in &mut rows {
            row.failures.clear();
            row.status = Status::Unavailable(why.clone());
        }
    }
    for (f, runs) in FLOORS.iter().zip(floors) {
        let cmd = floor_argv(Path::new("minnow-floor"), f, Path::new("hello64.elf")).join(" ");
        let mut line = Row::new(
            format!("1g.{}", f.key),
            format!("{}: spawn → hello64.elf's UART line", f.name),
            "ms",
        )
        .measured(runs.line_ms, runs.failures.clone(), true)
        .with_command(cmd);
        let mut exit = Row::new(
            format!("1h.{}", f.key),
            format!("{}: spawn → exit, hello64.elf", f.name),
            "ms",
        )
        .measured(runs.exit_ms, runs.failures, true);
        if let Some(why) = &missing {
            line = line.with_status(Status::Unavailable(why.clone()));
            exit = exit.with_status(Status::Unavailable(why.clone()));
        }
        rows.push(line);
        rows.push(exit);
    }
    r.rows.extend(rows);
    for f in FLOORS {
        for (row, what) in [("1g", "to the guest's line"), ("1h", "to exit")] {
            r.compare(
                &format!("{row}.minnow/{}", f.key),
                &format!("minnow / {}, spawn → {what}", f.name),
                &format!("{row}.minnow"),
                &format!("{row}.{}", f.key),
                "how far minnow is from this floor (1 = at it)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_rows_get_their_key() {
        let v = Variant {
            key: "seccomp-off",
            name: "seccomp off",
            flags: &["--seccomp", "off"],
        };
        assert_eq!(id("1b", &v, true), "1b");
        assert_eq!(id("1b", &v, false), "1b@seccomp-off");
        let argv = boot_argv(Path::new("m"), &v, Path::new("g.elf"), 32);
        assert_eq!(
            argv.join(" "),
            "m run --seccomp off --kernel g.elf --mem-mib 32"
        );
        assert!(
            VARIANTS[0].flags.is_empty(),
            "the first variant is the default"
        );
    }
}
