#!/usr/bin/python3
"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA, on the client side and upstream."""

from relaytest import RawClient, RelayTestCase, main

SMUGGLED = (b"MAIL FROM:<evil@x>\r\n"
            b"RCPT TO:<victim@y>\r\n"
            b"DATA\r\n"
            b"From: evil@x\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"smuggled body\r\n")


class SmugglingTest(RelayTestCase):
    def smuggle(self, fake_end):
        peer, relay = self.start_default()
        c = RawClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<legit@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"From: legit@example.org\r\n"
               b"Subject: legit\r\n"
               b"\r\n"
               b"first part" + fake_end + SMUGGLED + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, "end of DATA: %s %s" % (code, text))
        c.send(b"QUIT\r\n")
        rest = c.read_until_close()
        self.assertEqual([r[0] for r in rest], [221],
                         "more replies than QUIT's: the relay saw extra commands: %r" % rest)
        peer.wait_idle(10)

        msgs = peer.all_messages()
        self.assertEqual(len(msgs), 1, "want exactly one message upstream, got %r" % [
            (m.mail_from, m.rcpt_tos) for m in msgs])
        (m,) = msgs
        self.assertEqual(m.mail_from, "legit@example.org")
        self.assertEqual(m.rcpt_tos, ("rcpt@example.net",))
        self.assertIn(b"MAIL FROM:<evil@x>", m.content)
        self.assertIn(b"RCPT TO:<victim@y>", m.content)
        self.assertIn(b"smuggled body", m.content)
        froms = [a for _, _, a in peer.commands("MAIL")]
        self.assertEqual(froms and [f.split()[0] for f in froms], ["FROM:<legit@example.org>"])
        self.assertNotIn("victim@y", [a for _, _, a in peer.commands("RCPT")])

    def test_lf_dot_lf(self):
        self.smuggle(b"\n.\n")

    def test_crlf_dot_lf(self):
        self.smuggle(b"\r\n.\n")

    def test_lf_dot_crlf(self):
        self.smuggle(b"\n.\r\n")

    def test_cr_dot_cr(self):
        self.smuggle(b"\r.\r")


if __name__ == "__main__":
    main()
