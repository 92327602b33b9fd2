//! `minnow-bench registry`: pull and push of one multi-layer image (tens of MiB of
//! incompressible layers, gzip) through a docker-registry on 127.0.0.1, minnow against
//! `skopeo copy` to and from an OCI directory, cold (empty store / empty registry) and
//! warm (every layer already there), interleaved round-robin. Writes registry.md and
//! registry.json in --out, in the shape `startup` writes. Self-contained: it starts and
//! stops its own registry and uses only temporary directories.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::Stats;

#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Timed runs per row (after one untimed warm-up run each).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// Layers added on top of busybox.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub layers: u64,
    /// MiB of incompressible data in each added layer.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub layer_mib: u64,
    /// The minnow binary under test [default: `minnow` beside this program].
    #[arg(long)]
    pub minnow: Option<PathBuf>,
    /// Output directory: registry.md, registry.json.
    #[arg(long, default_value = "bench/results/registry")]
    pub out: PathBuf,
}

/// One measured command, minnow's or skopeo's.
struct Row {
    key: &'static str,
    name: &'static str,
    op: &'static str,
    temp: &'static str,
    tool: &'static str,
    describe: String,
    samples: Vec<f64>,
    failures: Vec<String>,
}

/// The bench's registry: docker-registry with its own storage; restarted empty for cold
/// pushes. Killed on drop.
struct Reg {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Reg {
    fn start(dir: &Path) -> Result<Reg, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        let mut r = Reg {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        r.restart_empty()?;
        Ok(r)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts the registry on its port with empty storage.
    fn restart_empty(&mut self) -> Result<(), String> {
        self.stop();
        let storage = self.dir.join("storage");
        let _ = fs::remove_dir_all(&storage);
        fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let config = self.dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: \"127.0.0.1:{}\"}}\n",
                storage.display(),
                self.port
            ),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start docker-registry: {e}; apt-get install docker-registry (scripts/install-deps.sh)"))?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > until {
                return Err(format!(
                    "docker-registry did not listen on {} in 20 s",
                    self.host()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Reg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            err.lines().last().unwrap_or("")
        ))
    }
}

/// Incompressible bytes (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The image: minnow's busybox plus `layers` layers of `layer_mib` MiB each (umoci
/// adds them gzip-compressed), as `LAYOUT:bench`.
fn make_image(a: &RegistryArgs, minnow: &Path, work: &Path) -> Result<PathBuf, String> {
    let store = work.join("seed-store");
    let layout = work.join("layout");
    run(Command::new(minnow)
        .args(["image", "import", "--default", "--store"])
        .arg(&store))?;
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:busybox", store.display()))
        .arg(format!("oci:{}:bench", layout.display())))?;
    for i in 0..a.layers {
        let dir = work.join(format!("layer{i}"));
        fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        fs::write(
            dir.join(format!("data/blob{i}")),
            noise((a.layer_mib as usize) << 20, i + 1),
        )
        .map_err(|e| e.to_string())?;
        let tar = work.join(format!("layer{i}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .arg("."))?;
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(format!("{}:bench", layout.display()))
            .arg(&tar))?;
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&tar);
    }
    Ok(layout)
}

fn time(cmd: &mut Command) -> Result<f64, String> {
    let t = Instant::now();
    run(cmd)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub fn run_bench(a: RegistryArgs) -> Result<i32, String> {
    let t0 = Instant::now();
    for tool in ["docker-registry", "skopeo", "umoci", "tar"] {
        if minnow_host::which(tool).is_none() {
            return Err(format!(
                "{tool} is not installed; run scripts/install-deps.sh (the registry bench needs docker-registry, skopeo and umoci)"
            ));
        }
    }
    let minnow = match &a.minnow {
        Some(m) => m.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("minnow"),
    };
    if !minnow.is_file() {
        return Err(format!(
            "no minnow binary at {}; build it (cargo build --release) or pass --minnow PATH",
            minnow.display()
        ));
    }
    fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}; choose --out DIR", a.out.display()))?;
    let tmp = tempfile_dir()?;
    let work = tmp.path();
    eprintln!(
        "bench registry: building a {}-layer image ({} MiB per layer) ...",
        a.layers + 1,
        a.layer_mib
    );
    let layout = make_image(&a, &minnow, work)?;
    let mut reg = Reg::start(&work.join("registry"))?;
    let src = |host: &str| format!("{host}/bench/image:1");
    let seed = |reg: &Reg| {
        run(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bench", layout.display()))
            .arg(format!("docker://{}", src(&reg.host()))))
    };
    seed(&reg)?;
    let mut seeded = true;
    // The store minnow pushes from: the layout copied in by skopeo (no registry source
    // annotation, so a push uploads instead of mounting).
    let push_store = work.join("push-store");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("oci:{}:bench", push_store.display())))?;

    let mut rows = vec![
        row(
            "minnow-pull-cold",
            "minnow pull, cold",
            "pull",
            "cold",
            "minnow",
        ),
        row(
            "skopeo-pull-cold",
            "skopeo copy to oci:, cold",
            "pull",
            "cold",
            "skopeo",
        ),
        row(
            "minnow-pull-warm",
            "minnow pull, warm",
            "pull",
            "warm",
            "minnow",
        ),
        row(
            "skopeo-pull-warm",
            "skopeo copy to oci:, warm",
            "pull",
            "warm",
            "skopeo",
        ),
        row(
            "minnow-push-cold",
            "minnow push, cold",
            "push",
            "cold",
            "minnow",
        ),
        row(
            "skopeo-push-cold",
            "skopeo copy from oci:, cold",
            "push",
            "cold",
            "skopeo",
        ),
        row(
            "minnow-push-warm",
            "minnow push, warm",
            "push",
            "warm",
            "minnow",
        ),
        row(
            "skopeo-push-warm",
            "skopeo copy from oci:, warm",
            "push",
            "warm",
            "skopeo",
        ),
    ];
    let warm_store = work.join("warm-store");
    let warm_oci = work.join("warm-oci");
    for round in 0..=a.runs {
        let timed = round > 0;
        for r in rows.iter_mut() {
            let host = reg.host();
            let cold_store = work.join("cold-store");
            let cold_oci = work.join("cold-oci");
            let _ = fs::remove_dir_all(&cold_store);
            let _ = fs::remove_dir_all(&cold_oci);
            if r.op == "pull" && !seeded {
                seed(&reg)?;
                seeded = true;
            }
            let mut cmd = match (r.op, r.temp, r.tool) {
                ("pull", t, "minnow") => {
                    let store = if t == "cold" {
                        &cold_store
                    } else {
                        &warm_store
                    };
                    let mut c = Command::new(&minnow);
                    c.args(["image", "pull", &src(&host), "--store"]).arg(store);
                    c
                }
                ("pull", t, _) => {
                    let dir = if t == "cold" { &cold_oci } else { &warm_oci };
                    let mut c = Command::new("skopeo");
                    c.args(["copy", "--src-tls-verify=false"])
                        .arg(format!("docker://{}", src(&host)))
                        .arg(format!("oci:{}:bench", dir.display()));
                    c
                }
                ("push", t, tool) => {
                    if t == "cold" {
                        // An empty registry on a new port, not seeded: skopeo's blob-info
                        // cache knows of no copy there to mount, so both upload every blob.
                        reg.stop();
                        reg = Reg::start(&work.join("registry"))?;
                        seeded = false;
                    }
                    let host = reg.host();
                    let dest = format!("{host}/bench/{tool}:1");
                    let mut c = if tool == "minnow" {
                        let mut c = Command::new(&minnow);
                        c.args(["image", "push", "bench", &dest, "--store"])
                            .arg(&push_store);
                        c
                    } else {
                        let mut c = Command::new("skopeo");
                        c.args(["copy", "--dest-tls-verify=false"])
                            .arg(format!("oci:{}:bench", layout.display()))
                            .arg(format!("docker://{dest}"));
                        c
                    };
                    if t == "warm" {
                        // The image is there already (pushed once, untimed, if need be).
                        let mut first = Command::new(c.get_program());
                        first.args(c.get_args());
                        run(&mut first)?;
                    }
                    c.stdout(Stdio::null());
                    c
                }
                _ => unreachable!("rows are made above"),
            };
            if r.describe.is_empty() {
                r.describe = format!("{cmd:?}").replace('"', "");
            }
            match time(&mut cmd) {
                Ok(ms) if timed => r.samples.push(ms),
                Ok(_) => {}
                Err(e) => r.failures.push(e),
            }
        }
        if timed {
            eprintln!("bench registry: round {round}/{} done", a.runs);
        }
    }
    drop(reg);
    let report = report(&a, &rows, t0.elapsed().as_secs_f64(), &layout);
    let md = markdown(&report);
    fs::write(a.out.join("registry.md"), &md).map_err(|e| e.to_string())?;
    fs::write(
        a.out.join("registry.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    )
    .map_err(|e| e.to_string())?;
    print!("{md}");
    Ok(if rows.iter().any(|r| !r.failures.is_empty()) {
        1
    } else {
        0
    })
}

fn row(
    key: &'static str,
    name: &'static str,
    op: &'static str,
    temp: &'static str,
    tool: &'static str,
) -> Row {
    Row {
        key,
        name,
        op,
        temp,
        tool,
        describe: String::new(),
        samples: Vec::new(),
        failures: Vec::new(),
    }
}

fn tempfile_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("minnow-bench-registry.")
        .tempdir()
        .map_err(|e| format!("cannot make a work directory: {e}; check /tmp"))
}

fn image_bytes(layout: &Path) -> u64 {
    fs::read_dir(layout.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn report(a: &RegistryArgs, rows: &[Row], elapsed_s: f64, layout: &Path) -> Value {
    let p50 = |key: &str| {
        rows.iter()
            .find(|r| r.key == key)
            .and_then(|r| Stats::of(&r.samples))
            .map(|s| s.p50)
    };
    let json_rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let st = Stats::of(&r.samples);
            let peer = format!("skopeo-{}-{}", r.op, r.temp);
            json!({
                "key": r.key,
                "name": r.name,
                "command": r.describe,
                "status": if r.failures.is_empty() { "ok".to_string() } else { format!("{} failed", r.failures.len()) },
                "available": true,
                "stats_ms": st.as_ref().map(Stats::json),
                "ratio_p50_vs_skopeo": st.and_then(|s| p50(&peer).map(|b| s.p50 / b)),
                "samples_ms": r.samples,
                "failures": r.failures,
            })
        })
        .collect();
    let ratio = |op: &str, temp: &str| {
        Some(p50(&format!("minnow-{op}-{temp}"))? / p50(&format!("skopeo-{op}-{temp}"))?)
    };
    let goals = json!([
        {"goal": "minnow pull, cold: at most 0.5 x skopeo", "value": ratio("pull", "cold"),
         "met": ratio("pull", "cold").map(|r| r <= 0.5)},
        {"goal": "minnow push, cold: at most 0.5 x skopeo", "value": ratio("push", "cold"),
         "met": ratio("push", "cold").map(|r| r <= 0.5)},
        {"goal": "minnow pull, warm: milliseconds (p50 under 50 ms)", "value": p50("minnow-pull-warm"),
         "met": p50("minnow-pull-warm").map(|ms| ms < 50.0)},
    ]);
    json!({
        "bench": "registry",
        "runs": a.runs,
        "image": {"layers": a.layers + 1, "layer_mib": a.layer_mib, "bytes": image_bytes(layout)},
        "where": "on the host; docker-registry on 127.0.0.1 (plain HTTP)",
        "facts": crate::host_facts(),
        "rows": json_rows,
        "goals": goals,
        "elapsed_s": elapsed_s,
    })
}

fn markdown(r: &Value) -> String {
    let f = &r["facts"];
    let mut s = String::from("# minnow bench registry\n\n");
    s += &format!(
        "Pull and push of one image ({} layers, {:.1} MiB, gzip) through docker-registry on 127.0.0.1, {} runs per row, interleaved round-robin; cold = empty store / empty registry, warm = every blob already there.\n",
        r["image"]["layers"],
        r["image"]["bytes"].as_f64().unwrap_or(0.0) / (1u64 << 20) as f64,
        r["runs"]
    );
    s += &format!(
        "{} · kernel {} · {} ({} CPUs) · minnow {} ({}) · {:.0} s\n\n",
        f["date"].as_str().unwrap_or(""),
        f["kernel"].as_str().unwrap_or(""),
        f["cpu"].as_str().unwrap_or(""),
        f["nproc"],
        f["minnow"].as_str().unwrap_or(""),
        f["git_commit"].as_str().unwrap_or(""),
        r["elapsed_s"].as_f64().unwrap_or(0.0)
    );
    s += "| row | n | p50 ms | p90 ms | min ms | max ms | p50 / skopeo |\n";
    s += "| --- | --: | --: | --: | --: | --: | --: |\n";
    for row in r["rows"].as_array().into_iter().flatten() {
        let st = &row["stats_ms"];
        let ratio = row["ratio_p50_vs_skopeo"]
            .as_f64()
            .map_or("—".to_string(), |x| format!("{x:.2}"));
        if st.is_null() {
            s += &format!(
                "| {} | 0 | — | — | — | — | {} |\n",
                row["name"].as_str().unwrap_or(""),
                row["status"].as_str().unwrap_or("")
            );
        } else {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
                row["name"].as_str().unwrap_or(""),
                st["n"],
                st["p50"].as_f64().unwrap_or(0.0),
                st["p90"].as_f64().unwrap_or(0.0),
                st["min"].as_f64().unwrap_or(0.0),
                st["max"].as_f64().unwrap_or(0.0),
                ratio
            );
        }
    }
    for row in r["rows"].as_array().into_iter().flatten() {
        if let Some(first) = row["failures"].as_array().and_then(|f| f.first()) {
            s += &format!(
                "\n- {}: {}; first: {}",
                row["name"].as_str().unwrap_or(""),
                row["status"].as_str().unwrap_or(""),
                first.as_str().unwrap_or("")
            );
        }
    }
    s += "\n\nGoals:\n";
    for g in r["goals"].as_array().into_iter().flatten() {
        let met = match g["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        };
        s += &format!(
            "- {}: {} ({met})\n",
            g["goal"].as_str().unwrap_or(""),
            g["value"]
                .as_f64()
                .map_or("—".into(), |v| format!("{v:.2}"))
        );
    }
    s
}
