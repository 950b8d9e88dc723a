#!/usr/bin/python3
"""Upstream's RCPT and end-of-DATA replies reach the client with their codes."""

import smtplib

from relaytest import RelayTestCase, main, make_message


class UpstreamRepliesTest(RelayTestCase):
    def test_one_of_three_recipients_refused(self):
        peer, relay = self.start_default()
        rcpts = ["one@example.net", "reject-two@example.net", "three@example.net"]
        refused = self.send_mail(relay, "s@example.org", rcpts, make_message("rcpt"))
        self.assertEqual(list(refused), ["reject-two@example.net"])
        self.assertEqual(refused["reject-two@example.net"][0], 550)
        (m,) = peer.messages()
        self.assertEqual(m.rcpt_tos, ("one@example.net", "three@example.net"))

    def test_all_recipients_refused(self):
        peer, relay = self.start_default()
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.send_mail(relay, "s@example.org", ["reject-a@example.net",
                                                    "reject-b@example.net"], make_message())
        self.assertEqual({c for c, _ in cm.exception.recipients.values()}, {550})
        self.assertEqual(peer.all_messages(), [])

    def data_reply(self, header):
        peer, relay = self.start_default()
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send_mail(relay, "s@example.org", ["r@example.net"],
                           make_message("reply", headers=[header]))
        self.assertEqual(len(peer.all_messages()), 1)
        self.assertEqual(peer.messages(), [])
        return cm.exception.smtp_code, cm.exception.smtp_error.decode(), relay

    def test_451_at_end_of_data(self):
        code, text, relay = self.data_reply("X-Test-Reply: 451")
        self.assertEqual(code, 451, text)
        relay.wait_lines(r"\bstatus=deferred\b")

    def test_554_at_end_of_data(self):
        code, text, relay = self.data_reply("X-Test-Reply: 554")
        self.assertEqual(code, 554, text)
        relay.wait_lines(r"\bstatus=bounced\b")

    def test_session_continues_after_refusal(self):
        peer, relay = self.start_default()
        s = self.smtp(relay)
        with self.assertRaises(smtplib.SMTPDataError):
            s.sendmail("s@example.org", ["r@example.net"],
                       make_message("first", headers=["X-Test-Reply: 451"]))
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("second")),
                         {})
        s.quit()
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["second"])

    def test_421_at_mail_is_451_and_session_goes_on(self):
        # Upstream closing at MAIL: the device gets a 4xx for this transaction
        # (not upstream's 421, which would tell it our session ends) and the
        # next transaction on the same session goes through a fresh connection.
        peer, relay = self.start_default()
        s = self.smtp(relay)
        s.ehlo()
        code, text = s.mail("close421@example.org")
        self.assertEqual(code, 451, text)
        self.assertRegex(text.decode(), r"^4\.4\.\d .*421 4\.3\.2 peer\.test shutting down")
        relay.wait_lines(r"\bstatus=deferred\b")
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("after")),
                         {})
        s.quit()
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["after"])
        self.assertEqual(len(peer.connections()), 2, "the closed upstream session was reused")


if __name__ == "__main__":
    main()
