#!/usr/bin/env bash
# bench/run.sh [--runs N] [--mem-runs M] [--lab-rounds K] [--skip-lab] [--out DIR]
#              [--startup-runs S] [--skip-startup] [--skip-lab-io] [--density]
#
# minnow benchmarks: a thin driver for `minnow-bench all` (see bench/README.md). It builds
# the release binaries when they are missing, then runs, from the repository's top:
#   host      VMM start-up CPU/time and memory overhead, tiny guests, this host (N, M runs)
#   lab-boot  Debian cloud kernel boot in the lab: minnow vs QEMU microvm vs pc (K rounds)
#   startup   host process vs minnow container vs runc/crun/docker vs microVM (S runs; in
#             the lab unless --skip-lab; --density: how many fit in 2 GiB, ~30 minutes more)
#   lab-io    minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput (K rounds)
#   snapshot  restore to first answer vs cold boot and runc, clones' PSS, snapshot size (here)
# Writes DIR/BENCH/BENCH.{md,json,csv,svg} per benchmark and DIR/latest.{md,json} with every
# row and goal (DIR defaults to bench/results). Never fails on speed: exits 1 only if a
# measurement that was attempted did not run cleanly. The lab is shared: run this as
# `flock /tmp/minnow-lab.lock bash bench/run.sh ...` unless --skip-lab.
# Env: MINNOW_BIN (default target/release/minnow, built if missing), MINNOW_CACHE.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;; esac
BIN=${MINNOW_BIN:-$REPO/target/release/minnow}
BENCH_BIN=$REPO/target/release/minnow-bench
if [ ! -x "$BIN" ] || [ ! -x "$BENCH_BIN" ]; then
    echo "bench: $BIN or $BENCH_BIN missing; cargo build --release --workspace" >&2
    (cd "$REPO" && timeout 1200 cargo build --release --workspace) >&2 \
        || { echo "bench: cargo build --release --workspace failed" >&2; exit 1; }
fi
cd "$REPO" && exec "$BENCH_BIN" all --minnow "$BIN" "$@"
