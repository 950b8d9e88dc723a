#!/usr/bin/python3
"""Upstream TLS misconfigurations explain themselves (issue 13 item 6): a plain port
used with tls = implicit, an implicit-TLS port used with tls = starttls (told within
connect_timeout, not command_timeout), a TLS 1.3-only upstream, IP-address
certificates, name mismatches naming the certificate's names, and `check` warnings
for ports that do not fit the TLS mode. Each failure stays a 4xx for the device."""

import os
import socket
import ssl
import threading
import time

import certs
from relaytest import RelayTestCase, main, make_message


class _RawServer:
    """A loopback listener that hands each connection to handler(conn) in a thread."""

    def __init__(self, handler):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.conns = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(conn)
        except (OSError, ssl.SSLError):
            pass

    def stop(self):
        self.stopped.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class TlsDiagnosticsTest(RelayTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        pki_dir = os.path.join(cls.tmp, "pki")
        cls.ip_pki = certs.make_pki(pki_dir, "iponly", san="IP:127.0.0.1")
        cls.dns_pki = certs.make_pki(pki_dir, "dnsonly", san="DNS:localhost")

    def raw_server(self, handler):
        srv = _RawServer(handler)
        self.addCleanup(srv.stop)
        return srv

    def relay_to(self, upstream, relay=None):
        devices, _ = self.default_devices()
        return self.start_relay({"main": upstream}, devices, relay)

    def assert_4xx(self, relay, want):
        """A transaction from the scanner: 4xx at MAIL whose text contains each of want."""
        stage, code, text = self.transaction(relay, "s@example.org", ["r@example.net"],
                                             make_message("diag"), source="127.0.0.2")
        self.assertEqual(stage, "mail", "want a 4xx on MAIL FROM, got %s at %s: %s"
                         % (code, stage, text))
        self.assertTrue(code is not None and 400 <= code < 500, "%s %s" % (code, text))
        for w in want:
            self.assertIn(w, text)
        return text

    def assert_check_says(self, relay_config, want):
        r = self.run_check(relay_config, "--upstream")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("Sanitizer", r.stderr)  # under ASan: a failing probe frees all
        for w in want:
            self.assertIn(w, r.stdout, r.stdout + r.stderr)

    # tls = implicit against a port that greets in clear -----------------------------

    def test_plain_port_with_implicit(self):
        devices, users = self.default_devices()
        peer = self.start_peer(tls="starttls", users=users)
        up = self.upstream(peer, tls="implicit")
        relay = self.start_relay({"main": up}, devices)
        text = self.assert_4xx(relay, ["4.7.5", "this port speaks plain SMTP: use tls = starttls",
                                       '"220 '])
        self.assertNotIn("no common TLS version", text)
        self.assert_nothing_upstream(peer)
        self.assert_check_says(relay.config_path, ["this port speaks plain SMTP: use tls = starttls"])

    # tls = starttls against an implicit-TLS port -------------------------------------

    def test_implicit_port_with_starttls_within_connect_timeout(self):
        devices, users = self.default_devices()
        peer = self.start_peer(tls="implicit", users=users)
        up = self.upstream(peer, tls="starttls")
        # command_timeout = 300: waiting for it would outlast the test's own 60 s bound
        relay = self.start_relay({"main": up}, devices,
                                 {"connect_timeout": "2", "command_timeout": "300"})
        started = time.monotonic()
        self.assert_4xx(relay, ["4.4.2", "no greeting within 2s",
                                "this port expects TLS at once: use tls = implicit"])
        self.assertLess(time.monotonic() - started, 60)
        relay.wait_log(r"\bevent=failed state=greeting error=timeout\b")
        self.assert_nothing_upstream(peer)
        self.assert_check_says(relay.config_path, ["this port expects TLS at once"])

    def test_silent_port_is_not_called_tls(self):
        # says nothing to the greeting wait nor to the ClientHello: only a timeout
        srv = self.raw_server(lambda conn: conn.recv(65536) and self.wait_stopped(srv))
        relay = self.relay_to(self.upstream(port=srv.port, tls="starttls"),
                              {"connect_timeout": "2", "command_timeout": "300"})
        text = self.assert_4xx(relay, ["4.4.2", "no greeting within 2s",
                                       "no answer to a TLS handshake either"])
        self.assertNotIn("tls = implicit", text)
        self.assertGreaterEqual(srv.accepted, 1)

    def wait_stopped(self, srv):
        srv.stopped.wait(120)

    # TLS 1.3 only ------------------------------------------------------------------------

    def test_tls13_only_upstream(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.pki.cert_file, self.pki.key_file)

        def handshake(conn):
            with ctx.wrap_socket(conn, server_side=True) as t:
                t.sendall(b"220 tls13.test ESMTP\r\n")  # never reached: 1.2 is refused
        srv = self.raw_server(handshake)
        relay = self.relay_to(self.upstream(port=srv.port, tls="implicit"))
        text = self.assert_4xx(relay, ["4.7.5", "requires a TLS version relay25 does not have",
                                       "TLS 1.2 at most"])
        self.assertIn("alert 70", text)
        self.assertGreaterEqual(srv.accepted, 1)
        self.assert_check_says(relay.config_path, ["TLS 1.2 at most"])

    # certificate names ---------------------------------------------------------------

    def ip_upstream(self, peer, pki):
        up = self.upstream(peer, port=0 if peer is None else None, ca_file=pki.ca_file)
        del up["server_name"]  # defaults to host = 127.0.0.1, an IP literal
        self.assertEqual(up["host"], "127.0.0.1")
        return up

    def test_ip_certificate_accepted(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, pki=self.ip_pki)
        relay = self.start_relay({"main": self.ip_upstream(peer, self.ip_pki)}, devices)
        self.send_mail(relay, "s@example.org", ["r@example.net"], make_message("by ip"))
        (m,) = peer.messages()
        self.assertEqual((m.header("Subject"), m.login), ("by ip", self.SCANNER))
        self.assertTrue(all(c.tls for c in peer.connections() if c.verbs()))

    def test_ip_host_needs_ip_name(self):
        # a certificate for DNS:localhost only does not cover 127.0.0.1
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, pki=self.dns_pki)
        relay = self.start_relay({"main": self.ip_upstream(peer, self.dns_pki)}, devices)
        self.assert_4xx(relay, ["4.7.5", "certificate does not match server_name 127.0.0.1",
                                "it names DNS:localhost"])
        self.assert_nothing_upstream(peer)

    def test_ip_certificate_for_another_address(self):
        devices, users = self.default_devices()
        pki = certs.make_pki(os.path.join(self.dir, "pki"), "otherip", san="IP:192.0.2.10")
        peer = self.start_peer(users=users, pki=pki)
        up = self.ip_upstream(peer, pki)
        relay = self.start_relay({"main": up}, devices)
        self.assert_4xx(relay, ["certificate does not match server_name 127.0.0.1",
                                "it names IP:192.0.2.10"])
        self.assert_nothing_upstream(peer)

    def test_ip_literal_not_sent_as_sni(self):
        # RFC 6066 §3: SNI carries host names only; a name still goes as SNI
        seen = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ip_pki.cert_file, self.ip_pki.key_file)
        ctx.sni_callback = lambda sock, name, c: seen.append(name)

        def greet(conn):
            with ctx.wrap_socket(conn, server_side=True) as t:
                t.sendall(b"421 sni.test closing\r\n")
                t.recv(100)
        srv = self.raw_server(greet)
        up = self.ip_upstream(None, self.ip_pki)
        up.update(port=srv.port, tls="implicit")
        self.assert_4xx(self.relay_to(up), ["421 sni.test closing"])
        self.assertEqual(seen[:1], [None])
        up["server_name"] = "localhost"  # the cert has no DNS name: fails after SNI
        self.assert_4xx(self.relay_to(up), ["4.7.5", "it names IP:127.0.0.1"])
        self.assertIn("localhost", seen)

    def test_name_mismatch_lists_certificate_names(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        up = self.upstream(peer, server_name="smtp.example.com")
        relay = self.start_relay({"main": up}, devices)
        self.assert_4xx(relay, ["4.7.5", "certificate does not match server_name "
                                "smtp.example.com: it names DNS:localhost, IP:127.0.0.1"])
        self.assert_nothing_upstream(peer)
        self.assert_check_says(relay.config_path, ["it names DNS:localhost, IP:127.0.0.1"])

    # `check` warnings ------------------------------------------------------------------

    def test_check_warns_port_and_tls_mode(self):
        devices, _ = self.default_devices()
        cases = [("465", "starttls", "port 465 usually expects TLS at once: use tls = implicit"),
                 ("587", "implicit", "port 587 usually speaks plain SMTP with STARTTLS"),
                 ("2525", "implicit", "port 2525 usually speaks plain SMTP with STARTTLS"),
                 ("465", "implicit", None), ("587", "starttls", None)]
        for port, tls, want in cases:
            up = self.upstream(port=int(port), tls=tls)
            path = self.write_config({"main": up}, devices, name="c%s%s.ini" % (port, tls))
            r = self.run_check(path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            if want:
                self.assertIn("warning: [upstream main] " + want, r.stdout)
            else:
                self.assertNotIn("usually", r.stdout)


if __name__ == "__main__":
    main()
