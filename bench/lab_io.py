#!/usr/bin/env python3
"""I/O and boot benchmarks inside the nested-KVM lab (driven by bench/lab_io.sh).

  lab_io.py run --minnow BIN --kernel BZIMAGE --rootfs EXT4 --work DIR --rounds K
                --json OUT.json --md OUT.md [--ns-prefix NAME]
      1. boot to init: minnow vs QEMU -M microvm, same kernel + rootfs (K interleaved rounds)
      2. sequential 4 KiB dd on a 64 MiB second disk, guest vs lab host (K rounds)
      3. 64 MiB TCP each way, guest <-> host over TAP vs two netns over veth (K rounds)
  lab_io.py tcp-server --bind IP --port P --mode recv|send --bytes N --ready FILE --out FILE
      one connection; timed here (the host side): accept -> last byte received (recv), or
      accept -> every sent byte ACKed by the peer (send: SIOCOUTQ reaches 0).

Never fails on speed; exit 1 only if a measurement did not run (its row keeps the reason).
stdlib only. The guest scripts (/bench/disk.sh, /bench/tcp.sh) come from lab_io.sh.
"""
import argparse
import datetime
import fcntl
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import firstline  # noqa: E402

MIB64 = 64 << 20
UP_RX = r"(^|\s)MINNOW-UP\s*$"
BOOT_RX = r"guest boot time: ([0-9.]+) ms"
SIOCOUTQ = 0x5411


def log(*a):
    print("lab-io:", *a, file=sys.stderr, flush=True)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def ratio(a, b):
    return None if a is None or not b else a / b


def f(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def tail(r, n=3):
    return " | ".join((r.get("tail") or [])[-n:])


def sh(cmd, timeout=60, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-300:]}")
    return p


# ---------------------------------------------------------------- 1. boot
def boot_cmds(a, disk):
    minnow = [a.minnow, "run", "--kernel", a.kernel, "--disk", disk, "--mem-mib", "256",
              "--vcpus", "1", "--cmdline", "quiet -- /bin/echo MINNOW-UP"]
    qemu = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host",
            "-M", "microvm,acpi=off,auto-kernel-cmdline=off", "-m", "256", "-smp", "1",
            "-nographic", "-no-reboot", "-kernel", a.kernel,
            "-append", "console=ttyS0 reboot=t panic=1 quiet root=/dev/vda rw "
                       "virtio_mmio.device=512@0xfeb00e00:12 -- /bin/echo MINNOW-UP",
            "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-device,drive=d0"]
    return {"minnow": minnow, "qemu-microvm": qemu}


def bench_boot(a):
    samples = {"minnow": [], "qemu-microvm": []}
    fails = []
    for r in range(a.rounds):
        order = ["minnow", "qemu-microvm"] if r % 2 == 0 else ["qemu-microvm", "minnow"]
        for v in order:
            disk = os.path.join(a.work, f"boot-{v}.ext4")
            shutil.copyfile(a.rootfs, disk)
            log(f"1. boot round {r + 1}/{a.rounds}: {v}")
            res = firstline.run(boot_cmds(a, disk)[v], {"up": UP_RX, "boot": BOOT_RX}, timeout=a.boot_timeout,
                                log=os.path.join(a.work, f"boot-{v}-{r + 1}.log"))
            os.unlink(disk)
            up = res["match"].get("up", {}).get("ms")
            s = {"round": r + 1, "up_ms": up, "wall_ms": res["wall_ms"], "status": res["status"],
                 "boot_timer_ms": float(res["match"]["boot"]["groups"][0]) if "boot" in res["match"] else None}
            samples[v].append(s)
            if res["error"] or res["timed_out"] or res["status"] != 0 or up is None:
                why = res["error"] or ("timed out" if res["timed_out"] else f"exit {res['status']}")
                fails.append(f"{v} round {r + 1}: {why}, marker {'seen' if up else 'not seen'}; last: {tail(res)}")
    out = {"samples": samples, "failures": fails}
    for v, ss in samples.items():
        ok = [s for s in ss if s["status"] == 0 and s["up_ms"] is not None]
        out[v] = {"n": len(ss), "n_ok": len(ok), "up_ms": median([s["up_ms"] for s in ok]),
                  "wall_ms": median([s["wall_ms"] for s in ok])}
    out["minnow"]["boot_timer_ms"] = median([s["boot_timer_ms"] for s in samples["minnow"]])
    out["ratio_up"] = ratio(out["minnow"]["up_ms"], out["qemu-microvm"]["up_ms"])
    out["ratio_wall"] = ratio(out["minnow"]["wall_ms"], out["qemu-microvm"]["wall_ms"])
    out["status"] = "ok" if not fails else "failed"
    return out


# ---------------------------------------------------------------- 2. disk
def parse_guest_dd(text, tag):
    """A guest line `TAG rc=0 start=UPTIME end=UPTIME` (busybox dd prints no timing line)."""
    m = re.search(tag + r" rc=(\d+) start=([0-9.]+) end=([0-9.]+)", text)
    if not m or m.group(1) != "0":
        return None
    secs = float(m.group(3)) - float(m.group(2))
    return {"bytes": MIB64, "seconds": secs, "mb_s": MIB64 / secs / 1e6 if secs > 0 else None}


def host_dd(kind, img):
    """busybox dd on the image file, O_DIRECT when the filesystem allows it; timed around the
    dd process like the guest does (its clock is /proc/uptime around dd)."""
    base = (["busybox", "dd", f"if={img}", "of=/dev/null", "bs=4k"] if kind == "read" else
            ["busybox", "dd", "if=/dev/zero", f"of={img}", "bs=4k", "count=16384", "conv=notrunc,fsync"])
    flag = "iflag=direct" if kind == "read" else "oflag=direct"
    direct = True
    for args in (base + [flag], base):
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True, timeout=600)
        secs = time.monotonic() - t0
        if p.returncode == 0:
            break
        direct = False
    if p.returncode != 0:
        return None, p.stderr.strip()[-200:]
    return {"bytes": MIB64, "seconds": secs, "mb_s": MIB64 / secs / 1e6, "direct": direct}, None


def bench_disk(a):
    master = os.path.join(a.work, "data-master.img")
    with open("/dev/urandom", "rb") as src, open(master, "wb") as dst:
        for _ in range(64):
            dst.write(src.read(1 << 20))
    img = os.path.join(a.work, "data.img")
    root = os.path.join(a.work, "disk-root.ext4")
    S = {"guest": {"read": [], "write": []}, "host": {"read": [], "write": []}, "guest_mode": None}
    fails = []
    for r in range(a.rounds):
        order = ["guest", "host"] if r % 2 == 0 else ["host", "guest"]
        for side in order:
            log(f"2. disk round {r + 1}/{a.rounds}: {side}")
            if side == "host":
                for kind in ("read", "write"):
                    shutil.copyfile(master, img)
                    res, err = host_dd(kind, img)
                    S["host"][kind].append(res)
                    if not res:
                        fails.append(f"host {kind} round {r + 1}: {err}")
                continue
            shutil.copyfile(master, img)
            shutil.copyfile(a.rootfs, root)
            res = firstline.run([a.minnow, "run", "--kernel", a.kernel, "--disk", root, "--disk", img,
                                 "--mem-mib", "256", "--vcpus", "1", "--cmdline", "quiet -- /bin/sh /bench/disk.sh"],
                                {}, timeout=a.boot_timeout + 1500, log=os.path.join(a.work, f"disk-{r + 1}.log"))
            with open(os.path.join(a.work, f"disk-{r + 1}.log"), errors="replace") as fh:
                text = fh.read().replace("\r", "")
            m = re.search(r"DISK-MODE (\S+)", text)
            S["guest_mode"] = m.group(1) if m else S["guest_mode"]
            for kind, tag in (("read", "DISK-READ"), ("write", "DISK-WRITE")):
                got = parse_guest_dd(text, tag)
                S["guest"][kind].append(got)
                if not got:
                    fails.append(f"guest {kind} round {r + 1}: no dd result (minnow exit {res['status']}"
                                 f"{', timed out' if res['timed_out'] else ''}); last: {tail(res)}")
            if res["status"] != 0 and not any(f.startswith("guest") and f"round {r + 1}" in f for f in fails):
                fails.append(f"guest round {r + 1}: minnow exit {res['status']}; last: {tail(res)}")
    for p in (img, root, master):
        if os.path.exists(p):
            os.unlink(p)
    out = {"samples": S, "failures": fails, "guest_mode": S["guest_mode"]}
    for kind in ("read", "write"):
        g = median([s["mb_s"] for s in S["guest"][kind] if s])
        h = median([s["mb_s"] for s in S["host"][kind] if s])
        hd = sorted({s["direct"] for s in S["host"][kind] if s})
        out[kind] = {"guest_mb_s": g, "host_mb_s": h, "ratio": ratio(g, h), "host_direct": hd}
    out["status"] = "ok" if not fails else "failed"
    return out


# ---------------------------------------------------------------- 3. TCP
def tcp_server(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(1)
    s.settimeout(a.timeout)
    open(a.ready, "w").close()
    res = {"mode": a.mode, "bytes_expected": a.bytes, "bytes": 0, "seconds": None, "error": None}
    try:
        c, peer = s.accept()
        t0 = time.monotonic()
        c.settimeout(a.timeout)
        if a.mode == "recv":
            n = 0
            while n < a.bytes:
                d = c.recv(1 << 20)
                if not d:
                    break
                n += len(d)
            t1 = time.monotonic()
            res["bytes"] = n
        else:
            buf = b"\0" * (1 << 20)
            for _ in range(a.bytes // len(buf)):
                c.sendall(buf)
            c.shutdown(socket.SHUT_WR)  # the peer's nc ends on our FIN
            deadline = time.monotonic() + a.timeout
            while True:  # every byte ACKed by the peer's kernel
                q = struct.unpack("i", fcntl.ioctl(c.fileno(), SIOCOUTQ, b"\0" * 4))[0]
                if q == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.001)
            t1 = time.monotonic()
            res["bytes"] = a.bytes - q
        if res["bytes"] == a.bytes:
            res["seconds"] = t1 - t0
            res["mb_s"] = a.bytes / (t1 - t0) / 1e6
        else:
            res["error"] = f"{res['bytes']} of {a.bytes} bytes"
        c.close()
    except Exception as e:  # noqa: BLE001 - reported in the JSON
        res["error"] = f"{type(e).__name__}: {e}"
    with open(a.out, "w") as fh:
        json.dump(res, fh)
    return 0


def start_server(a, ns, ip, port, mode, tag):
    ready = os.path.join(a.work, f"{tag}.ready")
    out = os.path.join(a.work, f"{tag}.json")
    for p in (ready, out):
        if os.path.exists(p):
            os.unlink(p)
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "tcp-server",
                          "--bind", ip, "--port", str(port), "--mode", mode, "--bytes", str(MIB64),
                          "--ready", ready, "--out", out, "--timeout", str(a.boot_timeout + 300)],
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tcp server {tag} did not start (status {p.poll()})")
        time.sleep(0.05)
    return p, out


def finish_server(p, out, timeout):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return {"error": "server did not finish"}
    try:
        with open(out) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        return {"error": f"no result: {e}"}


def bench_tcp(a):
    nsa, nsb = f"{a.ns_prefix}-a", f"{a.ns_prefix}-b"
    host_ip, guest_ip, va, vb = "169.254.110.1", "169.254.110.2", "169.254.111.1", "169.254.111.2"
    S = {"tap": {"g2h": [], "h2g": []}, "veth": {"g2h": [], "h2g": []}}
    fails = []
    data = os.path.join(a.work, "tcp-data")
    with open(data, "wb") as fh:
        fh.write(b"\0" * MIB64)
    root = os.path.join(a.work, "tcp-root.ext4")
    try:
        for ns in (nsa, nsb):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", nsa, a.minnow, "net", "setup", "miotap0", "--host-ip", f"{host_ip}/30"])
        sh(["ip", "link", "add", "miova", "netns", nsa, "type", "veth", "peer", "name", "miovb", "netns", nsb])
        sh(["ip", "netns", "exec", nsa, "ip", "addr", "add", f"{va}/30", "dev", "miova"])
        sh(["ip", "netns", "exec", nsb, "ip", "addr", "add", f"{vb}/30", "dev", "miovb"])
        sh(["ip", "netns", "exec", nsa, "ip", "link", "set", "miova", "up"])
        sh(["ip", "netns", "exec", nsb, "ip", "link", "set", "miovb", "up"])
        for r in range(a.rounds):
            order = ["tap", "veth"] if r % 2 == 0 else ["veth", "tap"]
            for path in order:
                log(f"3. tcp round {r + 1}/{a.rounds}: {path}")
                ip = host_ip if path == "tap" else va
                sg, og = start_server(a, nsa, ip, 5001, "recv", f"{path}-g2h")
                sh_, oh = start_server(a, nsa, ip, 5002, "send", f"{path}-h2g")
                if path == "tap":
                    shutil.copyfile(a.rootfs, root)
                    res = firstline.run(
                        ["ip", "netns", "exec", nsa, a.minnow, "run", "--kernel", a.kernel, "--disk", root,
                         "--mem-mib", "512", "--vcpus", "1",
                         "--net", f"tap=miotap0,guest-ip={guest_ip}/30,host-ip={host_ip}/30",
                         "--cmdline", f"quiet -- /bin/sh /bench/tcp.sh {host_ip}"],
                        {"done": "TCP-DONE"}, timeout=a.boot_timeout + 600,
                        log=os.path.join(a.work, f"tcp-{r + 1}.log"))
                    client_ok = res["status"] == 0 and "done" in res["match"]
                    client_err = f"minnow exit {res['status']}; last: {tail(res)}"
                else:
                    errs = []
                    with open(data, "rb") as fin:
                        p1 = subprocess.run(["ip", "netns", "exec", nsb, "busybox", "nc", "-w", "10", va, "5001"],
                                            stdin=fin, capture_output=True, timeout=600)
                    if p1.returncode:
                        errs.append(f"send nc exit {p1.returncode}")
                    p2 = subprocess.run(["ip", "netns", "exec", nsb, "sh", "-c",
                                         f"busybox nc -w 10 {va} 5002 >/dev/null"],
                                        stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
                    if p2.returncode:
                        errs.append(f"recv nc exit {p2.returncode}")
                    client_ok, client_err = not errs, "; ".join(errs)
                for key, p, o in (("g2h", sg, og), ("h2g", sh_, oh)):
                    rr = finish_server(p, o, 30 if client_ok else 5)
                    S[path][key].append(rr)
                    if rr.get("error") or not rr.get("mb_s"):
                        fails.append(f"{path} {key} round {r + 1}: {rr.get('error')}"
                                     + ("" if client_ok else f" (client: {client_err})"))
                if not client_ok and not any(x.startswith(path) and f"round {r + 1}" in x for x in fails):
                    fails.append(f"{path} round {r + 1}: {client_err}")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        fails.append(f"set-up or run failed: {e}")
    finally:
        for ns in (nsa, nsb):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for p in (data, root):
            if os.path.exists(p):
                os.unlink(p)
    out = {"samples": S, "failures": fails}
    for key in ("g2h", "h2g"):
        t = median([s.get("mb_s") for s in S["tap"][key]])
        v = median([s.get("mb_s") for s in S["veth"][key]])
        out[key] = {"tap_mb_s": t, "veth_mb_s": v, "ratio": ratio(t, v)}
    out["status"] = "ok" if not fails else "failed"
    return out


# ---------------------------------------------------------------- report
def status(x):
    if x["status"] == "ok":
        return "ok"
    return f"failed: {len(x['failures'])} problem(s); first: {x['failures'][0]}"


def md_report(R):
    b, d, t = R["boot"], R["disk"], R["tcp"]
    p = R["params"]
    L = [f"# minnow lab I/O benchmarks ({R['date']}, commit {R['git_commit']}, {p['rounds']} interleaved rounds)",
         "",
         "| measurement | minnow | reference | minnow / reference | status |",
         "| --- | --- | --- | --- | --- |"]
    mn, qm = b["minnow"], b["qemu-microvm"]
    L.append(f"| 1. boot to init (minimal kernel, ext4 root on virtio-blk), spawn → `MINNOW-UP` line, median ms "
             f"({mn['n_ok']}/{mn['n']} · {qm['n_ok']}/{qm['n']} ok) | **{f(mn['up_ms'], 0)}** "
             f"(boot-timer line {f(mn['boot_timer_ms'], 0)}) | QEMU microvm {f(qm['up_ms'], 0)} | "
             f"**{f(b['ratio_up'], 2)}** | {status(b)} |")
    L.append(f"| 1. same, spawn → exit, median ms | {f(mn['wall_ms'], 0)} | QEMU microvm {f(qm['wall_ms'], 0)} | "
             f"{f(b['ratio_wall'], 2)} | {status(b)} |")
    gm = d.get("guest_mode") or "?"
    for kind, what in (("read", "read /dev/vdb"), ("write", "write /dev/vdb + fsync")):
        k = d[kind]
        hd = "O_DIRECT" if k["host_direct"] == [True] else "page cache (tmpfs: no O_DIRECT)"
        L.append(f"| 2. disk: 64 MiB sequential dd bs=4k, {what} ({gm}), median MB/s | **{f(k['guest_mb_s'])}** "
                 f"(guest) | lab host, same dd on the image file ({hd}): {f(k['host_mb_s'])} | "
                 f"**{f(k['ratio'], 2)}** | {status(d)} |")
    for key, what in (("g2h", "guest → host"), ("h2g", "host → guest")):
        k = t[key]
        L.append(f"| 3. TCP 64 MiB {what}, busybox nc, timed on the host side, median MB/s | **{f(k['tap_mb_s'])}** "
                 f"(virtio-net over TAP) | netns ↔ netns over veth: {f(k['veth_mb_s'])} | "
                 f"**{f(k['ratio'], 2)}** | {status(t)} |")
    L += ["",
          "Notes:",
          "- Everything runs inside the nested lab (QEMU TCG → kvm_amd → guest): absolute numbers are inflated "
          "(times) or deflated (MB/s) by TCG; compare the ratios, measured in the same lab run with rounds "
          "interleaved (order alternating). Images, kernel and binaries live on the lab's /dev/shm (tmpfs), "
          "so 9p is not in any path.",
          "- 1: both VMs boot the same bzImage and a private copy of the same rootfs, 1 vCPU, 256 MiB; "
          "wall times from bench/firstline.py (spawn → first console line `MINNOW-UP`, spawn → exit). "
          "QEMU: `-M microvm,acpi=off,auto-kernel-cmdline=off`, `virtio_mmio.device=512@0xfeb00e00:12` "
          "(microvm's first virtio-mmio slot), `reboot=t`; minnow: `--cmdline \"quiet -- /bin/echo MINNOW-UP\"`.",
          "- 2: the guest's busybox dd on /dev/vdb (a 64 MiB image of random data, fresh copy each round) "
          f"with {'iflag/oflag=direct' if gm == 'direct' else 'drop_caches between runs'}, timed with the guest's "
          "/proc/uptime around dd (busybox dd prints no rate; 10 ms resolution); the lab host runs "
          "the same busybox dd on the same image file, timed around the dd process; tmpfs has no O_DIRECT on the lab's 6.1 kernel, so the "
          "host reads/writes through the page cache, which *is* tmpfs's storage (no cache to drop). The ratio "
          "therefore is the virtio-blk + guest block-layer cost per 4 KiB request over a memory-speed backend.",
          "- 3: the receiving/sending end is a Python socket in the first netns: guest → host is accept → last "
          "byte received; host → guest is accept → all bytes ACKed (SIOCOUTQ = 0). The guest and the veth "
          "peer both use busybox nc (guest: from a tmpfs file / to /dev/null).",
          f"- lab host: kernel {R['kernel']}, {R['nproc']} CPUs; guest kernel {R['guest_kernel']}."]
    return "\n".join(L) + "\n"


def cmd_run(a):
    os.makedirs(a.work, exist_ok=True)
    R = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
         "git_commit": a.commit, "kernel": os.uname().release, "nproc": os.cpu_count(),
         "guest_kernel": a.kernel_info, "params": {"rounds": a.rounds}}
    for name, fn in (("boot", bench_boot), ("disk", bench_disk), ("tcp", bench_tcp)):
        try:
            R[name] = fn(a)
        except Exception as e:  # noqa: BLE001 - keep the other rows
            R[name] = {"status": "failed", "failures": [f"{type(e).__name__}: {e}"]}
            log(f"{name} failed: {e}")
        with open(a.json, "w") as fh:
            json.dump(R, fh, indent=1)
    try:
        md = md_report(R)
    except (KeyError, TypeError) as e:
        md = "# minnow lab I/O benchmarks\n\nreport failed: " + repr(e) + "\n\n```\n" + json.dumps(R, indent=1) + "\n```\n"
    with open(a.md, "w") as fh:
        fh.write(md)
    with open(a.json, "w") as fh:
        json.dump(R, fh, indent=1)
        fh.write("\n")
    print(md)
    bad = [k for k in ("boot", "disk", "tcp") if R[k]["status"] != "ok"]
    if bad:
        log(f"did not run cleanly: {', '.join(bad)}")
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--minnow", required=True)
    r.add_argument("--kernel", required=True)
    r.add_argument("--kernel-info", default="?")
    r.add_argument("--rootfs", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--json", required=True)
    r.add_argument("--md", required=True)
    r.add_argument("--commit", default="?")
    r.add_argument("--ns-prefix", default=f"minnow-io-{os.getpid()}")
    r.add_argument("--boot-timeout", type=float, default=180)
    t = sub.add_parser("tcp-server")
    t.add_argument("--bind", required=True)
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--mode", choices=("recv", "send"), required=True)
    t.add_argument("--bytes", type=int, required=True)
    t.add_argument("--ready", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    return {"run": cmd_run, "tcp-server": tcp_server}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
