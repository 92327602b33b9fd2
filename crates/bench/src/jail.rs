//! `minnow-bench jail`: the VMM's start-up with the jail (`minnow run --jail`) and
//! without, on this host's /dev/kvm: `tests/guests/first.elf`, whose first instruction
//! writes the boot timer, then resets. Variants are interleaved round-robin after one
//! untimed warm-up each. Per run: wall time spawn → exit, CPU of the whole run (user +
//! sys of minnow and, when jailed, of the VMM it waited for: the bench's RUSAGE_CHILDREN
//! before and after), and the inner VMM's boot-timer line (its `main` → the guest's
//! first instruction, and its CPU by then). Self-contained: the startup bench's spawn
//! and timing helpers, no other rows.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use nix::sys::resource::{getrusage, UsageWho};
use serde_json::{json, Value};

use crate::rows::{boot_ms, run_once};
use crate::Stats;

/// The jail flags a variant's `JAIL` word stands for.
const JAIL_WORD: &str = "JAIL";

#[derive(Args, Debug, Clone)]
pub struct JailArgs {
    /// Timed runs per variant (after one untimed warm-up each).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// The built test guests (tests/guests/build.sh DIR) holding first.elf.
    #[arg(long)]
    pub guests: PathBuf,
    /// The jailed VMM's uid and gid.
    #[arg(long, default_value_t = 64301)]
    pub uid: u32,
    /// A variant: NAME=ARGS, extra `minnow run` arguments, where the word JAIL stands for
    /// `--jail DIR --uid U --gid G --jail-id ID` (repeatable; replaces the default
    /// variants: plain, jail, and jail with --jail-new-netns).
    #[arg(long = "variant", value_name = "NAME=ARGS")]
    pub variants: Vec<String>,
    /// Output directory: jail.md, jail.json.
    #[arg(long, default_value = "bench/results/jail")]
    pub out: PathBuf,
    /// Time limit (s) for one run.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
}

struct Variant {
    name: String,
    args: Vec<String>,
    wall: Vec<f64>,
    cpu: Vec<f64>,
    boot: Vec<f64>,
    boot_cpu: Vec<f64>,
    failures: Vec<String>,
    unavailable: Option<String>,
}

fn parse_variants(specs: &[String]) -> Result<Vec<Variant>, String> {
    let defaults = [
        "plain=".to_string(),
        format!("jail={JAIL_WORD}"),
        format!("jail, new netns={JAIL_WORD} --jail-new-netns"),
    ];
    let specs = if specs.is_empty() {
        &defaults[..]
    } else {
        specs
    };
    specs
        .iter()
        .map(|s| {
            let (name, args) = s.split_once('=').ok_or_else(|| {
                format!("--variant {s:?} is not NAME=ARGS; e.g. --variant \"jail=JAIL\"")
            })?;
            Ok(Variant {
                name: name.to_string(),
                args: args.split_whitespace().map(String::from).collect(),
                wall: Vec::new(),
                cpu: Vec::new(),
                boot: Vec::new(),
                boot_cpu: Vec::new(),
                failures: Vec::new(),
                unavailable: None,
            })
        })
        .collect()
}

/// User + system CPU of this process's waited-for children so far, in ms.
fn children_cpu_ms() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|r| {
            let ms = |t: nix::sys::time::TimeVal| {
                t.tv_sec() as f64 * 1000.0 + t.tv_usec() as f64 / 1000.0
            };
            ms(r.user_time()) + ms(r.system_time())
        })
        .unwrap_or(0.0)
}

/// The `VMM CPU so far N ms` number of the boot-timer line.
fn boot_cpu_ms(out: &str) -> Option<f64> {
    let at = out.find("VMM CPU so far ")? + "VMM CPU so far ".len();
    out[at..].split_whitespace().next()?.parse().ok()
}

pub fn run(a: JailArgs) -> Result<i32, String> {
    let minnow = match &a.minnow {
        Some(m) => m.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}; give --minnow"))?
            .with_file_name("minnow"),
    };
    let kernel = a.guests.join("first.elf");
    if !kernel.is_file() {
        return Err(format!(
            "no {}; build the guests first (sh tests/guests/build.sh {})",
            kernel.display(),
            a.guests.display()
        ));
    }
    let mut variants = parse_variants(&a.variants)?;
    let work = std::env::temp_dir().join(format!("minnow-bench-jail.{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let timeout = Duration::from_secs(a.timeout);
    for round in 0..=a.runs {
        for (vi, v) in variants.iter_mut().enumerate() {
            if v.unavailable.is_some() {
                continue;
            }
            let mut argv: Vec<String> = vec![
                minnow.display().to_string(),
                "run".into(),
                "--kernel".into(),
                kernel.display().to_string(),
                "--mem-mib".into(),
                "32".into(),
            ];
            for word in &v.args {
                if word == JAIL_WORD {
                    argv.extend([
                        "--jail".into(),
                        work.join(format!("root-{vi}")).display().to_string(),
                        "--uid".into(),
                        a.uid.to_string(),
                        "--gid".into(),
                        a.uid.to_string(),
                        "--jail-id".into(),
                        format!("bench-{}-{vi}", std::process::id()),
                    ]);
                } else {
                    argv.push(word.clone());
                }
            }
            let cpu0 = children_cpu_ms();
            let out = run_once(&argv, timeout);
            let cpu = children_cpu_ms() - cpu0;
            if round == 0 {
                if !out.ok {
                    v.unavailable = Some(format!("warm-up run failed: {}", out.why));
                }
                continue;
            }
            if !out.ok {
                v.failures.push(format!("run {round}: {}", out.why));
                continue;
            }
            v.wall.push(out.wall_ms);
            v.cpu.push(cpu);
            match (boot_ms(&out.stderr), boot_cpu_ms(&out.stderr)) {
                (Some(b), Some(c)) => {
                    v.boot.push(b);
                    v.boot_cpu.push(c);
                }
                _ => v.failures.push(format!("run {round}: no boot-timer line")),
            }
        }
        if round > 0 && round % 10 == 0 {
            eprintln!("bench jail: round {round}/{} done", a.runs);
        }
    }
    let _ = fs::remove_dir_all(&work);
    let md = markdown(&variants, &a, &minnow);
    print!("{md}");
    fs::create_dir_all(&a.out).map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let write = |name: &str, text: String| {
        let p = a.out.join(name);
        fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("jail.md", md)?;
    write(
        "jail.json",
        serde_json::to_string_pretty(&json_report(&variants, &a)).unwrap_or_default(),
    )?;
    let clean = variants
        .iter()
        .all(|v| v.unavailable.is_none() && v.failures.is_empty());
    Ok(if clean { 0 } else { 1 })
}

fn p50(xs: &[f64]) -> Option<f64> {
    Stats::of(xs).map(|s| s.p50)
}

fn cell(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

fn markdown(vs: &[Variant], a: &JailArgs, minnow: &Path) -> String {
    let mut s = String::from("# minnow-bench jail: VMM start-up with and without the jail\n\n");
    s += &format!(
        "{} runs per variant, interleaved, `{} run --kernel first.elf --mem-mib 32 ...` (ms; p50 unless said).\n\n",
        a.runs,
        minnow.display()
    );
    s += "| variant | runs | wall p50 | wall p90 | CPU p50 (all processes) | VMM main → guest | VMM CPU at guest | wall p50 − first row |\n";
    s += "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    let base = vs.first().and_then(|v| p50(&v.wall));
    for v in vs {
        if let Some(why) = &v.unavailable {
            s += &format!("| {} | unavailable: {why} | | | | | | |\n", v.name);
            continue;
        }
        let wall = Stats::of(&v.wall);
        let diff = match (wall.as_ref().map(|w| w.p50), base) {
            (Some(w), Some(b)) => format!("{:+.2}", w - b),
            _ => "-".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            v.name,
            v.wall.len(),
            cell(wall.as_ref().map(|w| w.p50)),
            cell(wall.as_ref().map(|w| w.p90)),
            cell(p50(&v.cpu)),
            cell(p50(&v.boot)),
            cell(p50(&v.boot_cpu)),
            diff
        );
    }
    for v in vs.iter().filter(|v| !v.failures.is_empty()) {
        s += &format!(
            "\n{}: {} failed runs, first: {}\n",
            v.name,
            v.failures.len(),
            v.failures[0]
        );
    }
    s
}

fn json_report(vs: &[Variant], a: &JailArgs) -> Value {
    let stats = |xs: &[f64]| Stats::of(xs).map_or(Value::Null, |s| s.json());
    json!({
        "bench": "jail",
        "runs": a.runs,
        "host": crate::host_facts(),
        "variants": vs.iter().map(|v| json!({
            "name": v.name,
            "args": v.args,
            "unavailable": v.unavailable,
            "failures": v.failures,
            "wall_ms": {"stats": stats(&v.wall), "samples": v.wall},
            "cpu_ms": {"stats": stats(&v.cpu), "samples": v.cpu},
            "boot_ms": {"stats": stats(&v.boot), "samples": v.boot},
            "boot_cpu_ms": {"stats": stats(&v.boot_cpu), "samples": v.boot_cpu},
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_and_boot_line() {
        let v = parse_variants(&[]).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].args, ["JAIL"]);
        let v = parse_variants(&["x=JAIL --no-seccomp".into()]).unwrap();
        assert_eq!((v[0].name.as_str(), v[0].args.len()), ("x", 2));
        assert!(parse_variants(&["nameonly".into()]).is_err());
        let line =
            "minnow: guest boot time: 9.5 ms from VMM start to guest init (VMM CPU so far 3.8 ms)";
        assert_eq!(boot_ms(line), Some(9.5));
        assert_eq!(boot_cpu_ms(line), Some(3.8));
    }
}
