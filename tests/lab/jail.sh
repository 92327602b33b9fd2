#!/usr/bin/env bash
# Tier 3, run inside the lab: `minnow run --jail` with minnow's minimal kernel and an ext4
# root on virtio-blk, on the lab's cgroup v2 (the host is hybrid v1; tests/jail.rs covers
# it there with tiny guests).
#   - the jailed VMM boots Linux and exits with the workload's status
#   - while it runs: it is uid:gid, PID 1 of its PID namespace, in the cgroup v2
#     minnow-jail-ID with --jail-mem-mib written to memory.max
#   - SIGTERM to minnow stops it; afterwards no cgroup, no DIR
# Prints "jail-test: N passed, M failed"; exits non-zero if a check failed.
set -uo pipefail

source "$(dirname "$0")/lib.sh"
need jail-test kernel
T=$(mktemp -d)
JAILER=
cleanup() {
    [ -n "$JAILER" ] && kill -TERM "$JAILER" 2>/dev/null && sleep 2 && kill -KILL "$JAILER" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
# The lab boots without a cgroup mount; minnow-cgroup finds cgroup2 from mountinfo.
grep -q ' - cgroup' /proc/self/mountinfo || mount -t cgroup2 cgroup2 /sys/fs/cgroup
U=64201 G=64202 ID=lab-$$
CG=/sys/fs/cgroup/minnow-jail-$ID
rootfs jail-test --size 32 "$T/rootfs.ext4"
chown "$U:$G" "$T/rootfs.ext4"

jailed() { # name, guest command... (exec: call it in a subshell, so $! is minnow)
    local name=$1; shift
    exec "$MINNOW" run --kernel "$KDIR/bzImage" --disk "$T/rootfs.ext4" --mem-mib 256 \
        --jail "$T/root" --uid "$U" --gid "$G" --jail-id "$ID" --jail-mem-mib 512 \
        --cmdline "quiet -- $*" </dev/null >"$T/$name.out" 2>"$T/$name.err"
}
show() {
    echo "--- $1: exit $(cat "$T/$1.rc" 2>/dev/null)"
    tr -d '\r' <"$T/$1.out" | grep -a -v '^\[' | grep -a . | sed 's/^/    /' | head -20
    sed 's/^/    /' "$T/$1.err"
}

(jailed status /bin/sh -c "\"echo jailed-linux; exit 5\"")
echo $? >"$T/status.rc"
show status
check "the jailed VMM boots Linux and exits with the workload's status 5" test "$(cat "$T/status.rc")" = 5
check "the guest's command ran" grep -a -q jailed-linux "$T/status.out"
check "no cgroup left" test ! -e "$CG"
check "no DIR left" test ! -e "$T/root"

jailed wait /bin/sh -c "\"echo jail-waiting; sleep 600\"" &
JAILER=$!
for _ in $(seq 1 600); do
    grep -a -q jail-waiting "$T/wait.out" 2>/dev/null && break
    sleep 0.5
done
VMM=$(ps -o pid= --ppid "$JAILER" | tr -d ' ' | head -n1)
echo "--- jailer $JAILER, VMM ${VMM:-none}"
status() { grep "^$1:" "/proc/$VMM/status" | cut -f2- | tr -s '\t ' ' ' | sed 's/ $//'; }
check "the guest is up under the jail" grep -a -q jail-waiting "$T/wait.out"
check "the VMM runs as $U:$G" test "$(status Uid)" = "$U $U $U $U" -a "$(status Gid)" = "$G $G $G $G"
check "the VMM is PID 1 of its PID namespace" test "$(status NSpid | cut -d' ' -f2)" = 1
check "the VMM has no capabilities" test "$(status CapEff)" = 0000000000000000
check "the VMM is in the cgroup v2 minnow-jail-$ID" grep -q "^0::/minnow-jail-$ID\$" "/proc/$VMM/cgroup"
check "--jail-mem-mib 512 is the cgroup's memory.max" test "$(cat "$CG/memory.max" 2>/dev/null)" = 536870912
kill -TERM "$JAILER"
wait "$JAILER"
echo $? >"$T/wait.rc"
JAILER=
show wait
check "SIGTERM to minnow stops the jailed VM cleanly" test "$(cat "$T/wait.rc")" = 0
check "no cgroup left after SIGTERM" test ! -e "$CG"
check "no DIR left after SIGTERM" test ! -e "$T/root"

finish jail-test
