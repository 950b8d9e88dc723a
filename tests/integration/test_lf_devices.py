#!/usr/bin/python3
"""LF-only devices (issue 13): with `lf_line_ends = yes` a device's bare LF is a line
end, so a message ending <LF>.<LF> is delivered once, in CRLF upstream; without
it the same bytes do not end the message (RFC 5321 §4.1.1.4, no smuggling). And
for every device a body line <LF>.<CRLF> keeps its dot upstream."""

import socket

from relaytest import RawClient, RelayTestCase, main


class LfDeviceTest(RelayTestCase):
    def start_lf(self, relay=None):
        devices, users = self.default_devices()
        devices["scanner"]["lf_line_ends"] = "yes"  # 127.0.0.2; printer 127.0.0.3 not
        peer = self.start_peer(users=users)
        relay = self.start_relay({"main": self.upstream(peer)}, devices, relay)
        return peer, relay

    def lf_session(self, relay, source, body):
        """Commands and body with bare LF only, as an old device sends them."""
        c = RawClient(relay.host, relay.port, source=source, timeout=20)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        for line, want in (("EHLO old-device", 250), ("MAIL FROM:<scan@example.org>", 250),
                           ("RCPT TO:<rcpt@example.net>", 250), ("DATA", 354)):
            c.send(line.encode() + b"\n")
            self.assertEqual(c.reply()[0], want, line)
        c.send(body)
        return c

    def test_lf_dot_lf_ends_message_for_opted_in_device(self):
        # bare_lf = reject: the opted-in device's LF line ends are not "bare"
        peer, relay = self.start_lf(relay={"bare_lf": "reject"})
        body = (b"From: scan@example.org\nTo: rcpt@example.net\nSubject: scan\n\n"
                b"page one\n..leading dot\n.\n")
        c = self.lf_session(relay, "127.0.0.2", body)
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        c.send(b"QUIT\n")
        self.assertEqual([r[0] for r in c.read_until_close()], [221])
        (m,) = peer.wait_messages(1)
        peer.wait_idle(5)
        self.assertEqual(len(peer.all_messages()), 1, "delivered more than once")
        content = m.content.split(b"\r\n", 1)[1]  # past Received:'s first line
        self.assertNotIn(b"\n", content.replace(b"\r\n", b""), "bare LF upstream")
        self.assertTrue(m.content.endswith(b"page one\r\n.leading dot\r\n"), m.content[-80:])
        self.assertIn(b"\r\nSubject: scan\r\n\r\npage one\r\n", m.content)

    def test_lf_dot_lf_does_not_end_message_by_default(self):
        peer, relay = self.start_lf()
        body = b"Subject: scan\n\npage one\n.\n"
        c = self.lf_session(relay, "127.0.0.3", body)  # printer: not opted in
        c.sock.settimeout(3)
        with self.assertRaises(socket.timeout):
            c.readline()  # still in DATA: no reply to a terminator that is not one
        c.sock.settimeout(20)
        c.send(b"more\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.send(b"QUIT\r\n")
        (m,) = peer.wait_messages(1)
        # the lone dot line is content, dot kept (re-stuffed upstream, unstuffed by it)
        self.assertTrue(m.content.endswith(b"page one\r\n.\r\nmore\r\n"), m.content[-60:])

    def test_lf_dot_crlf_keeps_its_dot(self):
        peer, relay = self.start_lf()
        c = RawClient(relay.host, relay.port, source="127.0.0.3")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        for line in ("EHLO client.test", "MAIL FROM:<p@example.org>", "RCPT TO:<r@example.net>"):
            self.assertEqual(c.cmd(line)[0], 250, line)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: dots\r\n\r\nbefore\n.\r\nafter\r\n.\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        (m,) = peer.wait_messages(1)
        self.assertTrue(m.content.endswith(b"\r\n\r\nbefore\r\n.\r\nafter\r\n"),
                        m.content[-60:])


if __name__ == "__main__":
    main()
