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

--alt-bin NAME=PATH runs another binary (e.g. main built in a separate build
directory) through the same modes in the same rounds, rows named MODE@NAME:
before and after side by side on the same loaded machine.

--strace attaches `strace -f -c` to relay25 for each run (timings are then
meaningless) and prints deterministic counts per message instead: fsync and
friends, renames, opens, writes, all syscalls, and the spool's own counters
(event=commit_stats: commit batches, thread-pool jobs) when the binary logs them.

    /usr/bin/python3 bench/spool.py [--bin build/relay25] [--count 500]
        [--clients 10] [--size 2048] [--rounds 2] [--modes passthrough,spool,spool-mc10]
        [--pipelining] [--alt-bin NAME=PATH] [--strace]
"""
import argparse
import os
import re
import signal
import subprocess
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


STRACE_KEYS = ("fsync", "fdatasync", "sync_file_range", "rename", "openat", "close", "write",
               "writev", "read", "futex")


def pss_kb(pid):
    """Proportional set size (/proc/PID/smaps_rollup), kB; 0 when unreadable."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def strace_counts(path):
    """strace -c's table: {syscall: calls}, and "total"."""
    counts = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 5 and p[-1] != "syscall" and p[3].isdigit():
                counts[p[-1]] = int(p[3])
            elif len(p) >= 4 and p[-1] == "total" and p[2].isdigit():
                counts["total"] = int(p[2])
    return counts


def run_mode(args, tmp, pki, peer, mode, rnd, binary=None, label=None):
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
    relay = Relay(cfg, binary=binary or args.bin, name=mode)
    relay.start()
    tracer = None
    if args.strace:
        trace_out = os.path.join(d, "strace.txt")
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", trace_out,
                                   "-p", str(relay.proc.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)   # attached to every thread
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
    peak = [0]
    sampling = threading.Event()

    def sampler():
        while not sampling.is_set():
            peak[0] = max(peak[0], pss_kb(relay.proc.pid))
            sampling.wait(0.05)

    st = threading.Thread(target=sampler)
    st.start()
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
    sampling.set()
    st.join()
    n = len([m for m in got if m.accepted])
    conns = len(peer.connections())
    counts = {}
    if tracer:
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
        counts = strace_counts(trace_out)
    rc = relay.stop()
    st = relay.grep(r"event=commit_stats")
    if st:
        for k, v in re.findall(r"(\w+)=(\d+)", st[-1]):
            counts["spool." + k] = int(v)
    if rc != 0:
        log("%s: exit status %s; log tail:\n%s" % (mode, rc, relay.tail()))
    if errors or n != args.count:
        log("%s: %d client errors (first: %s), %d/%d delivered" % (
            mode, len(errors), errors[:3], n, args.count))
    shutil.rmtree(d, ignore_errors=True)
    return {"mode": mode + ("@" + label if label else ""), "round": rnd,
            "counts": counts, "accept": args.count / t_accept,
            "deliver": args.count / t_deliver, "cpu1k": cpu * 1000.0 / args.count,
            "conns": conns, "pss": peak[0] / 1024.0, "ok": not errors and n == args.count}


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
    ap.add_argument("--alt-bin", action="append", default=[], metavar="NAME=PATH",
                    help="another relay25 binary through the same modes and rounds")
    ap.add_argument("--strace", action="store_true",
                    help="count syscalls per message with strace -f -c (timings meaningless)")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error("unknown mode %s" % m)
    runs = [(m, None, None) for m in modes]
    for a in args.alt_bin:
        name, _, path = a.partition("=")
        if not name or not path:
            ap.error("--alt-bin NAME=PATH")
        runs += [(m, path, name) for m in modes]
    tmp = tempfile.mkdtemp(prefix="relay25-bench-spool-", dir=args.tmp)
    try:
        pki = certs.make_pki(os.path.join(tmp, "pki"), "bench")
        peer = Peer(tls="starttls", cert=pki.cert_file, key=pki.key_file,
                    users={LOGIN: PASSWORD}, pipelining=args.pipelining).start()
        results = []
        try:
            for rnd in range(args.rounds):
                order = runs if rnd % 2 == 0 else list(reversed(runs))
                for mode, binary, label in order:
                    log("round %d: %s%s, %d messages of %d octets, %d clients" % (
                        rnd + 1, mode, "@" + label if label else "", args.count, args.size,
                        args.clients))
                    results.append(run_mode(args, tmp, pki, peer, mode, rnd + 1, binary, label))
        finally:
            peer.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("relay25 %s; %d messages x %d octets, %d clients, one connection per message; "
          "upstream: aiosmtpd peer (STARTTLS + AUTH) on loopback; %d CPUs"
          % (args.bin, args.count, args.size, args.clients, os.cpu_count()))
    print("%-16s %5s %12s %13s %8s %9s %8s %s" % ("mode", "round", "accept msg/s",
                                                  "deliver msg/s", "cpu/1k", "up-conns",
                                                  "pss MB", ""))
    for r in results:
        print("%-16s %5d %12.1f %13.1f %8.2f %9d %8.1f %s" % (
            r["mode"], r["round"], r["accept"], r["deliver"], r["cpu1k"], r["conns"], r["pss"],
            "" if r["ok"] else "ERRORS"))
    names = [m + ("@" + label if label else "") for m, _, label in runs]
    for mode in names:
        rs = [r for r in results if r["mode"] == mode]
        print("%-16s %5s %12.1f %13.1f %8.2f %9d %8.1f" % (
            mode, "med", statistics.median(r["accept"] for r in rs),
            statistics.median(r["deliver"] for r in rs),
            statistics.median(r["cpu1k"] for r in rs),
            int(statistics.median(r["conns"] for r in rs)),
            statistics.median(r["pss"] for r in rs)))
    if any(r["counts"] for r in results):
        keys = [k for k in STRACE_KEYS + ("total",) if any(k in r["counts"] for r in results)]
        keys += sorted({k for r in results for k in r["counts"] if k.startswith("spool.")})
        print("\nper message (all of relay25: submission and delivery):")
        print("%-16s %5s " % ("mode", "round") + " ".join("%9s" % k.replace("spool.", "")
                                                          [:9] for k in keys))
        for r in results:
            print("%-16s %5d " % (r["mode"], r["round"]) + " ".join(
                "%9.2f" % (r["counts"].get(k, 0) / (1 if k == "spool.largest_batch" else args.count))
                for k in keys))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
