//! Registries end to end: Debian's `docker-registry` (the CNCF distribution registry) on
//! 127.0.0.1, started by each test with its own config and storage, three ways (plain
//! HTTP, basic auth with htpasswd, TLS with a CA the test makes); `skopeo`, `umoci` and
//! Podman (with runc) as the peer clients in both directions. Needs root (containers),
//! and the tools scripts/install-deps.sh installs; a missing tool fails, never skips.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest as _;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Plain,
    Basic,
    Tls,
}

const USER: &str = "minnow-test";
const PASSWORD: &str = "pa55-w0rd-not-to-be-printed";

/// A docker-registry on 127.0.0.1 with its own config and storage; killed on drop.
struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    kind: Kind,
    child: Child,
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{name} is not installed: the registry tests need it; run scripts/install-deps.sh"
    );
    let mut c = Command::new(name);
    c.stdin(Stdio::null());
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{cmd:?} failed: {o}{e}");
    o
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Registry {
    fn start(kind: Kind) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            d.join("storage").display()
        );
        match kind {
            Kind::Plain => {}
            Kind::Basic => {
                ok(tool("htpasswd")
                    .args(["-Bbc"])
                    .arg(d.join("htpasswd"))
                    .args([USER, PASSWORD]));
                config += &format!(
                    "auth: {{htpasswd: {{realm: minnow-test, path: {}}}}}\n",
                    d.join("htpasswd").display()
                );
            }
            Kind::Tls => {
                make_certs(d);
                config += &format!(
                    "  tls: {{certificate: {}, key: {}}}\n",
                    d.join("server.crt").display(),
                    d.join("server.key").display()
                );
            }
        }
        fs::write(d.join("config.yml"), config).unwrap();
        let child = tool("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("log")).unwrap())
            .spawn()
            .unwrap();
        wait_listening(port);
        Registry {
            dir,
            port,
            kind,
            child,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's CA (TLS) as skopeo wants it: a directory with ca.crt.
    fn cert_dir(&self) -> PathBuf {
        self.path().join("certs.d")
    }

    /// skopeo's flags for this registry as source (`src`) or destination (`dest`).
    fn skopeo_flags(&self, side: &str) -> Vec<String> {
        match self.kind {
            Kind::Plain => vec![format!("--{side}-tls-verify=false")],
            Kind::Basic => vec![
                format!("--{side}-tls-verify=false"),
                format!("--{side}-creds={USER}:{PASSWORD}"),
            ],
            Kind::Tls => vec![format!("--{side}-cert-dir={}", self.cert_dir().display())],
        }
    }

    /// The file the registry serves a blob from.
    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
fn make_certs(d: &Path) {
    let o = |args: &[&str]| {
        ok(tool("openssl").current_dir(d).args(args));
    };
    o(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=minnow test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    o(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    o(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    fs::create_dir_all(d.join("certs.d")).unwrap();
    fs::copy(d.join("ca.crt"), d.join("certs.d/ca.crt")).unwrap();
}

/// A minnow store and the environment minnow runs in (its own Docker config dir).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        assert!(
            fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
            "registry tests need root (containers)"
        );
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("docker")).unwrap();
        Env { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    fn minnow(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "300", env!("CARGO_BIN_EXE_minnow")]);
        c.args(args);
        c.env("MINNOW_STORE", self.store());
        c.env("DOCKER_CONFIG", self.docker_config());
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.minnow(args).output().unwrap();
        let (o, e) = text(&out);
        (out.status.success(), o, e)
    }

    fn must(&self, args: &[&str]) -> String {
        let (good, o, e) = self.run(args);
        assert!(good, "minnow {args:?} failed:\n{o}{e}");
        o
    }

    /// A failing command: exit 1, one stderr line `minnow: error: <what>; <fix>`,
    /// nothing on stdout, no password anywhere.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.minnow(args).output().unwrap();
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(1), "minnow {args:?}: {o}{e}");
        assert_eq!(o, "", "nothing on stdout");
        assert_eq!(e.lines().count(), 1, "one stderr line: {e}");
        assert!(e.starts_with("minnow: error: ") && e.contains("; "), "{e}");
        assert!(!e.contains(PASSWORD) && !e.contains("panicked"), "{e}");
        e
    }

    fn index(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.store().join("index.json")).unwrap()).unwrap()
    }

    fn names(&self) -> Vec<String> {
        self.index()["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .map(String::from)
            .collect()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.must(&["image", "inspect", name])).unwrap()
    }

    /// Verified blobs waiting in `incoming/` (each checked: its content hashes to its name).
    fn incoming(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = fs::read_dir(self.store().join("incoming/sha256")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let hex = hex::encode(sha2::Sha256::digest(fs::read(e.path()).unwrap()));
                assert_eq!(hex, name, "an unverified blob in incoming/");
                v.push(name);
            }
        }
        v
    }

    /// Files left in the store's tmp/.
    fn tmp_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.store().join("tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Pseudo-random, incompressible bytes (xorshift), so layer sizes are real sizes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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

/// An OCI layout `L:multi`: minnow's busybox plus two layers (`umoci raw add-layer`):
/// the first adds /data/{a,b}, /opq/old and `big_mib` MiB in /big1; the second deletes
/// /data/a (a whiteout), makes /opq opaque with only /opq/new, and adds /big2.
fn multi_layer_layout(env: &Env, big_mib: usize) -> PathBuf {
    let w = env.dir.path().join("layout-work");
    let layout = env.dir.path().join("layout");
    for d in ["l1/data", "l1/opq", "l2/data", "l2/opq"] {
        fs::create_dir_all(w.join(d)).unwrap();
    }
    fs::write(w.join("l1/data/a"), "A\n").unwrap();
    fs::write(w.join("l1/data/b"), "B\n").unwrap();
    fs::write(w.join("l1/opq/old"), "old\n").unwrap();
    fs::write(w.join("l1/big1"), noise(big_mib << 20, 1)).unwrap();
    fs::write(w.join("l2/data/.wh.a"), "").unwrap();
    fs::write(w.join("l2/opq/.wh..wh..opq"), "").unwrap();
    fs::write(w.join("l2/opq/new"), "new\n").unwrap();
    fs::write(w.join("l2/big2"), noise(big_mib << 20, 2)).unwrap();
    env.must(&["image", "import", "--default"]);
    ok(tool("skopeo").args([
        "copy",
        &format!("oci:{}:busybox", env.store().display()),
        &format!("oci:{}:multi", layout.display()),
    ]));
    for l in ["l1", "l2"] {
        let tar = w.join(format!("{l}.tar"));
        ok(tool("tar")
            .arg("-C")
            .arg(w.join(l))
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        ok(tool("umoci")
            .args(["raw", "add-layer", "--image"])
            .arg(format!("{}:multi", layout.display()))
            .arg(&tar));
    }
    layout
}

/// `skopeo inspect`'s manifest digest of a registry image.
fn skopeo_digest(reg: &Registry, reference: &str) -> String {
    let mut c = tool("skopeo");
    c.arg("inspect").arg("--format").arg("{{.Digest}}");
    let flags: Vec<String> = reg
        .skopeo_flags("src")
        .into_iter()
        .map(|f| f.replace("--src-", "--"))
        .collect();
    c.args(flags)
        .arg(format!("docker://{}/{reference}", reg.host()));
    ok(&mut c).trim().to_string()
}

/// Copies `src` (a skopeo source) to the registry as `reference`.
fn skopeo_push(reg: &Registry, src: &str, reference: &str, extra: &[&str]) {
    let mut c = tool("skopeo");
    c.arg("copy").args(reg.skopeo_flags("dest")).args(extra);
    c.arg(src)
        .arg(format!("docker://{}/{reference}", reg.host()));
    ok(&mut c);
}

/// `container run IMAGE -- sh -c SCRIPT`, which must succeed; its stdout.
fn run_in(env: &Env, image: &str, script: &str) -> String {
    env.must(&["container", "run", image, "--", "sh", "-c", script])
}

/// Plain HTTP on loopback: skopeo pushes busybox (gzip) and the multi-layer image with
/// whiteouts and an opaque directory (and a zstd copy); minnow pulls them with the same
/// digests and runs them; minnow pushes (HEAD first, mounts across repositories, only
/// missing blobs) and skopeo and Podman pull it with the same digest, Podman running it
/// with runc.
#[test]
fn plain_http_both_ways_with_skopeo_and_podman() {
    let reg = Registry::start(Kind::Plain);
    let env = Env::new();
    let layout = multi_layer_layout(&env, 2);
    let host = reg.host();
    let store_src = format!("oci:{}:busybox", env.store().display());
    skopeo_push(
        &reg,
        &store_src,
        "team/bb:1",
        &["--dest-compress-format", "gzip", "--dest-compress"],
    );
    skopeo_push(
        &reg,
        &format!("oci:{}:multi", layout.display()),
        "team/multi:1",
        &[],
    );
    // zstd layers: recompressed into a layout of their own first (a copy straight to
    // the registry would reuse the gzip blobs it already has).
    let zstd = env.dir.path().join("zstd-layout");
    ok(tool("skopeo")
        .args(["copy", "--dest-compress-format", "zstd", "--dest-compress"])
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("oci:{}:multi", zstd.display())));
    skopeo_push(
        &reg,
        &format!("oci:{}:multi", zstd.display()),
        "team/multi:zstd",
        &[],
    );

    // Pull: named by the reference as given, same digest as skopeo sees, runs.
    let bb = format!("{host}/team/bb:1");
    let out = env.must(&["image", "pull", &bb]);
    assert!(out.starts_with(&format!("pulled {bb} sha256:")), "{out}");
    let inspect = env.inspect(&bb);
    assert_eq!(inspect["digest"], skopeo_digest(&reg, "team/bb:1"));
    assert_eq!(inspect["source"], format!("{host}/team/bb"));
    assert!(inspect["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("gzip"));
    assert!(env.must(&["image", "ls"]).contains(&bb));
    assert_eq!(
        run_in(
            &env,
            &bb,
            "echo hello from $(busybox | head -1 | cut -d' ' -f1)"
        ),
        "hello from BusyBox\n"
    );

    for tag in ["1", "zstd"] {
        let multi = format!("{host}/team/multi:{tag}");
        env.must(&["image", "pull", &multi]);
        let i = env.inspect(&multi);
        assert_eq!(
            i["digest"],
            skopeo_digest(&reg, &format!("team/multi:{tag}"))
        );
        assert_eq!(i["layers"].as_array().unwrap().len(), 3);
        if tag == "zstd" {
            assert!(
                i["layers"][1]["mediaType"]
                    .as_str()
                    .unwrap()
                    .ends_with("+zstd"),
                "{i}"
            );
        }
        let seen = run_in(
            &env,
            &multi,
            "ls /data; ls /opq; cat /data/b; wc -c < /big1; wc -c < /big2",
        );
        assert_eq!(
            seen, "b\nnew\nB\n2097152\n2097152\n",
            "{multi}: whiteout and opaque dir"
        );
    }

    // Pull again: nothing fetched (everything is in the store).
    let again = env.must(&["image", "pull", &bb]);
    assert!(again.contains("fetched 0 blobs"), "{again}");

    // A pull by digest, under another name.
    let digest = inspect["digest"].as_str().unwrap().to_string();
    env.must(&[
        "image",
        "pull",
        &format!("{host}/team/bb@{digest}"),
        "--name",
        "bb-by-digest",
    ]);
    assert_eq!(env.inspect("bb-by-digest")["digest"], digest.as_str());

    // Push: to another repository of the same registry the blobs are mounted.
    let out = env.must(&["image", "push", &bb, &format!("{host}/other/bb:2")]);
    assert!(
        out.contains("0 uploaded") && out.contains("2 mounted"),
        "{out}"
    );
    assert_eq!(skopeo_digest(&reg, "other/bb:2"), digest);
    // Pushing again finds every blob there (HEAD) and uploads nothing.
    let out = env.must(&["image", "push", &bb, &format!("{host}/other/bb:2")]);
    assert!(
        out.contains("0 uploaded") && out.contains("0 mounted") && out.contains("2 present"),
        "{out}"
    );

    // Push of minnow's own image (uncompressed layers), then skopeo and Podman pull it.
    env.must(&["image", "tag", "busybox", "mine:1"]);
    let mine = format!("{host}/team/mine:1");
    let out = env.must(&["image", "push", "mine:1", &mine]);
    assert!(out.contains("2 uploaded"), "{out}");
    let mine_digest = env.inspect("mine:1")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(skopeo_digest(&reg, "team/mine:1"), mine_digest);
    let copy = env.dir.path().join("skopeo-copy");
    // (`dir:` keeps blobs as they come; an `oci:` destination would compress them.)
    ok(tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{mine}"))
        .arg(format!("dir:{}", copy.display())));
    let copied = hex::encode(sha2::Sha256::digest(
        fs::read(copy.join("manifest.json")).unwrap(),
    ));
    assert_eq!(format!("sha256:{copied}"), mine_digest);

    let w = env.dir.path().join("podman");
    let podman = |args: &[&str]| {
        let mut c = tool("podman");
        c.arg("--root")
            .arg(w.join("root"))
            .arg("--runroot")
            .arg(w.join("runroot"));
        c.args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
        c.args(args);
        c
    };
    ok(&mut podman(&["pull", "--tls-verify=false", &mine]));
    let pd = ok(&mut podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        &mine,
    ]));
    assert_eq!(pd.trim(), mine_digest);
    let runc = ok(Command::new("sh").args(["-c", "command -v runc"]))
        .trim()
        .to_string();
    let said = ok(&mut podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--runtime",
        &runc,
        &mine,
        "sh",
        "-c",
        "echo podman runs the push of minnow",
    ]));
    assert_eq!(said, "podman runs the push of minnow\n");
    let _ = podman(&["rmi", "-a", "-f"]).output();

    // The tag moves (skopeo pushes the multi-layer image over it): a pull that has every
    // blob asks the registry first, so it names the new manifest, not the old one.
    skopeo_push(
        &reg,
        &format!("oci:{}:multi", layout.display()),
        "team/bb:1",
        &[],
    );
    let out = env.must(&["image", "pull", &bb]);
    assert!(out.contains("fetched 0 blobs"), "{out}");
    assert_eq!(env.inspect(&bb)["digest"], skopeo_digest(&reg, "team/bb:1"));
    assert_ne!(env.inspect(&bb)["digest"], digest.as_str());
}

/// Basic auth (htpasswd): anonymous pulls get 401 and are told to log in; a wrong
/// password is refused and stores nothing; `login` stores the credentials in Docker's
/// config.json (never printing them); pull and push work; `logout` removes them.
#[test]
fn basic_auth_login_pull_push_logout() {
    let reg = Registry::start(Kind::Basic);
    let env = Env::new();
    let host = reg.host();
    env.must(&["image", "import", "--default"]);
    skopeo_push(
        &reg,
        &format!("oci:{}:busybox", env.store().display()),
        "team/bb:1",
        &[],
    );
    let bb = format!("{host}/team/bb:1");

    let e = env.fails(&["image", "pull", &bb]);
    assert!(
        e.contains("401") && e.contains(&format!("minnow login {host}")),
        "{e}"
    );
    assert!(!env.names().contains(&bb));

    let login = |password: &str| {
        let mut c = env.minnow(&["login", &host, "-u", USER, "--password-stdin"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong");
    let (o, e) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{o}{e}");
    assert!(
        e.contains("refused the credentials") && !e.contains("wrong"),
        "{e}"
    );
    assert!(!env.docker_config().join("config.json").exists());

    let good = login(PASSWORD);
    let (o, e) = text(&good);
    assert!(good.status.success(), "{o}{e}");
    assert!(!o.contains(PASSWORD) && !e.contains(PASSWORD));
    let conf: serde_json::Value =
        serde_json::from_slice(&fs::read(env.docker_config().join("config.json")).unwrap())
            .unwrap();
    let auth = conf["auths"][&host]["auth"].as_str().unwrap().to_string();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    assert_eq!(decoded, format!("{USER}:{PASSWORD}").as_bytes());

    let (good_pull, o, e) = env.run(&["--log-level", "debug", "image", "pull", &bb]);
    assert!(good_pull, "{o}{e}");
    assert!(
        !o.contains(PASSWORD) && !e.contains(PASSWORD),
        "the password was printed"
    );
    assert_eq!(env.inspect(&bb)["digest"], skopeo_digest(&reg, "team/bb:1"));
    let out = env.must(&["image", "push", &bb, &format!("{host}/team/pushed:1")]);
    assert!(out.starts_with("pushed"), "{out}");
    assert_eq!(
        skopeo_digest(&reg, "team/pushed:1"),
        env.inspect(&bb)["digest"].as_str().unwrap()
    );

    assert!(env.must(&["logout", &host]).contains("logged out"));
    let conf = fs::read_to_string(env.docker_config().join("config.json")).unwrap();
    assert!(!conf.contains(&host), "{conf}");
    let e = env.fails(&["image", "pull", &format!("{host}/team/pushed:1")]);
    assert!(e.contains("minnow login"), "{e}");
}

/// TLS with a private CA: refused without `--ca-file` (the error says `--ca-file` and
/// `--insecure`), works with it and with `--insecure`; skopeo pulls minnow's push.
#[test]
fn tls_with_a_private_ca() {
    let reg = Registry::start(Kind::Tls);
    let env = Env::new();
    let host = reg.host();
    env.must(&["image", "import", "--default"]);
    skopeo_push(
        &reg,
        &format!("oci:{}:busybox", env.store().display()),
        "team/bb:1",
        &[],
    );
    let bb = format!("{host}/team/bb:1");
    let ca = reg.path().join("ca.crt");
    let ca = ca.to_str().unwrap();

    let e = env.fails(&["image", "pull", &bb]);
    assert!(
        e.contains("TLS") && e.contains("--ca-file") && e.contains("--insecure"),
        "{e}"
    );
    env.must(&["image", "pull", &bb, "--ca-file", ca]);
    assert_eq!(env.inspect(&bb)["digest"], skopeo_digest(&reg, "team/bb:1"));
    env.must(&[
        "image",
        "pull",
        &bb,
        "--insecure",
        "--name",
        "insecure-copy",
    ]);
    assert_eq!(run_in(&env, &bb, "echo tls"), "tls\n");

    let out = env.must(&[
        "image",
        "push",
        "busybox",
        &format!("{host}/team/mine:1"),
        "--ca-file",
        ca,
    ]);
    assert!(out.contains("uploaded"), "{out}");
    assert_eq!(
        skopeo_digest(&reg, "team/mine:1"),
        env.inspect("busybox")["digest"].as_str().unwrap()
    );
    let bogus = env.dir.path().join("bogus.pem");
    fs::write(&bogus, "not a certificate").unwrap();
    let e = env.fails(&["image", "pull", &bb, "--ca-file", bogus.to_str().unwrap()]);
    assert!(e.contains("--ca-file"), "{e}");
}

/// A TCP proxy to 127.0.0.1:`to` that passes registry answers at about `bytes_per_sec`,
/// so a test can stop a pull midway. Stops when dropped.
struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(to: u16, bytes_per_sec: usize) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (mut c_in, mut u_out) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut u_out);
                    let _ = u_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut u_in, mut c_out, s2) = (upstream, client, s.clone());
                std::thread::spawn(move || {
                    let chunk = 16 << 10;
                    let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
                    let mut buf = vec![0u8; chunk];
                    while !s2.load(Ordering::Relaxed) {
                        match u_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c_out.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                std::thread::sleep(pause);
                            }
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowProxy { port, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A pull killed midway names nothing and leaves no partial file, only verified blobs;
/// the next pull fetches only the rest. A registry serving a blob whose content does not
/// match its digest gets a one-line error and nothing of it is stored.
#[test]
fn interrupted_pull_and_corrupt_blob() {
    let reg = Registry::start(Kind::Plain);
    let env = Env::new();
    let layout = multi_layer_layout(&env, 6);
    skopeo_push(
        &reg,
        &format!("oci:{}:multi", layout.display()),
        "team/multi:1",
        &[],
    );
    let proxy = SlowProxy::start(reg.port, 8 << 20);
    let fresh = Env::new();
    let name = format!("127.0.0.1:{}/team/multi:1", proxy.port);
    let mut pull = fresh.minnow(&["image", "pull", &name, "--jobs", "1"]);
    let mut child = pull
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a layer (over 1 MiB) is verified, then kill the pull.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let big = fs::read_dir(fresh.store().join("incoming/sha256"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
            })
            .unwrap_or(false);
        if big {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        assert!(Instant::now() < until, "no layer was verified in 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !fresh.names().contains(&name),
        "a killed pull named the image"
    );
    let verified = fresh.incoming();
    assert!(
        verified.len() >= 2,
        "manifest and a layer were verified: {verified:?}"
    );
    drop(proxy);
    // The next pull (straight to the registry) reuses them and removes the partial file.
    let direct = format!("{}/team/multi:1", reg.host());
    let out = fresh.must(&["image", "pull", &direct]);
    let fetched: usize = out
        .split("fetched ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(fetched < 4, "config + 3 layers, some reused: {out}");
    assert!(
        fresh.tmp_files().is_empty(),
        "partial downloads left: {:?}",
        fresh.tmp_files()
    );
    assert!(fresh.incoming().is_empty(), "named blobs left incoming/");
    assert_eq!(
        run_in(&fresh, &direct, "ls /data; wc -c < /big2"),
        "b\n6291456\n"
    );

    // Corrupt the registry's copy of the last layer (same size, one byte changed).
    let i = fresh.inspect(&direct);
    let last = i["layers"][2]["digest"].as_str().unwrap().to_string();
    let data = reg.blob_data(&last);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let victim = Env::new();
    let e = victim.fails(&["image", "pull", &direct]);
    assert!(
        e.contains("digest mismatch") && e.contains(&last) && e.contains("nothing was stored"),
        "{e}"
    );
    assert!(!victim.names().contains(&direct));
    assert!(!victim
        .incoming()
        .contains(&last.trim_start_matches("sha256:").to_string()));
    assert!(!victim
        .store()
        .join("blobs/sha256")
        .join(last.trim_start_matches("sha256:"))
        .exists());
    assert!(victim.tmp_files().is_empty(), "{:?}", victim.tmp_files());
}

/// Every registry error is one line with its fix, and a failed pull names nothing:
/// unknown host, nothing listening, unknown tag (the error names the reference), a
/// platform the index lacks (it lists those it has), a full disk; and `container run`
/// of a missing registry image pulls it first.
#[test]
fn errors_are_one_line_and_run_pulls() {
    let reg = Registry::start(Kind::Plain);
    let env = Env::new();
    let host = reg.host();
    env.must(&["image", "import", "--default"]);
    skopeo_push(
        &reg,
        &format!("oci:{}:busybox", env.store().display()),
        "team/bb:1",
        &[],
    );
    let before = env.names();

    // Unknown host, in a network namespace of its own (no resolver is reachable there).
    let out = Command::new("unshare")
        .args([
            "-n",
            env!("CARGO_BIN_EXE_minnow"),
            "image",
            "pull",
            "no-such-host.invalid/x:1",
        ])
        .env("MINNOW_STORE", env.store())
        .env("DOCKER_CONFIG", env.docker_config())
        .output()
        .unwrap();
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("cannot resolve registry host no-such-host.invalid") && e.lines().count() == 1,
        "{e}"
    );

    let e = env.fails(&["image", "pull", &format!("127.0.0.1:{}/x:1", free_port())]);
    assert!(e.contains("cannot connect to registry"), "{e}");
    let e = env.fails(&["image", "pull", &format!("{host}/team/bb:nope")]);
    assert!(
        e.contains(&format!("{host}/team/bb:nope not found")) && e.contains("404"),
        "{e}"
    );
    let e = env.fails(&[
        "image",
        "pull",
        &format!("{host}/team/bb:1"),
        "--platform",
        "linux/arm64",
    ]);
    assert!(
        e.contains("linux/arm64"),
        "a single-platform image is amd64: {e}"
    );

    // An index with only arm64 and s390x entries.
    let layout = env.dir.path().join("index-layout");
    ok(tool("skopeo")
        .args(["copy"])
        .arg(format!("oci:{}:busybox", env.store().display()))
        .arg(format!("oci:{}:one", layout.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    let entry = |arch: &str| serde_json::json!({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"], "platform": {"os": "linux", "architecture": arch}});
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry("arm64"), entry("s390x")]});
    let bytes = serde_json::to_vec(&idx).unwrap();
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    fs::write(layout.join("blobs/sha256").join(&hex), &bytes).unwrap();
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    skopeo_push(
        &reg,
        &format!("oci:{}:multi", layout.display()),
        "team/arm:1",
        &["--all"],
    );
    let arm = format!("{host}/team/arm:1");
    let e = env.fails(&["image", "pull", &arm]);
    assert!(
        e.contains("no linux/amd64 manifest")
            && e.contains("linux/arm64, linux/s390x")
            && e.contains("--platform"),
        "{e}"
    );
    let out = env.must(&["image", "pull", &arm, "--platform", "linux/s390x"]);
    assert!(out.starts_with("pulled"), "{out}");
    assert_eq!(env.inspect(&arm)["indexDigest"], format!("sha256:{hex}"));
    env.must(&["image", "rm", &arm]);
    assert_eq!(env.names(), before, "failed pulls named nothing");

    // A full disk: the store on a 512 KiB tmpfs (busybox's layer is larger).
    let small = env.dir.path().join("small");
    fs::create_dir(&small).unwrap();
    ok(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "minnow-registry-test"])
        .arg(&small));
    let out = env
        .minnow(&["image", "pull", &format!("{host}/team/bb:1")])
        .env("MINNOW_STORE", &small)
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(&small).status();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}{e}");
    assert!(e.contains("no space left") && e.lines().count() == 1, "{e}");

    // container run of a registry reference the store lacks pulls it, then runs it.
    let fresh = Env::new();
    let bb = format!("{host}/team/bb:1");
    let out = fresh
        .minnow(&["container", "run", &bb, "--", "echo", "pulled and ran"])
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    assert_eq!(
        o, "pulled and ran\n",
        "the pull's line is on stderr, not the workload's stdout"
    );
    assert!(e.contains(&format!("pulled {bb}")), "{e}");
    let out = fresh
        .minnow(&["container", "run", &bb, "--", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && !text(&out).1.contains("pulled"),
        "no second pull"
    );
}

/// A registry with Docker Hub's auth shape, written for this test: `/v2/` answers 401
/// with a bearer challenge whose realm is a token endpoint on the same port; the token
/// endpoint wants HTTP basic credentials and returns a token; manifests and blobs (served
/// from a minnow store, one image) want that token. Every connection is closed after one
/// answer. Records the token requests' query strings.
struct TokenRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    token_queries: Arc<std::sync::Mutex<Vec<String>>>,
}

const TOKEN: &str = "test-token-7f3a";

impl TokenRegistry {
    fn start(store: PathBuf, manifest_digest: String) -> TokenRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, q) = (stop.clone(), queries.clone());
        std::thread::spawn(move || {
            use base64::Engine as _;
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            );
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let mut lines = text.lines();
                let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
                let (method, target) = (
                    first.first().copied().unwrap_or(""),
                    first.get(1).copied().unwrap_or(""),
                );
                let auth = lines
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_string();
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test-registry\",scope=\"repository:team/bb:pull\"\r\n"
                );
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let reply = |status: &str, headers: &str, body: &[u8]| -> Vec<u8> {
                    let mut r = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                        body.len()
                    )
                    .into_bytes();
                    if method != "HEAD" {
                        r.extend_from_slice(body);
                    }
                    r
                };
                let answer = if path == "/token" {
                    q.lock().unwrap().push(query.to_string());
                    if auth == basic {
                        reply(
                            "200 OK",
                            "Content-Type: application/json\r\n",
                            format!("{{\"token\":\"{TOKEN}\"}}").as_bytes(),
                        )
                    } else {
                        reply("401 Unauthorized", "", b"{}")
                    }
                } else if auth != format!("Bearer {TOKEN}") {
                    reply(
                        "401 Unauthorized",
                        &challenge,
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#,
                    )
                } else if path == "/v2/" {
                    reply("200 OK", "", b"{}")
                } else if let Some(reference) = path.strip_prefix("/v2/team/bb/manifests/") {
                    let d = if reference == "1" {
                        manifest_digest.as_str()
                    } else {
                        reference
                    };
                    match fs::read(store.join("blobs/sha256").join(d.trim_start_matches("sha256:"))) {
                        Ok(body) if d == manifest_digest => reply(
                            "200 OK",
                            &format!("Content-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {d}\r\n"),
                            &body,
                        ),
                        _ => reply("404 Not Found", "", br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#),
                    }
                } else if let Some(d) = path.strip_prefix("/v2/team/bb/blobs/") {
                    match fs::read(
                        store
                            .join("blobs/sha256")
                            .join(d.trim_start_matches("sha256:")),
                    ) {
                        Ok(body) => {
                            reply("200 OK", &format!("Docker-Content-Digest: {d}\r\n"), &body)
                        }
                        Err(_) => reply(
                            "404 Not Found",
                            "",
                            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#,
                        ),
                    }
                } else {
                    reply("404 Not Found", "", b"{}")
                };
                let _ = c.write_all(&answer);
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        });
        TokenRegistry {
            port,
            stop,
            token_queries: queries,
        }
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The bearer-token flow (Docker Hub's shape) against the test's token registry: an
/// anonymous pull is told to log in; `login` checks the credentials at the challenge's
/// token endpoint; the pull then gets a token scoped to the repository and runs the image.
#[test]
fn bearer_token_flow() {
    let env = Env::new();
    env.must(&["image", "import", "--default"]);
    let digest = env.inspect("busybox")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let reg = TokenRegistry::start(env.store(), digest.clone());
    let host = format!("127.0.0.1:{}", reg.port);
    let bb = format!("{host}/team/bb:1");
    let fresh = Env::new();
    let e = fresh.fails(&["image", "pull", &bb]);
    assert!(
        e.contains("401") && e.contains(&format!("minnow login {host}")),
        "{e}"
    );

    let login = |password: &str| {
        let mut c = fresh.minnow(&["login", &host, "-u", USER, "--password-stdin"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let bad = login("wrong");
    assert_eq!(bad.status.code(), Some(1), "{:?}", text(&bad));
    assert!(
        text(&bad).1.contains("refused the credentials"),
        "{:?}",
        text(&bad)
    );
    let good = login(PASSWORD);
    assert!(good.status.success(), "{:?}", text(&good));

    let out = fresh.must(&["image", "pull", &bb]);
    assert!(out.starts_with(&format!("pulled {bb} {digest}")), "{out}");
    assert_eq!(run_in(&fresh, &bb, "echo via token"), "via token\n");
    let queries = reg.token_queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("scope=repository%3Ateam%2Fbb%3Apull")
                && q.contains("service=test-registry")),
        "a token scoped to the repository was asked for: {queries:?}"
    );
}
