#!/usr/bin/python3
"""Upstream TLS/AUTH/connect failures: temporary (4xx) for the client, no credentials
leak to a server that is not the verified provider."""

from relaytest import RelayTestCase, closed_port, main, make_message


class TlsFailuresTest(RelayTestCase):
    def start(self, peer_tls="starttls", pki=None, users_override=None, upstream=None, **kw):
        devices, users = self.default_devices()
        peer_users = dict(users, **(users_override or {}))
        peer = self.start_peer(tls=peer_tls, users=peer_users, pki=pki, **kw)
        up = self.upstream(peer, tls="starttls")
        up.update(upstream or {})
        relay = self.start_relay({"main": up}, devices)
        return peer, relay

    def assert_4xx_at_mail(self, relay, source="127.0.0.2"):
        stage, code, text = self.transaction(relay, "s@example.org", ["r@example.net"],
                                             make_message("tls"), source=source)
        self.assertEqual(stage, "mail", "want a 4xx on MAIL FROM, got %s at %s: %s"
                         % (code, stage, text))
        self.assertTrue(code is not None and 400 <= code < 500,
                        "want 4xx on MAIL FROM, got %s %s" % (code, text))
        return code, text

    def test_upstream_without_starttls(self):
        peer, relay = self.start(peer_tls="none")
        self.assert_4xx_at_mail(relay)
        self.assert_nothing_upstream(peer)
        for c in peer.connections():
            self.assertNotIn("AUTH", c.verbs())

    def test_upstream_refuses_starttls(self):
        # STARTTLS offered but answered 454: reported as a refusal, with the reply,
        # not as "does not offer STARTTLS"
        peer, relay = self.start(starttls_reply="454 4.7.0 TLS not available right now")
        code, text = self.assert_4xx_at_mail(relay)
        self.assertRegex(text, r"^4\.7\.4 Upstream \S+ refused STARTTLS.*: "
                               r"454 4\.7\.0 TLS not available right now$")
        self.assertNotIn("does not offer", text)
        self.assert_nothing_upstream(peer)
        for c in peer.connections():
            self.assertNotIn("AUTH", c.verbs())

    def test_upstream_untrusted_ca(self):
        peer, relay = self.start(pki=self.other_pki)
        self.assert_4xx_at_mail(relay)
        self.assert_nothing_upstream(peer)
        for c in peer.connections():
            self.assertIsNone(c.tls, "TLS handshake with an untrusted cert succeeded")

    def test_upstream_name_mismatch(self):
        # Cert is valid for localhost/127.0.0.1 only.
        peer, relay = self.start(upstream={"server_name": "smtp.example.com"})
        self.assert_4xx_at_mail(relay)
        self.assert_nothing_upstream(peer)

    def test_wrong_password(self):
        peer, relay = self.start(users_override={self.SCANNER: "the-provider-knows-better"})
        stage, code, text = self.transaction(relay, "s@example.org", ["r@example.net"],
                                             make_message("pw"), source="127.0.0.2")
        self.assertTrue(code is not None and 400 <= code < 500,
                        "want 4xx, got %s at %s: %s" % (code, stage, text))
        self.assertEqual(peer.all_messages(), [])
        self.assertIn((self.SCANNER, False),
                      {(a.login, a.success) for a in peer.auth_attempts()})
        # the auth-failure line (not just any line) names the user
        user = r"\buser=%s(\s|$)" % self.SCANNER.replace(".", r"\.")
        relay.wait_lines(r"(?i)^(?=.*%s)(?=.*auth).*(fail|invalid|535)" % user)
        # the password itself is checked in every log line by the harness at teardown

    def test_upstream_down(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        devices, _ = self.default_devices()
        relay = self.start_relay({"main": self.upstream(port=port)}, devices)
        self.assert_4xx_at_mail(relay)


if __name__ == "__main__":
    main()
