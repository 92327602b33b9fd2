//! How long Docker's default seccomp profile takes to build, compile and load, in µs
//! (docs/containers.md, "Security defaults"). Run as root (loading needs CAP_SYS_ADMIN):
//!
//! ```sh
//! cargo run --release -p minnow-container --example seccomp-timing [-- RUNS]
//! ```
//!
//! Each load happens in a fresh forked child (a filter cannot be removed), which times
//! the `seccomp(2)` call itself and reports it through a pipe.

use std::io::{Read, Write};
use std::time::Instant;

use minnow_container::{caps, seccomp};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, ForkResult};

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    let t = Instant::now();
    let first = seccomp::docker_default(&caps::DOCKER_DEFAULT);
    let first_build = t.elapsed().as_secs_f64() * 1e6;

    // Building and compiling first, then the loads: a fork makes the parent's pages
    // copy-on-write, which would bill page faults to the next measurement.
    let (mut build, mut compile, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let cache = tempfile::tempdir()?;
    let mut filter = None;
    for _ in 0..runs {
        let t = Instant::now();
        let spec = seccomp::docker_default(&caps::DOCKER_DEFAULT);
        build.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(spec, first);

        let t = Instant::now();
        let f = seccomp::compile_cached(&spec, None)?;
        compile.push(t.elapsed().as_secs_f64() * 1e6);

        seccomp::compile_cached(&spec, Some(cache.path()))?;
        let t = Instant::now();
        let hit = seccomp::compile_cached(&spec, Some(cache.path()))?;
        cached.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(hit.len(), f.len());
        filter = Some(f);
    }
    let filter = filter.ok_or("no runs")?;
    let mut load = Vec::new();
    for _ in 0..runs {
        let filter = filter.clone();
        let (r, w) = pipe()?;
        // SAFETY: the child only loads the filter, writes 8 bytes and _exits.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(r);
                let t = Instant::now();
                let ok = filter.load().is_ok();
                let us = if ok {
                    t.elapsed().as_secs_f64() * 1e6
                } else {
                    -1.0
                };
                let mut w = std::fs::File::from(w);
                let _ = w.write_all(&us.to_ne_bytes());
                // SAFETY: _exit ends the forked child without running the parent's atexit.
                unsafe { libc::_exit(0) };
            }
            ForkResult::Parent { child } => {
                drop(w);
                let mut b = [0u8; 8];
                std::fs::File::from(r).read_exact(&mut b)?;
                waitpid(child, None)?;
                let us = f64::from_ne_bytes(b);
                if us < 0.0 {
                    return Err("loading the filter failed (run as root)".into());
                }
                load.push(us);
            }
        }
    }
    let len = filter.len();
    let skipped = filter.skipped().to_vec();
    println!("Docker default profile, x86_64 + x86 + x32, {runs} runs, p50 in µs:");
    println!("  first docker_default (JSON parse + filter) {first_build:8.1}");
    println!(
        "  docker_default (cached parse, filter)      {:8.1}",
        p50(&mut build)
    );
    println!(
        "  compile (libseccomp, export BPF)           {:8.1}",
        p50(&mut compile)
    );
    println!(
        "  compile, cache hit                         {:8.1}",
        p50(&mut cached)
    );
    println!(
        "  load (seccomp(2) in the child)             {:8.1}",
        p50(&mut load)
    );
    println!(
        "  BPF instructions {len}; names libseccomp does not know: {}",
        skipped.join(" ")
    );
    Ok(())
}
