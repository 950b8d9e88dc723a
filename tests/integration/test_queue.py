#!/usr/bin/python3
"""`relay25 queue` (and sendmail -bp / mailq) on a spool written by hand in the
upstream/up_spool.h format: list, --json, --failed, show, delete, delete --all,
retry-failed and flush, with and without a (fake) daemon to signal."""

import json
import os
import signal
import subprocess
import time

from relaytest import RELAY25_BIN, RelayTestCase, main

EX_USAGE, EX_CONFIG = 64, 78

# A stand-in for the daemon: records each SIGUSR1 in the file argv[1].
FAKE_DAEMON = r"""
import signal, sys, time
out = sys.argv[1]
def on_usr1(signum, frame):
    with open(out, "a") as f:
        f.write("USR1\n")
signal.signal(signal.SIGUSR1, on_usr1)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def clean_env(**extra):
    """The caller's environment without RELAY25_* (so no outer config leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    env.update(extra)
    return env


def read(path):
    with open(path, "rb") as f:
        return f.read()


class QueueTest(RelayTestCase):
    QID_A = "4f1a2b3c4d5e6f70"
    QID_B = "4f1a2b99aa000001"   # shares 6 digits with QID_A
    QID_F = "00000000deadbeef"

    def setUp(self):
        super().setUp()
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.spool)
        pw = self.new_password(self.OFFICE)
        self.config = self.write_config(
            {"main": {"host": "127.0.0.1", "port": 587, "ca_file": self.pki.ca_file}},
            {"default": {"user": self.OFFICE, "password": pw}},
            relay={"mode": "spool", "spool_dir": self.spool})

    # helpers ------------------------------------------------------------------

    def path(self, area, qid, ext):
        return os.path.join(self.spool, area, qid + ext)

    def add(self, qid, area="q", age=60, device="default", user=None, sender="a@example.org",
            rcpts=("b@example.net",), done=(), headers=None, body=b"hello\r\n", reason=None):
        """Writes one message as the daemon would: .msg, .done, then .env (and .reason)."""
        os.makedirs(os.path.join(self.spool, area), exist_ok=True)
        headers = headers if headers is not None else [
            b"Received: from client.test by relay.test",
            b"Subject: test " + qid.encode(),
            b"From: " + sender.encode()]
        with open(self.path(area, qid, ".msg"), "wb") as f:
            f.write(b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)
        if done:
            with open(self.path(area, qid, ".done"), "w") as f:
                f.write("".join(line + "\n" for line in done))
        env = ["relay25-spool 1", "created %d" % (int(time.time()) - age), "device " + device,
               "user " + (user or self.OFFICE), "client 127.0.0.2", "helo client.test",
               "body 8BITMIME", "from " + sender] + ["rcpt " + r for r in rcpts]
        with open(self.path(area, qid, ".env"), "w") as f:
            f.write("\n".join(env) + "\n")
        if reason is not None:
            with open(self.path(area, qid, ".reason"), "w") as f:
                f.write(reason + "\n")

    def queue(self, *args, config=True, env=None):
        cmd = [RELAY25_BIN, "queue"] + (["-c", self.config] if config else []) + list(args)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=clean_env(**(env or {})), timeout=60)
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(r.returncode, 0, "killed by signal: %s" % r.stderr)
        self.assert_no_secrets(r.stdout + r.stderr, "relay25 queue output")
        return r

    def ok(self, *args, **kw):
        r = self.queue(*args, **kw)
        self.assertEqual(r.returncode, 0, "queue %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def files(self, area):
        d = os.path.join(self.spool, area)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def fake_daemon(self, argv0="relay25"):
        """A process that records SIGUSR1, its PID in relay25.pid. argv0: its name in
        /proc/PID/cmdline (queue signals only a process started as relay25). Returns
        the record path."""
        record = os.path.join(self.dir, "signals")
        p = subprocess.Popen([argv0, "-c", FAKE_DAEMON, record], executable="/usr/bin/python3",
                             stdout=subprocess.PIPE)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        with open(os.path.join(self.spool, "relay25.pid"), "w") as f:
            f.write("%d\n" % p.pid)
        return record

    def signals(self, record, want, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            n = read(record).count(b"USR1") if os.path.exists(record) else 0
            if n >= want or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    # list ---------------------------------------------------------------------

    def test_list_empty(self):
        self.assertEqual(self.ok("list").stdout, "Mail queue is empty\n")
        self.assertEqual(json.loads(self.ok("--json", "list").stdout), [])
        self.assertEqual(self.ok("list", "--failed").stdout, "No failed messages\n")

    def test_list(self):
        self.add(self.QID_A, age=3 * 3600 + 12 * 60 + 5, rcpts=("b@example.net", "c@example.net",
                                                               "d@example.net"),
                 done=("ok b@example.net", "failed c@example.net 550 5.1.1 no such user"),
                 body=b"x" * 12000)
        self.add(self.QID_F, age=30, device="scanner", sender="", rcpts=("e@example.net",))
        self.add("0123456789abcdef", area="failed", reason="554 5.7.1 refused")
        out = self.ok("list").stdout
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("Queue ID"), out)
        self.assertTrue(lines[1].startswith(self.QID_A), out)      # oldest first
        self.assertTrue(lines[2].startswith(self.QID_F), out)
        self.assertRegex(lines[1], r"^%s +3h12m +12K +1/3 default +a@example\.org$"
                         % self.QID_A)
        self.assertRegex(lines[2], r"^%s +30s +\d+ +1/1 scanner +<>$" % self.QID_F)
        self.assertRegex(lines[3], r"^2 messages, 12 KiB$")
        self.assertIn("1 failed message", lines[4])
        self.assertEqual(len(lines), 5, out)

    def test_list_json(self):
        self.add(self.QID_A, age=100, rcpts=("b@example.net", "c@example.net", "d@example.net"),
                 done=("ok b@example.net", "failed c@example.net 550 5.1.1 no such user"))
        (m,) = json.loads(self.ok("--json", "list").stdout)
        self.assertEqual(m["qid"], self.QID_A)
        self.assertEqual(m["area"], "queue")
        self.assertAlmostEqual(m["created"], time.time() - 100, delta=5)
        self.assertAlmostEqual(m["age_seconds"], 100, delta=5)
        self.assertEqual(m["size"], os.path.getsize(self.path("q", self.QID_A, ".msg")))
        self.assertEqual((m["from"], m["device"], m["user"]),
                         ("a@example.org", "default", self.OFFICE))
        self.assertEqual(m["rcpt"], [
            {"address": "b@example.net", "status": "ok"},
            {"address": "c@example.net", "status": "failed", "reply": "550 5.1.1 no such user"},
            {"address": "d@example.net", "status": "pending"}])
        self.assertIsNone(m["reason"])

    def test_list_failed(self):
        self.add(self.QID_A)
        self.add(self.QID_F, area="failed", done=("failed b@example.net 550 5.1.1 unknown",),
                 reason="message expired after 259200 seconds in the queue")
        out = self.ok("list", "--failed").stdout
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        self.assertIn("Reason", lines[0])
        self.assertTrue(lines[1].startswith(self.QID_F), out)
        self.assertIn(" 0/1 ", lines[1])
        self.assertTrue(lines[1].endswith("message expired after 259200 seconds in the queue"))
        self.assertRegex(lines[2], r"^1 failed message, \d+ bytes$")
        (m,) = json.loads(self.ok("list", "--failed", "--json").stdout)
        self.assertEqual((m["qid"], m["area"]), (self.QID_F, "failed"))
        self.assertEqual(m["reason"], "message expired after 259200 seconds in the queue")
        self.assertEqual(m["rcpt"][0]["status"], "failed")

    def test_unreadable_envelope_is_listed(self):
        self.add(self.QID_A)
        with open(self.path("q", self.QID_A, ".env"), "w") as f:
            f.write("garbage\n")
        r = self.ok("list")
        self.assertIn(self.QID_A, r.stdout)
        self.assertIn("unreadable", r.stdout)

    # show ---------------------------------------------------------------------

    def test_show(self):
        headers = [b"Received: from client.test by relay.test",
                   b"Subject: evil \x1b[31m red"]
        headers += [b"X-Line-%02d: v" % i for i in range(3, 26)]   # 25 lines in all
        self.add(self.QID_A, rcpts=("b@example.net", "c@example.net"),
                 done=("failed c@example.net 550 5.1.1 no such user",), headers=headers)
        out = self.ok("show", self.QID_A[:6].upper()).stdout
        for want in ("Queue ID:  %s (queued)" % self.QID_A, "Device:    default",
                     "User:      %s" % self.OFFICE, "Client:    127.0.0.2",
                     "HELO:      client.test", "Body:      8BITMIME", "From:      <a@example.org>",
                     "Recipients (1 pending of 2):", "  pending  b@example.net",
                     "  failed   c@example.net  550 5.1.1 no such user",
                     "  Received: from client.test by relay.test", "  X-Line-20: v"):
            self.assertIn(want + "\n", out)
        self.assertNotIn("X-Line-21", out)           # the first 20 header lines only
        self.assertNotIn("\x1b", out)                # terminal escapes are not passed on
        self.assertIn("Subject: evil ?[31m red", out)
        m = json.loads(self.ok("--json", "show", self.QID_A).stdout)
        self.assertEqual(m["qid"], self.QID_A)
        self.assertEqual(len(m["headers"]), 20)
        self.assertEqual(m["headers"][19], "X-Line-20: v")

    def test_show_failed_and_ids(self):
        self.add(self.QID_A)
        self.add(self.QID_B)
        self.add(self.QID_F, area="failed", reason="too many retries")
        out = self.ok("show", self.QID_F).stdout
        self.assertIn("(failed)", out)
        self.assertIn("Reason:    too many retries\n", out)
        r = self.queue("show", self.QID_A[:6])        # two messages start with it
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        self.assertIn("ambiguous", r.stderr)
        self.assertIn(self.QID_A, r.stderr)
        self.assertIn(self.QID_B, r.stderr)
        self.ok("show", self.QID_A[:7])
        r = self.queue("show", "abcdef12")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no message abcdef12", r.stderr)
        for bad in ("4f1a2", "4f1a2g", "4f1a2b3c4d5e6f7011"):
            r = self.queue("show", bad)
            self.assertEqual(r.returncode, EX_USAGE, bad)
            self.assertIn("bad queue id", r.stderr)

    # delete -------------------------------------------------------------------

    def test_delete(self):
        self.add(self.QID_A, done=("ok b@example.net",))
        self.add(self.QID_F)
        r = self.ok("delete", self.QID_A[:8])
        self.assertIn("deleted %s" % self.QID_A, r.stdout)
        self.assertEqual(self.files("q"), [self.QID_F + e for e in (".env", ".msg")])
        r = self.queue("delete", self.QID_A)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no message %s" % self.QID_A, r.stderr)
        # a failed message goes with its .reason
        self.add(self.QID_B, area="failed", reason="bounced")
        self.ok("delete", self.QID_B)
        self.assertEqual(self.files("failed"), [])

    def test_delete_all(self):
        for qid in (self.QID_A, self.QID_B, self.QID_F):
            self.add(qid, done=("ok b@example.net",))
        self.add("0123456789abcdef", area="failed", reason="bounced")
        r = self.ok("delete", "--all")
        self.assertIn("deleted 3 messages", r.stdout)
        self.assertEqual(self.files("q"), [])
        self.assertEqual(len(self.files("failed")), 3)       # failed/ is left alone
        self.assertEqual(self.ok("list").stdout.splitlines()[0], "Mail queue is empty")
        self.ok("delete", "--failed", "--all")
        self.assertEqual(self.files("failed"), [])
        for args in (["delete"], ["delete", "--all", self.QID_A], ["delete", "--failed", "x"]):
            self.assertEqual(self.queue(*args).returncode, EX_USAGE, args)

    # retry-failed -------------------------------------------------------------

    def test_retry_failed(self):
        self.add(self.QID_F, area="failed", age=5 * 86400,
                 rcpts=("b@example.net", "c@example.net", "d@example.net"),
                 done=("ok b@example.net", "failed c@example.net 550 5.1.1 no such user",
                       "failed d@example.net 451 4.3.0 try later"),
                 reason="message expired after 259200 seconds in the queue")
        content = read(self.path("failed", self.QID_F, ".msg"))
        r = self.ok("retry-failed")
        self.assertIn("1 failed message queued again", r.stdout)
        self.assertIn("no running relay25", r.stdout)
        self.assertEqual(self.files("failed"), [])
        self.assertEqual(self.files("q"), [self.QID_F + e for e in (".done", ".env", ".msg")])
        self.assertEqual(self.files("tmp"), [])
        self.assertEqual(read(self.path("q", self.QID_F, ".msg")), content)
        # delivered recipients stay done, the failed ones are tried again
        self.assertEqual(read(self.path("q", self.QID_F, ".done")), b"ok b@example.net\n")
        (m,) = json.loads(self.ok("--json", "list").stdout)
        self.assertEqual([x["status"] for x in m["rcpt"]], ["ok", "pending", "pending"])
        self.assertLess(m["age_seconds"], 60)          # a fresh max_queue_age
        self.assertIn("No failed messages", self.ok("retry-failed").stdout)

    def test_retry_failed_signals_daemon(self):
        record = self.fake_daemon()
        self.add(self.QID_A, area="failed", reason="x")
        self.add(self.QID_B, area="failed", reason="y")
        r = self.ok("retry-failed")
        self.assertIn("2 failed messages queued again", r.stdout)
        self.assertIn("is retrying the queue now", r.stdout)
        self.assertEqual(self.signals(record, 1), 1)
        self.assertEqual(len(self.files("q")), 4)

    # flush --------------------------------------------------------------------

    def test_flush_without_daemon(self):
        self.add(self.QID_A)
        for args in (["flush"], ["flush", self.QID_A[:6]]):
            r = self.ok(*args)
            self.assertIn("no running relay25: messages will be retried when it starts", r.stdout)
        # a stale pid file: that process is gone
        p = subprocess.Popen(["/usr/bin/python3", "-c", "pass"])
        p.wait()
        with open(os.path.join(self.spool, "relay25.pid"), "w") as f:
            f.write("%d\n" % p.pid)
        self.assertIn("no running relay25", self.ok("flush").stdout)

    def test_flush_stale_pid_of_another_program(self):
        record = self.fake_daemon(argv0="python3")
        r = self.ok("flush")
        self.assertIn("no running relay25", r.stdout)
        self.assertIn("another program", r.stderr)
        time.sleep(0.3)
        self.assertEqual(self.signals(record, 1, timeout=0), 0)

    def test_flush_signals_daemon(self):
        record = self.fake_daemon()
        self.add(self.QID_A)
        self.add(self.QID_F, area="failed", reason="x")
        r = self.ok("flush")
        self.assertIn("is retrying the queue now", r.stdout)
        self.assertEqual(self.signals(record, 1), 1)
        self.ok("flush", self.QID_A[:10])
        self.assertEqual(self.signals(record, 2), 2)
        r = self.queue("flush", "abcdef")               # unknown: no signal
        self.assertEqual(r.returncode, 1)
        r = self.queue("flush", self.QID_F)             # failed: retry-failed does that
        self.assertEqual(r.returncode, 1)
        self.assertIn("retry-failed", r.stderr)
        time.sleep(0.3)
        self.assertEqual(self.signals(record, 3, timeout=0), 2)

    # the command line, sendmail -bp, mailq --------------------------------------

    def test_errors(self):
        r = self.queue("-c", os.path.join(self.dir, "missing.ini"), "list", config=False)
        self.assertEqual(r.returncode, EX_CONFIG, r.stderr)
        for args in ([], ["frob"], ["list", "x"], ["show"], ["list", "--bogus"],
                     ["retry-failed", "--all"]):
            r = self.queue(*args)
            self.assertEqual(r.returncode, EX_USAGE, (args, r.stderr))
            self.assertIn("usage: relay25 queue", r.stderr)
        r = self.queue("list", config=False, env={"RELAY25_CONFIG": self.config})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_sendmail_bp_and_mailq(self):
        self.add(self.QID_A)
        r = subprocess.run([RELAY25_BIN, "sendmail", "-C", self.config, "-bp"],
                           stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(),
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.QID_A.encode(), r.stdout)
        self.assertIn(b"1 message, ", r.stdout)
        link = os.path.join(self.dir, "mailq")
        os.symlink(os.path.abspath(RELAY25_BIN), link)
        r = subprocess.run([link], stdin=subprocess.DEVNULL, capture_output=True,
                           env=clean_env(RELAY25_CONFIG=self.config), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(self.QID_A.encode(), r.stdout)
        os.unlink(self.path("q", self.QID_A, ".env"))
        r = subprocess.run([link], stdin=subprocess.DEVNULL, capture_output=True,
                           env=clean_env(RELAY25_CONFIG=self.config), timeout=60)
        self.assertEqual(r.stdout, b"Mail queue is empty\n")


if __name__ == "__main__":
    main()
