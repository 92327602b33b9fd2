//! minnow's command line. All the work happens in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use std::io::IsTerminal;

use clap::{Args, Parser, Subcommand};
use vmm_sys_util::terminal::Terminal;

use minnow::config::VmConfig;
use minnow::vmm::Vmm;

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
    Run(RunArgs),
    /// Host networking for microVMs: TAP devices.
    Net(NetArgs),
    /// Manage container images (OCI layout store).
    Image(minnow::image::cli::ImageArgs),
    /// Run and manage containers.
    Container(minnow::container::cli::ContainerArgs),
    /// Benchmarks: `bench startup` compares start-up against runc, crun, docker, microVMs.
    Bench(minnow::bench::BenchArgs),
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
        NetCommand::Setup { name, host_ip } => minnow::hostnet::setup(&name, host_ip.as_deref()),
        NetCommand::Teardown { name } => minnow::hostnet::teardown(&name),
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
    /// A raw disk image on virtio-blk: PATH[,ro]. Repeat for more disks (vda, vdb, ...).
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<minnow::config::DiskConfig>,
    /// Root device for the kernel (root=) [default: /dev/vda when a disk is given].
    #[arg(long)]
    root: Option<String>,
    /// A network interface on a TAP: tap=NAME[,mac=MAC][,create][,guest-ip=A/P][,host-ip=A/P].
    /// Repeat for more (eth0, eth1, ...).
    #[arg(long = "net", value_name = "tap=NAME[,...]")]
    nets: Vec<minnow::config::NetConfig>,
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
    /// The workload and its arguments, run by minnow's guest init (after --).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl RunArgs {
    fn into_config(self) -> Result<VmConfig, minnow::config::Error> {
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
        if !self.disks.is_empty() {
            cfg.disks = self.disks;
        }
        if self.root.is_some() {
            cfg.root = self.root;
        }
        if !self.nets.is_empty() {
            cfg.nets = self.nets;
        }
        cfg.validate()?;
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

fn run(mut args: RunArgs, start: Instant) -> Result<i32, String> {
    use minnow::image::disk;
    // Kept alive until the VM has stopped: the run's private copy of the image disk.
    let mut _run_disk = None;
    let mut extra = Vec::new();
    if let Some(name) = args.image.take() {
        if args.kernel.is_none() && args.config.is_none() {
            let k = disk::default_kernel();
            if !k.is_file() {
                return Err(format!(
                    "no minnow guest kernel at {}; build it with `bash resources/guest/kernel/build.sh` (or pass --kernel PATH)",
                    k.display()
                ));
            }
            args.kernel = Some(k);
        }
        let kind = if args.container {
            disk::Kind::Container
        } else {
            disk::Kind::Plain
        };
        let store = minnow::image::store_path(args.store.take());
        let prepared = disk::prepare_run(&store, &name, kind, &args.command)?;
        args.disks.insert(
            0,
            minnow::config::DiskConfig {
                path: prepared.disk.path.clone(),
                read_only: false,
            },
        );
        extra.push(prepared.cmdline.clone());
        _run_disk = Some(prepared.disk);
    } else if !args.command.is_empty() {
        extra.push(disk::cmd_arg(&args.command)?);
    }
    if !extra.is_empty() {
        if !std::io::stdout().is_terminal() {
            extra.push("minnow.raw".into());
        }
        extra.extend(args.cmdline.take());
        args.cmdline = Some(extra.join(" "));
    }
    let config = args.into_config().map_err(|e| e.to_string())?;
    let vmm = Vmm::build(&config, start, Box::new(std::io::stdout())).map_err(|e| e.to_string())?;
    let summary = {
        let _raw = RawTerminal::enter();
        vmm.run().map_err(|e| e.to_string())?
    };
    let code = summary.exit_code();
    if summary.reason.exit_code() == 0 {
        log::info!("VM stopped: {:?}", summary.reason);
    } else {
        log::error!("VM stopped: {:?}", summary.reason);
    }
    Ok(code)
}

fn main() -> ExitCode {
    let start = Instant::now();
    let cli = Cli::parse();
    env_logger::Builder::new()
        .parse_filters(&format!("warn,minnow={}", cli.log_level))
        .format(|buf, record| {
            use std::io::Write;
            match record.level() {
                log::Level::Info => writeln!(buf, "minnow: {}", record.args()),
                log::Level::Warn => writeln!(buf, "minnow: warning: {}", record.args()),
                level => writeln!(
                    buf,
                    "minnow: {}: {}",
                    level.as_str().to_lowercase(),
                    record.args()
                ),
            }
        })
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args, start),
        Command::Net(args) => net(args),
        Command::Image(args) => minnow::image::cli::run(args),
        Command::Container(args) => minnow::container::cli::run(args),
        Command::Bench(args) => minnow::bench::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(msg) => {
            eprintln!("minnow: error: {msg}");
            ExitCode::from(1)
        }
    }
}
