#!/usr/bin/python3
"""Issue 14 items 3 and 4: the queue explains itself and the logs an admin follows.

- A deferred recipient: `queue list` (text and --json) and `queue show` give its state,
  attempts, last attempt, next retry and the provider's reply, from the daemon's
  <spool_dir>/defer/<qid> note; the count goes on with each attempt and the note goes
  with the message.
- `queue flush` / `queue list` with no spool configured, `mailq` with no configuration.
- Delivery lines of both paths (passthrough, spool) carry the provider's final reply
  and the same fields (qid, device, relay = upstream name, addr = its address); a
  spooled message's delivery logs under its qid as sid, its `up` lines too.
- JSON logs type integers as numbers; log_timestamps = yes | no | auto (auto: off when
  stderr is the journal, $JOURNAL_STREAM); log = syslog without a syslog socket falls
  back to stderr with a warning.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time

from relaytest import RELAY25_BIN, Relay, main, make_message
from spooltest import Script, SpoolTestCase

JSON_LISTENING_RE = re.compile(r'"module":"prx".*"event":"listening".*"addr":"([^"]+)"')
GREYLIST = "451 4.7.1 greylisted, try again later"
TS_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) [0-9a-f]{16} \S+ "
NO_TS_RE = r"^(debug|info|warn|error) [0-9a-f]{16} \S+ "
# keys whose values are names or ids, strings even when they look like numbers
TEXT_KEYS = {"qid", "id", "user", "login", "device", "route", "relay", "helo", "name", "from",
             "to", "client", "next", "using", "version", "addr", "host", "mechanism", "sid",
             "ts", "level", "module", "msg"}


def fields(line):
    """key=value / key="quoted" pairs of a text log line."""
    out = {}
    for m in re.finditer(r'(\w+)=("((?:[^"\\]|\\.)*)"|\S*)', line):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def sid_of(line):
    """The sid of a text log line (after the level, with or without a timestamp)."""
    return re.search(r"\b(?:debug|info|warn|error) ([0-9a-f]{16}) ", line).group(1)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    env.update(extra)
    return env


def syslog_socket(path="/dev/log"):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            with socket.socket(socket.AF_UNIX, kind) as s:
                s.connect(path)
                return True
        except OSError:
            pass
    return False


class QueueExplainsTest(SpoolTestCase):

    def queue(self, path, *args, env=None):
        r = subprocess.run([RELAY25_BIN, "queue", "-c", path] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           env=clean_env(**(env or {})), timeout=60)
        out, err = r.stdout.decode(), r.stderr.decode()
        self.assertEqual(r.returncode, 0, "queue %s: %s%s" % (args, out, err))
        return out, err

    def test_deferred_recipient_explained(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        Script(peer, rcpt={"two@example.net": [GREYLIST, GREYLIST]})
        keys = self.spool_relay_keys(mode="spool", retry_min="1h", retry_max="2h")
        path = self.write_config({"main": self.upstream(peer)}, devices, keys)
        r = self.start_own_relay(path)
        r.wait_lines(r"event=started", timeout=10)
        before = time.time()
        q = self.submit_queued(r, "s@example.org", ["one@example.net", "two@example.net"],
                               make_message("greylisted"))
        line = r.wait_lines(r"qid=%s .*status=deferred" % q, timeout=30)[0]
        f = fields(line)
        self.assertEqual((f["relay"], f["attempts"], f["device"], f["reply"]),
                         ("main", "1", "scanner", GREYLIST), line)
        self.assertEqual(f["addr"], "127.0.0.1:%d" % peer.port, line)
        self.assertGreaterEqual(int(f["delay"]), 2700, line)     # 1h with jitter 75%..125%
        # the note: q/ and the .done keep their files and records (test_spool.py)
        self.assertEqual(self.files("q"), [q + ".done", q + ".env", q + ".msg"])
        self.assertEqual(self.files("defer"), [q])

        (m,) = json.loads(self.queue(path, "--json", "list")[0])
        self.assertEqual(m["qid"], q)
        one, two = m["rcpt"]
        self.assertEqual(one, {"address": "one@example.net", "status": "ok"})
        self.assertEqual((two["address"], two["status"], two["attempts"], two["reply"]),
                         ("two@example.net", "deferred", 1, GREYLIST), two)
        self.assertAlmostEqual(two["last_attempt"], time.time(), delta=60)
        self.assertGreaterEqual(two["last_attempt"], int(before))
        self.assertGreaterEqual(two["next_retry"] - two["last_attempt"], 2700, two)
        self.assertLessEqual(two["next_retry"] - two["last_attempt"], 4501, two)
        self.assertGreater(two["next_retry_seconds"], 2000, two)
        self.assertEqual((m["attempts"], m["last_error"], m["next_retry"]),
                         (1, GREYLIST, two["next_retry"]))

        out = self.queue(path, "list")[0]
        self.assertRegex(out, r"\n  deferred two@example\.net \(1 attempt, next retry in "
                              r"[0-9hm]+\): %s\n" % re.escape(GREYLIST))
        self.assertIn("1 message, ", out)
        out = self.queue(path, "show", q)[0]
        self.assertIn("Recipients (1 pending of 2):\n", out)
        self.assertIn("  ok       one@example.net\n", out)
        self.assertIn("  deferred two@example.net  %s\n" % GREYLIST, out)
        self.assertRegex(out, r"\n {11}1 attempt, last \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} "
                              r"\(\d+s ago\), next retry \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                              r"[+-]\d{4} \(in [0-9hm]+\)\n")

        # a second attempt counts on; the third delivers and the note goes
        self.queue(path, "flush")
        r.wait_lines(r"qid=%s relay=main attempts=2 status=deferred" % q, timeout=30)
        (m,) = json.loads(self.queue(path, "--json", "list")[0])
        self.assertEqual((m["rcpt"][1]["status"], m["rcpt"][1]["attempts"]), ("deferred", 2))
        self.assertIn("2 attempts, last ", self.queue(path, "show", q)[0])
        self.queue(path, "flush")
        self.wait_spool_empty(r)
        self.assertEqual(self.files("defer"), [])
        final = r.wait_lines(r"qid=%s from=.*status=sent" % q, timeout=20)[0]
        self.assertRegex(fields(final)["reply"], r"^250 2\.0\.0 OK: queued as \d+$", final)
        self.stop_expect_0(r)

    def test_old_daemon_spool_without_notes(self):
        """A message queued before the notes existed: pending, no attempts, no error."""
        os.makedirs(os.path.join(self.spool, "q"))
        qid = "4f1a2b3c4d5e6f70"
        with open(os.path.join(self.spool, "q", qid + ".msg"), "wb") as f:
            f.write(b"Subject: old\r\n\r\nhi\r\n")
        with open(os.path.join(self.spool, "q", qid + ".env"), "w") as f:
            f.write("relay25-spool 1\ncreated %d\ndevice default\nuser u\nclient 127.0.0.2\n"
                    "helo h\nbody -\nfrom a@example.org\nrcpt b@example.net\n" % time.time())
        devices, _ = self.default_devices()
        path = self.write_config({"main": self.upstream(port=9)}, devices,
                                 self.spool_relay_keys(mode="spool"))
        (m,) = json.loads(self.queue(path, "--json", "list")[0])
        self.assertEqual(m["rcpt"], [{"address": "b@example.net", "status": "pending"}])
        self.assertEqual((m["attempts"], m["next_retry"], m["last_error"]), (0, None, None))
        self.assertNotIn("deferred", self.queue(path, "list")[0])

    def test_no_spool_and_no_daemon_say_which(self):
        devices, _ = self.default_devices()
        missing = os.path.join(self.dir, "no-such-spool")
        passthrough = self.write_config({"main": self.upstream(port=9)}, devices,
                                        {"spool_dir": missing}, name="pass.ini")
        out, _ = self.queue(passthrough, "flush")
        self.assertIn("no spool configured", out)
        self.assertIn("nothing to flush", out)
        self.assertNotIn("no running relay25", out)
        out, _ = self.queue(passthrough, "list")
        self.assertIn("no spool configured", out)
        self.assertIn("nothing is queued", out)
        out, err = self.queue(passthrough, "--json", "list")
        self.assertEqual(json.loads(out), [])
        self.assertIn("no spool configured", err)
        # spool mode, nothing running: the pid file is named
        spool = self.write_config({"main": self.upstream(port=9)}, devices,
                                  self.spool_relay_keys(mode="spool"), name="spool.ini")
        out, _ = self.queue(spool, "flush")
        self.assertIn("no running relay25: messages will be retried when it starts", out)
        self.assertIn(os.path.join(self.spool, "relay25.pid"), out)
        # mailq with no configuration at all
        if os.path.exists("/etc/relay25/relay25.conf") or os.path.exists("/var/spool/relay25"):
            self.skipTest("this host has a relay25 configuration or spool")
        link = os.path.join(self.dir, "mailq")
        os.symlink(os.path.abspath(RELAY25_BIN), link)
        r = subprocess.run([link], stdin=subprocess.DEVNULL, capture_output=True,
                           env=clean_env(), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"Mail queue is empty\n")     # as before, for scripts
        self.assertIn(b"no relay25 configuration", r.stderr)
        self.assertIn(b"no spool in /var/spool/relay25", r.stderr)


class DeliveryLogTest(SpoolTestCase):

    def test_same_fields_both_paths(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        # passthrough
        r = self.start_relay({"main": self.upstream(peer)}, devices)
        self.send_mail(r, "p@example.org", ["a@example.net"], make_message("passthrough"))
        pline = r.wait_lines(r"prx qid=\S+ from=<p@example\.org> .*status=sent")[0]
        # spool
        keys = self.spool_relay_keys(mode="spool")
        path = self.write_config({"main": self.upstream(peer)}, devices, keys, name="spool.ini")
        s = self.start_relay(config=path)
        q = self.submit_queued(s, "s@example.org", ["b@example.net"], make_message("spooled"))
        sline = s.wait_lines(r"queue qid=%s from=<s@example\.org> .*status=sent" % q,
                             timeout=30)[0]
        rline = s.wait_lines(r"queue qid=%s to=<b@example\.net> " % q, timeout=30)[0]
        want = {"qid", "device", "relay", "addr", "status", "reply"}
        for line in (pline, sline, rline):
            f = fields(line)
            self.assertLessEqual(want, set(f), line)
            self.assertEqual((f["device"], f["relay"], f["addr"], f["status"]),
                             ("scanner", "main", "127.0.0.1:%d" % peer.port, "sent"), line)
            # the provider's own reply, with its queue id (was reply="ok" for the spool)
            self.assertRegex(f["reply"], r"^250 2\.0\.0 OK: queued as \d+$", line)
        # one sid scheme: a spooled message's delivery logs under its qid, up lines too
        self.assertEqual(sid_of(sline), q, sline)
        self.assertEqual(sid_of(rline), q, rline)
        self.assertTrue(s.grep(r" %s up relay=127\.0\.0\.1:%d event=ready" % (q, peer.port)),
                        s.tail())
        # passthrough: the client session's sid, the one its connect line has
        self.assertTrue(r.grep(r" %s prx event=connect " % sid_of(pline)), r.tail())

    def test_refused_recipient_line(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        Script(peer, rcpt={"no@example.net": ["550 5.1.1 no such user"]})
        r = self.start_relay({"main": self.upstream(peer)}, devices)
        self.transaction(r, "p@example.org", ["no@example.net", "yes@example.net"],
                         make_message("half"))
        line = r.wait_lines(r"to=<no@example\.net> status=bounced")[0]
        f = fields(line)
        self.assertEqual((f["device"], f["relay"], f["addr"], f["reply"]),
                         ("scanner", "main", "127.0.0.1:%d" % peer.port,
                          "550 5.1.1 no such user"), line)


class HealthProbeLogTest(SpoolTestCase):

    def test_probe_logged_at_debug(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        r = self.start_relay({"main": self.upstream(peer)}, devices, {"log_level": "info"})
        r.wait_lines(r"event=started")
        for _ in range(3):
            p = subprocess.run([RELAY25_BIN, "health", "%s:%d" % (r.host, r.port)],
                               capture_output=True, env=clean_env(), timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # a client after the probes: its connect and disconnect lines are info
        self.send_mail(r, "h@example.org", ["a@example.net"], make_message("after probes"))
        r.wait_lines(r"prx event=disconnect .*messages=1")
        conns = r.grep(r"\bprx event=(connect|disconnect)\b")
        self.assertEqual(len(conns), 2, "the probes logged at info:\n" + "\n".join(conns))
        # at debug the probes are there
        d = self.start_relay({"main": self.upstream(peer)}, devices, {"log_level": "debug"})
        p = subprocess.run([RELAY25_BIN, "health", "%s:%d" % (d.host, d.port)],
                           capture_output=True, env=clean_env(), timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        d.wait_lines(r"\bdebug [0-9a-f]{16} prx event=connect client=127\.0\.0\.1 ")
        d.wait_lines(r"\bdebug [0-9a-f]{16} prx event=disconnect client=127\.0\.0\.1 .*messages=0")


class LogFormatTest(SpoolTestCase):

    def test_json_numbers_are_numbers(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices,
                                   {"log_format": "json", "log_level": "debug"})
        r = self.start_own_relay(config, relay=Relay(config, listening=JSON_LISTENING_RE))
        r.wait_log(r'"event":"started"')
        self.send_mail(r, "j@example.org", ["a@example.net", "b@example.net"],
                       make_message("json numbers"))
        r.wait_lines(r'"status":"sent"')
        r.wait_lines(r'"event":"disconnect"')
        self.stop_expect_0(r)
        objs = [json.loads(li) for li in r.lines()]
        (sent,) = [o for o in objs if o.get("status") == "sent"]
        self.assertEqual(sent["nrcpt"], 2)
        self.assertIsInstance(sent["size"], int)
        self.assertGreater(sent["size"], 100)
        self.assertIsInstance(sent["qid"], str)
        self.assertIsInstance(sent["reply"], str)
        (conn,) = [o for o in objs if o.get("event") == "connect"]
        self.assertIsInstance(conn["port"], int)
        (disc,) = [o for o in objs if o.get("event") == "disconnect"]
        self.assertEqual(disc["messages"], 1)
        (started,) = [o for o in objs if o.get("event") == "started"]
        self.assertIsInstance(started["pid"], int)
        self.assertEqual(started["pid"], r.proc.pid)
        for o in objs:
            for k, v in o.items():
                if k not in TEXT_KEYS and isinstance(v, str):
                    self.assertNotRegex(v, r"^(0|-?[1-9][0-9]{0,14})$",
                                        "%s is a number as a string in %r" % (k, o))

    def run_serve(self, config, env):
        """relay25 serve with stderr on a pipe we made (so its dev:ino is known);
        returns its stderr lines up to the listening line, then stops it."""
        rfd, wfd = os.pipe()
        st = os.fstat(wfd)
        env = clean_env(**{k: v.format(dev=st.st_dev, ino=st.st_ino) for k, v in env.items()})
        p = subprocess.Popen([RELAY25_BIN, "serve", "-c", config], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=wfd, env=env)
        os.close(wfd)
        lines = []
        with os.fdopen(rfd, "r", errors="replace") as f:
            deadline = time.monotonic() + 30
            for line in f:
                lines.append(line.rstrip("\n"))
                if "event=started" in line or time.monotonic() > deadline:
                    break
            p.send_signal(signal.SIGTERM)
            p.wait(45)
            lines += [li.rstrip("\n") for li in f]
        self.assertEqual(p.returncode, 0, "\n".join(lines))
        return lines

    def test_timestamps(self):
        devices, _ = self.default_devices()
        cases = [("yes", {}, TS_RE), ("no", {}, NO_TS_RE), ("auto", {}, TS_RE),
                 ("auto", {"JOURNAL_STREAM": "{dev}:{ino}"}, NO_TS_RE),
                 ("auto", {"JOURNAL_STREAM": "1:2"}, TS_RE),     # another stream
                 ("yes", {"JOURNAL_STREAM": "{dev}:{ino}"}, TS_RE)]
        for i, (mode, env, want) in enumerate(cases):
            with self.subTest(log_timestamps=mode, env=env):
                config = self.write_config({"main": self.upstream(port=9)}, devices,
                                           {"log_timestamps": mode, "log_level": "info"},
                                           name="ts%d.ini" % i)
                lines = self.run_serve(config, env)
                self.assertTrue(any("event=started" in li for li in lines), lines)
                for li in lines:
                    self.assertRegex(li, want)

    def test_syslog_unavailable_falls_back_to_stderr(self):
        binary = RELAY25_BIN
        if syslog_socket():
            # hide this host's syslog socket from relay25 alone: a private mount
            # namespace with /dev/null over /dev/log (connect: ECONNREFUSED)
            if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
                self.skipTest("a syslog socket exists here and unshare -m is not allowed")
            binary = os.path.join(self.dir, "relay25-nosyslog")
            with open(binary, "w") as f:
                f.write("#!/bin/sh\nexec unshare -m sh -c 'mount --bind /dev/null /dev/log && "
                        "exec \"$@\"' sh %s \"$@\"\n" % os.path.abspath(RELAY25_BIN))
            os.chmod(binary, 0o755)
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices,
                                   {"log": "syslog", "log_level": "info"})
        # finds its port in the (stderr) log
        r = self.start_own_relay(config, relay=Relay(config, binary=binary))
        line = r.wait_log(r"\bwarn [0-9a-f]{16} relay25 event=log_fallback log=syslog "
                          r"using=stderr reason=").string
        self.assertIn("/dev/log", line)
        self.send_mail(r, "f@example.org", ["a@example.net"], make_message("fallback"))
        r.wait_lines(r"\bstatus=sent\b")
        self.stop_expect_0(r)


if __name__ == "__main__":
    main()
