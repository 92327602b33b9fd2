//! `update`: new limits for a running container's cgroup, from runc's flags or from the
//! resources JSON (`--resources FILE|-`, what containerd's shim passes for `docker
//! update`); the flags win over the file. Written by the engine (`cgroup::update`).

use std::io::Read;

use minnow_container::engine::{cgroup, Status};
use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources};

use super::{state, Global, UpdateFlags};

/// A size as runc takes it: bytes, or a number with k, m, g, t or p (binary units, an
/// optional `i` and `b`: 64m, 64MiB, 1g); -1 is "no limit".
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a size; give bytes or a number with k, m, g (64m)");
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            let shift = 10 * (1 + "kmgtp".find(c).unwrap_or(0) as u32);
            (&t[..t.len() - 1], shift)
        }
        _ => (t, 0),
    };
    let n: i64 = num.trim().parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(1i64 << shift).ok_or_else(bad)
}

fn read_json(path: &std::path::Path) -> Result<LinuxResources, String> {
    let mut text = Vec::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut text))
    };
    r.map_err(|e| format!("cannot read --resources {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| {
        format!(
            "cannot parse --resources {}: {e}; give linux.resources as JSON",
            path.display()
        )
    })
}

/// The resources to write: the file's (if any), then the flags over them.
pub fn resources(f: &UpdateFlags) -> Result<LinuxResources, String> {
    let mut r = match &f.resources {
        Some(p) => read_json(p)?,
        None => LinuxResources::default(),
    };
    let built = |e: oci_spec::OciSpecError| e.to_string();
    if f.memory.is_some() || f.memory_reservation.is_some() || f.memory_swap.is_some() {
        let old = r.memory().unwrap_or_default();
        let mut m = LinuxMemoryBuilder::default();
        let pick = |flag: &Option<String>, old: Option<i64>| -> Result<Option<i64>, String> {
            flag.as_deref()
                .map(parse_bytes)
                .transpose()
                .map(|v| v.or(old))
        };
        if let Some(v) = pick(&f.memory, old.limit())? {
            m = m.limit(v);
        }
        if let Some(v) = pick(&f.memory_reservation, old.reservation())? {
            m = m.reservation(v);
        }
        if let Some(v) = pick(&f.memory_swap, old.swap())? {
            m = m.swap(v);
        }
        r.set_memory(Some(m.build().map_err(built)?));
    }
    if f.cpu_share.is_some() || f.cpu_period.is_some() || f.cpu_quota.is_some() {
        let old = r.cpu().clone().unwrap_or_default();
        let mut c = LinuxCpuBuilder::default();
        if let Some(v) = f.cpu_share.or(old.shares()) {
            c = c.shares(v);
        }
        if let Some(v) = f.cpu_period.or(old.period()) {
            c = c.period(v);
        }
        if let Some(v) = f.cpu_quota.or(old.quota()) {
            c = c.quota(v);
        }
        r.set_cpu(Some(c.build().map_err(built)?));
    }
    if let Some(l) = f.pids_limit {
        r.set_pids(Some(
            LinuxPidsBuilder::default()
                .limit(l)
                .build()
                .map_err(built)?,
        ));
    }
    Ok(r)
}

/// `update ID`.
pub fn update(g: &Global, id: &str, r: &LinuxResources) -> Result<(), String> {
    let saved = state::load(&g.root, id)?;
    if saved.status(&g.root) == Status::Stopped {
        return Err(format!("container {id} is not running; nothing to update"));
    }
    cgroup::update(&saved.cgroup, r).map_err(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_runc_takes_them() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2kb"), Ok(2048));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        for bad in ["", "m", "-5", "1x", "99999999999p"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
