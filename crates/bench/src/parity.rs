//! The isolation-parity rows of `minnow bench startup`: minnow-runc, runc and crun run one
//! config.json, Docker's defaults ([`minnow_container::defaults::docker_spec`]: Docker's
//! capability set, seccomp profile, masked and read-only paths, namespaces) plus the
//! container rows' memory limit; `docker run --runtime minnow` runs beside Docker's
//! default runc. Then the breakdown: each runtime again with one isolation step taken out
//! of the config, so that the difference of the p50s is what the step costs.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::report::{Report, Status, Table};
use crate::rows::{oci_row, Ctx, Row};
use crate::startup::StartupArgs;
use minnow_host::which;

/// The runtimes that run the parity config: (row key, binary name).
const RUNTIMES: [(&str, &str); 3] = [
    ("minnow-runc", "minnow-runc"),
    ("runc.docker", "runc"),
    ("crun.docker", "crun"),
];

/// The isolation steps of the breakdown: (key, what it is).
pub const STEPS: [(&str, &str); 4] = [
    ("seccomp", "seccomp profile (compile and load)"),
    ("caps", "capability sets"),
    ("paths", "masked and read-only paths"),
    ("cgroup", "cgroup memory limit"),
];

/// Docker's default config.json for the bench's root file system and command.
fn docker_config(ctx: &Ctx, a: &StartupArgs) -> Result<Value> {
    let spec = minnow_container::defaults::docker_spec();
    let mut v = serde_json::to_value(&spec).map_err(|source| Error::Json {
        path: PathBuf::from("config.json"),
        what: "Docker's default OCI spec",
        source,
    })?;
    crate::rows::for_bench(&mut v, ctx, a);
    Ok(v)
}

/// `config` with the isolation step `step` taken out.
fn without(config: &Value, step: &str) -> Value {
    let mut v = config.clone();
    let drop = |v: &mut Value, section: &str, keys: &[&str]| {
        if let Some(m) = v[section].as_object_mut() {
            for k in keys {
                m.remove(*k);
            }
        }
    };
    match step {
        "seccomp" => drop(&mut v, "linux", &["seccomp"]),
        "caps" => drop(&mut v, "process", &["capabilities"]),
        "paths" => drop(&mut v, "linux", &["maskedPaths", "readonlyPaths"]),
        "cgroup" => drop(&mut v, "linux", &["resources"]),
        _ => {}
    }
    v
}

fn write_bundle(dir: &Path, config: &Value) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(Error::create_dir(dir))?;
    let path = dir.join("config.json");
    fs::write(&path, config.to_string()).map_err(Error::write(&path))?;
    Ok(dir.to_path_buf())
}

fn runtime_bin(ctx: &Ctx, bin: &str) -> Result<PathBuf> {
    if bin == "minnow-runc" {
        let p = ctx.work.join("minnow-runc");
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::missing(
                "no minnow-runc beside minnow".to_string(),
                "cargo build --release --workspace",
            ))
        };
    }
    which(bin).ok_or_else(|| {
        Error::missing(
            format!("{bin} not installed (Debian package {bin})"),
            format!("apt-get install {bin}"),
        )
    })
}

/// The parity rows, then `docker run --runtime minnow` (when the bench's dockerd has it),
/// then the breakdown's variants.
pub fn rows(a: &StartupArgs, ctx: &Ctx) -> Vec<Row> {
    let config = docker_config(ctx, a).map_err(|e| e.to_string());
    let dir = ctx.scratch.join("parity");
    let mut rows = Vec::new();
    let mut variants = Vec::new();
    for (key, bin) in RUNTIMES {
        let name = format!("{bin} run (Docker's default config.json, memory limit)");
        rows.push(row(
            ctx,
            a,
            Row::new(key, &name),
            bin,
            config.clone(),
            &dir.join(key),
        ));
        for (step, what) in STEPS {
            let vkey = format!("{key}.no-{step}");
            let mut r = Row::new(&vkey, &format!("{bin} run, config without the {what}"));
            r.in_memory = false;
            let c = config
                .as_ref()
                .map(|c| without(c, step))
                .map_err(Clone::clone);
            variants.push(row(ctx, a, r, bin, c, &dir.join(&vkey)));
        }
    }
    rows.push(docker_minnow(ctx, a));
    rows.extend(variants);
    rows
}

fn row(
    ctx: &Ctx,
    a: &StartupArgs,
    mut r: Row,
    bin: &str,
    config: std::result::Result<Value, String>,
    dir: &Path,
) -> Row {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            r.unavailable = Some(Status::Unavailable(e));
            return r;
        }
    };
    match runtime_bin(ctx, bin).and_then(|b| Ok((b, write_bundle(dir, &config)?))) {
        Ok((bin, bundle)) => oci_row(r, ctx, a, &bin, bundle),
        Err(e) => r.or_unavailable(Err(e)),
    }
}

fn docker_minnow(ctx: &Ctx, a: &StartupArgs) -> Row {
    let r = Row::new(
        "docker.minnow",
        &format!(
            "docker run --runtime minnow --rm --network none --memory {}m",
            a.mem_mib
        ),
    );
    match &ctx.docker {
        Some(dk) if dk.has_minnow => {
            let (host, mem) = (dk.host.clone(), a.mem_mib);
            r.with(move |_, cmd| {
                let mut v: Vec<String> = ["docker", "-H", &host, "run", "--runtime", "minnow"]
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                v.extend(["--rm", "--network", "none"].map(String::from));
                v.extend([
                    "--memory".into(),
                    format!("{mem}m"),
                    crate::rows::DOCKER_IMAGE.into(),
                ]);
                v.extend_from_slice(cmd);
                v
            })
        }
        Some(_) => r.or_unavailable(Err(Error::missing(
            "dockerd was started without minnow-runc".to_string(),
            "cargo build --release --workspace",
        ))),
        None => r.or_unavailable(Err(Error::missing(
            "no dockerd (see the docker row)".to_string(),
            "apt-get install docker.io",
        ))),
    }
}

/// The parity comparisons and goals, and the breakdown table.
pub fn report(r: &mut Report) {
    for (of, to) in [
        ("minnow-runc", "runc.docker"),
        ("minnow-runc", "crun.docker"),
        ("crun.docker", "runc.docker"),
        ("docker.minnow", "docker"),
    ] {
        r.compare(
            &format!("{of}/{to}"),
            "start-up p50, the same config.json",
            of,
            to,
            "",
        );
    }
    r.goal_ratio(
        "minnow-runc/runc.docker",
        "minnow-runc start p50 / runc p50, Docker's default config",
        "goal: at most half of runc's",
        "<=",
        0.5,
    );
    r.goal_ratio(
        "minnow-runc/crun.docker",
        "minnow-runc start p50 / crun p50, Docker's default config",
        "goal: at most crun's",
        "<=",
        1.0,
    );
    // A goal on a row that could not run here says which row and why.
    for (goal, rows) in [
        ("minnow-runc/runc.docker", ["minnow-runc", "runc.docker"]),
        ("minnow-runc/crun.docker", ["minnow-runc", "crun.docker"]),
    ] {
        let why = rows.iter().find_map(|id| {
            r.row(id)
                .filter(|row| row.p50().is_none())
                .map(|row| format!("row {id} {}", row.status))
        });
        if let (Some(why), Some(g)) = (why, r.goals.iter_mut().find(|g| g.id == goal)) {
            if g.met.is_none() {
                g.why = why;
            }
        }
    }
    let p50 = |r: &Report, id: &str| r.row(id).and_then(crate::report::Row::p50);
    let mut cells = Vec::new();
    for (step, what) in STEPS {
        let mut line = vec![json!(what)];
        for (key, _) in RUNTIMES {
            let cost = p50(r, key)
                .zip(p50(r, &format!("{key}.no-{step}")))
                .map(|(full, less)| (full - less) * 1000.0)
                .map(|us| us.round() / 1000.0);
            line.push(json!(cost));
        }
        cells.push(line);
    }
    let mut columns = vec!["isolation step".to_string()];
    columns.extend(RUNTIMES.map(|(k, _)| format!("{k} ms")));
    r.tables.push(Table {
        title: "What each isolation step costs: p50 with Docker's default config minus p50 \
                with the step taken out (ms; small differences are within noise):"
            .into(),
        columns,
        rows: cells,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_lacks_exactly_its_step() {
        let spec = minnow_container::defaults::docker_spec();
        let mut full = serde_json::to_value(&spec).unwrap();
        full["linux"]["resources"]["memory"] = json!({"limit": 1});
        for key in ["seccomp", "maskedPaths", "readonlyPaths", "resources"] {
            assert!(full["linux"].get(key).is_some(), "docker_spec has {key}");
        }
        assert!(full["process"].get("capabilities").is_some());
        let gone = |v: &Value, sect: &str, key: &str| v[sect].get(key).is_none();
        let v = without(&full, "seccomp");
        assert!(gone(&v, "linux", "seccomp") && !gone(&v, "linux", "maskedPaths"));
        let v = without(&full, "caps");
        assert!(gone(&v, "process", "capabilities") && !gone(&v, "linux", "seccomp"));
        let v = without(&full, "paths");
        assert!(gone(&v, "linux", "maskedPaths") && gone(&v, "linux", "readonlyPaths"));
        assert!(!gone(&v, "linux", "resources"));
        let v = without(&full, "cgroup");
        assert!(gone(&v, "linux", "resources") && !gone(&v, "linux", "namespaces"));
        assert_eq!(without(&full, "nothing"), full);
    }
}
