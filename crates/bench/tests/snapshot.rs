//! `minnow-bench snapshot` end to end on this host's /dev/kvm with small counts: restore
//! to first answer beside cold boot, runc and minnow-runc; the PSS of 1 and 2 clones
//! against as many cold-booted VMs; the snapshot size and time of one guest size. Every
//! row has numbers or a reason, the tables are filled, the goal is decided. Needs root
//! (/dev/kvm, runc), gcc (the test guests) and busybox-static (the runc bundle).

mod common;

use std::process::{Command, Stdio};

#[test]
fn snapshot_bench_writes_every_row() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "the snapshot bench needs /dev/kvm"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let res = Command::new("timeout")
        .args(["-s", "KILL", "600", env!("CARGO_BIN_EXE_minnow-bench")])
        .args([
            "snapshot", "--runs", "2", "--clones", "1,2", "--sizes", "64",
        ])
        .args(["--size-runs", "1", "--mem-mib", "32"])
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
    let v = common::report_files(&out, "snapshot", &stdout);
    assert_eq!(v["bench"], "snapshot");
    assert_eq!(v["status"], "ok", "{v}");
    common::goals_decided(&v, &stdout);
    let goal = v["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "restore/runc")
        .unwrap_or_else(|| panic!("no restore/runc goal: {v}"));
    assert!(goal["met"].is_boolean(), "{goal}");

    let rows = v["rows"].as_array().unwrap();
    let want = [
        ("restore", 2, true),
        ("cold", 2, true),
        ("runc", 2, true),
        ("minnow-runc", 2, false),
        ("pss.clones.1", 1, true),
        ("pss.cold.1", 1, true),
        ("pss.clones.2", 1, true),
        ("pss.cold.2", 1, true),
        ("snap.64", 1, true),
    ];
    for (id, n, must_run) in want {
        let row = rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("row {id} missing: {v}"));
        let status = row["status"].as_str().unwrap();
        if status == "ok" {
            assert_eq!(row["stats"]["n"], n, "{row}");
            assert!(row["stats"]["p50"].as_f64().unwrap() > 0.0, "{row}");
        } else {
            assert!(!must_run, "{id} must run here: {row}");
            assert!(
                status.starts_with("unavailable: ") && status.len() > 20,
                "{id} needs numbers or a reason: {status}"
            );
        }
        assert!(
            stdout.contains(&format!("| {id} | ")),
            "{id} not in the table"
        );
    }
    assert_eq!(rows.len(), want.len(), "unexpected rows: {v}");
    let ratio = v["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "restore/cold")
        .unwrap_or_else(|| panic!("no restore/cold ratio: {v}"));
    assert!(ratio["ratio"].as_f64().is_some_and(|x| x > 0.0), "{ratio}");

    // The tables: clones against cold VMs per N, and one snapshot size.
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{v}");
    let pss = tables[0]["rows"].as_array().unwrap();
    assert_eq!(pss.len(), 2);
    for (r, n) in pss.iter().zip([1, 2]) {
        assert_eq!(r[0], n, "{r}");
        for c in 1..6 {
            assert!(r[c].as_f64().is_some_and(|x| x > 0.0), "{r}");
        }
    }
    let size = tables[1]["rows"].as_array().unwrap();
    assert_eq!(size.len(), 1);
    let r = &size[0];
    assert_eq!(r[0], 64, "{r}");
    let (du, apparent) = (r[2].as_f64().unwrap(), r[3].as_f64().unwrap());
    assert!(
        (apparent - 64.0).abs() < 1e-6,
        "apparent size {apparent} MiB"
    );
    assert!(
        du > 0.0 && du < apparent,
        "holes: du {du} MiB of {apparent}"
    );
    assert!(r[4].as_f64().is_some_and(|x| x > 0.0), "{r}");
}
