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

use crate::error::{Error, Result};

/// A set-up step's result: its message is one line.
type Step<T> = std::result::Result<T, String>;
use crate::report::{Facts, Report, Row};

pub const TITLE: &str = "Registry pull and push: minnow vs skopeo, cold and warm";

/// A set-up step that failed (the bench's one-line error).
fn setup(what: String) -> Error {
    let fix =
        if what.contains("docker-registry") || what.contains("skopeo") || what.contains("umoci") {
            "run scripts/install-deps.sh (docker-registry, skopeo, umoci)"
        } else {
            "see the message; the bench uses a temporary directory under /tmp"
        };
    Error::missing(what, fix)
}

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
    /// Output directory: registry.md, registry.json, registry.csv, registry.svg.
    #[arg(long, default_value = "bench/results/registry")]
    pub out: PathBuf,
}

/// One measured command, minnow's or skopeo's.
struct Timed {
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
    fn start(dir: &Path) -> Step<Reg> {
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
    fn restart_empty(&mut self) -> Step<()> {
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

fn sh(cmd: &mut Command) -> Step<()> {
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
fn make_image(a: &RegistryArgs, minnow: &Path, work: &Path) -> Step<PathBuf> {
    let store = work.join("seed-store");
    let layout = work.join("layout");
    sh(Command::new(minnow)
        .args(["image", "import", "--default", "--store"])
        .arg(&store))?;
    sh(Command::new("skopeo")
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
        sh(Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&tar)
            .arg("."))?;
        sh(Command::new("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(format!("{}:bench", layout.display()))
            .arg(&tar))?;
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_file(&tar);
    }
    Ok(layout)
}

/// A plain client's cold push, for scale: one curl per blob, all at once, each a POST and a
/// monolithic `PUT ?digest=` streamed from the file (no `Expect: 100-continue`), then the
/// manifest: the fewest requests that make the image, with no HEAD checks. `$1` the blob directory, `$2` HOST:PORT, `$3` the manifest's hex digest.
const CURL_PUSH: &str = r#"set -e
R="http://$2/v2/bench/curl"; pids=""
for f in "$1"/*; do
  d=${f##*/}; [ "$d" = "$3" ] && continue
  ( loc=$(curl -fsS -o /dev/null -D - -X POST -H 'Content-Length: 0' "$R/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $loc in /*) loc="http://$2$loc";; esac
    case $loc in *\?*) q='&';; *) q='?';; esac
    curl -fsS -o /dev/null -H 'Expect:' -T "$f" "$loc${q}digest=sha256:$d" ) &
  pids="$pids $!"
done
for p in $pids; do wait "$p"; done
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$1/$3" "$R/manifests/1"
"#;

/// The hex digest of the one manifest in an OCI layout's index.json.
fn manifest_hex(layout: &Path) -> Step<String> {
    let path = layout.join("index.json");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    index["manifests"][0]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no sha256 manifest digest", path.display()))
}

fn time(cmd: &mut Command) -> Step<f64> {
    let t = Instant::now();
    sh(cmd)?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub fn run(a: &RegistryArgs) -> Result<Report> {
    measure(a).map_err(setup)
}

fn measure(a: &RegistryArgs) -> Step<Report> {
    let t0 = Instant::now();
    for tool in ["docker-registry", "skopeo", "umoci", "tar", "curl"] {
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
    let layout = make_image(a, &minnow, work)?;
    let mut reg = Reg::start(&work.join("registry"))?;
    let src = |host: &str| format!("{host}/bench/image:1");
    let seed = |reg: &Reg| {
        sh(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bench", layout.display()))
            .arg(format!("docker://{}", src(&reg.host()))))
    };
    seed(&reg)?;
    let mut seeded = true;
    // The store minnow pushes from: the layout copied in by skopeo (no registry source
    // annotation, so a push uploads instead of mounting).
    let push_store = work.join("push-store");
    sh(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("oci:{}:bench", push_store.display())))?;

    let manifest_hex = manifest_hex(&push_store)?;
    let mut rows: Vec<Timed> = vec![
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
            "curl-push-cold",
            "curl, every blob at once (POST + PUT), then the manifest, cold",
            "push",
            "cold",
            "curl",
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
                    } else if tool == "curl" {
                        let mut c = Command::new("sh");
                        c.args(["-c", CURL_PUSH, "curl-push"])
                            .arg(push_store.join("blobs/sha256"))
                            .arg(&host)
                            .arg(&manifest_hex);
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
                        sh(&mut first)?;
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
    Ok(report(
        a,
        rows,
        t0.elapsed().as_secs_f64(),
        &layout,
        &minnow,
    ))
}

fn row(
    key: &'static str,
    name: &'static str,
    op: &'static str,
    temp: &'static str,
    tool: &'static str,
) -> Timed {
    Timed {
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

fn tempfile_dir() -> Step<tempfile::TempDir> {
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

fn report(
    a: &RegistryArgs,
    rows: Vec<Timed>,
    elapsed_s: f64,
    layout: &Path,
    minnow: &Path,
) -> Report {
    let mut r = Report::new("registry", TITLE, Facts::here(Some(minnow)));
    r.summary = format!(
        "Pull and push of one image ({} layers, {:.1} MiB, gzip) through docker-registry on 127.0.0.1 (plain HTTP), {} runs per row, interleaved round-robin; cold = empty store / empty registry, warm = every blob already there.",
        a.layers + 1,
        image_bytes(layout) as f64 / (1u64 << 20) as f64,
        a.runs
    );
    r.param("runs", a.runs);
    r.param("layers", a.layers + 1);
    r.param("layer_mib", a.layer_mib);
    r.param("image_bytes", image_bytes(layout));
    for x in rows {
        let row = Row::new(x.key, x.name, "ms").with_command(x.describe);
        r.rows.push(row.measured(x.samples, x.failures, true));
    }
    for (op, temp) in [
        ("pull", "cold"),
        ("pull", "warm"),
        ("push", "cold"),
        ("push", "warm"),
    ] {
        r.compare(
            &format!("{op}-{temp}"),
            &format!("minnow {op}, {temp} / skopeo"),
            &format!("minnow-{op}-{temp}"),
            &format!("skopeo-{op}-{temp}"),
            "below 1: minnow is faster",
        );
    }
    r.compare(
        "push-cold-curl",
        "curl, cold / skopeo",
        "curl-push-cold",
        "skopeo-push-cold",
        "below 1: the plain curl uploads are faster",
    );
    r.compare(
        "push-cold-minnow-curl",
        "minnow push, cold / curl",
        "minnow-push-cold",
        "curl-push-cold",
        "below 1: minnow is faster than the plain curl uploads",
    );
    let ratio = |r: &Report, id: &str| r.comparison(id).and_then(|c| c.ratio);
    let (pc, uc) = (ratio(&r, "pull-cold"), ratio(&r, "push-cold"));
    r.goal(
        "registry.pull-cold",
        "minnow pull, cold, / skopeo copy",
        "issue 14",
        pc,
        "",
        "<=",
        0.5,
    );
    r.goal(
        "registry.push-cold",
        "minnow push, cold, / skopeo copy",
        "issue 14",
        uc,
        "",
        "<=",
        0.5,
    );
    r.goal_p50(
        "minnow-pull-warm",
        "minnow pull, warm: milliseconds",
        "issue 14",
        "<",
        50.0,
    );
    r.notes.push("Cold pushes go to an empty registry restarted on a new port and not seeded, so neither tool can mount a blob (skopeo's blob-info cache knows no copy there).".into());
    r.notes.push("curl row: the fewest requests that make the image (one curl per blob, all at once: POST, then a monolithic PUT ?digest= streamed from the file; then the manifest), for scale. It is no lower bound: each blob costs two curl processes. docker-registry reads each body 32 KiB at a time, hashes and writes it, and fsyncs it at the end; minnow's own CPU for a cold push is ~60 ms (user + sys, mostly sys: reading blobs, writing sockets), so most of its time is spent waiting for the registry's work on 2 shared cores.".into());
    r.elapsed_s = elapsed_s;
    r.settle();
    r
}
