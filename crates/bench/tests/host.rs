//! `minnow-bench host` end to end on this host's /dev/kvm with a couple of runs: every
//! row has numbers or a reason, the report files exist, every goal is decided; and the
//! `firstline` helper's command line; the floor VMM `minnow-floor` runs hello64.elf and
//! prints its line, with and without the irqchip and PIT. Needs root (/dev/kvm) and gcc (the test guests).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

const STARTUP_ROWS: [&str; 6] = ["1a", "1b", "1c", "1d", "1e", "1f"];
const FLOOR_ROWS: [&str; 4] = ["minnow", "floor", "floor-irqchip", "floor-irqchip-pit"];

fn samples(v: &serde_json::Value, id: &str) -> Vec<f64> {
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("row {id} missing: {v}"));
    row["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn host_bench_writes_every_row() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "the host bench needs /dev/kvm"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let res = Command::new("timeout")
        .args(["-s", "KILL", "300", env!("CARGO_BIN_EXE_minnow-bench")])
        .args(["host", "--runs", "2", "--mem-runs", "1"])
        .arg("--minnow")
        .arg(common::minnow())
        .arg("--out")
        .arg(&out)
        .current_dir(common::repo())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stdout}\n{stderr}");
    let v = common::report_files(&out, "host", &stdout);
    assert_eq!(v["bench"], "host");
    assert_eq!(v["status"], "ok", "{v}");
    common::goals_decided(&v, &stdout);

    let rows = v["rows"].as_array().unwrap();
    let mut ids: Vec<String> = STARTUP_ROWS.iter().map(|s| s.to_string()).collect();
    // minnow beside its floor VMM, with and without the irqchip and the PIT.
    for vmm in FLOOR_ROWS {
        ids.push(format!("1g.{vmm}"));
        ids.push(format!("1h.{vmm}"));
    }
    for mib in [128, 1024] {
        for m in ["rss", "pss", "total", "guest"] {
            ids.push(format!("2.{mib}.{m}"));
        }
    }
    for id in &ids {
        let row = rows
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap_or_else(|| panic!("row {id} missing"));
        let want = if id.starts_with('1') { 2 } else { 1 };
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["stats"]["n"], want, "{row}");
        assert!(row["stats"]["p50"].as_f64().unwrap() > 0.0, "{row}");
        let line = format!("| {id} | ");
        assert!(stdout.contains(&line), "{id} not in the table");
    }
    // 1j (SIGTERM under a flooding guest) has its own number of runs.
    let stall = rows
        .iter()
        .find(|r| r["id"] == "1j")
        .unwrap_or_else(|| panic!("row 1j missing"));
    assert_eq!(stall["status"], "ok", "{stall}");
    assert!(stall["stats"]["max"].as_f64().unwrap() > 0.0, "{stall}");
    ids.push("1j".into());
    // Every row of the report is one of these (a variant's rows carry `@KEY`).
    for r in rows {
        let id = r["id"].as_str().unwrap();
        let base = id.split('@').next().unwrap();
        assert!(ids.iter().any(|i| i == base), "unexpected row {id}");
        let status = r["status"].as_str().unwrap();
        assert!(
            status == "ok" || status.len() > "unavailable: ".len() + 5,
            "{id} needs numbers or a reason: {status}"
        );
    }
    // Per run, VMM start → boot-timer write comes before the whole run's exit, and the
    // memory rows add up.
    for (boot, wall) in samples(&v, "1d").iter().zip(samples(&v, "1f")) {
        assert!(*boot < wall, "1d {boot} ms >= 1f {wall} ms");
    }
    // Per run, the guest's line comes before the exit, for minnow and every floor; every
    // ratio minnow / floor was computed; 1h.minnow is 1f.
    for vmm in FLOOR_ROWS {
        let (line, exit) = (
            samples(&v, &format!("1g.{vmm}")),
            samples(&v, &format!("1h.{vmm}")),
        );
        assert_eq!(line.len(), 2, "1g.{vmm}");
        for (l, e) in line.iter().zip(&exit) {
            assert!(l < e, "1g.{vmm} {l} ms >= 1h.{vmm} {e} ms");
        }
    }
    assert_eq!(samples(&v, "1h.minnow"), samples(&v, "1f"));
    let cmps = v["comparisons"].as_array().unwrap();
    for vmm in &FLOOR_ROWS[1..] {
        for row in ["1g", "1h"] {
            let id = format!("{row}.minnow/{vmm}");
            let c = cmps
                .iter()
                .find(|c| c["id"] == id.as_str())
                .unwrap_or_else(|| panic!("comparison {id} missing"));
            assert!(c["ratio"].as_f64().unwrap() > 0.0, "{c}");
        }
    }
    for mib in [128, 1024] {
        let total = samples(&v, &format!("2.{mib}.total"))[0];
        let guest = samples(&v, &format!("2.{mib}.guest"))[0];
        let rss = samples(&v, &format!("2.{mib}.rss"))[0];
        assert!(guest < mib as f64 && guest > 0.0, "guest RSS {guest}");
        assert!(
            (total - guest - rss).abs() < 1e-6,
            "{total} - {guest} != {rss}"
        );
    }
    let csv = std::fs::read_to_string(out.join("host.csv")).unwrap();
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("host,\"1b\","))
            .count(),
        2,
        "{csv}"
    );
}

#[test]
fn firstline_prints_the_first_matching_lines_as_json() {
    let res = Command::new(env!("CARGO_BIN_EXE_minnow-bench"))
        .args(["firstline", "--timeout", "10"])
        .args(["--pattern", r"up=UP (\d+)", "--pattern", "none=NEVER"])
        .args([
            "--",
            "sh",
            "-c",
            "echo a; echo 'UP 5' >&2; echo 'UP 6'; exit 4",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(res.status.success());
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["status"], 4);
    assert_eq!(v["match"]["up"]["line"], "UP 5");
    assert_eq!(v["match"]["up"]["groups"][0], "5");
    assert!(v["match"].get("none").is_none());
    assert!(v["wall_ms"].as_f64().unwrap() >= v["match"]["up"]["ms"].as_f64().unwrap());
    let bad = Command::new(env!("CARGO_BIN_EXE_minnow-bench"))
        .args(["firstline", "--pattern", "nonsense", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(
        err.trim(),
        "minnow-bench: error: bad --pattern nonsense; write it as NAME=REGEX"
    );
}

/// `minnow-floor ARGS GUEST` with a time limit.
fn floor(args: &[&str], guest: &Path) -> Output {
    Command::new("timeout")
        .args(["-s", "KILL", "30", env!("CARGO_BIN_EXE_minnow-floor")])
        .args(args)
        .arg(guest)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn floor_vmm_runs_hello64_and_prints_its_line() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "the floor VMM needs /dev/kvm"
    );
    let tmp = tempfile::tempdir().unwrap();
    let guests = tmp.path().join("guests");
    let built = Command::new("sh")
        .arg("tests/guests/build.sh")
        .arg(&guests)
        .current_dir(common::repo())
        .status()
        .unwrap();
    assert!(built.success(), "tests/guests/build.sh failed");
    let hello = guests.join("hello64.elf");
    for args in [&[][..], &["--irqchip"], &["--irqchip", "--pit"]] {
        let out = floor(args, &hello);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        assert_eq!(
            stdout, "minnow-guest: hello from 64-bit\n",
            "{args:?}: {stderr}"
        );
    }
    // Another guest prints another line: the output is the guest's, not the floor's.
    let out = floor(&[], &guests.join("exit42.elf"));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hello from 64-bit"),
        "{out:?}"
    );

    // The PIT needs the irqchip; a file that is not an ELF is refused; both exit 1.
    let out = floor(&["--pit"], &hello);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pit needs --irqchip"),
        "{out:?}"
    );
    let junk = tmp.path().join("junk.elf");
    std::fs::write(&junk, b"not an ELF").unwrap();
    let out = floor(&[], &junk);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("minnow-floor: "),
        "{out:?}"
    );
}
