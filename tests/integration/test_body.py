#!/usr/bin/python3
"""Message bytes arrive upstream unchanged (apart from the one prepended Received:)."""

import hashlib
import smtplib

from relaytest import RawClient, RelayTestCase, main, make_message, strip_received


class BodyTest(RelayTestCase):
    def assert_same_bytes(self, got, sent):
        if got == sent:
            return
        n = next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), min(len(got),
                                                                                len(sent)))
        self.fail("upstream bytes differ from sent: len %d vs %d, sha256 %s vs %s, first "
                  "difference at offset %d: got %r, sent %r" % (
                      len(got), len(sent), hashlib.sha256(got).hexdigest()[:16],
                      hashlib.sha256(sent).hexdigest()[:16], n, got[max(0, n - 40):n + 40],
                      sent[max(0, n - 40):n + 40]))

    def relay_one(self, msg, mail_options=(), source="127.0.0.2"):
        peer, relay = self.start_default()
        refused = self.send_mail(relay, "sender@example.org", ["rcpt@example.net"], msg,
                                 source=source, mail_options=mail_options)
        self.assertEqual(refused, {})
        (m,) = peer.messages()
        return m, relay

    def test_received_header_prepended(self):
        msg = make_message("received")
        m, _ = self.relay_one(msg)
        self.assertTrue(m.content.startswith(b"Received:"), m.content[:200])
        self.assertEqual(m.content.count(b"\r\nReceived:"), 0, "more than one Received: added")
        self.assert_same_bytes(strip_received(m.content), msg)

    def test_received_helo_8bit_replaced(self):
        # HELO bytes >= 0x80 must not reach the Received: header raw (RFC 5322 §2.2).
        peer, relay = self.start_default()
        c = RawClient(relay.host, relay.port)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        c.send(b"EHLO caf\xc3\xa9-\xe4.test\r\n")
        self.assertEqual(c.reply()[0], 250)
        for line in ("MAIL FROM:<sender@example.org>", "RCPT TO:<rcpt@example.net>"):
            self.assertEqual(c.cmd(line)[0], 250, line)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("helo8") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        (m,) = peer.messages()
        first = m.content.split(b"\r\n", 1)[0]
        self.assertTrue(first.startswith(b"Received: from caf__-_.test "), first)
        head = m.content.split(b"\r\n\r\n", 1)[0]
        self.assertFalse(any(b >= 0x80 for b in head), head[:300])

    def test_leading_dots(self):
        body = (b".\r\n"
                b"..\r\n"
                b"...three\r\n"
                b".hidden line\r\n"
                b" . space first\r\n"
                b"a line ending with a dot.\r\n"
                b". \r\n"
                b"\r\n"
                b".\r\n")
        msg = make_message("dots", body)
        m, _ = self.relay_one(msg)
        self.assert_same_bytes(strip_received(m.content), msg)

    def test_8bit_bytes(self):
        high = bytes(range(0x80, 0x100))
        body = (b"Gr\xc3\xbc\xc3\x9fe, na\xc3\xafve caf\xc3\xa9 \xe2\x82\xac\r\n"
                + b"".join(high[i:i + 64] + b"\r\n" for i in range(0, 128, 64))
                + b"latin-1: \xe4\xf6\xfc\xdf\r\n"
                + b"tab\there and \x7f\r\n")
        msg = make_message("8bit", body, headers=["MIME-Version: 1.0",
                                                  "Content-Type: text/plain; charset=utf-8",
                                                  "Content-Transfer-Encoding: 8bit"])
        m, _ = self.relay_one(msg, mail_options=["BODY=8BITMIME"])
        self.assert_same_bytes(strip_received(m.content), msg)

    def test_8bit_declared_upstream(self):
        msg = make_message("8bit", b"caf\xc3\xa9\r\n")
        m, _ = self.relay_one(msg, mail_options=["BODY=8BITMIME"])
        self.assertIn("BODY=8BITMIME", m.mail_options,
                      "8-bit body relayed without BODY=8BITMIME (RFC 6152)")

    def test_20mib_message(self):
        # Deterministic 76-octet lines, some starting with a dot, ~20 MiB in total.
        lines = []
        size = 0
        i = 0
        while size < 20 * 1024 * 1024:
            tag = b"." if i % 97 == 0 else b"L"
            line = tag + (b"%09d " % i) + hashlib.sha256(b"%d" % i).hexdigest().encode() \
                + b"0123456789\r\n"
            lines.append(line)
            size += len(line)
            i += 1
        msg = make_message("big", b"".join(lines))
        m, relay = self.relay_one(msg)
        self.assert_same_bytes(strip_received(m.content), msg)

    def test_over_max_message_size(self):
        peer, relay = self.start_default(relay={"max_message_size": "1M"})
        msg = make_message("too big", b"".join(b"%070d\r\n" % i for i in range(20000)))  # ~1.4 MiB
        with self.assertRaises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as cm:
            self.send_mail(relay, "s@example.org", ["r@example.net"], msg)
        self.assertEqual(cm.exception.smtp_code, 552, cm.exception)
        peer.wait_idle(10)
        self.assertEqual(peer.messages(), [], "oversized message reached upstream")

    def test_over_max_message_size_without_size_param(self):
        # No SIZE= on MAIL: the relay only finds out while streaming the body.
        peer, relay = self.start_default(relay={"max_message_size": "1M"})
        c = RawClient(relay.host, relay.port)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("too big") + b"".join(b"%070d\r\n" % i for i in range(20000)))
        code, text = c.cmd(".")
        self.assertEqual(code, 552, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        peer.wait_idle(10)
        self.assertEqual(peer.messages(), [], "oversized message reached upstream")

    def test_client_disconnect_mid_data(self):
        peer, relay = self.start_default()
        c = RawClient(relay.host, relay.port)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("cut", b"".join(b"line %d\r\n" % i for i in range(5000))))
        c.close()
        relay.wait_log(r"\bevent=disconnect\b", 10)
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [],
                         "a message cut off by the client was completed upstream")
        # and the relay still serves
        self.send_mail(relay, "s@example.org", ["r@example.net"], make_message("after"))
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["after"])


if __name__ == "__main__":
    main()
