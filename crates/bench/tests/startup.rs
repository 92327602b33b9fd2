//! `minnow-bench startup` end to end on this host, microVM rows off (they need the lab on
//! a PVM host): it completes, writes its report, JSON, CSV and SVG, and every row is
//! there with numbers or a reason. Needs root and busybox-static, like the container tests.

use std::path::Path;
use std::process::{Command, Stdio};

const ROWS: [&str; 9] = [
    "host",
    "minnow-container",
    "runc",
    "crun",
    "docker",
    "vm-exit",
    "vm-init",
    "vm-image",
    "vm-container",
];

/// The minnow binary the bench measures: built by cargo into the same target directory
/// (a test of this crate cannot name another package's binary).
fn minnow() -> std::path::PathBuf {
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

#[test]
fn startup_bench_writes_every_row() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the startup bench needs root (containers, cgroups)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "the startup bench needs busybox-static: apt-get install busybox-static"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let res = Command::new("timeout")
        .args(["-s", "KILL", "600", env!("CARGO_BIN_EXE_minnow-bench")])
        .args(["startup", "--runs", "3", "--no-vm", "--no-install"])
        .arg("--minnow")
        .arg(minnow())
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stdout}\n{stderr}");
    for f in ["startup.md", "startup.json", "startup.csv", "startup.svg"] {
        let p = out.join(f);
        assert!(
            p.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "{f} missing"
        );
    }
    let md = std::fs::read_to_string(out.join("startup.md")).unwrap();
    assert_eq!(md, stdout, "the printed table is the report");
    assert!(md.contains("| host process (chroot) | 3 |"), "{md}");
    assert!(md.contains("Anchors: Firecracker"), "{md}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("startup.json")).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let csv = std::fs::read_to_string(out.join("startup.csv")).unwrap();
    for key in ROWS {
        let row = rows
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("row {key} missing: {v}"));
        let status = row["status"].as_str().unwrap();
        if status == "ok" {
            assert_eq!(row["stats_ms"]["n"], 3, "{row}");
            for k in ["p50", "p90", "p99", "min", "max"] {
                assert!(row["stats_ms"][k].as_f64().unwrap() > 0.0, "{row}");
            }
        } else {
            assert!(
                status.starts_with("unavailable: ")
                    || status.starts_with("skipped: ")
                    || status.starts_with("not run"),
                "{key}: {status}"
            );
            assert!(status.len() > 15, "{key} needs a reason: {status}");
        }
        assert!(
            csv.lines().any(|l| l.starts_with(&format!("{key},"))),
            "{key} not in the CSV"
        );
    }
    // The host and minnow rows run wherever the bench does.
    for key in ["host", "minnow-container"] {
        let row = rows.iter().find(|r| r["key"] == key).unwrap();
        assert_eq!(row["status"], "ok", "{row}");
    }
    for key in ["vm-exit", "vm-init", "vm-image", "vm-container"] {
        let row = rows.iter().find(|r| r["key"] == key).unwrap();
        assert_eq!(row["status"], "skipped: --no-vm", "{row}");
    }
    let svg = std::fs::read_to_string(out.join("startup.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<circle"), "svg");
    assert!(v["memory"].as_array().is_some_and(|m| !m.is_empty()));
}
