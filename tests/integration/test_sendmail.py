#!/usr/bin/python3
"""`relay25 sendmail`: the sendmail(8) interface. Messages from stdin reach the
test upstream directly (verified TLS + AUTH with the device's credentials) or
through a running relay25 daemon ([sendmail] submit); recipients from arguments
and -t; Bcc stripped; missing From/Date/Message-ID added; sysexits codes."""

import os
import re
import subprocess

from relaytest import RELAY25_BIN, RelayTestCase, closed_port, main, strip_received

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE, EX_TEMPFAIL, EX_CONFIG = 64, 65, 67, 69, 75, 78


def clean_env(**extra):
    """The caller's environment without RELAY25_* (so no outer config leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    env.update(extra)
    return env


class SendmailTest(RelayTestCase):
    # helpers ------------------------------------------------------------------

    def direct(self, peer=None, port=None, sendmail=None, devices=None):
        """A config whose [device default] sends to peer (or a bare port)."""
        users = {}
        if devices is None:
            pw = self.new_password(self.OFFICE)
            users[self.OFFICE] = pw
            devices = {"default": {"user": self.OFFICE, "password": pw}}
        path = self.write_config({"main": self.upstream(peer, port=port)}, devices,
                                 name="sendmail-%d.ini" % len(os.listdir(self.dir)))
        if sendmail:
            with open(path, "a") as f:
                f.write("[sendmail]\n" + "".join("%s = %s\n" % kv for kv in sendmail.items()))
        return path, users

    def sendmail(self, args, data, config=None, env=None, argv0=None, timeout=60):
        """Runs relay25 sendmail ARGS with DATA on stdin; returns CompletedProcess
        with str stdout/stderr."""
        cmd = [argv0] if argv0 else [RELAY25_BIN, "sendmail"]
        if config:
            cmd += ["-C", config]
        cmd += list(args)
        extra = {"RELAY25_HELD_DIR": os.path.join(self.dir, "held")}   # never the real home
        extra.update(env or {})
        r = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(**extra), timeout=timeout)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(r.returncode, 0, "killed by signal: %s" % r.stderr)
        self.assert_no_secrets(r.stdout + r.stderr, "sendmail output")
        return r

    def direct_peer(self, user=None):
        """A peer with one user and a config whose [device default] logs in to it."""
        user = user or self.OFFICE
        pw = self.new_password(user)
        peer = self.start_peer(users={user: pw})
        config, _ = self.direct(peer, devices={"default": {"user": user, "password": pw}})
        return peer, config

    def one_message(self, peer):
        msgs = peer.wait_messages(1, timeout=10)
        self.assertEqual(len(msgs), 1, msgs)
        return msgs[0]

    def symlink(self, name):
        path = os.path.join(self.dir, name)
        os.symlink(os.path.abspath(RELAY25_BIN), path)
        return path

    def assert_one_error_line(self, r):
        lines = [li for li in r.stderr.splitlines() if li.strip()]
        self.assertTrue(lines, "no error on stderr")
        for li in lines:
            self.assertTrue(li.startswith("relay25-sendmail: "), r.stderr)

    # delivery -----------------------------------------------------------------

    def test_t_i_recipients_from_headers_bcc_stripped(self):
        peer, config = self.direct_peer()
        msg = (b"From: App <app@example.org>\n"
               b"To: one@example.net, \"Two, Second\" <two@example.net>\n"
               b"Cc: copies: three@example.net (Third);\n"
               b"Bcc: hidden@example.net,\n"
               b"  hidden2@example.net\n"
               b"Subject: report\n"
               b"Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
               b"Message-ID: <fixed@example.org>\n"
               b"\n"
               b"line one\n"
               b".\n"
               b"..two dots\n"
               b"last\n")
        r = self.sendmail(["-t", "-i"], msg, config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        m = self.one_message(peer)
        self.assertEqual(m.login, self.OFFICE)
        self.assertEqual(m.tls, "starttls")
        self.assertEqual(m.rcpt_tos, ("one@example.net", "two@example.net", "three@example.net",
                                      "hidden@example.net", "hidden2@example.net"))
        self.assertEqual(m.mail_from, self.OFFICE)
        self.assertNotIn(b"hidden", m.content)
        self.assertNotIn(b"Bcc", m.content)
        self.assertEqual(m.header("Message-ID"), "<fixed@example.org>")
        self.assertEqual(m.header("Date"), "Thu, 01 Jan 2026 00:00:00 +0000")
        self.assertEqual(m.header("From"), "App <app@example.org>")
        self.assertEqual(m.content.count(b"Message-ID"), 1)
        # LF became CRLF; the lone "." stays content with -i; dots survive stuffing
        self.assertTrue(m.content.endswith(b"\r\n\r\nline one\r\n.\r\n..two dots\r\nlast\r\n"),
                        m.content)
        self.assertNotIn(b"\n", m.content.replace(b"\r\n", b""))

    def test_f_and_recipient_arguments_headers_added(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["-f", "a@x.example", "b@y.example", "c@y.example, d@y.example"],
                          b"Subject: no from, no date\n\nbody\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertEqual(m.mail_from, "a@x.example")
        self.assertEqual(m.rcpt_tos, ("b@y.example", "c@y.example", "d@y.example"))
        self.assertEqual(m.header("From"), "a@x.example")
        self.assertRegex(m.header("Date"),
                         r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
        self.assertRegex(m.header("Message-ID"), r"^<[0-9a-f]{16}\.[0-9a-f]+@relay\.test>$")
        self.assertEqual(m.header("Subject"), "no from, no date")
        self.assertTrue(m.content.endswith(b"\r\n\r\nbody\r\n"), m.content)

    def test_f_attached_and_F_full_name(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["-oi", "-fcron@x.example", "-F", "Backup, nightly", "--",
                           "b@y.example"], b"Subject: s\n\nok\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertEqual(m.mail_from, "cron@x.example")
        self.assertEqual(m.header("From"), '"Backup, nightly" <cron@x.example>')

    def test_message_without_headers_and_lone_dot_ends_input(self):
        peer, config = self.direct_peer()
        # cron style: -FCronDaemon -i -B8BITMIME -oem; here without -i, so "." ends input
        r = self.sendmail(["-FCronDaemon", "-B8BITMIME", "-oem", "-odi", "-G", "-U",
                           "-N", "never", "-R", "hdrs", "-V", "envid", "-L", "tag", "-h", "5",
                           "-O", "Opt=1", "-X", "/dev/null", "b@y.example"],
                          b"just a line: not a header\r\nsecond\n.\nnot sent\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        head, _, body = m.content.partition(b"\r\n\r\n")
        self.assertEqual(body, b"just a line: not a header\r\nsecond\r\n")
        self.assertEqual(m.header("From"), "CronDaemon <%s>" % self.OFFICE)

    def test_default_sender_and_relay25_from(self):
        peer, config = self.direct_peer()
        self.assertEqual(self.sendmail(["b@y.example"], b"\nx\n", config).returncode, 0)
        r = self.sendmail(["b@y.example", "localuser"], b"\nx\n", config,
                          env={"RELAY25_FROM": "env@x.example"})
        self.assertEqual(r.returncode, 0, r.stderr)
        a, b = peer.wait_messages(2)
        self.assertEqual(a.mail_from, self.OFFICE)
        self.assertEqual(b.mail_from, "env@x.example")
        self.assertEqual(b.rcpt_tos, ("b@y.example", "localuser@relay.test"))

    def test_login_at_hostname_without_address_login(self):
        peer, config = self.direct_peer("apikey")
        r = self.sendmail(["-f", "<>", "b@y.example"], b"\nbounce\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.sendmail(["b@y.example"], b"\nx\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        a, b = peer.wait_messages(2)
        self.assertEqual(a.mail_from, "")
        self.assertRegex(a.header("From"), r"^[^@<>]+@relay\.test$")
        self.assertRegex(b.mail_from, r"^[^@]+@relay\.test$")

    def test_environment_config(self):
        users = {self.OFFICE: self.new_password(self.OFFICE)}
        peer = self.start_peer(users=users)
        env = {"RELAY25_UPSTREAM": "127.0.0.1:%d" % peer.port, "RELAY25_TLS": "starttls",
               "RELAY25_CA_FILE": self.pki.ca_file, "RELAY25_SERVER_NAME": "localhost",
               "RELAY25_USER": self.OFFICE, "RELAY25_PASSWORD": users[self.OFFICE],
               "RELAY25_HOSTNAME": "env.test"}
        r = self.sendmail(["b@y.example"], b"Subject: env\n\nx\n", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertEqual(m.login, self.OFFICE)
        self.assertRegex(m.header("Message-ID"), r"@env\.test>$")

    def test_large_message_streams(self):
        peer, config = self.direct_peer()
        lines = [b".%06d %s" % (i, b"x" * 70) for i in range(80000)]   # ~6 MiB, leading dots
        body = b"\n".join(lines) + b"\n"
        r = self.sendmail(["-i", "b@y.example"], b"Subject: big\n\n" + body, config,
                          timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertTrue(m.content.endswith(b"\r\n\r\n" + body.replace(b"\n", b"\r\n")))
        sizes = [int(o[5:]) for o in m.mail_options if o.startswith("SIZE=")]
        self.assertEqual(len(sizes), 1, m.mail_options)
        self.assertGreaterEqual(sizes[0], len(body))

    def test_8bit_body_declared(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["-F", "Jürgen", "b@y.example"],
                          "Subject: grüße\n\nÄpfel\n".encode(), config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertIn("BODY=8BITMIME", m.mail_options)
        self.assertEqual(m.header("From"), "=?UTF-8?B?SsO8cmdlbg==?= <%s>" % self.OFFICE)

    # through a relay25 daemon -------------------------------------------------

    def test_submit_to_daemon(self):
        peer, relay = self.start_default()
        # The sendmail config's own upstream is a closed port: the message can only
        # arrive through the daemon, which adds its Received: and uses its device.
        sock, port = closed_port()
        self.addCleanup(sock.close)
        config, _ = self.direct(port=port, sendmail={"submit": "127.0.0.1:%d" % relay.port})
        r = self.sendmail(["-t", "-v"], b"To: r@example.net\nBcc: b@example.net\n"
                          b"Subject: via daemon\n\nhello\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertEqual(m.login, self.OFFICE)       # the daemon's device for 127.0.0.1
        self.assertEqual(m.rcpt_tos, ("r@example.net", "b@example.net"))
        rest = strip_received(m.content)
        self.assertNotIn(b"Bcc", rest)
        self.assertIn("plain SMTP", r.stderr)
        self.assertIn(">>> MAIL FROM:<", r.stderr)
        self.assertRegex(r.stderr, r"<<< 250 ")
        relay.wait_lines(r"status=sent")

    def test_submit_daemon_down(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        config, _ = self.direct(port=port, sendmail={"submit": "127.0.0.1:%d" % port})
        r = self.sendmail(["r@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn("relay25 daemon 127.0.0.1:%d connection failed" % port, r.stderr)
        self.assert_one_error_line(r)

    # failures -------------------------------------------------------------------

    def test_upstream_down(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        config, _ = self.direct(port=port)
        r = self.sendmail(["r@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertRegex(r.stderr, r"^relay25-sendmail: upstream 127\.0\.0\.1:%d connection "
                                   r"failed: .*message not sent\n$" % port)

    def test_auth_failure(self):
        users = {self.OFFICE: self.new_password(self.OFFICE)}
        peer = self.start_peer(users=users)
        wrong = self.new_password(self.OFFICE, "wrong")
        config, _ = self.direct(peer, devices={"default": {"user": self.OFFICE,
                                                             "password": wrong}})
        r = self.sendmail(["-v", "r@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn("authentication failed: 535", r.stderr)
        self.assertEqual(peer.all_messages(), [])

    def test_all_recipients_refused(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["reject-a@example.net", "reject-b@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn("recipient <reject-a@example.net> refused by 127.0.0.1:%d: 550 5.1.1"
                      % peer.port, r.stderr)
        self.assertIn("message not sent", r.stderr)
        self.assertEqual(peer.all_messages(), [])

    def test_one_recipient_refused_sends_nothing(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["ok@example.net", "reject-b@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn("1 of 2 recipients refused; message not sent", r.stderr)
        peer.wait_idle(5)
        self.assertEqual(peer.all_messages(), [])

    def test_pipelined_envelope_data_only_when_all_accepted(self):
        """RFC 2920: against an upstream offering PIPELINING, MAIL and every RCPT go
        in one flight; DATA waits for the RCPT replies (all or nothing), so a refused
        recipient means no DATA at all."""
        user = self.OFFICE
        pw = self.new_password(user)
        peer = self.start_peer(users={user: pw}, pipelining=True)
        config, _ = self.direct(peer, devices={"default": {"user": user, "password": pw}})
        r = self.sendmail(["a@example.net", "b@example.net"], b"Subject: p\n\n.x\n", config)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = self.one_message(peer)
        self.assertEqual(m.rcpt_tos, ("a@example.net", "b@example.net"))
        self.assertTrue(m.content.endswith(b"\r\n\r\n.x\r\n"), m.content)
        conn = next(c for c in peer.connections() if "MAIL" in c.verbs())
        self.assertEqual(conn.buffered[:2], ("MAIL", "RCPT"), conn)
        self.assertNotIn("DATA", conn.buffered, conn)
        r = self.sendmail(["ok@example.net", "reject-b@example.net"], b"\nx\n", config)
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn("1 of 2 recipients refused; message not sent", r.stderr)
        peer.wait_idle(5)
        self.assertEqual(len(peer.all_messages()), 1)
        conns = [c for c in peer.connections() if "MAIL" in c.verbs()]
        self.assertEqual(len(conns), 2, conns)
        self.assertNotIn("DATA", conns[1].verbs(), conns[1])

    def test_5xx_and_4xx_at_end_of_data(self):
        peer, config = self.direct_peer()
        r = self.sendmail(["r@example.net"], b"X-Test-Reply: 554\n\nx\n", config)
        self.assertEqual(r.returncode, EX_UNAVAILABLE, r.stderr)
        self.assertRegex(r.stderr, r"^relay25-sendmail: message refused by 127\.0\.0\.1:\d+: "
                                   r"554 5\.7\.1 spam\n$")
        r = self.sendmail(["r@example.net"], b"X-Test-Reply: 451\n\nx\n", config)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn("451 4.3.0 try later", r.stderr)
        self.assertEqual(peer.messages(), [])

    def test_bad_input(self):
        peer, config = self.direct_peer()
        cases = [(["-t"], b"Subject: nobody\n\nx\n", "no recipients"),
                 (["-t"], b"To: Some Body <a@b.example\n\nx\n", "'<' without '>'"),
                 (["-t"], b'To: "open quote <a@b.example>\n\nx\n', "unterminated"),
                 (["-t"], b"To: John Smith\n\nx\n", "not an address"),
                 (["bad\raddress@example.net"], b"\nx\n", "bad recipient"),
                 (["a@b.example>"], b"\nx\n", "without"),
                 (["x@\"y.example"], b"\nx\n", "unterminated"),
                 (["-f", "a b@x", "r@example.net"], b"\nx\n", "bad sender"),
                 (["-t"], b"X-Big: " + b"y" * (300 * 1024) + b"\n\nx\n", "larger than 256 KiB"),
                 ([], b"\nx\n", "no recipients")]
        for args, data, want in cases:
            with self.subTest(args=args, want=want):
                r = self.sendmail(args, data, config)
                self.assertEqual(r.returncode, EX_DATAERR, r.stderr)
                self.assertIn(want, r.stderr)
        self.assertEqual(peer.commands("MAIL"), [])

    def test_bad_option_and_config(self):
        r = self.sendmail(["-Y", "r@example.net"], b"")
        self.assertEqual(r.returncode, EX_USAGE)
        self.assertIn("unknown option -Y", r.stderr)
        self.assertIn("usage: sendmail", r.stderr)
        r = self.sendmail(["-bd"], b"")       # a daemon mode: not ours (-bs is, since #13)
        self.assertEqual(r.returncode, EX_USAGE)
        r = self.sendmail(["-f"], b"")
        self.assertEqual(r.returncode, EX_USAGE)
        r = self.sendmail(["r@example.net"], b"\nx\n", os.path.join(self.dir, "missing.conf"))
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        r = self.sendmail(["r@example.net"], b"\nx\n", env={"RELAY25_CONFIG": "/nonexistent"})
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)

    # queue and names --------------------------------------------------------------

    def test_mailq_and_bp_and_q(self):
        r = self.sendmail(["-bp"], b"")
        self.assertEqual((r.returncode, r.stdout), (0, "Mail queue is empty\n"))
        r = self.sendmail([], b"", argv0=self.symlink("mailq"))
        self.assertEqual((r.returncode, r.stdout), (0, "Mail queue is empty\n"))
        r = self.sendmail(["-q"], b"")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
        r = self.sendmail(["-q30m"], b"")
        self.assertEqual(r.returncode, 0)

    def test_called_as_sendmail(self):
        peer, config = self.direct_peer()
        link = self.symlink("sendmail")
        r = self.sendmail(["-ti"], b"To: r@example.net\nSubject: link\n\nx\n", argv0=link,
                          env={"RELAY25_CONFIG": config})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.one_message(peer).rcpt_tos, ("r@example.net",))
        r = self.sendmail(["-Y"], b"", argv0=link)
        self.assertEqual(r.returncode, EX_USAGE)
        self.assertIn("usage: sendmail", r.stderr)


if __name__ == "__main__":
    main()
