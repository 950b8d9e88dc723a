#!/usr/bin/python3
"""Inbound AUTH guessing (issue 15, item 3): failures counted per client address,
a lockout (454 4.7.0) after auth_fail_limit that also holds for new connections
from that address and across SIGHUP while other addresses authenticate, a right
password below the limit still accepted, and password checks in a bounded budget
so spool-mode messages from another address go on while many connections guess."""

import base64
import os
import re
import signal
import socket
import subprocess
import threading
import time

from relaytest import (CLIENT_NAME, RELAY25_BIN, RawClient, RelayTestCase, main, make_message,
                       parse_hostport)

GUESSER = "127.0.0.4"
OTHER = "127.0.0.5"
LOCKED = "454 4.7.0 Too many authentication failures, try again later"
BUSY = "454 4.7.0 Too many authentication attempts in progress, try again later"


def plain(login, password):
    return base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()


class AuthLockoutTest(RelayTestCase):
    ALLOW = RelayTestCase.ALLOW + ", %s/32, %s/32" % (GUESSER, OTHER)

    def setup_relay(self, extra=None, spool=False):
        """Relay with inbound logins alice and bob (AUTH in clear for loopback,
        allow_plaintext_auth), devices from default_devices()."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        self.logins = {"alice": self.new_password("alice", "in"),
                       "bob": self.new_password("bob", "in")}
        path = os.path.join(self.dir, "users")
        with open(path, "w") as f:
            for login, pw in self.logins.items():
                f.write(self.passwd(login, pw) + "\n")
        rel = {"users_file": path, "allow_plaintext_auth": "yes",
               "metrics_listen": "127.0.0.1:0"}
        if spool:
            rel.update({"mode": "spool", "spool_dir": os.path.join(self.dir, "spool"),
                        "retry_min": "1s", "retry_max": "2s"})
        rel.update(extra or {})
        relay = self.start_relay({"main": self.upstream(peer)}, devices, rel)
        relay.wait_lines(r"event=started", timeout=10)
        return peer, relay

    def passwd(self, login, password):
        r = subprocess.run([RELAY25_BIN, "passwd", login], input=(password + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode().strip()

    def client(self, relay, source):
        c = RawClient(relay.host, relay.port, source=source, timeout=60)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO " + CLIENT_NAME)[0], 250)
        return c

    def auth(self, c, login, password):
        code, lines = c.cmd("AUTH PLAIN " + plain(login, password))
        return code, "%d %s" % (code, lines[-1])

    def scrape(self, relay):
        addr = parse_hostport(relay.wait_log(r"\bmetrics event=listening\b.*?\baddr=(\S+)").group(1))
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        values = {}
        for line in data.partition(b"\r\n\r\n")[2].decode().splitlines():
            if line and not line.startswith("#"):
                name, _, v = line.rpartition(" ")
                values[name] = float(v)
        return values

    # --------------------------------------------------------------------------------

    def test_guesser_locked_out_other_address_fine(self):
        peer, relay = self.setup_relay({"auth_fail_limit": "4", "auth_fail_delay": "1s"})
        wrong = self.new_password("alice", "wrong")
        g = self.client(relay, GUESSER)
        t0 = time.monotonic()
        for i in range(4):
            self.assertEqual(self.auth(g, "alice", wrong)[0], 535, "guess %d" % (i + 1))
        held = time.monotonic() - t0
        # the limit is reached: AUTH is refused before any check, also a right password
        self.assertEqual(self.auth(g, "alice", wrong)[1], LOCKED)
        self.assertEqual(self.auth(g, "alice", self.logins["alice"])[1], LOCKED)
        code, lines = g.cmd("AUTH LOGIN")
        self.assertEqual("%d %s" % (code, lines[-1]), LOCKED)
        self.assertEqual(g.cmd("NOOP")[0], 250)   # the session itself goes on
        relay.wait_log(r"prx event=auth_locked client=127\.0\.0\.4 failures=4 for=300s")
        self.assertEqual(len(relay.grep(r"event=auth_locked")), 1)
        # a new connection from the same address: still locked
        g2 = self.client(relay, GUESSER)
        self.assertEqual(self.auth(g2, "bob", self.logins["bob"])[1], LOCKED)
        # another address authenticates and sends
        o = self.client(relay, OTHER)
        self.assertEqual(self.auth(o, "bob", self.logins["bob"])[0], 235)
        self.assertEqual(o.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(o.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(o.cmd("DATA")[0], 354)
        o.send(make_message("other address") + b".\r\n")
        self.assertEqual(o.reply()[0], 250)
        self.assertEqual(o.cmd("QUIT")[0], 221)
        self.assertEqual(len(peer.messages()), 1)
        # the lockout survives a reload (per process, like the rate limits)
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"event=reload status=ok")
        g3 = self.client(relay, GUESSER)
        self.assertEqual(self.auth(g3, "alice", self.logins["alice"])[1], LOCKED)
        m = self.scrape(relay)
        self.assertEqual(m["relay25_auth_failures_total"], 4)
        self.assertEqual(m["relay25_auth_lockouts_total"], 1)
        relay.wait_lines(r"event=auth status=locked client=127\.0\.0\.4 for=\d+s", 5)
        print("\n  4 failure replies held %.1f s in all (delays 1+2+4+8 s)" % held)

    def test_lockout_stops_queued_guesses(self):
        """30 connections from one address send a wrong password at once: the
        checks run two at a time, and once the fourth failure locks the address
        the ones still waiting are not checked but answered 454."""
        n = 30
        peer, relay = self.setup_relay({"auth_fail_limit": "4", "auth_fail_delay": "0",
                                        "max_connections_per_ip": "40"})
        wrong = self.new_password("alice", "wrong")
        conns = [self.client(relay, GUESSER) for _ in range(n)]
        line = ("AUTH PLAIN " + plain("alice", wrong) + "\r\n").encode()
        for c in conns:
            c.send(line)
        replies = []
        for c in conns:
            code, lines = c.reply()
            replies.append("%d %s" % (code, lines[-1]))
        failed = sum(1 for r in replies if r.startswith("535 "))
        locked = sum(1 for r in replies if r == LOCKED)
        self.assertEqual(failed + locked, n, replies)
        # the fourth locks; at most the two checks already running finish after it
        self.assertGreaterEqual(failed, 4)
        self.assertLessEqual(failed, 6)
        m = self.scrape(relay)
        self.assertEqual(m["relay25_auth_failures_total"], failed)
        self.assertEqual(m["relay25_auth_lockouts_total"], 1)
        self.assertEqual(len(relay.grep(r"event=auth_locked")), 1)
        # and another address still logs in
        self.assertEqual(self.auth(self.client(relay, OTHER), "bob", self.logins["bob"])[0], 235)

    def test_right_password_below_limit(self):
        peer, relay = self.setup_relay({"auth_fail_limit": "4", "auth_fail_delay": "0"})
        wrong = self.new_password("alice", "wrong")
        c = self.client(relay, GUESSER)
        for _ in range(3):
            self.assertEqual(self.auth(c, "alice", wrong)[0], 535)
        # three failures, the limit is four: the right password is accepted
        c2 = self.client(relay, GUESSER)
        self.assertEqual(self.auth(c2, "alice", self.logins["alice"])[0], 235)
        self.assertEqual(c2.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c2.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c2.cmd("DATA")[0], 354)
        c2.send(make_message("after failures") + b".\r\n")
        self.assertEqual(c2.reply()[0], 250)
        self.assertEqual(len(peer.messages()), 1)
        self.assertEqual(len(relay.grep(r"event=auth_locked")), 0)
        # unknown logins count like wrong passwords: four lock OTHER out
        o = self.client(relay, OTHER)
        for _ in range(4):
            self.assertEqual(self.auth(o, "mallory", wrong)[0], 535)
        relay.wait_log(r"event=auth_locked client=127\.0\.0\.5 failures=4 for=300s")
        self.assertEqual(self.auth(self.client(relay, OTHER), "bob",
                                   self.logins["bob"])[1], LOCKED)
        # GUESSER was not locked by it
        self.assertEqual(self.auth(self.client(relay, GUESSER), "bob",
                                   self.logins["bob"])[0], 235)

    def test_guessing_does_not_stall_spool(self):
        """16 connections from one address guess as fast as they can (no lockout,
        no delay) while another address sends spool-mode messages. The messages'
        latency is printed, not asserted."""
        nguess = 16
        peer, relay = self.setup_relay({"auth_fail_limit": "0", "auth_fail_delay": "0",
                                        "max_connections_per_ip": "50"}, spool=True)
        wrong = self.new_password("alice", "wrong")
        stop = threading.Event()
        counts = {"535": 0, "busy": 0, "other": []}
        lock = threading.Lock()

        def guess():
            # max_errors (20) ends a session with 421: connect again
            while not stop.is_set():
                try:
                    c = RawClient(relay.host, relay.port, source=GUESSER, timeout=60)
                except OSError as e:
                    with lock:
                        counts["other"].append(repr(e))
                    return
                try:
                    c.reply()
                    c.cmd("EHLO " + CLIENT_NAME)
                    while not stop.is_set():
                        code, text = self.auth(c, "alice", wrong)
                        with lock:
                            if code == 535:
                                counts["535"] += 1
                            elif text == BUSY:
                                counts["busy"] += 1
                            elif code != 421:
                                counts["other"].append(text)
                        if code == 421:
                            break
                except (OSError, ConnectionError) as e:
                    if not stop.is_set():
                        with lock:
                            counts["other"].append(repr(e))
                finally:
                    c.close()

        # baseline without guessing
        base = []
        for i in range(3):
            t = time.monotonic()
            self.send_mail(relay, "s@example.org", ["r@example.net"],
                           make_message("baseline %d" % i), source="127.0.0.2")
            base.append(time.monotonic() - t)
        threads = [threading.Thread(target=guess) for _ in range(nguess)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)   # let the guessing reach full speed
            lat = []
            for i in range(10):
                t = time.monotonic()
                refused = self.send_mail(relay, "s@example.org", ["r@example.net"],
                                         make_message("during guessing %d" % i),
                                         source="127.0.0.2")
                lat.append(time.monotonic() - t)
                self.assertEqual(refused, {})
        finally:
            stop.set()
            for t in threads:
                t.join(90)
        # every message was committed and is delivered
        deadline = time.monotonic() + 60
        while len(peer.messages()) < 13 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(len(peer.messages()), 13)
        self.assertGreater(counts["535"], 0)
        # the guesses got a failure or "busy", nothing else
        self.assertEqual(counts["other"], [])
        m = self.scrape(relay)
        self.assertEqual(m["relay25_auth_failures_total"], counts["535"])
        self.assertEqual(m["relay25_auth_lockouts_total"], 0)
        print("\n  spool-mode latency: baseline %s s; during guessing by %d connections: "
              "min %.3f median %.3f max %.3f s; guesses answered 535: %d, 454 busy: %d" % (
                  ", ".join("%.3f" % b for b in base), nguess, min(lat),
                  sorted(lat)[len(lat) // 2], max(lat), counts["535"], counts["busy"]))

    def test_queue_full_answers_busy(self):
        """More AUTH responses at once than the checks' budget and queue (2 + 32)
        hold: the excess gets 454 4.7.0 at once, the others their 535."""
        n = 48
        peer, relay = self.setup_relay({"auth_fail_limit": "0", "auth_fail_delay": "0",
                                        "max_connections_per_ip": "60"})
        wrong = self.new_password("alice", "wrong")
        conns = [self.client(relay, GUESSER) for _ in range(n)]
        line = ("AUTH PLAIN " + plain("alice", wrong) + "\r\n").encode()
        for c in conns:
            c.send(line)
        replies = []
        for c in conns:
            code, lines = c.reply()
            replies.append("%d %s" % (code, lines[-1]))
        busy = sum(1 for r in replies if r == BUSY)
        failed = sum(1 for r in replies if r.startswith("535 "))
        self.assertEqual(busy + failed, n, replies)
        self.assertGreaterEqual(failed, 34)   # 2 running + 32 queued were all checked
        # the relay is fine afterwards
        o = self.client(relay, OTHER)
        self.assertEqual(self.auth(o, "bob", self.logins["bob"])[0], 235)
        if busy:
            relay.wait_log(r"event=auth status=busy client=127\.0\.0\.4")
        print("\n  %d simultaneous AUTH: %d answered 535, %d answered 454 busy" % (n, failed, busy))


if __name__ == "__main__":
    main()
