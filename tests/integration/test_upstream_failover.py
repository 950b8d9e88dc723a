#!/usr/bin/python3
"""A passthrough device with `upstream = a, b`: when a cannot be reached (connection
refused, or a certificate we do not trust) the MAIL goes to b at once, the
client gets 250 and the message arrives at b exactly once. And a pooled session
that the upstream gives up just as it is reused (421 to MAIL) is replaced by a
fresh one from the pool, with no error for the client."""
from relaytest import RelayTestCase, closed_port, main, make_message
from spooltest import Script


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

    def test_pooled_session_answering_421_is_replaced_by_a_fresh_one(self):
        peer, relay = self.start_default()
        Script(peer, mail=[None, "421 4.4.2 closing the idle connection"])
        for i in range(2):
            res = self.transaction(relay, "a@example.org", ["b@example.net"],
                                   make_message("fresh %d" % i, msgid="<fresh%d@client.test>" % i))
            self.assertEqual(res[:2], ("done", 250), "%s\n%s" % (res, relay.tail(30)))
        msgs = peer.wait_messages(2)
        self.assertEqual([m.header("Message-ID") for m in msgs],
                         ["<fresh0@client.test>", "<fresh1@client.test>"])
        # the second MAIL went out on the pooled session (421), then on a new one
        self.assertEqual(len(peer.commands("MAIL")), 3, peer.commands("MAIL"))
        self.assertEqual(len(peer.connections()), 2)
        self.assertEqual(len([a for a in peer.auth_attempts() if a.success]), 2)


if __name__ == "__main__":
    main()
