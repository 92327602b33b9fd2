//! `minnow-bench startup` end to end on this host, microVM rows off (they need the lab on
//! a PVM host): it completes, writes its report, JSON, CSV and SVG, and every row is
//! there with numbers or a reason. Needs root and busybox-static, like the container tests.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

const ROWS: [&str; 13] = [
    "host",
    "minnow-container",
    "runc",
    "crun",
    "docker",
    "minnow-runc",
    "runc.docker",
    "crun.docker",
    "docker.minnow",
    "vm-exit",
    "vm-init",
    "vm-image",
    "vm-container",
];

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
        .arg(common::minnow())
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("--out")
        .arg(&out)
        .current_dir(common::repo())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stdout}\n{stderr}");
    let v = common::report_files(&out, "startup", &stdout);
    let md = stdout.to_string();
    assert!(
        md.contains("| host | host process (chroot) | ms | 3 |"),
        "{md}"
    );
    assert!(md.contains("Anchors: Firecracker"), "{md}");
    common::goals_decided(&v, &md);
    assert_eq!(v["bench"], "startup");
    assert_eq!(v["status"], "ok", "{v}");

    let rows = v["rows"].as_array().unwrap();
    let csv = std::fs::read_to_string(out.join("startup.csv")).unwrap();
    for key in ROWS {
        let row = rows
            .iter()
            .find(|r| r["id"] == key)
            .unwrap_or_else(|| panic!("row {key} missing: {v}"));
        let status = row["status"].as_str().unwrap();
        if status == "ok" {
            assert_eq!(row["stats"]["n"], 3, "{row}");
            assert_eq!(row["samples"].as_array().unwrap().len(), 3, "{row}");
            for k in ["p50", "p90", "p99", "min", "max"] {
                assert!(row["stats"][k].as_f64().unwrap() > 0.0, "{row}");
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
            csv.lines()
                .any(|l| l.starts_with(&format!("startup,\"{key}\","))),
            "{key} not in the CSV"
        );
    }
    // The host and minnow rows run wherever the bench does.
    for key in [
        "host",
        "minnow-container",
        "minnow-runc",
        "minnow-runc.no-seccomp",
    ] {
        let row = rows.iter().find(|r| r["id"] == key).unwrap();
        assert_eq!(row["status"], "ok", "{row}");
    }
    for key in ["vm-exit", "vm-init", "vm-image", "vm-container"] {
        let row = rows.iter().find(|r| r["id"] == key).unwrap();
        assert_eq!(row["status"], "skipped: --no-vm", "{row}");
    }
    // Memory per instance: a table whose first column names the rows that ran.
    let mem = &v["tables"][0];
    assert!(mem["title"]
        .as_str()
        .unwrap()
        .starts_with("Memory per instance"));
    let mem_rows = mem["rows"].as_array().unwrap();
    assert!(
        mem_rows.iter().any(|r| r[0] == "host process (chroot)"),
        "{mem}"
    );
}
