#!/usr/bin/python3
"""`relay25 sendmail` with [sendmail] submit when the daemon cannot be reached:
with a spool (mode = spool or on_upstream_failure = queue) the message is
committed there in the daemon's format (exit 0, "queued" on stderr), `relay25
queue list` shows it, and the daemon delivers it once, with the original
envelope and bytes, when it starts (or at once when it runs: sendmail signals
it). Without a usable spool the exit stays 75 and nothing is written."""

import json
import os
import re
import socket
import subprocess
import threading

from relaytest import RELAY25_BIN, closed_port, main, strip_received
from spooltest import SpoolTestCase, parse_env, run_queue_cli

EX_NOUSER, EX_TEMPFAIL = 67, 75
QUEUED_RE = re.compile(r"message queued as ([0-9a-f]{16}) in ")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}


class SendmailQueueTest(SpoolTestCase):
    MSG = (b"From: Cron Daemon <cron@x.example>\n"
           b"To: one@example.net\n"
           b"Subject: nightly backup\n"
           b"Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
           b"Message-ID: <nightly@x.example>\n"
           b"\n"
           b"line one\n"
           b".leading dot\n"
           b"last\n")
    BODY = b"line one\r\n.leading dot\r\nlast\r\n"

    def setUp(self):
        super().setUp()
        # the daemon's submit port: nothing listens there, so sendmail cannot reach it
        self.sock, self.submit_port = closed_port()
        self.addCleanup(self.sock.close)
        self.held = os.path.join(self.dir, "held")

    def peer(self):
        """The upstream, knowing the office account (self.pw)."""
        self.pw = self.new_password(self.OFFICE)
        return self.start_peer(users={self.OFFICE: self.pw})

    def greeter(self, greeting):
        """A stand-in daemon that answers every connection with greeting and closes."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        self.addCleanup(srv.close)

        def run():
            while True:
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                with c:
                    c.sendall(greeting)
                    c.recv(1024)   # sendmail's QUIT, or its close

        threading.Thread(target=run, daemon=True).start()
        return srv.getsockname()[1]

    def config(self, peer, relay=None, devices=None, spool=True, submit_port=None):
        pw = self.pw
        keys = self.spool_relay_keys(mode="spool") if spool else {}
        keys.update(relay or {})
        path = self.write_config({"main": self.upstream(peer)},
                                 devices or {"default": {"user": self.OFFICE, "password": pw}},
                                 keys)
        with open(path, "a") as f:
            f.write("[sendmail]\nsubmit = 127.0.0.1:%d\n" % (submit_port or self.submit_port))
        return path

    def sendmail(self, config, args, data):
        env = clean_env()
        env["RELAY25_HELD_DIR"] = self.held   # never the real home
        r = subprocess.run([RELAY25_BIN, "sendmail", "-C", config] + list(args), input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=60)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(r.returncode, 0, "killed by signal: %s" % r.stderr)
        self.assert_no_secrets(r.stdout + r.stderr, "sendmail output")
        for line in r.stderr.splitlines():
            self.assertTrue(line.startswith("relay25-sendmail: "), r.stderr)
        return r

    def queue_msg(self, config, args=("-f", "cron@x.example", "one@example.net",
                                      "two@example.net")):
        r = self.sendmail(config, args, self.MSG)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("relay25 daemon 127.0.0.1:%d connection failed" % self.submit_port,
                      r.stderr)
        m = QUEUED_RE.search(r.stderr)
        self.assertTrue(m, r.stderr)
        return m.group(1), r

    def read(self, qid, ext):
        with open(os.path.join(self.spool, "q", qid + ext), "rb") as f:
            return f.read()

    # queued while the daemon is down, delivered when it starts --------------------

    def test_daemon_stopped_queues_then_delivers_once(self):
        peer = self.peer()
        config = self.config(peer)
        os.makedirs(self.spool)                 # as systemd-tmpfiles creates it
        qid, r = self.queue_msg(config)
        self.assertIn("the daemon delivers it when it starts", r.stderr)
        self.assertEqual(self.files("q"), [qid + ".env", qid + ".msg"])
        self.assertEqual(os.listdir(os.path.join(self.spool, "tmp")), [])
        for name in self.files("q"):
            self.assertEqual(os.stat(os.path.join(self.spool, "q", name)).st_mode & 0o777, 0o600)

        # the daemon's format: envelope of the local submission, Received: first
        env = parse_env(os.path.join(self.spool, "q", qid + ".env"))
        self.assertEqual(env["device"], "default")
        self.assertEqual(env["user"], self.OFFICE)
        self.assertEqual(env["client"], "127.0.0.1")
        self.assertEqual(env["helo"], "relay.test")
        self.assertEqual(env["from"], "cron@x.example")
        self.assertEqual(env["rcpt"], ["one@example.net", "two@example.net"])
        content = self.read(qid, ".msg")
        self.assertRegex(content.split(b"\r\n", 1)[0],
                         rb"^Received: from relay\.test \(\[127\.0\.0\.1\]\)$")
        self.assertIn(b"with ESMTP id " + qid.encode() + b";", content)
        self.assertTrue(strip_received(content).startswith(b"From: Cron Daemon <cron@x.example>"
                                                           b"\r\nTo: one@example.net\r\n"),
                        content)
        self.assertTrue(content.endswith(b"\r\n\r\n" + self.BODY), content)

        # `relay25 queue` sees it while queued
        q = run_queue_cli(config, "list")
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertIn(qid, q.stdout)
        self.assertIn("cron@x.example", q.stdout)
        q = run_queue_cli(config, "--json", "list")
        self.assertEqual(q.returncode, 0, q.stderr)
        (item,) = json.loads(q.stdout)
        self.assertEqual(item["qid"], qid)
        self.assertEqual([x["status"] for x in item["rcpt"]], ["pending", "pending"])
        self.assertEqual(peer.all_messages(), [])

        # the daemon starts on the same configuration: its startup scan delivers it once
        relay = self.start_relay(config=config)
        msgs = peer.wait_messages(1, timeout=30)
        self.assertEqual(len(msgs), 1, msgs)
        self.wait_spool_empty(relay)
        relay.wait_lines(r"qid=%s .*status=sent" % qid)
        m = msgs[0]
        self.assertEqual(m.login, self.OFFICE)
        self.assertEqual(m.mail_from, "cron@x.example")
        self.assertEqual(m.rcpt_tos, ("one@example.net", "two@example.net"))
        self.assertEqual(m.content, content)     # the spooled bytes, exactly
        self.assertEqual(m.header("Message-ID"), "<nightly@x.example>")
        peer.wait_idle(10)
        self.assertEqual(len(peer.all_messages()), 1)
        q = run_queue_cli(config, "list")
        self.assertEqual((q.returncode, q.stdout), (0, "Mail queue is empty\n"))

    def test_running_daemon_unreachable_is_signalled(self):
        """The daemon runs but its submit address does not answer: the queued
        message is not left for the next start; sendmail's SIGUSR1 makes the
        daemon rescan its spool now."""
        peer = self.peer()
        config = self.config(peer)
        relay = self.start_relay(config=config)
        pidfile = os.path.join(self.spool, "relay25.pid")
        self.wait_for(lambda: os.path.exists(pidfile), 10, "pid file", relay)
        qid, r = self.queue_msg(config, ("-t",))
        self.assertIn("the running daemon delivers it now", r.stderr)
        msgs = peer.wait_messages(1, timeout=30)
        self.assertEqual(len(msgs), 1, relay.tail())
        self.assertEqual(msgs[0].rcpt_tos, ("one@example.net",))
        self.assertTrue(msgs[0].content.endswith(b"\r\n\r\n" + self.BODY))
        self.wait_spool_empty(relay)
        relay.wait_lines(r"qid=%s .*status=sent" % qid)
        peer.wait_idle(10)
        self.assertEqual(len(peer.all_messages()), 1)

    def test_device_of_loopback_and_rewrite(self):
        """The device the daemon would pick for 127.0.0.1, with its sender rewrite."""
        peer = self.peer()
        pw = self.new_password("local@example.com")
        devices = {"default": {"user": self.OFFICE, "password": self.pw},
                   "local": {"match": "127.0.0.1", "user": "local@example.com", "password": pw,
                             "rewrite_sender": "local@example.com",
                             "rewrite_from_header": "yes"}}
        config = self.config(peer, devices=devices)
        os.makedirs(self.spool)
        qid, _ = self.queue_msg(config)
        env = parse_env(os.path.join(self.spool, "q", qid + ".env"))
        self.assertEqual((env["device"], env["user"], env["from"]),
                         ("local", "local@example.com", "local@example.com"))
        head = strip_received(self.read(qid, ".msg")).split(b"\r\n\r\n", 1)[0]
        self.assertIn(b"\r\nFrom: Cron Daemon <local@example.com>\r\n", b"\r\n" + head + b"\r\n")
        self.assertIn(b"Reply-To: <cron@x.example>", head)

    def test_421_greeting_queues_554_does_not(self):
        """A daemon that greets 421 (shutting down, too many connections) is as good
        as down; one that refuses us with 5xx is up, and its verdict stands."""
        peer = self.peer()
        os.makedirs(self.spool)
        config = self.config(peer, submit_port=self.greeter(b"421 4.3.2 going down\r\n"))
        r = self.sendmail(config, ["one@example.net"], self.MSG)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("421 4.3.2 going down", r.stderr)
        qid = QUEUED_RE.search(r.stderr).group(1)
        self.assertEqual(self.files("q"), [qid + ".env", qid + ".msg"])
        config = self.config(peer, submit_port=self.greeter(b"554 5.7.1 go away\r\n"))
        r = self.sendmail(config, ["one@example.net"], self.MSG)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn("554 5.7.1 go away", r.stderr)
        self.assertNotIn("queued", r.stderr)
        self.assertEqual(self.files("q"), [qid + ".env", qid + ".msg"])

    # not queued --------------------------------------------------------------------

    def test_not_queued_without_usable_spool(self):
        peer = self.peer()
        # a spool configured but not there (the daemon never ran, no tmpfiles)
        config = self.config(peer)
        r = self.sendmail(config, ["one@example.net"], self.MSG)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertIn("connection failed", r.stderr)
        self.assertIn("message not sent", r.stderr)
        self.assertRegex(r.stderr, r"not queued: spool_dir .*: No such file or directory")
        self.assertFalse(os.path.exists(self.spool))
        # no spool in the configuration: 75 as always, nothing in a spool (since #15
        # the message is kept in the caller's held directory: the next test)
        config = self.config(peer, spool=False)
        r = self.sendmail(config, ["one@example.net"], self.MSG)
        self.assertEqual(r.returncode, EX_TEMPFAIL, r.stderr)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertNotIn("message queued as", r.stderr)
        self.assertFalse(os.path.exists(self.spool))

    def test_policy_refusal_is_not_queued(self):
        """What the daemon would refuse for good is not queued: 67/69 as if it ran."""
        peer = self.peer()
        config = self.config(peer, devices={"default": {
            "user": self.OFFICE, "password": self.pw, "allowed_recipients": "example.net"}})
        os.makedirs(self.spool)
        r = self.sendmail(config, ["one@example.net", "x@elsewhere.example"], self.MSG)
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn("not queued: recipient <x@elsewhere.example> not allowed", r.stderr)
        self.assertEqual(self.files("q"), [])


if __name__ == "__main__":
    main()
