#!/usr/bin/python3
"""Process lifecycle and deployment shapes: SIGTERM draining, an IPv6 listener,
configuration from RELAY25_* variables, an upstream that drops its idle session,
and a real third-party client (swaks)."""

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import unittest

from relaytest import (CLIENT_NAME, LOG_LEVEL, RELAY25_BIN, RawClient, RelayTestCase,
                       main, make_message, strip_received)

DEFAULT_CONFIG = "/etc/relay25/relay25.conf"   # what `relay25 serve` reads without -c


def have_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def clean_env(**extra):
    """os.environ without any RELAY25_* variable (so neither the developer's shell nor
    ctest's RELAY25_BIN leaks into the configuration), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    env.update(extra)
    return env


class TcpForwarder:
    """127.0.0.1:0 -> target, byte for byte (TLS passes through). drop_all() cuts
    every open connection at once, like a provider dropping idle sessions."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, 10)
            except OSError:
                a.close()
                continue
            with self.lock:
                self.accepted += 1
                self.pairs.append((a, b))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop_all(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self):
        self.sock.close()
        self.drop_all()


class LifecycleTest(RelayTestCase):
    def own_default(self, relay=None):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        r = self.start_own_relay(self.write_config({"main": self.upstream(peer)}, devices,
                                                   relay))
        return peer, r

    def client(self, relay, source="127.0.0.2"):
        c = RawClient(relay.host, relay.port, source=source)
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        return c

    # --- SIGTERM ----------------------------------------------------------------

    def test_sigterm_during_data_finishes_message(self):
        peer, relay = self.own_default(relay={"shutdown_timeout": "20"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        msg = make_message("in flight", b"".join(b"line %d\r\n" % i for i in range(200)))
        half = len(msg) // 2
        c.send(msg[:half])
        relay.proc.send_signal(signal.SIGTERM)
        relay.wait_log(r"\bevent=stopping\b")
        c.send(msg[half:] + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, "end of DATA during shutdown: %s %s" % (code, text))
        (m,) = peer.wait_messages(1)
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual(strip_received(m.content), msg)
        # the session ends: QUIT gets 221 or the shutdown 421, then the connection closes
        c.send(b"QUIT\r\n")
        rest = c.read_until_close()
        self.assertTrue(len(rest) == 1 and rest[0][0] in (221, 421), rest)
        self.assertEqual(self.wait_exit(relay), 0, relay.tail())
        relay.wait_lines(r"\bstatus=sent\b")
        self.assertEqual(relay.grep(r"\bstatus=aborted\b"), [])

    def test_sigterm_idle_client_gets_421(self):
        peer, relay = self.own_default(relay={"shutdown_timeout": "20"})
        c = self.client(relay)
        relay.proc.send_signal(signal.SIGTERM)
        rest = c.read_until_close()
        self.assertEqual(len(rest), 1, "want one 421 then close, got %r" % rest)
        self.assertEqual(rest[0][0], 421, rest)
        self.assertEqual(self.wait_exit(relay), 0, relay.tail())
        relay.wait_log(r"\bevent=stopped\b")

    def test_sigterm_stuck_transaction_aborted_after_shutdown_timeout(self):
        peer, relay = self.own_default(relay={"shutdown_timeout": "1"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        relay.proc.send_signal(signal.SIGTERM)
        rest = c.read_until_close()
        self.assertEqual([r[0] for r in rest], [421], rest)
        self.assertEqual(self.wait_exit(relay), 0, relay.tail())
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [])

    # --- IPv6 -------------------------------------------------------------------

    @unittest.skipUnless(have_ipv6_loopback(), "no IPv6 loopback (::1) on this machine")
    def test_ipv6_listener(self):
        peer, relay = self.start_default(relay={"listen": "[::1]:0", "allow": "::1/128"})
        self.assertEqual(relay.host, "::1")
        with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                          source_address=("::1", 0), timeout=60) as s:
            self.assertEqual(s.sendmail("v6@example.org", ["r@example.net"],
                                        make_message("over ipv6")), {})
            s.quit()
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.login), ("v6@example.org", self.OFFICE))
        received = m.content.split(b"\r\n\t", 1)[0]
        self.assertIn(b"::1", received, "Received: line does not name the IPv6 client")
        relay.wait_log(r"\bevent=connect client=::1\b")

    # --- environment configuration --------------------------------------------------

    def env_config(self, peer, user, **extra):
        env = clean_env(RELAY25_LISTEN="127.0.0.1:0", RELAY25_ALLOW="127.0.0.0/8",
                        RELAY25_HOSTNAME="relay.env.test",
                        RELAY25_UPSTREAM="127.0.0.1:%d" % peer.port,
                        RELAY25_TLS="starttls", RELAY25_SERVER_NAME="localhost",
                        RELAY25_CA_FILE=self.pki.ca_file, RELAY25_USER=user)
        if LOG_LEVEL:
            env["RELAY25_LOG_LEVEL"] = LOG_LEVEL
        env.update(extra)
        return env

    def run_env_relay(self, env, peer, user):
        relay = self.start_own_relay(None, env=env)
        relay.wait_log(r"\bevent=started\b.*\bconfig=environment\b")
        self.assertEqual(relay.host, "127.0.0.1")
        self.send_mail(relay, "env@example.org", ["r@example.net"], make_message("from env"),
                       source="127.0.0.5")
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.login, m.tls), ("env@example.org", user, "starttls"))
        self.assertIn(b"relay.env.test", m.content.split(b"\r\n\r\n", 1)[0])
        relay.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(relay), 0, relay.tail())

    def test_environment_config_password(self):
        user = "env-user@example.com"
        pw = self.new_password(user)
        peer = self.start_peer(users={user: pw})
        self.run_env_relay(self.env_config(peer, user, RELAY25_PASSWORD=pw), peer, user)

    def test_environment_config_password_file(self):
        user = "env-file@example.com"
        pw = self.new_password(user)
        peer = self.start_peer(users={user: pw})
        env = self.env_config(peer, user, RELAY25_PASSWORD_FILE=self.password_file(user, pw))
        self.run_env_relay(env, peer, user)

    def run_serve_no_config(self, env):
        r = subprocess.run([RELAY25_BIN, "serve"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")

    @unittest.skipIf(os.path.exists(DEFAULT_CONFIG), DEFAULT_CONFIG + " exists on this machine")
    def test_environment_without_upstream_fails_clearly(self):
        user = "env-user@example.com"
        pw = self.new_password(user)
        env = clean_env(RELAY25_LISTEN="127.0.0.1:0", RELAY25_USER=user, RELAY25_PASSWORD=pw)
        try:
            rc, out = self.run_serve_no_config(env)
        except subprocess.TimeoutExpired:
            self.fail("relay25 serve without RELAY25_UPSTREAM and without a config kept running")
        self.assertGreater(rc, 0, "exit status %s; output:\n%s" % (rc, out))
        self.assertNotIn("event=listening", out)
        self.assertTrue(out.strip().startswith("relay25:"), out)
        self.assertTrue("RELAY25_UPSTREAM" in out or DEFAULT_CONFIG in out,
                        "message names neither RELAY25_UPSTREAM nor %s:\n%s"
                        % (DEFAULT_CONFIG, out))
        self.assert_no_secrets(out, "relay25 serve output")

    def test_environment_without_user_fails_clearly(self):
        pw = self.new_password("nobody")
        env = clean_env(RELAY25_LISTEN="127.0.0.1:0", RELAY25_UPSTREAM="127.0.0.1:1",
                        RELAY25_PASSWORD=pw)
        try:
            rc, out = self.run_serve_no_config(env)
        except subprocess.TimeoutExpired:
            self.fail("relay25 serve without RELAY25_USER kept running")
        self.assertGreater(rc, 0, "exit status %s; output:\n%s" % (rc, out))
        self.assertIn("RELAY25_USER", out)
        self.assert_no_secrets(out, "relay25 serve output")

    # --- upstream drops the idle session ---------------------------------------------

    def test_upstream_drops_idle_session_between_transactions(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        fwd = TcpForwarder(peer.port)
        self.addCleanup(fwd.stop)
        relay = self.start_relay({"main": self.upstream(port=fwd.port)}, devices)
        s = self.smtp(relay, source="127.0.0.2")
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("one")), {})
        self.assertEqual(fwd.accepted, 1)
        fwd.drop_all()
        peer.wait_idle(10)
        try:   # give relay25 the chance to notice; if it never logs it, MAIL still decides
            relay.wait_log(r"\bevent=failed state=ready\b", 5)
        except AssertionError:
            pass
        try:
            refused = s.sendmail("s@example.org", ["r@example.net"], make_message("two"))
        except smtplib.SMTPException as e:
            self.fail("second transaction after upstream dropped its idle session: %r\nlog:\n%s"
                      % (e, relay.tail()))
        self.assertEqual(refused, {})
        s.quit()
        msgs = peer.messages()
        self.assertEqual([m.header("Subject") for m in msgs], ["one", "two"])
        self.assertNotEqual(msgs[0].conn, msgs[1].conn, "second message on the dropped session?")
        self.assertEqual({m.login for m in msgs}, {self.SCANNER})
        self.assertEqual(fwd.accepted, 2)

    # --- a real client ----------------------------------------------------------------

    @unittest.skipUnless(shutil.which("swaks"), "swaks not installed")
    def test_swaks(self):
        peer, relay = self.start_default()
        r = subprocess.run(
            [shutil.which("swaks"), "--server", "%s:%d" % (relay.host, relay.port),
             "--local-interface", "127.0.0.3", "--helo", "swaks.test",
             "--from", "swaks@example.org", "--to", "r@example.net",
             "--header", "Subject: swaks test", "--body", "hello from swaks",
             "--timeout", "60"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=120)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, out)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.rcpt_tos, m.login),
                         ("swaks@example.org", ("r@example.net",), self.PRINTER))
        self.assertEqual(m.header("Subject"), "swaks test")
        self.assertIn(b"hello from swaks", m.content)
        self.assertIn(b"from swaks.test", m.content.split(b"\r\n\t", 1)[0])


if __name__ == "__main__":
    main()
