#!/usr/bin/python3
"""ctest BenchCompare: bench/compare end to end on a tiny configuration (32 MiB, 50 %
local, one thread, every workload on local, emp-file, emp-vmd, emp-shm and swap), then
checks that compare.json and compare.md exist, every run verified (a swap baseline may be OOM-killed) and emp-vmd/emp-shm
runs were given EMP_TRANSPORT tcp/shm; then interrupts a second run during a swap run
and checks that it tears everything down (swap file, cgroup, work directory, its
children). Exits 77 (ctest SKIP_RETURN_CODE) naming what is missing when bench/compare
cannot run here (not root, no cgroup memory controller, swapon refused, redis not
installed, another bench/compare running).

    compare_test.py BUILD_DIR
"""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "compare")
SYSTEMS = ["local", "emp-file", "emp-vmd", "emp-shm", "swap"]
WORKLOADS = ["seq", "rand", "zipf", "sort", "redis"]


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def skip_if_cannot_run(returncode, output):
    if returncode == 3:
        print("SKIP: " + output.strip().splitlines()[-1])
        sys.exit(77)


def tiny_run(build, out):
    argv = [COMPARE, "--build", build, "--out", out, "--working-set", "32M", "--fractions", "50",
            "--threads", "1", "--systems", ",".join(SYSTEMS), "--workloads", ",".join(WORKLOADS),
            "--time-per-run", "0.2", "--redis-values", "5000"]
    print("+ " + " ".join(argv), flush=True)
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=150)
    print(done.stdout)
    skip_if_cannot_run(done.returncode, done.stdout)
    if done.returncode != 0:
        fail("bench/compare exited %d" % done.returncode)
    for name in ("compare.json", "compare.md"):
        if not os.path.getsize(os.path.join(out, name)):
            fail(name + " is empty")
    with open(os.path.join(out, "compare.json")) as f:
        doc = json.load(f)
    runs = doc["runs"]
    expected = len(WORKLOADS) * len(SYSTEMS)
    if len(runs) != expected:
        fail("%d runs recorded, expected %d" % (len(runs), expected))
    # The kernel baselines may be ended by their cgroup's OOM killer (compare.md shows
    # "oom": a result about swap, not a harness failure); every other run must verify.
    def failed(r):
        if r["system"] in ("swap", "zswap") and r["status"] == "oom":
            return False
        return r["status"] != "ok" or not r["verified"] or not r["throughput"]
    bad = [r for r in runs if failed(r)]
    if bad:
        fail("runs not verified: " + "; ".join("%s %s: %s %s" % (r["system"], r["workload"], r["status"],
                                                                r.get("error", "")) for r in bad))
    transports = {"emp-vmd": "tcp", "emp-shm": "shm"}
    wrong = [r for r in runs if r["system"] in transports and r.get("emp_transport") != transports[r["system"]]]
    if wrong:
        fail("runs on the wrong transport: " + "; ".join("%s %s: %s" % (r["system"], r["workload"],
                                                                        r.get("emp_transport")) for r in wrong))
    for key in ("nproc", "mem_total_bytes", "kernel", "cpu", "disk"):
        if key not in doc["machine"]:
            fail("machine description lacks " + key)
    table = open(os.path.join(out, "compare.md")).read()
    for name in SYSTEMS[1:] + ["emp-vmd ÷ swap", "emp-shm ÷ swap"]:
        if name not in table:
            fail("compare.md has no column " + name)
    print("ok: %d runs verified; compare.json and compare.md written" % len(runs))


def leftovers(pid):
    """Swap files, cgroups and work directories of bench/compare process `pid`."""
    swaps = [line.split()[0] for line in open("/proc/swaps").read().splitlines()[1:]
             if "/emp-compare.%d." % pid in line]
    cgroups = glob.glob("/sys/fs/cgroup/**/emp-compare-%d-*" % pid, recursive=True)
    dirs = glob.glob("/var/tmp/emp-compare.%d.*" % pid)
    return swaps + cgroups + dirs


def limited_and_busy(cgroup):
    """A run's cgroup (not the unlimited calibration one) with a process inside."""
    try:
        limit = open(os.path.join(cgroup, "memory.max" if os.path.exists(cgroup + "/memory.max")
                                  else "memory.limit_in_bytes")).read().strip()
        return limit.isdigit() and int(limit) < (1 << 40) and open(cgroup + "/cgroup.procs").read().strip()
    except OSError:
        return False


def interrupted_run(build, out):
    """SIGTERM while a swap run is inside its cgroup: everything must be torn down."""
    zswap = "/sys/module/zswap/parameters/enabled"
    zswap_before = open(zswap).read() if os.path.exists(zswap) else None
    # Plain swap at 75 % local: a zswap run can be OOM-killed at once (cgroup v1 does not
    # charge its pool) and finish before the signal lands.
    argv = [COMPARE, "--build", build, "--out", out, "--working-set", "32M", "--fractions", "75",
            "--threads", "1", "--systems", "swap", "--workloads", "rand", "--time-per-run", "60"]
    log = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.poll() is None:
        if any(limited_and_busy(d) for d in glob.glob("/sys/fs/cgroup/**/emp-compare-%d-*" % child.pid, recursive=True)):
            break
        time.sleep(0.1)
    else:
        child.kill()
        log.seek(0)
        output = log.read()
        print(output)
        skip_if_cannot_run(child.wait(), output)
        fail("no swap run started within 30 s")
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    code = child.wait(timeout=60)
    log.seek(0)
    print(log.read())
    if code != 130:
        fail("interrupted bench/compare exited %d, expected 130" % code)
    left = leftovers(child.pid)
    if left:
        fail("left behind after SIGTERM: " + " ".join(left))
    if zswap_before is not None and open(zswap).read() != zswap_before:
        fail("zswap 'enabled' was not restored")
    if os.path.exists(os.path.join(out, "compare.json")):
        fail("an interrupted run wrote results")
    print("ok: SIGTERM tore down the swap file, the cgroup, zswap and the work directory")


def main():
    build = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="emp-compare-test.") as out:
        tiny_run(build, os.path.join(out, "tiny"))
        interrupted_run(build, os.path.join(out, "interrupted"))


if __name__ == "__main__":
    main()
