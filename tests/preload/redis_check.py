#!/usr/bin/env python3
"""Loads a redis server with deterministic 1000-byte values, or reads every one back.

    redis_check.py load PORT KEYS     pipelined SETs of key:<i> -> value(i)
    redis_check.py check PORT KEYS    pipelined GETs, every value compared
Plain sockets and RESP, so it needs nothing beyond python3.
"""
import hashlib
import socket
import sys

VALUE_BYTES = 1000
BATCH = 2000


def value(i):
    seed = hashlib.sha256(str(i).encode()).hexdigest().encode()
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES]


def command(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        p = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("redis closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind = line[:1]
        if kind in (b"+", b":"):
            return line[1:]
        if kind == b"-":
            raise SystemExit("redis error: " + line.decode())
        if kind == b"$":
            n = int(line[1:])
            return None if n < 0 else self.exact(n)
        raise SystemExit("unexpected reply " + repr(line))


def main():
    mode, port, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection(("127.0.0.1", port))
    reader = Reader(sock)
    bad = 0
    for start in range(0, keys, BATCH):
        stop = min(keys, start + BATCH)
        if mode == "load":
            sock.sendall(b"".join(command("SET", "key:%d" % i, value(i)) for i in range(start, stop)))
        else:
            sock.sendall(b"".join(command("GET", "key:%d" % i) for i in range(start, stop)))
        for i in range(start, stop):
            got = reader.reply()
            if mode == "check" and got != value(i):
                bad += 1
                if bad <= 5:
                    print("key:%d has a wrong value" % i, file=sys.stderr)
    if mode == "load":
        print("loaded %d values" % keys)
    elif bad:
        raise SystemExit("%d of %d values are wrong" % (bad, keys))
    else:
        print("checked %d values" % keys)


if __name__ == "__main__":
    main()
