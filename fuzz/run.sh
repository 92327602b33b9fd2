#!/usr/bin/env bash
# minnow's fuzz targets on stable Rust (docs/design.md, "Fuzzing").
#
#   fuzz/run.sh build               build every target (coverage-instrumented, libFuzzer)
#   fuzz/run.sh seeds               (re)write the seed corpora in fuzz/corpus/
#   fuzz/run.sh run TARGET SECONDS  fuzz one target from fuzz/corpus/TARGET (the seeds) and
#                                   fuzz/target/corpus/TARGET, which keeps what it finds
#   fuzz/run.sh all SECONDS         fuzz every target in turn (`make fuzz`)
#   fuzz/run.sh smoke [SECONDS]     replay fuzz/regressions, then fuzz each target for
#                                   SECONDS (default 20) from the stored corpus, without
#                                   adding to it (`make fuzz-smoke`, CI)
#   fuzz/run.sh replay TARGET FILE...  run inputs once (a crash reproduces)
#
# cargo-fuzz passes `-Z sanitizer=...`, which needs nightly. Without a sanitizer it needs
# no more than the SanitizerCoverage pass libFuzzer reads, which stable rustc runs when
# asked through -Cpasses and LLVM's own options: the same flags cargo-fuzz uses with
# `--sanitizer none`. --target keeps them off build scripts and proc-macros. A crash is a
# panic (debug assertions and overflow checks are on), an abort or a timeout.
#
# Each run is one target at a time under `nice -n 19` (NICE to change), with its
# scratch files in a fresh directory under /dev/shm (TMPDIR to change). A line of stats
# per run is appended to $FUZZ_STATS: bench/results/fuzz/campaign.jsonl for `run` and
# `all` (the campaign; `minnow-bench fuzz` makes bench/results/fuzz/fuzz.md of it),
# fuzz/target/smoke.jsonl for `smoke`.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ=$PWD
TARGET=x86_64-unknown-linux-gnu
BIN=$FUZZ/target/$TARGET/release
TARGETS=(blk_request net_tx_rx mmio_transport kernel_load vm_config layer_unpack config_json snapshot_state)
STATS=${FUZZ_STATS:-$FUZZ/../bench/results/fuzz/campaign.jsonl}
NICE=${NICE:-19}

# Per-target libFuzzer limits: the largest input worth trying, and the time after which
# one input is a hang (seconds).
max_len() {
    case $1 in
        blk_request) echo 16384 ;; net_tx_rx) echo 16384 ;; mmio_transport) echo 8192 ;;
        kernel_load) echo 65536 ;; vm_config) echo 4096 ;; layer_unpack) echo 65536 ;;
        config_json) echo 16384 ;; snapshot_state) echo 65536 ;;
    esac
}
timeout_s() {
    # blk_request has the default: a request's chain is read for at most 4096
    # descriptors, no longer walked whole when it is an indirect table of 65535 (it had
    # 25 s until then; bench/results/fuzz/findings.txt).
    case $1 in
        layer_unpack | kernel_load) echo 10 ;; *) echo 5 ;;
    esac
}

build() {
    export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
    nice -n "${BUILD_NICE:-10}" cargo build --release --locked --target "$TARGET" -p minnow-fuzz --bins
}

scratch() {
    mktemp -d "${TMPDIR:-/dev/shm}/minnow-fuzz.XXXXXX"
}

# sandbox WRITABLE_DIR... -- COMMAND...: runs COMMAND at nice $NICE. As root (the targets
# extract layers, make device nodes and chown as root), in a mount namespace of its own
# where every mount is read-only but the WRITABLE_DIRs, so a target that escaped its
# scratch directory (the layer_unpack oracle's failure) could not harm the host.
sandbox() {
    local rw=()
    while [ "$1" != -- ]; do rw+=("$(realpath "$1")"); shift; done
    shift
    if [ "$(id -u)" != 0 ] || [ -n "${FUZZ_NO_SANDBOX:-}" ]; then
        nice -n "$NICE" "$@"
        return
    fi
    nice -n "$NICE" unshare --mount --propagation private -- bash -c '
        n=$1; shift
        rw=("${@:1:$n}"); shift "$n"
        for d in "${rw[@]}"; do mount --bind "$d" "$d"; done
        while read -r mp; do
            mp=$(printf "%b" "$mp")
            keep=; for d in "${rw[@]}"; do [ "$mp" = "$d" ] && keep=1; done
            [ -n "$keep" ] || mount -o remount,bind,ro "$mp" 2>/dev/null || true
        done < <(awk "{print \$5}" /proc/self/mountinfo)
        exec "$@"' sandbox "${#rw[@]}" "${rw[@]}" "$@"
}

# fuzz TARGET SECONDS CORPUS_DIR...: one libFuzzer run; the first corpus dir receives new inputs.
fuzz() {
    local t=$1 secs=$2
    shift 2
    local tmp log
    tmp=$(scratch)
    log=$tmp/log
    mkdir -p "$FUZZ/artifacts/$t" "$1"
    local rc=0 start
    start=$(date +%s)
    TMPDIR=$tmp sandbox "$tmp" "$FUZZ/artifacts/$t" "$1" -- "$BIN/$t" -max_total_time="$secs" \
        -max_len="$(max_len "$t")" -timeout="$(timeout_s "$t")" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$FUZZ/artifacts/$t/" "$@" >"$log" 2>&1 || rc=$?
    tail -n 25 "$log" | grep -v '^#' || true
    record "$t" "$(($(date +%s) - start))" "$rc" "$log"
    rm -rf "$tmp"
    return "$rc"
}

# A JSON line of what the run did: execs, execs/s, coverage, crash or not.
record() {
    local t=$1 secs=$2 rc=$3 log=$4 execs rate cov ft
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    # libFuzzer prints no rate for a run that crashed in its first second.
    if [ "${rate:-0}" = 0 ] && [ "$secs" -gt 0 ]; then rate=$((${execs:-0} / secs)); fi
    mkdir -p "$(dirname "$STATS")"
    printf '{"target":"%s","seconds":%s,"execs":%s,"execs_per_sec":%s,"cov":%s,"ft":%s,"crashed":%s,"date":"%s"}\n' \
        "$t" "$secs" "${execs:-0}" "${rate:-0}" "${cov:-0}" "${ft:-0}" \
        "$([ "$rc" = 0 ] && echo false || echo true)" "$(date -u +%FT%TZ)" >>"$STATS"
}

replay() {
    local t=$1
    shift
    [ $# -eq 0 ] && return 0
    local tmp rc=0
    tmp=$(scratch)
    TMPDIR=$tmp sandbox "$tmp" -- "$BIN/$t" -timeout="$(timeout_s "$t")" -rss_limit_mb=2048 "$@" || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

case ${1:-} in
    build) build ;;
    seeds)
        # Without the coverage flags: a plain program.
        rm -rf "$FUZZ/corpus"
        nice -n "${BUILD_NICE:-10}" cargo run --release --locked -p minnow-fuzz-seeds -- "$FUZZ/corpus"
        ;;
    run)
        build
        fuzz "$2" "${3:-300}" "$FUZZ/target/corpus/$2" "$FUZZ/corpus/$2"
        ;;
    all)
        build
        failed=()
        for t in "${TARGETS[@]}"; do
            echo "== $t (${2:-300} s)"
            fuzz "$t" "${2:-300}" "$FUZZ/target/corpus/$t" "$FUZZ/corpus/$t" || failed+=("$t")
        done
        [ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes in ${failed[*]}; see fuzz/artifacts/" >&2; exit 1; }
        ;;
    smoke)
        STATS=${FUZZ_STATS:-$FUZZ/target/smoke.jsonl}
        build
        failed=()
        for t in "${TARGETS[@]}"; do
            echo "== $t: regressions, then ${2:-20} s from the stored corpus"
            regs=()
            [ -d "$FUZZ/regressions/$t" ] && mapfile -t regs < <(find "$FUZZ/regressions/$t" -type f | sort)
            replay "$t" "${regs[@]}" >/dev/null 2>&1 || { failed+=("$t (regression)"); continue; }
            # New inputs go to a scratch corpus (listed first), so the stored one stays put.
            new=$(scratch)
            fuzz "$t" "${2:-20}" "$new" "$FUZZ/corpus/$t" -seed=1 || failed+=("$t")
            rm -rf "$new"
        done
        [ ${#failed[@]} -eq 0 ] || { echo "fuzz-smoke: failed: ${failed[*]}; see fuzz/artifacts/" >&2; exit 1; }
        ;;
    replay)
        build
        replay "${@:2}"
        ;;
    *)
        sed -n '2,13p' "$0" >&2
        exit 2
        ;;
esac
