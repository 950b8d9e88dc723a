#!/usr/bin/python3
"""Upstream SIZE (RFC 1870, issue 13): once relay25 has seen an upstream's EHLO
(an earlier or pooled session), its EHLO offers the smaller of max_message_size
and the upstream's SIZE, MAIL SIZE= above it gets 552 5.3.4 before any data, and
a body over it is cut with 552 5.3.4 instead of being streamed to a refusal."""

import os

from peer import Peer
from relaytest import RawClient, RelayTestCase, main, make_message

LIMIT = 20000  # the upstream's data_size_limit, advertised as SIZE 20000
OWN = 35 * 1024 * 1024  # relay25's max_message_size in the tests ("35M")


class UpstreamSizeTest(RelayTestCase):
    def start_small(self, relay=None):
        devices, users = self.default_devices()
        p = Peer(tls="starttls", cert=self.pki.cert_file, key=self.pki.key_file, users=users,
                 data_size_limit=LIMIT)
        p.start()
        self.addCleanup(p.stop)
        return p, self.start_relay({"main": self.upstream(p)}, devices, relay)

    def client(self, relay):
        c = RawClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        sizes = [int(li.split()[1]) for li in lines if li.startswith("SIZE ")]
        self.assertEqual(len(sizes), 1, lines)
        return c, sizes[0]

    def test_size_learned_then_offered_and_enforced(self):
        peer, relay = self.start_small()
        # nothing known yet: relay25's own limit
        c, size = self.client(relay)
        self.assertEqual(size, OWN)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org> SIZE=1000")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("first") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        self.assertEqual(len(peer.messages()), 1)
        self.assertIn("SIZE=1000", peer.messages()[0].mail_options)

        # learned from that session: offered, and MAIL SIZE= above it refused at once
        c, size = self.client(relay)
        self.assertEqual(size, LIMIT)
        mails = len(peer.commands("MAIL"))
        code, text = c.cmd("MAIL FROM:<sender@example.org> SIZE=%d" % (LIMIT + 1))
        self.assertEqual(code, 552)
        self.assertTrue(text[0].startswith("5.3.4 "), text)
        peer.wait_idle(5)
        self.assertEqual(len(peer.commands("MAIL")), mails, "the refused MAIL went upstream")
        # at the limit is fine
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org> SIZE=%d" % LIMIT)[0], 250)
        self.assertEqual(c.cmd("RSET")[0], 250)

        # no SIZE= and a body over the limit: relay25's own 552 5.3.4, nothing delivered
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("big", body=b"x" * 998 + b"\r\n") * 1 +
               (b"y" * 998 + b"\r\n") * 30 + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 552)
        self.assertTrue(text[0].startswith("5.3.4 "), text)
        self.assertEqual(len(peer.messages()), 1)
        # the session goes on: a small message still goes through
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("small") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        self.assertEqual(len(peer.wait_messages(2)), 2)

    def test_own_limit_smaller_wins(self):
        peer, relay = self.start_small(relay={"max_message_size": "10K"})
        c, size = self.client(relay)
        self.assertEqual(size, 10240)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("first") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        c, size = self.client(relay)
        self.assertEqual(size, 10240)  # the upstream's 20000 is larger
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org> SIZE=10241")[0], 552)

    def test_learned_from_queue_delivery(self):
        # mode = spool: the queue's own delivery session teaches relay25 the SIZE
        peer, relay = self.start_small(relay={
            "mode": "spool", "spool_dir": os.path.join(self.dir, "spool-size"),
            "retry_min": "1s", "retry_max": "2s"})
        c, size = self.client(relay)
        self.assertEqual(size, OWN)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("spooled") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        peer.wait_messages(1)
        c, size = self.client(relay)
        self.assertEqual(size, LIMIT)
        code, text = c.cmd("MAIL FROM:<sender@example.org> SIZE=%d" % (LIMIT * 2))
        self.assertEqual((code, text[0][:6]), (552, "5.3.4 "))

    def test_failover_list_takes_the_largest(self):
        # two upstreams, one small: the message may still go to the other one,
        # so only a limit both have is enforced
        devices, users = self.default_devices()
        small = Peer(tls="starttls", cert=self.pki.cert_file, key=self.pki.key_file,
                     users=users, data_size_limit=LIMIT)
        big = Peer(tls="starttls", cert=self.pki.cert_file, key=self.pki.key_file,
                   users=users, data_size_limit=3 * LIMIT)
        for p in (small, big):
            p.start()
            self.addCleanup(p.stop)
        for d in devices.values():
            d["upstream"] = "small, big"
        relay = self.start_relay({"small": self.upstream(small), "big": self.upstream(big)},
                                 devices)
        c, size = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        c.cmd("QUIT")
        c, size = self.client(relay)
        self.assertEqual(size, OWN, "big not known yet: no limit from the list")
        small.stop()  # the next session fails over to big, which is then known
        c.cmd("QUIT")
        c, size = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        c.cmd("QUIT")
        big.wait_idle(5)
        c, size = self.client(relay)
        self.assertEqual(size, 3 * LIMIT)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org> SIZE=%d" % (LIMIT + 1))[0], 250)


if __name__ == "__main__":
    main()
