#!/usr/bin/env python3
"""One vmd under many clients: N emp-bench processes of SIZE each on one loopback vmd,
half over tcp and half over the same-host shared-memory path, all initialising,
faulting and writing back at once (25 % local, so 3/4 of each working set lives on the
donor), each verifying every byte it reads back. Prints each client's fault p50/p99 and
throughput, vmd's thread count under load, and vmd's CPU time while idle afterwards
(it must not poll without work). Exit 0 on success; 77 (skip, with the reason) when
vmd cannot start; 1 on any failure.

usage: many_clients_test.py VMD EMP_BENCH [--clients N] [--size MiB] [--seconds S]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("vmd")
    parser.add_argument("emp_bench")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="MiB per client")
    parser.add_argument("--seconds", type=float, default=3, help="measured phase per client")
    args = parser.parse_args()

    pool = args.clients * args.size + 64
    vmd = vmd_process.start(args.vmd, "-m", str(pool), "-c", str(args.clients + 4))
    if not vmd:
        print("SKIP: vmd did not start")
        return 77
    port = vmd.port
    print(f"vmd pid {vmd.pid}, {pool} MiB, port {port}", flush=True)
    failures = []
    try:
        clients = []
        for i in range(args.clients):
            transport = "tcp" if i % 2 == 0 else "shm"
            env = dict(os.environ, EMP_TRANSPORT=transport)
            command = [args.emp_bench, "--tier", f"127.0.0.1:{args.size}:{port}", "--working-set", f"{args.size}M",
                       "--local", "25%", "--pattern", "rand", "--block-size", "4K", "--subblock-size", "4K",
                       "--duration", str(args.seconds), "--seed", str(i + 1), "--no-baseline"]
            clients.append((i, transport, subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                           stderr=subprocess.PIPE, text=True)))
        # vmd's threads while every client runs: the serving threads scale with them.
        peak_threads = 0
        while any(p.poll() is None for _, _, p in clients):
            try:
                peak_threads = max(peak_threads, len(os.listdir(f"/proc/{vmd.pid}/task")))
            except FileNotFoundError:
                break
            time.sleep(0.2)
        print(f"{'client':>6} {'path':>4} {'pages/s':>10} {'fault p50 us':>13} {'fault p99 us':>13} verified")
        for i, transport, process in clients:
            out, err = process.communicate()
            result = None
            for text in reversed(out.strip().splitlines()):
                if text.startswith("{"):
                    result = json.loads(text)
                    break
            if process.returncode != 0 or not result or not result.get("verified"):
                failures.append(f"client {i} ({transport}) exit {process.returncode}: {err.strip()[-400:]}")
                print(f"{i:>6} {transport:>4} FAILED")
                continue
            print(f"{i:>6} {transport:>4} {result['throughput']:>10.0f} {result['fetch_p50_us']:>13.1f} "
                  f"{result['fetch_p99_us']:>13.1f} yes")
        print(f"vmd threads at peak: {peak_threads} (for {args.clients} clients)")
        if vmd.poll() is not None:
            failures.append(f"vmd exited with {vmd.returncode}")
        else:
            # Idle: every client gone; once vmd has retired their leases it must sleep.
            settle = time.monotonic() + 60
            last = cpu_seconds(vmd.pid)
            while time.monotonic() < settle:
                time.sleep(0.5)
                now = cpu_seconds(vmd.pid)
                if now - last < 0.01:
                    break
                last = now
            before = cpu_seconds(vmd.pid)
            time.sleep(2)
            idle = cpu_seconds(vmd.pid) - before
            print(f"vmd CPU while idle: {idle * 1000:.0f} ms in 2 s")
            if idle > 0.1:
                failures.append(f"vmd used {idle:.2f} s of CPU in 2 s without clients (busy polling?)")
    finally:
        vmd_process.stop(vmd)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
