#!/usr/bin/python3
"""Inbound TLS (STARTTLS, implicit-TLS listeners) and inbound AUTH PLAIN/LOGIN
with users_file hashes made by `relay25 passwd`, logins mapped to devices."""

import base64
import ctypes
import re
import socket
import smtplib
import ssl
import subprocess
import time

from relaytest import (CLIENT_NAME, RELAY25_BIN, RawClient, RelayTestCase, main, make_message,
                       parse_hostport)

ALICE_UP = "alice@example.com"
BOB_UP = "bob@example.com"
TLS_LISTEN_RE = re.compile(r"\bprx event=listening addr=(\S+) tls=implicit")


def plain(login, password):
    return base64.b64encode(b"\0" + login.encode() + b"\0" + password.encode()).decode()


class InboundTlsTest(RelayTestCase):
    ALLOW = RelayTestCase.ALLOW + ", 127.0.0.4/32"

    # helpers ------------------------------------------------------------------

    def ctx(self):
        c = ssl.create_default_context(cafile=self.pki.ca_file)
        return c

    def passwd(self, login, password):
        r = subprocess.run([RELAY25_BIN, "passwd", login], input=(password + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertNotIn(password, out + r.stderr.decode())
        return out.strip()

    def users_file(self, logins):
        """logins: {login: password}. Returns the path of a users_file."""
        path = "%s/users" % self.dir
        with open(path, "w") as f:
            f.write("# relay25 passwd output\n")
            for login, pw in logins.items():
                f.write(self.passwd(login, pw) + "\n")
        return path

    def setup_relay(self, tls=True, plaintext_auth=None, tls_listen=False, extra=None):
        """Peer with office/scanner/printer + alice/bob upstream users; relay with
        inbound logins alice and bob mapped to devices alice and bob."""
        devices, users = self.default_devices()
        users[ALICE_UP] = self.new_password(ALICE_UP)
        users[BOB_UP] = self.new_password(BOB_UP)
        self.logins = {"alice": self.new_password("alice", "in"),
                       "bob": self.new_password("bob", "in")}
        devices["alice"] = {"login": "alice", "user": ALICE_UP, "password": users[ALICE_UP]}
        devices["bob"] = {"login": "bob", "user": BOB_UP, "password": users[BOB_UP]}
        peer = self.start_peer(users=users)
        rel = {"users_file": self.users_file(self.logins)}
        if tls:
            rel["tls_cert_file"] = self.pki.cert_file
            rel["tls_key_file"] = self.pki.key_file
        if tls_listen:
            rel["tls_listen"] = "127.0.0.1:0"
        if plaintext_auth is not None:
            rel["allow_plaintext_auth"] = plaintext_auth
        rel.update(extra or {})
        relay = self.start_relay({"main": self.upstream(peer)}, devices, rel)
        return peer, relay

    def tls_port(self, relay):
        m = relay.wait_log(TLS_LISTEN_RE, 10, what="implicit TLS listening line")
        return parse_hostport(m.group(1))

    # STARTTLS -----------------------------------------------------------------

    def test_starttls_then_mail(self):
        peer, relay = self.setup_relay()
        s = self.smtp(relay, source="127.0.0.2")
        code, text = s.ehlo()
        self.assertEqual(code, 250)
        self.assertTrue(s.has_extn("starttls"))
        self.assertFalse(s.has_extn("auth"), "AUTH offered in clear")
        s.starttls(context=self.ctx())
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        self.assertFalse(s.has_extn("starttls"))
        self.assertTrue(s.has_extn("auth"))
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("tls")), {})
        s.quit()
        (m,) = peer.messages()
        self.assertEqual(m.login, self.SCANNER)
        self.assertIn(b"with ESMTPS id", m.content)
        relay.wait_log(r"prx event=tls client=127\.0\.0\.2 mode=starttls tls=TLSv1\.2:")

    def test_starttls_forgets_ehlo(self):
        peer, relay = self.setup_relay()
        s = self.smtp(relay)
        s.ehlo()
        s.starttls(context=self.ctx())
        # RFC 3207 §4.2: the client must send EHLO again
        code, text = s.docmd("MAIL FROM:<s@example.org>")
        self.assertEqual(code, 503, text)
        code, text = s.docmd("STARTTLS")
        self.assertEqual(code, 503, text)
        s.ehlo()
        code, text = s.docmd("MAIL FROM:<s@example.org>")
        self.assertEqual(code, 250, text)
        code, text = s.docmd("STARTTLS")
        self.assertEqual(code, 503, text)

    def test_starttls_discards_pipelined_plaintext(self):
        peer, relay = self.setup_relay()
        c = RawClient(relay.host, relay.port, source="127.0.0.2")
        self.addCleanup(c.close)
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("EHLO " + CLIENT_NAME)[0], 250)
        c.send(b"STARTTLS\r\nNOOP\r\n")
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.buf, b"")
        # nothing more in clear: the NOOP is not answered before the handshake
        c.sock.settimeout(1.0)
        try:
            extra = c.sock.recv(100, socket.MSG_PEEK)
        except socket.timeout:
            extra = b""
        self.assertEqual(extra, b"", "plaintext after the 220 to STARTTLS")
        c.sock.settimeout(30)
        tls = self.ctx().wrap_socket(c.sock, server_hostname="localhost")
        tls.sendall(b"EHLO " + CLIENT_NAME.encode() + b"\r\n")
        data = b""
        while not re.search(rb"(^|\r\n)250 [^\r\n]*\r\n$", data):
            chunk = tls.recv(4096)
            self.assertTrue(chunk, "closed: %r" % data)
            data += chunk
        # the first reply over TLS is the EHLO's, not the smuggled NOOP's
        self.assertTrue(data.startswith(b"250-relay.test\r\n"), data)
        tls.sendall(b"QUIT\r\n")
        tls.close()

    # implicit TLS ---------------------------------------------------------------

    def test_implicit_tls_listener(self):
        peer, relay = self.setup_relay(tls_listen=True)
        host, port = self.tls_port(relay)
        with smtplib.SMTP_SSL(host, port, local_hostname=CLIENT_NAME,
                              source_address=("127.0.0.3", 0), context=self.ctx(),
                              timeout=60) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            self.assertTrue(s.has_extn("auth"))
            self.assertEqual(s.sendmail("s@example.org", ["r@example.net"],
                                        make_message("implicit")), {})
            s.quit()
        (m,) = peer.messages()
        self.assertEqual(m.login, self.PRINTER)
        self.assertIn(b"with ESMTPS id", m.content)
        # the plain listener is still plain
        s = self.smtp(relay)
        s.ehlo()
        self.assertTrue(s.has_extn("starttls"))

    # AUTH -----------------------------------------------------------------------

    def test_auth_maps_logins_on_one_ip(self):
        peer, relay = self.setup_relay()
        for login, up in (("alice", ALICE_UP), ("bob", BOB_UP)):
            s = self.smtp(relay, source="127.0.0.4")
            s.ehlo()
            s.starttls(context=self.ctx())
            s.ehlo()
            if login == "alice":
                s.login(login, self.logins[login])        # smtplib picks PLAIN
            else:
                s.user, s.password = login, self.logins[login]
                code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
                self.assertEqual(code, 235, text)
            code, text = s.docmd("AUTH PLAIN " + plain(login, self.logins[login]))
            self.assertEqual(code, 503, text)           # already authenticated
            self.assertEqual(s.sendmail("s@example.org", ["r@example.net"],
                                        make_message(login)), {})
            s.quit()
        msgs = peer.messages()
        self.assertEqual([m.login for m in msgs], [ALICE_UP, BOB_UP])
        for m in msgs:
            self.assertIn(b"with ESMTPSA id", m.content)
        relay.wait_log(r"event=auth status=ok client=127\.0\.0\.4 login=alice device=alice")
        relay.wait_log(r"event=auth status=ok client=127\.0\.0\.4 login=bob device=bob")

    def test_auth_after_mail_is_503(self):
        peer, relay = self.setup_relay()
        s = self.smtp(relay, source="127.0.0.4")
        s.ehlo()
        s.starttls(context=self.ctx())
        s.ehlo()
        self.assertEqual(s.docmd("MAIL FROM:<s@example.org>")[0], 250)
        code, text = s.docmd("AUTH PLAIN " + plain("alice", self.logins["alice"]))
        self.assertEqual(code, 503, text)

    def test_bad_password(self):
        peer, relay = self.setup_relay()
        wrong = self.new_password("alice", "wrong")
        s = self.smtp(relay, source="127.0.0.4")
        s.ehlo()
        s.starttls(context=self.ctx())
        s.ehlo()
        code, text = s.docmd("AUTH PLAIN " + plain("alice", wrong))
        self.assertEqual((code, text), (535, b"5.7.8 Authentication credentials invalid"))
        code, text = s.docmd("AUTH PLAIN " + plain("mallory", wrong))
        self.assertEqual(code, 535, text)
        # LOGIN with the right user, wrong password
        self.assertEqual(s.docmd("AUTH LOGIN")[0], 334)
        self.assertEqual(s.docmd(base64.b64encode(b"alice").decode())[0], 334)
        self.assertEqual(s.docmd(base64.b64encode(wrong.encode()).decode())[0], 535)
        # "*" cancels
        self.assertEqual(s.docmd("AUTH LOGIN")[0], 334)
        self.assertEqual(s.docmd("*")[0], 501)
        # still usable: the IP-matched device (127.0.0.4 -> default)
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("x")), {})
        s.quit()
        (m,) = peer.messages()
        self.assertEqual(m.login, self.OFFICE)
        relay.wait_lines(r"event=auth status=failed client=127\.0\.0\.4 login=alice$", 2)
        relay.wait_log(r"event=auth status=failed client=127\.0\.0\.4 login=mallory$")
        self.assertNotIn(wrong, relay.log())
        self.assertNotIn(base64.b64encode(wrong.encode()).decode(), relay.log())

    def test_auth_refused_in_clear(self):
        peer, relay = self.setup_relay()
        s = self.smtp(relay, source="127.0.0.4")
        s.ehlo()
        self.assertFalse(s.has_extn("auth"))
        code, text = s.docmd("AUTH PLAIN " + plain("alice", self.logins["alice"]))
        self.assertEqual(code, 538, text)
        self.assertEqual(s.docmd("AUTH LOGIN")[0], 538)
        self.assertEqual(s.docmd("NOOP")[0], 250)
        self.assertNotIn("event=auth", relay.log())

    def test_plaintext_auth_allowed(self):
        peer, relay = self.setup_relay(tls=False, plaintext_auth="yes")
        s = self.smtp(relay, source="127.0.0.4")
        s.ehlo()
        self.assertFalse(s.has_extn("starttls"))
        self.assertTrue(s.has_extn("auth"))
        s.login("bob", self.logins["bob"])
        self.assertEqual(s.sendmail("s@example.org", ["r@example.net"], make_message("p")), {})
        s.quit()
        (m,) = peer.messages()
        self.assertEqual(m.login, BOB_UP)
        self.assertIn(b"with ESMTPA id", m.content)

    # relay25 passwd / check -------------------------------------------------------

    def test_passwd_output_verifies(self):
        pw = self.new_password("carol", "in")
        line = self.passwd("carol", pw)
        login, _, h = line.partition(":")
        self.assertEqual(login, "carol")
        self.assertTrue(h.startswith("$y$"), line)
        libcrypt = ctypes.CDLL("libcrypt.so.1")
        libcrypt.crypt.restype = ctypes.c_char_p
        libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        self.assertEqual(libcrypt.crypt(pw.encode(), h.encode()), h.encode())
        self.assertNotEqual(libcrypt.crypt(b"other", h.encode()), h.encode())
        # two runs salt differently
        self.assertNotEqual(self.passwd("carol", pw), line)

    def test_check_warns_old_tls(self):
        devices, users = self.default_devices()
        cfg = self.write_config({"main": self.upstream(port=2525)}, devices,
                                {"tls_cert_file": self.pki.cert_file,
                                 "tls_key_file": self.pki.key_file, "tls_min_version": "1.0"})
        r = self.run_check(cfg)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: tls_min_version = 1.0", r.stdout)
        cfg = self.write_config({"main": self.upstream(port=2525)}, devices,
                                {"tls_cert_file": self.pki.cert_file,
                                 "tls_key_file": self.other_pki.key_file}, name="bad.ini")
        r = self.run_check(cfg)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not belong to the certificate", r.stderr)


if __name__ == "__main__":
    main()
