#!/usr/bin/python3
"""A passthrough device with `upstream = a, b`: when a cannot be reached (connection
refused, or a certificate we do not trust) the MAIL goes to b at once, the
client gets 250 and the message arrives at b exactly once."""
from relaytest import RelayTestCase, closed_port, main, make_message


class UpstreamFailoverTest(RelayTestCase):
    def relay_with(self, first, users, peer_b):
        devices, _ = self.default_devices(users)
        for d in devices.values():
            d["upstream"] = "a, b"
        return self.start_relay({"a": first, "b": self.upstream(peer_b)}, devices)

    def assert_delivered_to_b(self, relay, peer_b, subject):
        msgid = "<%s@client.test>" % subject
        res = self.transaction(relay, "a@example.org", ["b@example.net"],
                               make_message(subject, msgid=msgid))
        self.assertEqual(res[:2], ("done", 250), "%s\n%s" % (res, relay.tail(30)))
        msgs = peer_b.wait_messages(1)
        self.assertEqual([m.header("Message-ID") for m in peer_b.messages()], [msgid])
        self.assertEqual(msgs[0].login, self.SCANNER)
        self.assertTrue(relay.grep(r"event=failover"), relay.tail(30))

    def test_first_upstream_refuses_connections(self):
        _, users = self.default_devices()
        peer_b = self.start_peer(users=users)
        closed, port = closed_port()
        self.addCleanup(closed.close)
        relay = self.relay_with(self.upstream(port=port), users, peer_b)
        self.assert_delivered_to_b(relay, peer_b, "refused-a")

    def test_first_upstream_has_untrusted_certificate(self):
        _, users = self.default_devices()
        peer_a = self.start_peer(users=users, pki=self.other_pki)
        peer_b = self.start_peer(users=users)
        relay = self.relay_with(self.upstream(peer_a), users, peer_b)
        self.assert_delivered_to_b(relay, peer_b, "untrusted-a")
        self.assertEqual(peer_a.auth_attempts(), [], "credentials sent to an untrusted peer")
        self.assertEqual(peer_a.all_messages(), [])


if __name__ == "__main__":
    main()
