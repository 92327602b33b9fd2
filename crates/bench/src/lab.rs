//! Running a benchmark inside the nested-KVM lab (`lab/run.sh`) from the host: the lab
//! runs `minnow-bench BENCH --inner ...` from the host's root (over 9p), which writes its
//! report to the shared `--out`; the host side keeps the lab's output in a log and marks
//! the report failed when the lab run itself broke. The lab is shared: callers take
//! `flock /tmp/minnow-lab.lock` around the whole bench (the bench does not, so that a
//! locked caller cannot deadlock it).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::report::{Facts, Report, Row, Status};
use crate::util::{self, tail};

/// How a lab run ended.
pub struct LabRun {
    pub code: i32,
    /// The last non-empty line the lab wrote on stderr.
    pub last_err: String,
}

/// Whether the lab can be used here: lab/setup.sh (quiet when all is in place).
pub fn available() -> std::result::Result<(), String> {
    if !Path::new("lab/setup.sh").is_file() {
        return Err(
            "lab/setup.sh not found: run from the minnow repository's top directory".into(),
        );
    }
    let out = Command::new("timeout")
        .args(["900", "bash", "lab/setup.sh"])
        .env("MINNOW_SETUP_QUIET", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run lab/setup.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "lab/setup.sh failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 1)
        ))
    }
}

/// Runs `cmd` inside the lab with a time limit of `limit_s`; its stdout and stderr go to
/// our stderr and to `log`.
pub fn run(limit_s: u64, mem_mib: Option<u64>, cmd: &[OsString], log: &Path) -> Result<LabRun> {
    util::require_repo("lab/run.sh")?;
    let logf = Arc::new(Mutex::new(File::create(log).map_err(Error::write(log))?));
    let mut c = Command::new("timeout");
    c.args([
        "-k",
        "10",
        &(limit_s + 60).to_string(),
        "bash",
        "lab/run.sh",
    ])
    .args(["--timeout", &limit_s.to_string()]);
    if let Some(m) = mem_mib {
        c.args(["--mem", &m.to_string()]);
    }
    c.arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(Error::spawn("lab/run.sh"))?;
    let last_err = Arc::new(Mutex::new(String::new()));
    let mut threads = Vec::new();
    let pipes: [(Option<Box<dyn Read + Send>>, bool); 2] = [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            false,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            true,
        ),
    ];
    for (pipe, is_err) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let (logf, last_err) = (logf.clone(), last_err.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut pending = String::new();
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut f) = logf.lock() {
                    let _ = f.write_all(&buf[..n]);
                }
                let _ = std::io::stderr().write_all(&buf[..n]);
                if is_err {
                    pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                    let t = tail(&pending, 1);
                    if !t.is_empty() {
                        if let Ok(mut l) = last_err.lock() {
                            *l = t;
                        }
                    }
                    if pending.len() > 8192 {
                        pending = pending.split_off(pending.len() - 4096);
                    }
                }
            }
        }));
    }
    let status = child.wait().map_err(Error::spawn("lab/run.sh"))?;
    for t in threads {
        let _ = t.join();
    }
    let last_err = last_err.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(LabRun {
        code: status.code().unwrap_or(-1),
        last_err,
    })
}

/// A report for a lab bench that did not run at all (no lab here, or --skip-lab).
pub fn skipped(bench: &str, title: &str, row: &str, why: Status) -> Report {
    let mut r = Report::new(bench, title, Facts::here(None));
    r.rows
        .push(Row::new(row, "every row of this bench", "").with_status(why));
    r
}

/// After the lab run: the report the inner bench wrote to `out` (or a failed one when
/// it wrote none), failed too when the lab run did not end with 0.
pub fn collect(bench: &str, title: &str, out: &Path, lab: &LabRun, log: &Path) -> Report {
    let path: PathBuf = out.join(format!("{bench}.json"));
    let mut r = match Report::load(&path) {
        Ok(r) => r,
        Err(e) => {
            let mut r = Report::new(bench, title, Facts::here(None));
            r.rows.push(
                Row::new(format!("{bench}.lab"), "the lab run", "")
                    .with_status(Status::Failed(format!("no report from the lab: {e}"))),
            );
            r
        }
    };
    if lab.code != 0 {
        r.fail(format!(
            "lab/run.sh exited {}: {} (log {})",
            lab.code,
            lab.last_err,
            log.display()
        ));
    }
    r.settle();
    r
}
