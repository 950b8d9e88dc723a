#!/usr/bin/python3
"""Cost of idle inbound connections, and how long a slow-loris client lasts.
Measurements printed on demand, never asserted (not in CI).

1. N idle connections (default 1000) from 127.0.0.2..127.0.0.101 to one relay25
   (max_connections / max_connections_per_ip raised above N): after every 220
   greeting arrived, relay25's VmRSS (/proc/PID/status) is compared with the
   value before the first connection -> per-connection cost in KiB. RSS is read
   again once all connections are closed. With --tls M, the same for M
   connections to an implicit-TLS listener (tls_listen), each with its TLS
   handshake done and its greeting read.
2. A slow-loris client on a fresh relay25 with idle_timeout = 5 and
   session_timeout = 10: it sends "EHLO x\\r\\n" and then "NOOP\\r\\n" lines one
   byte per second and never stops; the time from connect to the relay closing
   the connection is printed (or that it was still open at --loris-limit).

    /usr/bin/python3 bench/idle.py [--connections N] [--bin build/relay25]
                                   [--tls M] [--loris-limit SECONDS]
"""
import argparse
import os
import resource
import re
import select
import socket
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import certs  # noqa: E402
from relaytest import Relay, render_ini  # noqa: E402

ADDRESSES = 100          # 127.0.0.2 .. 127.0.0.101


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for li in f:
            if li.startswith(key + ":"):
                return int(li.split()[1])
    return 0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_relay(binary, tmp, pki, name, **relay_keys):
    keys = {"listen": "127.0.0.1:0", "allow": "127.0.0.0/8", "hostname": "bench.test",
            "log_level": "info"}
    keys.update({k: str(v) for k, v in relay_keys.items()})
    cfg = os.path.join(tmp, name + ".ini")
    with open(cfg, "w") as f:
        f.write(render_ini([
            ("relay", keys),
            # never contacted: idle clients send no MAIL
            ("upstream main", {"host": "127.0.0.1", "port": 9, "tls": "starttls",
                               "ca_file": pki.ca_file, "server_name": "localhost"}),
            ("device default", {"user": "bench@example.com", "password": "bench-pass"}),
        ]))
    return Relay(cfg, binary=binary, name=name).start()


def read_greetings(socks, timeout):
    """Wait for the first line from every socket; returns {code: count}."""
    pending = {s.fileno(): [s, b""] for s in socks}
    codes = {}
    deadline = time.monotonic() + timeout
    poll = select.poll()   # not select(): 10,000 sockets go far beyond FD_SETSIZE
    for fd in pending:
        poll.register(fd, select.POLLIN)
    while pending and time.monotonic() < deadline:
        for fd, _ev in poll.poll(500):
            poll.unregister(fd)
            s, buf = pending[fd]
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            buf += chunk
            if b"\r\n" in buf or not chunk:
                code = buf[:3].decode(errors="replace") if buf else "closed"
                codes[code] = codes.get(code, 0) + 1
                del pending[fd]
            else:
                pending[fd][1] = buf
    if pending:
        codes["no reply"] = len(pending)
    return codes


def idle_cost(binary, tmp, pki, n, tls=False):
    extra = {}
    if tls:
        extra = {"tls_listen": "127.0.0.1:0", "tls_cert_file": pki.cert_file,
                 "tls_key_file": pki.key_file}
    relay = start_relay(binary, tmp, pki, "idle-tls" if tls else "idle",
                        max_connections=n + 100, max_connections_per_ip=n + 100,
                        idle_timeout=3600, session_timeout=7200, **extra)
    try:
        pid = relay.proc.pid
        host, port = relay.host, relay.port
        if tls:
            m = relay.wait_log(re.compile(r"\bprx event=listening addr=(\S+) tls=implicit"), 10)
            host, port = m.group(1).rsplit(":", 1)
            port = int(port)
            ctx = ssl.create_default_context(cafile=pki.ca_file)
        time.sleep(0.2)
        before = status(pid, "VmRSS")
        socks = []
        t0 = time.monotonic()
        for i in range(n):
            src = "127.0.0.%d" % (2 + i % ADDRESSES)
            s = socket.create_connection((host, port), 30, source_address=(src, 0))
            if tls:   # handshake done here; the greeting follows it
                s = ctx.wrap_socket(s, server_hostname="localhost")
            socks.append(s)
        codes = read_greetings(socks, 60)
        took = time.monotonic() - t0
        time.sleep(0.2)
        held = status(pid, "VmRSS")
        hwm = status(pid, "VmHWM")
        for s in socks:
            s.close()
        relay.wait_lines(r"\bevent=disconnect\b", n, timeout=60)
        time.sleep(0.5)
        after = status(pid, "VmRSS")
        return {"before": before, "held": held, "hwm": hwm, "after": after, "codes": codes,
                "took": took}
    finally:
        relay.stop()


def slow_loris(binary, tmp, pki, limit):
    relay = start_relay(binary, tmp, pki, "loris", idle_timeout=5, session_timeout=10)
    try:
        s = socket.create_connection((relay.host, relay.port), 30,
                                     source_address=("127.0.0.2", 0))
        t0 = time.monotonic()
        data = b"EHLO x\r\n" + b"NOOP\r\n" * 1000
        got, sent, closed_at = b"", 0, None
        while time.monotonic() - t0 < limit:
            r, _, _ = select.select([s], [], [], 0)
            if r:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    closed_at = time.monotonic() - t0
                    break
                got += chunk
                continue
            try:
                s.sendall(data[sent:sent + 1])
                sent += 1
            except OSError:
                closed_at = time.monotonic() - t0
                break
            time.sleep(1.0)
        s.close()
        lines = [li.decode(errors="replace") for li in got.split(b"\r\n") if li[3:4] == b" "]
        return {"closed_at": closed_at, "sent": sent, "last": lines[-1] if lines else "-",
                "replies": len(lines)}
    finally:
        relay.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "relay25"))
    ap.add_argument("--tls", type=int, default=0, metavar="M",
                    help="also M idle connections with implicit TLS")
    ap.add_argument("--loris-limit", type=float, default=40.0,
                    help="give up on the slow-loris client after this many seconds")
    a = ap.parse_args()
    nofile = raise_nofile(2 * a.connections + 256)
    if nofile < a.connections + 64:
        sys.exit("RLIMIT_NOFILE is %d: too low for %d connections" % (nofile, a.connections))
    with tempfile.TemporaryDirectory() as tmp:
        pki = certs.make_pki(tmp)
        r = idle_cost(a.bin, tmp, pki, a.connections)
        print("idle connections (%d from %d addresses, RLIMIT_NOFILE %d)"
              % (a.connections, min(ADDRESSES, a.connections), nofile))
        print("  %-28s %s" % ("greetings", ", ".join("%s x%d" % kv
                                                       for kv in sorted(r["codes"].items()))))
        print("  %-28s %8.2f s" % ("connect + greet all", r["took"]))
        print("  %-28s %8d KiB" % ("RSS before", r["before"]))
        print("  %-28s %8d KiB" % ("RSS with all idle", r["held"]))
        print("  %-28s %8d KiB" % ("peak RSS (VmHWM)", r["hwm"]))
        print("  %-28s %8.2f KiB" % ("per connection",
                                     (r["held"] - r["before"]) / float(a.connections)))
        print("  %-28s %8d KiB" % ("RSS after all closed", r["after"]))
        if a.tls:
            r = idle_cost(a.bin, tmp, pki, a.tls, tls=True)
            print("idle implicit-TLS connections (%d, handshake done)" % a.tls)
            print("  %-28s %s" % ("greetings", ", ".join("%s x%d" % kv
                                                           for kv in sorted(r["codes"].items()))))
            print("  %-28s %8d KiB" % ("RSS before", r["before"]))
            print("  %-28s %8d KiB" % ("RSS with all idle", r["held"]))
            print("  %-28s %8.2f KiB" % ("per connection",
                                         (r["held"] - r["before"]) / float(a.tls)))
        lr = slow_loris(a.bin, tmp, pki, a.loris_limit)
        print("slow loris (1 byte/s, idle_timeout 5 s, session_timeout 10 s)")
        if lr["closed_at"] is None:
            print("  %-28s %s" % ("closed by relay25", "NO: still open after %.0f s"
                                  % a.loris_limit))
        else:
            print("  %-28s %8.1f s after connect" % ("closed by relay25", lr["closed_at"]))
        print("  %-28s %8d" % ("bytes sent", lr["sent"]))
        print("  %-28s %8d" % ("replies received", lr["replies"]))
        print("  %-28s %s" % ("last reply", lr["last"]))


if __name__ == "__main__":
    main()
