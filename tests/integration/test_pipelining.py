#!/usr/bin/python3
"""RFC 2920 pipelining from the client: replies come back in order."""

from relaytest import RawClient, RelayTestCase, main, make_message


class PipeliningTest(RelayTestCase):
    def client(self, relay, source="127.0.0.2"):
        c = RawClient(relay.host, relay.port, source=source)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        return c, [li.split()[0].upper() for li in lines[1:] if li.strip()]

    def test_pipelining_advertised(self):
        _, relay = self.start_default()
        _, ext = self.client(relay)
        self.assertIn("PIPELINING", ext)

    def test_mail_rcpt_rcpt_data_in_one_send(self):
        peer, relay = self.start_default()
        c, _ = self.client(relay)
        c.send(b"MAIL FROM:<p@example.org>\r\n"
               b"RCPT TO:<a@example.net>\r\n"
               b"RCPT TO:<b@example.net>\r\n"
               b"DATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        c.send(make_message("pipelined") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.rcpt_tos),
                         ("p@example.org", ("a@example.net", "b@example.net")))

    def test_pipelined_refused_recipient(self):
        peer, relay = self.start_default()
        c, _ = self.client(relay)
        c.send(b"MAIL FROM:<p@example.org>\r\n"
               b"RCPT TO:<reject-a@example.net>\r\n"
               b"RCPT TO:<b@example.net>\r\n"
               b"DATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 550, 250, 354])
        c.send(make_message("partly") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual(m.rcpt_tos, ("b@example.net",))

    def test_pipelined_no_valid_recipient(self):
        peer, relay = self.start_default()
        c, _ = self.client(relay)
        c.send(b"MAIL FROM:<p@example.org>\r\n"
               b"RCPT TO:<reject-a@example.net>\r\n"
               b"DATA\r\n")
        codes = [c.reply()[0] for _ in range(3)]
        self.assertEqual(codes[:2], [250, 550])
        self.assertIn(codes[2], (503, 554), "DATA without valid recipients (RFC 2920 §3.1)")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual(peer.all_messages(), [])

    def test_body_then_next_transaction_in_one_send(self):
        peer, relay = self.start_default()
        c, _ = self.client(relay, source="127.0.0.3")
        c.send(b"MAIL FROM:<one@example.org>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 354])
        c.send(make_message("first") + b".\r\n"
               b"MAIL FROM:<two@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 354])
        c.send(make_message("second") + b".\r\nQUIT\r\n")
        self.assertEqual([c.reply()[0] for _ in range(2)], [250, 221])
        self.assertEqual([(m.mail_from, m.header("Subject")) for m in peer.messages()],
                         [("one@example.org", "first"), ("two@example.org", "second")])


if __name__ == "__main__":
    main()
