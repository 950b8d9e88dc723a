#!/usr/bin/python3
"""Per-device policy: message_rate and recipient_rate (token buckets, 450 4.7.1
with a retry hint), the [relay] defaults devices inherit, allowed_senders and
allowed_recipients (550 5.7.1, nothing upstream), "<>" for bounces, and the
rate_limited / policy_refused counters on metrics_listen."""

import re
import signal
import socket

from relaytest import RawClient, RelayTestCase, main, make_message, parse_hostport

RETRY_RE = re.compile(r"try again in (\d+) s$")


class PolicyTest(RelayTestCase):
    ALLOW = "127.0.0.0/24"

    def start_policy(self, relay=None, **device_keys):
        """Peer + relay with the default devices; device_keys: {device: {key: value}}
        (device "nas" matches 127.0.0.4). Returns (peer, relay)."""
        devices, users = self.default_devices()
        if "nas" in device_keys:
            users.setdefault("nas@example.com", self.new_password("nas@example.com"))
            devices["nas"] = {"match": "127.0.0.4", "user": "nas@example.com",
                              "password": users["nas@example.com"]}
        for name, keys in device_keys.items():
            devices[name].update(keys)
        peer = self.start_peer(users=users)
        return peer, self.start_relay({"main": self.upstream(peer)}, devices, relay)

    def client(self, relay, source="127.0.0.2"):
        c = RawClient(relay.host, relay.port, source=source, timeout=15)
        self.addCleanup(c.close)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        return c

    def mail(self, c, subject, mail_from="s@example.org", rcpts=("r@example.net",)):
        """One transaction; returns the first non-positive (stage, code, text) or
        ("done", code, text)."""
        code, text = c.cmd("MAIL FROM:<%s>" % mail_from)
        if code != 250:
            return "mail", code, text[0]
        ok = 0
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            if code != 250:
                if len(rcpts) == 1:
                    c.cmd("RSET")
                    return "rcpt", code, text[0]
            else:
                ok += 1
        code, text = c.cmd("DATA")
        if code != 354:
            return "data", code, text[0]
        c.send(make_message(subject) + b".\r\n")
        code, text = c.reply()
        return "done", code, text[0]

    def assert_rate_limited(self, result, stage, limit, count, per, device):
        st, code, text = result
        self.assertEqual((st, code), (stage, 450), result)
        self.assertTrue(text.startswith("4.7.1 Rate limit %s (%d per %d s) exceeded for "
                                        "device %s, try again in " % (limit, count, per, device)),
                        text)
        m = RETRY_RE.search(text)
        self.assertIsNotNone(m, text)
        self.assertTrue(1 <= int(m.group(1)) <= per, "retry hint %s s for %d per %d s"
                        % (m.group(1), count, per))

    def subjects(self, peer, login):
        return [m.header("Subject") for m in peer.messages() if m.login == login]

    # --- rates ---------------------------------------------------------------------

    def test_message_rate_per_device(self):
        peer, relay = self.start_policy(scanner={"message_rate": "3/minute"})
        c = self.client(relay, "127.0.0.2")
        for i in range(3):
            self.assertEqual(self.mail(c, "scan %d" % i)[:2], ("done", 250))
        # the 4th MAIL, in the same session and in a new one, is refused
        self.assert_rate_limited(self.mail(c, "scan 3"), "mail", "message_rate", 3, 60,
                                 "scanner")
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 503, "MAIL was not refused")
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        c2 = self.client(relay, "127.0.0.2")
        self.assert_rate_limited(self.mail(c2, "scan 4"), "mail", "message_rate", 3, 60,
                                 "scanner")
        self.assertEqual(c2.cmd("QUIT")[0], 221)
        # another device is not affected
        p = self.client(relay, "127.0.0.3")
        for i in range(5):
            self.assertEqual(self.mail(p, "print %d" % i)[:2], ("done", 250))
        self.assertEqual(p.cmd("QUIT")[0], 221)
        self.assertEqual(self.subjects(peer, self.SCANNER), ["scan 0", "scan 1", "scan 2"])
        self.assertEqual(len(self.subjects(peer, self.PRINTER)), 5)
        # the refused MAILs opened no upstream session: one AUTH for the scanner
        self.assertEqual(len([a for a in peer.auth_attempts() if a.login == self.SCANNER]), 1)
        relay.wait_lines(r"\bevent=rate_limited device=scanner limit=message_rate "
                         r"rate=3/60s\b", 2)

    def test_recipient_rate_per_device(self):
        peer, relay = self.start_policy(printer={"recipient_rate": "2/minute"})
        p = self.client(relay, "127.0.0.3")
        self.assertEqual(p.cmd("MAIL FROM:<p@example.org>")[0], 250)
        self.assertEqual(p.cmd("RCPT TO:<a@example.net>")[0], 250)
        self.assertEqual(p.cmd("RCPT TO:<b@example.net>")[0], 250)
        code, text = p.cmd("RCPT TO:<c@example.net>")
        self.assert_rate_limited(("rcpt", code, text[0]), "rcpt", "recipient_rate", 2, 60,
                                 "printer")
        self.assertEqual(p.cmd("DATA")[0], 354)
        p.send(make_message("two of three") + b".\r\n")
        self.assertEqual(p.reply()[0], 250)
        # the bucket is empty for the next message too: no valid recipient, no DATA
        self.assertEqual(p.cmd("MAIL FROM:<p@example.org>")[0], 250)
        code, text = p.cmd("RCPT TO:<d@example.net>")
        self.assertEqual(code, 450, text)
        code, text = p.cmd("DATA")
        self.assertEqual((code, text[0][:5]), (554, "5.5.1"), text)
        self.assertEqual(p.cmd("QUIT")[0], 221)
        (m,) = [m for m in peer.messages() if m.login == self.PRINTER]
        self.assertEqual(m.rcpt_tos, ("a@example.net", "b@example.net"))
        self.assertNotIn("TO:<c@example.net>", [a for _, _, a in peer.commands("RCPT")])
        # another device sends to five recipients
        s = self.client(relay, "127.0.0.2")
        rcpts = ["s%d@example.net" % i for i in range(5)]
        self.assertEqual(self.mail(s, "five", rcpts=rcpts)[:2], ("done", 250))
        (m,) = [m for m in peer.messages() if m.login == self.SCANNER]
        self.assertEqual(m.rcpt_tos, tuple(rcpts))

    def test_relay_rate_is_the_default_for_each_device(self):
        # [relay] message_rate = 2/minute applies to printer and default, each with
        # its own bucket; scanner sets its own; nas lifts it with "unlimited"
        peer, relay = self.start_policy(relay={"message_rate": "2/minute"},
                                        scanner={"message_rate": "5/minute"},
                                        nas={"message_rate": "unlimited"})
        for source, device, allowed in (("127.0.0.3", "printer", 2), ("127.0.0.1", "default", 2),
                                        ("127.0.0.2", "scanner", 5), ("127.0.0.4", "nas", 8)):
            with self.subTest(device=device):
                c = self.client(relay, source)
                for i in range(allowed):
                    self.assertEqual(self.mail(c, "%s %d" % (device, i))[:2], ("done", 250),
                                     "%s message %d of %d" % (device, i + 1, allowed))
                if device == "nas":
                    continue
                per = {"scanner": 5}.get(device, 2)
                self.assert_rate_limited(self.mail(c, "%s over" % device), "mail",
                                         "message_rate", per, 60, device)
                self.assertEqual(c.cmd("QUIT")[0], 221)
        logins = [m.login for m in peer.messages()]
        self.assertEqual((logins.count(self.PRINTER), logins.count(self.OFFICE),
                          logins.count(self.SCANNER), logins.count("nas@example.com")),
                         (2, 2, 5, 8))

    def test_message_rate_survives_reload(self):
        # A SIGHUP with an unchanged configuration must not hand every device a
        # fresh bucket (config management and log rotation send SIGHUP).
        peer, relay = self.start_policy(scanner={"message_rate": "2/hour"})
        c = self.client(relay, "127.0.0.2")
        for i in range(2):
            self.assertEqual(self.mail(c, "before %d" % i)[:2], ("done", 250))
        self.assert_rate_limited(self.mail(c, "before over"), "mail", "message_rate", 2, 3600,
                                 "scanner")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"\bevent=reload status=ok\b")
        c2 = self.client(relay, "127.0.0.2")
        result = self.mail(c2, "after reload")
        self.assertEqual(result[:2], ("mail", 450),
                         "after SIGHUP (same config) the scanner's used-up message_rate "
                         "2/hour was reset: %r" % (result,))
        self.assertEqual(self.subjects(peer, self.SCANNER), ["before 0", "before 1"])

    def test_rate_per_client_address(self):
        # rate_limit_by = address (the default): two clients of [device default] each
        # have their own bucket, so one runaway host does not block its neighbour
        peer, relay = self.start_policy(default={"message_rate": "2/hour"})
        a = self.client(relay, "127.0.0.5")
        for i in range(2):
            self.assertEqual(self.mail(a, "a %d" % i)[:2], ("done", 250))
        self.assert_rate_limited(self.mail(a, "a over"), "mail", "message_rate", 2, 3600,
                                 "default")
        b = self.client(relay, "127.0.0.6")
        for i in range(2):
            self.assertEqual(self.mail(b, "b %d" % i)[:2], ("done", 250),
                             "127.0.0.6 blocked by 127.0.0.5's message_rate")
        self.assert_rate_limited(self.mail(b, "b over"), "mail", "message_rate", 2, 3600,
                                 "default")
        # a's bucket is still empty in a new session, and after a reload
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"\bevent=reload status=ok\b")
        a2 = self.client(relay, "127.0.0.5")
        self.assert_rate_limited(self.mail(a2, "a after reload"), "mail", "message_rate", 2,
                                 3600, "default")
        self.assertEqual(sorted(self.subjects(peer, self.OFFICE)), ["a 0", "a 1", "b 0", "b 1"])
        relay.wait_lines(r"\bevent=rate_limited device=default limit=message_rate "
                         r"rate=2/3600s client=127\.0\.0\.5 by=address\b", 2)
        relay.wait_lines(r"\bevent=rate_limited device=default limit=message_rate "
                         r"rate=2/3600s client=127\.0\.0\.6 by=address\b", 1)

    def test_recipient_rate_per_client_address(self):
        peer, relay = self.start_policy(default={"recipient_rate": "1/hour"})
        a = self.client(relay, "127.0.0.5")
        self.assertEqual(self.mail(a, "a 0")[:2], ("done", 250))
        self.assertEqual(a.cmd("MAIL FROM:<s@example.org>")[0], 250)
        code, text = a.cmd("RCPT TO:<r@example.net>")
        self.assert_rate_limited(("rcpt", code, text[0]), "rcpt", "recipient_rate", 1, 3600,
                                 "default")
        b = self.client(relay, "127.0.0.6")
        self.assertEqual(self.mail(b, "b 0")[:2], ("done", 250))
        self.assertEqual(sorted(self.subjects(peer, self.OFFICE)), ["a 0", "b 0"])

    def test_rate_by_device_shares_the_bucket(self):
        # rate_limit_by = device: every client of the device shares one bucket (the
        # behaviour before per-address limits), set in [relay] or in the device
        for where in ("relay", "device"):
            with self.subTest(where=where):
                if where == "relay":
                    peer, relay = self.start_policy(relay={"rate_limit_by": "device"},
                                                    default={"message_rate": "2/hour"})
                else:
                    peer, relay = self.start_policy(default={"message_rate": "2/hour",
                                                             "rate_limit_by": "device"})
                a = self.client(relay, "127.0.0.5")
                for i in range(2):
                    self.assertEqual(self.mail(a, "a %d" % i)[:2], ("done", 250))
                b = self.client(relay, "127.0.0.6")
                self.assert_rate_limited(self.mail(b, "b over"), "mail", "message_rate", 2,
                                         3600, "default")
                self.assertEqual(self.subjects(peer, self.OFFICE), ["a 0", "a 1"])
                relay.wait_lines(r"\bevent=rate_limited device=default limit=message_rate "
                                 r"rate=2/3600s client=127\.0\.0\.6 by=device\b", 1)

    # --- allowed_senders / allowed_recipients ------------------------------------------

    def test_allowed_senders(self):
        peer, relay = self.start_policy(
            scanner={"allowed_senders": "boss@example.com, @corp.example, partner.example"})
        c = self.client(relay, "127.0.0.2")
        allowed = ["boss@example.com", "BOSS@Example.COM", "anyone@corp.example",
                   "x@partner.example", "x@PARTNER.example"]
        refused = ["other@example.com", "boss@example.com.evil", "x@sub.corp.example",
                   "x@corp.example.evil", "corp.example@evil.example", "boss@example.co", ""]
        for a in refused:
            with self.subTest(sender=a):
                code, text = c.cmd("MAIL FROM:<%s>" % a)
                self.assertEqual((code, text[0]),
                                 (550, "5.7.1 Sender <%s> not allowed for device scanner" % a))
                self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 503,
                                 "a refused MAIL left a transaction open")
        # nothing reached upstream for the refused senders: not even a connection
        peer.wait_idle(5)
        self.assertEqual(peer.connections(), [], "refused MAIL opened an upstream session")
        for a in allowed:
            with self.subTest(sender=a):
                self.assertEqual(self.mail(c, "from " + a, mail_from=a)[:2], ("done", 250))
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual([m.mail_from for m in peer.messages()], allowed)
        relay.wait_lines(r"\bevent=policy_refused device=scanner from=<", len(refused))
        # the printer has no list: any sender
        p = self.client(relay, "127.0.0.3")
        self.assertEqual(self.mail(p, "printer", mail_from="other@example.com")[:2],
                         ("done", 250))
        self.assertEqual(peer.messages()[-1].login, self.PRINTER)

    def test_allowed_recipients(self):
        peer, relay = self.start_policy(
            printer={"allowed_recipients": "example.net, boss@example.org"})
        p = self.client(relay, "127.0.0.3")
        self.assertEqual(p.cmd("MAIL FROM:<p@example.org>")[0], 250)
        self.assertEqual(p.cmd("RCPT TO:<a@example.net>")[0], 250)
        code, text = p.cmd("RCPT TO:<b@other.example>")
        self.assertEqual((code, text[0]),
                         (550, "5.7.1 Recipient <b@other.example> not allowed for device printer"))
        code, text = p.cmd("RCPT TO:<other@example.org>")
        self.assertEqual(code, 550, text)
        self.assertEqual(p.cmd("RCPT TO:<Boss@Example.org>")[0], 250)
        self.assertEqual(p.cmd("DATA")[0], 354)
        p.send(make_message("filtered") + b".\r\n")
        self.assertEqual(p.reply()[0], 250)
        # only refused recipients: no DATA
        self.assertEqual(p.cmd("MAIL FROM:<p@example.org>")[0], 250)
        self.assertEqual(p.cmd("RCPT TO:<x@other.example>")[0], 550)
        self.assertEqual(p.cmd("DATA")[0], 554)
        self.assertEqual(p.cmd("QUIT")[0], 221)
        (m,) = peer.all_messages()
        self.assertEqual(m.rcpt_tos, ("a@example.net", "Boss@Example.org"))
        rcpts = [a for _, _, a in peer.commands("RCPT")]
        self.assertEqual(rcpts, ["TO:<a@example.net>", "TO:<Boss@Example.org>"],
                         "a refused recipient reached upstream")
        # the scanner has no list
        s = self.client(relay, "127.0.0.2")
        self.assertEqual(self.mail(s, "anywhere", rcpts=["x@other.example"])[:2],
                         ("done", 250))

    def test_null_sender_pattern(self):
        peer, relay = self.start_policy(scanner={"allowed_senders": "<>, @example.com"},
                                        printer={"allowed_senders": "@example.com"})
        s = self.client(relay, "127.0.0.2")
        self.assertEqual(self.mail(s, "bounce", mail_from="")[:2], ("done", 250))
        self.assertEqual(self.mail(s, "normal", mail_from="a@example.com")[:2], ("done", 250))
        code, text = s.cmd("MAIL FROM:<a@other.example>")
        self.assertEqual(code, 550, text)
        # without "<>" in the list, bounces are refused
        p = self.client(relay, "127.0.0.3")
        code, text = p.cmd("MAIL FROM:<>")
        self.assertEqual((code, text[0]),
                         (550, "5.7.1 Sender <> not allowed for device printer"))
        self.assertEqual([(m.mail_from, m.header("Subject")) for m in peer.messages()],
                         [("", "bounce"), ("a@example.com", "normal")])

    def test_relay_policy_inherited_and_lifted(self):
        # [relay] lists apply to devices without their own; an empty value lifts them
        peer, relay = self.start_policy(
            relay={"allowed_senders": "@example.com", "allowed_recipients": "example.net"},
            printer={"allowed_senders": "", "allowed_recipients": ""})
        s = self.client(relay, "127.0.0.2")
        self.assertEqual(s.cmd("MAIL FROM:<x@other.example>")[0], 550)
        self.assertEqual(s.cmd("MAIL FROM:<x@example.com>")[0], 250)
        self.assertEqual(s.cmd("RCPT TO:<y@other.example>")[0], 550)
        self.assertEqual(s.cmd("RSET")[0], 250)
        d = self.client(relay, "127.0.0.1")
        self.assertEqual(d.cmd("MAIL FROM:<x@other.example>")[0], 550)
        p = self.client(relay, "127.0.0.3")
        self.assertEqual(self.mail(p, "lifted", mail_from="x@other.example",
                                   rcpts=["y@other.example"])[:2], ("done", 250))
        (m,) = peer.messages()
        self.assertEqual((m.login, m.mail_from, m.rcpt_tos),
                         (self.PRINTER, "x@other.example", ("y@other.example",)))

    # --- metrics ---------------------------------------------------------------------

    def scrape(self, relay):
        addr = parse_hostport(relay.wait_log(r"\bmetrics event=listening\b.*?\baddr=(\S+)").group(1))
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1."), head[:100])
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, v = line.rpartition(" ")
                values[name] = float(v)
        return values

    def test_metrics_counters(self):
        peer, relay = self.start_policy(relay={"metrics_listen": "127.0.0.1:0"},
                                        scanner={"message_rate": "1/hour",
                                                 "allowed_senders": "@example.com"},
                                        printer={"allowed_recipients": "example.net"})
        before = self.scrape(relay)
        self.assertEqual((before["relay25_rate_limited_total"],
                          before["relay25_policy_refused_total"]), (0, 0))
        s = self.client(relay, "127.0.0.2")
        self.assertEqual(s.cmd("MAIL FROM:<x@other.example>")[0], 550)   # policy 1
        self.assertEqual(self.mail(s, "one", mail_from="a@example.com")[:2], ("done", 250))
        self.assertEqual(s.cmd("MAIL FROM:<a@example.com>")[0], 450)     # rate 1
        self.assertEqual(s.cmd("MAIL FROM:<b@example.com>")[0], 450)     # rate 2
        p = self.client(relay, "127.0.0.3")
        self.assertEqual(p.cmd("MAIL FROM:<p@example.org>")[0], 250)
        self.assertEqual(p.cmd("RCPT TO:<x@other.example>")[0], 550)     # policy 2
        self.assertEqual(p.cmd("RCPT TO:<y@example.net>")[0], 250)
        after = self.scrape(relay)
        self.assertEqual((after["relay25_rate_limited_total"],
                          after["relay25_policy_refused_total"],
                          after['relay25_messages_total{status="sent"}']), (2, 2, 1))


if __name__ == "__main__":
    main()
