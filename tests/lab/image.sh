#!/usr/bin/env bash
# Tier 3, run inside the lab (bash lab/run.sh -- bash tests/lab/image.sh): `minnow run
# --image` boots minnow's minimal kernel with an image from the store as its root disk.
#   - the workload's output is minnow's stdout and its exit status minnow's exit code
#   - arguments with spaces and quotes reach the workload unchanged (minnow.cmd encoding)
#   - --container runs the workload in a container inside the VM (minnow's own runtime)
#   - the cached ext4 is built once, reused, and never modified by runs
#   - a registry image (docker-registry on the lab's loopback, busybox pushed by skopeo)
#     is pulled by `minnow run --image REGISTRY/REPO:TAG` and boots as a microVM
#   - errors: unknown image, command too long
# Prints "N passed, M failed"; exits non-zero if a check failed.
set -uo pipefail

MINNOW=$(realpath "${MINNOW:-target/release/minnow}")
KDIR=${MINNOW_CACHE:-/var/cache/minnow}/kernel/current
[ -e /dev/kvm ] || { echo "image-test: no /dev/kvm; run me through lab/run.sh" >&2; exit 2; }
[ -f "$KDIR/bzImage" ] || { echo "image-test: no minimal kernel; run resources/guest/kernel/build.sh" >&2; exit 2; }

pass=0 fail=0
check() { local what=$1; shift; if "$@"; then echo "ok   $what"; pass=$((pass + 1)); else echo "FAIL $what"; fail=$((fail + 1)); fi; }
T=$(mktemp -d)
S=$T/store
trap 'umount "$T" 2>/dev/null; rm -rf "$T"' EXIT
# The lab's /tmp is the host's over 9p, where building an image and a disk takes
# minutes under TCG; a tmpfs keeps the store in the lab's memory.
[ "${MINNOW_LAB:-}" = 1 ] && mount -t tmpfs -o size=1g tmpfs "$T"

vm() { # name, minnow run args...
    local name=$1; shift
    local t0=$(date +%s.%N)
    timeout 300 "$MINNOW" run --store "$S" --mem-mib 256 "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
    echo "--- $name: exit $(cat "$T/$name.rc"), $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    sed 's/^/    out| /' "$T/$name.out" | head -20
    sed 's/^/    err| /' "$T/$name.err" | head -20
}
out() { cat "$T/$1.out"; }
rc() { cat "$T/$1.rc"; }
disks() { ls "$S"/vm-disks/*-"$1"-*.ext4 2>/dev/null; }

vm plain --image busybox -- sh -c 'echo hi; exit 3'
check "plain: prints hi (and nothing else on stdout)" test "$(out plain)" = "hi"
check "plain: exit code 3" test "$(rc plain)" = 3
check "plain: the disk was built" grep -q "built VM disk" "$T/plain.err"
check "plain: one cached disk" test "$(disks plain | wc -l)" = 1
sum=$(sha256sum <"$(disks plain)")

vm quote --image busybox -- echo "a  b" "it's"
check "quoting: spaces and quotes survive" test "$(out quote)" = "a  b it's"
check "quoting: exit 0" test "$(rc quote)" = 0
check "second run reuses the cached disk" grep -q "using cached VM disk" "$T/quote.err"
check "second run did not build" bash -c "! grep -q 'built VM disk' '$T/quote.err'"

vm write --image busybox -- sh -c 'echo scribble >/etc/hostname; echo $PATH; pwd'
check "env: the image's PATH and workdir" test "$(out write)" = "$(printf '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/')"
check "cached disk not modified by runs" test "$(sha256sum <"$(disks plain)")" = "$sum"
check "no run copies left behind" test -z "$(ls "$S"/vm-disks/run-* 2>/dev/null)"

vm ctr --image busybox --container -- sh -c 'echo in-container $(hostname); cat /proc/1/cmdline | tr "\0" " "; echo; exit 5'
check "container: output" bash -c "grep -q '^in-container ' '$T/ctr.out'"
check "container: the workload is PID 1 of its own namespace" bash -c "grep -q '^sh -c' '$T/ctr.out'"
check "container: exit code 5" test "$(rc ctr)" = 5
check "container: its own cached disk" test "$(disks container | wc -l)" = 1
[ "$(rc ctr)" = 5 ] || debugfs -R 'ls -l /.minnow' "$(disks container)" 2>/dev/null | sed 's/^/    disk| /'

vm ctr2 --image busybox --container -- echo "x  y" "it's"
check "container: quoting survives two hops" test "$(out ctr2)" = "x  y it's"
check "container: cached disk reused" grep -q "using cached VM disk" "$T/ctr2.err"

# A pulled image as a microVM: docker-registry on the lab's loopback, busybox pushed by
# skopeo; `minnow run --image REF` pulls it (the store lacks it) and boots it.
ip link set lo up 2>/dev/null
REGPORT=5741
mkdir -p "$T/reg"
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: "127.0.0.1:%s"}\n' "$T/reg" "$REGPORT" >"$T/reg.yml"
docker-registry serve "$T/reg.yml" >"$T/reg.log" 2>&1 &
REGPID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$REGPORT) 2>/dev/null && break; sleep 0.2; done
timeout 300 skopeo copy --dest-tls-verify=false "oci:$S:busybox" "docker://127.0.0.1:$REGPORT/lab/bb:1" >"$T/skopeo.log" 2>&1
check "registry: skopeo pushed busybox" test $? = 0
vm pulled --image "127.0.0.1:$REGPORT/lab/bb:1" -- sh -c 'echo pulled-and-booted; exit 4'
check "registry: the pulled image boots and prints" test "$(out pulled)" = "pulled-and-booted"
check "registry: exit code 4" test "$(rc pulled)" = 4
check "registry: it was pulled first" grep -q "pulled 127.0.0.1:$REGPORT/lab/bb:1" "$T/pulled.err"
kill "$REGPID" 2>/dev/null; wait "$REGPID" 2>/dev/null

vm unknown --image no-such-image -- true
check "unknown image: exit 1 and one error line" bash -c "test \"\$(cat '$T/unknown.rc')\" = 1 && test \"\$(wc -l <'$T/unknown.err')\" = 1 && grep -q 'no image' '$T/unknown.err'"
vm long --image busybox -- echo "$(head -c 2000 /dev/zero | tr '\0' x)"
check "command too long: exit 1 and a clear error" bash -c "test \"\$(cat '$T/long.rc')\" = 1 && grep -q 'too long' '$T/long.err'"

echo "image-test: $pass passed, $fail failed"
[ "$fail" = 0 ]
