#!/usr/bin/python3
"""Upstream session reuse, connection slots and TLS session resumption: an
authenticated upstream session outlives the inbound session that opened it and
serves the next device with the same identity; a different identity never gets
it; at most max_connections upstream sessions exist per upstream, and
transactions beyond that wait for one (or get 451 4.4.5 after command_timeout);
new connections offer the last TLS session for resumption."""
import os
import re
import shutil
import signal
import socket
import threading
import time
import unittest

from relaytest import RawClient, RelayTestCase, make_message


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
        # max_connections = 1: each change of identity closes the idle session of
        # the other one to open its own; the new connections resume the TLS session
        peer, relay = self.start_default(upstream={"max_connections": "1"})
        for i, source in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.2"]):
            self.send_mail(relay, "a@example.org", ["b@example.net"],
                           make_message("resume %d" % i), source)
        msgs = peer.wait_messages(3)
        self.assertEqual([m.login for m in msgs], [self.SCANNER, self.PRINTER, self.SCANNER])
        self.assertEqual(len(peer.connections()), 3)
        self.assertEqual(len(relay.grep(r"event=tls .*resumed=yes")), 2, relay.tail(40))
        self.assertEqual(len(relay.grep(r"event=pool_evict")), 2)

    def test_tls_resumption_follows_the_ca_file_across_reloads(self):
        # The resumption key names the CA file's content, not where it sits in
        # memory: a reload that keeps the file still resumes; one that changes it
        # verifies afresh (a session verified against the old anchors is not reused).
        ca = os.path.join(self.dir, "ca-reload.pem")
        shutil.copyfile(self.pki.ca_file, ca)
        peer, relay = self.start_default(upstream={"max_connections": "1", "ca_file": ca})

        def send(i, source):
            self.send_mail(relay, "a@example.org", ["b@example.net"],
                           make_message("reload %d" % i), source)

        def reload(n):
            relay.proc.send_signal(signal.SIGHUP)
            relay.wait_lines(r"\bevent=reload status=ok\b", n=n, timeout=20)

        send(0, "127.0.0.2")
        reload(1)  # same file
        send(1, "127.0.0.3")  # evicts the idle session: a new connection
        with open(self.pki.ca_file) as f:
            pem = f.read()
        with open(ca, "a") as f:
            f.write(pem)  # the same anchor twice: other content, other key
        reload(2)
        send(2, "127.0.0.2")
        peer.wait_messages(3)
        tls = relay.wait_lines(r"event=tls ", n=3, timeout=20)
        self.assertEqual(len(peer.connections()), 3)
        self.assertEqual([re.search(r"resumed=(\w+)", t).group(1) for t in tls],
                         ["no", "yes", "no"], relay.tail(40))
        self.assertTrue(all("verify=yes" in t for t in tls), tls)

    def concurrent(self, relay, n, source="127.0.0.2"):
        """n clients at once; returns the exceptions they raised."""
        errors = []

        def one(i):
            try:
                self.send_mail(relay, "a@example.org", ["b@example.net"],
                               make_message("concurrent %d" % i), source)
            except Exception as e:  # noqa: BLE001 - asserted by the caller
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def test_max_connections_bounds_concurrent_upstream_sessions(self):
        # a slow upstream (0.3 s per message) and 8 devices at once: without the
        # limit relay25 would open 8 connections; with 2 the others wait their turn
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, data_delay=0.3)
        relay = self.start_relay({"main": dict(self.upstream(peer), max_connections="2")},
                                 devices)
        self.assertEqual(self.concurrent(relay, 8), [])
        msgs = peer.wait_messages(8)
        self.assertEqual(sorted(m.content.count(b"concurrent") for m in msgs), [1] * 8)
        self.assertLessEqual(len(peer.connections()), 2)
        self.assertEqual(len([a for a in peer.auth_attempts() if a.success]),
                         len(peer.connections()))
        self.assertTrue(relay.grep(r"event=slot_wait"), relay.tail(40))
        # one identity: a session coming back is handed to a waiter, never closed
        self.assertEqual(relay.grep(r"event=pool_evict"), [])

    def held_slot(self, data_delay, relay_keys, mail_from):
        """max_connections = 1 and command_timeout = 1 s; a scanner message holds the
        one connection for data_delay seconds while the printer's transaction runs.
        Returns (peer, relay, the printer's (stage, code, text))."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, data_delay=data_delay)
        relay = self.start_relay({"main": dict(self.upstream(peer), max_connections="1")},
                                 devices, relay=dict(relay_keys, command_timeout="1"))
        first = threading.Thread(target=self.send_mail, args=(
            relay, "a@example.org", ["b@example.net"], make_message("slow"), "127.0.0.2"))
        first.start()
        relay.wait_log(r"state=data_wait->body")
        res = self.transaction(relay, mail_from, ["d@example.net"], make_message("waits"),
                               source="127.0.0.3")
        first.join()
        return peer, relay, res

    def test_slot_wait_ends_in_451_after_command_timeout(self):
        # the printer's MAIL waits command_timeout and gets a 4xx it will retry
        peer, relay, (stage, code, text) = self.held_slot(4, {}, "c@example.org")
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertIn("4.4.5", text)
        self.assertIn("max_connections", text)
        self.assertEqual([m.login for m in peer.wait_messages(1)], [self.SCANNER])
        self.assertTrue(relay.grep(r"event=slot_timeout .*max_connections=1"))

    def test_slot_wait_timeout_queues_with_on_upstream_failure_queue(self):
        # with on_upstream_failure = queue the printer gets 250: the message goes
        # to the spool and is delivered once the connection is free
        peer, relay, (stage, code, text) = self.held_slot(3, {
            "on_upstream_failure": "queue", "spool_dir": self.dir + "/spool",
            "retry_min": "1s", "retry_max": "2s"}, "c@example.org")
        self.assertEqual((stage, code), ("done", 250), text)
        msgs = peer.wait_messages(2, timeout=30)
        self.assertEqual(sorted((m.mail_from, m.login) for m in msgs),
                         [("a@example.org", self.SCANNER), ("c@example.org", self.PRINTER)])
        self.assertTrue(relay.grep(r"event=slot_timeout"))

    def test_client_leaving_while_waiting_for_a_slot_gives_its_turn_up(self):
        # max_connections = 1 is held by a slow scanner message; the printer's MAIL
        # waits in line, then the printer hangs up: no answer may come for it, and
        # the next message still gets the connection
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, data_delay=2)
        relay = self.start_relay({"main": dict(self.upstream(peer), max_connections="1")},
                                 devices)
        first = threading.Thread(target=self.send_mail, args=(
            relay, "a@example.org", ["b@example.net"], make_message("slow"), "127.0.0.2"))
        first.start()
        relay.wait_log(r"state=data_wait->body")
        c = RawClient(relay.host, relay.port, source="127.0.0.3")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        c.send(b"MAIL FROM:<gone@example.org>\r\n")
        relay.wait_log(r"event=slot_wait")
        c.close()
        relay.wait_log(r"event=disconnect client=127.0.0.3")
        first.join()
        self.send_mail(relay, "c@example.org", ["d@example.net"], make_message("after"),
                       source="127.0.0.3")
        msgs = peer.wait_messages(2)
        self.assertEqual([(m.mail_from, m.login) for m in msgs],
                         [("a@example.org", self.SCANNER), ("c@example.org", self.PRINTER)])
        self.assertTrue(relay.alive())

    def test_client_leaving_while_its_session_is_set_up_frees_the_slot(self):
        # an upstream that accepts connections and never greets: the session being
        # set up for a client that hangs up is closed, and its slot (max_connections
        # = 1) goes to the next client at once instead of after the greeting timeout
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)
        devices, _ = self.default_devices()
        relay = self.start_relay({"main": dict(self.upstream(port=silent.getsockname()[1]),
                                               max_connections="1")}, devices)
        for i in range(2):
            c = RawClient(relay.host, relay.port, source="127.0.0.2")
            self.assertEqual(c.reply()[0], 220)
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            c.send(b"MAIL FROM:<a@example.org>\r\n")
            deadline = time.monotonic() + 10
            while len(relay.grep(r"event=session_open")) < i + 1:
                self.assertLess(time.monotonic(), deadline, relay.tail(40))
                time.sleep(0.05)
            c.close()
            deadline = time.monotonic() + 10
            while len(relay.grep(r"event=disconnect client=127.0.0.2")) < i + 1:
                self.assertLess(time.monotonic(), deadline, relay.tail(40))
                time.sleep(0.05)
        self.assertEqual(relay.grep(r"event=slot_wait"), [], relay.tail(40))
        self.assertTrue(relay.alive())


if __name__ == "__main__":
    unittest.main()
