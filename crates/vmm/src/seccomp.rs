//! seccomp filters: one per kind of VMM thread, compiled with rust-vmm's `seccompiler`
//! and installed by each thread itself once its set-up is done (the main thread before
//! the event loop, a vCPU thread before its first `KVM_RUN`, a disk worker at its start).
//!
//! A call outside a thread's list raises SIGSYS (`SECCOMP_RET_TRAP`). The handler writes
//! one preformatted line naming the thread and the system call, puts a terminal stdin back
//! in canonical mode and ends the process with exit code 1: async-signal-safe work only
//! (`write`, `ioctl`, `exit_group`), which every filter allows. `--seccomp log` turns the
//! default action into `SECCOMP_RET_LOG` (the kernel logs the call and lets it run);
//! `--seccomp off` installs nothing.
//!
//! The lists were found by tracing minnow's threads (`strace -f`) with the tiny guests
//! and, in the lab, with Linux on virtio-blk and virtio-net; they cover glibc 2.36
//! (Debian 12) and musl, debug and release builds. docs/design.md has them per thread.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// Whether filters are installed, and what a call outside a list does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// The call is refused and minnow stops with a one-line report (the default).
    #[default]
    On,
    /// No filter.
    Off,
    /// The call runs and the kernel logs it (audit log / dmesg).
    Log,
}

/// `--seccomp` took a value it does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown --seccomp value {0:?}; use on, off or log")]
pub struct ParseModeError(String);

impl Mode {
    /// The `--seccomp` word for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Log => "log",
        }
    }
}

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Mode::On),
            "off" => Ok(Mode::Off),
            "log" => Ok(Mode::Log),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

/// The kinds of VMM thread; each has its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// The main thread: the event loop (console, signals, virtio-net, exit).
    Main,
    /// A vCPU thread: `KVM_RUN` and the exits it dispatches to the devices.
    Vcpu(u8),
    /// The I/O worker of virtio-blk disk `n`.
    Disk(u8),
    /// The control API (`--api-sock`): requests, pause and resume, writing snapshots.
    Api,
}

impl Thread {
    fn code(self) -> u32 {
        match self {
            Thread::Main => 1 << 16,
            Thread::Vcpu(i) => (2 << 16) | u32::from(i),
            Thread::Disk(i) => (3 << 16) | u32::from(i),
            Thread::Api => 4 << 16,
        }
    }
}

/// A filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot build the {0} seccomp filter: {1}")]
    Build(&'static str, #[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter of thread {0:?}: {1}")]
    Install(Thread, #[source] seccompiler::Error),
    #[error("cannot install the SIGSYS handler: {0}")]
    Handler(#[source] vmm_sys_util::errno::Error),
}

/// The compiled filters, built once before any VMM thread starts.
#[derive(Clone)]
pub struct Filters {
    mode: Mode,
    main: Arc<BpfProgram>,
    vcpu: Arc<BpfProgram>,
    disk: Arc<BpfProgram>,
    api: Arc<BpfProgram>,
    /// Test aid (`MINNOW_TEST_SECCOMP_TRIP`, read by the CLI): this kind of thread makes
    /// one call outside its list right after installing its filter.
    trip: Option<&'static str>,
}

impl Filters {
    /// Compiles the three filters for `mode` (nothing to compile when off).
    pub fn new(mode: Mode, trip: Option<&'static str>) -> Result<Filters, Error> {
        let empty = || Arc::new(BpfProgram::new());
        if mode == Mode::Off {
            return Ok(Filters {
                mode,
                main: empty(),
                vcpu: empty(),
                disk: empty(),
                api: empty(),
                trip: None,
            });
        }
        Ok(Filters {
            mode,
            main: Arc::new(compile("main", main_rules(), mode)?),
            vcpu: Arc::new(compile("vCPU", vcpu_rules(), mode)?),
            disk: Arc::new(compile("disk worker", disk_rules(), mode)?),
            api: Arc::new(compile("control API", api_rules(), mode)?),
            trip,
        })
    }

    /// The mode the filters were built for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Installs the filter for `thread` on the calling thread (and the SIGSYS handler,
    /// process-wide, once). A thread's filter cannot be removed or widened afterwards.
    pub fn install(&self, thread: Thread) -> Result<(), Error> {
        if self.mode == Mode::Off {
            return Ok(());
        }
        install_sigsys_handler()?;
        THREAD.with(|t| t.set(thread.code()));
        let prog = match thread {
            Thread::Main => &self.main,
            Thread::Vcpu(_) => &self.vcpu,
            Thread::Disk(_) => &self.disk,
            Thread::Api => &self.api,
        };
        seccompiler::apply_filter(prog).map_err(|e| Error::Install(thread, e))?;
        let kind = match thread {
            Thread::Main => "main",
            Thread::Vcpu(_) => "vcpu",
            Thread::Disk(_) => "disk",
            Thread::Api => "api",
        };
        if self.trip == Some(kind) {
            // SAFETY: getppid has no arguments and no side effects; it is in no list, so
            // the filter stops the process here (the test checks the report).
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        Ok(())
    }
}

fn compile(
    name: &'static str,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mode: Mode,
) -> Result<BpfProgram, Error> {
    let mismatch = if mode == Mode::Log {
        SeccompAction::Log
    } else {
        SeccompAction::Trap
    };
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(|e| Error::Build(name, e))?;
    filter.try_into().map_err(|e| Error::Build(name, e))
}

// ---- the lists ----

/// One condition; the values are checked constants, so a failure is a bug in this file
/// and becomes an empty (never matching) rule rather than a panic.
fn cond(arg: u8, len: Len, op: Op, value: u64) -> Option<SeccompCondition> {
    SeccompCondition::new(arg, len, op, value).ok()
}

fn rule(conds: Vec<Option<SeccompCondition>>) -> Option<SeccompRule> {
    let conds: Option<Vec<_>> = conds.into_iter().collect();
    SeccompRule::new(conds?).ok()
}

/// Rules matching argument `arg` (32 bits) equal to any of `values`.
fn any_of(arg: u8, values: &[u64]) -> Vec<SeccompRule> {
    values
        .iter()
        .filter_map(|&v| rule(vec![cond(arg, Len::Dword, Op::Eq, v)]))
        .collect()
}

#[derive(Default)]
struct Rules(BTreeMap<i64, Vec<SeccompRule>>);

impl Rules {
    /// Allows `nrs` with any arguments.
    fn allow(&mut self, nrs: &[libc::c_long]) -> &mut Self {
        for &nr in nrs {
            self.0.insert(nr, Vec::new());
        }
        self
    }

    /// Allows `nr` when one of `rules` matches.
    fn allow_if(&mut self, nr: libc::c_long, rules: Vec<SeccompRule>) -> &mut Self {
        self.0.entry(nr).or_default().extend(rules);
        self
    }
}

/// ioctl request numbers (the second argument), from the kernel's headers.
pub mod ioctl {
    use kvm_bindings::{kvm_regs, kvm_sregs};
    use vmm_sys_util::ioctl::ioctl_expr;
    use vmm_sys_util::ioctl::{_IOC_NONE, _IOC_READ, _IOC_WRITE};

    const KVMIO: u32 = 0xae;
    fn size_of<T>() -> u32 {
        // kvm_regs and kvm_sregs are a few hundred bytes: well inside _IOC_SIZEBITS.
        u32::try_from(std::mem::size_of::<T>()).unwrap_or(0)
    }
    /// `_IO(KVMIO, 0x80)`.
    pub fn kvm_run() -> u64 {
        ioctl_expr(_IOC_NONE, KVMIO, 0x80, 0)
    }
    /// `_IOR(KVMIO, 0x81, struct kvm_regs)`.
    pub fn kvm_get_regs() -> u64 {
        ioctl_expr(_IOC_READ, KVMIO, 0x81, size_of::<kvm_regs>())
    }
    /// `_IOR(KVMIO, 0x83, struct kvm_sregs)`.
    pub fn kvm_get_sregs() -> u64 {
        ioctl_expr(_IOC_READ, KVMIO, 0x83, size_of::<kvm_sregs>())
    }
    /// The vCPU state a snapshot saves (`_IOR`/`_IOWR(KVMIO, nr, struct)`).
    pub fn kvm_vcpu_save() -> Vec<u64> {
        use kvm_bindings::{
            kvm_cpuid2, kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msrs,
            kvm_vcpu_events, kvm_xcrs, kvm_xsave,
        };
        let rw = _IOC_READ | _IOC_WRITE;
        vec![
            ioctl_expr(rw, KVMIO, 0x91, size_of::<kvm_cpuid2>()),
            ioctl_expr(rw, KVMIO, 0x88, size_of::<kvm_msrs>()),
            ioctl_expr(_IOC_READ, KVMIO, 0x98, size_of::<kvm_mp_state>()),
            ioctl_expr(_IOC_READ, KVMIO, 0x8c, size_of::<kvm_fpu>()),
            ioctl_expr(_IOC_READ, KVMIO, 0xa4, size_of::<kvm_xsave>()),
            ioctl_expr(_IOC_READ, KVMIO, 0xa6, size_of::<kvm_xcrs>()),
            ioctl_expr(_IOC_READ, KVMIO, 0xa1, size_of::<kvm_debugregs>()),
            ioctl_expr(_IOC_READ, KVMIO, 0x8e, size_of::<kvm_lapic_state>()),
            ioctl_expr(_IOC_READ, KVMIO, 0x9f, size_of::<kvm_vcpu_events>()),
            ioctl_expr(_IOC_NONE, KVMIO, 0xa3, 0),
        ]
    }
    /// The VM state a snapshot saves (KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK) and
    /// KVM_SET_CLOCK (resume).
    pub fn kvm_vm_save() -> Vec<u64> {
        use kvm_bindings::{kvm_clock_data, kvm_irqchip, kvm_pit_state2};
        vec![
            ioctl_expr(
                _IOC_READ | _IOC_WRITE,
                KVMIO,
                0x62,
                size_of::<kvm_irqchip>(),
            ),
            ioctl_expr(_IOC_READ, KVMIO, 0x9f, size_of::<kvm_pit_state2>()),
            ioctl_expr(_IOC_READ, KVMIO, 0x7c, size_of::<kvm_clock_data>()),
            // KVM_SET_CLOCK: the clock noted at pause, put back on resume.
            ioctl_expr(_IOC_WRITE, KVMIO, 0x7b, size_of::<kvm_clock_data>()),
        ]
    }
    /// `_IOW('T', 208, unsigned int)`.
    pub const TUNSETOFFLOAD: u64 = 0x4004_54d0;
    pub const TCGETS: u64 = libc::TCGETS;
    pub const TCSETS: u64 = libc::TCSETS;
}

/// What every thread may do: memory (never executable), futexes, signals (return from
/// the kick and SIGSYS handlers, abort), logging, thread exit, the SIGSYS report.
fn base() -> Rules {
    let mut r = Rules::default();
    r.allow(&[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_write,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_sched_yield,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_clock_gettime,
        libc::SYS_getrandom,
    ]);
    // mmap: private anonymous memory only (malloc arenas, thread stacks, the signal
    // stack), never executable; MAP_FIXED only over memory the thread already has.
    let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
    let mmap_flags = [
        anon,
        anon | libc::MAP_NORESERVE as u64,
        anon | libc::MAP_STACK as u64,
        anon | libc::MAP_FIXED as u64,
    ];
    let no_exec = || cond(2, Len::Dword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    let mmap = mmap_flags
        .iter()
        .filter_map(|&f| rule(vec![no_exec(), cond(3, Len::Dword, Op::Eq, f)]))
        .collect();
    r.allow_if(libc::SYS_mmap, mmap);
    // mprotect: glibc grows a thread's arena (PROT_READ|PROT_WRITE) and guards stacks
    // (PROT_NONE); nothing becomes executable.
    r.allow_if(
        libc::SYS_mprotect,
        any_of(
            2,
            &[
                libc::PROT_NONE as u64,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
            ],
        ),
    );
    // madvise: glibc frees a finished thread's stack and trims arenas.
    r.allow_if(
        libc::SYS_madvise,
        any_of(2, &[libc::MADV_DONTNEED as u64, libc::MADV_FREE as u64]),
    );
    // futex: wait and wake (Rust's Mutex/Condvar, glibc's pthread_join), private or not,
    // with CLOCK_REALTIME or not; no requeue, no PI, no wake-op.
    let cmd_mask = !((libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME) as u32);
    let futex = [
        libc::FUTEX_WAIT,
        libc::FUTEX_WAKE,
        libc::FUTEX_WAIT_BITSET,
        libc::FUTEX_WAKE_BITSET,
    ]
    .iter()
    .filter_map(|&op| {
        rule(vec![cond(
            1,
            Len::Dword,
            Op::MaskedEq(u64::from(cmd_mask)),
            op as u64,
        )])
    })
    .collect();
    r.allow_if(libc::SYS_futex, futex);
    // abort() (a panic in a release build): SIGABRT's default action, then raise it.
    let sigabrt = libc::SIGABRT as u64;
    r.allow_if(libc::SYS_rt_sigaction, any_of(0, &[sigabrt]));
    r.allow_if(libc::SYS_tgkill, any_of(2, &[sigabrt]));
    r.allow_if(libc::SYS_tkill, any_of(1, &[sigabrt]));
    // Debug builds check a descriptor with F_GETFD before closing it.
    r.allow_if(libc::SYS_fcntl, any_of(1, &[libc::F_GETFD as u64]));
    // isatty (TCGETS) on the standard descriptors: the logger asks it of stderr on
    // each line (seen with a terminal: `script`, `make demo`). The SIGSYS handler and the
    // CLI, at the end, put a terminal stdin back in canonical mode (TCSETS on fd 0).
    let tty = [
        (0, ioctl::TCGETS),
        (1, ioctl::TCGETS),
        (2, ioctl::TCGETS),
        (0, ioctl::TCSETS),
    ]
    .iter()
    .filter_map(|&(fd, req)| {
        rule(vec![
            cond(0, Len::Dword, Op::Eq, fd),
            cond(1, Len::Dword, Op::Eq, req),
        ])
    })
    .collect();
    r.allow_if(libc::SYS_ioctl, tty);
    r
}

/// The event loop: epoll, reading stdin and eventfds, console output, the TAPs, the
/// signal pipe, and stopping the vCPUs (kick signal, sleeps, joins).
fn main_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut r = base();
    r.allow(&[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_ctl,
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_nanosleep,
        libc::SYS_clock_nanosleep,
    ]);
    // Kicking a vCPU thread out of KVM_RUN with the kick signal.
    let kick = u64::try_from(crate::kick_signal()).unwrap_or(0);
    r.allow_if(libc::SYS_tgkill, any_of(2, &[kick]));
    r.allow_if(libc::SYS_tkill, any_of(1, &[kick]));
    r.0
}

/// A vCPU: KVM_RUN (and the registers for the triple-fault report), device emulation
/// (eventfd writes, the TAP's offloads when virtio-net starts, the boot timer's
/// getrusage).
fn vcpu_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut r = base();
    r.allow(&[libc::SYS_getrusage]);
    let mut ioctls = vec![
        ioctl::kvm_run(),
        ioctl::kvm_get_regs(),
        ioctl::kvm_get_sregs(),
        ioctl::TUNSETOFFLOAD,
    ];
    // A paused vCPU saves its own state for a snapshot.
    ioctls.extend(ioctl::kvm_vcpu_save());
    r.allow_if(libc::SYS_ioctl, any_of(1, &ioctls));
    r.0
}

/// The control API: accept and serve connections on its socket, kick the vCPUs to pause
/// them, read the VM's irqchip, PIT and clock, write snapshot files, remove the socket.
fn api_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut r = base();
    r.allow(&[
        libc::SYS_accept4,
        libc::SYS_accept,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_writev,
        libc::SYS_openat,
        libc::SYS_mkdir,
        libc::SYS_mkdirat,
        libc::SYS_statx,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_lseek,
        libc::SYS_pwrite64,
        libc::SYS_ftruncate,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
    ]);
    let kick = u64::try_from(crate::kick_signal()).unwrap_or(0);
    r.allow_if(libc::SYS_tgkill, any_of(2, &[kick]));
    r.allow_if(libc::SYS_tkill, any_of(1, &[kick]));
    r.allow_if(libc::SYS_ioctl, any_of(1, &ioctl::kvm_vm_save()));
    r.0
}

/// A disk worker: wait on its eventfds, read and write the image, flush, punch holes and
/// zero ranges.
fn disk_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    let mut r = base();
    r.allow(&[
        libc::SYS_read,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_preadv,
        libc::SYS_pwritev,
        libc::SYS_fdatasync,
        libc::SYS_fsync,
    ]);
    let keep = libc::FALLOC_FL_KEEP_SIZE as u64;
    r.allow_if(
        libc::SYS_fallocate,
        any_of(
            1,
            &[
                libc::FALLOC_FL_PUNCH_HOLE as u64 | keep,
                libc::FALLOC_FL_ZERO_RANGE as u64 | keep,
                libc::FALLOC_FL_ZERO_RANGE as u64,
            ],
        ),
    );
    r.0
}

// ---- the SIGSYS report ----

thread_local! {
    /// Which thread this is (`Thread::code`), for the SIGSYS report. Const-initialised
    /// and without a destructor, so reading it is a plain TLS load, safe in a handler.
    static THREAD: Cell<u32> = const { Cell::new(0) };
}

fn install_sigsys_handler() -> Result<(), Error> {
    static DONE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    let result = DONE.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, sigsys_handler)
            .map_err(|e| e.errno())
    });
    (*result).map_err(|errno| Error::Handler(vmm_sys_util::errno::Error::new(errno)))
}

/// Names of system calls a report is likely to show; others are given by number.
const NAMES: &[(libc::c_long, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_open, "open"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_mmap, "mmap"),
    (libc::SYS_mprotect, "mprotect"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_clone, "clone"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_getppid, "getppid"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_rseq, "rseq"),
    (libc::SYS_futex_waitv, "futex_waitv"),
    (libc::SYS_epoll_pwait2, "epoll_pwait2"),
];

/// A fixed-size line built without allocating (the handler may not allocate).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            // n % 10 < 10: the cast keeps the value.
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

/// The report line for a call `nr` from the thread with code `thread`.
fn report(thread: u32, nr: i64) -> Line {
    let mut l = Line {
        buf: [0; 256],
        len: 0,
    };
    l.push(b"minnow: error: seccomp: the ");
    match thread >> 16 {
        1 => l.push(b"main (event loop) thread"),
        2 => {
            l.push(b"vcpu");
            l.number(u64::from(thread & 0xffff));
            l.push(b" thread");
        }
        3 => {
            l.push(b"disk");
            l.number(u64::from(thread & 0xffff));
            l.push(b" worker thread");
        }
        4 => l.push(b"api (control API) thread"),
        _ => l.push(b"unfiltered thread"),
    }
    l.push(b" made system call ");
    l.number(u64::try_from(nr).unwrap_or(u64::MAX));
    if let Some((_, name)) = NAMES.iter().find(|(n, _)| *n == nr) {
        l.push(b" (");
        l.push(name.as_bytes());
        l.push(b")");
    }
    l.push(b", which its filter does not allow; minnow stopped the VM. This is a minnow bug: please report it (--seccomp log runs and logs such calls)\n");
    l
}

/// Offset of `si_syscall` in a SIGSYS `siginfo_t` on x86_64: after si_signo, si_errno,
/// si_code and padding (16 bytes) comes `_sigsys { void *_call_addr; int _syscall; }`.
const SI_SYSCALL_OFFSET: usize = 24;

extern "C" fn sigsys_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for a SA_SIGINFO handler; for SIGSYS
    // from seccomp the int at SI_SYSCALL_OFFSET is the system call number.
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<libc::c_int>()
            .read_unaligned()
    };
    let thread = THREAD.with(|t| t.get());
    let line = report(thread, i64::from(nr));
    // SAFETY: write, ioctl and _exit are async-signal-safe; the buffers outlive the calls.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        let mut t: libc::termios = std::mem::zeroed();
        if libc::ioctl(0, libc::TCGETS, &mut t) == 0 {
            t.c_lflag |= libc::ICANON | libc::ECHO | libc::ISIG;
            libc::ioctl(0, libc::TCSETS, &t);
        }
        libc::_exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("on".parse::<Mode>().unwrap(), Mode::On);
        assert_eq!("log".parse::<Mode>().unwrap(), Mode::Log);
        assert_eq!("off".parse::<Mode>().unwrap(), Mode::Off);
        assert!("yes".parse::<Mode>().is_err());
    }

    #[test]
    fn every_filter_compiles_for_both_actions() {
        for mode in [Mode::On, Mode::Log] {
            let f = Filters::new(mode, None).unwrap();
            assert!(!f.main.is_empty() && !f.vcpu.is_empty() && !f.disk.is_empty());
        }
        let off = Filters::new(Mode::Off, None).unwrap();
        assert!(off.main.is_empty());
    }

    #[test]
    fn lists_differ_per_thread() {
        let (m, v, d) = (main_rules(), vcpu_rules(), disk_rules());
        assert!(!v.contains_key(&libc::SYS_epoll_wait));
        assert!(!m.contains_key(&libc::SYS_pwrite64));
        assert!(!d.contains_key(&libc::SYS_recvfrom));
        for list in [&m, &v, &d] {
            for nr in [
                libc::SYS_execve,
                libc::SYS_openat,
                libc::SYS_socket,
                libc::SYS_clone3,
                libc::SYS_getppid,
            ] {
                assert!(!list.contains_key(&nr), "{nr} allowed");
            }
        }
    }

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        assert_eq!(ioctl::kvm_run(), 0xae80);
        assert_eq!(ioctl::kvm_get_regs(), 0x8090_ae81);
        assert_eq!(ioctl::kvm_get_sregs(), 0x8138_ae83);
    }

    #[test]
    fn report_is_one_line_naming_thread_and_call() {
        let l = report(Thread::Vcpu(3).code(), libc::SYS_getppid);
        let s = std::str::from_utf8(&l.buf[..l.len]).unwrap();
        assert!(
            s.starts_with(
                "minnow: error: seccomp: the vcpu3 thread made system call 110 (getppid)"
            ),
            "{s}"
        );
        assert_eq!(s.matches('\n').count(), 1);
        assert!(s.ends_with('\n'));
        let l = report(Thread::Disk(0).code(), 999);
        let s = std::str::from_utf8(&l.buf[..l.len]).unwrap();
        assert!(
            s.contains("disk0 worker thread made system call 999,"),
            "{s}"
        );
    }
}
