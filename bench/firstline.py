#!/usr/bin/env python3
"""Spawn a command and timestamp the first output line matching each pattern.

Used for every wall-time number in bench/ so minnow and QEMU are measured the
same way: t=0 is just before fork/exec, a line's time is when this process
read it from the (merged stdout+stderr) pipe. Also returns the exit status,
the total wall time and the child's rusage (user/sys CPU, max RSS) from wait4.

CLI:  firstline.py [--timeout S] [--log FILE] [--pattern NAME=REGEX]... -- CMD...
      prints one JSON object (see run()).
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time


def run(cmd, patterns=None, timeout=60.0, log=None, env=None, stdin=subprocess.DEVNULL):
    """Run cmd; return a dict:
    status: exit code (negative = signal), timed_out: bool, wall_ms: spawn -> exit,
    match: {name: {"ms": spawn -> line, "line": str, "groups": [..]}} for patterns seen,
    user_ms/sys_ms/cpu_ms: the child's CPU time (incl. its waited-for children),
    maxrss_kib, tail: last output lines (for error reasons), error: spawn error or None.
    """
    pats = {k: re.compile(v) for k, v in (patterns or {}).items()}
    res = {"cmd": list(cmd), "status": None, "timed_out": False, "wall_ms": None,
           "match": {}, "user_ms": None, "sys_ms": None, "cpu_ms": None,
           "maxrss_kib": None, "tail": [], "error": None}
    logf = open(log, "wb") if log else None
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env, bufsize=0,
                             start_new_session=True)
    except OSError as e:
        res["error"] = f"cannot spawn {cmd[0]}: {e}"
        return res
    fd = p.stdout.fileno()
    deadline = t0 + timeout
    buf = b""
    tail = []

    def handle_line(raw, now):
        if logf:
            logf.write(raw + b"\n")
        line = raw.decode("utf-8", "replace").rstrip("\r")
        tail.append(line)
        del tail[:-12]
        for name, rx in pats.items():
            if name in res["match"]:
                continue
            m = rx.search(line)
            if m:
                res["match"][name] = {"ms": round((now - t0) * 1000.0, 3),
                                      "line": line, "groups": list(m.groups())}

    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            res["timed_out"] = True
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the session we created for it
            except ProcessLookupError:
                pass
            break
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not r:
            continue
        chunk = os.read(fd, 65536)
        now = time.monotonic()
        if not chunk:
            break  # EOF: the child (and everything holding the pipe) closed it
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            handle_line(raw, now)
    if buf:
        handle_line(buf, time.monotonic())
    # Reap with rusage. EOF normally means exit; still bound the wait.
    while True:
        pid, wstatus, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            break
        if time.monotonic() > deadline + 5:
            res["timed_out"] = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pid, wstatus, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.001)
    t1 = time.monotonic()
    p.returncode = os.waitstatus_to_exitcode(wstatus)  # keep Popen from waiting again
    p.stdout.close()
    if logf:
        logf.close()
    res["status"] = p.returncode
    res["wall_ms"] = round((t1 - t0) * 1000.0, 3)
    res["user_ms"] = round(ru.ru_utime * 1000.0, 3)
    res["sys_ms"] = round(ru.ru_stime * 1000.0, 3)
    res["cpu_ms"] = round((ru.ru_utime + ru.ru_stime) * 1000.0, 3)
    res["maxrss_kib"] = ru.ru_maxrss
    res["tail"] = tail
    return res


def main(argv):
    timeout, log, pats = 60.0, None, {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a == "--timeout":
            timeout = float(argv[i + 1]); i += 2
        elif a == "--log":
            log = argv[i + 1]; i += 2
        elif a == "--pattern":
            name, _, rx = argv[i + 1].partition("=")
            pats[name] = rx; i += 2
        else:
            break
    cmd = argv[i:]
    if not cmd:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(run(cmd, pats, timeout, log)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
