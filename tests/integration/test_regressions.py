#!/usr/bin/python3
"""Regressions found in review (each failed before its fix):
- a client that disconnects mid-DATA in spool mode leaked its session forever
  (the spool writer kept a reference), so connection limits filled up and
  SIGTERM never finished;
- in queue mode a recipient deferred at RCPT (told 250, queued) was dropped when
  the spool copy failed, while the client got 250 for DATA;
- a client pipelining commands without reading replies grew memory without bound;
- an AUTH line too long for the command buffer left the client waiting forever."""
import os
import signal
import socket
import time
import unittest

from relaytest import RawClient, make_message, closed_port
from spooltest import Script, SpoolTestCase


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RegressionTest(SpoolTestCase):
    def test_disconnect_mid_data_frees_the_session(self):
        devices, _ = self.default_devices()
        closed, port = closed_port()
        self.addCleanup(closed.close)
        keys = self.spool_relay_keys(mode="spool", max_connections="2", shutdown_timeout="2")
        r = self.start_own_relay(self.write_config({"main": self.upstream(port=port)}, devices,
                                                   keys))
        for i in range(2):
            c = RawClient(r.host, r.port)
            c.reply()
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<a@b>")
            c.cmd("RCPT TO:<c@d>")
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: x\r\n\r\npartial body\r\n")
            time.sleep(0.2)
            c.close()
            r.wait_lines(r"event=disconnect", n=i + 1, timeout=10)
        c = RawClient(r.host, r.port)
        self.assertEqual(c.reply()[0], 220)  # not "421 too many connections"
        c.close()
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", r)
        self.assertEqual(self.files("q"), [])
        r.proc.send_signal(signal.SIGTERM)
        self.assertEqual(r.proc.wait(20), 0)

    def test_queue_mode_spool_failure_refuses_instead_of_dropping(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        keys = self.spool_relay_keys(on_upstream_failure="queue", max_spool_size="10K")
        r = self.start_relay({"main": self.upstream(peer)}, devices, keys)
        Script(peer, rcpt={"two@example.net": ["450 4.2.1 mailbox busy"]})
        msg = make_message("big", b"y" * 70 + b"\r\n" + (b"x" * 76 + b"\r\n") * 300)
        res = self.submit(r, "s@example.org", ["one@example.net", "two@example.net"], msg)
        self.assertEqual([c for c, _ in res["rcpt"]], [250, 250], res)
        code, text = res["data"]
        self.assertTrue(400 <= code < 500, res)  # never 250 with a recipient lost
        time.sleep(0.5)
        self.assertEqual([m for m in peer.all_messages() if m.accepted], [])
        self.assertEqual(self.files("q"), [])

    def test_pipelining_without_reading_is_bounded(self):
        peer, r = self.start_default(relay={"log_level": "info"})
        before = rss_kib(r.proc.pid)
        s = socket.create_connection((r.host, r.port), source_address=("127.0.0.2", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"EHLO x\r\nMAIL FROM:<a@b>\r\n")
        time.sleep(1)
        s.settimeout(3)
        chunk = b"NOOP\r\n" * 10000
        sent = 0
        try:
            for _ in range(1000):  # 60 MB: more than any socket buffers hold
                s.sendall(chunk)
                sent += len(chunk)
        except (socket.timeout, OSError):
            pass  # relay25 stopped reading: that is the point
        time.sleep(1)
        grown = rss_kib(r.proc.pid) - before
        s.close()
        self.assertLess(sent, 1000 * len(chunk), "relay25 read everything without replying")
        if not os.environ.get("ASAN_OPTIONS"):  # ASan's quarantine keeps freed memory
            self.assertLess(grown, 20 * 1024, "RSS grew by %d KiB" % grown)

    def test_overlong_auth_line_fails_cleanly(self):
        user = "office@example.com"
        pw = "p" * 1600  # the AUTH PLAIN line would exceed the command buffer
        self.secrets.append((user, pw))
        peer = self.start_peer(users={user: pw})
        r = self.start_relay({"main": self.upstream(peer)},
                             {"default": {"user": user,
                                          "password_file": self.password_file(user, pw)}},
                             {"connect_timeout": "5", "command_timeout": "5"})
        c = RawClient(r.host, r.port, source="127.0.0.1", timeout=30)
        c.reply()
        c.cmd("EHLO x")
        code, _ = c.cmd("MAIL FROM:<a@b>")
        self.assertTrue(400 <= code < 500, code)
        r.wait_log(r"too long", 10)


if __name__ == "__main__":
    unittest.main()
