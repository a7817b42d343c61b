#!/usr/bin/env python3
"""A lease lives exactly as long as its program: programs under `emp run` on a vmd
sized to exactly one lease (with a long --grace, so a lease left behind would show):
two back-to-back runs, `sh -c 'exec true'`, a chain of three execs, a helper child
started while its parent holds the whole donor, `python3 -c 'print(1)'` (often a
shim that forks helpers and execs), and a client killed with SIGKILL whose lease must
be free again within seconds. Exit 0 on success,
77 (skip, with the reason) when vmd cannot start, 1 on failure.

usage: lease_lifetime_test.py VMD EMP
"""
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)


def main():
    vmd_path, emp = sys.argv[1], sys.argv[2]
    vmd = vmd_process.start(vmd_path, "-m", "64", "--grace", "300")
    if not vmd:
        print("SKIP: vmd did not start")
        return 77
    port = vmd.port
    mem_path = f"dram:16|127.0.0.1:64:{port}"
    failures = []

    def run(*command, expect_ok=True, quiet=False):
        result = subprocess.run([emp, "run", "--mem-path", mem_path, "--", *command],
                                capture_output=True, text=True, timeout=60)
        if not quiet:
            print(f"{' '.join(command)!r}: exit {result.returncode}")
        if expect_ok and result.returncode != 0:
            failures.append(f"{command}: exit {result.returncode}: {result.stderr.strip()[-300:]}")
        return result.returncode == 0

    try:
        run("true")
        run("true")  # right after: the first lease must be gone already
        run("sh", "-c", "exec true")
        run("sh", "-c", "exec sh -c 'exec sh -c \"exec true\"'")
        # A helper child while the parent holds the whole donor (what a pyenv shim does):
        # the child's lease waits for its first eviction, which never comes.
        run("sh", "-c", "x=$(sh -c 'echo helper'); test \"$x\" = helper && exec true")
        if shutil.which("python3"):
            run("python3", "-c", "print(1)")
        # SIGKILL: the kernel closes the connection, vmd frees the lease.
        sleeper = subprocess.Popen([emp, "run", "--mem-path", mem_path, "--", "sleep", "60"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        leased = False
        while time.monotonic() < deadline and sleeper.poll() is None:
            donors = subprocess.run([emp, "donors", str(sleeper.pid)], capture_output=True, text=True)
            if "lease" in donors.stdout:
                leased = True
                break
            time.sleep(0.1)
        if not leased:
            failures.append("the sleeping client never showed its lease in `emp donors`")
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        killed_at = time.monotonic()
        freed = False
        while time.monotonic() < killed_at + 10:
            if run("true", expect_ok=False, quiet=True):
                freed = True
                break
            time.sleep(0.1)
        print(f"after SIGKILL the lease was free again in {time.monotonic() - killed_at:.2f} s")
        if not freed:
            failures.append("the lease of a client killed with SIGKILL was not freed within 10 s")
        if vmd.poll() is not None:
            failures.append(f"vmd exited with {vmd.returncode}")
    finally:
        vmd_process.stop(vmd)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
