//! `minnow-bench lab-boot` (row 3): inside the nested-KVM lab, K interleaved rounds of
//! minnow, `lab/qemu-boot.sh microvm` and `lab/qemu-boot.sh pc`, all booting the Debian
//! cloud kernel + resources/guest initramfs with 2 vCPUs and 512 MiB; every wall time
//! from [`firstline`], so all three are timed the same way.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use regex::Regex;
use serde_json::json;

use crate::error::{Error, Result};
use crate::firstline::{self, Outcome};
use crate::host::BOOT_RX;
use crate::lab;
use crate::report::{Facts, Report, Row, Status, Table};
use crate::util::{self, WorkDir};

const MARKER_RX: &str = "MINNOW-GUEST-UP";
const QEMU_RX: &str =
    r"qemu-boot: mode=(\S+) smp=(\d+) marker after (\d+) ms, total (\d+) ms \(qemu status (\S+)\)";
const VARIANTS: [&str; 3] = ["minnow", "qemu-microvm", "qemu-pc"];
pub const TITLE: &str = "Lab: Debian cloud kernel boot, minnow vs QEMU (nested KVM)";

#[derive(Args, Debug, Clone)]
pub struct LabBootArgs {
    /// Interleaved rounds (each boots minnow, QEMU microvm and QEMU pc once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Output directory: lab-boot.md, .json, .csv, .svg and lab.log.
    #[arg(long, default_value = "bench/results/lab-boot")]
    pub out: PathBuf,
    /// Time limit (s) of one boot.
    #[arg(long, default_value_t = 90)]
    pub boot_timeout: u64,
    /// Internal: this is the part that runs inside the lab.
    #[arg(long, hide = true)]
    pub inner: bool,
}

/// On the host: prepare private binaries, run the rounds inside one lab run, collect.
pub fn run(a: &LabBootArgs) -> Result<Report> {
    if a.inner {
        return inner(a);
    }
    util::require_repo("lab/run.sh")?;
    fs::create_dir_all(&a.out).map_err(Error::create_dir(&a.out))?;
    if let Err(why) = lab::available() {
        return Ok(lab::skipped(
            "lab-boot",
            TITLE,
            "3",
            Status::Skipped(format!("lab not available: {why}")),
        ));
    }
    let work = WorkDir::new(Path::new("/tmp"), "minnow-bench-lab-boot")?;
    let src = util::minnow_path(a.minnow.as_deref())?;
    let (minnow, bench) = util::private_binaries(&work.path, &src)?;
    let out = fs::canonicalize(&a.out).map_err(Error::create_dir(&a.out))?;
    let limit = 120 + a.rounds * 3 * (a.boot_timeout + 20);
    eprintln!(
        "bench: 3. lab, {} rounds of minnow / qemu microvm / qemu pc (typically 30 s per round; limit {limit} s) ...",
        a.rounds
    );
    let _ = fs::remove_file(out.join("lab-boot.json"));
    let cmd: Vec<OsString> = vec![
        bench.into(),
        "lab-boot".into(),
        "--inner".into(),
        "--rounds".into(),
        a.rounds.to_string().into(),
        "--boot-timeout".into(),
        a.boot_timeout.to_string().into(),
        "--minnow".into(),
        minnow.into(),
        "--out".into(),
        out.clone().into(),
    ];
    let log = out.join("lab.log");
    let ran = lab::run(limit, None, &cmd, &log)?;
    Ok(lab::collect("lab-boot", TITLE, &out, &ran, &log))
}

/// One boot's record.
struct Boot {
    round: usize,
    variant: &'static str,
    r: Outcome,
}

impl Boot {
    fn marker(&self) -> Option<f64> {
        self.r.at("marker")
    }

    /// None when the boot counts; else why not.
    fn problem(&self) -> Option<String> {
        let what = format!("{} round {}", self.variant, self.round);
        if !self.r.ok() {
            return Some(self.r.reason(&what));
        }
        if self.marker().is_none() {
            return Some(format!(
                "{what}: exit 0 but no {MARKER_RX} line; last output: {}",
                self.r.last(3)
            ));
        }
        if self.variant == "minnow" && self.r.group("boot", 1).is_none() {
            return Some(format!(
                "{what}: exit 0 but no `guest boot time` line; last output: {}",
                self.r.last(3)
            ));
        }
        None
    }
}

fn warm(path: &Path) {
    if let Ok(mut f) = fs::File::open(path) {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Inside the lab.
fn inner(a: &LabBootArgs) -> Result<Report> {
    let t0 = Instant::now();
    let minnow = util::minnow_path(a.minnow.as_deref())?;
    let cache = util::cache_dir();
    let kern = cache.join("guest/vmlinuz-cloud");
    let initrd = cache.join("guest/initramfs.cpio.gz");
    let qemu_boot = fs::canonicalize("lab/qemu-boot.sh").map_err(Error::read(
        "lab/qemu-boot.sh",
        "run from the minnow repository's top directory",
    ))?;
    // Warm the page cache (the files come over 9p) so round 1 is not special.
    for f in [&kern, &initrd, &minnow] {
        warm(f);
    }
    let s = |p: &Path| p.display().to_string();
    let t = a.boot_timeout.to_string();
    let argv = |v: &str| -> Vec<String> {
        match v {
            "minnow" => [
                &s(&minnow),
                "run",
                "--kernel",
                &s(&kern),
                "--initrd",
                &s(&initrd),
                "--vcpus",
                "2",
                "--mem-mib",
                "512",
                "--cmdline",
                "quiet",
            ]
            .map(String::from)
            .to_vec(),
            // not -q: the helper must see the guest's marker line ("guest| MINNOW-GUEST-UP")
            mode => vec![
                "bash".into(),
                s(&qemu_boot),
                mode.trim_start_matches("qemu-").into(),
                "--timeout".into(),
                t.clone(),
            ],
        }
    };
    let rx = |p: &str| Regex::new(p).map_err(|e| Error::missing(e.to_string(), "fix the pattern"));
    let (marker, boot, qemu) = (rx(MARKER_RX)?, rx(BOOT_RX)?, rx(QEMU_RX)?);
    let rounds = a.rounds as usize;
    let facts = Facts::here(Some(&minnow));
    let mut boots: Vec<Boot> = Vec::new();
    for round in 0..rounds {
        // Rotate so no variant always goes first.
        let mut order = VARIANTS.to_vec();
        order.rotate_left(round % 3);
        for v in order {
            let r = firstline::run(
                &argv(v),
                &[("marker", &marker), ("boot", &boot), ("qemu", &qemu)],
                Duration::from_secs(a.boot_timeout + 15),
                None,
            );
            let b = Boot {
                round: round + 1,
                variant: v,
                r,
            };
            eprintln!(
                "bench: lab round {}: {v}: {}",
                round + 1,
                b.problem()
                    .unwrap_or_else(|| format!("up after {:.0} ms", b.marker().unwrap_or(0.0)))
            );
            boots.push(b);
            let mut partial = report(a, &facts, &boots, &argv, t0);
            partial.partial = Some(format!("{} of {} boots done", boots.len(), rounds * 3));
            partial.write(&a.out)?;
        }
    }
    let mut r = report(a, &facts, &boots, &argv, t0);
    if boots.len() < rounds * 3 {
        r.fail(format!(
            "only {}/{} boots reported",
            boots.len(),
            rounds * 3
        ));
    }
    Ok(r)
}

fn report(
    a: &LabBootArgs,
    facts: &Facts,
    boots: &[Boot],
    argv: &dyn Fn(&str) -> Vec<String>,
    t0: Instant,
) -> Report {
    let mut r = Report::new("lab-boot", TITLE, facts.clone());
    r.summary = format!(
        "{} interleaved rounds (order rotating) of minnow, QEMU -M microvm and QEMU -M pc, \
         each booting the Debian cloud kernel + initramfs, 2 vCPUs, 512 MiB; TCG inflates \
         absolute times: read the ratios.",
        a.rounds
    );
    r.param("rounds", a.rounds);
    r.param("boot_timeout_s", a.boot_timeout);
    for v in VARIANTS {
        let mine: Vec<&Boot> = boots.iter().filter(|b| b.variant == v).collect();
        let ok: Vec<&Boot> = mine
            .iter()
            .copied()
            .filter(|b| b.problem().is_none())
            .collect();
        let failures: Vec<String> = mine.iter().filter_map(|b| b.problem()).collect();
        let col = |f: &dyn Fn(&Boot) -> Option<f64>| -> Vec<f64> {
            ok.iter().filter_map(|b| f(b)).collect()
        };
        let row = |suffix: &str, name: String, samples: Vec<f64>| {
            Row::new(format!("3.{v}.{suffix}"), name, "ms").measured(
                samples,
                failures.clone(),
                true,
            )
        };
        r.rows.push(
            row(
                "up",
                format!("lab, {v}: spawn → MINNOW-GUEST-UP line"),
                col(&|b| b.marker()),
            )
            .with_command(argv(v).join(" ")),
        );
        r.rows.push(row(
            "exit",
            format!("lab, {v}: spawn → exit"),
            col(&|b| b.r.wall_ms),
        ));
        if v == "minnow" {
            r.rows.push(row(
                "boot-timer",
                "lab, minnow: its `guest boot time` line (VMM start → guest init)".into(),
                col(&|b| b.r.group("boot", 1)),
            ));
        } else {
            r.rows.push(row(
                "own-up",
                format!("lab, {v}: qemu-boot.sh's own marker time (starts after bash is up)"),
                col(&|b| b.r.group("qemu", 3)),
            ));
            r.rows.push(row(
                "own-exit",
                format!("lab, {v}: qemu-boot.sh's own total"),
                col(&|b| b.r.group("qemu", 4)),
            ));
        }
        r.rows.push(row(
            "cpu",
            format!("lab, {v}: CPU of the whole run (wait4, children included)"),
            col(&|b| b.r.cpu_ms),
        ));
    }
    for q in ["qemu-microvm", "qemu-pc"] {
        r.compare(
            &format!("3.minnow/{q}.up"),
            &format!("marker, minnow / {q}"),
            "3.minnow.up",
            &format!("3.{q}.up"),
            "< 1 = minnow boots faster",
        );
        r.compare(
            &format!("3.minnow/{q}.own-up"),
            &format!("marker, minnow / {q}'s own marker"),
            "3.minnow.up",
            &format!("3.{q}.own-up"),
            "favours QEMU (its clock starts after bash)",
        );
        r.compare(
            &format!("3.minnow/{q}.exit"),
            &format!("to exit, minnow / {q}"),
            "3.minnow.exit",
            &format!("3.{q}.exit"),
            "< 1 = minnow faster",
        );
    }
    for q in ["qemu-microvm", "qemu-pc"] {
        r.goal_ratio(
            &format!("3.minnow/{q}.up"),
            &format!("3 minnow boots to init faster than {q} (p50 ratio)"),
            "same kernel, initramfs, vCPUs and memory",
            "<",
            1.0,
        );
    }
    r.tables.push(Table {
        title: "Every boot, in the order run (ms):".into(),
        columns: [
            "round",
            "variant",
            "status",
            "to marker",
            "to exit",
            "boot-timer line",
            "qemu-boot.sh marker",
            "qemu-boot.sh total",
            "CPU",
        ]
        .map(String::from)
        .to_vec(),
        rows: boots
            .iter()
            .map(|b| {
                vec![
                    json!(b.round),
                    json!(b.variant),
                    json!(b.problem().map_or("ok".into(), |p| format!("failed: {p}"))),
                    json!(b.marker()),
                    json!(b.r.wall_ms),
                    json!(b.r.group("boot", 1)),
                    json!(b.r.group("qemu", 3)),
                    json!(b.r.group("qemu", 4)),
                    json!(b.r.cpu_ms),
                ]
            })
            .collect(),
    });
    r.notes = vec![
        "Runs inside the nested lab (QEMU TCG → kvm_amd → guest), so absolute times are inflated \
         many times by TCG; compare ratios. Wall times are measured by `minnow-bench firstline` \
         the same way for all three: spawn → first output line containing MINNOW-GUEST-UP."
            .into(),
        "QEMU is spawned through lab/qemu-boot.sh (without -q, so the console reaches the \
         helper), so its helper times include bash starting and piping the console (~0.3-0.5 s \
         under TCG); qemu-boot.sh's own marker clock starts after bash is up, which slightly \
         favours QEMU. The two marker ratios bracket the like-for-like one. Kernel and initrd \
         are read once first so 9p caching doesn't favour later runs."
            .into(),
    ];
    r.settle();
    r.elapsed_s = t0.elapsed().as_secs_f64();
    r
}
