//! `minnow-bench fuzz`: the fuzzing campaign's throughput (issue 10, part 6), from the
//! runs fuzz/run.sh recorded. Fuzzing takes minutes per target and an instrumented build,
//! so the bench reads what the campaigns did rather than fuzzing itself: one JSON line
//! per libFuzzer run (bench/results/fuzz/campaign.jsonl, appended by `make fuzz`).
//!
//! Rows: execs/s per target, one sample per run. A table: runs, minutes and execs in
//! total, crashes, the last run. The issue asks for 30 minutes per target in all.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::report::{Facts, Report, Row, Table};

pub const TITLE: &str = "Fuzzing throughput per target (libFuzzer, one core, nice 19)";

/// Minutes of fuzzing each target should have had in all (issue 10, part 6).
pub const MINUTES_WANTED: f64 = 30.0;

#[derive(Args, Debug, Clone)]
pub struct FuzzArgs {
    /// The campaign's runs, one JSON line each (fuzz/run.sh writes them).
    #[arg(long, default_value = "bench/results/fuzz/campaign.jsonl")]
    pub stats: PathBuf,
    /// What the campaigns found and how it was fixed, one line each (notes of the report).
    #[arg(long, default_value = "bench/results/fuzz/findings.txt")]
    pub findings: PathBuf,
    /// Where fuzz.md, fuzz.json and fuzz.csv go.
    #[arg(long, default_value = "bench/results/fuzz")]
    pub out: PathBuf,
}

/// One libFuzzer run as fuzz/run.sh records it.
#[derive(Debug, Deserialize)]
struct Run {
    target: String,
    seconds: f64,
    execs: u64,
    execs_per_sec: f64,
    crashed: bool,
    #[serde(default)]
    date: String,
    #[serde(default)]
    cov: u64,
}

fn parse(text: &str, path: &Path) -> Result<Vec<Run>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|source| Error::Json {
                path: path.to_path_buf(),
                what: "fuzz campaign log",
                source,
            })
        })
        .collect()
}

pub fn run(a: &FuzzArgs) -> Result<Report> {
    let text = fs::read_to_string(&a.stats).map_err(Error::read(
        &a.stats,
        "run the fuzzers first (make fuzz appends to it)",
    ))?;
    let mut r = report(&parse(&text, &a.stats)?, &a.stats);
    // Findings are optional: a campaign that found nothing has none.
    if let Ok(findings) = fs::read_to_string(&a.findings) {
        r.notes.extend(
            findings
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| format!("finding: {l}")),
        );
    }
    Ok(r)
}

fn report(runs: &[Run], stats: &Path) -> Report {
    let mut r = Report::new("fuzz", TITLE, Facts::here(None));
    let mut by_target: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in runs {
        by_target.entry(&run.target).or_default().push(run);
    }
    let mut table = Table {
        title: "Campaign totals (all sessions)".into(),
        columns: [
            "target",
            "runs",
            "minutes",
            "execs",
            "crashes",
            "coverage (last)",
            "last run",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for (target, runs) in &by_target {
        let samples: Vec<f64> = runs.iter().map(|x| x.execs_per_sec).collect();
        let crashes = runs.iter().filter(|x| x.crashed).count();
        // A crash is a finding (fixed, and its input kept in fuzz/regressions/), not a
        // failed measurement: the rate stands either way.
        r.rows.push(
            Row::new(
                format!("fuzz.{target}"),
                format!("{target}: execs/s per run"),
                "execs/s",
            )
            .measured(samples, Vec::new(), false),
        );
        let minutes: f64 = runs.iter().map(|x| x.seconds).sum::<f64>() / 60.0;
        let last = runs.last().map_or(String::new(), |x| x.date.clone());
        table.rows.push(vec![
            Value::from(*target),
            Value::from(runs.len()),
            Value::from((minutes * 10.0).round() / 10.0),
            Value::from(runs.iter().map(|x| x.execs).sum::<u64>()),
            Value::from(crashes),
            Value::from(runs.last().map_or(0, |x| x.cov)),
            Value::from(last),
        ]);
        if minutes < MINUTES_WANTED {
            r.notes.push(format!(
                "{target}: {minutes:.1} of the {MINUTES_WANTED:.0} minutes issue 10 asks for"
            ));
        }
    }
    r.tables.push(table);
    r.summary = format!(
        "From {} ({} runs); a crashed run's input is fixed and kept in fuzz/regressions/.\n",
        stats.display(),
        runs.len()
    );
    r.elapsed_s = runs.iter().map(|x| x.seconds).sum();
    r.settle();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn totals_per_target() {
        let text = r#"{"target":"a","seconds":300,"execs":3000,"execs_per_sec":10,"cov":5,"ft":9,"crashed":false,"date":"d1"}
{"target":"b","seconds":60,"execs":60,"execs_per_sec":1,"crashed":true,"date":"d2"}

{"target":"a","seconds":1500,"execs":30000,"execs_per_sec":20,"cov":7,"ft":9,"crashed":false,"date":"d3"}
"#;
        let runs = parse(text, Path::new("c.jsonl")).unwrap();
        let r = report(&runs, Path::new("c.jsonl"));
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.row("fuzz.a").unwrap().p50(), Some(15.0));
        assert_eq!(r.tables[0].rows[0][2], Value::from(30.0));
        assert_eq!(r.tables[0].rows[0][3], Value::from(33000u64));
        assert_eq!(r.tables[0].rows[1][4], Value::from(1));
        assert_eq!(r.notes, vec!["b: 1.0 of the 30 minutes issue 10 asks for"]);
        assert_eq!(r.status, Status::Ok);
        assert!(parse("{", Path::new("x")).is_err());
    }
}
