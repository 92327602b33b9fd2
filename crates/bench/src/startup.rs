//! `minnow-bench startup`: the same command started N times each way (host process,
//! minnow container, runc, crun, docker, minnow microVM), interleaved round-robin, with
//! latency statistics, memory per instance and optional density (bench/README.md).

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::error::{Error, Result};
use crate::lab;
use crate::mem;
use crate::report::{Facts, Report, Table};
use crate::rows;

pub const TITLE: &str = "Start-up: host process vs containers vs microVMs";

#[derive(Args, Debug, Clone)]
pub struct StartupArgs {
    /// Timed runs per row (after one untimed warm-up run each).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Image to run (from --store; `busybox` is built on first use).
    #[arg(long, default_value = "busybox")]
    pub image: String,
    /// Image store holding IMAGE [default: $MINNOW_STORE or /var/lib/minnow].
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Output directory: startup.md, startup.json, startup.csv, startup.svg.
    #[arg(long, default_value = "bench/results/startup")]
    pub out: PathBuf,
    /// Memory limit (MiB) for every container row, so cgroups are part of the start.
    #[arg(long, default_value_t = 64)]
    pub mem_mib: u64,
    /// Guest memory (MiB) for the microVM rows.
    #[arg(long, default_value_t = 128)]
    pub vm_mem_mib: u64,
    /// Kernel for the microVM rows [default: $MINNOW_CACHE/kernel/current/bzImage].
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Skip the microVM rows (they stay in the report as skipped).
    #[arg(long)]
    pub no_vm: bool,
    /// Run every row inside one nested-KVM lab run (`lab/run.sh`, from the repo in the
    /// current directory): needed for the microVM rows on a PVM host.
    #[arg(long)]
    pub in_lab: bool,
    /// Never apt-get install missing runtimes (runc, crun, docker.io).
    #[arg(long)]
    pub no_install: bool,
    /// Skip the memory-per-instance measurement.
    #[arg(long)]
    pub no_mem: bool,
    /// Also measure density: start instances until 2 GiB are used or --density-max.
    #[arg(long)]
    pub density: bool,
    /// Most instances per row started by --density.
    #[arg(long, default_value_t = 64)]
    pub density_max: usize,
    /// Time limit (s) for one run.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Lab time limit (s) with --in-lab [default: from the run count].
    #[arg(long)]
    pub lab_timeout: Option<u64>,
    /// Internal: the prepared work directory, when running inside the lab.
    #[arg(long, hide = true)]
    pub lab_inner: Option<PathBuf>,
    /// Command to run [default: /bin/true].
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub fn run(mut a: StartupArgs) -> Result<Report> {
    if a.command.is_empty() {
        a.command = vec!["/bin/true".into()];
    }
    fs::create_dir_all(&a.out).map_err(Error::create_dir(&a.out))?;
    a.out = fs::canonicalize(&a.out).map_err(Error::create_dir(&a.out))?;
    let t0 = Instant::now();
    if let Some(work) = a.lab_inner.clone() {
        // Inside the lab: the work directory was prepared on the host.
        let ctx = rows::Ctx::load(&a, &work)?;
        return finish(&a, ctx, t0);
    }
    let ctx = rows::Ctx::prepare(&a)?;
    if a.in_lab {
        return run_in_lab(&a, ctx);
    }
    finish(&a, ctx, t0)
}

fn where_ran(f: &Facts) -> &'static str {
    if f.in_lab {
        "inside the nested-KVM lab (QEMU TCG -> kvm_amd; absolute times are inflated by TCG, read the ratios)"
    } else if f.kvm_is_pvm {
        "on the host; /dev/kvm is PVM (kvm_pvm), so the microVM rows need --in-lab"
    } else {
        "on the host"
    }
}

/// The report of the rows (and memory, density) measured so far.
pub fn report(
    a: &StartupArgs,
    facts: &Facts,
    rows: &[rows::Row],
    memory: &[mem::MemRow],
    density: &[mem::DensityRow],
) -> Report {
    let mut r = Report::new("startup", TITLE, facts.clone());
    r.summary = format!(
        "Command `{}`, image `{}`, {} runs per row after one warm-up each, interleaved \
         round-robin; ran {}.",
        a.command.join(" "),
        a.image,
        a.runs,
        where_ran(facts)
    );
    r.param("command", &a.command);
    r.param("image", &a.image);
    r.param("runs", a.runs);
    r.param("container_mem_mib", a.mem_mib);
    r.param("vm_mem_mib", a.vm_mem_mib);
    r.rows = rows.iter().map(rows::Row::report_row).collect();
    let keys: Vec<String> = rows
        .iter()
        .filter(|row| row.key != "runc" && row.in_memory && !row.key.contains('.'))
        .map(|row| row.key.clone())
        .collect();
    for k in keys {
        let reading = if k == "minnow-container" {
            "goal ≤ 0.50"
        } else {
            ""
        };
        r.compare(
            &format!("{k}/runc"),
            "start-up p50 against runc's",
            &k,
            "runc",
            reading,
        );
    }
    r.goal_ratio(
        "minnow-container/runc",
        "minnow container start p50 / runc p50",
        "goal: at most half of runc's",
        "<=",
        0.5,
    );
    if !memory.is_empty() {
        r.tables.push(Table {
            title: "Memory per instance (one instance running `sleep`):".into(),
            columns: mem::MemRow::COLUMNS.map(String::from).to_vec(),
            rows: memory.iter().map(mem::MemRow::cells).collect(),
        });
    }
    if !density.is_empty() {
        r.tables.push(Table {
            title:
                "Density: instances started until 2 GiB were used (MemAvailable drop) or the cap:"
                    .into(),
            columns: mem::DensityRow::COLUMNS.map(String::from).to_vec(),
            rows: density.iter().map(mem::DensityRow::cells).collect(),
        });
    }
    crate::parity::report(&mut r);
    r.notes = vec![
        "Every sample is wall time from spawn to exit of the row's command, in its own process \
         group, stdout/stderr piped, with a time limit per run."
            .into(),
        "Anchors: Firecracker reaches guest userspace in 125 ms and keeps VMM overhead <= 5 MiB."
            .into(),
    ];
    r.settle();
    r
}

fn finish(a: &StartupArgs, mut ctx: rows::Ctx, t0: Instant) -> Result<Report> {
    let mut rows = rows::build_rows(a, &mut ctx);
    let facts = Facts::here(Some(&ctx.minnow));
    // After every round the report so far is written, so a run cut short (e.g. the
    // lab's time limit) still leaves its samples in --out.
    rows::measure(a, &ctx, &mut rows, &mut |rows: &[rows::Row], round| {
        let mut partial = report(a, &facts, rows, &[], &[]);
        partial.partial = Some(format!(
            "{round} of {} rounds done, memory not measured yet",
            a.runs
        ));
        partial.elapsed_s = t0.elapsed().as_secs_f64();
        let _ = partial.write(&a.out);
    });
    let memory = if a.no_mem {
        Vec::new()
    } else {
        mem::per_instance(a, &ctx, &rows)
    };
    let density = if a.density {
        mem::density(a, &ctx, &rows)
    } else {
        Vec::new()
    };
    rows::teardown(&mut ctx);
    let mut r = report(a, &facts, &rows, &memory, &density);
    r.elapsed_s = t0.elapsed().as_secs_f64();
    ctx.cleanup();
    Ok(r)
}

fn run_in_lab(a: &StartupArgs, ctx: rows::Ctx) -> Result<Report> {
    crate::util::require_repo("lab/run.sh")?;
    // Under TCG nesting a round of all rows takes ~1-2 min on a busy 2-CPU host.
    let limit = a
        .lab_timeout
        .unwrap_or(600 + (a.runs + 1) * 150 + if a.density { 1800 } else { 0 });
    let mut cmd: Vec<OsString> = vec![
        ctx.work.join("minnow-bench").into(),
        "startup".into(),
        "--lab-inner".into(),
        ctx.work.clone().into(),
    ];
    let s = |x: &dyn ToString| OsString::from(x.to_string());
    for (flag, v) in [
        ("--runs", s(&a.runs)),
        ("--image", s(&a.image)),
        ("--out", a.out.clone().into()),
        ("--mem-mib", s(&a.mem_mib)),
        ("--vm-mem-mib", s(&a.vm_mem_mib)),
        ("--timeout", s(&a.timeout)),
        ("--density-max", s(&a.density_max)),
    ] {
        cmd.push(flag.into());
        cmd.push(v);
    }
    for (flag, on) in [
        ("--no-vm", a.no_vm),
        ("--no-install", a.no_install),
        ("--no-mem", a.no_mem),
        ("--density", a.density),
    ] {
        if on {
            cmd.push(flag.into());
        }
    }
    cmd.push("--".into());
    cmd.extend(a.command.iter().map(OsString::from));
    eprintln!("bench: running every row inside the nested-KVM lab (limit {limit} s) ...");
    let _ = fs::remove_file(a.out.join("startup.json"));
    let log = a.out.join("lab.log");
    // The lab's 3 GiB default leaves too little for the density rows.
    let ran = lab::run(limit, Some(4096), &cmd, &log);
    ctx.cleanup();
    Ok(lab::collect("startup", TITLE, &a.out, &ran?, &log))
}
