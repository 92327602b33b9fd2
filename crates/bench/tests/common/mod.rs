//! Helpers shared by the bench's integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The minnow binary the bench measures: built by cargo into the same target directory
/// (a test of this crate cannot name another package's binary).
pub fn minnow() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_minnow-bench")).with_file_name("minnow");
    let release = bin.parent().is_some_and(|d| d.ends_with("release"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "minnow", "--bin", "minnow"]);
    if release {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "cargo build -p minnow failed"
    );
    bin
}

/// The bench's scripts (tests/guests/build.sh, lab/run.sh) are found from the
/// repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Checks a report's files and returns its JSON.
pub fn report_files(out: &Path, bench: &str, stdout: &str) -> serde_json::Value {
    for ext in ["md", "json", "csv", "svg"] {
        let p = out.join(format!("{bench}.{ext}"));
        assert!(
            p.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "{bench}.{ext} missing"
        );
    }
    let md = std::fs::read_to_string(out.join(format!("{bench}.md"))).unwrap();
    assert_eq!(md, stdout, "the printed table is the report");
    let svg = std::fs::read_to_string(out.join(format!("{bench}.svg"))).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<circle"), "svg");
    serde_json::from_str(&std::fs::read_to_string(out.join(format!("{bench}.json"))).unwrap())
        .unwrap()
}

/// Every goal is printed as met or not met (never "not measured" for rows that ran); a
/// goal on a row that could not run on this host (crun on a hybrid cgroup layout) says
/// which row and why.
pub fn goals_decided(v: &serde_json::Value, md: &str) {
    let goals = v["goals"].as_array().unwrap();
    assert!(!goals.is_empty(), "no goals: {v}");
    let row_unavailable = |why: &str| {
        why.starts_with("row ")
            && (why.contains(" unavailable: ") || why.contains(" not run here: "))
    };
    for g in goals {
        let why = g["why"].as_str().unwrap_or("");
        assert!(
            g["met"].is_boolean() || row_unavailable(why),
            "goal not decided: {g}"
        );
    }
    let lines: Vec<&str> = md.lines().filter(|l| l.starts_with("- goal: ")).collect();
    assert_eq!(lines.len(), goals.len(), "{md}");
    for l in lines {
        let undecided = l
            .split_once("— not measured: ")
            .is_some_and(|(_, why)| row_unavailable(why));
        assert!(
            l.ends_with("— met") || l.ends_with("— not met") || undecided,
            "{l}"
        );
    }
}
