#!/usr/bin/python3
"""`relay25 sendmail -bs` (SMTP on standard input and output, what Symfony Mailer
and Laravel call), [sendmail] origin for unqualified addresses, and the held
messages: with [sendmail] submit, the daemon down and no spool it may write, the
message is kept in the caller's held directory (exit 75), `relay25 queue --held`
shows it, and `sendmail -q` / `queue --held flush` send it once the daemon runs,
exactly once."""

import json
import os
import smtplib
import socket
import subprocess

from relaytest import RELAY25_BIN, RelayTestCase, closed_port, main, strip_received

EX_TEMPFAIL, EX_PROTOCOL, EX_NOUSER = 75, 76, 67


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    env.update(extra)
    return env


class SendmailSmtpTest(RelayTestCase):

    def setUp(self):
        super().setUp()
        self.held = os.path.join(self.dir, "held")

    def env(self):
        return clean_env(RELAY25_HELD_DIR=self.held)   # never the real home

    def config(self, peer=None, port=None, sendmail=None, name="sendmail.ini"):
        pw = self.new_password(self.OFFICE)
        self.users = {self.OFFICE: pw}
        path = self.write_config({"main": self.upstream(peer, port=port)},
                                 {"default": {"user": self.OFFICE, "password": pw}}, name=name)
        if sendmail:
            with open(path, "a") as f:
                f.write("[sendmail]\n" + "".join("%s = %s\n" % kv for kv in sendmail.items()))
        return path

    def peer(self):
        return self.start_peer(users={self.OFFICE: self.new_password(self.OFFICE)})

    def direct(self, sendmail=None):
        pw = self.new_password(self.OFFICE)
        peer = self.start_peer(users={self.OFFICE: pw})
        path = self.write_config({"main": self.upstream(peer)},
                                 {"default": {"user": self.OFFICE, "password": pw}},
                                 name="direct.ini")
        if sendmail:
            with open(path, "a") as f:
                f.write("[sendmail]\n" + "".join("%s = %s\n" % kv for kv in sendmail.items()))
        return peer, path

    def smtp_over_pipe(self, config, *extra):
        """An smtplib client whose socket is relay25 sendmail -bs's stdin and stdout."""
        mine, theirs = socket.socketpair()
        proc = subprocess.Popen([RELAY25_BIN, "sendmail", "-C", config, "-bs", *extra],
                                stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                                env=self.env())
        theirs.close()
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        s = smtplib.SMTP()
        s.sock = mine
        s._host = "localhost"
        code, msg = s.getreply()
        self.assertEqual(code, 220, msg)
        return s, proc

    def finish(self, s, proc):
        s.quit()
        s.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        return proc.wait(timeout=60), err

    def run_bs(self, config, data):
        r = subprocess.run([RELAY25_BIN, "sendmail", "-C", config, "-bs"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(),
                           timeout=60)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode()

    def sendmail(self, config, args, data):
        r = subprocess.run([RELAY25_BIN, "sendmail", "-C", config] + list(args), input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(),
                           timeout=60)
        return r.returncode, r.stderr.decode("utf-8", "replace")

    def queue(self, config, *args):
        r = subprocess.run([RELAY25_BIN, "queue", "-c", config, *args],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env(), timeout=60)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode()

    # -bs ---------------------------------------------------------------------------

    def test_bs_smtplib_two_messages(self):
        peer, config = self.direct()
        s, proc = self.smtp_over_pipe(config)
        code, ehlo = s.ehlo("app.example")
        self.assertEqual(code, 250)
        self.assertIn(b"ENHANCEDSTATUSCODES", ehlo)
        self.assertIn(b"8BITMIME", ehlo)
        body = ("Subject: one\r\nFrom: app@x.example\r\n\r\nline\r\n.leading dot\r\n"
                "..two dots\r\n.\r\n")
        refused = s.sendmail("app@x.example", ["a@example.net", "b@example.net"], body)
        self.assertEqual(refused, {})
        refused = s.sendmail("app@x.example", ["c@example.net"],
                             "Subject: two\r\n\r\nsecond\r\n")
        self.assertEqual(refused, {})
        rc, err = self.finish(s, proc)
        self.assertEqual(rc, 0, err)
        msgs = peer.wait_messages(2, timeout=30)
        self.assertEqual(len(msgs), 2, msgs)
        m = msgs[0]
        self.assertEqual(m.login, self.OFFICE)
        self.assertEqual(m.mail_from, "app@x.example")
        self.assertEqual(m.rcpt_tos, ("a@example.net", "b@example.net"))
        # smtplib stuffed the dots; -bs removed exactly one each
        self.assertTrue(m.content.endswith(b"\r\n\r\nline\r\n.leading dot\r\n..two dots\r\n"
                                           b".\r\n"), m.content)
        self.assertTrue(m.header("Message-ID"))      # added, as for -t
        self.assertEqual(msgs[1].rcpt_tos, ("c@example.net",))
        self.assertEqual(msgs[1].header("Subject"), "two")

    def test_bs_pipelined_replies_in_order(self):
        peer, config = self.direct(sendmail={"origin": "example.org"})
        rc, out, err = self.run_bs(config, b"EHLO me\r\nMAIL FROM:<root>\r\nRCPT TO:<admin>\r\n"
                                   b"RCPT TO:<x@example.net>\r\nDATA\r\nSubject: p\r\n\r\nhi\r\n"
                                   b".\r\nNOOP\r\nBOGUS\r\nRCPT TO:<y@example.net>\r\nQUIT\r\n")
        codes = [li[:3] for li in out.splitlines() if li[3:4] == " "]
        self.assertEqual(codes, ["220", "250", "250", "250", "250", "354", "250", "250", "500",
                                 "503", "221"], out)
        lines = out.splitlines()
        after_ehlo = [i for i, li in enumerate(lines) if li.startswith("250 ")][0] + 1
        for li in lines[after_ehlo:]:          # every reply after EHLO has its enhanced code
            if not li.startswith("354"):
                self.assertRegex(li, r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ", out)
        self.assertEqual(rc, 0, err)
        m = peer.wait_messages(1, timeout=30)[0]
        self.assertEqual(m.mail_from, "root@example.org")          # [sendmail] origin
        self.assertEqual(m.rcpt_tos, ("admin@example.org", "x@example.net"))

    def test_bs_failure_replies_and_exit_status(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        config = self.config(port=port)
        s, proc = self.smtp_over_pipe(config)
        s.ehlo("app.example")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            s.sendmail("app@x.example", ["a@example.net"], "Subject: x\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 451)
        self.assertIn(b"connection failed", cm.exception.smtp_error)
        rc, err = self.finish(s, proc)
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertFalse(os.path.exists(self.held))      # an SMTP client keeps its own

    def test_bs_refused_recipient_is_5xx(self):
        peer, config = self.direct()
        s, proc = self.smtp_over_pipe(config)
        s.ehlo("app.example")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            s.sendmail("app@x.example", ["reject-me@example.net"], "Subject: x\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 550)
        rc, err = self.finish(s, proc)
        self.assertEqual(rc, EX_NOUSER, err)
        self.assertEqual(peer.all_messages(), [])

    def test_bs_non_ascii_address_needs_smtputf8(self):
        peer, config = self.direct()
        rc, out, err = self.run_bs(config, "EHLO me\r\nMAIL FROM:<jürgen@x.example>\r\n"
                                   "MAIL FROM:<a@x.example>\r\nRCPT TO:<zoë@example.net>\r\n"
                                   "QUIT\r\n".encode())
        codes = [li[:9] for li in out.splitlines() if li[3:4] == " "]
        self.assertEqual(codes[2:], ["553 5.6.7", "250 2.1.0", "553 5.6.7", "221 2.0.0"], out)
        self.assertNotIn("250-SMTPUTF8", out)
        self.assertEqual(rc, 0, err)

    def test_bs_input_ends_inside_data(self):
        peer, config = self.direct()
        rc, out, err = self.run_bs(config, b"HELO me\r\nMAIL FROM:<a@x.example>\r\n"
                                   b"RCPT TO:<b@example.net>\r\nDATA\r\nSubject: cut\r\n\r\nhal")
        self.assertEqual(rc, EX_PROTOCOL, out + err)
        self.assertIn("354", out)
        peer.wait_idle(5)
        self.assertEqual(peer.all_messages(), [])

    # origin ------------------------------------------------------------------------

    def test_f_root_gets_origin(self):
        peer, config = self.direct(sendmail={"origin": "example.org"})
        rc, err = self.sendmail(config, ["-f", "root", "admin"], b"Subject: o\n\nx\n")
        self.assertEqual(rc, 0, err)
        m = peer.wait_messages(1, timeout=30)[0]
        self.assertEqual(m.mail_from, "root@example.org")
        self.assertEqual(m.rcpt_tos, ("admin@example.org",))

    def test_origin_defaults_to_hostname(self):
        peer, config = self.direct()
        rc, err = self.sendmail(config, ["-f", "root", "b@example.net"], b"Subject: o\n\nx\n")
        self.assertEqual(rc, 0, err)
        m = peer.wait_messages(1, timeout=30)[0]
        self.assertEqual(m.mail_from, "root@relay.test")      # [relay] hostname

    def test_bad_origin_is_a_config_error(self):
        peer, config = self.direct(sendmail={"origin": "a@b"})
        rc, err = self.sendmail(config, ["b@example.net"], b"x\n")
        self.assertEqual(rc, 78, err)
        self.assertIn("bad origin", err)

    # held messages -----------------------------------------------------------------

    MSG = b"Subject: held\nMessage-ID: <held-1@x.example>\n\nkept for later\n.dot line\n"

    def hold_one(self, config, rcpt="one@example.net"):
        rc, err = self.sendmail(config, ["-f", "cron@x.example", rcpt], self.MSG)
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertIn("message not sent; kept as ", err)
        qid = err.split("kept as ", 1)[1][:16]
        self.assertRegex(qid, r"^[0-9a-f]{16}$")
        return qid

    def test_held_shown_then_sent_once_with_q(self):
        peer = self.peer()
        sock, port = closed_port()
        self.addCleanup(sock.close)
        down = self.config(port=port, sendmail={"submit": "127.0.0.1:%d" % port}, name="down.ini")
        qid = self.hold_one(down)
        self.assertEqual(sorted(os.listdir(os.path.join(self.held, "q"))),
                         [qid + ".env", qid + ".msg"])
        self.assertEqual(os.stat(self.held).st_mode & 0o777, 0o700)
        # relay25 queue --held shows it; the plain listing points at it
        rc, out, err = self.queue(down, "--held", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn(qid, out)
        self.assertIn("cron@x.example", out)
        rc, out, err = self.queue(down, "--held", "--json", "show", qid)
        self.assertEqual(rc, 0, err)
        item = json.loads(out)
        self.assertEqual(item["qid"], qid)
        self.assertEqual(item["from"], "cron@x.example")
        self.assertEqual([(r["address"], r["status"]) for r in item["rcpt"]],
                         [("one@example.net", "pending")])
        rc, out, err = self.queue(down, "list")
        self.assertIn("held for you by sendmail", err)
        # -q while the daemon is still down: nothing sent, still held, 75
        rc, err = self.sendmail(down, ["-q"], b"")
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertTrue(os.path.exists(os.path.join(self.held, "q", qid + ".env")))
        # the daemon runs: -q sends it through the daemon, once
        pw = self.new_password(self.OFFICE)
        peer2 = self.start_peer(users={self.OFFICE: pw})
        relay = self.start_relay({"main": self.upstream(peer2)},
                                 {"default": {"user": self.OFFICE, "password": pw}})
        up = self.config(port=port, sendmail={"submit": "127.0.0.1:%d" % relay.port},
                         name="up.ini")
        rc, err = self.sendmail(up, ["-q"], b"")
        self.assertEqual(rc, 0, err)
        msgs = peer2.wait_messages(1, timeout=30)
        self.assertEqual(len(msgs), 1, msgs)
        m = msgs[0]
        self.assertEqual(m.mail_from, "cron@x.example")
        self.assertEqual(m.rcpt_tos, ("one@example.net",))
        self.assertEqual(m.header("Message-ID"), "<held-1@x.example>")
        self.assertTrue(strip_received(m.content).endswith(b"\r\n\r\nkept for later\r\n"
                                                           b".dot line\r\n"), m.content)
        self.assertEqual(os.listdir(os.path.join(self.held, "q")), [])
        rc, err = self.sendmail(up, ["-q"], b"")
        self.assertEqual(rc, 0, err)
        peer2.wait_idle(5)
        self.assertEqual(len(peer2.all_messages()), 1)
        self.assertEqual(peer.all_messages(), [])

    def test_held_sent_by_queue_flush_and_refusal_kept_in_failed(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        down = self.config(port=port, sendmail={"submit": "127.0.0.1:%d" % port}, name="down.ini")
        good = self.hold_one(down)
        bad = self.hold_one(down, rcpt="reject-this@example.net")
        pw = self.new_password(self.OFFICE)
        peer = self.start_peer(users={self.OFFICE: pw})
        relay = self.start_relay({"main": self.upstream(peer)},
                                 {"default": {"user": self.OFFICE, "password": pw}})
        up = self.config(port=port, sendmail={"submit": "127.0.0.1:%d" % relay.port},
                         name="up.ini")
        rc, out, err = self.queue(up, "--held", "flush")
        self.assertEqual(rc, 0, out + err)
        msgs = peer.wait_messages(1, timeout=30)
        self.assertEqual([m.rcpt_tos for m in msgs], [("one@example.net",)])
        self.assertEqual(os.listdir(os.path.join(self.held, "q")), [])
        failed = sorted(os.listdir(os.path.join(self.held, "failed")))
        self.assertIn(bad + ".env", failed)
        self.assertNotIn(good + ".env", failed)
        rc, out, err = self.queue(up, "--held", "list", "--failed")
        self.assertEqual(rc, 0, err)
        self.assertIn(bad, out)


if __name__ == "__main__":
    main()
