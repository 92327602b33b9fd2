//! `minnow-bench`: every minnow benchmark, one report format (bench/README.md).
//!
//! - `host`: VMM start-up (rows 1a-1f) and memory overhead (rows 2), tiny guests here;
//! - `lab-boot`: the Debian cloud kernel booted by minnow and QEMU in the lab (row 3);
//! - `startup`: host process vs minnow container vs runc, crun, Docker vs microVMs;
//! - `lab-io`: minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput (lab);
//! - `fuzz`: fuzzing throughput per target, from the campaign's log (fuzz/run.sh);
//! - `all`: all of them, then `summary` (DIR/latest.md, DIR/latest.json);
//! - `firstline`: the spawn-and-timestamp helper every wall time comes from.
//!
//! Each benchmark writes a [`report::Report`] to its --out (BENCH.md, .json, .csv, .svg),
//! prints its Markdown and exits 1 only when a measurement it tried did not run cleanly;
//! goals are printed as met or not met and never fail it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod firstline;
mod fuzz;
mod host;
mod lab;
mod lab_boot;
mod lab_io;
mod mem;
mod parity;
mod plot;
mod registry;
mod report;
mod rows;
mod snapshot;
mod startup;
mod stats;
mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use regex::Regex;
use serde_json::Value;

use error::{Error, Result};
use report::{Facts, Report, Row, Status, Summary};

/// minnow's benchmarks (bench/README.md); a binary of its own, so the product does not
/// link the plotting and engine-driving code.
#[derive(Parser, Debug)]
#[command(name = "minnow-bench", version)]
struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// VMM start-up CPU/time (rows 1a-1f) and memory overhead (rows 2) on this host.
    Host(host::HostArgs),
    /// Debian cloud kernel boot in the lab: minnow vs QEMU microvm and pc (row 3).
    LabBoot(lab_boot::LabBootArgs),
    /// Start-up latency and memory: host process vs containers vs microVMs.
    Startup(startup::StartupArgs),
    /// Minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput in the lab.
    LabIo(lab_io::LabIoArgs),
    /// Registry pull and push through a loopback registry: minnow vs skopeo, cold and warm.
    Registry(registry::RegistryArgs),
    /// Snapshots: restore to first answer vs cold boot and runc, clones' PSS, size and time.
    Snapshot(snapshot::SnapshotArgs),
    /// Fuzzing throughput per target, from the runs `make fuzz` recorded.
    Fuzz(fuzz::FuzzArgs),
    /// Every benchmark, then the summary (what `make bench` runs).
    All(AllArgs),
    /// Collect DIR/*/BENCH.json into DIR/latest.md and DIR/latest.json.
    Summary(SummaryArgs),
    /// Spawn CMD and timestamp the first output line matching each pattern (JSON).
    Firstline(FirstlineArgs),
    /// Internal: one timed TCP connection (lab-io).
    #[command(hide = true)]
    TcpServer(lab_io::TcpServerArgs),
}

#[derive(Args, Debug, Clone)]
struct AllArgs {
    /// Runs of each host start-up row (1a-1f).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Runs of each host memory row (2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    mem_runs: u64,
    /// Rounds of the lab benches (lab-boot, lab-io).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    lab_rounds: u64,
    /// Runs per row of `startup`.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    startup_runs: u64,
    /// Nothing in the lab: host rows only (startup without microVMs).
    #[arg(long)]
    skip_lab: bool,
    /// Skip `startup`.
    #[arg(long)]
    skip_startup: bool,
    /// Skip `lab-io`.
    #[arg(long)]
    skip_lab_io: bool,
    /// `startup --density` (adds ~30 minutes in the lab).
    #[arg(long)]
    density: bool,
    /// Results directory: DIR/BENCH/ per benchmark, DIR/latest.md, DIR/latest.json.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    minnow: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct SummaryArgs {
    /// Results directory.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Args, Debug, Clone)]
struct FirstlineArgs {
    /// Kill the command's session after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Also write every output line to FILE.
    #[arg(long)]
    log: Option<PathBuf>,
    /// NAME=REGEX (repeatable): the first line matching REGEX is reported under NAME.
    #[arg(long = "pattern")]
    patterns: Vec<String>,
    /// The command.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    match dispatch(args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minnow-bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the report to `out`, prints it; exit 1 when it did not run cleanly.
fn publish(r: &Report, out: &Path) -> Result<ExitCode> {
    r.write(out)?;
    print!("{}", r.markdown());
    if let Status::Failed(why) = &r.status {
        eprintln!("minnow-bench: {}: did not run cleanly: {why}", r.bench);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn dispatch(c: BenchCommand) -> Result<ExitCode> {
    match c {
        BenchCommand::Host(a) => publish(&host::run(&a)?, &a.out),
        BenchCommand::LabBoot(a) => publish(&lab_boot::run(&a)?, &a.out),
        BenchCommand::LabIo(a) => publish(&lab_io::run(&a)?, &a.out),
        BenchCommand::Registry(a) => publish(&registry::run(&a)?, &a.out),
        BenchCommand::Snapshot(a) => publish(&snapshot::run(&a)?, &a.out),
        BenchCommand::Fuzz(a) => publish(&fuzz::run(&a)?, &a.out),
        BenchCommand::Startup(a) => {
            let out = a.out.clone();
            let r = startup::run(a)?;
            publish(&r, &out)
        }
        BenchCommand::All(a) => all(&a),
        BenchCommand::Summary(a) => {
            let s = Summary::collect(&a.out, Facts::here(None), BTreeMap::new());
            s.write(&a.out)?;
            print!("{}", s.markdown());
            Ok(if s.status.is_failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        BenchCommand::Firstline(a) => firstline_cmd(&a),
        BenchCommand::TcpServer(a) => lab_io::tcp_server(&a).map(|_| ExitCode::SUCCESS),
    }
}

fn firstline_cmd(a: &FirstlineArgs) -> Result<ExitCode> {
    let mut pats: Vec<(String, Regex)> = Vec::new();
    for p in &a.patterns {
        let (name, rx) = p.split_once('=').ok_or_else(|| {
            Error::missing(format!("bad --pattern {p}"), "write it as NAME=REGEX")
        })?;
        let rx = Regex::new(rx).map_err(|e| {
            Error::missing(
                format!(
                    "bad regex in --pattern {p}: {}",
                    e.to_string().replace('\n', " ")
                ),
                "fix the pattern",
            )
        })?;
        pats.push((name.to_string(), rx));
    }
    let refs: Vec<(&str, &Regex)> = pats.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let timeout = Duration::from_secs_f64(a.timeout.max(0.0));
    let r = firstline::run(&a.command, &refs, timeout, a.log.as_deref());
    println!("{}", serde_json::to_string(&r).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// A report standing for a bench that stopped with an error before measuring.
fn broken(bench: &str, e: &Error) -> Report {
    let mut r = Report::new(bench, bench, Facts::here(None));
    r.rows
        .push(Row::new(bench, "set-up", "").with_status(Status::Failed(e.to_string())));
    r.settle();
    r
}

/// Runs one step of `all`: writes its report (or one saying why it broke) under DIR.
fn step(results: &Path, bench: &str, f: impl FnOnce(&Path) -> Result<Report>) {
    let dir = report::bench_dir(results, bench);
    let r = match f(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("minnow-bench: {bench}: {e}");
            broken(bench, &e)
        }
    };
    if let Err(e) = r.write(&dir) {
        eprintln!("minnow-bench: {bench}: {e}");
    }
    eprintln!("bench: {bench}: {}", r.status);
}

fn all(a: &AllArgs) -> Result<ExitCode> {
    util::require_repo("lab/run.sh")?;
    fs::create_dir_all(&a.out).map_err(Error::create_dir(&a.out))?;
    let out = fs::canonicalize(&a.out).map_err(Error::create_dir(&a.out))?;
    // Private copies, so a rebuild during the run changes nothing (/tmp: the lab sees it).
    let work = util::WorkDir::new(Path::new("/tmp"), "minnow-bench")?;
    let src = util::minnow_path(a.minnow.as_deref())?;
    let (minnow, _) = util::private_binaries(&work.path, &src)?;
    let guests = work.path.join("guests");
    let guests_built = util::build_guests(&guests).map_err(|e| e.to_string());
    let guests_ok = || {
        guests_built
            .clone()
            .map_err(|e| Error::missing(format!("building the test guests: {e}"), "install gcc"))
    };
    let lab_ok = if a.skip_lab {
        Err(Status::Skipped("--skip-lab given".into()))
    } else {
        lab::available().map_err(|why| Status::Skipped(format!("lab not available: {why}")))
    };

    step(&out, "host", |dir| {
        guests_ok()?;
        host::run(&host::HostArgs {
            runs: a.runs,
            mem_runs: a.mem_runs,
            minnow: Some(minnow.clone()),
            guests: Some(guests.clone()),
            variants: Vec::new(),
            out: dir.to_path_buf(),
        })
    });
    step(&out, "lab-boot", |dir| match &lab_ok {
        Err(why) => Ok(lab::skipped("lab-boot", lab_boot::TITLE, "3", why.clone())),
        Ok(()) => lab_boot::run(&lab_boot::LabBootArgs {
            rounds: a.lab_rounds,
            minnow: Some(minnow.clone()),
            out: dir.to_path_buf(),
            boot_timeout: 90,
            inner: false,
        }),
    });
    step(&out, "startup", |dir| {
        if a.skip_startup {
            return Ok(lab::skipped(
                "startup",
                startup::TITLE,
                "startup",
                Status::Skipped("--skip-startup given".into()),
            ));
        }
        startup::run(startup::StartupArgs {
            runs: a.startup_runs,
            image: minnow_image::DEFAULT_IMAGE.into(),
            store: None,
            minnow: Some(minnow.clone()),
            out: dir.to_path_buf(),
            mem_mib: 64,
            vm_mem_mib: 128,
            kernel: None,
            no_vm: lab_ok.is_err(),
            in_lab: lab_ok.is_ok(),
            no_install: false,
            no_mem: false,
            density: a.density,
            density_max: 64,
            timeout: 60,
            lab_timeout: None,
            lab_inner: None,
            command: Vec::new(),
        })
    });
    step(&out, "snapshot", |dir| {
        guests_ok()?;
        snapshot::run(&snapshot::SnapshotArgs {
            runs: 20,
            clones: vec![1, 8, 32],
            sizes: vec![128, 512, 2048],
            size_runs: 3,
            mem_mib: 128,
            store: None,
            timeout: 30,
            minnow: Some(minnow.clone()),
            guests: Some(guests.clone()),
            out: dir.to_path_buf(),
        })
    });
    step(&out, "registry", |dir| {
        registry::run(&registry::RegistryArgs {
            runs: 5,
            layers: 3,
            layer_mib: 16,
            minnow: Some(minnow.clone()),
            out: dir.to_path_buf(),
        })
    });
    step(&out, "lab-io", |dir| {
        let why = match &lab_ok {
            Err(why) => why.clone(),
            Ok(()) if a.skip_lab_io => Status::Skipped("--skip-lab-io given".into()),
            Ok(()) => {
                return lab_io::run(&lab_io::LabIoArgs {
                    rounds: a.lab_rounds,
                    minnow: Some(minnow.clone()),
                    out: dir.to_path_buf(),
                    boot_timeout: 180,
                    lab_timeout: None,
                    inner: false,
                })
            }
        };
        Ok(lab::skipped("lab-io", lab_io::TITLE, "5", why))
    });
    // Fuzzing is not run here (minutes per target, an instrumented build): the report is
    // made from what `make fuzz` recorded.
    step(&out, "fuzz", |dir| {
        fuzz::run(&fuzz::FuzzArgs {
            stats: PathBuf::from("bench/results/fuzz/campaign.jsonl"),
            findings: PathBuf::from("bench/results/fuzz/findings.txt"),
            out: dir.to_path_buf(),
        })
    });

    let mut params: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in [
        ("runs", a.runs),
        ("mem_runs", a.mem_runs),
        ("lab_rounds", a.lab_rounds),
        ("startup_runs", a.startup_runs),
    ] {
        params.insert(k.into(), v.into());
    }
    params.insert("density".into(), a.density.into());
    let s = Summary::collect(&out, Facts::here(Some(&minnow)), params);
    s.write(&out)?;
    print!("{}", s.markdown());
    if let Status::Failed(why) = &s.status {
        eprintln!("minnow-bench: {why}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
