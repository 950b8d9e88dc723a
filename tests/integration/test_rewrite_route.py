#!/usr/bin/python3
"""Sender rewriting (rewrite_sender, rewrite_from_header) and sender-dependent
routing ([route NAME]): exact envelope and header changes, every other byte as
sent, the null sender untouched, routes chosen per transaction (one inbound
session may use several), the devices restriction, and a spooled message that
keeps its route across a restart."""

import os
import smtplib

from relaytest import CLIENT_NAME, closed_port, main, strip_received
from spooltest import SpoolTestCase, parse_env

NEW = "office@example.com"


def message(from_field, extra=b"", body=None):
    """A message whose From: field is from_field (bytes, folded lines allowed)."""
    head = [b"Received: from lan (lan [10.0.0.9]) by scanner; Thu, 1 Jan 2026 00:00:00 +0000",
            from_field, b"To: rcpt@example.net", b"Subject: scan",
            b"Message-ID: <1@scanner.lan>", b"Date: Thu, 01 Jan 2026 00:00:00 +0000"]
    head += [b"X-Filler-%d: %s" % (i, b"f" * 70) for i in range(300)]   # > one body step
    body = body if body is not None else (
        b".leading dot\r\ncaf\xc3\xa9 8bit\r\nFrom: not a header\r\n" + b"y" * 998 + b"\r\n"
        + b"".join(b"line %d\r\n" % i for i in range(20000)))
    return b"\r\n".join(head) + b"\r\n" + extra + b"\r\n" + body


class RewriteTest(SpoolTestCase):

    def setup_rewrite(self, header=True, relay=None):
        devices, users = self.default_devices()
        devices["scanner"]["rewrite_sender"] = NEW
        if header:
            devices["scanner"]["rewrite_from_header"] = "yes"
        peer = self.start_peer(users=users)
        r = self.start_relay({"main": self.upstream(peer)}, devices, relay)
        return peer, r

    def one(self, peer, r, mail_from, msg, source="127.0.0.2"):
        self.send_mail(r, mail_from, ["rcpt@example.net"], msg, source=source)
        (m,) = peer.wait_messages(1, timeout=30)
        self.assertTrue(m.accepted, m.reply)
        return m

    def test_display_name_kept_reply_to_added(self):
        peer, r = self.setup_rewrite()
        msg = message(b'From: "Scanner" <scan@lan>')
        m = self.one(peer, r, "scan@lan", msg)
        self.assertEqual(m.mail_from, NEW)
        self.assertEqual(m.login, self.SCANNER)
        want = msg.replace(b'From: "Scanner" <scan@lan>\r\n',
                           b'From: "Scanner" <office@example.com>\r\nReply-To: <scan@lan>\r\n', 1)
        self.assertEqual(strip_received(m.content), want)
        line = r.wait_lines(r"prx qid=\S+ from=<office@example.com> .*status=sent")[0]
        self.assertIn(" rewrite=from ", line)

    def test_folded_from(self):
        peer, r = self.setup_rewrite()
        msg = message(b'From: "Scanner, 2nd floor"\r\n\t<scan@lan>')
        m = self.one(peer, r, "scan@lan", msg)
        want = msg.replace(b'From: "Scanner, 2nd floor"\r\n\t<scan@lan>\r\n',
                           b'From: "Scanner, 2nd floor" <office@example.com>\r\n'
                           b'Reply-To: <scan@lan>\r\n', 1)
        self.assertEqual(strip_received(m.content), want)

    def test_bare_address_and_existing_reply_to(self):
        peer, r = self.setup_rewrite()
        msg = message(b"From: scan@lan", extra=b"Reply-To: desk@example.org\r\n")
        m = self.one(peer, r, "scan@lan", msg)
        want = msg.replace(b"From: scan@lan\r\n", b"From: office@example.com\r\n", 1)
        self.assertEqual(strip_received(m.content), want)

    def test_envelope_only(self):
        peer, r = self.setup_rewrite(header=False)
        msg = message(b'From: "Scanner" <scan@lan>')
        m = self.one(peer, r, "scan@lan", msg)
        self.assertEqual(m.mail_from, NEW)
        self.assertEqual(strip_received(m.content), msg)

    def test_null_sender_untouched(self):
        peer, r = self.setup_rewrite()
        msg = message(b"From: MAILER-DAEMON@lan")
        m = self.one(peer, r, "", msg)
        self.assertEqual(m.mail_from, "")
        self.assertEqual(strip_received(m.content), msg)
        line = r.wait_lines(r"prx qid=\S+ from=<> .*status=sent")[0]
        self.assertNotIn("rewrite=", line)

    def test_off_keeps_bytes(self):
        peer, r = self.setup_rewrite()
        msg = message(b'From: "Printer" <printer@lan>')
        m = self.one(peer, r, "printer@lan", msg, source="127.0.0.3")   # printer: no rewrite
        self.assertEqual(m.mail_from, "printer@lan")
        self.assertEqual(strip_received(m.content), msg)
        line = r.wait_lines(r"prx qid=\S+ from=<printer@lan> .*status=sent")[0]
        self.assertNotIn("rewrite=", line)

    def test_message_without_body(self):
        peer, r = self.setup_rewrite()
        msg = b'From: "Scanner" <scan@lan>\r\nSubject: no body\r\n'
        m = self.one(peer, r, "scan@lan", msg)
        self.assertEqual(strip_received(m.content),
                         b'From: "Scanner" <office@example.com>\r\nReply-To: <scan@lan>\r\n'
                         b"Subject: no body\r\n")

    def test_header_over_max_header_size_refused(self):
        peer, r = self.setup_rewrite(relay={"max_header_size": "8K"})
        res = self.transaction(r, "scan@lan", ["rcpt@example.net"],
                               message(b'From: "Scanner" <scan@lan>'))
        self.assertEqual(res[:2], ("data", 552), res)
        ok = message(b'From: "Scanner" <scan@lan>')
        ok = ok[:ok.index(b"X-Filler-0")] + ok[ok.index(b"\r\n\r\n") + 2:]   # small header
        m = self.one(peer, r, "scan@lan", ok)
        self.assertEqual(strip_received(m.content), ok.replace(
            b'From: "Scanner" <scan@lan>\r\n',
            b'From: "Scanner" <office@example.com>\r\nReply-To: <scan@lan>\r\n', 1))

    def test_spool_mode_rewrites_the_stored_copy(self):
        devices, users = self.default_devices()
        devices["scanner"].update(rewrite_sender=NEW, rewrite_from_header="yes")
        closed, port = closed_port()
        self.addCleanup(closed.close)
        path = self.write_config({"main": self.upstream(port=port)}, devices,
                                 self.spool_relay_keys(mode="spool"))
        r = self.start_relay(config=path)
        msg = message(b"From: <scan@lan>")
        q = self.submit_queued(r, "scan@lan", ["rcpt@example.net"], msg)
        env = parse_env(os.path.join(self.spool, "q", q + ".env"))
        self.assertEqual(env["from"], NEW)
        self.assertNotIn("route", env)
        with open(os.path.join(self.spool, "q", q + ".msg"), "rb") as f:
            self.assertEqual(strip_received(f.read()), msg.replace(
                b"From: <scan@lan>\r\n",
                b"From: <office@example.com>\r\nReply-To: <scan@lan>\r\n", 1))


    def test_spool_mode_rewrites_a_header_larger_than_a_spool_buffer(self):
        # the held header section reaches the spool writer in one piece, larger
        # than its write buffer (64 KiB + slack): stored whole, not refused
        devices, users = self.default_devices()
        devices["scanner"].update(rewrite_sender=NEW, rewrite_from_header="yes")
        closed, port = closed_port()
        self.addCleanup(closed.close)
        path = self.write_config({"main": self.upstream(port=port)}, devices,
                                 self.spool_relay_keys(mode="spool"))
        r = self.start_relay(config=path)
        msg = message(b"From: <scan@lan>")
        extra = b"".join(b"X-Big-%d: %s\r\n" % (i, b"b" * 70) for i in range(1500))
        msg = msg.replace(b"Subject: scan\r\n", b"Subject: scan\r\n" + extra, 1)
        self.assertGreater(msg.index(b"\r\n\r\n"), 100 * 1024)
        q = self.submit_queued(r, "scan@lan", ["rcpt@example.net"], msg)
        with open(os.path.join(self.spool, "q", q + ".msg"), "rb") as f:
            self.assertEqual(strip_received(f.read()), msg.replace(
                b"From: <scan@lan>\r\n",
                b"From: <office@example.com>\r\nReply-To: <scan@lan>\r\n", 1))


class RouteTest(SpoolTestCase):
    ROUTE_A = "route@a.example"

    def setup_routes(self, spool=False, alt_down=False, own=False):
        """main = peer B (the devices' upstream), alt = peer A (route a: @a.example for
        every device; route b: @b.example for the printer only)."""
        devices, users = self.default_devices()
        for d in devices.values():
            d["upstream"] = "main"
        pw_a = self.new_password(self.ROUTE_A)
        users_a = {self.ROUTE_A: pw_a}
        peer_b = self.start_peer(users=users)
        closed = peer_a = None
        if alt_down:
            closed, port = closed_port()
            self.addCleanup(closed.close)
            alt = self.upstream(port=port)
        else:
            peer_a = self.start_peer(users=users_a)
            alt = self.upstream(peer_a)
        path = self.write_config({"main": self.upstream(peer_b), "alt": alt}, devices,
                                 self.spool_relay_keys(mode="spool") if spool else None)
        with open(path, "a") as f:
            f.write("[route a]\nsenders = @a.example\nupstream = alt\nuser = %s\n"
                    "password_file = %s\n\n" % (self.ROUTE_A,
                                                self.password_file(self.ROUTE_A, pw_a)))
            f.write("[route b]\nsenders = @b.example\ndevices = printer\nupstream = alt\n"
                    "user = %s\npassword = %s\n" % (self.ROUTE_A, pw_a))
        r = self.start_own_relay(path) if own else self.start_relay(config=path)
        return peer_a, peer_b, closed, r, users_a, path

    def test_route_by_sender_in_one_session(self):
        peer_a, peer_b, _, r, _, _ = self.setup_routes()
        msg = message(b"From: x@lan")
        with smtplib.SMTP(r.host, r.port, local_hostname=CLIENT_NAME,
                          source_address=("127.0.0.2", 0), timeout=60) as s:
            for sender in ("one@a.example", "two@example.org", "three@A.example",
                           "four@example.org"):
                self.assertEqual(s.sendmail(sender, ["rcpt@example.net"], msg), {})
            s.quit()
        peer_a.wait_messages(2, timeout=30)
        peer_b.wait_messages(2, timeout=30)
        a, b = peer_a.messages(), peer_b.messages()
        self.assertEqual([(m.mail_from, m.login) for m in a],
                         [("one@a.example", self.ROUTE_A), ("three@A.example", self.ROUTE_A)])
        self.assertEqual([(m.mail_from, m.login) for m in b],
                         [("two@example.org", self.SCANNER), ("four@example.org", self.SCANNER)])
        for m in a + b:
            self.assertTrue(m.accepted)
            self.assertEqual(strip_received(m.content), msg)
        lines = r.wait_lines(r"prx qid=\S+ from=<one@a.example> .*status=sent")
        self.assertIn(" route=a ", lines[0])
        self.assertIn(" user=%s " % self.ROUTE_A, lines[0])

    def test_devices_restriction(self):
        peer_a, peer_b, _, r, _, _ = self.setup_routes()
        msg = message(b"From: x@lan")
        self.send_mail(r, "s@b.example", ["rcpt@example.net"], msg, source="127.0.0.2")
        self.send_mail(r, "p@b.example", ["rcpt@example.net"], msg, source="127.0.0.3")
        (b,) = peer_b.wait_messages(1, timeout=30)
        (a,) = peer_a.wait_messages(1, timeout=30)
        self.assertEqual((b.mail_from, b.login), ("s@b.example", self.SCANNER))
        self.assertEqual((a.mail_from, a.login), ("p@b.example", self.ROUTE_A))

    def test_rewritten_sender_is_routed(self):
        devices, users = self.default_devices()
        pw_a = self.new_password(self.ROUTE_A)
        devices["scanner"]["rewrite_sender"] = "desk@a.example"
        peer_b = self.start_peer(users=users)
        peer_a = self.start_peer(users={self.ROUTE_A: pw_a})
        path = self.write_config({"main": self.upstream(peer_b), "alt": self.upstream(peer_a)},
                                 {n: dict(d, upstream="main") for n, d in devices.items()})
        with open(path, "a") as f:
            f.write("[route a]\nsenders = @a.example\nupstream = alt\nuser = %s\npassword = %s\n"
                    % (self.ROUTE_A, pw_a))
        r = self.start_relay(config=path)
        self.send_mail(r, "scan@lan", ["rcpt@example.net"], message(b"From: scan@lan"))
        (a,) = peer_a.wait_messages(1, timeout=30)
        self.assertEqual((a.mail_from, a.login), ("desk@a.example", self.ROUTE_A))
        self.assertEqual(peer_b.messages(), [])

    def test_spool_keeps_route_across_restart(self):
        _, peer_b, closed, r1, users_a, path = self.setup_routes(spool=True, alt_down=True,
                                                                 own=True)
        msg = message(b"From: x@lan")
        qa = self.submit_queued(r1, "s@a.example", ["rcpt@example.net"], msg)
        qo = self.submit_queued(r1, "s@example.org", ["rcpt@example.net"], msg)
        env = parse_env(os.path.join(self.spool, "q", qa + ".env"))
        self.assertEqual((env["route"], env["user"], env["device"]),
                         ("a", self.ROUTE_A, "scanner"))
        self.assertNotIn("route", parse_env(os.path.join(self.spool, "q", qo + ".env")))
        (b,) = peer_b.wait_messages(1, timeout=30)       # the device's upstream is up
        self.assertEqual((b.mail_from, b.login), ("s@example.org", self.SCANNER))
        r1.wait_lines(r"qid=%s .*status=deferred" % qa, timeout=20)
        r1.wait_lines(r"qid=%s .*status=sent" % qo, timeout=20)
        self.wait_for(lambda: qo + ".env" not in self.files("q"), 20, "%s delivered" % qo, r1)
        self.stop_expect_0(r1)
        self.assertEqual(sorted(self.files("q")), [qa + ".env", qa + ".msg"])

        peer_a = self.peer_on(closed, users_a)
        r2 = self.start_relay(config=path)
        (a,) = peer_a.wait_messages(1, timeout=30)
        self.wait_spool_empty(r2)
        self.assertEqual((a.mail_from, a.login), ("s@a.example", self.ROUTE_A))
        self.assertEqual(strip_received(a.content), msg)
        r2.wait_lines(r"qid=%s from=<s@a.example> .* device=scanner route=a attempts=\d+ "
                      r"status=sent" % qa, timeout=20)


if __name__ == "__main__":
    main()
