#!/bin/sh
# minnow guest init (PID 1). The one copy: resources/guest/mkrootfs.sh installs it as
# /init; `minnow run --image` installs it as /.minnow/init (with `#!/.minnow/bin/sh`,
# busybox applets in /.minnow/bin, so images without busybox boot too).
#
# The workload, in this order of precedence:
#  - minnow.cmd=B64 on the kernel command line: base64 of a shell-quoted command line
#    (minnow run -- CMD...; the kernel's own splitting only knows double quotes);
#  - arguments after ` -- ` on the kernel command line (init's argv);
#  - neither: an interactive shell.
# /.minnow/env (if present) is sourced in the workload's subshell: the image's
# environment and working directory. `minnow.raw`: the console does not turn \n into
# \r\n (minnow passes it when its stdout is not a terminal).
export PATH=/.minnow/bin:/sbin:/bin:/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# DEVTMPFS_MOUNT kernels have mounted /dev already (busybox-static has no mountpoint).
grep -q '^[^ ]* /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
[ -t 1 ] || exec </dev/console >/dev/console 2>&1
read -r CMDLINE </proc/cmdline

# Root read-write unless the disk itself is read-only.
case " $(awk '$2 == "/" { o = $4 } END { gsub(",", " ", o); print o }' /proc/mounts) " in
*" ro "*)
    disk_ro=0
    for a in $CMDLINE; do
        case "$a" in root=/dev/*) d=${a#root=/dev/}; [ "$(cat /sys/class/block/$d/ro 2>/dev/null)" = 1 ] && disk_ro=1 ;; esac
    done
    [ $disk_ro = 1 ] || mount -o remount,rw / 2>/dev/null || true
    ;;
esac

mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
hostname minnow
ip link set lo up 2>/dev/null

# Boot timer (Firecracker's convention): MMIO byte write of 123.
devmem 0xd0000000 8 123 || echo "minnow-init: boot-timer devmem write failed"

# Stop leftovers, flush, remount / read-only (commits the ext4 journal, so the
# image stays clean and can be reused on a read-only disk), and wait until the
# console has sent everything (tcsetattr TCSADRAIN via stty).
quiesce() {
    kill -KILL -1 2>/dev/null   # everything but PID 1
    sync
    mount -o remount,ro / 2>/dev/null
    stty -F /dev/console "$(stty -F /dev/console -g 2>/dev/null)" 2>/dev/null || sleep 0.1
}
halt_vm() {
    # minnow.cmd: the kernel's "reboot: Restarting system" is KERN_EMERG, which `quiet`
    # does not hide; console log level 0 keeps the workload's output clean.
    [ "$lvl" = 6 ] && echo 0 >/proc/sys/kernel/printk 2>/dev/null
    case " $CMDLINE " in
    *" minnow.poweroff "*) poweroff -f ;;
    *) reboot -f ;;
    esac
    while :; do sleep 3600; done   # PID 1 must not exit
}

# Log level of the `exit RC` line: <1> shows through `quiet`; minnow.cmd users get
# the status as minnow's exit code, so their console stays clean (<6>).
lvl=1
for a in $CMDLINE; do
    case "$a" in
    minnow.cmd=*)
        lvl=6
        if ! decoded=$(echo "${a#minnow.cmd=}" | base64 -d) || ! eval "set -- $decoded"; then
            echo "minnow-init: cannot decode minnow.cmd"
            set -- sh -c 'exit 126'
        fi
        ;;
    minnow.raw) stty -F /dev/console -onlcr 2>/dev/null ;;
    esac
done

if [ $# -gt 0 ]; then
    # A subshell, so a workload like `exit 3` cannot end PID 1.
    (
        if [ -f /.minnow/env ]; then . /.minnow/env; fi
        "$@"
    ) </dev/null
    rc=$?
    quiesce
    echo "<$lvl>minnow-init: exit $rc" >/dev/kmsg 2>/dev/null || echo "minnow-init: exit $rc"
    devmem 0xd0000004 8 "$rc" || echo "minnow-init: exit-status devmem write failed"
else
    echo "minnow-init: no workload (pass one after ' -- ' on the kernel command line); starting a shell, exit to stop the VM"
    setsid cttyhack sh -l
    quiesce
fi
halt_vm
