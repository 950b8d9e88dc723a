#!/usr/bin/python3
"""Host integration: SIGHUP reload, the Prometheus metrics endpoint, dropping root
privileges, the sd_notify protocol (NOTIFY_SOCKET), and the log outputs
(log_format = json, log = syslog). SIGTERM draining is in test_lifecycle.py.

relay25 logs "event=listening" twice when metrics_listen is set (the metrics
listener first), and in JSON or to syslog the harness's listening regex does not
apply, so these tests start relay25 through Relay(listening=...), which finds the SMTP port
from the "prx" listening line, its JSON form, or /proc (log = syslog)."""

import json
import os
import pwd
import re
import signal
import smtplib
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.request

from relaytest import (CLIENT_NAME, RELAY25_BIN, Relay, RelayTestCase, main, make_message,
                       parse_hostport)

PRX_LISTENING_RE = re.compile(r"\bprx event=listening addr=(\S+)")
METRICS_LISTENING_RE = re.compile(r"\bmetrics event=listening service=metrics addr=(\S+)")
JSON_PRX_LISTENING_RE = re.compile(r'"module":"prx".*"event":"listening".*"addr":"([^"]+)"')
UNKNOWN_USER = "no-such-user-xyz"

IS_ROOT = os.geteuid() == 0


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# --------------------------------------------------------------------------- relay

def proc_status(pid):
    """/proc/PID/status as {key: value string}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


# --------------------------------------------------------------------------- metrics

SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'                                  # name
    r'(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'             # labels
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*,?)?\})?'
    r' (-?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+)|NaN|[+-]Inf)'  # value
    r'(?: -?[0-9]+)?$')                                             # optional timestamp
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Exposition:
    """A parsed Prometheus text exposition (0.0.4). parse() raises AssertionError
    naming the offending line."""

    def __init__(self, text):
        self.text = text
        self.types = {}      # family -> type
        self.samples = {}    # (name, ((label, value), ...)) -> float
        self.order = []      # sample keys in order
        self._parse()

    def _family(self, name):
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in ("histogram", "summary"):
                return base
        return None

    def _parse(self):
        if not self.text.endswith("\n"):
            raise AssertionError("exposition does not end with a newline: %r" % self.text[-80:])
        helps = set()
        for n, line in enumerate(self.text.split("\n")[:-1], 1):
            if line == "":
                raise AssertionError("line %d: empty line in exposition" % n)
            if line.startswith("#"):
                m = re.fullmatch(r"# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)", line)
                if not m:
                    raise AssertionError("line %d: malformed comment %r" % (n, line))
                kind, name, rest = m.groups()
                if kind == "TYPE":
                    if rest not in TYPES:
                        raise AssertionError("line %d: unknown type %r" % (n, line))
                    if name in self.types:
                        raise AssertionError("line %d: second TYPE for %s" % (n, name))
                    if any(k[0] == name or self._family(k[0]) == name for k in self.order):
                        raise AssertionError("line %d: TYPE %s after its samples" % (n, name))
                    self.types[name] = rest
                else:
                    if name in helps:
                        raise AssertionError("line %d: second HELP for %s" % (n, name))
                    helps.add(name)
                continue
            m = SAMPLE_RE.match(line)
            if not m:
                raise AssertionError("line %d: not 'name{labels} value': %r" % (n, line))
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if self._family(name) is None:
                raise AssertionError("line %d: sample %s without a TYPE line" % (n, name))
            key = (name, tuple(LABEL_RE.findall(labels)))
            if key in self.samples:
                raise AssertionError("line %d: duplicate series %r" % (n, line))
            self.samples[key] = float(value)
            self.order.append(key)
        for fam in self.types:
            if fam not in helps:
                raise AssertionError("family %s has no HELP line" % fam)

    def get(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        for k, v in self.samples.items():
            if k[0] == name and tuple(sorted(k[1])) == key[1]:
                return v
        raise AssertionError("no series %s%r in exposition:\n%s" % (name, labels, self.text))

    def series(self, name):
        """[(labels dict, value)] of every sample called name, in order."""
        return [(dict(k[1]), self.samples[k]) for k in self.order if k[0] == name]


def scrape(addr, path="/metrics"):
    host, port = addr
    url = "http://%s:%d%s" % (host if ":" not in host else "[%s]" % host, port, path)
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read().decode("utf-8")
        return r.status, r.headers.get("Content-Type"), body


# --------------------------------------------------------------------------- tests

class HostTest(RelayTestCase):

    def start_host_relay(self, config, env=None, listening=PRX_LISTENING_RE, own=False):
        """own=False: the harness's cleanup stops it and asserts exit 0 and no secrets.
        own=True: the test stops it itself; cleanup kills it if needed and checks secrets."""
        r = Relay(config, listening=listening, env=env)
        if own:
            return self.start_own_relay(config, relay=r)
        self.addCleanup(self._finish_relay, r)
        r.start()
        return r

    def scanner_devices(self, user, password):
        return {"scanner": {"match": "127.0.0.2", "user": user,
                            "password_file": self.password_file(user, password)}}

    @staticmethod
    def by_subject(peer, subject, accepted_only=True):
        msgs = peer.messages() if accepted_only else peer.all_messages()
        found = [m for m in msgs if m.header("Subject") == subject]
        if len(found) != 1:
            raise AssertionError("%d messages with Subject %r upstream (want 1); subjects: %r"
                                 % (len(found), subject, [m.header("Subject") for m in msgs]))
        return found[0]

    def ehlo_host(self, s):
        code, text = s.ehlo()
        self.assertEqual(code, 250, text)
        return text.decode("utf-8", "replace").split("\n", 1)[0].split(" ", 1)[0]

    # --- SIGHUP reload -------------------------------------------------------------

    def test_reload_applies_to_new_sessions_old_ones_finish_on_theirs(self):
        user_a, user_b = "scanner-a@example.com", "scanner-b@example.com"
        users = {user_a: self.new_password(user_a), user_b: self.new_password(user_b)}
        peer = self.start_peer(users=users)
        up = {"main": self.upstream(peer)}

        def config(user, hostname, relay=None, devices=None):
            return self.write_config(up, devices or self.scanner_devices(user, users[user]),
                                     dict({"hostname": hostname}, **(relay or {})))

        path = config(user_a, "relay-a.test")
        relay = self.start_host_relay(path)

        # an open transaction: its upstream session is authenticated as A
        old = self.smtp(relay)
        self.assertEqual(self.ehlo_host(old), "relay-a.test")
        self.assertEqual(old.mail("old@example.org")[0], 250)
        self.assertEqual(old.rcpt("r@example.net")[0], 250)
        self.assertEqual([(a.login, a.success) for a in peer.auth_attempts()], [(user_a, True)])
        # a session that connected before the reload but sends MAIL only after it
        idle = self.smtp(relay)
        self.assertEqual(self.ehlo_host(idle), "relay-a.test")

        self.assertEqual(config(user_b, "relay-b.test"), path)
        relay.proc.send_signal(signal.SIGHUP)
        ok_line = relay.wait_log(r"\bevent=reload status=ok\b").string

        new = self.smtp(relay)
        self.assertEqual(self.ehlo_host(new), "relay-b.test", "new session after reload")
        self.assertEqual(new.sendmail("new@example.org", ["r@example.net"],
                                      make_message("new session")), {})
        m = self.by_subject(peer, "new session")
        self.assertEqual(m.login, user_b, "new session after reload authenticated upstream as")
        self.assertIn("by relay-b.test ", m.header("Received"))

        code, text = old.data(make_message("old session"))
        self.assertEqual(code, 250, "old session's message after the reload: %s" % text)
        m = self.by_subject(peer, "old session")
        self.assertEqual(m.login, user_a, "session opened before the reload delivered as")
        self.assertIn("by relay-a.test ", m.header("Received"))

        self.assertEqual(idle.sendmail("idle@example.org", ["r@example.net"],
                                       make_message("idle session")), {})
        m = self.by_subject(peer, "idle session")
        self.assertEqual(m.login, user_a, "session connected before the reload (MAIL after it) "
                                          "authenticated upstream as")
        self.assertIn("by relay-a.test ", m.header("Received"))
        for s in (old, idle, new):
            s.quit()
        relay.wait_lines(r"\bevent=connect client=127\.0\.0\.2 .*\buser=%s\b"
                         % re.escape(user_b), 1)

        # invalid configurations are refused and the running one (B) stays
        bad = [
            ("unknown key", lambda: config(user_b, "relay-c.test", relay={"no_such_key": "1"}),
             "no_such_key"),
            ("missing password_file", lambda: config(user_a, "relay-c.test", devices={
                "scanner": {"match": "127.0.0.2", "user": user_a,
                            "password_file": os.path.join(self.dir, "missing.secret")}}),
             "missing.secret"),
        ]
        for i, (what, write, named) in enumerate(bad, 1):
            with self.subTest(invalid=what):
                self.assertEqual(write(), path)
                relay.proc.send_signal(signal.SIGHUP)
                lines = relay.wait_lines(r"\bevent=reload status=refused\b", i)
                self.assertIn(named, lines[-1], "refusal does not say what is wrong")
                self.assertIn(os.path.basename(path), lines[-1], "refusal does not name the file")
                self.assertEqual(len(relay.grep(r"\bevent=reload status=ok\b")), 1, relay.tail())
                self.assertTrue(relay.alive(), relay.tail())
                subj = "after refused reload %d" % i
                self.assertEqual(self.send_mail(relay, "x@example.org", ["r@example.net"],
                                                make_message(subj)), {})
                m = self.by_subject(peer, subj)
                self.assertEqual(m.login, user_b, "after a refused reload (%s)" % what)
                self.assertIn("by relay-b.test ", m.header("Received"))

        # and a valid file is taken again afterwards
        config(user_a, "relay-d.test")
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_lines(r"\bevent=reload status=ok\b", 2)
        self.assertEqual(self.send_mail(relay, "x@example.org", ["r@example.net"],
                                        make_message("after second reload")), {})
        m = self.by_subject(peer, "after second reload")
        self.assertEqual(m.login, user_a)
        self.assertIn("by relay-d.test ", m.header("Received"))
        refused = relay.grep(r"\bevent=reload status=refused\b")
        self.assertEqual([li.split(" ", 1)[0] for li in refused], ["error", "error"], refused)
        self.assertEqual(ok_line.split(" ", 1)[0], "info", "log level of: " + ok_line)
        # teardown: SIGTERM, exit 0, no password in the log

    # --- metrics -------------------------------------------------------------------

    def test_metrics_endpoint(self):
        bad_user = "badpw@example.com"
        devices, users = self.default_devices()
        devices["badpw"] = {"match": "127.0.0.4", "user": bad_user,
                            "password": self.new_password(bad_user, "wrong")}
        peer_users = dict(users, **{bad_user: self.new_password(bad_user, "right")})
        peer = self.start_peer(users=peer_users)
        path = self.write_config({"main": self.upstream(peer)}, devices,
                                 {"allow": self.ALLOW + ", 127.0.0.4/32",
                                  "metrics_listen": "127.0.0.1:0"})
        relay = self.start_host_relay(path)
        maddr = parse_hostport(relay.wait_log(METRICS_LISTENING_RE).group(1))
        self.assertEqual(maddr[0], "127.0.0.1")
        self.assertNotEqual(maddr[1], relay.port)

        status, ctype, body = scrape(maddr)
        self.assertEqual(status, 200)
        self.assertTrue(ctype and ctype.startswith("text/plain") and "version=0.0.4" in ctype,
                        ctype)
        before = Exposition(body)
        self.assertEqual(before.get("relay25_sessions_total"), 0, "scrapes count as sessions?")
        start = before.get("relay25_start_time_seconds")
        self.assertLess(abs(start - time.time()), 3600, "start time %s is not now" % start)

        connections = 0
        # 1: two messages, the second refused by upstream at end of DATA
        with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                          source_address=("127.0.0.2", 0), timeout=60) as s:
            connections += 1
            msg1 = make_message("sent one", (b"x" * 70 + b"\r\n") * 20)
            self.assertEqual(s.sendmail("a@example.org", ["r1@example.net"], msg1), {})
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                s.sendmail("a@example.org", ["r1@example.net"],
                           make_message("bounced", headers=["X-Test-Reply: 554"]))
            self.assertEqual(cm.exception.smtp_code, 554)
            s.quit()
        # 2: one message to two recipients
        msg3 = make_message("sent two", (b"y" * 70 + b"\r\n") * 10)
        self.assertEqual(self.send_mail(relay, "b@example.org",
                                        ["r2@example.net", "r3@example.net"], msg3,
                                        source="127.0.0.3"), {})
        connections += 1
        # 3: a client outside allow
        stage, code, text = self.transaction(relay, "c@example.org", ["r@example.net"],
                                             make_message("refused"), source="127.0.0.9")
        connections += 1
        self.assertEqual((stage, code), ("connect", 554), text)
        # 4: upstream refuses the device's password
        stage, code, text = self.transaction(relay, "d@example.org", ["r@example.net"],
                                             make_message("auth"), source="127.0.0.4")
        connections += 1
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertIn("authentication failed", text)

        msg_lines = relay.wait_lines(r"\bqid=\S+ from=.*\bstatus=", 4)
        relay.wait_lines(r"\bevent=disconnect\b", connections)
        # sessions_active drops when upstream's side of a session has closed too
        deadline = time.monotonic() + 20
        while True:
            status, _, body = scrape(maddr)
            ex = Exposition(body)
            if ex.get("relay25_sessions_active") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200)
        got = {k[0] + ("{%s}" % ",".join("%s=%s" % kv for kv in k[1]) if k[1] else ""): v
               for k, v in ex.samples.items() if not k[0].endswith("_bucket")}

        def count(st):
            return sum(1 for li in msg_lines if re.search(r"\bstatus=%s\b" % st, li))

        self.assertEqual((count("sent"), count("bounced"), count("deferred")), (2, 1, 1),
                         "\n".join(msg_lines))
        expect = {
            'relay25_messages_total{status="sent"}': 2,
            'relay25_messages_total{status="bounced"}': 1,
            'relay25_messages_total{status="deferred"}': 1,   # the auth failure at MAIL
            'relay25_messages_total{status="aborted"}': 0,
            "relay25_refused_clients_total": 1,
            "relay25_sessions_total": connections,
            "relay25_sessions_active": 0,
            "relay25_recipients_total": 3,
            "relay25_limited_connections_total": 0,
            "relay25_rate_limited_total": 0,
            "relay25_policy_refused_total": 0,
        }
        actual = {
            'relay25_messages_total{status="%s"}' % st: ex.get("relay25_messages_total",
                                                               status=st)
            for st in ("sent", "bounced", "deferred", "aborted")}
        for name in expect:
            if "{" not in name:
                actual[name] = ex.get(name)
        self.assertEqual(actual, expect, "metrics:\n%s\nlog:\n%s" % (body, relay.tail()))

        errors = {lab["kind"]: v for lab, v in ex.series("relay25_upstream_errors_total")}
        self.assertEqual(errors.get("auth"), 1, errors)
        self.assertEqual({k: v for k, v in errors.items() if k != "auth" and v}, {},
                         "upstream errors other than the one auth failure")
        self.assertEqual(len(errors), len(ex.series("relay25_upstream_errors_total")),
                         "kind label repeated")

        sizes = [int(re.search(r"\bsize=(\d+)", li).group(1)) for li in msg_lines
                 if re.search(r"\bstatus=sent\b", li)]
        nbytes = ex.get("relay25_message_bytes_total")
        self.assertGreater(nbytes, 0)
        self.assertEqual(nbytes, sum(sizes), "bytes_total vs size= of the sent messages")
        self.assertGreaterEqual(nbytes, len(msg1) + len(msg3))

        auth_ok = [a for a in peer.auth_attempts() if a.success]
        self.assertEqual(len(auth_ok), 2, peer.auth_attempts())
        hist_count = {
            "relay25_upstream_setup_seconds": len(auth_ok),  # one upstream session per client
            "relay25_upstream_delivery_seconds": 3,          # end-of-DATA replies: 2 sent + 1
        }
        for h, n in hist_count.items():
            with self.subTest(histogram=h):
                self.assertEqual(ex.types.get(h), "histogram")
                buckets = ex.series(h + "_bucket")
                self.assertGreaterEqual(len(buckets), 2)
                les = [b[0]["le"] for b in buckets]
                self.assertEqual(les[-1], "+Inf")
                bounds = [float(le) for le in les[:-1]]
                self.assertEqual(bounds, sorted(set(bounds)), "le bounds not ascending")
                values = [b[1] for b in buckets]
                self.assertEqual(values, sorted(values), "buckets not cumulative: %r" % values)
                self.assertEqual(ex.get(h + "_count"), n, got)
                self.assertEqual(values[-1], n, "+Inf bucket != _count")
                self.assertGreaterEqual(ex.get(h + "_sum"), 0)
        for name, typ in ex.types.items():
            if name.endswith("_total"):
                self.assertEqual(typ, "counter", name)

        # a broken scrape (no end of head, more than the request buffer) is just closed
        with socket.create_connection(maddr, 30) as c:
            try:
                c.sendall(b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 8000)
                c.settimeout(30)
                while c.recv(4096):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
        status, _, body = scrape(maddr, "/")
        self.assertEqual(status, 200)
        self.assertEqual(Exposition(body).get("relay25_sessions_total"), connections)
        self.assertTrue(relay.alive(), relay.tail())

    # --- privileges ----------------------------------------------------------------

    def make_readable_by_others(self, *paths):
        """Only for the privilege tests: the config, CA and secrets must stay readable by
        the unprivileged user (for reloads)."""
        for p in (self.tmp, os.path.dirname(self.pki.ca_file), self.dir):
            os.chmod(p, 0o755)
        for p in (self.pki.ca_file,) + paths:
            os.chmod(p, 0o644)

    def assert_ids(self, pid, uid, gid):
        st = proc_status(pid)
        self.assertEqual([int(x) for x in st["Uid"].split()], [uid] * 4,
                         "Uid (real, effective, saved, fs): %s" % st["Uid"])
        self.assertEqual([int(x) for x in st["Gid"].split()], [gid] * 4,
                         "Gid (real, effective, saved, fs): %s" % st["Gid"])
        return st

    @unittest.skipUnless(IS_ROOT, "needs root")
    @unittest.skipUnless(user_exists("nobody"), "no user nobody")
    def test_privilege_drop_to_user(self):
        nobody = pwd.getpwnam("nobody")
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        path = self.write_config({"main": self.upstream(peer)}, devices, {"user": "nobody"})
        self.make_readable_by_others(path, devices["scanner"]["password_file"])
        relay = self.start_host_relay(path)
        relay.wait_log(r"\bevent=started\b")
        st = self.assert_ids(relay.proc.pid, nobody.pw_uid, nobody.pw_gid)
        self.assertEqual(st.get("Groups"), "", "supplementary groups kept: %r" % st.get("Groups"))
        self.assertEqual(int(st["CapEff"], 16), 0, "effective capabilities: %s" % st["CapEff"])
        self.assertEqual(int(st["CapPrm"], 16), 0, "permitted capabilities: %s" % st["CapPrm"])
        line = relay.wait_log(r"\bevent=privileges user=nobody\b").string
        self.assertIn("uid=%d" % nobody.pw_uid, line)
        self.assertIn("gid=%d" % nobody.pw_gid, line)

        self.assertEqual(self.send_mail(relay, "p@example.org", ["r@example.net"],
                                        make_message("as nobody")), {})
        m = self.by_subject(peer, "as nobody")
        self.assertEqual(m.login, self.SCANNER)
        # reloading reads the file again as nobody (README: it must stay readable)
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"\bevent=reload status=(ok|refused)\b")
        self.assertEqual(relay.grep(r"\bevent=reload status=refused\b"), [], relay.tail())
        self.assertEqual(self.send_mail(relay, "p@example.org", ["r@example.net"],
                                        make_message("after reload as nobody"),
                                        source="127.0.0.3"), {})
        self.assertEqual(self.by_subject(peer, "after reload as nobody").login, self.PRINTER)
        self.assert_ids(relay.proc.pid, nobody.pw_uid, nobody.pw_gid)

    @unittest.skipUnless(IS_ROOT, "needs root")
    def test_privilege_default_user(self):
        """No user = key: relay25 if that account exists, else root with a warning."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        path = self.write_config({"main": self.upstream(peer)}, devices)
        self.make_readable_by_others(path, devices["scanner"]["password_file"])
        relay = self.start_host_relay(path)
        relay.wait_log(r"\bevent=started\b")
        if user_exists("relay25"):
            pw = pwd.getpwnam("relay25")
            self.assert_ids(relay.proc.pid, pw.pw_uid, pw.pw_gid)
            relay.wait_log(r"\bevent=privileges user=relay25\b")
        else:
            self.assert_ids(relay.proc.pid, 0, 0)
            line = relay.wait_log(r"\bevent=privileges user=root\b").string
            self.assertIn("relay25", line.split("event=privileges", 1)[1])
        self.assertEqual(self.send_mail(relay, "p@example.org", ["r@example.net"],
                                        make_message("default user")), {})
        self.assertEqual(self.by_subject(peer, "default user").login, self.SCANNER)
        if not user_exists("relay25"):
            self.assertEqual(line.split(" ", 1)[0], "warn", "log level of: " + line)

    def run_serve(self, path, timeout=30):
        try:
            r = subprocess.run([RELAY25_BIN, "serve", "-c", path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("relay25 serve -c %s kept running (want a startup error)" % path)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assert_no_secrets(out, "relay25 serve output")
        return r.returncode, out

    @unittest.skipUnless(IS_ROOT, "needs root")
    def test_privilege_unknown_user_is_startup_error(self):
        self.assertFalse(user_exists(UNKNOWN_USER))
        devices, users = self.default_devices()
        path = self.write_config({"main": self.upstream(port=1)}, devices, {"user": UNKNOWN_USER})
        rc, out = self.run_serve(path)
        self.assertGreater(rc, 0, "exit status %s; output:\n%s" % (rc, out))
        self.assertIn(UNKNOWN_USER, out)
        self.assertNotIn("event=started", out)

    def test_user_root_is_refused_by_config(self):
        """Commit c61bb02: `user = root` is a configuration error (exit 78, file:line)."""
        devices, users = self.default_devices()
        path = self.write_config({"main": self.upstream(port=1)}, devices, {"user": "root"})
        rc, out = self.run_serve(path)
        self.assertEqual(rc, 78, out)
        self.assertRegex(out, re.escape(os.path.basename(path)) + r":\d+:")
        self.assertNotIn("event=started", out)

    # --- sd_notify -------------------------------------------------------------------

    def notify_socket(self, address):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.settimeout(20)
        return sock

    def recv_notify(self, sock, relay, what):
        """One datagram: (set of its NAME=VALUE lines, sender pid)."""
        try:
            data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
        except socket.timeout:
            self.fail("no sd_notify datagram (waiting for %s); log:\n%s" % (what, relay.tail()))
        pid = None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:struct.calcsize("iII")])[0]
        return set(data.decode("utf-8", "replace").split("\n")) - {""}, pid

    def expect_notify(self, sock, relay, state):
        fields, pid = self.recv_notify(sock, relay, state)
        self.assertIn(state, fields, "datagram %r, want %s" % (sorted(fields), state))
        self.assertEqual(pid, relay.proc.pid, "%s sent by pid %s, not relay25's main pid"
                         % (state, pid))
        return fields

    def test_notify_socket_protocol(self):
        path = os.path.join(self.dir, "notify.sock")
        self.assertLess(len(path), 108)
        sock = self.notify_socket(path)
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices)
        relay = self.start_host_relay(config, env={"NOTIFY_SOCKET": path}, own=True)
        self.expect_notify(sock, relay, "READY=1")
        # READY means serving
        self.assertEqual(self.send_mail(relay, "n@example.org", ["r@example.net"],
                                        make_message("notify")), {})

        relay.proc.send_signal(signal.SIGHUP)
        self.expect_notify(sock, relay, "RELOADING=1")
        self.expect_notify(sock, relay, "READY=1")
        relay.wait_log(r"\bevent=reload status=ok\b")

        with open(config, "a") as f:
            f.write("\n[relay]\nbogus = 1\n")
        relay.proc.send_signal(signal.SIGHUP)
        self.expect_notify(sock, relay, "RELOADING=1")
        self.expect_notify(sock, relay, "READY=1")
        relay.wait_log(r"\bevent=reload status=refused\b")

        self.stop_expect_0(relay)
        self.expect_notify(sock, relay, "STOPPING=1")
        sock.settimeout(0.5)
        try:
            extra = sock.recv(4096)
        except socket.timeout:
            extra = None
        self.assertIsNone(extra, "datagram after STOPPING=1")
        self.assertEqual(relay.grep(r"\bevent=notify_failed\b"), [])

    def test_notify_socket_abstract_and_unreachable(self):
        name = "relay25-test-%d-%s" % (os.getpid(), os.path.basename(self.dir))
        sock = self.notify_socket("\0" + name)
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices)
        relay = self.start_host_relay(config, env={"NOTIFY_SOCKET": "@" + name}, own=True)
        self.expect_notify(sock, relay, "READY=1")
        self.stop_expect_0(relay)
        self.expect_notify(sock, relay, "STOPPING=1")

        # nobody listening at NOTIFY_SOCKET: relay25 still serves
        gone = os.path.join(self.dir, "gone.sock")
        relay2 = self.start_host_relay(config, env={"NOTIFY_SOCKET": gone})
        self.assertEqual(self.send_mail(relay2, "n@example.org", ["r@example.net"],
                                        make_message("no notify listener")), {})
        self.assertEqual(self.by_subject(peer, "no notify listener").login, self.SCANNER)

    # --- log outputs -----------------------------------------------------------------

    def test_log_format_json(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices,
                                   {"log_format": "json", "metrics_listen": "127.0.0.1:0",
                                    "log_level": "debug"})
        relay = self.start_host_relay(config, listening=JSON_PRX_LISTENING_RE, own=True)
        self.assertEqual(self.send_mail(relay, "json@example.org",
                                        ["r1@example.net", "r2@example.net"],
                                        make_message("json")), {})
        tricky = r'554 5.7.1 say "no" to C:\path now'
        with self.assertRaises(smtplib.SMTPDataError):
            self.send_mail(relay, "json@example.org", ["r1@example.net"],
                           make_message("tricky", headers=["X-Test-Reply: " + tricky]))
        stage, code, _ = self.transaction(relay, "x@example.org", ["r@example.net"],
                                          make_message("refused"), source="127.0.0.9")
        self.assertEqual((stage, code), ("connect", 554))
        relay.wait_lines(r'"status":"bounced"', 1)
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r'"event":"reload"')
        self.stop_expect_0(relay)

        lines = relay.lines()
        self.assertGreater(len(lines), 5)
        objs = []
        for line in lines:
            def no_dupes(pairs, line=line):
                keys = [k for k, _ in pairs]
                dup = sorted({k for k in keys if keys.count(k) > 1})
                if dup:
                    raise AssertionError("duplicate keys %r in log line %s" % (dup, line))
                return dict(pairs)
            try:
                o = json.loads(line, object_pairs_hook=no_dupes)
            except ValueError as e:
                self.fail("log line is not JSON (%s): %s" % (e, line))
            self.assertIsInstance(o, dict, line)
            for k in ("ts", "level", "sid", "module"):
                self.assertIn(k, o, line)
                self.assertIsInstance(o[k], str, line)
            self.assertRegex(o["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
            self.assertIn(o["level"], ("debug", "info", "warn", "error"), line)
            self.assertRegex(o["sid"], r"^[0-9a-f]{16}$", line)
            self.assertRegex(o["module"], r"^[a-z0-9_]+$", line)
            objs.append(o)

        sent = [o for o in objs if o.get("status") == "sent"]
        self.assertEqual(len(sent), 1, "\n".join(lines))
        (s,) = sent
        self.assertEqual((s.get("from"), s.get("nrcpt"), s.get("device"), s.get("user")),
                         ("<json@example.org>", 2, "scanner", self.SCANNER), s)
        self.assertTrue(s.get("reply", "").startswith("250 "), s)
        self.assertRegex(s.get("qid", ""), r"^[0-9a-f]+$")
        # integers are JSON numbers (issue 14): was the string "^[1-9][0-9]*$"
        self.assertIsInstance(s.get("size"), int, s)
        self.assertGreater(s["size"], 0, s)
        connects = [o for o in objs if o.get("event") == "connect" and o["sid"] == s["sid"]]
        self.assertEqual(len(connects), 1, "the message line's sid has no connect line")
        self.assertEqual(connects[0].get("client"), "127.0.0.2")
        self.assertNotEqual(s["sid"], "0" * 16)

        (b,) = [o for o in objs if o.get("status") == "bounced"]
        self.assertEqual(b.get("reply"), tricky, "quoted reply text through JSON")
        (r,) = [o for o in objs if o.get("event") == "refused"]
        self.assertEqual((r.get("client"), r.get("reason")), ("127.0.0.9", "not in allow"))
        self.assertTrue(any(o.get("event") == "reload" and o.get("status") == "ok"
                            for o in objs), "reload line")
        # last: levels (every line said "error" when this was written)
        self.assertEqual(s["level"], "info", "level of the sent message line")
        levels = {(o.get("event"), o.get("status")): o["level"] for o in objs
                  if o.get("event") in ("listening", "reload", "started", "stopped")}
        self.assertEqual(levels, {("listening", None): "info", ("reload", "ok"): "info",
                                  ("started", None): "info", ("stopped", None): "info"},
                         "log levels of lifecycle lines")
        self.assertIn("debug", {o["level"] for o in objs}, "log_level = debug shows no debug line")
        self.assertTrue(any(o.get("module") == "metrics" and o.get("event") == "listening"
                            for o in objs), "metrics listening line")
        self.assertTrue(any(o.get("event") == "stopped" for o in objs), "stopped line")

    def syslog_stub(self):
        """A datagram socket on /dev/log when nothing listens there (a container): relay25
        falls back to stderr without one (conf_warn.c), so the syslog path needs a
        listener. A thread drains it (a full socket would block syslog(3)). Returns the
        list the datagrams go to, or None when a real syslog daemon listens."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect("/dev/log")
            return None
        except OSError:
            pass
        finally:
            probe.close()
        if os.geteuid() != 0:
            self.skipTest("no syslog socket at /dev/log and no root to provide one")
        try:
            os.unlink("/dev/log")  # a stale socket nobody listens on
        except FileNotFoundError:
            pass
        stub = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stub.bind("/dev/log")
        stub.settimeout(0.2)
        got, stop = [], threading.Event()

        def drain():
            while not stop.is_set():
                try:
                    got.append(stub.recv(65536).decode("utf-8", "replace"))
                except socket.timeout:
                    pass
                except OSError:
                    return
        t = threading.Thread(target=drain, daemon=True)
        t.start()

        def remove():
            stop.set()
            t.join(5)
            stub.close()
            try:
                os.unlink("/dev/log")
            except FileNotFoundError:
                pass
        self.addCleanup(remove)
        return got

    def test_log_syslog_without_socket_logs_to_stderr(self):
        """log = syslog with nothing on /dev/log: a warning and the log on stderr, not
        a daemon that serves mail and logs nothing at all."""
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            probe.connect("/dev/log")
            self.skipTest("a syslog daemon listens on /dev/log")
        except OSError:
            pass
        finally:
            probe.close()
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices, {"log": "syslog"})
        relay = self.start_host_relay(config, listening=None, own=True)
        relay.wait_log(r"^warn \S+ relay25 event=config file=\S+ line=\d+ warning=\"log = syslog, "
                       r"but nothing listens on /dev/log \(no syslog daemon\): relay25 logs to "
                       r"stderr instead\"")
        relay.wait_log(r"\bevent=started\b")
        self.assertEqual(self.send_mail(relay, "sys@example.org", ["r@example.net"],
                                        make_message("fallback")), {})
        relay.wait_log(r"\bstatus=sent\b")
        self.stop_expect_0(relay)
        r = self.run_check(config)
        self.assertIn("warning: %s:" % config, r.stdout)
        self.assertIn("log = syslog, but nothing listens on /dev/log", r.stdout)

    def test_log_syslog_starts_and_relays(self):
        """Syslog output itself is not captured; relay25 must run, relay, print nothing
        on stderr/stdout and exit 0."""
        stub = self.syslog_stub()
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        config = self.write_config({"main": self.upstream(peer)}, devices, {"log": "syslog"})
        relay = self.start_host_relay(config, listening=None, own=True)
        self.assertEqual(self.send_mail(relay, "sys@example.org", ["r@example.net"],
                                        make_message("syslog")), {})
        self.assertEqual(self.by_subject(peer, "syslog").login, self.SCANNER)
        self.stop_expect_0(relay)
        self.assertEqual(relay.lines(), [], "log = syslog wrote to stderr/stdout")
        if stub is not None:
            self.assertTrue(any("event=started" in g for g in stub), "syslog got: %r" % stub[:5])


if __name__ == "__main__":
    main()
