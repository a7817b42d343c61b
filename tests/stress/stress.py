#!/usr/bin/env python3
"""stress-ng's memory stressors under libemp.so (`make test-stress`; a short subset runs
in `make test`).

Each stressor runs for a fixed time without EMP, then under libemp.so with room for all
its memory (no eviction: the speed target), and with a small DRAM budget over a file tier
and over a loopback vmd (each stressor's workers are forked
children of stress-ng, so fork is exercised by all of them). A run under EMP fails on a
non-zero exit, any EMP error or warning line, a "finished prematurely" warning, a
verification failure or a missing metrics line. EMP's control sockets go to a private
runtime directory (XDG_RUNTIME_DIR) removed with the scratch directory: workers that a
stressor kills with a signal cannot remove their own. The bogo-ops ratio of each run to the
run without EMP goes into a table (Markdown) on stdout and, with --table, into a file.

usage: stress.py --libemp LIBEMP --vmd VMD [--seconds N] [--subset] [--table FILE]
                 [--only NAME,...]
Exit 0 when every run passed, 77 (skip, with the reason) when stress-ng is missing,
1 otherwise.
"""
import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)

# name, extra stress-ng arguments. Two workers each (one for the heavy ones).
STRESSORS = [
    ("mmap", ["--mmap", "2", "--mmap-bytes", "64M"]),
    ("mmapaddr", ["--mmapaddr", "2"]),
    ("mmapfixed", ["--mmapfixed", "2"]),
    ("mmapfork", ["--mmapfork", "2"]),
    ("mmapmany", ["--mmapmany", "2"]),
    ("mremap", ["--mremap", "2", "--mremap-bytes", "32M"]),
    ("madvise", ["--madvise", "2"]),
    ("mprotect", ["--mprotect", "2"]),
    ("msync", ["--msync", "2", "--msync-bytes", "16M"]),
    ("mincore", ["--mincore", "2"]),
    ("remap", ["--remap", "2"]),
    ("brk", ["--brk", "2"]),
    ("bigheap", ["--bigheap", "2", "--bigheap-growth", "64K"]),
    ("malloc", ["--malloc", "2"]),
    ("stack", ["--stack", "2"]),
    ("stackmmap", ["--stackmmap", "2"]),
    ("vm", ["--vm", "2", "--vm-bytes", "64M", "--vm-method", "all"]),
    ("vm-addr", ["--vm-addr", "2"]),
    ("vm-rw", ["--vm-rw", "2", "--vm-rw-bytes", "16M"]),
    ("fork", ["--fork", "2"]),
    ("vfork", ["--vfork", "2"]),
    ("clone", ["--clone", "2"]),
    ("memrate", ["--memrate", "1", "--memrate-bytes", "32M"]),
    ("memthrash", ["--memthrash", "1"]),
    ("munmap", ["--munmap", "2"]),
    ("pagemove", ["--pagemove", "2", "--pagemove-bytes", "16M"]),
]
SUBSET = ["mmap", "mmapfixed", "mmapmany", "mremap", "madvise", "mprotect", "vm", "vfork"]
DRAM_MIB = 64
NO_EVICTION_DRAM_MIB = 2048  # every stressor's memory fits: nothing is evicted
TIER_MIB = 1024  # per process: stress-ng's forked workers take leases (files) of their own beyond their share
VMD_MIB = 6144

METRICS = re.compile(r"(?:metrc|info):\s+\[\d+\]\s+(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
EMP_PROBLEM = re.compile(r"^emp\[\d+\] [^:]+: (error|warning|fatal)", re.MULTILINE)


def run_stressor(name, args, seconds, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    command = ["stress-ng", *args, "--verify", "--timeout", f"{seconds}s", "--metrics-brief"]
    limit = seconds * 6 + 60
    # Its own process group, so a hung worker is killed with it (nothing is left behind).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        hung = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split()
        for pid in hung:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        return None, [f"did not finish within {limit} s"], out + err
    text = out + err
    problems = []
    if process.returncode != 0:
        problems.append(f"exit status {process.returncode}")
    for match in EMP_PROBLEM.finditer(text):
        line = text[match.start():text.find("\n", match.start())]
        problems.append(line.strip())
        if len(problems) > 4:
            break
    if "finished prematurely" in text:
        problems.append("a worker finished prematurely")
    if re.search(r"fail:|FAIL", text):
        problems.append("verification failed: " + next(l for l in text.splitlines() if re.search(r"fail:|FAIL", l)))
    rate = None
    for match in METRICS.finditer(text):
        if match.group(1) == name:
            rate = float(match.group(6))  # bogo ops per second of real time
    if rate is None:
        problems.append("no metrics line")
    return rate, problems, text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--libemp", required=True)
    parser.add_argument("--vmd", required=True)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--subset", action="store_true", help="the short list (make test)")
    parser.add_argument("--only", default="", help="comma-separated stressor names")
    parser.add_argument("--table", help="also write the Markdown table here")
    options = parser.parse_args()
    if not shutil.which("stress-ng"):
        print("SKIP: stress-ng is not installed (apt-get install stress-ng)")
        return 77
    chosen = [s for s in STRESSORS if (not options.subset or s[0] in SUBSET)]
    if options.only:
        wanted = options.only.split(",")
        chosen = [s for s in STRESSORS if s[0] in wanted]

    vmd = vmd_process.start(options.vmd, "-m", str(VMD_MIB))
    if not vmd:
        print("SKIP: vmd did not start")
        return 77
    failures = []
    rows = []
    try:
        with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="emp-stress-") as scratch:
            tiers = [("no eviction", f"dram:{NO_EVICTION_DRAM_MIB}|{scratch}/tier0:{TIER_MIB}:0"),
                     ("file", f"dram:{DRAM_MIB}|{scratch}/tier:{TIER_MIB}:0"),
                     ("vmd", f"dram:{DRAM_MIB}|127.0.0.1:{TIER_MIB}:{vmd.port}")]
            for name, args in chosen:
                plain, plain_problems, _ = run_stressor(name, args, options.seconds, {})
                row = [name, f"{plain:.1f}" if plain is not None else "—"]
                for tier_name, mem_path in tiers:
                    runtime_dir = os.path.join(scratch, "run")
                    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
                    env = {"EMP_MEM_PATH": mem_path, "LD_PRELOAD": options.libemp, "TMPDIR": scratch,
                           "XDG_RUNTIME_DIR": runtime_dir}
                    rate, problems, text = run_stressor(name, args, options.seconds, env)
                    ratio = f"{rate / plain:.2f}" if rate is not None and plain else "—"
                    row.append(("FAIL " if problems else "") + ratio)
                    status = "ok" if not problems else "FAIL: " + "; ".join(problems)
                    print(f"{name} on {tier_name}: {rate if rate is not None else '-'} bogo ops/s "
                          f"(plain {plain if plain is not None else '-'}), ratio {ratio}: {status}", flush=True)
                    if problems:
                        failures.append(f"{name} on {tier_name}: {'; '.join(problems)}")
                rows.append(row)
    finally:
        vmd_process.stop(vmd)

    table = [f"stress-ng memory stressors under libemp.so, {options.seconds} s each: with no eviction "
             f"(dram:{NO_EVICTION_DRAM_MIB}, a {TIER_MIB} MiB file tier), and with dram:{DRAM_MIB} over a "
             f"{TIER_MIB} MiB file tier and a {TIER_MIB} MiB lease on a loopback vmd of {VMD_MIB} MiB "
             f"({datetime.date.today()}; `make test-stress`).",
             "Ratio: bogo-ops per second (real time) under EMP ÷ without EMP; FAIL marks a run with an EMP error,",
             "a premature finish, a verification failure or a non-zero exit.", "",
             "| stressor | without EMP (bogo-ops/s) | no eviction | file tier, dram:64 | vmd, dram:64 |",
             "|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(table) + "\n"
    print()
    print(text)
    if options.table:
        with open(options.table, "w") as out:
            out.write(text)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
