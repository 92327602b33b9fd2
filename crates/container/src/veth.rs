//! `--net veth`: a veth pair between the host's namespace and the container's, set up
//! with iproute2 (`ip`, `nsenter`) by the supervisor before the container execs.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::Error;

/// The host end's name and the /30's two usable addresses (host, container).
pub struct Veth {
    pub host_if: String,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<String, Error> {
    run("ip", args)
}

fn run(program: &'static str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::VethTool {
            program,
            package: if program == "nsenter" {
                "util-linux"
            } else {
                "iproute2"
            },
            source,
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::VethCommand {
            program,
            args: args.join(" "),
            stderr: err.lines().next().unwrap_or("").trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Picks a free /30 in 169.254.200.0/21, starting from one derived from `id`.
pub fn plan(id: &str) -> Result<Veth, Error> {
    let used: Vec<Ipv4Addr> = ip(&["-o", "-4", "addr"])?
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.by_ref().find(|t| *t == "inet")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect();
    let start = u64::from_str_radix(id, 16).unwrap_or(0) % 512;
    let base = u32::from(Ipv4Addr::new(169, 254, 200, 0));
    for i in 0..512 {
        let net = base + (((start + i) % 512) as u32) * 4;
        if used.iter().all(|a| u32::from(*a) & !3 != net) {
            return Ok(Veth {
                host_if: format!("mv{}", &id[..id.len().min(13)]),
                host_ip: Ipv4Addr::from(net + 1),
                ip: Ipv4Addr::from(net + 2),
            });
        }
    }
    Err(Error::VethNoSubnet)
}

impl Veth {
    /// Creates the pair with the container end as `eth0` in `pid`'s network namespace.
    pub fn setup(&self, pid: i32) -> Result<(), Error> {
        let pid = pid.to_string();
        let h = self.host_if.as_str();
        let host = format!("{}/30", self.host_ip);
        let cont = format!("{}/30", self.ip);
        let gw = self.host_ip.to_string();
        ip(&[
            "link", "add", h, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ])?;
        let r = ip(&["addr", "add", &host, "dev", h])
            .and_then(|_| ip(&["link", "set", h, "up"]))
            .and_then(|_| {
                let ns = ["-t", pid.as_str(), "-n", "ip"];
                let c = |a: &[&str]| run("nsenter", &[&ns[..], a].concat());
                c(&["addr", "add", &cont, "dev", "eth0"])?;
                c(&["link", "set", "eth0", "up"])?;
                c(&["route", "add", "default", "via", &gw])
            });
        if r.is_err() {
            self.remove();
        }
        r.map(|_| ())
    }

    /// Deletes the host end (and with it the container end); quiet if already gone.
    pub fn remove(&self) {
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
