#!/usr/bin/env python3
"""EMP_REPLICAS=2 under a real program: redis-server under `emp run` with 8 MiB local
and two loopback vmds (tcp) holding the rest; 20,000 values of 1000 bytes are loaded,
one vmd is killed with SIGKILL, and every value is read back and compared. Exit 0 on
success, 77 (skip, naming what is missing) without redis-server or vmd, 1 on failure.

usage: replicas_redis_test.py VMD EMP
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testing"))
import vmd as vmd_process  # noqa: E402  (tests/testing/vmd.py)

VALUES = 20000


def value(i):
    seed = hashlib.sha256(b"%d" % i).hexdigest().encode()
    return (seed * 16)[:1000]


def command(*parts):
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        part = part if isinstance(part, bytes) else str(part).encode()
        out += b"$%d\r\n%s\r\n" % (len(part), part)
    return out


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""

    def line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        if line.startswith(b"$"):
            length = int(line[1:])
            if length < 0:
                return None
            while len(self.buffer) < length + 2:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buffer += chunk
            data, self.buffer = self.buffer[:length], self.buffer[length + 2:]
            return data
        return line

    def pipeline(self, commands):
        self.sock.sendall(b"".join(commands))
        return [self.reply() for _ in commands]


def main():
    vmd_path, emp = sys.argv[1], sys.argv[2]
    if not shutil.which("redis-server"):
        print("SKIP: redis-server is not installed (Debian: apt-get install redis-server)")
        return 77
    a = vmd_process.start(vmd_path, "-m", "96")
    b = vmd_process.start(vmd_path, "-m", "96")
    if not a or not b:
        vmd_process.stop(a)
        vmd_process.stop(b)
        print("SKIP: vmd did not start")
        return 77
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    env = dict(os.environ, EMP_REPLICAS="2", EMP_TRANSPORT="tcp")
    server = subprocess.Popen([emp, "run", "--mem-path", f"dram:8|127.0.0.1:64:{a.port}|127.0.0.1:64:{b.port}",
                               "--block-size", "4K", "--subblock-size", "4K", "--", "redis-server", "--port",
                               str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    failures = []
    try:
        deadline = time.monotonic() + 30
        client = None
        while client is None and time.monotonic() < deadline and server.poll() is None:
            try:
                client = Redis(port)
            except OSError:
                time.sleep(0.1)
        if client is None:
            failures.append(f"redis-server under EMP did not start: {server.stderr.read()[-300:] if server.poll() is not None else ''}")
            return vmd_process.report(failures)
        for first in range(0, VALUES, 500):
            client.pipeline([command("SET", "key:%012d" % i, value(i)) for i in range(first, min(VALUES, first + 500))])
        stats = subprocess.run([emp, "stats", str(server.pid), "--json"], capture_output=True, text=True)
        try:
            evicted = json.loads(stats.stdout)["stats"]["bytes_written"]
        except (ValueError, KeyError):
            evicted = 0
        print(f"evicted to the mirrored donors before the kill: {evicted >> 20} MiB")
        if evicted < (8 << 20):
            failures.append(f"too little was evicted to test anything ({evicted} bytes): {stats.stdout[:200]}")
        a.send_signal(signal.SIGKILL)  # one donor dies; every evicted value has a copy on the other
        wrong = 0
        for first in range(0, VALUES, 500):
            replies = client.pipeline([command("GET", "key:%012d" % i) for i in range(first, min(VALUES, first + 500))])
            wrong += sum(1 for k, got in enumerate(replies) if got != value(first + k))
        print(f"{VALUES} values read back after one donor was killed: {wrong} wrong")
        if wrong:
            failures.append(f"{wrong} values wrong after a donor died")
        if server.poll() is not None:
            failures.append(f"redis-server ended: {server.stderr.read()[-300:]}")
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        vmd_process.stop(a)
        vmd_process.stop(b)
    return vmd_process.report(failures)


if __name__ == "__main__":
    sys.exit(main())
