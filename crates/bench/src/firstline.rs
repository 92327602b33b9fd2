//! Spawn a command and timestamp the first output line matching each pattern: every
//! wall time of the host and lab benches comes from here, so minnow and QEMU are
//! measured the same way. t = 0 is just before the spawn; a line's time is when this
//! process read it from the one pipe that carries the child's stdout and stderr. Also
//! the exit status, the wall time to exit and the child's rusage from wait4 (user and
//! system CPU, including the children it waited for; max RSS).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use regex::Regex;
use serde::Serialize;

/// The first line that matched a pattern.
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    /// Spawn → the read that brought the line.
    pub ms: f64,
    pub line: String,
    /// The regex's capture groups (None: the group took no part in the match).
    pub groups: Vec<Option<String>>,
}

impl Match {
    /// Capture group `i` (from 1) as a number.
    pub fn num(&self, i: usize) -> Option<f64> {
        self.groups.get(i - 1)?.as_deref()?.parse().ok()
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub cmd: Vec<String>,
    /// Exit code; minus the signal number for a child killed by a signal.
    pub status: Option<i32>,
    pub timed_out: bool,
    /// Spawn → exit (reaped).
    pub wall_ms: Option<f64>,
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, Match>,
    pub user_ms: Option<f64>,
    pub sys_ms: Option<f64>,
    pub cpu_ms: Option<f64>,
    pub maxrss_kib: Option<i64>,
    /// The last 12 output lines, for reasons.
    pub tail: Vec<String>,
    /// Could not spawn.
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.error.is_none() && !self.timed_out && self.status == Some(0)
    }

    pub fn at(&self, name: &str) -> Option<f64> {
        self.matches.get(name).map(|m| m.ms)
    }

    /// Capture group 1 of pattern `name` as a number.
    pub fn group(&self, name: &str, i: usize) -> Option<f64> {
        self.matches.get(name)?.num(i)
    }

    /// The last `n` output lines joined with " | ".
    pub fn last(&self, n: usize) -> String {
        self.tail[self.tail.len().saturating_sub(n)..].join(" | ")
    }

    /// Why the run was not clean, with `what` in front.
    pub fn reason(&self, what: &str) -> String {
        if let Some(e) = &self.error {
            return format!("{what}: {e}");
        }
        let how = if self.timed_out {
            "timed out".to_string()
        } else {
            format!("exit status {}", self.status.unwrap_or(-1))
        };
        format!("{what}: {how}; last output: {}", self.last(3))
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn tv_ms(tv: libc::timeval) -> f64 {
    ((tv.tv_sec as f64 * 1e6 + tv.tv_usec as f64).round()) / 1e3
}

/// `wait4(pid, WNOHANG or 0)`: Some((wait status, rusage)) once the child was reaped.
fn wait4(pid: i32, nohang: bool) -> Option<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: wait4 only writes the status and rusage we pass; pid is our child.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == pid {
            return Some((status, ru));
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// Runs `cmd` (stdin /dev/null, in a session of its own) for at most `timeout`, then
/// kills its session. `log`: every output line is written there too.
pub fn run(
    cmd: &[String],
    patterns: &[(&str, &Regex)],
    timeout: Duration,
    log: Option<&Path>,
) -> Outcome {
    let mut res = Outcome {
        cmd: cmd.to_vec(),
        ..Outcome::default()
    };
    let Some(program) = cmd.first() else {
        res.error = Some("empty command".into());
        return res;
    };
    let mut logf = log.and_then(|p| std::fs::File::create(p).ok());
    let (rd, wr): (OwnedFd, OwnedFd) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            res.error = Some(format!("pipe: {e}"));
            return res;
        }
    };
    let t0 = Instant::now();
    let child = {
        let mut c = Command::new(program);
        c.args(&cmd[1..]).stdin(Stdio::null());
        match wr.try_clone() {
            Ok(w2) => {
                c.stdout(Stdio::from(w2)).stderr(Stdio::from(wr));
            }
            Err(e) => {
                res.error = Some(format!("dup: {e}"));
                return res;
            }
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        c.spawn()
        // `c` and with it our copies of the pipe's write end are dropped here, so EOF
        // comes when the child and everything it started closed theirs.
    };
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            res.error = Some(format!("cannot spawn {program}: {e}"));
            return res;
        }
    };
    let pid = child.id() as i32;
    let deadline = t0 + timeout;
    let mut buf: Vec<u8> = Vec::new();
    let mut tail: Vec<String> = Vec::new();
    let mut handle = |raw: &[u8], now: Instant, res: &mut Outcome| {
        if let Some(f) = logf.as_mut() {
            let _ = f.write_all(raw).and_then(|_| f.write_all(b"\n"));
        }
        let line = String::from_utf8_lossy(raw)
            .trim_end_matches('\r')
            .to_string();
        for (name, rx) in patterns {
            if res.matches.contains_key(*name) {
                continue;
            }
            if let Some(c) = rx.captures(&line) {
                let groups = c
                    .iter()
                    .skip(1)
                    .map(|g| g.map(|m| m.as_str().to_string()))
                    .collect();
                res.matches.insert(
                    name.to_string(),
                    Match {
                        ms: ms(now - t0),
                        line: line.clone(),
                        groups,
                    },
                );
            }
        }
        tail.push(line);
        if tail.len() > 12 {
            tail.remove(0);
        }
    };
    let mut chunk = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            res.timed_out = true;
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            break;
        }
        let wait = left.min(Duration::from_secs(1)).as_millis() as u16;
        let mut fds = [PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(wait)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let n = match nix::unistd::read(&rd, &mut chunk) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        let now = Instant::now();
        if n == 0 {
            break; // EOF: the child and everything holding the pipe closed it
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            handle(&line[..i], now, &mut res);
        }
    }
    if !buf.is_empty() {
        let rest = std::mem::take(&mut buf);
        handle(&rest, Instant::now(), &mut res);
    }
    // Reap with rusage. EOF normally means exit; still bound the wait.
    let reaped = loop {
        if let Some(r) = wait4(pid, true) {
            break Some(r);
        }
        if Instant::now() > deadline + Duration::from_secs(5) {
            res.timed_out = true;
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            break wait4(pid, false);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    drop(child); // reaped above; a Child does not wait on drop
    res.wall_ms = Some(ms(t0.elapsed()));
    if let Some((status, ru)) = reaped {
        res.status = Some(exit_code(status));
        let (u, s) = (tv_ms(ru.ru_utime), tv_ms(ru.ru_stime));
        res.user_ms = Some(u);
        res.sys_ms = Some(s);
        res.cpu_ms = Some(((u + s) * 1e3).round() / 1e3);
        res.maxrss_kib = Some(ru.ru_maxrss);
    }
    res.tail = tail;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        ["sh", "-c", script].map(String::from).to_vec()
    }

    #[test]
    fn times_the_first_matching_line_on_either_stream() {
        let up = Regex::new(r"UP (\d+)").unwrap();
        let never = Regex::new("NEVER").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let r = run(
            &sh("echo one; sleep 0.2; echo 'UP 7' >&2; echo 'UP 8'; exit 3"),
            &[("up", &up), ("never", &never)],
            Duration::from_secs(10),
            Some(&log),
        );
        assert_eq!(r.status, Some(3));
        assert!(!r.timed_out && r.error.is_none());
        let m = &r.matches["up"];
        assert_eq!(m.line, "UP 7");
        assert_eq!(m.num(1), Some(7.0));
        assert!(m.ms >= 190.0, "{}", m.ms);
        assert!(r.wall_ms.unwrap() >= m.ms);
        assert!(!r.matches.contains_key("never"));
        assert_eq!(r.tail, ["one", "UP 7", "UP 8"]);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\nUP 7\nUP 8\n");
        assert!(r.cpu_ms.is_some() && r.maxrss_kib.unwrap() > 0);
        assert!(r
            .reason("x")
            .starts_with("x: exit status 3; last output: one | UP 7"));
    }

    #[test]
    fn kills_the_session_at_the_deadline_and_reports_spawn_errors() {
        let t = Instant::now();
        // The grandchild holds the pipe too; the whole session is killed.
        let r = run(
            &sh("sleep 30 & sleep 30"),
            &[],
            Duration::from_millis(300),
            None,
        );
        assert!(r.timed_out);
        assert_eq!(r.status, Some(-9));
        assert!(t.elapsed() < Duration::from_secs(10));
        let r = run(
            &["/nonexistent/x".to_string()],
            &[],
            Duration::from_secs(1),
            None,
        );
        assert!(r.error.unwrap().starts_with("cannot spawn /nonexistent/x"));
    }
}
