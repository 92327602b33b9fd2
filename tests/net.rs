//! virtio-net set-up on the host: TAP handling and errors. Each test works inside a
//! network namespace it creates (never the machine's own), with link-local addresses.
//! Moving real traffic needs a Linux guest: that is in the lab (tests/lab/net.sh).

mod common;

use std::process::{Command, Output};

use common::{guest, minnow, run_with_timeout, text};

/// A network namespace that is deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        // Tests run in parallel threads of one process: the counter keeps names apart.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("minnow-{tag}-{}-{n}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name} failed (needs root and iproute2)");
        Netns(name)
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    /// Boots the hello64 guest in this namespace with `--net NET` and `extra` arguments.
    fn run_guest(&self, net: &str, extra: &[&str]) -> Output {
        let k = guest("hello64.elf");
        let m = minnow_path();
        let mut args = vec![m.as_str(), "run", "--kernel", k.to_str().unwrap()];
        args.extend(["--mem-mib", "32", "--net", net]);
        args.extend_from_slice(extra);
        run_with_timeout(self.exec(&args), 30)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn minnow_path() -> String {
    minnow().get_program().to_string_lossy().into_owned()
}

#[test]
fn net_setup_creates_an_addressed_tap_and_a_vm_uses_it() {
    let ns = Netns::new("tap");
    let m = minnow_path();
    let out = ns
        .exec(&[&m, "net", "setup", "mtap0", "--host-ip", "169.254.100.1/30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = ns
        .exec(&["ip", "-o", "addr", "show", "dev", "mtap0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&addr.stdout).contains("169.254.100.1/30"));
    let out = ns.run_guest(
        "tap=mtap0,mac=02:00:00:00:00:09,guest-ip=169.254.100.2/30,host-ip=169.254.100.1/30",
        &["--log-level", "debug"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("hello from 64-bit"));
    assert!(
        stderr.contains("net: mtap0 with MAC 02:00:00:00:00:09"),
        "{stderr}"
    );
    let out = ns.exec(&[&m, "net", "teardown", "mtap0"]).output().unwrap();
    assert!(out.status.success());
    let gone = ns.exec(&["ip", "link", "show", "mtap0"]).output().unwrap();
    assert!(!gone.status.success(), "TAP still there after teardown");
}

#[test]
fn create_makes_a_tap_that_goes_away_with_the_vm() {
    let ns = Netns::new("create");
    let out = ns.run_guest("tap=mtap1,create", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let gone = ns.exec(&["ip", "link", "show", "mtap1"]).output().unwrap();
    assert!(
        !gone.status.success(),
        "a created TAP must not outlive the VM"
    );
}

fn net_error(net: &str) -> String {
    let out = Netns::new("err").run_guest(net, &[]);
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn missing_tap_is_a_clear_error() {
    let e = net_error("tap=nosuchtap");
    assert!(e.contains("TAP device nosuchtap does not exist"), "{e}");
}

#[test]
fn bad_net_options_are_clear_errors() {
    assert!(net_error("tap=abcdefghijklmnopq").contains("longer than 15"));
    assert!(net_error("tap=t0,mac=02:00:00:00:00").contains("malformed"));
    assert!(net_error("tap=t0,mac=01:00:00:00:00:01").contains("multicast"));
}

/// Runs `minnow run --net NET` as user nobody inside `ns` and returns its one error line
/// (after checking the exit code, that there is exactly one error line and no panic).
///
/// Where unprivileged users run VMs, /dev/kvm is theirs through the kvm group and
/// /dev/net/tun is mode 0666 (most distributions); on this host both are root-only, so
/// nobody would stop at /dev/kvm. The command gets copies of both nodes in a private
/// mount namespace (a tmpfs over /dev/shm, bind-mounted over the originals, visible to
/// this command only): /dev/kvm open to all, /dev/net/tun with mode `tun_mode`. Then
/// the only thing nobody lacks is the right to the TAP.
fn unprivileged_error(ns: &Netns, tun_mode: &str, net: &str) -> String {
    const SCRIPT: &str = r#"set -e
ns=$1 tun_mode=$2; shift 2
mount -t tmpfs -o mode=755 minnow-test /dev/shm
mknod -m 666 /dev/shm/kvm c 0x$(stat -c %t /dev/kvm) 0x$(stat -c %T /dev/kvm)
mknod -m "$tun_mode" /dev/shm/tun c 0x$(stat -c %t /dev/net/tun) 0x$(stat -c %T /dev/net/tun)
mount --bind /dev/shm/kvm /dev/kvm
mount --bind /dev/shm/tun /dev/net/tun
exec ip netns exec "$ns" setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
"#;
    let k = guest("hello64.elf");
    let m = minnow_path();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT])
        .args(["sh", &ns.0, tun_mode, &m, "run", "--kernel"])
        .arg(&k)
        .args(["--mem-mib", "32", "--net", net]);
    let out = run_with_timeout(c, 30);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    errors[0].to_string()
}

#[test]
fn unprivileged_user_cannot_create_a_tap_and_is_told_why() {
    let ns = Netns::new("perm");
    let e = unprivileged_error(&ns, "666", "tap=mtapp0,create");
    assert!(
        e.starts_with("minnow: error: creating TAP device mtapp0 needs CAP_NET_ADMIN"),
        "{e}"
    );
    assert!(
        e.contains("run as root")
            && e.contains("ip tuntap add dev mtapp0 mode tap vnet_hdr user 65534")
            && e.contains("drop ,create"),
        "{e}"
    );
    let gone = ns.exec(&["ip", "link", "show", "mtapp0"]).output().unwrap();
    assert!(!gone.status.success(), "no TAP may be left behind");
}

#[test]
fn unprivileged_user_cannot_use_a_tap_of_root_and_is_told_why() {
    let ns = Netns::new("perm2");
    // A TAP without an owner is open to every user who can open /dev/net/tun: this one
    // belongs to root.
    let add = "ip tuntap add dev mtapp1 mode tap vnet_hdr user 0";
    let ok = ns
        .exec(&add.split(' ').collect::<Vec<_>>())
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip tuntap add failed");
    let e = unprivileged_error(&ns, "666", "tap=mtapp1");
    assert!(
        e.starts_with("minnow: error: no permission to use TAP device mtapp1"),
        "{e}"
    );
    assert!(
        e.contains("run as root")
            && e.contains("ip tuntap add dev mtapp1 mode tap vnet_hdr user 65534"),
        "{e}"
    );
}

#[test]
fn root_only_dev_net_tun_is_a_clear_permission_error() {
    let ns = Netns::new("perm3");
    let e = unprivileged_error(&ns, "600", "tap=mtapp2,create");
    assert!(
        e.starts_with("minnow: error: no permission to open /dev/net/tun")
            && e.contains("chmod 0666 /dev/net/tun"),
        "{e}"
    );
}
