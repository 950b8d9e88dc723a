#!/usr/bin/python3
"""Spool-mode throughput next to passthrough, on demand (never in CI).

One run, one upstream: the test peer (tests/integration/peer.py, aiosmtpd,
STARTTLS + AUTH PLAIN, certificates from certs.py) on 127.0.0.1. For each mode a
fresh relay25 (own config, own spool_dir under a temp dir on the same filesystem
as --tmp) is started; CLIENTS threads send COUNT messages of SIZE octets in total,
one plain SMTP connection per message (as devices do). Modes:

  passthrough   mode = passthrough (the client's 250 is the upstream's)
  spool         mode = spool, [upstream] max_connections default (4)
  spool-mc10    mode = spool, [upstream] max_connections = CLIENTS

Per mode and round:
  accept msg/s    COUNT / time until the last client got its 250
  deliver msg/s   COUNT / time until the peer had all COUNT messages (the figure
                  to compare: "until the upstream has them all")
  cpu/1k          relay25 CPU seconds (utime+stime, /proc/PID/stat) per 1000 messages,
                  from start of load to the last delivery
  up-conns        connections the peer saw in the round
Rounds alternate the mode order; the table lists every round and the median.

    /usr/bin/python3 bench/spool.py [--bin build/relay25] [--count 500]
        [--clients 10] [--size 2048] [--rounds 2] [--modes passthrough,spool,spool-mc10]
        [--pipelining]
"""
import argparse
import os
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import certs  # noqa: E402
from peer import Peer  # noqa: E402
from relaytest import Relay, render_ini  # noqa: E402

LOGIN = "bench@example.com"
PASSWORD = "bench-pass-9fz"
CLK = os.sysconf("SC_CLK_TCK")
MODES = {
    "passthrough": ({"mode": "passthrough"}, {}),
    "spool": ({"mode": "spool"}, {}),
    "spool-mc10": ({"mode": "spool"}, {"max_connections": None}),   # = clients
}


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime, stime


def message(i, size):
    """A message of exactly `size` octets (CRLF lines of at most 78)."""
    head = ("From: bench <sender@example.org>\r\nTo: sink@example.net\r\n"
            "Subject: bench %d\r\nMessage-ID: <bench-%d@client.test>\r\n\r\n" % (i, i)).encode()
    need = size - len(head)
    body = (b"x" * 76 + b"\r\n") * (need // 78)
    rest = need - len(body)
    if rest >= 3:
        body += b"y" * (rest - 2) + b"\r\n"
    elif rest:
        body = body[:-78] + b"x" * (76 + rest) + b"\r\n" if body else b"\r\n"
    return head + body


def run_mode(args, tmp, pki, peer, mode, rnd):
    relay_keys, up_keys = MODES[mode]
    d = tempfile.mkdtemp(prefix="%s-%d-" % (mode, rnd), dir=tmp)
    up = {"host": "127.0.0.1", "port": peer.port, "tls": "starttls",
          "ca_file": pki.ca_file, "server_name": "localhost"}
    for k, v in up_keys.items():
        up[k] = v if v is not None else args.clients
    rel = {"listen": "127.0.0.1:0", "allow": "127.0.0.0/8", "hostname": "relay.bench",
           "log_level": "info", "spool_dir": os.path.join(d, "spool"),
           "retry_min": "1s", "retry_max": "2s", "max_connections": 1000,
           "max_connections_per_ip": 1000}
    rel.update(relay_keys)
    cfg = os.path.join(d, "relay25.ini")
    with open(cfg, "w") as f:
        f.write(render_ini([("relay", rel), ("upstream main", up),
                            ("device default", {"user": LOGIN, "password": PASSWORD})]))
    relay = Relay(cfg, binary=args.bin, name=mode)
    relay.start()
    msgs = [message(i, args.size) for i in range(args.count)]
    peer.reset()
    errors = []
    acked = [0]
    lock = threading.Lock()

    def client(c):
        for i in range(c, args.count, args.clients):
            try:
                with smtplib.SMTP(relay.host, relay.port, local_hostname="bench.client",
                                  timeout=120) as s:
                    s.sendmail("sender@example.org", ["sink@example.net"], msgs[i])
                    s.quit()
                with lock:
                    acked[0] += 1
            except (OSError, smtplib.SMTPException) as e:
                errors.append("%d: %r" % (i, e))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    cpu0 = cpu_ticks(relay.proc.pid)
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_accept = time.monotonic() - t0
    got = peer.wait_messages(args.count, timeout=600)
    t_deliver = time.monotonic() - t0
    cpu = (cpu_ticks(relay.proc.pid) - cpu0) / CLK
    n = len([m for m in got if m.accepted])
    conns = len(peer.connections())
    rc = relay.stop()
    if rc != 0:
        log("%s: exit status %s; log tail:\n%s" % (mode, rc, relay.tail()))
    if errors or n != args.count:
        log("%s: %d client errors (first: %s), %d/%d delivered" % (
            mode, len(errors), errors[:3], n, args.count))
    shutil.rmtree(d, ignore_errors=True)
    return {"mode": mode, "round": rnd, "accept": args.count / t_accept,
            "deliver": args.count / t_deliver, "cpu1k": cpu * 1000.0 / args.count,
            "conns": conns, "ok": not errors and n == args.count}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("RELAY25_BIN")
                    or os.path.join(REPO, "build", "relay25"))
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="passthrough,spool,spool-mc10")
    ap.add_argument("--tmp", default=None, help="where spool directories go (default $TMPDIR)")
    ap.add_argument("--pipelining", action="store_true",
                    help="the peer offers PIPELINING: spool deliveries send the envelope in one write")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error("unknown mode %s" % m)
    tmp = tempfile.mkdtemp(prefix="relay25-bench-spool-", dir=args.tmp)
    try:
        pki = certs.make_pki(os.path.join(tmp, "pki"), "bench")
        peer = Peer(tls="starttls", cert=pki.cert_file, key=pki.key_file,
                    users={LOGIN: PASSWORD}, pipelining=args.pipelining).start()
        results = []
        try:
            for rnd in range(args.rounds):
                order = modes if rnd % 2 == 0 else list(reversed(modes))
                for mode in order:
                    log("round %d: %s, %d messages of %d octets, %d clients" % (
                        rnd + 1, mode, args.count, args.size, args.clients))
                    results.append(run_mode(args, tmp, pki, peer, mode, rnd + 1))
        finally:
            peer.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("relay25 %s; %d messages x %d octets, %d clients, one connection per message; "
          "upstream: aiosmtpd peer (STARTTLS + AUTH) on loopback; %d CPUs"
          % (args.bin, args.count, args.size, args.clients, os.cpu_count()))
    print("%-12s %5s %12s %13s %8s %9s %s" % ("mode", "round", "accept msg/s", "deliver msg/s",
                                             "cpu/1k", "up-conns", ""))
    for r in results:
        print("%-12s %5d %12.1f %13.1f %8.2f %9d %s" % (
            r["mode"], r["round"], r["accept"], r["deliver"], r["cpu1k"], r["conns"],
            "" if r["ok"] else "ERRORS"))
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode]
        print("%-12s %5s %12.1f %13.1f %8.2f %9d" % (
            mode, "med", statistics.median(r["accept"] for r in rs),
            statistics.median(r["deliver"] for r in rs),
            statistics.median(r["cpu1k"] for r in rs),
            int(statistics.median(r["conns"] for r in rs))))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
