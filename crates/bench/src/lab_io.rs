//! `minnow-bench lab-io`: inside the nested-KVM lab, with minnow's minimal kernel and a
//! busybox rootfs, K interleaved rounds of (1) boot to init, minnow against QEMU
//! `-M microvm`; (2) 64 MiB of sequential 4 KiB `dd` on a second disk against the same
//! `dd` on the image file from the lab host; (3) 64 MiB of TCP each way, guest <-> host
//! over a TAP against two network namespaces over veth. Everything the VMs touch sits on
//! the lab's /dev/shm, so 9p is in no I/O path.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::firstline;
use crate::host::BOOT_RX;
use crate::lab;
use crate::report::{Facts, Report, Row, Status};
use crate::rows::run_once;
use crate::util::{self, sh, WorkDir};

const MIB64: u64 = 64 << 20;
const UP_RX: &str = r"(^|\s)MINNOW-UP\s*$";
pub const TITLE: &str =
    "Lab I/O: minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput";
const HOST_IP: &str = "169.254.110.1";
const GUEST_IP: &str = "169.254.110.2";
const VETH_A: &str = "169.254.111.1";
const VETH_B: &str = "169.254.111.2";

/// The guest side of (2), /bench/disk.sh on the rootfs.
const DISK_SH: &str = r#"#!/bin/sh
# 64 MiB sequential read then write of /dev/vdb, 4 KiB blocks, O_DIRECT when dd can.
# busybox dd prints no timing line: time it with /proc/uptime (10 ms resolution).
up() { cut -d' ' -f1 /proc/uptime; }
mode=direct
dd if=/dev/vdb of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || mode=cached
echo "DISK-MODE $mode"
if [ $mode = direct ]; then RF=iflag=direct WF=oflag=direct; else RF= WF=; sync; echo 3 >/proc/sys/vm/drop_caches; fi
a=$(up); dd if=/dev/vdb of=/dev/null bs=4k $RF 2>/dev/null; rc=$?; b=$(up)
echo "DISK-READ rc=$rc start=$a end=$b"
[ $mode = direct ] || echo 3 >/proc/sys/vm/drop_caches
a=$(up); dd if=/dev/zero of=/dev/vdb bs=4k count=16384 $WF conv=fsync 2>/dev/null; rc=$?; b=$(up)
echo "DISK-WRITE rc=$rc start=$a end=$b"
"#;

/// The guest side of (3), /bench/tcp.sh HOST_IP.
const TCP_SH: &str = r#"#!/bin/sh
# 64 MiB to the host (port 5001), then 64 MiB from it (port 5002); the host times both.
dd if=/dev/zero of=/tmp/out bs=65536 count=1024 2>/dev/null
nc -w 10 "$1" 5001 </tmp/out || { echo "TCP-FAIL send"; exit 11; }
rm -f /tmp/out
nc -w 10 "$1" 5002 >/dev/null || { echo "TCP-FAIL recv"; exit 12; }
echo TCP-DONE
"#;

#[derive(Args, Debug, Clone)]
pub struct LabIoArgs {
    /// Interleaved rounds of each part.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub rounds: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Output directory: lab-io.md, .json, .csv, .svg and lab.log.
    #[arg(long, default_value = "bench/results/lab-io")]
    pub out: PathBuf,
    /// Time limit (s) of one boot (the disk and TCP runs get more).
    #[arg(long, default_value_t = 180)]
    pub boot_timeout: u64,
    /// Lab time limit (s) [default: 2400, or more for more than 3 rounds].
    #[arg(long)]
    pub lab_timeout: Option<u64>,
    /// Internal: this is the part that runs inside the lab.
    #[arg(long, hide = true)]
    pub inner: bool,
}

/// Internal: one TCP connection, timed on this side (run inside a network namespace).
#[derive(Args, Debug, Clone)]
pub struct TcpServerArgs {
    #[arg(long)]
    pub bind: String,
    #[arg(long)]
    pub port: u16,
    /// recv: accept → last byte received; send: accept → every byte ACKed (SIOCOUTQ 0).
    #[arg(long, value_parser = ["recv", "send"])]
    pub mode: String,
    #[arg(long)]
    pub bytes: u64,
    /// Created once listening.
    #[arg(long)]
    pub ready: PathBuf,
    /// The result (JSON).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TcpResult {
    mode: String,
    bytes_expected: u64,
    bytes: u64,
    seconds: Option<f64>,
    mb_s: Option<f64>,
    error: Option<String>,
}

/// Bytes in the socket's send queue not yet ACKed by the peer.
fn outq(fd: i32) -> std::io::Result<i32> {
    let mut q: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the pointer we pass; fd is our open socket.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut q) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(q)
    }
}

fn serve(a: &TcpServerArgs, res: &mut TcpResult) -> std::io::Result<()> {
    let l = TcpListener::bind((a.bind.as_str(), a.port))?;
    fs::write(&a.ready, b"")?;
    let timeout = Duration::from_secs(a.timeout);
    // Wait for the peer with poll, then accept at once: the clock starts at accept.
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let deadline = Instant::now() + timeout;
    loop {
        match poll(&mut fds, PollTimeout::from(ms.min(10_000))) {
            Ok(n) if n > 0 => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) if Instant::now() < deadline => continue,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (mut c, _) = l.accept()?;
    let t0 = Instant::now();
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    let t1;
    if a.mode == "recv" {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        while n < a.bytes {
            let k = c.read(&mut buf)?;
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        t1 = Instant::now();
        res.bytes = n;
    } else {
        let buf = vec![0u8; 1 << 20];
        for _ in 0..a.bytes / buf.len() as u64 {
            c.write_all(&buf)?;
        }
        c.shutdown(Shutdown::Write)?; // the peer's nc ends on our FIN
        let deadline = Instant::now() + timeout;
        let mut q = outq(c.as_raw_fd())?;
        while q != 0 && Instant::now() <= deadline {
            std::thread::sleep(Duration::from_millis(1));
            q = outq(c.as_raw_fd())?;
        }
        t1 = Instant::now();
        res.bytes = a.bytes.saturating_sub(q.max(0) as u64);
    }
    if res.bytes == a.bytes {
        let secs = (t1 - t0).as_secs_f64();
        res.seconds = Some(secs);
        res.mb_s = Some(a.bytes as f64 / secs / 1e6);
    } else {
        res.error = Some(format!("{} of {} bytes", res.bytes, a.bytes));
    }
    Ok(())
}

pub fn tcp_server(a: &TcpServerArgs) -> Result<()> {
    let mut res = TcpResult {
        mode: a.mode.clone(),
        bytes_expected: a.bytes,
        ..TcpResult::default()
    };
    if let Err(e) = serve(a, &mut res) {
        res.error = Some(format!("{e}"));
    }
    let text = serde_json::to_string(&res).unwrap_or_default();
    fs::write(&a.out, text).map_err(Error::write(&a.out))
}

/// On the host: run the whole bench inside one lab run.
pub fn run(a: &LabIoArgs) -> Result<Report> {
    if a.inner {
        return inner(a);
    }
    util::require_repo("lab/run.sh")?;
    fs::create_dir_all(&a.out).map_err(Error::create_dir(&a.out))?;
    if let Err(why) = lab::available() {
        return Ok(lab::skipped(
            "lab-io",
            TITLE,
            "5",
            Status::Skipped(format!("lab not available: {why}")),
        ));
    }
    let work = WorkDir::new(Path::new("/tmp"), "minnow-bench-lab-io")?;
    let src = util::minnow_path(a.minnow.as_deref())?;
    let (minnow, bench) = util::private_binaries(&work.path, &src)?;
    let out = fs::canonicalize(&a.out).map_err(Error::create_dir(&a.out))?;
    let limit = a
        .lab_timeout
        .unwrap_or_else(|| 2400.max(600 + a.rounds * 600));
    eprintln!(
        "bench: 5. lab I/O, {} rounds (limit {limit} s) ...",
        a.rounds
    );
    let _ = fs::remove_file(out.join("lab-io.json"));
    let cmd: Vec<OsString> = vec![
        bench.into(),
        "lab-io".into(),
        "--inner".into(),
        "--rounds".into(),
        a.rounds.to_string().into(),
        "--boot-timeout".into(),
        a.boot_timeout.to_string().into(),
        "--minnow".into(),
        minnow.into(),
        "--out".into(),
        out.clone().into(),
    ];
    let log = out.join("lab.log");
    let ran = lab::run(limit, None, &cmd, &log)?;
    Ok(lab::collect("lab-io", TITLE, &out, &ran, &log))
}

/// The samples and failures of one row.
#[derive(Default)]
struct Series {
    samples: Vec<f64>,
    failures: Vec<String>,
}

impl Series {
    fn push(&mut self, v: std::result::Result<f64, String>) {
        match v {
            Ok(x) => self.samples.push(x),
            Err(e) => self.failures.push(e),
        }
    }
}

/// The lab's two network namespaces; removed (with what runs in them) on drop.
struct Netns {
    names: [String; 2],
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(p),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .output();
        }
    }
}

struct Ctx {
    minnow: String,
    kernel: String,
    rootfs: PathBuf,
    run: PathBuf,
    rounds: usize,
    boot_timeout: u64,
    bench: PathBuf,
}

impl Ctx {
    fn log(&self, name: &str) -> PathBuf {
        self.run.join(name)
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn copy(from: &Path, to: &Path) -> std::result::Result<(), String> {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))
}

// ------------------------------------------------------------------ 1. boot

const BOOT_VARIANTS: [&str; 2] = ["minnow", "qemu-microvm"];

fn boot_argv(c: &Ctx, v: &str, disk: &Path) -> Vec<String> {
    let d = disk.display().to_string();
    if v == "minnow" {
        strings(&[
            &c.minnow,
            "run",
            "--kernel",
            &c.kernel,
            "--disk",
            &d,
            "--mem-mib",
            "256",
            "--vcpus",
            "1",
            "--cmdline",
            "quiet -- /bin/echo MINNOW-UP",
        ])
    } else {
        strings(&[
            "qemu-system-x86_64",
            "-enable-kvm",
            "-cpu",
            "host",
            "-M",
            "microvm,acpi=off,auto-kernel-cmdline=off",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
            "-kernel",
            &c.kernel,
            "-append",
            "console=ttyS0 reboot=t panic=1 quiet root=/dev/vda rw \
             virtio_mmio.device=512@0xfeb00e00:12 -- /bin/echo MINNOW-UP",
            "-drive",
            &format!("file={d},format=raw,if=none,id=d0"),
            "-device",
            "virtio-blk-device,drive=d0",
        ])
    }
}

/// up, exit, boot-timer per variant.
fn bench_boot(c: &Ctx) -> Result<Vec<(String, [Series; 3])>> {
    let up = Regex::new(UP_RX).map_err(|e| Error::missing(e.to_string(), "fix UP_RX"))?;
    let boot = Regex::new(BOOT_RX).map_err(|e| Error::missing(e.to_string(), "fix BOOT_RX"))?;
    let mut out: Vec<(String, [Series; 3])> = BOOT_VARIANTS
        .iter()
        .map(|v| (v.to_string(), Default::default()))
        .collect();
    for r in 0..c.rounds {
        let mut order: Vec<usize> = vec![0, 1];
        if r % 2 == 1 {
            order.reverse();
        }
        for vi in order {
            let v = BOOT_VARIANTS[vi];
            eprintln!("lab-io: 1. boot round {}/{}: {v}", r + 1, c.rounds);
            let disk = c.run.join(format!("boot-{v}.ext4"));
            let what = format!("{v} round {}", r + 1);
            let s = &mut out[vi].1;
            if let Err(e) = copy(&c.rootfs, &disk) {
                for x in s.iter_mut() {
                    x.failures.push(format!("{what}: {e}"));
                }
                continue;
            }
            let res = firstline::run(
                &boot_argv(c, v, &disk),
                &[("up", &up), ("boot", &boot)],
                Duration::from_secs(c.boot_timeout),
                Some(&c.log(&format!("boot-{v}-{}.log", r + 1))),
            );
            let _ = fs::remove_file(&disk);
            let problem = if !res.ok() {
                Some(res.reason(&what))
            } else if res.at("up").is_none() {
                Some(format!(
                    "{what}: exit 0 but no MINNOW-UP line; last: {}",
                    res.last(3)
                ))
            } else {
                None
            };
            match problem {
                Some(p) => {
                    for x in s.iter_mut() {
                        x.failures.push(p.clone());
                    }
                }
                None => {
                    s[0].push(res.at("up").ok_or_else(|| what.clone()));
                    s[1].push(res.wall_ms.ok_or_else(|| what.clone()));
                    if v == "minnow" {
                        s[2].push(
                            res.group("boot", 1)
                                .ok_or_else(|| format!("{what}: no `guest boot time` line")),
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ 2. disk

/// A guest line `TAG rc=0 start=UPTIME end=UPTIME` → MB/s.
fn parse_guest_dd(text: &str, tag: &str) -> std::result::Result<f64, String> {
    let rx = Regex::new(&format!(r"{tag} rc=(\d+) start=([0-9.]+) end=([0-9.]+)"))
        .map_err(|e| e.to_string())?;
    let m = rx.captures(text).ok_or(format!("no {tag} line"))?;
    if &m[1] != "0" {
        return Err(format!("{tag}: dd exit {}", &m[1]));
    }
    let num = |i: usize| m[i].parse::<f64>().map_err(|e| e.to_string());
    let secs = num(3)? - num(2)?;
    if secs <= 0.0 {
        return Err(format!("{tag}: too fast for /proc/uptime's 10 ms"));
    }
    Ok(MIB64 as f64 / secs / 1e6)
}

/// busybox dd on the image file, O_DIRECT when the file system allows it; timed around
/// the dd process. (MB/s, whether O_DIRECT worked).
fn host_dd(kind: &str, img: &Path) -> std::result::Result<(f64, bool), String> {
    let i = img.display().to_string();
    let base = if kind == "read" {
        strings(&["busybox", "dd", &format!("if={i}"), "of=/dev/null", "bs=4k"])
    } else {
        strings(&[
            "busybox",
            "dd",
            "if=/dev/zero",
            &format!("of={i}"),
            "bs=4k",
            "count=16384",
            "conv=notrunc,fsync",
        ])
    };
    let flag = if kind == "read" {
        "iflag=direct"
    } else {
        "oflag=direct"
    };
    let mut with = base.clone();
    with.push(flag.into());
    let mut last = String::new();
    for (args, direct) in [(with, true), (base, false)] {
        let r = run_once(&args, Duration::from_secs(600));
        if r.ok {
            return Ok((MIB64 as f64 / (r.wall_ms / 1000.0) / 1e6, direct));
        }
        last = r.why;
    }
    Err(last)
}

struct Disk {
    /// read guest, read host, write guest, write host.
    series: [Series; 4],
    guest_mode: Option<String>,
    host_direct: Vec<bool>,
}

fn bench_disk(c: &Ctx) -> Result<Disk> {
    let master = c.run.join("data-master.img");
    {
        let mut src = fs::File::open("/dev/urandom").map_err(Error::read("/dev/urandom", ""))?;
        let mut dst = fs::File::create(&master).map_err(Error::write(&master))?;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..64 {
            src.read_exact(&mut buf)
                .map_err(Error::read("/dev/urandom", ""))?;
            dst.write_all(&buf).map_err(Error::write(&master))?;
        }
    }
    let img = c.run.join("data.img");
    let root = c.run.join("disk-root.ext4");
    let mut d = Disk {
        series: Default::default(),
        guest_mode: None,
        host_direct: Vec::new(),
    };
    let mode_rx = Regex::new(r"DISK-MODE (\S+)").map_err(|e| Error::missing(e.to_string(), ""))?;
    for r in 0..c.rounds {
        let mut order = ["guest", "host"];
        if r % 2 == 1 {
            order.reverse();
        }
        for side in order {
            eprintln!("lab-io: 2. disk round {}/{}: {side}", r + 1, c.rounds);
            if side == "host" {
                for (k, kind) in ["read", "write"].iter().enumerate() {
                    let got = copy(&master, &img).and_then(|_| host_dd(kind, &img));
                    let s = &mut d.series[k * 2 + 1];
                    match got {
                        Ok((mb_s, direct)) => {
                            s.samples.push(mb_s);
                            d.host_direct.push(direct);
                        }
                        Err(e) => s.failures.push(format!("host {kind} round {}: {e}", r + 1)),
                    }
                }
                continue;
            }
            let log = c.log(&format!("disk-{}.log", r + 1));
            let failed_before = d.series[0].failures.len() + d.series[2].failures.len();
            let prep = copy(&master, &img).and_then(|_| copy(&c.rootfs, &root));
            let res = prep.map(|_| {
                firstline::run(
                    &strings(&[
                        &c.minnow,
                        "run",
                        "--kernel",
                        &c.kernel,
                        "--disk",
                        &root.display().to_string(),
                        "--disk",
                        &img.display().to_string(),
                        "--mem-mib",
                        "256",
                        "--vcpus",
                        "1",
                        "--cmdline",
                        "quiet -- /bin/sh /bench/disk.sh",
                    ]),
                    &[],
                    Duration::from_secs(c.boot_timeout + 1500),
                    Some(&log),
                )
            });
            let text = fs::read_to_string(&log)
                .unwrap_or_default()
                .replace('\r', "");
            if let Some(m) = mode_rx.captures(&text) {
                d.guest_mode = Some(m[1].to_string());
            }
            for (k, tag) in ["DISK-READ", "DISK-WRITE"].iter().enumerate() {
                let got = match &res {
                    Err(e) => Err(e.clone()),
                    Ok(o) => parse_guest_dd(&text, tag).map_err(|e| {
                        format!(
                            "{e} (minnow exit {}{}); last: {}",
                            o.status.unwrap_or(-1),
                            if o.timed_out { ", timed out" } else { "" },
                            o.last(3)
                        )
                    }),
                };
                d.series[k * 2].push(got.map_err(|e| format!("guest round {}: {e}", r + 1)));
            }
            if let Ok(o) = &res {
                let before = failed_before;
                let now = d.series[0].failures.len() + d.series[2].failures.len();
                if !o.ok() && now == before {
                    d.series[0]
                        .failures
                        .push(o.reason(&format!("guest round {}: minnow", r + 1)));
                }
            }
        }
    }
    for p in [&img, &root, &master] {
        let _ = fs::remove_file(p);
    }
    Ok(d)
}

// ------------------------------------------------------------------ 3. TCP

fn start_server(
    c: &Ctx,
    ns: &str,
    ip: &str,
    port: u16,
    mode: &str,
    tag: &str,
) -> std::result::Result<(Child, PathBuf), String> {
    let ready = c.run.join(format!("{tag}.ready"));
    let out = c.run.join(format!("{tag}.json"));
    let _ = fs::remove_file(&ready);
    let _ = fs::remove_file(&out);
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(&c.bench)
        .args(["tcp-server", "--bind", ip, "--port", &port.to_string()])
        .args(["--mode", mode, "--bytes", &MIB64.to_string()])
        .arg("--ready")
        .arg(&ready)
        .arg("--out")
        .arg(&out)
        .args(["--timeout", &(c.boot_timeout + 300).to_string()])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the tcp server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        let st = child.try_wait().ok().flatten();
        if st.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "tcp server {tag} did not start (status {})",
                st.map_or("running".into(), |s| s.to_string())
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, out))
}

fn finish_server(mut child: Child, out: &Path, wait: Duration) -> TcpResult {
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return TcpResult {
                error: Some("server did not finish".into()),
                ..TcpResult::default()
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match fs::read_to_string(out)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<TcpResult>(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => TcpResult {
            error: Some(format!("no result: {e}")),
            ..TcpResult::default()
        },
    }
}

fn ipns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// g2h tap, g2h veth, h2g tap, h2g veth.
fn bench_tcp(c: &Ctx, prefix: &str) -> [Series; 4] {
    let mut s: [Series; 4] = Default::default();
    let nsa = format!("{prefix}-a");
    let nsb = format!("{prefix}-b");
    let ns = Netns {
        names: [nsa.clone(), nsb.clone()],
    };
    let setup = || -> Result<()> {
        for n in &ns.names {
            sh(Command::new("ip").args(["netns", "add", n]), "ip netns add")?;
            sh(&mut ipns(n, &["ip", "link", "set", "lo", "up"]), "lo up")?;
        }
        sh(
            &mut ipns(
                &nsa,
                &[
                    &c.minnow,
                    "net",
                    "setup",
                    "miotap0",
                    "--host-ip",
                    &format!("{HOST_IP}/30"),
                ],
            ),
            "minnow net setup",
        )?;
        sh(
            Command::new("ip").args([
                "link", "add", "miova", "netns", &nsa, "type", "veth", "peer", "name", "miovb",
                "netns", &nsb,
            ]),
            "ip link add veth",
        )?;
        for (n, dev, ip) in [(&nsa, "miova", VETH_A), (&nsb, "miovb", VETH_B)] {
            sh(
                &mut ipns(n, &["ip", "addr", "add", &format!("{ip}/30"), "dev", dev]),
                "ip addr add",
            )?;
            sh(
                &mut ipns(n, &["ip", "link", "set", dev, "up"]),
                "ip link set up",
            )?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        for x in s.iter_mut() {
            x.failures.push(format!("set-up failed: {e}"));
        }
        return s;
    }
    let data = c.run.join("tcp-data");
    if let Err(e) = fs::write(&data, vec![0u8; MIB64 as usize]) {
        for x in s.iter_mut() {
            x.failures
                .push(format!("cannot write {}: {e}", data.display()));
        }
        return s;
    }
    let root = c.run.join("tcp-root.ext4");
    let done = match Regex::new("TCP-DONE") {
        Ok(rx) => rx,
        Err(e) => {
            s[0].failures.push(e.to_string());
            return s;
        }
    };
    let done = &done;
    for r in 0..c.rounds {
        let mut order = ["tap", "veth"];
        if r % 2 == 1 {
            order.reverse();
        }
        for path in order {
            eprintln!("lab-io: 3. tcp round {}/{}: {path}", r + 1, c.rounds);
            let pi = usize::from(path == "veth");
            let ip = if path == "tap" { HOST_IP } else { VETH_A };
            let what = format!("{path} round {}", r + 1);
            let servers =
                start_server(c, &nsa, ip, 5001, "recv", &format!("{path}-g2h")).and_then(|g| {
                    start_server(c, &nsa, ip, 5002, "send", &format!("{path}-h2g"))
                        .map(|h| (g, h))
                        .map_err(|e| e.to_string())
                });
            let ((sg, og), (shh, oh)) = match servers {
                Ok(x) => x,
                Err(e) => {
                    s[pi].failures.push(format!("{what}: {e}"));
                    s[2 + pi].failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let client: std::result::Result<(), String> = if path == "tap" {
                copy(&c.rootfs, &root).and_then(|_| {
                    let tcp = format!("quiet -- /bin/sh /bench/tcp.sh {HOST_IP}");
                    let net = format!("tap=miotap0,guest-ip={GUEST_IP}/30,host-ip={HOST_IP}/30");
                    let argv = strings(&[
                        "ip",
                        "netns",
                        "exec",
                        &nsa,
                        &c.minnow,
                        "run",
                        "--kernel",
                        &c.kernel,
                        "--disk",
                        &root.display().to_string(),
                        "--mem-mib",
                        "512",
                        "--vcpus",
                        "1",
                        "--net",
                        &net,
                        "--cmdline",
                        &tcp,
                    ]);
                    let res = firstline::run(
                        &argv,
                        &[("done", done)],
                        Duration::from_secs(c.boot_timeout + 600),
                        Some(&c.log(&format!("tcp-{}.log", r + 1))),
                    );
                    if res.status == Some(0) && res.at("done").is_some() {
                        Ok(())
                    } else {
                        Err(format!(
                            "minnow exit {}; last: {}",
                            res.status.unwrap_or(-1),
                            res.last(3)
                        ))
                    }
                })
            } else {
                let mut errs = Vec::new();
                let send = format!("busybox nc -w 10 {VETH_A} 5001 <{}", data.display());
                let recv = format!("busybox nc -w 10 {VETH_A} 5002 >/dev/null");
                for (cmd, which) in [(send, "send"), (recv, "recv")] {
                    let argv = strings(&["ip", "netns", "exec", &nsb, "sh", "-c", &cmd]);
                    let o = run_once(&argv, Duration::from_secs(600));
                    if !o.ok {
                        errs.push(format!("{which} nc: {}", o.why));
                    }
                }
                if errs.is_empty() {
                    Ok(())
                } else {
                    Err(errs.join("; "))
                }
            };
            let wait = Duration::from_secs(if client.is_ok() { 30 } else { 5 });
            for (k, (child, out)) in [(sg, og), (shh, oh)].into_iter().enumerate() {
                let rr = finish_server(child, &out, wait);
                let dir = if k == 0 { "g2h" } else { "h2g" };
                let got = match (rr.mb_s, &rr.error) {
                    (Some(v), None) => Ok(v),
                    (_, e) => Err(format!(
                        "{path} {dir} round {}: {}{}",
                        r + 1,
                        e.clone().unwrap_or_else(|| "no rate".into()),
                        client
                            .as_ref()
                            .err()
                            .map_or(String::new(), |c| format!(" (client: {c})"))
                    )),
                };
                s[k * 2 + pi].push(got);
            }
            if let Err(e) = &client {
                if s[pi].failures.is_empty() && s[2 + pi].failures.is_empty() {
                    s[pi].failures.push(format!("{what}: {e}"));
                }
            }
        }
    }
    for p in [&data, &root] {
        let _ = fs::remove_file(p);
    }
    drop(ns);
    s
}

// ------------------------------------------------------------------ inner

fn check_prereqs(kdir: &Path) -> Result<()> {
    if !Path::new("/dev/kvm").exists() {
        return Err(Error::missing(
            "no /dev/kvm",
            "run me through the lab (minnow-bench lab-io without --inner)",
        ));
    }
    if std::env::var_os("MINNOW_LAB").is_none() {
        eprintln!("lab-io: warning: MINNOW_LAB is not set; this is meant to run inside lab/run.sh");
    }
    if !kdir.join("bzImage").is_file() {
        return Err(Error::missing(
            format!("no minimal kernel in {}", kdir.display()),
            "build it with bash resources/guest/kernel/build.sh",
        ));
    }
    for c in ["qemu-system-x86_64", "busybox", "ip"] {
        if minnow_host::which(c).is_none() {
            return Err(Error::missing(format!("{c} not found"), "run lab/setup.sh"));
        }
    }
    util::require_repo("resources/guest/mkrootfs.sh")
}

fn inner(a: &LabIoArgs) -> Result<Report> {
    let t0 = Instant::now();
    let kdir = util::cache_dir().join("kernel/current");
    check_prereqs(&kdir)?;
    let minnow_src = util::minnow_path(a.minnow.as_deref())?;
    // Private copies on tmpfs: no 9p in the I/O paths, no device nodes on 9p.
    let w = WorkDir::new(Path::new("/dev/shm"), "minnow-io")?;
    let minnow = w.path.join("minnow");
    crate::error::copy(&minnow_src, &minnow, "pass --minnow PATH")?;
    let kernel = w.path.join("bzImage");
    crate::error::copy(kdir.join("bzImage"), &kernel, "rebuild the minimal kernel")?;
    let kinfo = fs::read_to_string(kdir.join("info"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("kernel_release=").map(String::from))
        .unwrap_or_else(|| "?".into());
    let add = w.path.join("add/bench");
    fs::create_dir_all(&add).map_err(Error::create_dir(&add))?;
    for (name, text) in [("disk.sh", DISK_SH), ("tcp.sh", TCP_SH)] {
        let p = add.join(name);
        fs::write(&p, text).map_err(Error::write(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(Error::write(&p))?;
    }
    let rootfs = w.path.join("rootfs.ext4");
    sh(
        Command::new("bash")
            .args(["resources/guest/mkrootfs.sh", "--size", "32", "--add"])
            .arg(w.path.join("add"))
            .arg(&rootfs),
        "resources/guest/mkrootfs.sh",
    )?;
    let run_dir = w.path.join("run");
    fs::create_dir_all(&run_dir).map_err(Error::create_dir(&run_dir))?;
    let c = Ctx {
        minnow: minnow.display().to_string(),
        kernel: kernel.display().to_string(),
        rootfs,
        run: run_dir,
        rounds: a.rounds as usize,
        boot_timeout: a.boot_timeout,
        bench: std::env::current_exe().map_err(Error::spawn("minnow-bench (current_exe)"))?,
    };
    let facts = Facts::here(Some(&minnow));
    let mut r = Report::new("lab-io", TITLE, facts);
    r.summary = format!(
        "{} interleaved rounds (order alternating) inside the nested lab; guest kernel {kinfo}; \
         TCG distorts absolute numbers: read the ratios.",
        a.rounds
    );
    r.param("rounds", a.rounds);
    r.param("guest_kernel", &kinfo);

    // 1. boot
    match bench_boot(&c) {
        Ok(series) => {
            for (v, [up, exit, timer]) in series {
                let cmd = boot_argv(&c, &v, Path::new("ROOTFS")).join(" ");
                r.rows.push(
                    Row::new(
                        format!("5.boot.{v}.up"),
                        format!("boot to init (minimal kernel, ext4 root on virtio-blk), {v}: spawn → `MINNOW-UP` line"),
                        "ms",
                    )
                    .measured(up.samples, up.failures, true)
                    .with_command(cmd),
                );
                r.rows.push(
                    Row::new(
                        format!("5.boot.{v}.exit"),
                        format!("same, {v}: spawn → exit"),
                        "ms",
                    )
                    .measured(exit.samples, exit.failures, true),
                );
                if v == "minnow" {
                    r.rows.push(
                        Row::new(
                            "5.boot.minnow.boot-timer",
                            "same, minnow's boot-timer line (VMM start → init)",
                            "ms",
                        )
                        .measured(timer.samples, timer.failures, true),
                    );
                }
            }
        }
        Err(e) => r.rows.push(
            Row::new("5.boot", "boot to init", "ms").with_status(Status::Failed(e.to_string())),
        ),
    }
    r.partial = Some("boot done; disk and TCP to come".into());
    r.write(&a.out)?;

    // 2. disk
    match bench_disk(&c) {
        Ok(d) => {
            let gm = d.guest_mode.clone().unwrap_or_else(|| "?".into());
            let hd = if !d.host_direct.is_empty() && d.host_direct.iter().all(|x| *x) {
                "O_DIRECT"
            } else {
                "page cache (tmpfs: no O_DIRECT)"
            };
            let [rg, rh, wg, wh] = d.series;
            for (kind, what, g, h) in [
                ("read", "read /dev/vdb", rg, rh),
                ("write", "write /dev/vdb + fsync", wg, wh),
            ] {
                r.rows.push(
                    Row::new(
                        format!("5.disk.{kind}.guest"),
                        format!("disk: 64 MiB sequential dd bs=4k, {what} in the guest ({gm})"),
                        "MB/s",
                    )
                    .measured(g.samples, g.failures, true),
                );
                r.rows.push(
                    Row::new(
                        format!("5.disk.{kind}.host"),
                        format!("disk: the same dd on the image file on the lab host ({hd})"),
                        "MB/s",
                    )
                    .measured(h.samples, h.failures, true),
                );
            }
        }
        Err(e) => r
            .rows
            .push(Row::new("5.disk", "disk", "MB/s").with_status(Status::Failed(e.to_string()))),
    }
    r.partial = Some("boot and disk done; TCP to come".into());
    r.write(&a.out)?;
    r.partial = None;

    // 3. TCP
    let prefix = format!("minnow-io-{}", std::process::id());
    let [g2h_tap, g2h_veth, h2g_tap, h2g_veth] = bench_tcp(&c, &prefix);
    for (dir, what, tap, veth) in [
        ("g2h", "guest → host", g2h_tap, g2h_veth),
        ("h2g", "host → guest", h2g_tap, h2g_veth),
    ] {
        r.rows.push(
            Row::new(
                format!("5.tcp.{dir}.tap"),
                format!(
                    "TCP 64 MiB {what}, busybox nc, virtio-net over TAP, timed on the host side"
                ),
                "MB/s",
            )
            .measured(tap.samples, tap.failures, true),
        );
        r.rows.push(
            Row::new(
                format!("5.tcp.{dir}.veth"),
                format!("TCP 64 MiB, the {what} direction between two netns over veth"),
                "MB/s",
            )
            .measured(veth.samples, veth.failures, true),
        );
    }

    r.compare(
        "5.boot.up",
        "boot to MINNOW-UP, minnow / QEMU microvm",
        "5.boot.minnow.up",
        "5.boot.qemu-microvm.up",
        "< 1 = minnow boots faster",
    );
    r.compare(
        "5.boot.exit",
        "boot to exit, minnow / QEMU microvm",
        "5.boot.minnow.exit",
        "5.boot.qemu-microvm.exit",
        "< 1 = minnow faster",
    );
    for kind in ["read", "write"] {
        r.compare(
            &format!("5.disk.{kind}"),
            &format!("disk {kind}, guest / lab host"),
            &format!("5.disk.{kind}.guest"),
            &format!("5.disk.{kind}.host"),
            "virtio-blk's cost per 4 KiB request over a memory-speed backend",
        );
    }
    for dir in ["g2h", "h2g"] {
        r.compare(
            &format!("5.tcp.{dir}"),
            &format!("TCP {dir}, TAP + virtio-net / veth"),
            &format!("5.tcp.{dir}.tap"),
            &format!("5.tcp.{dir}.veth"),
            "1 = as fast as veth between namespaces",
        );
    }
    r.goal_ratio(
        "5.boot.up",
        "5 minnow boots the minimal kernel to init faster than QEMU microvm (p50 ratio)",
        "same bzImage and rootfs, 1 vCPU, 256 MiB",
        "<",
        1.0,
    );
    r.notes = vec![
        "Everything runs inside the nested lab (QEMU TCG → kvm_amd → guest): absolute numbers \
         are inflated (times) or deflated (MB/s) by TCG; compare the ratios, measured in the same \
         lab run with rounds interleaved (order alternating). Images, kernel and binaries live \
         on the lab's /dev/shm (tmpfs), so 9p is not in any path."
            .into(),
        "1: both VMs boot the same bzImage and a private copy of the same rootfs, 1 vCPU, 256 MiB; \
         wall times from `minnow-bench firstline` (spawn → first console line `MINNOW-UP`, spawn → \
         exit). QEMU: `-M microvm,acpi=off,auto-kernel-cmdline=off`, \
         `virtio_mmio.device=512@0xfeb00e00:12` (microvm's first virtio-mmio slot), `reboot=t`."
            .into(),
        "2: the guest's busybox dd on /dev/vdb (a 64 MiB image of random data, fresh copy each \
         round), timed with the guest's /proc/uptime around dd (busybox dd prints no rate; 10 ms \
         resolution); the lab host runs the same busybox dd on the same image file, timed around \
         the dd process. tmpfs has no O_DIRECT on the lab's 6.1 kernel, so the host side goes \
         through the page cache, which is tmpfs's storage: the ratio is the virtio-blk + guest \
         block-layer cost per 4 KiB request over a memory-speed backend."
            .into(),
        "3: the receiving/sending end is `minnow-bench tcp-server` in the first netns: guest → \
         host is accept → last byte received; host → guest is accept → all bytes ACKed \
         (SIOCOUTQ = 0). The guest and the veth peer both use busybox nc."
            .into(),
    ];
    r.settle();
    r.elapsed_s = t0.elapsed().as_secs_f64();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guest_dd_lines() {
        let text = "x\nDISK-READ rc=0 start=10.50 end=12.50\nDISK-WRITE rc=1 start=1 end=2\n";
        let mb = parse_guest_dd(text, "DISK-READ").unwrap();
        assert!((mb - 64.0 * 1048576.0 / 2.0 / 1e6).abs() < 1e-9);
        assert_eq!(
            parse_guest_dd(text, "DISK-WRITE").unwrap_err(),
            "DISK-WRITE: dd exit 1"
        );
        assert!(parse_guest_dd("", "DISK-READ").is_err());
        let same = "DISK-READ rc=0 start=3.00 end=3.00";
        assert!(parse_guest_dd(same, "DISK-READ").is_err());
    }

    #[test]
    fn tcp_server_times_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let a = TcpServerArgs {
            bind: "127.0.0.1".into(),
            port: 0,
            mode: "recv".into(),
            bytes: 3 << 20,
            ready: dir.path().join("ready"),
            out: dir.path().join("out"),
            timeout: 20,
        };
        // Port 0 cannot be reached by a client; bind a real one first.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = TcpServerArgs { port, ..a };
        let a2 = a.clone();
        let server = std::thread::spawn(move || tcp_server(&a2).unwrap());
        while !a.ready.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(&vec![1u8; 3 << 20]).unwrap();
        drop(c);
        server.join().unwrap();
        let r: TcpResult = serde_json::from_str(&fs::read_to_string(&a.out).unwrap()).unwrap();
        assert_eq!((r.bytes, r.error), (3 << 20, None));
        assert!(r.mb_s.unwrap() > 0.0);
    }
}
