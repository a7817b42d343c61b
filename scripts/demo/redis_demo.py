#!/usr/bin/env python3
"""The workload of `make demo`: one redis-server, loaded, read with Zipf-skewed GETs and read back.

    redis_demo.py run OUT.json --keys N --gets M --socket PATH --log PATH [--emp EMP] -- CMD...
        starts CMD (`redis-server`, or `emp run ... -- redis-server`) with redis arguments
        appended (a unix socket, no persistence), then three timed phases with a progress ticker:
          load    N pipelined SETs of key:<i> -> value(i) (1000 bytes, deterministic)
          zipf    M pipelined GETs, keys drawn Zipf(0.99) (the same keys in every run)
          verify  a GET of every key in order, each value compared, and a sha256 of them all
        With --emp EMP, `EMP stats <pid> --json` is sampled while redis runs (live resident
        memory on the ticker; the last sample goes into OUT.json). Redis is stopped at the end,
        also on Ctrl-C or an error.
    redis_demo.py summary LOCAL.json EMP.json TIER
        prints the side-by-side summary; exits 1 unless both runs verified the same data.
Plain sockets and RESP on a unix socket, so it needs nothing beyond python3.
"""
import hashlib
import itertools
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

# The values, the RESP encoding and the reply reader of the preload tests' redis check.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/preload"))
from redis_check import BATCH, VALUE_BYTES, Reader, command, value  # noqa: E402

GET_REPLY = b"$%d\r\n" % VALUE_BYTES  # every key holds a value of VALUE_BYTES
ZIPF_S = 0.99
MIB = 1 << 20
TIMEOUT_S = 60  # longest wait for a reply before the run is declared failed


def key(i):
    return b"key:%d" % i


def say(text):
    global line_open
    sys.stdout.write(text)
    sys.stdout.flush()
    line_open = not text.endswith("\n")


line_open = False  # a ticker line is waiting for its end


class Redis(Reader):
    """A connection to the redis-server `server` on the unix socket `path`."""

    def __init__(self, path, server):
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise SystemExit("redis-server exited at start (status %d)" % server.returncode)
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(path)
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not answer on %s within 30 s" % path)
                time.sleep(0.1)
        sock.settimeout(TIMEOUT_S)
        super().__init__(sock)

    def skip_values(self, count):
        """Reads `count` GET replies of VALUE_BYTES each without parsing them one by one."""
        size = count * (len(GET_REPLY) + VALUE_BYTES + 2)
        while len(self.buf) < size:
            self._fill()
        replies, self.buf = self.buf[:size], self.buf[size:]
        if replies.count(GET_REPLY) != count:
            raise SystemExit("a Zipf GET did not return a %d-byte value" % VALUE_BYTES)


class Stats:
    """Samples `emp stats PID --json` once a second in the background."""

    def __init__(self, emp, pid):
        self.emp, self.pid, self.last, self.stop = emp, pid, None, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def sample(self):
        try:
            out = subprocess.run([self.emp, "stats", str(self.pid), "--json"], capture_output=True, timeout=10)
            reply = json.loads(out.stdout) if out.returncode == 0 else None
            if reply and reply.get("ok"):
                self.last = reply["stats"]
        except (subprocess.TimeoutExpired, ValueError):
            pass
        return self.last

    def _loop(self):
        while not self.stop.wait(1.0):
            self.sample()

    def ticker(self):
        s = self.last
        if not s:
            return ""
        return " [local %d/%d MiB]" % (s["resident_bytes"] // MIB, s["budget_bytes"] // MIB)

    def close(self):
        self.stop.set()
        self.thread.join()
        return self.sample()


def phase(name, total, batches, stats, result):
    """Runs the (count, action) batches, printing a tick every 10 %; records the seconds taken
    (and under EMP the fetches from the second tier) in `result`."""
    say("  %-7s" % name)
    before = stats and stats.sample()
    done, next_tick, start = 0, 10, time.monotonic()
    for count, action in batches:
        action()
        done += count
        while done * 100 >= next_tick * total and next_tick <= 100:
            say(" %d%%%s" % (next_tick, stats.ticker() if stats and next_tick % 50 == 0 else ""))
            next_tick += 10
    seconds = result[name + "_s"] = time.monotonic() - start
    say("  %.1f s, %s/s" % (seconds, rate(total / seconds)))
    after = stats and stats.sample()
    if before and after:
        fetches = result[name + "_fetches"] = after["faults_fetch"] - before["faults_fetch"]
        say(", %d fetches" % fetches)
    say("\n")


def rate(per_second):
    return "%.0fk" % (per_second / 1000) if per_second >= 10000 else "%.1fk" % (per_second / 1000)


def zipf_requests(keys, gets):
    """The same Zipf(0.99) key sequence in every run, hot keys scattered over the key space."""
    rng = random.Random(6)
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** ZIPF_S for rank in range(keys)))
    ranks = rng.choices(range(keys), cum_weights=cumulative, k=gets)
    stride = 2654435761 % keys
    while math.gcd(stride, keys) != 1:
        stride += 1
    return [b"".join(command(b"GET", key(r * stride % keys)) for r in ranks[i:i + BATCH])
            for i in range(0, gets, BATCH)]


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run(args):
    out_path, opts, cmd = args[0], {}, []
    rest = args[1:]
    while rest:
        if rest[0] == "--":
            cmd = rest[1:]
            break
        opts[rest[0][2:]] = rest[1]
        rest = rest[2:]
    keys, gets, sock_path = int(opts["keys"]), int(opts["gets"]), opts["socket"]
    requests = zipf_requests(keys, gets)  # before redis starts: not part of any timing
    redis_args = ["--port", "0", "--unixsocket", sock_path, "--save", "", "--appendonly", "no",
                  "--daemonize", "no", "--loglevel", "warning", "--pidfile", opts["log"] + ".pid"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    with open(opts["log"], "w") as log:
        server = subprocess.Popen(cmd + redis_args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stats = None
    try:
        conn = Redis(sock_path, server)
        result = {"version": info_field(conn, b"server", "redis_version"), "keys": keys, "gets": gets, "emp": None}
        if opts.get("emp"):
            stats = Stats(opts["emp"], server.pid)

        def key_batches(action):  # (count, step) for every BATCH keys in order
            return ((min(keys, s + BATCH) - s, lambda s=s: action(s, min(keys, s + BATCH)))
                    for s in range(0, keys, BATCH))

        def load(start, stop):
            conn.sock.sendall(b"".join(command(b"SET", key(i), value(i)) for i in range(start, stop)))
            for _ in range(start, stop):
                conn.reply()

        def zipf(batch):
            conn.sock.sendall(batch)
            conn.skip_values(batch.count(b"GET"))

        digest, wrong = hashlib.sha256(), []

        def verify(start, stop):
            conn.sock.sendall(b"".join(command(b"GET", key(i)) for i in range(start, stop)))
            for i in range(start, stop):
                got = conn.reply()
                digest.update(got or b"(nil)")
                if got != value(i):
                    wrong.append(i)

        phase("load", keys, key_batches(load), stats, result)
        phase("zipf", gets, ((r.count(b"GET"), lambda r=r: zipf(r)) for r in requests), stats, result)
        phase("verify", keys, key_batches(verify), stats, result)
        result.update(wrong=len(wrong), first_wrong=wrong[:5], sha256=digest.hexdigest(),
                      used_memory=int(info_field(conn, b"memory", "used_memory")), peak_rss=peak_rss(server.pid))
        if stats:
            result["emp"] = stats.close()
            stats = None
        conn.sock.sendall(command(b"SHUTDOWN", b"NOSAVE"))
        server.wait(30)
        result["wall_s"] = time.monotonic() - started
    except BaseException:
        if server.poll() is not None:
            code = server.returncode
            say("%sredis-server ended unexpectedly (%s)\n" % ("\n" if line_open else "",
                "killed by signal %d" % -code if code < 0 else "status %d" % code))
        raise
    finally:
        if stats:
            stats.stop.set()
        if server.poll() is None:  # an error or Ctrl-C: its data is of no further use
            server.kill()
            server.wait()
    with open(out_path, "w") as out:
        json.dump(result, out)


def info_field(conn, section, field):
    conn.sock.sendall(command(b"INFO", section))
    for line in conn.reply().decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    return "?"


def size(n):
    return "%.1f GiB" % (n / (1 << 30)) if n >= 1 << 30 else "%d MiB" % round(n / MIB)


def summary(args):
    local, emp = (json.load(open(path)) for path in args[:2])
    tier, s = args[2], emp["emp"]

    def row(*cells):
        print(("  %-20s %-18s %-22s %s" % cells).rstrip())

    print("demo: results - redis %s, %d values of %d bytes (%s of data in redis)"
          % (local["version"], local["keys"], VALUE_BYTES, size(local["used_memory"])))
    row("", "all-local", "EMP, %s local" % (size(s["budget_bytes"]) if s else "?"), "EMP/all-local")
    for name, what, count in (("load", "SETs", "keys"), ("zipf", "GETs", "gets"), ("verify", "GETs", "keys")):
        cells = ["%5.1f s %6s/s" % (r[name + "_s"], rate(r[count] / r[name + "_s"])) for r in (local, emp)]
        fetches = emp.get(name + "_fetches")
        row("%-6s %8d %s" % (name, local[count], what), cells[0], cells[1],
            "%.2fx throughput" % (local[name + "_s"] / emp[name + "_s"])
            + ("  (%.2f fetches per %s)" % (fetches / emp[count], what[:-1]) if fetches is not None else ""))
    row("whole run (wall)", "%5.1f s" % local["wall_s"], "%5.1f s" % emp["wall_s"],
        "%.2fx the time" % (emp["wall_s"] / local["wall_s"]))
    row("peak RSS", size(local["peak_rss"]), size(emp["peak_rss"]), "")
    if s:
        print("  EMP: local DRAM peak %s of a %s budget (EMP-managed pages; RSS adds EMP's own and redis's"
              " unmanaged memory)" % (size(s["peak_resident_bytes"]), size(s["budget_bytes"])))
        print("       %d faults (zero %d, fetch %d), %d evictions (clean %d, dirty %d)"
              % (s["faults"], s["faults_zero"], s["faults_fetch"], s["evictions_clean"] + s["evictions_dirty"],
                 s["evictions_clean"], s["evictions_dirty"]))
        print("       second tier %s: %s read, %s written; fetch p50 %.0f us, p99 %.0f us"
              % (tier, size(s["bytes_read"]), size(s["bytes_written"]), s["fetch_p50_us"], s["fetch_p99_us"]))
    else:
        print("  EMP: no statistics (emp stats PID --json never answered)")
    failures = ["%s run: %d of %d values wrong (first: %s)" % (name, r["wrong"], r["keys"],
                                                             ", ".join("key:%d" % i for i in r["first_wrong"]))
                for name, r in (("all-local", local), ("EMP", emp)) if r["wrong"]]
    if not failures and local["sha256"] != emp["sha256"]:
        failures.append("the runs read back different data (sha256 %s vs %s)" % (local["sha256"], emp["sha256"]))
    if failures:
        for line in failures:
            print("demo: FAILED: " + line)
        return 1
    print("  verified: all %d values correct in both runs; sha256 of every value read back %s... in both"
          % (local["keys"], local["sha256"][:16]))
    return 0


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "run":
        run(sys.argv[2:])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "summary":
        return summary(sys.argv[2:])
    sys.exit(__doc__)


if __name__ == "__main__":
    try:
        status = main()
    except SystemExit as stop:
        status = stop.code
    except KeyboardInterrupt:
        status = 130
    except TimeoutError:
        status = "redis did not answer for %d s" % TIMEOUT_S
    except OSError as error:
        status = "redis connection: %s" % error
    if line_open:
        say("\n")
    sys.exit(status)
