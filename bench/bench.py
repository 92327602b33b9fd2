#!/usr/bin/env python3
"""minnow benchmarks (driven by bench/run.sh; see bench/README.md).

  bench.py host  --minnow BIN --guests DIR --runs N --mem-runs M --json FILE   (parts 1, 2)
  bench.py lab-summary --log LAB_STDOUT --rounds K --lab-status RC [--lab-err MSG] (part 3 JSON)
  bench.py report --host-json F [--lab-json F | --lab-skip REASON] --out DIR -> latest.{md,json}
  bench.py lab-rounds --minnow BIN --rounds K --cache DIR   -> runs inside the lab,
                 prints one "BENCH-JSON {...}" line per boot

Never fails on speed; exit 1 only if a measurement that was attempted broke.
"""
import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import firstline  # noqa: E402

BOOT_RX = r"guest boot time: ([0-9.]+) ms"
CPU_RX = r"VMM CPU so far ([0-9.]+) ms"
MARKER_RX = r"MINNOW-GUEST-UP"
QEMU_RX = r"qemu-boot: mode=(\S+) smp=(\d+) marker after (\d+) ms, total (\d+) ms \(qemu status (\S+)\)"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- stats
def pct(xs, p):
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(xs):
    if not xs:
        return None
    return {"n": len(xs), "p50": pct(xs, 50), "p90": pct(xs, 90), "min": min(xs), "max": max(xs)}


def f(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def reason_of(r, what):
    if r.get("error"):
        return r["error"]
    if r.get("timed_out"):
        return f"{what}: timed out; last output: " + " | ".join(r.get("tail", [])[-3:])
    return f"{what}: exit status {r.get('status')}; last output: " + " | ".join(r.get("tail", [])[-3:])


# ---------------------------------------------------------------- host facts
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def host_facts(minnow):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mods = [m for m in ("kvm_pvm", "kvm_intel", "kvm_amd") if os.path.isdir(f"/sys/module/{m}")]
    commit = sh(f"git -C {REPO} rev-parse --short HEAD")
    dirty = sh(f"git -C {REPO} status --porcelain -- src Cargo.toml Cargo.lock")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kvm_modules": mods,
        "kvm_is_pvm": "kvm_pvm" in mods,
        "git_commit": commit + ("+dirty" if dirty else ""),
        "minnow": sh(f"{minnow} --version"),
    }


# ---------------------------------------------------------------- 1. boot
def bench_boot(minnow, guests, runs, guest="hello64.elf", extra=()):
    kernel = os.path.join(guests, guest)
    samples, fails = [], []
    for i in range(runs):
        r = firstline.run([minnow, "run", "--kernel", kernel, "--mem-mib", "32", *extra],
                          {"boot": BOOT_RX, "cpu": CPU_RX}, timeout=20)
        if r["status"] == 0 and "boot" in r["match"] and "cpu" in r["match"]:
            samples.append({"boot_ms": float(r["match"]["boot"]["groups"][0]),
                            "boot_cpu_ms": float(r["match"]["cpu"]["groups"][0]),
                            "cpu_ms": r["cpu_ms"], "user_ms": r["user_ms"], "sys_ms": r["sys_ms"],
                            "wall_ms": r["wall_ms"], "maxrss_kib": r["maxrss_kib"]})
        else:
            fails.append(reason_of(r, f"run {i + 1}") if r["status"] != 0 else
                         f"run {i + 1}: exit 0 but no boot-time line with the VMM's CPU time")
    out = {"guest": guest, "mem_mib": 32, "runs": runs, "args": list(extra), "samples": samples,
           "failures": fails}
    for k in ("boot_ms", "boot_cpu_ms", "cpu_ms", "wall_ms"):
        out[k] = summary([s[k] for s in samples])
    out["status"] = "ok" if samples and not fails else "failed"
    if fails:
        out["reason"] = f"{len(fails)}/{runs} runs failed; first: {fails[0]}"
    return out


def bench_stall(minnow, guests, runs, goal_ms=1000):
    """flood.elf floods virtio-blk with requests past every advertised limit and the UART
    with output while nobody reads minnow's stdout; once minnow says it drops output, send
    SIGTERM and time spawn-free SIGTERM -> exit. Goal: under a second."""
    import tempfile
    import threading
    kernel = os.path.join(guests, "flood.elf")
    samples, fails = [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="minnow-bench-stall.") as d:
            disk = os.path.join(d, "flood.img")
            with open(disk, "wb") as fh:
                fh.truncate(1 << 20)
            p = subprocess.Popen([minnow, "run", "--kernel", kernel, "--mem-mib", "32", "--disk", disk],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            seen = threading.Event()

            def watch(stream=p.stderr):
                for line in stream:
                    if b"guest console output is being dropped" in line:
                        seen.set()
            threading.Thread(target=watch, daemon=True).start()
            if not seen.wait(120):
                p.kill()
                p.wait()
                fails.append(f"run {i + 1}: minnow never said it drops the unread output")
                continue
            t = time.monotonic()
            p.send_signal(signal.SIGTERM)
            try:
                code = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                fails.append(f"run {i + 1}: still running 10 s after SIGTERM (a stall)")
                continue
            ms = (time.monotonic() - t) * 1000
            if code != 0:
                fails.append(f"run {i + 1}: exit {code} after SIGTERM")
                continue
            samples.append({"stop_ms": ms})
    out = {"guest": "flood.elf", "runs": runs, "samples": samples, "failures": fails,
           "stop_ms": summary([s["stop_ms"] for s in samples]), "goal_ms": goal_ms}
    out["status"] = "ok" if samples and not fails else "failed"
    if fails:
        out["reason"] = f"{len(fails)}/{runs} runs failed; first: {fails[0]}"
    return out


# ---------------------------------------------------------------- 2. memory
def read_smaps(pid, guest_kib):
    """Totals over /proc/PID/smaps plus the anonymous mapping(s) of exactly the guest size."""
    tot = {"rss": 0, "pss": 0}
    guest = []
    cur = None
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                cur = {"range": parts[0], "perms": parts[1], "path": " ".join(parts[5:]),
                       "size": 0, "rss": 0, "pss": 0}
                start, end = (int(x, 16) for x in parts[0].split("-"))
                cur["size"] = (end - start) // 1024
                if cur["size"] == guest_kib and not cur["path"] and cur["perms"].startswith("rw"):
                    guest.append(cur)
                continue
            key, _, val = line.partition(":")
            if cur is not None and key in ("Rss", "Pss"):
                kib = int(val.split()[0])
                cur[key.lower()] += kib
                tot[key.lower()] += kib
    return tot, guest


def mem_once(minnow, guests, mem_mib):
    kernel = os.path.join(guests, "halt.elf")
    p = subprocess.Popen([minnow, "run", "--kernel", kernel, "--mem-mib", str(mem_mib)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
    res = {}
    try:
        deadline = time.monotonic() + 20
        buf = b""
        import select
        while b"minnow-guest: halting" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("no 'minnow-guest: halting' within 20 s")
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError("minnow exited before the guest halted")
                buf += chunk
        time.sleep(0.2)  # let the vCPU settle in hlt
        tot, guest = read_smaps(p.pid, mem_mib * 1024)
        if len(guest) != 1:
            raise RuntimeError(f"found {len(guest)} anonymous rw mappings of {mem_mib} MiB (want 1)")
        g = guest[0]
        res = {"total_rss_kib": tot["rss"], "total_pss_kib": tot["pss"],
               "guest_rss_kib": g["rss"], "guest_pss_kib": g["pss"],
               "overhead_rss_kib": tot["rss"] - g["rss"], "overhead_pss_kib": tot["pss"] - g["pss"],
               "threads": len(os.listdir(f"/proc/{p.pid}/task"))}
    except Exception as e:
        res = {"error": str(e)}
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
            res.setdefault("error", "did not exit within 10 s of SIGTERM")
        err = p.stderr.read().decode("utf-8", "replace").strip().splitlines()
        p.stdout.close(); p.stderr.close()
    res["exit_status"] = rc
    if rc != 0 and "error" not in res:
        res["error"] = f"exit status {rc} after SIGTERM (want 0); stderr: " + " | ".join(err[-3:])
    elif "error" in res:
        res["error"] += "; stderr: " + " | ".join(err[-3:])
    return res


def bench_mem(minnow, guests, mem_mib, runs):
    samples, fails = [], []
    for i in range(runs):
        r = mem_once(minnow, guests, mem_mib)
        (fails.append(f"run {i + 1}: {r['error']}") if "error" in r else samples.append(r))
    out = {"guest": "halt.elf", "mem_mib": mem_mib, "runs": runs, "samples": samples, "failures": fails}
    for k in ("total_rss_kib", "total_pss_kib", "guest_rss_kib", "overhead_rss_kib", "overhead_pss_kib"):
        out[k] = summary([s[k] for s in samples])
    out["status"] = "ok" if samples and not fails else "failed"
    if fails:
        out["reason"] = f"{len(fails)}/{runs} runs failed; first: {fails[0]}"
    return out


# ---------------------------------------------------------------- 3. lab rounds (inside the lab)
def lab_rounds(a):
    kern = os.path.join(a.cache, "guest", "vmlinuz-cloud")
    initrd = os.path.join(a.cache, "guest", "initramfs.cpio.gz")
    # Warm the page cache (files come over 9p) so round 1 is not special.
    for fn in (kern, initrd, a.minnow):
        with open(fn, "rb") as fh:
            while fh.read(1 << 20):
                pass
    variants = {
        "minnow": [a.minnow, "run", "--kernel", kern, "--initrd", initrd, "--vcpus", "2",
                   "--mem-mib", "512", "--cmdline", "quiet"],
        # not -q: the helper must see the guest's marker line ("guest| MINNOW-GUEST-UP")
        "qemu-microvm": ["bash", os.path.join(REPO, "lab", "qemu-boot.sh"), "microvm",
                         "--timeout", str(int(a.boot_timeout))],
        "qemu-pc": ["bash", os.path.join(REPO, "lab", "qemu-boot.sh"), "pc",
                    "--timeout", str(int(a.boot_timeout))],
    }
    names = list(variants)
    for rnd in range(a.rounds):
        order = names[rnd % 3:] + names[:rnd % 3]  # rotate so no variant always goes first
        for name in order:
            r = firstline.run(variants[name], {"marker": MARKER_RX, "boot": BOOT_RX, "qemu": QEMU_RX},
                              timeout=a.boot_timeout + 15)
            rec = {"round": rnd + 1, "variant": name, "status": r["status"],
                   "timed_out": r["timed_out"], "wall_ms": r["wall_ms"], "cpu_ms": r["cpu_ms"],
                   "marker_ms": r["match"].get("marker", {}).get("ms"),
                   "boot_ms": float(r["match"]["boot"]["groups"][0]) if "boot" in r["match"] else None,
                   "qemu_marker_ms": int(r["match"]["qemu"]["groups"][2]) if "qemu" in r["match"] else None,
                   "qemu_total_ms": int(r["match"]["qemu"]["groups"][3]) if "qemu" in r["match"] else None,
                   "tail": r["tail"][-4:], "error": r["error"]}
            print("BENCH-JSON " + json.dumps(rec), flush=True)
    return 0


def lab_summary(lines, rounds):
    recs = []
    for line in lines:
        if line.startswith("BENCH-JSON "):
            recs.append(json.loads(line[len("BENCH-JSON "):]))
    out = {"rounds": rounds, "samples": recs, "variants": {}, "failures": []}
    for name in ("minnow", "qemu-microvm", "qemu-pc"):
        ok = [r for r in recs if r["variant"] == name and r["status"] == 0 and r["marker_ms"] is not None
              and (name != "minnow" or r["boot_ms"] is not None)]
        bad = [r for r in recs if r["variant"] == name and r not in ok]
        for r in bad:
            out["failures"].append(f"{name} round {r['round']}: " + reason_of(r, name))
        v = {"n_ok": len(ok), "n": len([r for r in recs if r["variant"] == name])}
        for k in ("marker_ms", "wall_ms", "boot_ms", "qemu_marker_ms", "qemu_total_ms", "cpu_ms"):
            xs = [r[k] for r in ok if r.get(k) is not None]
            v[k] = summary(xs)
        out["variants"][name] = v
    m = out["variants"]["minnow"]["marker_ms"]
    for q in ("qemu-microvm", "qemu-pc"):
        qm = out["variants"][q]["marker_ms"]
        out[f"ratio_marker_minnow_over_{q}"] = (m["p50"] / qm["p50"]) if m and qm else None
        qo = out["variants"][q]["qemu_marker_ms"]
        out[f"ratio_own_marker_minnow_over_{q}"] = (m["p50"] / qo["p50"]) if m and qo else None
        mt, qt = out["variants"]["minnow"]["wall_ms"], out["variants"][q]["wall_ms"]
        out[f"ratio_total_minnow_over_{q}"] = (mt["p50"] / qt["p50"]) if mt and qt else None
    expected = 3 * rounds
    if len(recs) < expected:
        out["failures"].append(f"only {len(recs)}/{expected} boots reported")
    out["status"] = "ok" if not out["failures"] else "failed"
    if out["failures"]:
        out["reason"] = f"{len(out['failures'])} problem(s); first: {out['failures'][0]}"
    return out


# ---------------------------------------------------------------- report
def md_report(R):
    h = R["host"]
    L = []
    L.append("# minnow benchmarks")
    L.append("")
    L.append(f"- date: {h['date']}; minnow {h['git_commit']} ({h['minnow']})")
    L.append(f"- host: kernel {h['kernel']}; CPU {h['cpu']} ×{h['nproc']}; "
             f"/dev/kvm modules: {', '.join(h['kvm_modules']) or 'none'} → "
             f"{'PVM (kvm_pvm)' if h['kvm_is_pvm'] else 'not PVM'}")
    L.append("- numbers are observations, not pass/fail; a row only fails when it did not run")
    L.append("")
    L.append("| measurement | result | anchor / goal | status |")
    L.append("| --- | --- | --- | --- |")

    def st(x):
        return x["status"] if x["status"] == "ok" else f"**{x['status']}**: {x.get('reason', '')}"

    def dist(b, k, n=False):
        s = b.get(k)
        if not s:
            return "—"
        return (f"p50 {f(s['p50'], 2)} · p90 {f(s['p90'], 2)} · min {f(s['min'], 2)} · "
                f"max {f(s['max'], 2)}" + (f" (n={s['n']})" if n else ""))

    fc = "Firecracker: 8 CPU ms to API ready; goal < 4"
    if "first" in R:
        b = R["first"]
        L.append(f"| 1a. VMM start → first guest instruction (first.elf: its first instruction writes "
                 f"the boot timer), 32 MiB (ms) | {dist(b, 'boot_ms', True)} | — | {st(b)} |")
        L.append(f"| 1b. CPU time (user+sys, all threads) of minnow from exec to that first guest "
                 f"instruction (ms) | **{dist(b, 'boot_cpu_ms')}** | {fc} | {st(b)} |")
        L.append(f"| 1c. CPU time of the whole first.elf run, exec → exit incl. VM teardown (ms) | "
                 f"{dist(b, 'cpu_ms')} | — | {st(b)} |")
    if "first_off" in R:
        b, on = R["first_off"], R.get("first", {})
        L.append(f"| 1g. 1a with `--seccomp off` (no filters), first.elf (ms) | {dist(b, 'boot_ms', True)} "
                 f"| — | {st(b)} |")
        L.append(f"| 1h. 1b with `--seccomp off` (CPU ms exec → first instruction) | {dist(b, 'boot_cpu_ms')} "
                 f"| — | {st(b)} |")
        if on.get("boot_cpu_ms") and b.get("boot_cpu_ms"):
            dcpu = on["boot_cpu_ms"]["p50"] - b["boot_cpu_ms"]["p50"]
            dwall = on["boot_ms"]["p50"] - b["boot_ms"]["p50"]
            L.append(f"| 1i. what the seccomp filters cost at start-up: 1b − 1h, 1a − 1g (p50) | "
                     f"{dcpu:+.2f} CPU ms, {dwall:+.2f} ms | — | {st(b)} |")
    if "stall" in R:
        b = R["stall"]
        s50 = (b.get("stop_ms") or {}).get("p50")
        met = ("**met**" if s50 is not None and (b["stop_ms"]["max"] < b["goal_ms"]) else "**not met**")
        L.append(f"| 1j. SIGTERM → exit while flood.elf floods virtio-blk and the UART, stdout unread "
                 f"(ms) | {dist(b, 'stop_ms')} | goal < {b['goal_ms']} ms (every run): {met} | {st(b)} |")
    b = R["boot"]
    L.append(f"| 1d. VMM start → guest boot-timer write, hello64.elf (a UART line first), 32 MiB "
             f"(ms) | {dist(b, 'boot_ms', True)} | — | {st(b)} |")
    L.append(f"| 1e. CPU time of the whole hello64 run, exec → exit (ms) | {dist(b, 'cpu_ms')} | "
             f"— | {st(b)} |")
    L.append(f"| 1f. wall time of the whole hello64 run, spawn → exit (ms) | {dist(b, 'wall_ms')} | "
             f"— | {st(b)} |")
    for key in ("mem128", "mem1024"):
        m = R[key]
        if m.get("overhead_rss_kib"):
            o, t, g, op = (m[k]["p50"] / 1024 for k in ("overhead_rss_kib", "total_rss_kib",
                                                         "guest_rss_kib", "overhead_pss_kib"))
            res = (f"**{f(o, 2)}** MiB (median of {m['overhead_rss_kib']['n']}; max "
                   f"{f(m['overhead_rss_kib']['max'] / 1024, 2)}); total RSS {f(t, 2)}, guest-mem RSS "
                   f"{f(g, 2)}; PSS overhead {f(op, 2)}")
        else:
            res = "—"
        L.append(f"| 2. VMM memory overhead, halt.elf, {m['mem_mib']} MiB guest: RSS − guest-memory RSS | "
                 f"{res} | Firecracker ≤ 5 MiB; goal < 2.5 | {st(m)} |")
    lab = R["lab"]
    if lab["status"] == "skipped":
        L.append(f"| 3. lab: cloud kernel + initramfs boot, minnow vs QEMU (nested KVM) | — | — | "
                 f"skipped: {lab.get('reason', '')} |")
    else:
        v = lab.get("variants", {})

        def med(name, k):
            x = v.get(name, {}).get(k)
            return f(x["p50"], 0) if x else "—"
        for name in ("minnow", "qemu-microvm", "qemu-pc"):
            extra = (f"; boot-timer line {med(name, 'boot_ms')}" if name == "minnow"
                     else f"; qemu-boot.sh's own: marker {med(name, 'qemu_marker_ms')}, total {med(name, 'qemu_total_ms')}")
            n = v.get(name, {})
            L.append(f"| 3. lab, {name}: spawn → MINNOW-GUEST-UP (median ms, {n.get('n_ok', 0)}/{n.get('n', 0)} ok) | "
                     f"**{med(name, 'marker_ms')}**; to exit {med(name, 'wall_ms')}{extra} | — | {st(lab)} |")
        for q in ("qemu-microvm", "qemu-pc"):
            r1, r2, r3 = (lab.get(f"ratio_{k}_minnow_over_{q}") for k in ("marker", "own_marker", "total"))
            L.append(f"| 3. lab ratio minnow / {q}: marker (helper; vs qemu-boot.sh's own marker); to exit | "
                     f"**{f(r1, 2)}** ({f(r2, 2)}); {f(r3, 2)} | < 1 = minnow faster | {st(lab)} |")
    L.append("")
    L.append("Notes:")
    L.append("- 1a and 1d are minnow's own `guest boot time` log line (clock starts at the top of "
             "`main`, so exec and dynamic loading are excluded). first.elf is a PVH guest whose "
             "first instruction is the boot-timer write (then an i8042 reset), so 1a is VMM start "
             "→ first guest instruction plus one MMIO exit. hello64 first switches CR3 and prints a "
             "33-byte UART line (2 port-I/O exits per byte) before its write.")
    L.append("- 1b is the `VMM CPU so far` part of that log line: getrusage(RUSAGE_SELF) at the "
             "boot-timer write, i.e. all CPU the minnow process used from exec (including the "
             "kernel's exec and page faults, KVM's VM and vCPU creation) to the guest's first "
             "instruction. It is the analogue of Firecracker's CPU ms to API readiness (minnow "
             "has no API server to wait for; it is ready when the guest runs). 1c and 1e are "
             "wait4() rusage of the whole process, exec → exit, so they add the guest's work and "
             "KVM's VM teardown.")
    L.append("- 2 reads /proc/PID/smaps after the guest printed `minnow-guest: halting`; the guest "
             "mapping is the one anonymous rw mapping of exactly the guest size. RSS counts "
             "shared libc/ld pages fully; PSS splits them. Then SIGTERM; exit status must be 0.")
    L.append("- 3 runs inside the nested lab (QEMU TCG → kvm_amd → guest), so absolute times are "
             "inflated many times by TCG; compare ratios. Wall times are measured by bench/firstline.py "
             "the same way for all three: spawn → first output line containing MINNOW-GUEST-UP. QEMU is "
             "spawned via lab/qemu-boot.sh (without -q, so the console reaches the helper), so its helper "
             "times include bash starting and piping the console (~0.3-0.5 s under TCG); qemu-boot.sh's "
             "own marker clock starts after bash is up, which slightly favours QEMU. The two ratios "
             "bracket the like-for-like one. Each round runs all three, order rotating; kernel and "
             "initrd are read once first so 9p caching doesn't favour later runs.")
    if R.get("params"):
        p = R["params"]
        L.append(f"- parameters: runs={p['runs']}, mem runs={p['mem_runs']}, lab rounds={p['lab_rounds']}")
    return "\n".join(L) + "\n"


def cmd_host(a):
    R = {"host": host_facts(a.minnow),
         "params": {"runs": a.runs, "mem_runs": a.mem_runs, "lab_rounds": a.lab_rounds}}
    print(f"bench: 1. boot, {a.runs} runs each of first.elf and hello64.elf ...", file=sys.stderr, flush=True)
    R["first"] = bench_boot(a.minnow, a.guests, a.runs, "first.elf")
    print(f"bench: 1g. {a.runs} runs of first.elf with --seccomp off ...", file=sys.stderr, flush=True)
    R["first_off"] = bench_boot(a.minnow, a.guests, a.runs, "first.elf", ("--seccomp", "off"))
    R["boot"] = bench_boot(a.minnow, a.guests, a.runs)
    print("bench: 1j. SIGTERM under flood.elf, 3 runs ...", file=sys.stderr, flush=True)
    R["stall"] = bench_stall(a.minnow, a.guests, 3)
    for mib in (128, 1024):
        print(f"bench: 2. memory, {a.mem_runs} runs of halt.elf with {mib} MiB ...", file=sys.stderr, flush=True)
        R[f"mem{mib}"] = bench_mem(a.minnow, a.guests, mib, a.mem_runs)
    with open(a.json, "w") as fh:
        json.dump(R, fh, indent=1)
    return 0


def cmd_report(a):
    with open(a.host_json) as fh:
        R = json.load(fh)
    if a.lab_json:
        with open(a.lab_json) as fh:
            R["lab"] = json.load(fh)
    else:
        R["lab"] = {"status": "skipped", "reason": a.lab_skip or "not requested"}
    os.makedirs(a.out, exist_ok=True)
    md = md_report(R)
    with open(os.path.join(a.out, "latest.json"), "w") as fh:
        json.dump(R, fh, indent=1)
        fh.write("\n")
    with open(os.path.join(a.out, "latest.md"), "w") as fh:
        fh.write(md)
    print(md)
    bad = [k for k in ("first", "first_off", "stall", "boot", "mem128", "mem1024", "lab")
           if R.get(k, {}).get("status") == "failed"]
    if bad:
        print(f"bench: did not run cleanly: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


def cmd_lab_summary(a):
    with open(a.log, errors="replace") as fh:
        lines = fh.read().splitlines()
    s = lab_summary(lines, a.rounds)
    s["lab_exit_status"] = a.lab_status
    if a.lab_status != 0:
        s["failures"].append(f"lab/run.sh exited {a.lab_status}: {a.lab_err}")
        s["status"] = "failed"
        s["reason"] = f"{len(s['failures'])} problem(s); first: {s['failures'][0]}"
    print(json.dumps(s, indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("host")
    h.add_argument("--minnow", required=True)
    h.add_argument("--guests", required=True)
    h.add_argument("--runs", type=int, default=30)
    h.add_argument("--mem-runs", type=int, default=5)
    h.add_argument("--lab-rounds", type=int, default=3)
    h.add_argument("--json", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--host-json", required=True)
    rp.add_argument("--out", required=True)
    rp.add_argument("--lab-json")
    rp.add_argument("--lab-skip")
    lr = sub.add_parser("lab-rounds")
    lr.add_argument("--minnow", required=True)
    lr.add_argument("--rounds", type=int, default=3)
    lr.add_argument("--cache", required=True)
    lr.add_argument("--boot-timeout", type=float, default=90)
    ls = sub.add_parser("lab-summary")
    ls.add_argument("--log", required=True)
    ls.add_argument("--rounds", type=int, required=True)
    ls.add_argument("--lab-status", type=int, required=True)
    ls.add_argument("--lab-err", default="")
    a = ap.parse_args()
    return {"host": cmd_host, "report": cmd_report, "lab-rounds": lab_rounds, "lab-summary": cmd_lab_summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
