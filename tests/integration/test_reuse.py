#!/usr/bin/python3
"""Upstream session reuse and TLS session resumption: an authenticated upstream
session outlives the inbound session that opened it and serves the next device
with the same identity; a different identity never gets it; new connections
offer the last TLS session for resumption."""
import threading
import unittest

from relaytest import RelayTestCase, make_message


class ReuseTest(RelayTestCase):
    def test_serial_messages_share_one_upstream_login(self):
        peer, relay = self.start_default()
        for i in range(3):
            self.send_mail(relay, "a@example.org", ["b@example.net"],
                           make_message("reuse %d" % i), source="127.0.0.2")
        msgs = peer.wait_messages(3)
        self.assertEqual([m.login for m in msgs], [self.SCANNER] * 3)
        logins = [a for a in peer.auth_attempts() if a.success]
        self.assertEqual(len(logins), 1, logins)
        self.assertEqual(len(relay.grep(r"event=reuse")), 2)

    def test_other_identity_gets_its_own_session(self):
        peer, relay = self.start_default()
        self.send_mail(relay, "a@example.org", ["b@example.net"], make_message("one"),
                       source="127.0.0.2")
        self.send_mail(relay, "a@example.org", ["b@example.net"], make_message("two"),
                       source="127.0.0.3")
        self.send_mail(relay, "a@example.org", ["b@example.net"], make_message("three"),
                       source="127.0.0.2")
        msgs = peer.wait_messages(3)
        self.assertEqual([m.login for m in msgs], [self.SCANNER, self.PRINTER, self.SCANNER])
        logins = sorted(a.login for a in peer.auth_attempts() if a.success)
        self.assertEqual(logins, sorted([self.SCANNER, self.PRINTER]))

    def test_tls_resumption_for_new_connections(self):
        # max_connections = 1 keeps one idle session: concurrent devices open new
        # connections, which offer the cached TLS session
        peer, relay = self.start_default(upstream={"max_connections": "1"})
        for batch in range(2):
            threads = [threading.Thread(target=self.send_mail, args=(
                relay, "a@example.org", ["b@example.net"],
                make_message("batch %d/%d" % (batch, i)), "127.0.0.2")) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(len(peer.wait_messages(6)), 6)
        self.assertTrue(relay.grep(r"event=tls .*resumed=yes"), relay.tail(40))


if __name__ == "__main__":
    unittest.main()
