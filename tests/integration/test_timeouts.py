#!/usr/bin/python3
"""Timeouts and broken upstreams, with 1-2 s timeouts. The tests assert what
happens (replies, disconnects, nothing delivered), never how long it took."""

import socket
import threading

from relaytest import RawClient, RelayTestCase, closed_port, main, make_message


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
