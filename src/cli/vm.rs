//! `minnow vm pause|resume|status|snapshot`: a client of a running VM's control API
//! (`minnow run --api-sock PATH`, docs/api.yaml).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Subcommand)]
enum VmCommand {
    /// Pause the VM's vCPUs.
    Pause(Sock),
    /// Let a paused VM run on.
    Resume(Sock),
    /// Print the VM's state (Running or Paused), vCPUs, memory and devices as JSON.
    Status(Sock),
    /// Pause the VM and save it to DIR (DIR/state, DIR/memory); it stays paused.
    Snapshot {
        #[command(flatten)]
        sock: Sock,
        /// The snapshot directory (created if missing).
        dir: PathBuf,
    },
}

#[derive(Args)]
struct Sock {
    /// The VM's control socket (`minnow run --api-sock PATH`).
    #[arg(long)]
    api_sock: PathBuf,
}

pub fn run(args: VmArgs) -> Result<i32, String> {
    match args.command {
        VmCommand::Pause(s) => patch_state(&s.api_sock, "Paused"),
        VmCommand::Resume(s) => patch_state(&s.api_sock, "Resumed"),
        VmCommand::Status(s) => {
            let body = request(&s.api_sock, "GET", "/vm", None)?;
            println!("{body}");
            Ok(0)
        }
        VmCommand::Snapshot { sock, dir } => {
            let dir = std::path::absolute(&dir).map_err(|e| {
                format!(
                    "cannot resolve {}: {e}; give an absolute DIR",
                    dir.display()
                )
            })?;
            let status = request(&sock.api_sock, "GET", "/vm", None)?;
            let paused_here = !status.contains("\"Paused\"");
            if paused_here {
                patch_state(&sock.api_sock, "Paused")?;
            }
            let body = serde_json::json!({ "snapshot_path": dir }).to_string();
            if let Err(e) = request(&sock.api_sock, "PUT", "/snapshot/create", Some(&body)) {
                // A refused snapshot leaves the VM as it found it.
                if paused_here {
                    let _ = patch_state(&sock.api_sock, "Resumed");
                }
                return Err(e);
            }
            eprintln!(
                "minnow: snapshot written to {} (the VM stays paused)",
                dir.display()
            );
            Ok(0)
        }
    }
}

fn patch_state(sock: &Path, state: &str) -> Result<i32, String> {
    let body = serde_json::json!({ "state": state }).to_string();
    request(sock, "PATCH", "/vm", Some(&body))?;
    Ok(0)
}

/// One request; the response body on 2xx, else the fault message as the error.
fn request(sock: &Path, method: &str, path: &str, body: Option<&str>) -> Result<String, String> {
    let mut stream = UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot connect to {}: {e}; is a VM running with --api-sock {}?",
            sock.display(),
            sock.display()
        )
    })?;
    let io = |e: std::io::Error| {
        format!(
            "control API at {}: {e}; is the VM still running?",
            sock.display()
        )
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut resp = String::new();
    stream.read_to_string(&mut resp).map_err(io)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("control API at {}: not an HTTP response", sock.display()))?;
    if (200..300).contains(&status) {
        return Ok(body.to_owned());
    }
    let fault = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("fault_message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.to_owned());
    Err(format!("{method} {path}: {fault}"))
}
