#!/usr/bin/python3
"""Peak memory of relay25 relaying one message of each size, on demand (not in CI).

For each size a fresh relay25 (log_level=info) relays one message through the
aiosmtpd test upstream (STARTTLS + AUTH, throwaway CA); the peak RSS (VmHWM from
/proc/PID/status) is read after the upstream has the message. Memory must not
grow with message size: the body is streamed in fixed buffers.

    /usr/bin/python3 bench/memory.py [--bin build/relay25] [SIZE ...]   (default 1K 20M)
"""
import argparse
import os
import smtplib
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import certs  # noqa: E402
from peer import Peer  # noqa: E402
from relaytest import Relay, render_ini  # noqa: E402


def parse_size(s):
    mult = {"K": 1024, "M": 1024 * 1024}.get(s[-1].upper(), 1)
    return int(s[:-1] if s[-1].upper() in "KM" else s) * mult


def message(size):
    head = b"From: bench@example.com\r\nTo: sink@example.org\r\nSubject: bench\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return head + body[: size - len(head)]


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for li in f:
            if li.startswith(key + ":"):
                return int(li.split()[1])
    return 0


def run(binary, size, pki, tmp):
    peer = Peer(tls="starttls", cert=pki.cert_file, key=pki.key_file,
                users={"bench@example.com": "bench-pass"})
    peer.start()
    cfg = os.path.join(tmp, "bench-%d.ini" % size)
    with open(cfg, "w") as f:
        f.write(render_ini([
            ("relay", {"listen": "127.0.0.1:0", "allow": "127.0.0.0/8", "hostname": "bench.test",
                       "max_message_size": "64M", "log_level": "info"}),
            ("upstream main", {"host": "127.0.0.1", "port": peer.port, "tls": "starttls",
                               "ca_file": pki.ca_file, "server_name": "localhost"}),
            ("device default", {"user": "bench@example.com", "password": "bench-pass"}),
        ]))
    relay = Relay(cfg, binary=binary).start()
    try:
        idle = status(relay.proc.pid, "VmRSS")
        msg = message(size)
        with smtplib.SMTP(relay.host, relay.port, timeout=300) as s:
            s.sendmail("bench@example.com", ["sink@example.org"], msg)
            s.quit()
        for _ in range(100):
            if peer.messages():
                break
            time.sleep(0.05)
        got = peer.messages()
        assert got and len(got[0].content) >= size, "message did not arrive whole"
        return idle, status(relay.proc.pid, "VmHWM")
    finally:
        relay.stop()
        peer.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "relay25"))
    ap.add_argument("sizes", nargs="*", default=["1K", "20M"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = certs.make_pki(tmp)
        print("%-10s %12s %14s" % ("message", "idle RSS KiB", "peak RSS KiB"))
        for s in a.sizes:
            idle, peak = run(a.bin, parse_size(s), pki, tmp)
            print("%-10s %12d %14d" % (s, idle, peak))


if __name__ == "__main__":
    main()
