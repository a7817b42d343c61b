#!/usr/bin/env python3
"""`make package` installed and run (packaging/CMakeLists.txt): builds the emp and emp-vmd
Debian packages with CPack into a scratch directory, unpacks them into a scratch root
(dpkg-deb -x: nothing is installed on this machine), runs emp-vmd's postinst against that
root (DPKG_ROOT) and checks the key it creates, the unit, the configuration and the man
pages, then runs programs from the installed paths: a Python program with a quarter of its
memory local over a file tier, and the same against the installed vmd (started with the
installed key), which exercises libemp-remote.so. Every value is checked.

usage: package_test.py BUILD_DIR
Exit 0 on success, 77 (skip, with the reason) when cpack or dpkg-deb is missing, 1 on failure.
"""
import gzip
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)

PROGRAM = "x = bytearray(range(256)) * (256 * 1024)\nprint(sum(x[::4093]) == sum((bytes(range(256)) * (256 * 1024))[::4093]))"


def main():
    build = os.path.abspath(sys.argv[1])
    for tool in ("cpack", "dpkg-deb", "python3"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    failures = []
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="emp-package-") as scratch:
        out = os.path.join(scratch, "packages")
        result = subprocess.run(["cpack", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", out],
                                capture_output=True, text=True, timeout=600)
        debs = sorted(f for f in os.listdir(out) if f.endswith(".deb")) if os.path.isdir(out) else []
        print(f"cpack: exit {result.returncode}, {', '.join(debs)}")
        if result.returncode != 0 or len(debs) != 2:
            return vmd_process.report([f"cpack failed: {result.stdout[-800:]} {result.stderr[-800:]}"])
        root = os.path.join(scratch, "root")
        control = os.path.join(scratch, "control")
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", os.path.join(out, deb), root], check=True)
        vmd_deb = next(d for d in debs if d.startswith("emp-vmd_"))
        subprocess.run(["dpkg-deb", "-e", os.path.join(out, vmd_deb), control], check=True)

        for path in ("usr/bin/emp", "usr/bin/emp-qemu", "usr/lib/emp/libemp.so", "usr/lib/emp/libemp-remote.so",
                     "usr/sbin/vmd", "lib/systemd/system/emp-vmd.service", "etc/emp/vmd.conf",
                     "usr/share/man/man1/emp.1.gz", "usr/share/man/man1/emp-qemu.1.gz", "usr/share/man/man8/vmd.8.gz",
                     "usr/share/doc/emp/README.md"):
            if not os.path.exists(os.path.join(root, path)):
                failures.append(f"not in the packages: /{path}")
        for page, words in (("usr/share/man/man1/emp.1.gz", "emp run"), ("usr/share/man/man8/vmd.8.gz", "-m MiB")):
            with gzip.open(os.path.join(root, page), "rt") as text:
                if words not in text.read():
                    failures.append(f"/{page} lacks the --help text ({words})")
        if "/etc/emp/vmd.conf" not in open(os.path.join(control, "conffiles")).read():
            failures.append("vmd.conf is not a conffile")
        unit = open(os.path.join(root, "lib/systemd/system/emp-vmd.service")).read()
        if "ExecStart=/usr/sbin/vmd $VMD_ARGS" not in unit or "EnvironmentFile=/etc/emp/vmd.conf" not in unit:
            failures.append("the unit does not run /usr/sbin/vmd with /etc/emp/vmd.conf")

        env = dict(os.environ, DPKG_ROOT=root)
        subprocess.run(["sh", os.path.join(control, "postinst"), "configure"], env=env, check=True)
        key = os.path.join(root, "etc/emp/vmd.key")
        mode = stat.S_IMODE(os.stat(key).st_mode) if os.path.exists(key) else None
        key_text = open(key).read() if mode is not None else ""
        print(f"postinst: key {'created' if mode is not None else 'missing'}, mode {oct(mode) if mode else '-'}")
        if mode != 0o600 or not re.fullmatch(r"[0-9a-f]{64}", key_text):
            failures.append(f"postinst key: mode {oct(mode) if mode else None}, {len(key_text)} characters")

        emp = os.path.join(root, "usr/bin/emp")
        tier = os.path.join(scratch, "tier")
        local = subprocess.run([emp, "run", "--mem-path", f"dram:16|{tier}:256:0", "--", "python3", "-c", PROGRAM],
                               capture_output=True, text=True, timeout=300)
        print(f"installed emp, file tier: exit {local.returncode}: {local.stdout.strip()}")
        if local.returncode != 0 or local.stdout.strip() != "True":
            failures.append(f"installed emp over a file tier: {local.stdout} {local.stderr[-600:]}")

        vmd = vmd_process.start(os.path.join(root, "usr/sbin/vmd"), "-m", "256", "--auth-key-file", key)
        if not vmd:
            failures.append("the installed vmd did not start")
        else:
            try:
                remote = subprocess.run([emp, "run", "--mem-path", f"dram:16|127.0.0.1:256:{vmd.port}",
                                         "--auth-key-file", key, "--transport", "tcp", "--", "python3", "-c", PROGRAM],
                                        capture_output=True, text=True, timeout=300)
                print(f"installed emp, installed vmd: exit {remote.returncode}: {remote.stdout.strip()}")
                if remote.returncode != 0 or remote.stdout.strip() != "True":
                    failures.append(f"installed emp over the installed vmd: {remote.stdout} {remote.stderr[-600:]}")
            finally:
                vmd_process.stop(vmd)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
