#!/usr/bin/env bash
# scripts/order-symbols.sh [MINNOW]: regenerate resources/link/minnow.order, the order in which
# the linker lays out the functions `minnow run` executes (build.rs passes it to lld as
# --symbol-ordering-file). Packing them together means the VMM maps fewer pages of its own
# text: page faults at start-up and PSS (issue 13, part 5; docs/design.md, "Start-up").
# It runs `minnow run` under callgrind on two tiny guests (hello64: start-up, serial, reset;
# halt: HLT and SIGTERM) and keeps the binary's own functions, in the order first called.
# Needs valgrind. callgrind has no seccomp(2): two runs use --seccomp off, and a third with the
# filters on, which builds them and then fails to install them, adds the filter-building code.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/target/release/minnow}
OUT=$REPO/resources/link/minnow.order
command -v valgrind >/dev/null || { echo "order-symbols: valgrind missing; apt-get install valgrind" >&2; exit 1; }
work=$(mktemp -d /tmp/minnow-order.XXXXXX)
trap 'rm -rf "$work"' EXIT
sh "$REPO/tests/guests/build.sh" "$work/g" >/dev/null
cg() { # name seccomp guest [seconds before SIGTERM]
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$1.cg" \
        "$BIN" run --seccomp "$2" --mem-mib 128 --kernel "$work/g/$3.elf" >"$work/$1.log" 2>&1 &
    local pid=$!
    if [ -n "${4:-}" ]; then sleep "$4"; kill -TERM "$pid"; fi
    if ! wait "$pid" && [ "$2" = off ]; then
        echo "order-symbols: minnow run ($3) under callgrind failed:" >&2; cat "$work/$1.log" >&2; exit 1
    fi
    [ -s "$work/$1.cg" ] || { echo "order-symbols: callgrind wrote no profile for $1" >&2; exit 1; }
}
cg hello off hello64
cg halt off halt 8
cg filters on hello64
nm --defined-only "$BIN" | awk '$2 ~ /^[tT]$/ {print $3}' | sort -u >"$work/text"
# callgrind numbers each function where it first appears: that is first-call order.
cat "$work/hello.cg" "$work/halt.cg" "$work/filters.cg" | sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' |
    awk 'NR==FNR {t[$0]=1; next} ($0 in t) && !seen[$0]++' "$work/text" - >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "order-symbols: $(wc -l <"$OUT") functions in ${OUT#"$REPO/"}"
