#!/usr/bin/python3
"""Envelope relayed unchanged: recipients in order, sender, null sender."""

from relaytest import RelayTestCase, main, make_message


class EnvelopeTest(RelayTestCase):
    def test_one_recipient(self):
        peer, relay = self.start_default()
        refused = self.send_mail(relay, "sender@example.org", ["rcpt@example.net"],
                                 make_message("one"), source="127.0.0.2")
        self.assertEqual(refused, {})
        (m,) = peer.messages()
        self.assertEqual(m.mail_from, "sender@example.org")
        self.assertEqual(m.rcpt_tos, ("rcpt@example.net",))
        self.assertEqual(m.login, self.SCANNER)
        self.assertEqual(m.tls, "starttls")
        self.assertEqual(len(relay.wait_lines(r"\bstatus=sent\b")), 1, relay.tail())

    def test_five_recipients(self):
        peer, relay = self.start_default()
        rcpts = ["r%d@example.net" % i for i in range(1, 6)]
        rcpts[2] = "Mixed.Case@Example.NET"
        refused = self.send_mail(relay, "sender@example.org", rcpts, make_message("five"))
        self.assertEqual(refused, {})
        (m,) = peer.messages()
        self.assertEqual(m.rcpt_tos, tuple(rcpts))
        self.assertEqual(m.mail_from, "sender@example.org")

    def test_null_sender_kept(self):
        peer, relay = self.start_default()
        refused = self.send_mail(relay, "", ["postmaster@example.net"],
                                 make_message("bounce"))
        self.assertEqual(refused, {})
        (m,) = peer.messages()
        self.assertEqual(m.mail_from, "", "MAIL FROM:<> must stay the null sender")
        mails = [a for _, _, a in peer.commands("MAIL")]
        self.assertEqual(len(mails), 1)
        self.assertRegex(mails[0], r"(?i)^FROM:<>( |$)")

    def test_two_transactions_one_session(self):
        peer, relay = self.start_default()
        s = self.smtp(relay, source="127.0.0.3")
        self.assertEqual(s.sendmail("a@example.org", ["x@example.net"], make_message("1")), {})
        self.assertEqual(s.sendmail("b@example.org", ["y@example.net", "z@example.net"],
                                    make_message("2")), {})
        s.quit()
        msgs = peer.messages()
        self.assertEqual([(m.mail_from, m.rcpt_tos) for m in msgs],
                         [("a@example.org", ("x@example.net",)),
                          ("b@example.org", ("y@example.net", "z@example.net"))])
        self.assertEqual({m.login for m in msgs}, {self.PRINTER})

    def test_body_values_not_offered_refused(self):
        # Only 7BIT and 8BITMIME are offered; BINARYMIME needs CHUNKING (RFC 3030).
        peer, relay = self.start_default()
        s = self.smtp(relay)
        s.ehlo()
        for value in ("BINARYMIME", "8BIT", ""):
            code, text = s.mail("a@example.org", ["BODY=" + value])
            self.assertEqual(code, 555, (value, text))
            self.assertIn(b"5.5.4", text)
        for value in ("7BIT", "8bitmime"):
            self.assertEqual(s.mail("a@example.org", ["BODY=" + value])[0], 250, value)
            self.assertEqual(s.rset()[0], 250)
        s.quit()
        peer.wait_idle(5)
        bodies = [a.split("BODY=", 1)[1].upper() for _, _, a in peer.commands("MAIL")]
        self.assertEqual(sorted(bodies), ["7BIT", "8BITMIME"], "a refused MAIL reached upstream")



if __name__ == "__main__":
    main()
