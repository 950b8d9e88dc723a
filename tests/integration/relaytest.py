"""Integration-test harness for relay25 (Debian /usr/bin/python3, stdlib + aiosmtpd).

Relay       runs `relay25 serve -c FILE` as a subprocess, collects its stderr/stdout,
            finds the port from "event=listening addr=HOST:PORT", stops it with SIGTERM.
RelayTestCase  unittest base: per-class temp dir and test PKIs (certs.py), per-test
            peers (peer.py) and relays, cleanups that assert relay25 is still alive,
            exits 0 on SIGTERM and never printed a configured password.

Typical test:
    peer, relay = self.start_default()            # starttls peer, 3 devices
    self.send_mail(relay, "a@example.org", ["b@example.net"], msg, source="127.0.0.2")
    (m,) = peer.messages()
    self.assertEqual(m.login, self.SCANNER)

Environment: RELAY25_BIN (default <repo>/build/relay25); RELAY25_TEST_VERBOSE=1 echoes
relay25's log to stderr; RELAY25_TEST_LOG_LEVEL (default debug, "" to omit the key);
RELAY25_TEST_LOG_TIMESTAMPS (log_timestamps in written configs, default no: tests read
the level as a line's first field; "" to omit the key and get the default, auto).
"""

import base64
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import certs  # noqa: E402
from peer import Peer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
RELAY25_BIN = os.environ.get("RELAY25_BIN") or os.path.join(REPO, "build", "relay25")
LOG_LEVEL = os.environ.get("RELAY25_TEST_LOG_LEVEL", "debug")
LOG_TIMESTAMPS = os.environ.get("RELAY25_TEST_LOG_TIMESTAMPS", "no")
VERBOSE = os.environ.get("RELAY25_TEST_VERBOSE", "") not in ("", "0")
CLIENT_NAME = "client.test"
# the SMTP listener; "metrics event=listening" (metrics_listen) is logged first
LISTENING_RE = re.compile(r"\bprx event=listening\b.*?\baddr=(\S+)")


# --------------------------------------------------------------------------- config

def render_ini(sections):
    """sections: list of (section header, {key: value}). Values are written as-is."""
    out = []
    for header, keys in sections:
        out.append("[%s]" % header)
        for k, v in keys.items():
            if v is not None:
                out.append("%s = %s" % (k, v))
        out.append("")
    return "\n".join(out)


def parse_hostport(text):
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", text)
    if not m:
        raise ValueError("bad address %r" % text)
    return (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), int(m.group(4)))


def closed_port(host="127.0.0.1"):
    """A socket bound to a free port but not listening: connects to it are refused
    and no other test can take the port while the socket lives. Returns (sock, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s, s.getsockname()[1]


def secret_forms(user, password):
    """Strings that must never appear in logs: the password and its AUTH encodings."""
    pw = password.encode()
    return [password,
            base64.b64encode(pw).decode(),                                # AUTH LOGIN
            base64.b64encode(b"\0" + user.encode() + b"\0" + pw).decode()]  # AUTH PLAIN


def strip_received(content):
    """Remove the first header if it is relay25's Received: (plus its folded
    continuation lines). Raises AssertionError when the first line is not one."""
    first, sep, rest = content.partition(b"\r\n")
    if not first.lower().startswith(b"received:"):
        raise AssertionError("first line upstream is not a Received: header: %r" % first[:200])
    while rest[:1] in (b" ", b"\t"):
        _, sep, rest = rest.partition(b"\r\n")
    return rest


# --------------------------------------------------------------------------- relay

def proc_listening_ports(pid):
    """TCP (IPv4) ports process pid listens on, from /proc/PID/fd and /proc/PID/net/tcp."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.fullmatch(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
        with open("/proc/%d/net/tcp" % pid) as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return []
    ports = []
    for row in rows:
        parts = row.split()
        if len(parts) > 9 and parts[3] == "0A" and parts[9] in inodes:
            ports.append(int(parts[1].split(":")[1], 16))
    return ports


class Relay:
    """relay25 serve as a subprocess (config_path None: no -c, environment config)."""

    def __init__(self, config_path, binary=RELAY25_BIN, env=None, name="relay25",
                 listening=LISTENING_RE):
        """listening: a regex whose group 1 is the SMTP HOST:PORT in the log, or None
        to find the port from the process's listening TCP socket in /proc (for
        log = syslog, which writes nothing to stderr)."""
        self.config_path = config_path
        self.binary = binary
        self.listening = listening
        self.env = dict(os.environ, **(env or {}))
        self.name = name
        self.proc = None
        self.host = self.port = None
        self._lines = []
        self._cond = threading.Condition()
        self._readers = []

    def start(self, timeout=15.0):
        if not os.path.exists(self.binary):
            raise FileNotFoundError("relay25 binary not found: %s (set RELAY25_BIN)" % self.binary)
        args = [self.binary, "serve"]
        if self.config_path is not None:      # None: configured from RELAY25_* variables
            args += ["-c", self.config_path]
        self.proc = subprocess.Popen(args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env)
        for stream in (self.proc.stderr, self.proc.stdout):
            t = threading.Thread(target=self._reader, args=(stream,), daemon=True)
            t.start()
            self._readers.append(t)
        if self.listening is not None:
            m = self.wait_log(self.listening, timeout, what="listening line")
            self.host, self.port = parse_hostport(m.group(1))
        else:
            self.host, self.port = "127.0.0.1", self._proc_listening_port(timeout)
        return self

    def _proc_listening_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            ports = proc_listening_ports(self.proc.pid)
            if len(ports) == 1:
                return ports[0]
            if len(ports) > 1:
                raise AssertionError("relay25 listens on several ports: %r" % ports)
            time.sleep(0.05)
        raise AssertionError("relay25: no listening TCP socket in /proc within %.0fs; exit=%s; "
                             "output:\n%s" % (timeout, self.proc.poll(), self.tail()))

    def _reader(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if VERBOSE:
                sys.stderr.write("[%s] %s\n" % (self.name, line))
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def lines(self):
        with self._cond:
            return list(self._lines)

    def log(self):
        return "\n".join(self.lines())

    def tail(self, n=40):
        return "\n".join(self.lines()[-n:])

    def grep(self, pattern):
        r = re.compile(pattern)
        return [line for line in self.lines() if r.search(line)]

    def wait_log(self, pattern, timeout=10.0, what=None):
        """Wait for a log line matching pattern; returns the match. Fails with the
        log tail if relay25 exits or the time runs out."""
        r = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    m = r.search(line)
                    if m:
                        return m
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None
                                 and not any(t.is_alive() for t in self._readers)):
                    break
                self._cond.wait(min(left, 0.2))
        raise AssertionError("%s: no %s (/%s/) within %.0fs; exit=%s; log:\n%s" % (
            self.name, what or "log line", r.pattern, timeout, self.proc.poll(), self.tail()))

    def wait_lines(self, pattern, n=1, timeout=10.0):
        """Wait until at least n log lines match; returns all matching lines. relay25 may
        log a message's status line just after replying to the client, so tests wait
        for log lines instead of grepping right after the SMTP reply."""
        r = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                lines = [line for line in self._lines if r.search(line)]
                left = deadline - time.monotonic()
                if len(lines) >= n or left <= 0 or (
                        self.proc.poll() is not None
                        and not any(t.is_alive() for t in self._readers)):
                    break
                self._cond.wait(min(left, 0.2))
        if len(lines) < n:
            raise AssertionError("%s: %d log lines match /%s/ within %.0fs, want %d; log:\n%s"
                                 % (self.name, len(lines), pattern, timeout, n, self.tail()))
        return lines

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=45.0):
        """SIGTERM and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        for t in self._readers:
            t.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        return self.proc.returncode


# --------------------------------------------------------------------------- raw client

class RawClient:
    """Line-level SMTP client on a plain socket (for pipelining and smuggling tests)."""

    def __init__(self, host, port, source="127.0.0.2", timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout, source_address=(source, 0))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self):
        """One (possibly multi-line) reply: (code, [text lines])."""
        lines = []
        while True:
            line = self.readline()
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError("malformed reply line %r" % line)
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def read_until_close(self):
        """Remaining replies until the server closes the connection."""
        out = []
        try:
            while True:
                out.append(self.reply())
        except (ConnectionError, socket.timeout, OSError):
            pass
        return out

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------- test case

class RelayTestCase(unittest.TestCase):
    OFFICE = "office@example.com"     # [device default]
    SCANNER = "scanner@example.com"   # [device scanner], match 127.0.0.2, password_file
    PRINTER = "printer@example.com"   # [device printer], match 127.0.0.3
    ALLOW = "127.0.0.1/32, 127.0.0.2/32, 127.0.0.3/32"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="relay25-%s-" % cls.__name__)
        pki_dir = os.path.join(cls.tmp, "pki")
        cls.pki = certs.make_pki(pki_dir, "test")
        cls.other_pki = certs.make_pki(pki_dir, "untrusted")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self._testMethodName[:40] + "-", dir=self.tmp)
        self.secrets = []    # (user, password) of this test; checked against every log

    # passwords ----------------------------------------------------------------

    def new_password(self, user, tag="pw"):
        pw = "%s-%s" % (tag, secrets.token_hex(10))
        self.secrets.append((user, pw))
        return pw

    def password_file(self, user, password, name=None):
        path = os.path.join(self.dir, name or (user.split("@")[0] + ".secret"))
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        return path

    def assert_no_secrets(self, text, where):
        for user, pw in self.secrets:
            for form in secret_forms(user, pw):
                if form in text:
                    line = next(li for li in text.splitlines() if form in li)
                    self.fail("%s contains the password of %s (as %r) in line: %s" % (
                        where, user, form, line.replace(form, "<REDACTED>")))

    # peer ---------------------------------------------------------------------

    def start_peer(self, tls="starttls", users=None, pki=None, **kw):
        pki = pki or self.pki
        peer = Peer(tls=tls, cert=pki.cert_file, key=pki.key_file, users=users or {}, **kw)
        peer.start()
        self.addCleanup(peer.stop)
        return peer

    def upstream(self, peer=None, port=None, tls=None, **extra):
        """An [upstream] section for peer (or a bare port)."""
        sec = {"host": "127.0.0.1",
               "port": port if port is not None else peer.port,
               "tls": tls or ("implicit" if peer is not None and peer.tls == "implicit"
                              else "starttls"),
               "ca_file": self.pki.ca_file,
               "server_name": "localhost"}
        sec.update(extra)
        return sec

    # relay --------------------------------------------------------------------

    def write_config(self, upstreams, devices, relay=None, name="relay25.ini"):
        """upstreams: {name: {key: value}}, devices: {name: {key: value}} (written in
        order), relay: overrides for [relay]. Returns the path."""
        rel = {"listen": "127.0.0.1:0", "allow": self.ALLOW, "hostname": "relay.test",
               "max_message_size": "35M"}
        if LOG_LEVEL:
            rel["log_level"] = LOG_LEVEL
        if LOG_TIMESTAMPS:
            rel["log_timestamps"] = LOG_TIMESTAMPS
        rel.update(relay or {})
        sections = [("relay", rel)]
        sections += [("upstream " + n, s) for n, s in upstreams.items()]
        sections += [("device " + n, s) for n, s in devices.items()]
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(render_ini(sections))
        return path

    def start_relay(self, upstreams=None, devices=None, relay=None, config=None, env=None):
        path = config or self.write_config(upstreams, devices, relay)
        r = Relay(path, env=env)
        self.addCleanup(self._finish_relay, r)
        r.start()
        return r

    def _finish_relay(self, r):
        if r.proc is None:
            return
        was_alive = r.alive()
        rc = r.stop()
        self.assert_no_secrets(r.log(), "relay25 log")
        if not was_alive:
            self.fail("relay25 was not running at teardown (crashed?), exit=%s; log:\n%s"
                      % (r.proc.returncode, r.tail()))
        if rc != 0:
            self.fail("relay25 exit status after SIGTERM: %s (want 0); log:\n%s"
                      % (rc, r.tail()))

    # relays the test stops or kills itself ------------------------------------------

    def start_own_relay(self, config, env=None, relay=None):
        """A relay the test stops itself (stop_expect_0, wait_exit) or kills: the
        standard cleanup would call an exited relay a crash. Cleanup kills it if it
        still runs and checks its log for secrets. env replaces the environment;
        relay: a Relay (or subclass) to start instead of Relay(config)."""
        r = relay or Relay(config)
        if env is not None:
            r.env = env
        self.addCleanup(self._reap, r)
        r.start()
        return r

    def _reap(self, r):
        if r.proc is None:
            return
        if r.proc.poll() is None:
            r.proc.kill()
        r.proc.wait()
        for t in r._readers:
            t.join(5)
        for f in (r.proc.stdout, r.proc.stderr):
            if not f.closed:
                f.close()
        self.assert_no_secrets(r.log(), "relay25 log")

    def wait_exit(self, r, timeout=45):
        try:
            return r.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail("relay25 still running %ds after SIGTERM; log:\n%s" % (timeout, r.tail()))

    def stop_expect_0(self, r, timeout=45):
        r.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(r, timeout)
        for t in r._readers:
            t.join(5)
        self.assertEqual(rc, 0, "relay25 exit status after SIGTERM; log:\n%s" % r.tail())

    def default_devices(self, users=None):
        """Devices default (inline password), scanner (127.0.0.2, password_file),
        printer (127.0.0.3, inline). users: {login: password} to fill in."""
        users = users if users is not None else {}
        for u in (self.OFFICE, self.SCANNER, self.PRINTER):
            users.setdefault(u, self.new_password(u))
        devices = {
            "default": {"user": self.OFFICE, "password": users[self.OFFICE]},
            "scanner": {"match": "127.0.0.2", "user": self.SCANNER,
                        "password_file": self.password_file(self.SCANNER, users[self.SCANNER])},
            "printer": {"match": "127.0.0.3", "user": self.PRINTER,
                        "password": users[self.PRINTER]},
        }
        return devices, users

    def start_default(self, tls="starttls", relay=None, upstream=None):
        """Peer with the three users + relay with default_devices(). Returns (peer, relay)."""
        devices, users = self.default_devices()
        peer = self.start_peer(tls=tls, users=users)
        relay = self.start_relay({"main": dict(self.upstream(peer), **(upstream or {}))},
                                 devices, relay)
        return peer, relay

    # `relay25 check` ----------------------------------------------------------

    def run_check(self, config, *args, env=None, timeout=60):
        if not os.path.exists(RELAY25_BIN):
            raise FileNotFoundError("relay25 binary not found: %s (set RELAY25_BIN)" % RELAY25_BIN)
        r = subprocess.run([RELAY25_BIN, "check", "-c", config, *args],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout,
                           env=dict(os.environ, **(env or {})))
        r.stdout = r.stdout.decode("utf-8", "replace")
        r.stderr = r.stderr.decode("utf-8", "replace")
        self.assertGreaterEqual(r.returncode, 0, "relay25 check killed by signal %d\n%s"
                                % (-r.returncode, r.stderr))
        self.assert_no_secrets(r.stdout + r.stderr, "relay25 check output")
        return r

    # clients ------------------------------------------------------------------

    def smtp(self, relay, source="127.0.0.2", timeout=60):
        s = smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                         source_address=(source, 0), timeout=timeout)
        self.addCleanup(s.close)
        return s

    def send_mail(self, relay, mail_from, rcpts, msg, source="127.0.0.2", mail_options=(),
                  timeout=120):
        """smtplib sendmail from source; returns the refused-recipients dict."""
        with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                          source_address=(source, 0), timeout=timeout) as s:
            refused = s.sendmail(mail_from, rcpts, msg, mail_options=list(mail_options))
            s.quit()
        return refused

    def transaction(self, relay, mail_from, rcpts, msg, source="127.0.0.2"):
        """Step-by-step transaction. Returns (stage, code, text) of the first reply
        that is not positive, or ("done", code, text) for the end-of-DATA reply.
        stage: connect, ehlo, mail, rcpt, data."""
        try:
            s = smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                             source_address=(source, 0), timeout=60)
        except smtplib.SMTPConnectError as e:
            return "connect", e.smtp_code, e.smtp_error.decode("utf-8", "replace")
        except smtplib.SMTPServerDisconnected as e:
            return "connect", None, str(e)
        try:
            steps = [("ehlo", lambda: s.ehlo()), ("mail", lambda: s.mail(mail_from))]
            steps += [("rcpt", lambda r=r: s.rcpt(r)) for r in rcpts]
            steps += [("data", lambda: s.data(msg))]
            for stage, fn in steps:
                try:
                    code, text = fn()
                except smtplib.SMTPServerDisconnected as e:
                    return stage, None, "disconnected: %s" % e
                except smtplib.SMTPDataError as e:
                    return stage, e.smtp_code, e.smtp_error.decode("utf-8", "replace")
                text = text.decode("utf-8", "replace")
                if code >= 400:
                    return stage, code, text
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
            return "done", code, text
        finally:
            s.close()

    # upstream assertions --------------------------------------------------------

    def assert_nothing_upstream(self, peer):
        """No AUTH, no MAIL and no message reached the peer."""
        peer.wait_idle(5)
        self.assertEqual(peer.auth_attempts(), [], "AUTH reached upstream")
        self.assertEqual(peer.commands("MAIL"), [], "MAIL reached upstream")
        self.assertEqual(peer.all_messages(), [], "a message reached upstream")


def make_message(subject="test", body=b"hello\r\n", headers=(), msgid=None):
    """A small RFC 5322 message as bytes with CRLF line ends."""
    msgid = msgid or "<%s@client.test>" % secrets.token_hex(8)
    head = [b"From: Sender <sender@example.org>", b"To: rcpt@example.net",
            b"Subject: " + subject.encode(), b"Message-ID: " + msgid.encode(),
            b"Date: Thu, 01 Jan 2026 00:00:00 +0000"]
    head += [h.encode() if isinstance(h, str) else h for h in headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def main():
    unittest.main(module="__main__", verbosity=2)
