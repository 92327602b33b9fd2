//! The control API: HTTP/1.1 with JSON bodies on a Unix socket (`--api-sock`), shaped
//! like Firecracker's where the concept is the same. One thread (`api`) serves it, one
//! request per connection:
//!
//! - `GET /vm`: state (`Running`/`Paused`), vCPUs, memory, devices;
//! - `PATCH /vm` `{"state": "Paused"|"Resumed"}`;
//! - `PUT /snapshot/create` `{"snapshot_path": DIR}` (the VM must be paused).
//!
//! Errors are `{"fault_message": "..."}` with 400 (a request that cannot be carried out
//! in this state, or is malformed), 404, 405 or 500. docs/api.yaml is the reference.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

use crate::config::VmConfig;
use crate::devices::legacy::serial::Serial;
use crate::devices::ExitEvent;
use crate::snapshot::{self, Host, Snapshot};
use crate::vcpu::Control;

/// A request head or body larger than this is refused.
const MAX_HEAD: usize = 8 << 10;
const MAX_BODY: usize = 64 << 10;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API thread works on.
pub struct ApiContext {
    pub control: Arc<Control>,
    pub vm: Arc<VmFd>,
    pub mem: GuestMemoryMmap,
    pub serial: Arc<Mutex<Serial>>,
    /// The virtio-blk devices, in `config.disks` order.
    pub blocks: Vec<crate::device_manager::BlockHandle>,
    /// The virtio-net devices, in `config.nets` order: frozen while the VM is paused.
    pub nets: Vec<crate::device_manager::NetHandle>,
    pub config: VmConfig,
    pub host: Host,
    pub exit: Arc<ExitEvent>,
    /// Set by the main thread when the VM has stopped.
    pub stop: Arc<AtomicBool>,
    /// The KVM clock when the VM was paused: put back on resume, so guest time does not
    /// move on by the pause, and saved in a snapshot taken while paused.
    pub paused_clock: Mutex<Option<kvm_bindings::kvm_clock_data>>,
}

/// The listening socket, bound before the VMM's seccomp filters go on.
pub struct Api {
    listener: UnixListener,
    path: PathBuf,
}

/// The socket cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the control API on {path}: {source}; {fix}")]
pub struct BindError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
    fix: &'static str,
}

impl Api {
    /// Binds `path` (which must not exist yet).
    pub fn bind(path: &Path) -> Result<Api, BindError> {
        let err = |source, fix| BindError {
            path: path.to_path_buf(),
            source,
            fix,
        };
        if path.symlink_metadata().is_ok() {
            return Err(err(
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                "remove it (a VM that used it has gone) or give another --api-sock",
            ));
        }
        let listener =
            UnixListener::bind(path).map_err(|e| err(e, "give a path in a writable directory"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| err(e, "check the host"))?;
        Ok(Api {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves requests until `ctx.stop`; removes the socket at the end.
    pub fn serve(self, ctx: &ApiContext) {
        while !ctx.stop.load(Ordering::Acquire) {
            if !wait_readable(self.listener.as_raw_fd(), 50) {
                continue;
            }
            match self.listener.accept() {
                Ok((stream, _)) => handle(stream, ctx),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => log::warn!("control API: accept failed: {e}"),
            }
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::debug!("control API: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Polls `fd` for input for up to `ms` milliseconds.
fn wait_readable(fd: i32, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// A response: status and JSON body (none for 204).
struct Response {
    status: u16,
    body: Option<String>,
}

impl Response {
    fn no_content() -> Self {
        Response {
            status: 204,
            body: None,
        }
    }
    fn json(status: u16, value: &impl Serialize) -> Self {
        Response {
            status,
            body: Some(serde_json::to_string(value).unwrap_or_else(|_| "{}".into())),
        }
    }
    fn fault(status: u16, msg: impl Into<String>) -> Self {
        #[derive(Serialize)]
        struct Fault {
            fault_message: String,
        }
        Response::json(
            status,
            &Fault {
                fault_message: msg.into(),
            },
        )
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    }
}

fn handle(mut stream: UnixStream, ctx: &ApiContext) {
    let response = match read_request(&mut stream, &ctx.stop) {
        Ok(req) => route(&req, ctx),
        Err(resp) => resp,
    };
    let body = response.body.unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status)
    );
    if response.status != 204 {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    if let Err(e) = stream.write_all(out.as_bytes()) {
        log::debug!("control API: cannot answer: {e}");
    }
}

/// Reads one request: the head up to the blank line, then Content-Length bytes.
/// Gives up when `stop` is set (the VM stopped while a client was slow).
fn read_request(stream: &mut UnixStream, stop: &AtomicBool) -> Result<Request, Response> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Response::fault(413, "the request head is too long"));
        }
        let n = read_some(stream, &mut chunk, deadline, stop)?;
        if n == 0 {
            return Err(Response::fault(
                400,
                "the request ended before its head did",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Response::fault(400, "the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or("").split(' ');
    let (method, path, version) = (start.next(), start.next(), start.next());
    let (Some(method), Some(path), Some(version)) = (method, path, version) else {
        return Err(Response::fault(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Response::fault(400, "only HTTP/1.x is served"));
    }
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Response::fault(400, "malformed header line"));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| Response::fault(400, "Content-Length is not a number"))?;
        }
        if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::fault(
                400,
                "chunked bodies are not served; send Content-Length",
            ));
        }
    }
    if length > MAX_BODY {
        return Err(Response::fault(413, "the request body is too long"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = read_some(stream, &mut chunk, deadline, stop)?;
        if n == 0 {
            return Err(Response::fault(
                400,
                "the request ended before its body did",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        body,
    })
}

fn read_some(
    stream: &mut UnixStream,
    chunk: &mut [u8],
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<usize, Response> {
    loop {
        if stop.load(Ordering::Acquire) {
            return Err(Response::fault(400, "the VM has stopped"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        if ms == 0 {
            return Err(Response::fault(400, "the request took too long to arrive"));
        }
        // In slices, so that a stopping VM does not wait for a slow client.
        if !wait_readable(stream.as_raw_fd(), ms.min(50)) {
            continue;
        }
        match stream.read(chunk) {
            Ok(n) => return Ok(n),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Response::fault(
                    400,
                    format!("the request could not be read: {e}"),
                ))
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `GET /vm`.
#[derive(Serialize)]
struct Status {
    state: &'static str,
    vcpus: usize,
    mem_mib: u64,
    devices: Vec<&'static str>,
}

/// `PATCH /vm`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmPatch {
    state: VmState,
}

#[derive(Deserialize)]
enum VmState {
    Paused,
    Resumed,
}

/// `PUT /snapshot/create`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotCreate {
    snapshot_path: PathBuf,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| Response::fault(400, format!("bad JSON body: {e}")))
}

fn route(req: &Request, ctx: &ApiContext) -> Response {
    let gone = || ctx.exit.fired() || ctx.stop.load(Ordering::Acquire);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/vm") => Response::json(200, &status(ctx)),
        ("PATCH", "/vm") => {
            let patch: VmPatch = match parse(&req.body) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let done = match patch.state {
                VmState::Paused => ctx.control.pause(&gone).map(|()| {
                    freeze_clock(ctx);
                    freeze_nets(ctx);
                }),
                VmState::Resumed => {
                    if ctx.control.paused() {
                        thaw_clock(ctx);
                        thaw_nets(ctx);
                    }
                    ctx.control.resume(&gone)
                }
            };
            match done {
                Ok(()) => Response::no_content(),
                Err(e) => Response::fault(400, e),
            }
        }
        ("PUT", "/snapshot/create") => {
            let create: SnapshotCreate = match parse(&req.body) {
                Ok(c) => c,
                Err(r) => return r,
            };
            match create_snapshot(ctx, &create.snapshot_path, &gone) {
                Ok(()) => Response::no_content(),
                Err(e) => Response::fault(400, e),
            }
        }
        (_, "/vm") | (_, "/snapshot/create") => {
            Response::fault(405, format!("{} is not served on {}", req.method, req.path))
        }
        _ => Response::fault(404, format!("no such resource: {}", req.path)),
    }
}

/// Notes the KVM clock of a VM just paused (QEMU's kvmclock device does the same on
/// stop and cont; Firecracker lets the clock run).
fn freeze_clock(ctx: &ApiContext) {
    match ctx.vm.get_clock() {
        Ok(clock) => *lock(&ctx.paused_clock) = Some(clock),
        Err(e) => log::warn!("control API: cannot read the KVM clock at pause: {e}; guest time will move on by the pause"),
    }
}

/// Puts the clock noted at pause back before the vCPUs run on.
fn thaw_clock(ctx: &ApiContext) {
    if let Some(saved) = lock(&ctx.paused_clock).take() {
        // KVM_SET_CLOCK takes no flags but KVM_CLOCK_REALTIME; the ones read describe it.
        let clock = kvm_bindings::kvm_clock_data {
            clock: saved.clock,
            ..Default::default()
        };
        if let Err(e) = ctx.vm.set_clock(&clock) {
            log::warn!("control API: cannot put the KVM clock back at resume: {e}; guest time moved on by the pause");
        }
    }
}

/// Stops the network devices of a VM just paused: no more frames from the TAP into
/// guest memory (see crate::devices::virtio::net).
fn freeze_nets(ctx: &ApiContext) {
    for n in &ctx.nets {
        lock(&n.net).freeze();
    }
}

/// Lets the network devices work again and has them look at their queues and TAP.
fn thaw_nets(ctx: &ApiContext) {
    for n in &ctx.nets {
        lock(&n.net).thaw();
        lock(&n.transport).notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn status(ctx: &ApiContext) -> Status {
    let mut devices = vec!["serial", "i8042"];
    devices.extend(ctx.config.disks.iter().map(|_| "virtio-blk"));
    devices.extend(ctx.config.nets.iter().map(|_| "virtio-net"));
    Status {
        state: if ctx.control.paused() {
            "Paused"
        } else {
            "Running"
        },
        vcpus: ctx.control.count(),
        mem_mib: ctx.config.mem_mib,
        devices,
    }
}

/// Saves the paused VM into `dir`; it stays paused.
fn create_snapshot(ctx: &ApiContext, dir: &Path, gone: &dyn Fn() -> bool) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!(
            "snapshot_path {} is relative; give an absolute directory",
            dir.display()
        ));
    }
    // The devices first: their requests are completed (into guest memory) and the
    // disks flushed before anything of the guest is saved.
    let mut devices = Vec::with_capacity(ctx.blocks.len());
    for (i, b) in ctx.blocks.iter().enumerate() {
        let transport = lock(&b.transport)
            .save()
            .map_err(|e| format!("cannot save disk {i}'s virtio-blk device: {e}"))?;
        let disk = lock(&b.block)
            .identity()
            .map_err(|e| format!("cannot read disk {i}'s file status: {e}; check the disk"))?;
        devices.push(snapshot::DeviceState::Block { transport, disk });
    }
    for (i, n) in ctx.nets.iter().enumerate() {
        let transport = lock(&n.transport)
            .save()
            .map_err(|e| format!("cannot save network device {i}'s virtio-net device: {e}"))?;
        let mac = lock(&n.net).mac().0;
        devices.push(snapshot::DeviceState::Net { transport, mac });
    }
    let vcpus = ctx.control.save(gone)?;
    let mut vm = snapshot::save_vm(&ctx.vm, ctx.config.pit == crate::pit::Mode::On)
        .map_err(|e| e.to_string())?;
    // The guest's time is the one at the pause.
    if let Some(clock) = *lock(&ctx.paused_clock) {
        vm.clock = clock;
    }
    let serial = ctx.serial.lock().unwrap_or_else(|p| p.into_inner()).state();
    let snap = Snapshot {
        host: ctx.host.clone(),
        config: ctx.config.clone(),
        memory: snapshot::memory_layout(&ctx.mem),
        vm,
        vcpus,
        serial: snapshot::SerialState::from(&serial),
        devices,
    };
    snapshot::write(dir, &snap, &ctx.mem).map_err(|e| e.to_string())?;
    log::info!("snapshot written to {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &[u8]) -> Result<Request, Response> {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(raw).unwrap();
        drop(a);
        read_request(&mut b, &AtomicBool::new(false))
    }

    #[test]
    fn parses_a_request_with_a_body() {
        let r = request(
            b"PATCH /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{\"state\":\"Paused\"}",
        )
        .unwrap_or_else(|_| panic!("refused"));
        assert_eq!(r.method, "PATCH");
        assert_eq!(r.path, "/vm");
        assert_eq!(r.body, b"{\"state\":\"Paused\"}");
        let p: VmPatch = parse(&r.body).unwrap_or_else(|_| panic!("bad json"));
        assert!(matches!(p.state, VmState::Paused));
    }

    #[test]
    fn refuses_malformed_requests() {
        for raw in [
            &b"GET\r\n\r\n"[..],
            b"GET /vm SPDY/3\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n{}",
            b"PUT /x HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
        ] {
            let r = request(raw).err().expect("refused");
            assert!(r.status == 400 || r.status == 413, "{raw:?}");
        }
        assert!(parse::<VmPatch>(b"{\"state\":\"Sleeping\"}").is_err());
        assert!(parse::<VmPatch>(b"{\"state\":\"Paused\",\"x\":1}").is_err());
    }
}
