#!/usr/bin/env python3
"""EMP_REPLICAS=2 against donor failures: emp-bench runs on two loopback vmds with
every evicted block on both; mid-run one vmd is killed with SIGKILL (over tcp, and
over the same-host shared-memory path) or stalled with SIGSTOP; each run must finish
and verify every byte. Losing both donors must end the run with a clear error, never
wrong data. And during a rebuild: one donor is killed and restarted on its port (the
client takes a fresh lease there and rebuilds that copy from the other), and killed
again while that copy is being rebuilt (0.3 s after the fresh lease; the rebuild runs
at most 256 MiB/s and has ~336 MiB to copy); the run must still verify.
Exit 0 on success, 77 (skip) when vmd cannot start, 1 on failure.

usage: replicas_test.py VMD EMP_BENCH
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)


def start_donors(vmd_path, mib):
    """Two vmds of `mib` MiB each, or None (neither left running) when one did not start."""
    a = vmd_process.start(vmd_path, "-m", str(mib))
    b = vmd_process.start(vmd_path, "-m", str(mib))
    if not a or not b:
        vmd_process.stop(a)
        vmd_process.stop(b)
        return None
    return a, b


def start_bench(command, env):
    """emp-bench, returned once its measured phase runs (it says so on stderr): data is
    evicted by then."""
    client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while client.poll() is None:
        line = client.stderr.readline()
        if "running" in line or not line:
            break
    return client


def run_case(vmd_path, bench, name, transport, action, both=False):
    donors = start_donors(vmd_path, 320)
    if not donors:
        return None
    a, b = donors
    port_a, port_b = a.port, b.port
    env = dict(os.environ, EMP_REPLICAS="2", EMP_TRANSPORT=transport)
    command = [bench, "--tier", f"127.0.0.1:256:{port_a}|127.0.0.1:256:{port_b}", "--working-set", "192M",
               "--local", "25%", "--pattern", "rand", "--block-size", "4K", "--subblock-size", "4K",
               "--duration", "6", "--no-baseline"]
    started = time.monotonic()
    client = start_bench(command, env)
    time.sleep(1.5)  # into the measured phase, with evictions on both copies
    for vmd in ([a, b] if both else [a]):
        vmd.send_signal(action)
    try:
        out, err = client.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        client.kill()
        out, err = client.communicate()
        err += "\n(timed out)"
    took = time.monotonic() - started
    for vmd in (a, b):
        vmd_process.stop(vmd)
    verified = '"verified":true' in out
    print(f"{name}: exit {client.returncode}, verified {verified}, {took:.1f} s")
    if both:
        if client.returncode == 0 or verified:
            return f"{name}: the run went on with both donors lost"
        if "lost" not in err and "second tier" not in err:
            return f"{name}: no clear error naming the loss: {err.strip()[-300:]}"
        return ""
    if client.returncode != 0 or not verified:
        return f"{name}: exit {client.returncode}: {err.strip()[-400:]}"
    return ""


def rebuild_case(vmd_path, bench):
    """Kills a copy's donor, restarts it, and kills it again mid-rebuild."""
    name = "SIGKILL a donor during the rebuild of its copy (tcp)"
    donors = start_donors(vmd_path, 600)
    if not donors:
        return None
    a, b = donors
    port_a = a.port
    env = dict(os.environ, EMP_REPLICAS="2", EMP_TRANSPORT="tcp")
    command = [bench, "--tier", f"127.0.0.1:512:{port_a}|127.0.0.1:512:{b.port}", "--working-set", "448M",
               "--local", "25%", "--pattern", "rand", "--block-size", "4K", "--subblock-size", "4K",
               "--duration", "20", "--no-baseline"]
    client = start_bench(command, env)
    restarted = None
    mid_rebuild = False
    try:
        threading.Thread(target=lambda: client.stderr.read(), daemon=True).start()
        time.sleep(1.5)
        a.send_signal(signal.SIGKILL)
        a.process.wait()
        restarted = vmd_process.start(vmd_path, "-m", "600", "-v", "-p", port_a)  # -v: log grants
        if not restarted:
            return f"{name}: vmd did not restart on port {port_a}"
        # The client takes a fresh lease there and rebuilds its copy of ~336 MiB from the
        # other donor at no more than 256 MiB/s: 0.3 s after the grant it is under way.
        mid_rebuild = restarted.wait_for_log("granted lease", 20)
        time.sleep(0.3)
        restarted.send_signal(signal.SIGKILL)
        out, _ = client.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        client.kill()
        out, _ = client.communicate()
    finally:
        for vmd in (a, b, restarted):
            vmd_process.stop(vmd)
    verified = '"verified":true' in out
    print(f"{name}: exit {client.returncode}, verified {verified}, fresh lease seen: {mid_rebuild}")
    if client.returncode != 0 or not verified:
        return f"{name}: exit {client.returncode}"
    if not mid_rebuild:
        return f"{name}: the client never took a fresh lease on the restarted donor"
    return ""


def main():
    vmd_path, bench = sys.argv[1], sys.argv[2]
    failures = []
    cases = [("SIGKILL one of two donors (tcp)", "tcp", signal.SIGKILL, False),
             ("SIGKILL one of two donors (shm)", "shm", signal.SIGKILL, False),
             ("SIGSTOP one of two donors (tcp)", "tcp", signal.SIGSTOP, False),
             ("SIGKILL both donors (tcp)", "tcp", signal.SIGKILL, True)]
    for name, transport, action, both in cases:
        result = run_case(vmd_path, bench, name, transport, action, both)
        if result is None:
            print("SKIP: vmd did not start")
            return 77
        if result:
            failures.append(result)
    result = rebuild_case(vmd_path, bench)
    if result is None:
        print("SKIP: vmd did not start")
        return 77
    if result:
        failures.append(result)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
