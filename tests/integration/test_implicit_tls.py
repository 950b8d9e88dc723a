#!/usr/bin/python3
"""Upstream with implicit TLS (port 465 style)."""

from relaytest import RelayTestCase, main, make_message


class ImplicitTlsTest(RelayTestCase):
    def test_mail_arrives(self):
        peer, relay = self.start_default(tls="implicit")
        msg = make_message("implicit")
        self.assertEqual(self.send_mail(relay, "s@example.org", ["r@example.net"], msg), {})
        (m,) = peer.messages()
        self.assertEqual(m.tls, "implicit")
        self.assertEqual(m.login, self.SCANNER)
        self.assertEqual(m.rcpt_tos, ("r@example.net",))
        self.assertIn(msg, m.content)
        for c in peer.connections():
            self.assertNotIn("STARTTLS", c.verbs())

    def test_untrusted_ca(self):
        devices, users = self.default_devices()
        peer = self.start_peer(tls="implicit", users=users, pki=self.other_pki)
        relay = self.start_relay({"main": self.upstream(peer)}, devices)
        stage, code, text = self.transaction(relay, "s@example.org", ["r@example.net"],
                                             make_message("untrusted"))
        self.assertTrue(code is not None and 400 <= code < 500,
                        "want 4xx, got %s at %s: %s" % (code, stage, text))
        # implicit TLS: a connection is only recorded after a completed handshake
        self.assertEqual(peer.connections(), [])
        self.assert_nothing_upstream(peer)


if __name__ == "__main__":
    main()
