#!/usr/bin/env bash
# lab/run.sh [--timeout SECONDS] [--mem MiB] [--smp N] [-v] -- CMD [ARGS...]
#
# Runs CMD inside the nested-KVM lab: QEMU (TCG, -cpu max: an AMD CPU with SVM)
# boots a Debian generic kernel that loads kvm_amd, mounts this machine's root
# over 9p, chroots into it and runs CMD in the caller's working directory with
# the caller's environment plus MINNOW_LAB=1. CMD's stdout and stderr stream
# back on run.sh's stdout and stderr (through two extra serial ports); run.sh
# exits with CMD's exit status. If the lab hangs or crashes it exits non-zero
# (124 on timeout, 125 otherwise: the lab host crashed, or hung with a CPU stuck for
# MINNOW_LAB_HUNG_AFTER seconds, default 120) with a one-line reason on stderr.
#
# Env: MINNOW_CACHE (default /var/cache/minnow), MINNOW_LAB_TIMEOUT (600),
#      MINNOW_LAB_MEM (3072), MINNOW_LAB_VERBOSE=1 (same as -v: timings, console).
set -uo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MINNOW_CACHE:-/var/cache/minnow}
TIMEOUT=${MINNOW_LAB_TIMEOUT:-600}
MEM=${MINNOW_LAB_MEM:-3072}
SMP=2
VERBOSE=${MINNOW_LAB_VERBOSE:-0}
HUNG_AFTER=${MINNOW_LAB_HUNG_AFTER:-120}  # seconds a lab CPU may be stuck (soft lockup)

die() { echo "lab: $*" >&2; exit 125; }
usage() { echo "usage: $0 [--timeout SECONDS] [--mem MiB] [--smp N] [-v] -- CMD [ARGS...]" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --mem) MEM=${2:?}; shift 2 ;;
        --mem=*) MEM=${1#*=}; shift ;;
        --smp) SMP=${2:?}; shift 2 ;;
        --smp=*) SMP=${1#*=}; shift ;;
        -v|--verbose) VERBOSE=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || usage

# Prepare (or check) the caches; quiet when everything is in place.
if ! MINNOW_SETUP_QUIET=1 bash "$LAB_DIR/setup.sh"; then
    die "setup failed; run: sudo bash $LAB_DIR/setup.sh"
fi
KERNEL=$CACHE/lab/host-vmlinuz
INITRD=$CACHE/lab/host-initrd.img
[ -s "$KERNEL" ] && [ -s "$INITRD" ] || die "lab not set up; run: bash $LAB_DIR/setup.sh"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing; run: bash $LAB_DIR/setup.sh"

# Per-run directory on the shared root (the guest sees the same path).
RUN=$(mktemp -d /tmp/minnow-lab.XXXXXXXX) || die "mktemp failed"
chmod 755 "$RUN"
QPID= ; OPID= ; EPID=
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null
    for p in $OPID $EPID; do kill "$p" 2>/dev/null; done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The job script: caller's environment, cwd, then exec CMD.
{
    echo '#!/bin/bash'
    for n in $(compgen -e); do
        case "$n" in
            PWD|OLDPWD|SHLVL|_|TERM|TERMCAP|COLUMNS|LINES|DISPLAY|WAYLAND_DISPLAY|TMUX|TMUX_PANE|SSH_*|XDG_RUNTIME_DIR|DBUS_SESSION_BUS_ADDRESS|BASH_FUNC_*) continue ;;
        esac
        [[ "$n" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        printf 'export %s=%q\n' "$n" "${!n}"
    done
    printf 'export PATH=%q\n' "${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo 'export MINNOW_LAB=1 TERM=dumb'
    printf 'export HOME=%q\n' "${HOME:-/root}"
    printf 'cd -- %q || { echo "lab: cannot cd to %q" >&2; exit 125; }\n' "$PWD" "$PWD"
    printf 'exec'; printf ' %q' "$@"; echo
} >"$RUN/job.sh"

# Job stdout/stderr come back through ttyS1/ttyS2 -> FIFOs -> our stdout/stderr.
mkfifo "$RUN/out.fifo" "$RUN/err.fifo" || die "mkfifo failed"
cat "$RUN/out.fifo" & OPID=$!
cat "$RUN/err.fifo" >&2 & EPID=$!

t0=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
    -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 quiet minnow.run=$RUN" \
    -virtfs "local,path=/,mount_tag=host,security_model=passthrough,multidevs=remap,id=host0" \
    -serial "file:$RUN/console.log" \
    -serial "file:$RUN/out.fifo" \
    -serial "file:$RUN/err.fifo" \
    -d cpu_reset -D "$RUN/qemu-debug.log" \
    </dev/null >"$RUN/qemu.log" 2>&1 &
QPID=$!
# Watchdog: a lab host whose kernel reports a CPU stuck for minutes (soft lockup) has
# hung (seen under TCG); stop it now instead of at the time limit.
hung=
while kill -0 "$QPID" 2>/dev/null; do
    sleep 2
    stuck=$(grep -a -o 'soft lockup - CPU#[0-9]* stuck for [0-9]*s' "$RUN/console.log" 2>/dev/null \
        | sed 's/.* for \([0-9]*\)s/\1/' | sort -n | tail -n1)
    if [ -n "$stuck" ] && [ "$stuck" -ge "$HUNG_AFTER" ]; then
        hung=$(grep -a 'soft lockup' "$RUN/console.log" | tail -n1 | tr -d '\r' | cut -c1-160)
        kill "$QPID" 2>/dev/null
        break
    fi
done
wait "$QPID"; qrc=$?
QPID=
t1=$(date +%s.%N)

# Let the readers finish; unblock any that never saw QEMU open its FIFO.
for f in out err; do
    p=$OPID; [ $f = err ] && p=$EPID
    if kill -0 "$p" 2>/dev/null; then
        timeout 2 bash -c ': >"$1"' _ "$RUN/$f.fifo" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
done
OPID= ; EPID=

# console_lines N: the lab console's last N non-blank lines.
console_lines() { tr -d '\r' <"$RUN/console.log" 2>/dev/null | grep -a -v '^\s*$' | tail -n "$1"; }
last_console() { console_lines 1 | cut -c1-160; }

if [ "$VERBOSE" = 1 ]; then
    echo "lab: ---- console ----" >&2; tr -d '\r' <"$RUN/console.log" >&2 2>/dev/null
    js=$(cat "$RUN/job-start" 2>/dev/null || echo '?')
    echo "lab: wall $(echo "$t1 - $t0" | bc 2>/dev/null || awk "BEGIN{print $t1-$t0}") s; guest uptime at job start ${js} s; qemu status $qrc" >&2
fi

if [ -s "$RUN/rc" ]; then
    rc=$(cat "$RUN/rc")
    [[ "$rc" =~ ^[0-9]+$ ]] || die "bad exit status file: $rc"
    exit "$rc"
fi
if [ -n "$hung" ]; then
    echo "lab: the lab host hung (its kernel: ${hung}); stopped it" >&2
    console_lines 40 | sed 's/^/lab| /' >&2
    exit 125
fi
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "lab: timed out after ${TIMEOUT}s (last console line: $(last_console))" >&2
    exit 124
fi
reason=$(last_console)
grep -q -i "triple fault" "$RUN/qemu-debug.log" 2>/dev/null && reason="the lab host's CPU triple-faulted (QEMU reset it); last console line: $reason"
[ -n "$reason" ] || reason=$(tr '\n' ' ' <"$RUN/qemu.log" | cut -c1-200)
echo "lab: lab crashed before the job finished (qemu status $qrc): ${reason:-no output}" >&2
# The lab host's last words, for the CI log (the run directory is removed on exit).
{
    echo "lab: ---- last 40 console lines ----"
    console_lines 40 | sed 's/^/lab| /'
    [ -s "$RUN/qemu.log" ] && sed 's/^/qemu| /' "$RUN/qemu.log" | tail -n 20
    # -d cpu_reset: the lab CPU's registers just before QEMU reset it.
    if grep -q -i "triple fault" "$RUN/qemu-debug.log" 2>/dev/null; then
        echo "lab: ---- the lab CPU at its triple fault (qemu -d cpu_reset) ----"
        grep -i -A 30 -m 1 "triple fault" "$RUN/qemu-debug.log" | sed 's/^/reset| /'
    fi
} >&2
exit 125
