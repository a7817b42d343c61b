#!/usr/bin/env python3
"""Soak: one vmd under 4 client slots for MINUTES. Each slot keeps starting emp-bench
clients (a fresh lease each: lease churn), alternating tcp and shm, with random working
sets and durations; about one run in four is killed with SIGKILL mid-run, and about one
in four is frozen (SIGSTOP) past vmd's idle timeout and thawed, so vmd drops its silent
session and the client reconnects and resumes its lease. Every client that is not
killed must finish and verify its data. vmd's RSS, open descriptors and threads are
sampled every few seconds; at the end, with every client gone, they must be back at
their idle values (descriptors, threads) and RSS must not have grown.

usage: soak.py VMD EMP_BENCH [--minutes M] [--slots N]
"""
import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) // 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vmd")
    parser.add_argument("emp_bench")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(12345)
    pool = args.slots * 256 + 64
    vmd = vmd_process.start(args.vmd, "-m", str(pool), "--grace", "5", "--idle-timeout", "2")
    if not vmd:
        print("SKIP: vmd did not start")
        return 77
    port = vmd.port
    idle = sample(vmd.pid)
    print(f"vmd pid {vmd.pid}, {pool} MiB pool, port {port}; idle: RSS {idle[0]} MiB, {idle[1]} fds, {idle[2]} threads",
          flush=True)
    end = time.monotonic() + args.minutes * 60
    slots = [None] * args.slots
    counts = {"runs": 0, "verified": 0, "killed": 0, "frozen": 0}
    failures = []
    samples = []
    next_sample = 0.0
    try:
        while time.monotonic() < end or any(slots):
            now = time.monotonic()
            for i, slot in enumerate(slots):
                if slot is None:
                    if now >= end:
                        continue
                    size = rng.choice([64, 128, 256])
                    action = rng.choice(["run", "run", "kill", "freeze"])
                    env = dict(os.environ, EMP_TRANSPORT=rng.choice(["tcp", "shm"]))
                    command = [args.emp_bench, "--tier", f"127.0.0.1:{size}:{port}", "--working-set", f"{size}M",
                               "--local", "25%", "--pattern", rng.choice(["rand", "zipf", "seq"]),
                               "--block-size", "4K", "--subblock-size", "4K", "--duration", str(rng.randint(2, 6)),
                               "--no-baseline", "--seed", str(rng.randint(1, 1 << 30))]
                    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)
                    slots[i] = {"process": process, "action": action, "started": now, "done_action": False}
                    counts["runs"] += 1
                    continue
                process = slot["process"]
                age = now - slot["started"]
                if not slot["done_action"] and age > 1.5:
                    if slot["action"] == "kill":
                        process.send_signal(signal.SIGKILL)
                        counts["killed"] += 1
                    elif slot["action"] == "freeze":
                        process.send_signal(signal.SIGSTOP)
                        time.sleep(3)  # past vmd's 2 s idle timeout: vmd drops the silent session
                        process.send_signal(signal.SIGCONT)
                        counts["frozen"] += 1
                    slot["done_action"] = True
                if process.poll() is None:
                    continue
                out, err = process.communicate()
                if slot["action"] != "kill":
                    if process.returncode != 0 or '"verified":true' not in out:
                        failures.append(f"client ({slot['action']}) exit {process.returncode}: {err.strip()[-300:]}")
                    else:
                        counts["verified"] += 1
                slots[i] = None
            if now >= next_sample:
                samples.append((now, *sample(vmd.pid)))
                next_sample = now + 5
                rss, fds, threads = samples[-1][1:]
                print(f"[{(now - (end - args.minutes * 60)) / 60:5.1f} min] vmd RSS {rss} MiB, {fds} fds, "
                      f"{threads} threads; runs {counts['runs']}, verified {counts['verified']}, "
                      f"killed {counts['killed']}, frozen {counts['frozen']}, failures {len(failures)}", flush=True)
            if vmd.poll() is not None:
                failures.append(f"vmd exited with {vmd.returncode}")
                break
            time.sleep(0.1)
        # Quiescence: killed and frozen clients' leases go within the grace period.
        settle = time.monotonic() + 30
        final = sample(vmd.pid)
        while time.monotonic() < settle and (final[1] > idle[1] or final[2] > idle[2]):
            time.sleep(0.5)
            final = sample(vmd.pid)
        peak_rss = max(s[1] for s in samples) if samples else final[0]
        print(f"idle at the end: RSS {final[0]} MiB (start {idle[0]}, peak {peak_rss}), {final[1]} fds (start {idle[1]}), "
              f"{final[2]} threads (start {idle[2]})")
        if final[1] > idle[1]:
            failures.append(f"vmd holds {final[1] - idle[1]} more descriptors than at the start")
        if final[2] > idle[2]:
            failures.append(f"vmd runs {final[2] - idle[2]} more threads than at the start")
        if final[0] > idle[0] + 32:
            failures.append(f"vmd's RSS grew from {idle[0]} to {final[0]} MiB")
    finally:
        for slot in slots:
            if slot and slot["process"].poll() is None:
                slot["process"].kill()
                slot["process"].wait()
        vmd_process.stop(vmd)
    print(f"runs {counts['runs']}, verified {counts['verified']}, killed {counts['killed']}, frozen {counts['frozen']}")
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
