#!/usr/bin/python3
"""Every reply relay25 sends after EHLO carries an enhanced status code (RFC 2034 §3,
RFC 3463), including replies passed through from an upstream that sends none:
those get one derived from the reply code and the command, their text kept.
Intermediate 3xx replies (354, 334) have no enhanced-code class and are exempt."""

import base64
import os
import re
import subprocess

import peer as peer_mod
from peer import Peer
from relaytest import RELAY25_BIN, RawClient, RelayTestCase, main, make_message

ESC_RE = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}( |$)")


class NoCodesHandler(peer_mod._Handler):
    """The test peer, answering like an old server: no enhanced status codes."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("busy"):
            return "451 Try again later"
        if local.startswith("refused"):
            return "550 Sender not allowed here"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 No such user here"
        if local.startswith("full"):
            return "452 Too many recipients"
        if local.startswith("multi"):
            return "550-Mailbox unavailable\r\n550-See the policy page\r\n550 Go away"
        envelope.rcpt_tos.append(address)
        return "250 Recipient ok"

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        return re.sub(r"^(\d\d\d) [245]\.\d+\.\d+ ", r"\1 ", reply)


class RecordingClient(RawClient):
    """RawClient that keeps every reply line it read."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines = []

    def readline(self):
        line = super().readline()
        self.lines.append(line.decode("utf-8", "replace"))
        return line


class ReplyCodesTest(RelayTestCase):
    def start_nocodes(self):
        """The no-codes peer, and a relay with inbound AUTH (alice, in clear on
        loopback) so that AUTH's replies are covered too."""
        devices, users = self.default_devices()
        p = Peer(tls="starttls", cert=self.pki.cert_file, key=self.pki.key_file, users=users)
        p._controller.handler = NoCodesHandler(p)
        p.start()
        self.addCleanup(p.stop)
        self.alice = self.new_password("alice", "in")
        r = subprocess.run([RELAY25_BIN, "passwd", "alice"], input=(self.alice + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        path = os.path.join(self.dir, "users")
        with open(path, "w") as f:
            f.write(r.stdout.decode().strip() + "\n")
        rel = {"users_file": path, "allow_plaintext_auth": "yes", "auth_fail_delay": "0"}
        return p, self.start_relay({"main": self.upstream(p)}, devices, rel)

    def test_every_reply_after_ehlo_has_an_enhanced_code(self):
        peer, relay = self.start_nocodes()
        c = RecordingClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertIn("ENHANCEDSTATUSCODES", "\n".join(c.lines))
        c.lines = []  # everything from here on must carry one

        got = {}

        def step(name, line, want_code):
            code, text = c.cmd(line)
            self.assertEqual(code, want_code, "%s: %s %s" % (name, code, text))
            got[name] = text
            return text

        # relay25's own replies, outside and inside a transaction
        step("noop", "NOOP", 250)
        step("help", "HELP", 214)
        step("vrfy", "VRFY postmaster", 252)
        step("rset", "RSET", 250)
        step("unknown", "FROB", 500)
        step("mail_syntax", "MAIL TO:<x@y>", 501)
        step("rcpt_first", "RCPT TO:<a@example.net>", 503)
        step("data_first", "DATA", 503)
        step("auth_mech", "AUTH FROB", 504)
        step("auth_bad", "AUTH PLAIN " + plain("alice", "wrong"), 535)
        step("auth_login", "AUTH LOGIN", 334)
        step("auth_user", base64.b64encode(b"alice").decode(), 334)
        step("auth_cancel", "*", 501)
        step("auth_syntax", "AUTH PLAIN !!!", 501)
        step("auth", "AUTH PLAIN " + plain("alice", self.alice), 235)
        step("auth_twice", "AUTH PLAIN " + plain("alice", self.alice), 503)
        step("starttls", "STARTTLS", 502)  # no tls_cert_file: not offered
        step("param", "MAIL FROM:<a@example.org> FROB=1", 555)
        step("too_big", "MAIL FROM:<a@example.org> SIZE=999999999999", 552)

        # passed through from upstream, which sends no enhanced codes
        step("mail_4xx", "MAIL FROM:<busy@example.org>", 451)
        step("mail_5xx", "MAIL FROM:<refused@example.org>", 550)
        step("mail", "MAIL FROM:<sender@example.org>", 250)
        step("nested", "MAIL FROM:<sender@example.org>", 503)
        step("rcpt_bad", "RCPT TO:<reject@example.net>", 550)
        step("rcpt_full", "RCPT TO:<full@example.net>", 452)
        step("rcpt_multi", "RCPT TO:<multi@example.net>", 550)
        step("rcpt", "RCPT TO:<rcpt@example.net>", 250)
        step("data", "DATA", 354)
        c.send(make_message("codes", headers=[b"X-Test-Reply: 250 Message accepted"]) + b".\r\n")
        got["dot"] = c.reply()[1]
        step("mail2", "MAIL FROM:<sender@example.org>", 250)
        step("rcpt2", "RCPT TO:<rcpt@example.net>", 250)
        step("data2", "DATA", 354)
        c.send(make_message("codes", headers=[b"X-Test-Reply: 554 Transaction failed"]) + b".\r\n")
        code, got["dot_5xx"] = c.reply()
        self.assertEqual(code, 554)
        step("rset2", "RSET", 250)
        step("quit", "QUIT", 221)

        # the derived codes follow the command (Postfix's wording); text kept
        self.assertEqual(got["mail"], ["2.1.0 OK"])
        self.assertEqual(got["rcpt"], ["2.1.5 Recipient ok"])
        self.assertEqual(got["dot"], ["2.0.0 Message accepted"])
        self.assertEqual(got["rcpt_bad"], ["5.1.1 No such user here"])
        self.assertEqual(got["rcpt_full"], ["4.5.3 Too many recipients"])
        self.assertEqual(got["mail_4xx"], ["4.3.0 Try again later"])
        self.assertEqual(got["mail_5xx"], ["5.1.0 Sender not allowed here"])
        self.assertEqual(got["rcpt_multi"], ["5.1.1 Mailbox unavailable",
                                             "5.1.1 See the policy page", "5.1.1 Go away"])
        self.assertEqual(got["dot_5xx"], ["5.0.0 Transaction failed"])
        # the upstream really sent none (so the codes above are relay25's)
        self.assertEqual(peer.messages()[0].reply, "250 Message accepted")

        bad = []
        for line in c.lines:
            code = line[:3]
            if code[0] in "13":
                continue  # 354 / 334: no enhanced-code class exists (RFC 3463 §3.1)
            m = ESC_RE.match(line[4:])
            if not m or m.group(1) != code[0]:
                bad.append(line)
        self.assertEqual(bad, [], "reply lines without a matching enhanced status code")
        self.assertTrue(any(line.startswith("354") for line in c.lines))
        self.assertGreater(len(c.lines), 25)

    def test_upstream_codes_kept(self):
        # an upstream that does send enhanced codes: its own stay, nothing doubled
        peer, relay = self.start_default()
        c = RecordingClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        c.reply()
        c.cmd("EHLO client.test")
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>")[0], 250)
        code, text = c.cmd("RCPT TO:<reject@example.net>")
        self.assertEqual((code, text),
                         (550, ["5.1.1 <reject@example.net>: Recipient address rejected: "
                                "User unknown"]))
        self.assertEqual(c.cmd("RCPT TO:<rcpt@example.net>"), (250, ["2.1.5 OK"]))
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("kept") + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250)
        self.assertTrue(text[0].startswith("2.0.0 OK: queued as "), text)
        c.cmd("QUIT")


def plain(login, password):
    return base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()


if __name__ == "__main__":
    main()
