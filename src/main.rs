//! minnow's command line. All the work happens in the libraries (crates/); this turns
//! flags into their inputs, and results into output and an exit code.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;
mod logging;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use vmm_sys_util::terminal::Terminal;

use minnow_vmm::config::VmConfig;
use minnow_vmm::{Options, Vmm};

/// Environment variables the tests use to stand in for host files.
const KVM_DEVICE_ENV: &str = "MINNOW_KVM_DEVICE";
/// Test aid: `main`, `vcpu` or `disk` makes that VMM thread call something outside its
/// seccomp filter once the filter is on (tests/vm.rs checks the report). Read here, by
/// the CLI, so no guest and no library caller can reach it.
const SECCOMP_TRIP_ENV: &str = "MINNOW_TEST_SECCOMP_TRIP";

#[derive(Parser)]
#[command(name = "minnow", version, about = "A small KVM microVM monitor")]
struct Cli {
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a kernel; the guest's serial console is this terminal (Ctrl-A x quits).
    Run(Box<RunArgs>),
    /// Control a running VM through its API socket: pause, resume, status, snapshot.
    Vm(cli::vm::VmArgs),
    /// Host networking for microVMs: TAP devices.
    Net(NetArgs),
    /// Manage container images (OCI layout store).
    Image(cli::image::ImageArgs),
    /// Run and manage containers.
    Container(cli::container::ContainerArgs),
    /// Log in to a registry (credentials go to Docker's config.json).
    Login(cli::registry::LoginArgs),
    /// Forget the credentials for a registry.
    Logout(cli::registry::LogoutArgs),
}

#[derive(Args)]
struct NetArgs {
    #[command(subcommand)]
    command: NetCommand,
}

#[derive(Subcommand)]
enum NetCommand {
    /// Create a TAP (if missing), give it an address and bring it up.
    Setup {
        /// TAP name (at most 15 bytes).
        name: String,
        /// Host address on the TAP, e.g. 169.254.100.1/30.
        #[arg(long)]
        host_ip: Option<String>,
    },
    /// Delete a TAP.
    Teardown {
        /// TAP name.
        name: String,
    },
}

fn net(args: NetArgs) -> Result<i32, String> {
    match args.command {
        NetCommand::Setup { name, host_ip } => cli::net::setup(&name, host_ip.as_deref()),
        NetCommand::Teardown { name } => cli::net::teardown(&name),
    }
    .map(|()| 0)
}

#[derive(Args)]
struct RunArgs {
    /// JSON config file with the same fields as the flags (flags given here override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kernel image: bzImage, ELF vmlinux or PVH ELF.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Extra kernel command-line arguments, after "console=ttyS0 reboot=k panic=1 ...".
    #[arg(long)]
    cmdline: Option<String>,
    /// Guest memory in MiB [default: 128].
    #[arg(long)]
    mem_mib: Option<u64>,
    /// Number of vCPUs [default: 1].
    #[arg(long)]
    vcpus: Option<u64>,
    /// Back guest memory with huge pages.
    #[arg(long)]
    hugepages: bool,
    /// The in-kernel i8254 PIT: auto (only for a kernel that uses it: Linux before 5.3,
    /// or one told to avoid the TSC-deadline LAPIC timer), on, off [default: auto].
    #[arg(long, value_name = "auto|on|off")]
    pit: Option<minnow_vmm::pit::Mode>,
    /// A raw disk image on virtio-blk: PATH[,ro]. Repeat for more disks (vda, vdb, ...).
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<minnow_vmm::config::DiskConfig>,
    /// Root device for the kernel (root=) [default: /dev/vda when a disk is given].
    #[arg(long)]
    root: Option<String>,
    /// A network interface on a TAP: tap=NAME[,mac=MAC][,create][,guest-ip=A/P][,host-ip=A/P].
    /// Repeat for more (eth0, eth1, ...). With --restore: one per interface of the
    /// snapshot, in its place (a clone's own TAP); mac= gives the device a new MAC, which
    /// the guest must be told of (docs/design.md, "Snapshots").
    #[arg(long = "net", value_name = "tap=NAME[,...]")]
    nets: Vec<minnow_vmm::config::NetConfig>,
    /// Boot minnow's kernel with this image (from the image store) as the root disk;
    /// the command after -- (else the image's) is the workload, and minnow exits with
    /// its status.
    #[arg(long)]
    image: Option<String>,
    /// With --image: run the workload in a container inside the VM.
    #[arg(long, requires = "image")]
    container: bool,
    /// Image store directory [default: $MINNOW_STORE or /var/lib/minnow].
    #[arg(long)]
    store: Option<PathBuf>,
    /// seccomp filters on minnow's threads: on (a call outside a thread's list stops
    /// minnow with a one-line report), log (the kernel logs such calls), off.
    #[arg(long, value_name = "on|off|log", default_value = "on")]
    seccomp: minnow_vmm::seccomp::Mode,
    /// When the VM stops, print its exits by kind (count, handling time), the time in
    /// KVM_RUN and a timeline of boot milestones on stderr.
    #[arg(long, conflicts_with = "jail")]
    profile: bool,
    /// Write the --profile report as JSON to FILE (implies --profile).
    #[arg(long, value_name = "FILE", conflicts_with = "jail")]
    profile_json: Option<PathBuf>,
    /// Serve the control API (HTTP + JSON, docs/api.yaml) on this Unix socket: pause,
    /// resume, status, snapshot (`minnow vm ... --api-sock PATH`).
    #[arg(long, value_name = "PATH", conflicts_with = "jail")]
    api_sock: Option<PathBuf>,
    /// Run on from the snapshot in DIR (`minnow vm snapshot`) instead of booting: its
    /// memory is mapped copy-on-write, so many VMs can restore one DIR at once.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["jail", "kernel", "initrd", "cmdline", "mem_mib", "vcpus", "hugepages", "pit", "root", "image", "config", "command"])]
    restore: Option<PathBuf>,
    /// The workload and its arguments, run by minnow's guest init (after --).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
    #[command(flatten)]
    jail: cli::jail::JailArgs,
}

impl RunArgs {
    /// The flags over the config file's values; validated later, once the workload is
    /// resolved (an image run defaults the kernel).
    fn into_config(self) -> Result<VmConfig, minnow_vmm::config::Error> {
        let mut cfg = match &self.config {
            Some(path) => VmConfig::from_file(path)?,
            None => VmConfig::new(PathBuf::new()),
        };
        if let Some(k) = self.kernel {
            cfg.kernel = k;
        }
        if self.initrd.is_some() {
            cfg.initrd = self.initrd;
        }
        if self.cmdline.is_some() {
            cfg.cmdline = self.cmdline;
        }
        if let Some(m) = self.mem_mib {
            cfg.mem_mib = m;
        }
        if let Some(v) = self.vcpus {
            cfg.vcpus = v;
        }
        cfg.hugepages |= self.hugepages;
        if let Some(p) = self.pit {
            cfg.pit = p;
        }
        if !self.disks.is_empty() {
            cfg.disks = self.disks;
        }
        if self.root.is_some() {
            cfg.root = self.root;
        }
        if !self.nets.is_empty() {
            cfg.nets = self.nets;
        }
        if !self.command.is_empty() {
            cfg.command = self.command;
        }
        if self.image.is_some() {
            cfg.image = self.image;
        }
        cfg.container |= self.container;
        if self.store.is_some() {
            cfg.store = self.store;
        }
        Ok(cfg)
    }
}

/// Puts a terminal stdin in raw mode for the guest and restores it on drop.
struct RawTerminal(bool);

impl RawTerminal {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let raw = stdin.is_terminal() && stdin.lock().set_raw_mode().is_ok();
        RawTerminal(raw)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::io::stdin().lock().set_canon_mode();
        }
    }
}

fn run(mut args: RunArgs, start: Instant, log_level: &str) -> Result<i32, String> {
    let api_sock = args.api_sock.take();
    if let Some(dir) = args.restore.take() {
        return restore(&dir, &args, api_sock, start);
    }
    let jail = std::mem::take(&mut args.jail);
    let jail_dir = jail.dir()?.map(PathBuf::from);
    let seccomp = args.seccomp;
    let (profile, profile_json) = (args.profile, args.profile_json.take());
    let config = args.into_config().map_err(|e| e.to_string())?;
    if let Some(name) = config.image.as_deref() {
        if minnow_registry::names_a_registry(name) {
            let store = minnow_image::Store::open(&minnow_image::store_path(config.store.clone()))?;
            cli::registry::ensure_image(&store, name, log_level)?;
        }
    }
    let kvm_device = std::env::var_os(KVM_DEVICE_ENV).map_or_else(
        || PathBuf::from(minnow_vmm::kvm::DEFAULT_DEVICE),
        PathBuf::from,
    );
    if let Some(dir) = jail_dir {
        let mountinfo = std::env::var_os(cli::container::MOUNTINFO_ENV)
            .map_or_else(|| PathBuf::from(minnow_cgroup::MOUNTINFO), PathBuf::from);
        let spec = cli::jail::build(
            &jail,
            &dir,
            &config,
            &kvm_device,
            log_level,
            seccomp,
            mountinfo,
        )?;
        return minnow_jail::run(&spec).map_err(|e| e.to_string());
    }
    // Holds the run's private copy of an image disk until the VM has stopped.
    let mut prepared = minnow_vmdisk::prepare(&config).map_err(|e| e.to_string())?;
    prepared.workload.raw = !std::io::stdout().is_terminal();
    let mut opts = Options::new(start);
    opts.kvm_device = kvm_device;
    opts.seccomp = seccomp;
    opts.profile = profile || profile_json.is_some();
    // Opened now: once the VM runs, the main thread's seccomp filter allows no open.
    let profile_file = match &profile_json {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| {
            format!(
                "cannot write the profile to {}: {e}; give a writable --profile-json FILE",
                path.display()
            )
        })?),
        None => None,
    };
    opts.seccomp_trip = seccomp_trip();
    opts.api_sock = api_sock;
    let vmm = Vmm::build(&prepared.config, &prepared.workload, opts).map_err(|e| e.to_string())?;
    // The VM has the private copy of an image disk open: its name can go now, so nothing
    // is left behind however the run ends (and the filtered threads need no unlink).
    drop(prepared.disk.take());
    let summary = {
        let _raw = RawTerminal::enter();
        vmm.run().map_err(|e| e.to_string())?
    };
    let code = summary.exit_code();
    if let Some(report) = &summary.profile {
        if profile {
            eprint!("{}", report.text());
        }
        if let Some(mut file) = profile_file {
            use std::io::Write as _;
            serde_json::to_writer_pretty(&mut file, report)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"))
                .map_err(|e| format!("cannot write the profile: {e}; check the disk"))?;
        }
    }
    if summary.reason.exit_code() == 0 {
        log::info!("VM stopped: {:?}", summary.reason);
    } else {
        log::error!("VM stopped: {:?}", summary.reason);
    }
    Ok(code)
}

fn seccomp_trip() -> Option<&'static str> {
    match std::env::var(SECCOMP_TRIP_ENV).as_deref() {
        Ok("main") => Some("main"),
        Ok("vcpu") => Some("vcpu"),
        Ok("disk") => Some("disk"),
        Ok("api") => Some("api"),
        _ => None,
    }
}

/// `minnow run --restore DIR`.
fn restore(
    dir: &std::path::Path,
    args: &RunArgs,
    api_sock: Option<PathBuf>,
    start: Instant,
) -> Result<i32, String> {
    let mut opts = Options::new(start);
    if let Some(dev) = std::env::var_os(KVM_DEVICE_ENV) {
        opts.kvm_device = PathBuf::from(dev);
    }
    opts.seccomp = args.seccomp;
    opts.seccomp_trip = seccomp_trip();
    opts.api_sock = api_sock;
    opts.profile = args.profile || args.profile_json.is_some();
    opts.restore_disks = args.disks.clone();
    opts.restore_nets = args.nets.clone();
    let vmm = Vmm::restore(dir, opts).map_err(|e| e.to_string())?;
    let summary = {
        let _raw = RawTerminal::enter();
        vmm.run().map_err(|e| e.to_string())?
    };
    if summary.reason.exit_code() == 0 {
        log::info!("VM stopped: {:?}", summary.reason);
    } else {
        log::error!("VM stopped: {:?}", summary.reason);
    }
    Ok(summary.exit_code())
}

fn log_filter(level: &str) -> String {
    format!("warn,minnow={level}")
}

fn main() -> ExitCode {
    let start = Instant::now();
    let cli = Cli::parse();
    logging::init(&log_filter(&cli.log_level));
    let result = match cli.command {
        Command::Run(args) => run(*args, start, &cli.log_level),
        Command::Vm(args) => cli::vm::run(args),
        Command::Net(args) => net(args),
        Command::Image(args) => cli::image::run(args, &cli.log_level),
        Command::Container(args) => cli::container::run(args, &cli.log_level),
        Command::Login(args) => cli::registry::exec(None, &cli.log_level, &args.to_args()),
        Command::Logout(args) => {
            cli::registry::exec(None, &cli.log_level, &["logout".into(), args.registry])
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        // minnow-registry printed its own error line.
        Err(msg) if msg == cli::registry::REPORTED => ExitCode::from(1),
        Err(msg) => {
            // One line whatever the message holds (text from files is escaped).
            eprintln!("minnow: error: {}", minnow_image::printable(&msg));
            ExitCode::from(1)
        }
    }
}
