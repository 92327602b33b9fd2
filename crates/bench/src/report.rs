//! The one report format. Every benchmark (`host`, `lab-boot`, `startup`, `lab-io`) fills a
//! [`Report`]: facts about where it ran, its parameters, rows of samples with their
//! statistics and a status, ratios between rows, goal checks ("goal: ... — met / not
//! met"), extra tables and notes. A report is written as NAME.md, NAME.json, NAME.csv and
//! NAME.svg; [`Summary`] collects the reports of a run into latest.md and latest.json.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stats::Stats;

/// Where a benchmark ran.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Facts {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub nproc: usize,
    pub kvm_modules: Vec<String>,
    pub kvm_is_pvm: bool,
    pub in_lab: bool,
    /// `git rev-parse --short HEAD` of the working directory, `+dirty` when the sources
    /// (src, crates, Cargo.toml, Cargo.lock) have uncommitted changes.
    pub git_commit: String,
    /// `minnow --version` of the binary under test.
    pub minnow: String,
}

fn output(cmd: &mut std::process::Command) -> String {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Facts {
    /// This machine, now; `minnow` is the binary under test (its `--version`).
    pub fn here(minnow: Option<&Path>) -> Facts {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let kvm_modules: Vec<String> = ["kvm_pvm", "kvm_intel", "kvm_amd"]
            .into_iter()
            .filter(|m| Path::new(&format!("/sys/module/{m}")).exists())
            .map(String::from)
            .collect();
        let git = |args: &[&str]| output(std::process::Command::new("git").args(args));
        let mut git_commit = git(&["rev-parse", "--short", "HEAD"]);
        let dirty = git(&[
            "status",
            "--porcelain",
            "--",
            "src",
            "crates",
            "Cargo.toml",
            "Cargo.lock",
        ]);
        if !git_commit.is_empty() && !dirty.is_empty() {
            git_commit.push_str("+dirty");
        }
        Facts {
            date: jiff::Zoned::now()
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu,
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kvm_is_pvm: kvm_modules.iter().any(|m| m == "kvm_pvm"),
            kvm_modules,
            in_lab: std::env::var_os("MINNOW_LAB").is_some(),
            git_commit,
            minnow: minnow
                .map(|m| output(std::process::Command::new(m).arg("--version")))
                .unwrap_or_default(),
        }
    }

    /// One line: date, commit, kernel, CPU, KVM.
    pub fn line(&self) -> String {
        let kvm = if self.kvm_modules.is_empty() {
            "none".to_string()
        } else {
            self.kvm_modules.join(", ")
        };
        let version = if self.minnow.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.minnow)
        };
        format!(
            "{} · minnow {}{version} · kernel {} · {} ×{} · /dev/kvm: {kvm}{}{}",
            self.date,
            self.git_commit,
            self.kernel,
            self.cpu,
            self.nproc,
            if self.kvm_is_pvm { " (PVM)" } else { "" },
            if self.in_lab {
                " · inside the nested-KVM lab"
            } else {
                ""
            }
        )
    }
}

/// A row's outcome. `Failed` means a measurement that was attempted did not run cleanly
/// (the bench then exits 1); the others are rows that could not or should not run here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Status {
    Ok,
    Failed(String),
    Skipped(String),
    Unavailable(String),
    NotRunHere(String),
}

/// Makes a status from its reason.
type MakeStatus = fn(String) -> Status;

const PREFIXES: [(&str, MakeStatus); 4] = [
    ("failed: ", Status::Failed),
    ("skipped: ", Status::Skipped),
    ("unavailable: ", Status::Unavailable),
    ("not run here: ", Status::NotRunHere),
];

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ok => write!(f, "ok"),
            Status::Failed(r) => write!(f, "failed: {r}"),
            Status::Skipped(r) => write!(f, "skipped: {r}"),
            Status::Unavailable(r) => write!(f, "unavailable: {r}"),
            Status::NotRunHere(r) => write!(f, "not run here: {r}"),
        }
    }
}

impl From<Status> for String {
    fn from(s: Status) -> String {
        s.to_string()
    }
}

impl From<String> for Status {
    /// The inverse of `Display`; text without a known prefix is a failure.
    fn from(s: String) -> Status {
        if s == "ok" {
            return Status::Ok;
        }
        for (prefix, make) in PREFIXES {
            if let Some(r) = s.strip_prefix(prefix) {
                return make(r.to_string());
            }
        }
        Status::Failed(s)
    }
}

impl Status {
    /// A reason text as the startup rows write it (`skipped: ...`, `not run here: ...`,
    /// `unavailable: ...`, or a bare reason, which means unavailable).
    pub fn not_available(reason: &str) -> Status {
        match Status::from(reason.to_string()) {
            Status::Failed(r) => Status::Unavailable(r),
            s => s,
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Status::Failed(_))
    }
}

/// One measured quantity: its samples, their statistics and what happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Short and stable across runs (`1b`, `runc`, `5.tcp.g2h.tap`).
    pub id: String,
    pub name: String,
    /// `ms`, `MiB`, `MB/s`.
    pub unit: String,
    pub status: Status,
    /// What was run (for rows that time a command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub stats: Option<Stats>,
    pub samples: Vec<f64>,
    /// Runs that did not give a sample, with the reason.
    #[serde(default)]
    pub failures: Vec<String>,
}

impl Row {
    pub fn new(id: impl Into<String>, name: impl Into<String>, unit: &str) -> Row {
        Row {
            id: id.into(),
            name: name.into(),
            unit: unit.into(),
            status: Status::Ok,
            command: None,
            stats: None,
            samples: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The row with these samples and failures; `strict`: any failed run fails the row
    /// (the host and lab benches), else only a row without samples does.
    pub fn measured(mut self, samples: Vec<f64>, failures: Vec<String>, strict: bool) -> Row {
        self.stats = Stats::of(&samples);
        self.status = if samples.is_empty() {
            Status::Failed(match failures.first() {
                Some(f) => format!("no samples; {} failed run(s); first: {f}", failures.len()),
                None => "no samples".into(),
            })
        } else if strict && !failures.is_empty() {
            Status::Failed(format!(
                "{} run(s) failed; first: {}",
                failures.len(),
                failures[0]
            ))
        } else {
            Status::Ok
        };
        self.samples = samples;
        self.failures = failures;
        self
    }

    pub fn with_status(mut self, status: Status) -> Row {
        self.status = status;
        self
    }

    pub fn with_command(mut self, command: impl Into<String>) -> Row {
        self.command = Some(command.into());
        self
    }

    pub fn p50(&self) -> Option<f64> {
        self.stats.as_ref().map(|s| s.p50)
    }
}

/// The ratio of two rows' medians.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub id: String,
    pub name: String,
    /// Row ids: ratio = p50(of) / p50(to).
    pub of: String,
    pub to: String,
    pub ratio: Option<f64>,
    /// How to read it ("< 1 = minnow faster").
    pub reading: String,
}

/// A speed or size goal: printed as met or not met, never a failure of the bench.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Goal {
    pub id: String,
    pub what: String,
    /// Where the goal comes from (e.g. Firecracker's number).
    pub anchor: String,
    pub value: Option<f64>,
    pub unit: String,
    /// `<` or `<=`.
    pub op: String,
    pub limit: f64,
    /// None: not measured (`why` says why).
    pub met: Option<bool>,
    #[serde(default)]
    pub why: String,
}

impl Goal {
    pub fn line(&self) -> String {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let anchor = if self.anchor.is_empty() {
            String::new()
        } else {
            format!("; {}", self.anchor)
        };
        match (self.value, self.met) {
            (Some(v), Some(met)) => format!(
                "goal: {}: {}{unit} (goal {} {}{unit}{anchor}) — {}",
                self.what,
                num(v),
                self.op,
                num(self.limit),
                if met { "met" } else { "not met" }
            ),
            _ => format!(
                "goal: {} (goal {} {}{unit}{anchor}) — not measured: {}",
                self.what,
                self.op,
                num(self.limit),
                self.why
            ),
        }
    }
}

/// An extra table (memory per instance, density): cells are JSON values so numbers stay
/// numbers in the JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Everything one benchmark produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `host`, `lab-boot`, `startup`, `lab-io`: also the file names.
    pub bench: String,
    pub title: String,
    /// One line on where and how it ran.
    pub summary: String,
    pub facts: Facts,
    pub params: BTreeMap<String, Value>,
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
    pub goals: Vec<Goal>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// Set while the bench is still running (e.g. "3 of 10 rounds done").
    pub partial: Option<String>,
    pub elapsed_s: f64,
    /// `ok`, or `failed: ...` when a row failed (also set by the lab driver when the lab
    /// run itself broke).
    pub status: Status,
}

/// A number as the tables print it: 3 significant digits or so.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "/").replace('\n', " ")
}

fn value_cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => n.as_f64().map_or(n.to_string(), num),
        Value::String(s) => cell(s),
        v => cell(&v.to_string()),
    }
}

impl Report {
    pub fn new(bench: &str, title: &str, facts: Facts) -> Report {
        Report {
            bench: bench.into(),
            title: title.into(),
            summary: String::new(),
            facts,
            params: BTreeMap::new(),
            rows: Vec::new(),
            comparisons: Vec::new(),
            goals: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            partial: None,
            elapsed_s: 0.0,
            status: Status::Ok,
        }
    }

    pub fn param(&mut self, key: &str, v: impl Serialize) {
        self.params
            .insert(key.into(), serde_json::to_value(v).unwrap_or(Value::Null));
    }

    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// Adds the ratio p50(of) / p50(to).
    pub fn compare(&mut self, id: &str, name: &str, of: &str, to: &str, reading: &str) {
        let ratio = match (
            self.row(of).and_then(Row::p50),
            self.row(to).and_then(Row::p50),
        ) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        self.comparisons.push(Comparison {
            id: id.into(),
            name: name.into(),
            of: of.into(),
            to: to.into(),
            ratio,
            reading: reading.into(),
        });
    }

    pub fn comparison(&self, id: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.id == id)
    }

    /// A goal on a value (a row's p50 or a comparison's ratio) being below a limit.
    #[allow(clippy::too_many_arguments)]
    pub fn goal(
        &mut self,
        id: &str,
        what: &str,
        anchor: &str,
        value: Option<f64>,
        unit: &str,
        op: &str,
        limit: f64,
    ) {
        let met = value.map(|v| if op == "<=" { v <= limit } else { v < limit });
        let why = if value.is_some() {
            String::new()
        } else {
            "no samples".into()
        };
        self.goals.push(Goal {
            id: id.into(),
            what: what.into(),
            anchor: anchor.into(),
            value,
            unit: unit.into(),
            op: op.into(),
            limit,
            met,
            why,
        });
    }

    /// A goal on a row's p50; when it has none, the row's status says why.
    pub fn goal_p50(&mut self, row: &str, what: &str, anchor: &str, op: &str, limit: f64) {
        let (value, unit, status) = match self.row(row) {
            Some(r) => (r.p50(), r.unit.clone(), r.status.to_string()),
            None => (None, String::new(), "row missing".into()),
        };
        self.goal(row, what, anchor, value, &unit, op, limit);
        if value.is_none() {
            if let Some(g) = self.goals.last_mut() {
                g.why = status;
            }
        }
    }

    /// A goal on a comparison's ratio.
    pub fn goal_ratio(&mut self, cmp: &str, what: &str, anchor: &str, op: &str, limit: f64) {
        let value = self.comparison(cmp).and_then(|c| c.ratio);
        self.goal(cmp, what, anchor, value, "", op, limit);
    }

    /// Sets `status` from the rows (a failed row fails the report) unless it failed
    /// already for another reason.
    pub fn settle(&mut self) {
        if self.status.is_failed() {
            return;
        }
        let failed: Vec<&Row> = self.rows.iter().filter(|r| r.status.is_failed()).collect();
        if let Some(first) = failed.first() {
            self.status = Status::Failed(format!(
                "{} row(s) did not run cleanly; first: {}: {}",
                failed.len(),
                first.id,
                first.status
            ));
        }
    }

    /// Marks the report failed (e.g. the lab crashed), keeping its rows.
    pub fn fail(&mut self, why: String) {
        self.status = match &self.status {
            Status::Failed(old) => Status::Failed(format!("{why}; {old}")),
            _ => Status::Failed(why),
        };
    }

    /// The report's body under a heading of `level` (`#` or `##`).
    pub fn markdown_section(&self, level: &str) -> String {
        let mut s = format!("{level} {}\n\n", self.title);
        if let Some(p) = &self.partial {
            s += &format!("**Partial: {p}.**\n\n");
        }
        if !self.summary.is_empty() {
            s += &format!("{}\n", self.summary);
        }
        s += &format!(
            "{} · {:.0} s · status: {}\n\n",
            self.facts.line(),
            self.elapsed_s,
            cell(&self.status.to_string())
        );
        s += "| id | measurement | unit | n | p50 | p90 | p99 | min | max | status |\n";
        s += "| --- | --- | --- | --: | --: | --: | --: | --: | --: | --- |\n";
        for r in &self.rows {
            let status = cell(&r.status.to_string());
            match &r.stats {
                Some(st) => {
                    s += &format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {status} |\n",
                        r.id,
                        cell(&r.name),
                        r.unit,
                        st.n,
                        num(st.p50),
                        num(st.p90),
                        num(st.p99),
                        num(st.min),
                        num(st.max)
                    )
                }
                None => {
                    s += &format!(
                        "| {} | {} | {} | 0 | — | — | — | — | — | {status} |\n",
                        r.id,
                        cell(&r.name),
                        r.unit
                    )
                }
            }
        }
        let failures: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.failures.is_empty() && r.stats.is_some())
            .map(|r| {
                format!(
                    "- {}: {} failed run(s); first: {}\n",
                    r.id,
                    r.failures.len(),
                    r.failures[0]
                )
            })
            .collect();
        if !failures.is_empty() {
            s += "\n";
            s += &failures.concat();
        }
        if !self.comparisons.is_empty() {
            s += "\n| ratio | p50 / p50 | reading |\n| --- | --: | --- |\n";
            for c in &self.comparisons {
                s += &format!(
                    "| {} ({} / {}) | {} | {} |\n",
                    cell(&c.name),
                    c.of,
                    c.to,
                    c.ratio.map_or("—".into(), |r| format!("{r:.2}")),
                    cell(&c.reading)
                );
            }
        }
        if !self.goals.is_empty() {
            s += "\n";
            for g in &self.goals {
                s += &format!("- {}\n", g.line());
            }
        }
        for t in &self.tables {
            s += &format!("\n{}\n\n", t.title);
            s += &format!("| {} |\n", t.columns.join(" | "));
            s += &format!("|{}\n", " --- |".repeat(t.columns.len()));
            for r in &t.rows {
                let cells: Vec<String> = r.iter().map(value_cell).collect();
                s += &format!("| {} |\n", cells.join(" | "));
            }
        }
        let commands: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.command.as_ref().map(|c| format!("- {}: `{c}`\n", r.id)))
            .collect();
        if !commands.is_empty() {
            s += "\nCommands:\n";
            s += &commands.concat();
        }
        if !self.notes.is_empty() {
            s += "\nNotes:\n";
            for n in &self.notes {
                s += &format!("- {n}\n");
            }
        }
        if !self.params.is_empty() {
            let p: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), String::from)))
                .collect();
            s += &format!("\nParameters: {}\n", p.join(", "));
        }
        s
    }

    pub fn markdown(&self) -> String {
        self.markdown_section("#")
    }

    /// `bench,row,name,unit,iteration,value,status`: one line per sample, one line with
    /// the status for a row without samples.
    pub fn csv(&self) -> String {
        let q = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
        let mut s = String::from("bench,row,name,unit,iteration,value,status\n");
        for r in &self.rows {
            if r.samples.is_empty() {
                s += &format!(
                    "{},{},{},{},,,{}\n",
                    self.bench,
                    q(&r.id),
                    q(&r.name),
                    r.unit,
                    q(&r.status.to_string())
                );
            }
            for (i, v) in r.samples.iter().enumerate() {
                s += &format!(
                    "{},{},{},{},{},{v:.3},ok\n",
                    self.bench,
                    q(&r.id),
                    q(&r.name),
                    r.unit,
                    i + 1
                );
            }
        }
        s
    }

    fn json_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Writes DIR/BENCH.md, .json, .csv and, when it has rows in ms, .svg (a strip plot).
    pub fn write(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(Error::create_dir(dir))?;
        let w = |ext: &str, data: String| {
            let p = dir.join(format!("{}.{ext}", self.bench));
            fs::write(&p, data).map_err(Error::write(p))
        };
        w("md", self.markdown())?;
        w("json", self.json_text())?;
        w("csv", self.csv())?;
        let timed: Vec<&Row> = self.rows.iter().filter(|r| r.unit == "ms").collect();
        let svg = dir.join(format!("{}.svg", self.bench));
        if timed.is_empty() {
            let _ = fs::remove_file(&svg);
            Ok(())
        } else {
            let subtitle = if self.facts.in_lab {
                "in the nested lab"
            } else {
                "on the host"
            };
            crate::plot::svg(&svg, &timed, &format!("{} — {subtitle}", self.title))
        }
    }

    pub fn load(path: &Path) -> Result<Report> {
        let text = fs::read_to_string(path).map_err(Error::read(
            path,
            "run that benchmark first (minnow-bench all writes every report)",
        ))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            what: "benchmark report",
            source,
        })
    }
}

/// The benchmarks in report order.
pub const BENCHES: [&str; 5] = ["host", "lab-boot", "startup", "lab-io", "fuzz"];

/// Where a bench writes its report inside a results directory.
pub fn bench_dir(results: &Path, bench: &str) -> PathBuf {
    results.join(bench)
}

/// Every report of one run: DIR/latest.md and DIR/latest.json.
#[derive(Serialize, Deserialize)]
pub struct Summary {
    pub facts: Facts,
    pub params: BTreeMap<String, Value>,
    pub status: Status,
    /// Every goal of every report, with its bench.
    pub goals: Vec<(String, Goal)>,
    pub reports: Vec<Report>,
    /// Benches without a report in DIR.
    pub missing: Vec<String>,
}

impl Summary {
    /// Reads DIR/BENCH/BENCH.json for every bench.
    pub fn collect(dir: &Path, facts: Facts, params: BTreeMap<String, Value>) -> Summary {
        let mut reports = Vec::new();
        let mut missing = Vec::new();
        for b in BENCHES {
            let p = bench_dir(dir, b).join(format!("{b}.json"));
            match Report::load(&p) {
                Ok(r) => reports.push(r),
                Err(e) => missing.push(format!("{b}: {e}")),
            }
        }
        let goals = reports
            .iter()
            .flat_map(|r| r.goals.iter().map(|g| (r.bench.clone(), g.clone())))
            .collect();
        let failed: Vec<String> = reports
            .iter()
            .filter(|r| r.status.is_failed())
            .map(|r| r.bench.clone())
            .collect();
        let status = if failed.is_empty() {
            Status::Ok
        } else {
            Status::Failed(format!("did not run cleanly: {}", failed.join(", ")))
        };
        Summary {
            facts,
            params,
            status,
            goals,
            reports,
            missing,
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = String::from("# minnow benchmarks\n\n");
        s += &format!("- {}\n", self.facts.line());
        s += &format!("- status: {}\n", cell(&self.status.to_string()));
        s += "- numbers are observations; the bench fails only when a measurement did not run\n";
        if !self.params.is_empty() {
            let p: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s += &format!("- parameters: {}\n", p.join(", "));
        }
        s += "\n## Goals\n\n";
        for (b, g) in &self.goals {
            s += &format!("- {b}: {}\n", g.line());
        }
        for m in &self.missing {
            s += &format!("- no report: {m}\n");
        }
        for r in &self.reports {
            s += "\n";
            s += &r.markdown_section("##");
        }
        s
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let md = dir.join("latest.md");
        fs::write(&md, self.markdown()).map_err(Error::write(md))?;
        let js = dir.join("latest.json");
        fs::write(
            &js,
            serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
        )
        .map_err(Error::write(js))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text() {
        for s in [
            Status::Ok,
            Status::Failed("x: y".into()),
            Status::Skipped("--no-vm".into()),
            Status::Unavailable("no runc".into()),
            Status::NotRunHere("/dev/kvm is PVM".into()),
        ] {
            assert_eq!(Status::from(s.to_string()), s);
        }
        assert_eq!(
            Status::not_available("crun: exit 1"),
            Status::Unavailable("crun: exit 1".into())
        );
        assert_eq!(
            Status::not_available("skipped: --no-vm"),
            Status::Skipped("--no-vm".into())
        );
    }

    #[test]
    fn rows_ratios_goals_and_the_markdown() {
        let mut r = Report::new("t", "test", Facts::default());
        r.rows
            .push(Row::new("a", "A", "ms").measured(vec![1.0, 2.0, 3.0], vec![], true));
        r.rows
            .push(Row::new("b", "B", "ms").measured(vec![4.0, 6.0], vec![], true));
        r.rows
            .push(Row::new("c", "C", "ms").measured(vec![], vec!["run 1: exit 1".into()], true));
        r.rows.push(Row::new("d", "D", "ms").measured(
            vec![1.0],
            vec!["run 2: timed out".into()],
            false,
        ));
        r.compare("a/b", "A over B", "a", "b", "< 1 = A faster");
        r.compare("a/c", "A over C", "a", "c", "");
        r.goal_ratio("a/b", "A faster than B", "", "<", 1.0);
        r.goal_p50("b", "B under 4", "anchor", "<", 4.0);
        r.goal_p50("c", "C under 4", "", "<", 4.0);
        r.settle();
        assert_eq!(r.comparison("a/b").unwrap().ratio, Some(0.4));
        assert_eq!(r.comparison("a/c").unwrap().ratio, None);
        assert!(r.row("c").unwrap().status.is_failed());
        assert_eq!(r.row("d").unwrap().status, Status::Ok);
        assert!(r.status.is_failed());
        let lines: Vec<String> = r.goals.iter().map(Goal::line).collect();
        assert_eq!(lines[0], "goal: A faster than B: 0.40 (goal < 1.00) — met");
        assert_eq!(
            lines[1],
            "goal: B under 4: 5.00 ms (goal < 4.00 ms; anchor) — not met"
        );
        assert!(
            lines[2]
                .starts_with("goal: C under 4 (goal < 4.00 ms) — not measured: failed: no samples"),
            "{}",
            lines[2]
        );
        let md = r.markdown();
        assert!(
            md.contains("| a | A | ms | 3 | 2.00 | 2.80 | 2.98 | 1.00 | 3.00 | ok |"),
            "{md}"
        );
        assert!(
            md.contains("| A over B (a / b) | 0.40 | < 1 = A faster |"),
            "{md}"
        );
        assert!(
            md.contains("- d: 1 failed run(s); first: run 2: timed out"),
            "{md}"
        );
        let back: Report = serde_json::from_str(&r.json_text()).unwrap();
        assert_eq!(back.markdown(), md);
        assert!(r.csv().contains("t,\"c\",\"C\",ms,,,\"failed: no samples;"));
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(value_cell(&serde_json::json!(3)), "3");
        assert_eq!(value_cell(&serde_json::json!(3.0)), "3.00");
        assert_eq!(value_cell(&serde_json::json!(null)), "—");
        assert_eq!(num(9.449), "9.45");
        assert_eq!(num(356.44), "356.4");
        assert_eq!(num(17653.2), "17653");
    }
}
