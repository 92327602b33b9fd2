# Shared by the tier-3 scripts (sourced): result counters, checks, the closing line.
MINNOW=$(realpath "${MINNOW:-target/release/minnow}")
KDIR=${MINNOW_CACHE:-/var/cache/minnow}/kernel/current
LAB_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pass=0
fail=0

# check DESCRIPTION COMMAND...: runs COMMAND, counts and prints the outcome.
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        pass=$((pass + 1))
    else
        echo "FAIL $what"
        fail=$((fail + 1))
    fi
}

# need NAME [kernel]: stops unless this runs inside the lab (and the minimal kernel exists).
need() {
    [ -e /dev/kvm ] || { echo "$1: no /dev/kvm; run me through lab/run.sh" >&2; exit 2; }
    [ -x "$MINNOW" ] || { echo "$1: $MINNOW missing; cargo build --release first" >&2; exit 2; }
    if [ "${2:-}" = kernel ] && [ ! -f "$KDIR/bzImage" ]; then
        echo "$1: no minimal kernel; run resources/guest/kernel/build.sh" >&2
        exit 2
    fi
}

# finish NAME: prints the result line; the exit status says whether all checks passed.
finish() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" = 0 ]
}

# rootfs NAME ARGS...: builds a guest root filesystem with resources/guest/mkrootfs.sh
# (ARGS as for it); on failure prints why and ends the script with its result line.
rootfs() {
    local name=$1 log
    shift
    log=$(mktemp)
    if ! timeout 300 bash "$LAB_TESTS/../../resources/guest/mkrootfs.sh" "$@" 2>"$log"; then
        echo "FAIL mkrootfs $*:"
        sed 's/^/    /' "$log"
        rm -f "$log"
        fail=$((fail + 1))
        finish "$name"
        exit 1
    fi
    rm -f "$log"
}
