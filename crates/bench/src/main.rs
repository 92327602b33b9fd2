//! `minnow-bench startup`: the same command started N times each way (host process,
//! minnow container, runc, crun, docker, minnow microVM), interleaved round-robin, with
//! latency statistics, memory per instance, optional density, and a report in Markdown,
//! JSON, CSV and SVG. See bench/README.md.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod mem;
mod plot;
mod registry;
mod rows;
mod stats;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

pub use stats::Stats;

/// minnow's benchmarks (bench/README.md); a binary of its own, so the product does not
/// link the plotting and engine-driving code.
#[derive(Parser, Debug)]
#[command(name = "minnow-bench", version)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Start-up latency and memory: host process vs containers vs microVMs.
    Startup(StartupArgs),
    /// Registry pull and push: minnow against skopeo, cold and warm (registry.rs).
    Registry(registry::RegistryArgs),
}

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

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    let result = match args.command {
        BenchCommand::Startup(a) => startup(a),
        BenchCommand::Registry(a) => registry::run_bench(a),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(msg) => {
            eprintln!("minnow-bench: error: {msg}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Facts about where the bench ran.
fn host_facts() -> Value {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let kvm: Vec<&str> = ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .filter(|m| Path::new(&format!("/sys/module/{m}")).exists())
        .collect();
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "date": jiff::Zoned::now().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "cpu": cpu,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kvm_modules": kvm,
        "kvm_is_pvm": kvm.contains(&"kvm_pvm"),
        "in_lab": std::env::var_os("MINNOW_LAB").is_some(),
        "git_commit": git,
        "minnow": env!("CARGO_PKG_VERSION"),
    })
}

fn startup(mut a: StartupArgs) -> Result<i32, String> {
    if a.command.is_empty() {
        a.command = vec!["/bin/true".into()];
    }
    fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}; choose --out DIR", a.out.display()))?;
    a.out = fs::canonicalize(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let t0 = Instant::now();
    if let Some(work) = a.lab_inner.clone() {
        // Inside the lab: the work directory was prepared on the host.
        let ctx = rows::Ctx::load(&a, &work)?;
        return finish(&a, ctx, t0);
    }
    let ctx = rows::Ctx::prepare(&a)?;
    if a.in_lab {
        return run_in_lab(&a, ctx, t0);
    }
    finish(&a, ctx, t0)
}

fn finish(a: &StartupArgs, mut ctx: rows::Ctx, t0: Instant) -> Result<i32, String> {
    let mut rows = rows::build_rows(a, &mut ctx);
    let facts = host_facts();
    // After every round the report so far is written, so a run cut short (e.g. the
    // lab's time limit) still leaves its samples in --out.
    rows::measure(a, &ctx, &mut rows, &mut |rows: &[rows::Row], round| {
        let partial = Report {
            args: a.clone(),
            facts: facts.clone(),
            rows,
            memory: Vec::new(),
            density: Vec::new(),
            elapsed_s: t0.elapsed().as_secs_f64(),
            partial: Some(round),
        };
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
    let report = Report {
        args: a.clone(),
        facts,
        rows: &rows,
        memory,
        density,
        elapsed_s: t0.elapsed().as_secs_f64(),
        partial: None,
    };
    report.write(&a.out)?;
    print!("{}", report.markdown());
    ctx.cleanup();
    Ok(0)
}

fn run_in_lab(a: &StartupArgs, ctx: rows::Ctx, t0: Instant) -> Result<i32, String> {
    let lab = Path::new("lab/run.sh");
    if !lab.exists() {
        return Err(
            "--in-lab needs lab/run.sh: run from the minnow repository's top directory".into(),
        );
    }
    // Under TCG nesting a round of all rows takes ~1-2 min on a busy 2-CPU host.
    let limit = a
        .lab_timeout
        .unwrap_or(600 + (a.runs + 1) * 150 + if a.density { 1800 } else { 0 });
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(lab)
        .args(["--timeout", &limit.to_string(), "--mem", "4096", "--"])
        .arg(ctx.work.join("minnow-bench"))
        .args(["startup", "--lab-inner"])
        .arg(&ctx.work)
        .args(["--runs", &a.runs.to_string(), "--image", &a.image, "--out"])
        .arg(&a.out)
        .args(["--mem-mib", &a.mem_mib.to_string()])
        .args(["--vm-mem-mib", &a.vm_mem_mib.to_string()])
        .args(["--timeout", &a.timeout.to_string()])
        .args(["--density-max", &a.density_max.to_string()]);
    for (flag, on) in [
        ("--no-vm", a.no_vm),
        ("--no-install", a.no_install),
        ("--no-mem", a.no_mem),
        ("--density", a.density),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.arg("--").args(&a.command);
    eprintln!("bench: running every row inside the nested-KVM lab (limit {limit} s) ...");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run lab/run.sh: {e}"))?;
    ctx.cleanup();
    if !status.success() {
        return Err(format!(
            "the lab run failed ({status}); see its output above; rerun without --in-lab for the host-only rows"
        ));
    }
    eprintln!("bench: lab run done in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(0)
}

/// Everything one run produced.
pub struct Report<'a> {
    pub args: StartupArgs,
    pub facts: Value,
    pub rows: &'a [rows::Row],
    /// Some(rounds done) while the runs are still going.
    pub partial: Option<usize>,
    pub memory: Vec<mem::MemRow>,
    pub density: Vec<mem::DensityRow>,
    pub elapsed_s: f64,
}

const ANCHORS: &str = "Anchors: Firecracker reaches guest userspace in 125 ms and keeps VMM \
overhead <= 5 MiB; goal: minnow container start <= 1/2 of runc's (ratio <= 0.50).";

impl Report<'_> {
    fn runc_p50(&self) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.key == "runc")
            .and_then(|r| r.stats())
            .map(|s| s.p50)
    }

    fn where_ran(&self) -> String {
        let in_lab = self.facts["in_lab"].as_bool().unwrap_or(false);
        if in_lab {
            "inside the nested-KVM lab (QEMU TCG -> kvm_amd; absolute times are inflated by TCG, read the ratios)".into()
        } else if self.facts["kvm_is_pvm"].as_bool().unwrap_or(false) {
            "on the host; /dev/kvm is PVM (kvm_pvm), so the microVM rows need --in-lab".into()
        } else {
            "on the host".into()
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let f = &self.facts;
        s += "# minnow bench startup\n\n";
        if let Some(done) = self.partial {
            s += &format!(
                "**Partial: {done} of {} rounds done, memory not measured yet.**\n\n",
                self.args.runs
            );
        }
        s += &format!(
            "Command `{}`, image `{}`, {} runs per row, interleaved round-robin; ran {}.\n",
            self.args.command.join(" "),
            self.args.image,
            self.args.runs,
            self.where_ran()
        );
        s += &format!(
            "{} · kernel {} · {} ({} CPUs) · minnow {} ({}) · {:.0} s\n\n",
            f["date"].as_str().unwrap_or(""),
            f["kernel"].as_str().unwrap_or(""),
            f["cpu"].as_str().unwrap_or(""),
            f["nproc"],
            f["minnow"].as_str().unwrap_or(""),
            f["git_commit"].as_str().unwrap_or(""),
            self.elapsed_s
        );
        s += "| row | n | p50 ms | p90 ms | p99 ms | min ms | max ms | p50 / runc |\n";
        s += "| --- | --: | --: | --: | --: | --: | --: | --: |\n";
        let runc = self.runc_p50();
        for r in self.rows {
            match r.stats() {
                Some(st) => {
                    let ratio = runc.map_or("—".to_string(), |b| format!("{:.2}", st.p50 / b));
                    s += &format!(
                        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
                        r.name, st.n, st.p50, st.p90, st.p99, st.min, st.max, ratio
                    );
                }
                None => {
                    s += &format!(
                        "| {} | 0 | — | — | — | — | — | {} |\n",
                        r.name,
                        r.status_text().replace('|', "/")
                    )
                }
            }
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.failures.is_empty())
            .map(|r| {
                format!(
                    "- {}: {} failed run(s); first: {}\n",
                    r.name,
                    r.failures.len(),
                    r.failures[0]
                )
            })
            .collect();
        if !notes.is_empty() {
            s += "\n";
            s += &notes.concat();
        }
        s += "\nRows:\n";
        for r in self.rows.iter().filter(|r| !r.describe.is_empty()) {
            s += &format!("- {}: `{}`\n", r.name, r.describe);
        }
        if !self.memory.is_empty() {
            s += "\nMemory per instance (one instance running `sleep`; MiB):\n\n";
            s += "| row | process | RSS | PSS | guest touched | VMM overhead (RSS - guest) | cgroup memory |\n";
            s += "| --- | --- | --: | --: | --: | --: | --: |\n";
            for m in &self.memory {
                s += &m.markdown_row();
            }
        }
        if !self.density.is_empty() {
            s += "\nDensity: instances started until 2 GiB were used (MemAvailable drop) or the cap:\n\n";
            s += "| row | started | MemAvailable drop MiB | MiB / instance | fit in 2 GiB | stopped because |\n";
            s += "| --- | --: | --: | --: | --: | --- |\n";
            for d in &self.density {
                s += &d.markdown_row();
            }
        }
        s += &format!("\n{ANCHORS}\n");
        if let Some(goal) = self.goal_line() {
            s += &goal;
        }
        s
    }

    fn goal_line(&self) -> Option<String> {
        let runc = self.runc_p50()?;
        let c = self.rows.iter().find(|r| r.key == "minnow-container")?;
        let st = c.stats()?;
        let ratio = st.p50 / runc;
        Some(format!(
            "Goal check: minnow container p50 / runc p50 = {ratio:.2} ({}).\n",
            if ratio <= 0.5 { "met" } else { "not met" }
        ))
    }

    fn json(&self) -> Value {
        let runc = self.runc_p50();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let st = r.stats();
                json!({
                    "key": r.key,
                    "name": r.name,
                    "command": r.describe,
                    "status": r.status_text(),
                    "available": r.unavailable.is_none(),
                    "stats_ms": st.as_ref().map(Stats::json),
                    "ratio_p50_vs_runc": st.and_then(|s| runc.map(|b| s.p50 / b)),
                    "samples_ms": r.samples,
                    "failures": r.failures,
                })
            })
            .collect();
        json!({
            "bench": "startup",
            "command": self.args.command,
            "image": self.args.image,
            "runs": self.args.runs,
            "container_mem_mib": self.args.mem_mib,
            "vm_mem_mib": self.args.vm_mem_mib,
            "where": self.where_ran(),
            "facts": self.facts,
            "rows": rows,
            "memory": self.memory.iter().map(mem::MemRow::json).collect::<Vec<_>>(),
            "density": self.density.iter().map(mem::DensityRow::json).collect::<Vec<_>>(),
            "anchors": {
                "firecracker_boot_to_userspace_ms": 125,
                "firecracker_vmm_overhead_mib": 5,
                "goal_minnow_container_vs_runc": 0.5
            },
            "elapsed_s": self.elapsed_s,
            "partial_rounds_done": self.partial,
        })
    }

    fn csv(&self) -> String {
        let mut s = String::from("row,name,iteration,ms,status\n");
        let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
        for r in self.rows {
            if r.samples.is_empty() {
                s += &format!("{},{},,,{}\n", r.key, q(&r.name), q(&r.status_text()));
            }
            for (i, ms) in r.samples.iter().enumerate() {
                s += &format!("{},{},{},{:.3},ok\n", r.key, q(&r.name), i + 1, ms);
            }
        }
        s
    }

    pub fn write(&self, out: &Path) -> Result<(), String> {
        let w = |name: &str, data: String| {
            let p = out.join(name);
            fs::write(&p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        w("startup.md", self.markdown())?;
        w(
            "startup.json",
            serde_json::to_string_pretty(&self.json()).unwrap_or_default() + "\n",
        )?;
        w("startup.csv", self.csv())?;
        plot::svg(&out.join("startup.svg"), self.rows, &self.where_ran())
    }
}
