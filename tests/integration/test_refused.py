#!/usr/bin/python3
"""Refused clients cannot starve the devices (issue 15, items 1 and 6): a client
outside `allow` gets its 554 and is closed after refused_timeout (not idle_timeout);
refused sessions are counted apart from the devices' max_connections and per
address; a tls_listen port closes a refused client before any TLS work; the
per-address limit exempts loopback by default, and 0 means unlimited.
No timing assertions: a time bound only turns "never happened" into a failure."""

import re
import socket
import ssl
import threading

from relaytest import RawClient, RelayTestCase, main, make_message, parse_hostport

REFUSED = "127.0.0.9"          # loopback, outside ALLOW
MANY = 200                     # refused connections from one address (the default max_connections)
LOOPBACK_BURST = 60            # concurrent sessions from one loopback address (> the default 50)
TLS_LISTEN_RE = re.compile(r"\bprx event=listening addr=(\S+) tls=implicit")


def eof_within(sock, timeout):
    """True if the server closed the connection (EOF or reset) within timeout,
    after discarding whatever it still sent."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except socket.timeout:
        return False
    except (ConnectionError, OSError):
        return True


def still_open(sock):
    """True if the server has not closed sock yet (nothing more to read, no EOF)."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
        return False if not data else still_open(sock)
    except BlockingIOError:
        return True
    except (ConnectionError, OSError):
        return False
    finally:
        sock.setblocking(True)


class RefusedTest(RelayTestCase):

    def connect(self, relay, source, port=None, timeout=30):
        c = RawClient(relay.host, port or relay.port, source=source, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def assert_device_relays(self, peer, relay, source, subject, login):
        n = len(peer.messages())
        c = self.connect(relay, source)
        code, text = c.reply()
        self.assertEqual(code, 220, "device %s: %s %s" % (source, code, text))
        c.close()
        self.assertEqual(self.send_mail(relay, "dev@example.org", ["r@example.net"],
                                        make_message(subject), source=source), {})
        msgs = peer.wait_messages(n + 1)
        got = [m for m in msgs if m.header("Subject") == subject]
        self.assertEqual([m.login for m in got], [login], "message %r" % subject)

    # --- item 1: refused clients -------------------------------------------------------

    def test_idle_refused_flood_does_not_lock_out_devices(self):
        # default max_connections (200) and per-address limit; refused_timeout raised
        # so that all 200 refused connections are certainly still open below
        peer, relay = self.start_default(relay={"refused_timeout": "120"})
        held = [self.connect(relay, REFUSED) for _ in range(MANY)]
        for i, c in enumerate(held):
            code, text = c.reply()
            self.assertEqual((code, text[0][:5]), (554, "5.7.1"), "refused connection %d" % i)
        relay.wait_lines(r"\bevent=refused client=127\.0\.0\.9 port=\d+ reason=\"not in allow\"",
                         MANY)
        # 200 idle refused sessions: the devices still get 220 and relay
        self.assert_device_relays(peer, relay, "127.0.0.2", "scanner during flood", self.SCANNER)
        self.assert_device_relays(peer, relay, "127.0.0.3", "printer during flood", self.PRINTER)
        self.assert_device_relays(peer, relay, "127.0.0.1", "office during flood", self.OFFICE)
        self.assertEqual(relay.grep(r"\bevent=limited\b"), [], "a device was limited")
        # ... while every refused connection is still open (so they were not counted)
        self.assertEqual(sum(1 for c in held if not still_open(c.sock)), 0,
                         "refused connections closed before the devices were served")
        # the refused may still QUIT politely
        c = held[0]
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertTrue(eof_within(c.sock, 30))

    def test_refused_connection_closed_within_refused_timeout(self):
        # max_errors high: the NOOPs' 503s below must not be what closes the session
        peer, relay = self.start_default(relay={"idle_timeout": "300", "max_errors": "1000"})
        c = self.connect(relay, REFUSED)
        code, text = c.reply()
        self.assertEqual(code, 554, text)
        # idle: closed after refused_timeout (5 s), long before idle_timeout
        self.assertTrue(eof_within(c.sock, 30), "a refused client stayed connected 30 s "
                        "with idle_timeout = 300")
        relay.wait_log(r"\bevent=disconnect client=127\.0\.0\.9 reason=\"refused\"")
        # commands do not extend the linger: a NOOP a second gets 503 each, and the
        # server still closes (idle_timeout would restart on every one of them)
        c = self.connect(relay, REFUSED)
        self.assertEqual(c.reply()[0], 554)
        closed = False
        for _ in range(30):
            try:
                code, _ = c.cmd("NOOP")
            except (ConnectionError, OSError):
                closed = True
                break
            self.assertEqual(code, 503)
            if not still_open(c.sock):
                closed = True
                break
            threading.Event().wait(1.0)
        self.assertTrue(closed, "a refused client sending a NOOP a second was not closed "
                        "within 30 s")
        relay.wait_lines(r"\bevent=disconnect client=127\.0\.0\.9 reason=\"refused\"", 2)
        self.assert_device_relays(peer, relay, "127.0.0.2", "after refused", self.SCANNER)

    def test_refused_counted_per_address(self):
        # 127.0.0.9 not exempt: beyond max_connections_per_ip its connections get
        # 421 and are closed at once; other refused addresses are not affected
        peer, relay = self.start_default(relay={"max_connections_per_ip": "5",
                                                "max_connections_per_ip_exempt": "",
                                                "refused_timeout": "120"})
        socks = [self.connect(relay, REFUSED) for _ in range(20)]
        codes = [c.reply()[0] for c in socks]
        self.assertEqual((codes.count(554), codes.count(421)), (5, 15), codes)
        for c, code in zip(socks, codes):
            if code == 421:
                self.assertTrue(eof_within(c.sock, 30), "a limited refused client was left open")
        relay.wait_lines(r"\bevent=limited client=127\.0\.0\.9 limit=max_connections_per_ip "
                         r"refused=yes\b", 15)
        other = self.connect(relay, "127.0.0.8")
        self.assertEqual(other.reply()[0], 554)
        # the scanner still has its own five
        devs = [self.connect(relay, "127.0.0.2") for _ in range(5)]
        self.assertEqual([c.reply()[0] for c in devs], [220] * 5)
        self.assert_device_relays(peer, relay, "127.0.0.3", "printer beside refused",
                                  self.PRINTER)

    def test_refused_pool_separate_from_max_connections(self):
        # max_connections = 5: five refused and five devices at once; the sixth of
        # each kind is limited, and the refused never take a device's slot
        peer, relay = self.start_default(relay={"max_connections": "5",
                                                "refused_timeout": "120"})
        refused = [self.connect(relay, REFUSED) for _ in range(6)]
        codes = [c.reply()[0] for c in refused]
        self.assertEqual((codes.count(554), codes.count(421)), (5, 1), codes)
        devs = [self.connect(relay, "127.0.0.%d" % (2 + i % 2)) for i in range(5)]
        self.assertEqual([c.reply()[0] for c in devs], [220] * 5)
        extra = self.connect(relay, "127.0.0.3")
        code, text = extra.reply()
        self.assertEqual((code, text[0]), (421, "4.7.0 relay.test Error: too many connections, "
                                                "try again later"))
        for c in devs:
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_tls_listen_refuses_before_handshake(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        relay = self.start_relay({"main": self.upstream(peer)}, devices,
                                 {"tls_cert_file": self.pki.cert_file,
                                  "tls_key_file": self.pki.key_file,
                                  "tls_listen": "127.0.0.1:0"})
        host, port = parse_hostport(relay.wait_log(TLS_LISTEN_RE, 10).group(1))
        ctx = ssl.create_default_context(cafile=self.pki.ca_file)
        # a refused client: the server closes without a ServerHello
        raw = socket.create_connection((host, port), 30, source_address=(REFUSED, 0))
        self.addCleanup(raw.close)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)) as cm:
            ctx.wrap_socket(raw, server_hostname="localhost")
        self.assertNotIsInstance(cm.exception, socket.timeout)
        relay.wait_log(r"\bevent=refused client=127\.0\.0\.9 port=\d+ reason=\"not in allow\" "
                       r"tls=implicit\b")
        # and sent nothing at all: a ClientHello gets EOF, not a single TLS record
        raw = socket.create_connection((host, port), 30, source_address=(REFUSED, 0))
        self.addCleanup(raw.close)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        try:
            raw.sendall(out.read())
        except (ConnectionError, OSError):
            pass
        got = b""
        raw.settimeout(30)
        try:
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            self.fail("the server kept a refused TLS client open")
        except (ConnectionError, OSError):
            pass
        self.assertEqual(got, b"", "a refused client got TLS bytes (a ServerHello?)")
        self.assertEqual(relay.grep(r"\bevent=tls client=127\.0\.0\.9\b"), [],
                         "a TLS handshake was completed with a refused client")
        # an allowed device on the same port still gets its handshake and 220
        with socket.create_connection((host, port), 30, source_address=("127.0.0.2", 0)) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.settimeout(30)
                self.assertTrue(t.recv(4096).startswith(b"220 "))
                t.sendall(b"QUIT\r\n")

    # --- item 6: per-address limit --------------------------------------------------

    def test_loopback_burst_with_default_limits(self):
        # more concurrent sessions from one loopback address than the per-address
        # default (50): loopback is exempt, every one is greeted and delivers
        peer, relay = self.start_default()
        socks = [self.connect(relay, "127.0.0.2", timeout=60) for _ in range(LOOPBACK_BURST)]
        codes = [c.reply()[0] for c in socks]
        self.assertEqual(codes, [220] * LOOPBACK_BURST, codes)
        errors = []

        def submit(i, c):
            try:
                for line, want in (("EHLO app.test", 250), ("MAIL FROM:<app@example.org>", 250),
                                   ("RCPT TO:<r@example.net>", 250), ("DATA", 354)):
                    code, text = c.cmd(line)
                    if code != want:
                        errors.append((i, line, code, text))
                        return
                c.send(make_message("burst %d" % i) + b".\r\n")
                code, text = c.reply()
                if code != 250:
                    errors.append((i, "end of data", code, text))
                c.cmd("QUIT")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((i, "exception", repr(e)))

        threads = [threading.Thread(target=submit, args=(i, c)) for i, c in enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        msgs = peer.wait_messages(LOOPBACK_BURST, 60)
        self.assertEqual(sorted(m.header("Subject") for m in msgs),
                         sorted("burst %d" % i for i in range(LOOPBACK_BURST)))
        self.assertEqual(relay.grep(r"\bevent=limited\b"), [])

    def test_max_connections_per_ip_zero_is_unlimited(self):
        # no exemptions, so 0 is what lets 127.0.0.2 have 100 sessions
        peer, relay = self.start_default(relay={"max_connections_per_ip": "0",
                                                "max_connections_per_ip_exempt": "",
                                                "max_connections": "1000"})
        socks = [self.connect(relay, "127.0.0.2") for _ in range(100)]
        codes = [c.reply()[0] for c in socks]
        self.assertEqual(codes, [220] * 100, codes)
        self.assertEqual(relay.grep(r"\bevent=limited\b"), [])
        self.assert_device_relays(peer, relay, "127.0.0.2", "101st from scanner", self.SCANNER)

    def test_exempt_list_replaces_loopback_default(self):
        # only 127.0.0.3 exempt: the scanner (127.0.0.2) is limited to 3, the printer not
        peer, relay = self.start_default(relay={"max_connections_per_ip": "3",
                                                "max_connections_per_ip_exempt": "127.0.0.3/32"})
        scan = [self.connect(relay, "127.0.0.2") for _ in range(4)]
        self.assertEqual(sorted(c.reply()[0] for c in scan), [220, 220, 220, 421])
        prn = [self.connect(relay, "127.0.0.3") for _ in range(10)]
        self.assertEqual([c.reply()[0] for c in prn], [220] * 10)


if __name__ == "__main__":
    main()
