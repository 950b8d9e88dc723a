#!/usr/bin/python3
"""Timeouts and broken upstreams, with 1-2 s timeouts. The tests assert what
happens (replies, disconnects, nothing delivered), never how long it took."""

import base64
import os
import select
import socket
import subprocess
import threading
import time

from relaytest import RELAY25_BIN, RawClient, RelayTestCase, closed_port, main, make_message


class FakeUpstream:
    """A plain TCP server on 127.0.0.1:0 that misbehaves at the SMTP level.
    mode "silent": accepts and never sends anything (no greeting);
    mode "close":  closes each connection right after accepting it;
    mode "421":    greets with "421 ... closing" and closes."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            if self.mode == "silent":
                with self.lock:
                    self.held.append(conn)      # keep it open, say nothing
                continue
            if self.mode == "421":
                try:
                    conn.sendall(b"421 4.3.2 fake.test Service not available, closing\r\n")
                except OSError:
                    pass
            conn.close()

    def stop(self):
        self.stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.held:
                c.close()
            self.held = []
        self.thread.join(5)


class TimeoutsTest(RelayTestCase):
    def client(self, relay, source="127.0.0.2"):
        c = RawClient(relay.host, relay.port, source=source)
        self.addCleanup(c.close)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        code, text = c.cmd("EHLO client.test")
        self.assertEqual(code, 250, text)
        return c

    def assert_timeout_close(self, c):
        rest = c.read_until_close()
        self.assertEqual(len(rest), 1, "want one 421 then close, got %r" % rest)
        code, text = rest[0]
        self.assertEqual((code, text[0][:5]), (421, "4.4.2"), rest)

    def fake_upstream(self, mode):
        f = FakeUpstream(mode).start()
        self.addCleanup(f.stop)
        return f

    # --- idle_timeout (client side) -------------------------------------------------

    def test_idle_client_after_greeting(self):
        peer, relay = self.start_default(relay={"idle_timeout": "1"})
        c = RawClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assert_timeout_close(c)
        relay.wait_log(r"\bevent=timeout\b", 10)
        relay.wait_log(r"\bevent=disconnect\b", 10)
        # the relay still serves
        self.send_mail(relay, "s@example.org", ["r@example.net"], make_message("after idle"),
                       source="127.0.0.3")
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["after idle"])

    def test_idle_client_mid_transaction(self):
        peer, relay = self.start_default(relay={"idle_timeout": "1"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assert_timeout_close(c)
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [])

    def test_idle_client_mid_data(self):
        peer, relay = self.start_default(relay={"idle_timeout": "1"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("stalled", b"first part of the body\r\n"))
        self.assert_timeout_close(c)
        relay.wait_lines(r"\bstatus=aborted\b")
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [], "a stalled message was completed upstream")

    # --- progress: slow clients (idle_timeout per line, data_min_rate) ----------------

    def drip(self, c, data, interval=1.0, bound=30.0):
        """Send data one byte per interval until the relay replies or closes, for at
        most bound seconds. Returns (bytes sent, replies until close), replies None
        if the relay neither answered nor closed within the bound."""
        deadline = time.monotonic() + bound
        sent = 0
        while time.monotonic() < deadline:
            if sent < len(data):
                try:
                    c.send(data[sent:sent + 1])
                except OSError:
                    break
                sent += 1
            readable, _, _ = select.select([c.sock], [], [], interval)
            if readable:
                break
        else:
            return sent, None
        c.sock.settimeout(10)
        return sent, c.read_until_close()

    def assert_dripper_closed(self, sent, rest, line_len, what):
        self.assertIsNotNone(rest, "%s: still connected after 30 s (session_timeout 3600)"
                             % what)
        self.assertLess(sent, line_len, "%s: the whole line went through" % what)
        # 421 4.4.2, or the close alone
        if rest:
            self.assertEqual(len(rest), 1, rest)
            self.assertEqual((rest[0][0], rest[0][1][0][:5]), (421, "4.4.2"), rest)

    def test_slow_drip_command_line(self):
        # one byte a second keeps the link busy but never completes a line: the line
        # gets idle_timeout from its first byte, not a fresh idle_timeout per byte
        peer, relay = self.start_default(relay={"idle_timeout": "3"})
        c = self.client(relay)
        line = b"MAIL FROM:<" + b"a" * 60 + b"@example.org>\r\n"
        sent, rest = self.drip(c, line)
        self.assert_dripper_closed(sent, rest, len(line), "slow MAIL line")
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.2 state=idle limit=idle_timeout\b")
        # before EHLO too (the greeting wait)
        c2 = RawClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c2.close)
        self.assertEqual(c2.reply()[0], 220)
        sent, rest = self.drip(c2, b"EHLO " + b"h" * 60 + b".example\r\n")
        self.assert_dripper_closed(sent, rest, 75, "slow EHLO")
        peer.wait_idle(5)
        self.assertEqual(peer.all_messages(), [])

    def test_slow_drip_auth_step(self):
        # an AUTH continuation line (RFC 4954 §4) is a line like any other
        r = subprocess.run([RELAY25_BIN, "passwd", "alice"], input=b"in-secret\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        users = os.path.join(self.dir, "users")
        with open(users, "w") as f:
            f.write(r.stdout.decode().strip() + "\n")
        peer, relay = self.start_default(relay={"idle_timeout": "3", "users_file": users,
                                                "allow_plaintext_auth": "yes"})
        c = self.client(relay)
        self.assertEqual(c.cmd("AUTH LOGIN")[0], 334)
        line = base64.b64encode(b"alice" * 12) + b"\r\n"
        sent, rest = self.drip(c, line)
        self.assert_dripper_closed(sent, rest, len(line), "slow AUTH step")
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.2 state=auth limit=idle_timeout\b")

    def test_slow_drip_body(self):
        # the body gets idle_timeout between reads, and on average data_min_rate over
        # each data_rate_window: one byte a second is below 100 bytes/s
        peer, relay = self.start_default(relay={"idle_timeout": "10", "data_min_rate": "100",
                                                "data_rate_window": "3"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        body = make_message("dripped", b"x" * 200 + b"\r\n") + b".\r\n"
        sent, rest = self.drip(c, body, interval=0.5)
        self.assertIsNotNone(rest, "slow body: still connected after 30 s")
        self.assertLess(sent, len(body), "the whole slow body went through")
        self.assertEqual(len(rest), 1, rest)
        self.assertEqual((rest[0][0], rest[0][1][0][:5]), (421, "4.4.2"), rest)
        relay.wait_log(r"\bevent=slow_client client=127\.0\.0\.2 state=body bytes=\d+ "
                       r"seconds=\d+ limit=data_min_rate rate=100/s\b")
        relay.wait_lines(r"\bstatus=aborted\b")
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [], "a too slow message was completed upstream")

    def test_data_min_rate_zero_is_off(self):
        # data_min_rate = 0: a body dripped over several windows is still taken
        peer, relay = self.start_default(relay={"idle_timeout": "10", "data_min_rate": "0",
                                                "data_rate_window": "1"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        body = make_message("dripped but allowed", b"z\r\n")
        head, tail = body[:8], body[8:]
        sent, rest = self.drip(c, head, interval=0.5, bound=4)
        self.assertIsNone(rest, "data_min_rate = 0 still closed a slow body: %r" % (rest,))
        c.send(tail + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["dripped but allowed"])

    def test_normal_speed_client_unaffected(self):
        # lines with pauses shorter than idle_timeout, a session longer than it, and a
        # body well above data_min_rate spread over several windows all pass
        peer, relay = self.start_default(relay={"idle_timeout": "3", "data_min_rate": "100",
                                                "data_rate_window": "1"})
        c = self.client(relay)
        for line in ("NOOP", "MAIL FROM:<s@example.org>", "RCPT TO:<r@example.net>"):
            time.sleep(1)
            self.assertIn(c.cmd(line)[0], (250,), line)
        self.assertEqual(c.cmd("DATA")[0], 354)
        body = make_message("steady", (b"y" * 98 + b"\r\n") * 400)
        for i in range(0, len(body), 4000):
            c.send(body[i:i + 4000])
            time.sleep(0.2)   # 20 KB/s, 200 times data_min_rate, for about 2 s
        c.send(b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        # a command line sent in pieces, each within idle_timeout of the first byte
        c.send(b"NO")
        time.sleep(1)
        c.send(b"OP\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["steady"])
        self.assertEqual(relay.grep(r"\bevent=(slow_client|timeout)\b"), [])

    # --- upstream that does not behave ----------------------------------------------

    def broken_upstream_relay(self, mode, **relay_keys):
        """scanner (127.0.0.2) -> a FakeUpstream(mode); printer (127.0.0.3) -> a working
        peer. Returns (fake, peer, relay)."""
        fake = self.fake_upstream(mode)
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        devices["scanner"]["upstream"] = "broken"
        devices["printer"]["upstream"] = "good"
        devices["default"]["upstream"] = "good"
        relay = self.start_relay({"good": self.upstream(peer),
                                  "broken": self.upstream(port=fake.port)},
                                 devices, relay=relay_keys)
        return fake, peer, relay

    def test_upstream_never_greets(self):
        fake, peer, relay = self.broken_upstream_relay("silent", command_timeout="2",
                                                       connect_timeout="2")
        a = self.client(relay, source="127.0.0.2")
        a.send(b"MAIL FROM:<a@example.org>\r\n")   # waits for the silent upstream
        # meanwhile another device is served through the working upstream
        self.send_mail(relay, "b@example.org", ["r@example.net"], make_message("meanwhile"),
                       source="127.0.0.3")
        code, text = a.reply()
        self.assertEqual((code, text[0][:5]), (451, "4.4.2"), text)
        self.assertGreaterEqual(fake.accepted, 1, "relay25 never connected to the upstream")
        relay.wait_log(r"\bevent=failed state=greeting error=timeout\b")
        relay.wait_lines(r"\bstatus=deferred\b")
        # the client's session is still usable
        self.assertEqual(a.cmd("NOOP")[0], 250)
        self.assertEqual(a.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.header("Subject"), m.login), ("meanwhile", self.PRINTER))

    def test_upstream_closes_after_accept(self):
        fake, peer, relay = self.broken_upstream_relay("close", command_timeout="2",
                                                       connect_timeout="2")
        a = self.client(relay, source="127.0.0.2")
        code, text = a.cmd("MAIL FROM:<a@example.org>")
        self.assertTrue(400 <= code < 500, "upstream closed at once -> %s %s" % (code, text))
        self.assertGreaterEqual(fake.accepted, 1, "relay25 never connected to the upstream")
        # a retry in the same session gets the same temporary failure, not a hang or a 5xx
        code, text = a.cmd("MAIL FROM:<a@example.org>")
        self.assertTrue(400 <= code < 500, "second try -> %s %s" % (code, text))
        self.assertEqual(a.cmd("QUIT")[0], 221)
        self.send_mail(relay, "b@example.org", ["r@example.net"], make_message("others"),
                       source="127.0.0.3")
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["others"])

    def test_upstream_greets_421_and_closes(self):
        fake, peer, relay = self.broken_upstream_relay("421", command_timeout="2",
                                                       connect_timeout="2")
        a = self.client(relay, source="127.0.0.2")
        code, text = a.cmd("MAIL FROM:<a@example.org>")
        self.assertTrue(400 <= code < 500, "upstream 421 greeting -> %s %s" % (code, text))
        self.assertEqual(a.cmd("QUIT")[0], 221)

    def test_upstream_connection_refused(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        devices, users = self.default_devices()
        relay = self.start_relay({"main": self.upstream(port=port)}, devices,
                                 relay={"connect_timeout": "2", "command_timeout": "2"})
        a = self.client(relay)
        code, text = a.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual((code, text[0][:5]), (451, "4.4.1"), text)
        self.assertEqual(a.cmd("QUIT")[0], 221)


if __name__ == "__main__":
    main()
