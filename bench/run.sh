#!/usr/bin/env bash
# bench/run.sh [--runs N] [--mem-runs M] [--lab-rounds K] [--skip-lab] [--out DIR]
#              [--startup-runs S] [--skip-startup] [--skip-lab-io] [--density]
#
# minnow benchmarks (see bench/README.md):
#   1. VMM start -> guest boot-timer write + CPU time, tiny guest, this host's /dev/kvm (N runs, default 30)
#   2. VMM memory overhead (RSS - guest-memory RSS), halt.elf at 128 and 1024 MiB (M runs, default 5)
#   3. nested-lab boot of the Debian cloud kernel: minnow vs qemu microvm vs qemu pc (K rounds, default 3)
#   4. `minnow-bench startup`: host process vs minnow container vs runc/crun/docker vs microVM
#      (S runs, default 10; in the lab unless --skip-lab) -> DIR/startup/; with --density
#      also how many instances of each fit in 2 GiB (adds ~30 minutes in the lab)
#  4b. `minnow-bench registry`: pull and push through a loopback registry, minnow vs skopeo,
#      cold and warm -> DIR/registry/
#   5. minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput in the lab
#      (K rounds; skipped with --skip-lab-io or --skip-lab) -> DIR/lab-io.md
# Writes DIR/latest.md and DIR/latest.json (DIR defaults to bench/results) and prints the table.
# Never fails on speed: exits 1 only if a measurement that was attempted did not run cleanly.
# Env: MINNOW_BIN (default target/release/minnow, built if missing), MINNOW_CACHE.
set -uo pipefail
export PYTHONDONTWRITEBYTECODE=1

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
RUNS=30 MEM_RUNS=5 LAB_ROUNDS=3 SKIP_LAB=0 OUT=$BENCH/results STARTUP_RUNS=10 SKIP_STARTUP=0 LAB_IO=1 DENSITY=0
usage() { sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?}; shift 2 ;;
        --mem-runs) MEM_RUNS=${2:?}; shift 2 ;;
        --lab-rounds) LAB_ROUNDS=${2:?}; shift 2 ;;
        --skip-lab) SKIP_LAB=1; shift ;;
        --startup-runs) STARTUP_RUNS=${2:?}; shift 2 ;;
        --skip-startup) SKIP_STARTUP=1; shift ;;
        --skip-lab-io) LAB_IO=0; shift ;;
        --lab-io) LAB_IO=1; shift ;; # the default; kept for old command lines
        --density) DENSITY=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "bench: unknown argument: $1" >&2; usage ;;
    esac
done
for n in "$RUNS" "$MEM_RUNS" "$LAB_ROUNDS" "$STARTUP_RUNS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench: counts must be positive integers" >&2; exit 2; }
done
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
die() { echo "bench: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"

# Work on private copies of the binary and guests so a concurrent rebuild can't
# change them mid-run. /tmp is on the host root, so the lab (9p) sees them too.
WORK=$(mktemp -d /tmp/minnow-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
BIN=${MINNOW_BIN:-$REPO/target/release/minnow}
BENCH_BIN=$(dirname "$BIN")/minnow-bench
if [ ! -x "$BIN" ] || [ ! -x "$BENCH_BIN" ]; then
    echo "bench: $BIN or $BENCH_BIN missing; cargo build --release --workspace" >&2
    (cd "$REPO" && timeout 1200 cargo build --release --workspace) >&2 || die "cargo build --release --workspace failed"
fi
cp "$BIN" "$WORK/minnow" || die "cannot copy $BIN"
cp "$BENCH_BIN" "$WORK/minnow-bench" || die "cannot copy $BENCH_BIN"
timeout 120 bash "$REPO/tests/guests/build.sh" "$WORK/guests" >&2 || die "building test guests failed"

# 1 + 2: this host. Bounded: each boot has a 20 s deadline, each memory run ~30 s.
HOST_T=$(( 60 + RUNS * 25 + MEM_RUNS * 2 * 40 ))
timeout -k 10 "$HOST_T" python3 "$BENCH/bench.py" host --minnow "$WORK/minnow" \
    --guests "$WORK/guests" --runs "$RUNS" --mem-runs "$MEM_RUNS" --lab-rounds "$LAB_ROUNDS" \
    --json "$WORK/host.json" || die "host benchmarks did not complete (status $?)"

# 3: the nested lab.
LAB_ARGS=()
if [ "$SKIP_LAB" = 1 ]; then
    LAB_ARGS=(--lab-skip "--skip-lab given")
elif ! setup_err=$(MINNOW_SETUP_QUIET=1 timeout 900 bash "$REPO/lab/setup.sh" 2>&1 >/dev/null); then
    LAB_ARGS=(--lab-skip "lab not available: lab/setup.sh failed: $(printf '%s' "$setup_err" | tail -n 1)")
else
    CACHE=${MINNOW_CACHE:-/var/cache/minnow}
    BOOT_T=90
    LAB_T=$(( 120 + LAB_ROUNDS * 3 * (BOOT_T + 20) ))
    echo "bench: 3. lab, $LAB_ROUNDS rounds of minnow / qemu microvm / qemu pc (typically 30 s per round; limit ${LAB_T} s) ..." >&2
    (cd "$REPO" && timeout -k 10 $(( LAB_T + 30 )) bash lab/run.sh --timeout "$LAB_T" -- \
        python3 "$BENCH/bench.py" lab-rounds --minnow "$WORK/minnow" --rounds "$LAB_ROUNDS" \
        --cache "$CACHE" --boot-timeout "$BOOT_T") >"$WORK/lab.out" 2>"$WORK/lab.err"
    lab_rc=$?
    cp "$WORK/lab.out" "$OUT/latest-lab.log" 2>/dev/null
    lab_err=$(grep -a -v '^\s*$' "$WORK/lab.err" | tail -n 1 | cut -c1-300)
    python3 "$BENCH/bench.py" lab-summary --log "$WORK/lab.out" --rounds "$LAB_ROUNDS" \
        --lab-status "$lab_rc" --lab-err "$lab_err" >"$WORK/lab.json" || die "lab summary failed"
    LAB_ARGS=(--lab-json "$WORK/lab.json")
fi

python3 "$BENCH/bench.py" report --host-json "$WORK/host.json" "${LAB_ARGS[@]}" --out "$OUT"
rc=$?

# 4: start-up against runc, crun, docker (bench/README.md); all rows in one lab run unless --skip-lab.
if [ "$SKIP_STARTUP" = 0 ]; then
    ST_ARGS=(--runs "$STARTUP_RUNS" --out "$OUT/startup")
    if [ "$SKIP_LAB" = 1 ]; then ST_ARGS+=(--no-vm); else ST_ARGS+=(--in-lab); fi
    [ "$DENSITY" = 1 ] && ST_ARGS+=(--density)
    echo "bench: 4. minnow-bench startup ${ST_ARGS[*]} ..." >&2
    (cd "$REPO" && timeout -k 10 7200 "$WORK/minnow-bench" startup --minnow "$WORK/minnow" "${ST_ARGS[@]}") \
        || die "minnow-bench startup failed (status $?)"
fi

# 4b: registry pull and push, minnow vs skopeo, on this host (a loopback docker-registry; a minute).
echo "bench: 4b. minnow-bench registry ..." >&2
(cd "$REPO" && timeout -k 10 1800 "$WORK/minnow-bench" registry --minnow "$WORK/minnow" --out "$OUT/registry") \
    || rc=1

# 5 (unless --skip-lab-io): minimal-kernel boot vs QEMU, virtio-blk and virtio-net throughput
# in the lab (15-40 minutes).
if [ "$LAB_IO" = 1 ] && [ "$SKIP_LAB" = 0 ]; then
    echo "bench: 5. lab I/O, $LAB_ROUNDS rounds (bench/lab_io.sh) ..." >&2
    (cd "$REPO" && MINNOW="$WORK/minnow" timeout -k 10 2500 bash lab/run.sh --timeout 2400 -- \
        bash bench/lab_io.sh --rounds "$LAB_ROUNDS" --out "$OUT/lab-io.md") || rc=1
fi
exit "$rc"
