#!/usr/bin/env bash
# Runs every tier-3 test script inside one lab boot (lab/run.sh -- bash tests/lab/all.sh)
# and sums their results. Each script prints "NAME: N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/../.."
total_pass=0 total_fail=0 status=0
for t in boot minimal net image; do
    script=tests/lab/$t.sh
    [ -f "$script" ] || continue
    echo "=== lab: $t"
    out=$(mktemp)
    bash "$script" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n1)
    rm -f "$out"
    p=$(echo "$line" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    if [ -z "$p" ]; then
        echo "lab: $t did not report results (exit $rc)"
        p=0 f=1
    fi
    [ "$rc" = 0 ] || status=1
    total_pass=$((total_pass + p)) total_fail=$((total_fail + f))
done
echo "lab: $total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ] && exit "$status"
exit 1
