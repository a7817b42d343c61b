#!/usr/bin/env python3
"""fork() without the parent, and the child's own tier space (real programs under
`emp run`, tests/preload/preload_probe.cc):

- a double-forking daemon whose memory was evicted before the forks reads every byte
  after its parent and the middle process have exited, then keeps evicting on its own —
  on a file tier, on a donor over tcp and on a donor over shm; afterwards the donor
  holds no lease (the daemon's ended with it);
- a child that rewrites all of a 1 GiB private mapping: on a second tier sized for the
  parent, fork() fails with ENOMEM and says why (reserve at fork, docs/architecture.md);
  on one with room for the copy, the child rewrites and checks it within its DRAM
  budget.

Every process ends (the forked ones with _exit) leaving no control socket behind.

Exit 0 on success, 77 (skip, with the reason) when vmd cannot start, 1 on failure.

usage: fork_test.py VMD EMP PROBE
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)

DRAM_MIB = 64


def main():
    vmd_path, emp, probe = sys.argv[1:4]
    failures = []
    runtime = tempfile.TemporaryDirectory(prefix="emp-fork-test-")  # the control sockets' directory

    def run(mem_path, *args, transport=None, timeout=300):
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = runtime.name
        if transport:
            env["EMP_TRANSPORT"] = transport
        result = subprocess.run([emp, "run", "--mem-path", mem_path, "--", probe, *args],
                                capture_output=True, text=True, timeout=timeout, env=env)
        sockets = os.path.join(runtime.name, "emp")
        left = [name for name in os.listdir(sockets)] if os.path.isdir(sockets) else []
        if left:
            failures.append(f"{args[0]}: control sockets left behind: {', '.join(sorted(left))}")
            for name in left:
                os.unlink(os.path.join(sockets, name))
        return result

    def expect_daemon(what, mem_path, transport=None):
        result = run(mem_path, "daemon", "64", transport=transport)
        print(f"{what}: exit {result.returncode}: {result.stdout.strip()}")
        if result.returncode != 0 or "OK daemon" not in result.stdout:
            failures.append(f"{what}: {result.stdout.strip()} {result.stderr.strip()[-600:]}")

    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        expect_daemon("daemon on a file tier", f"dram:{DRAM_MIB}|{scratch}/tier:512:0")
        if os.listdir(scratch) != ["tier"]:
            failures.append(f"left behind in the tier's directory: {os.listdir(scratch)}")

    vmd = vmd_process.start(vmd_path, "-m", "2560")
    if not vmd:
        print("SKIP: vmd did not start")
        return 77
    try:
        donor = f"127.0.0.1:512:{vmd.port}"  # the daemon's 128 MiB and its copy
        expect_daemon("daemon on a donor over tcp", f"dram:{DRAM_MIB}|{donor}", "tcp")
        expect_daemon("daemon on a donor over shm", f"dram:{DRAM_MIB}|{donor}", "shm")
        # Every lease ended with its holders: the whole donor can be leased again.
        whole = run(f"dram:16|127.0.0.1:2560:{vmd.port}", "threads", "16", transport="shm", timeout=120)
        if whole.returncode != 0:
            failures.append(f"a lease outlived the daemons: {whole.stdout.strip()} {whole.stderr.strip()[-400:]}")

        # 1 GiB mapped; a tier of 1.5 GiB holds the parent but not a second copy.
        tight = run(f"dram:{DRAM_MIB}|127.0.0.1:1536:{vmd.port}", "forkcopy", "1024", transport="shm")
        print(f"forkcopy on a tier sized for the parent: exit {tight.returncode}: {tight.stdout.strip()}")
        if tight.returncode != 0 or "fork: ENOMEM" not in tight.stdout or "fork() refused" not in tight.stderr:
            failures.append(f"forkcopy on a tier sized for the parent: {tight.stdout.strip()} "
                            f"{tight.stderr.strip()[-400:]}")
        roomy = run(f"dram:{DRAM_MIB}|127.0.0.1:2560:{vmd.port}", "forkcopy", "1024", transport="shm")
        print(f"forkcopy on a tier with room for the copy: exit {roomy.returncode}: {roomy.stdout.strip()}")
        peak = re.search(r"child peak RSS (\d+) MiB", roomy.stdout)
        if roomy.returncode != 0 or "OK forkcopy" not in roomy.stdout or not peak:
            failures.append(f"forkcopy with room: {roomy.stdout.strip()} {roomy.stderr.strip()[-400:]}")
        elif int(peak.group(1)) > 4 * DRAM_MIB:
            failures.append(f"the child's peak RSS was {peak.group(1)} MiB on a {DRAM_MIB} MiB budget")
    finally:
        vmd_process.stop(vmd)
        runtime.cleanup()
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
