#!/usr/bin/python3
"""PROXY protocol behind a real HAProxy (Debian package `haproxy`, TCP mode,
`send-proxy-v2` and `send-proxy`): the client address in the header picks the
device, `allow` and the per-IP limit; connections from outside proxy_from and
trusted connections without a valid header are closed without a greeting.

HAProxy is installed with apt-get when missing and running as root (set
RELAY25_TEST_NO_INSTALL=1 to prevent it); without it the file is skipped."""

import os
import shutil
import socket
import struct
import subprocess
import time
import unittest

from relaytest import RawClient, RelayTestCase, main, make_message

NO_INSTALL = os.environ.get("RELAY25_TEST_NO_INSTALL", "") not in ("", "0")


def find_haproxy():
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None)


def ensure_haproxy():
    """Path of haproxy, installing the Debian package if needed; or raise SkipTest."""
    path = find_haproxy()
    if path:
        return path
    why = "haproxy is not installed"
    if NO_INSTALL:
        why += " (RELAY25_TEST_NO_INSTALL is set)"
    elif os.geteuid() != 0 or not shutil.which("apt-get"):
        why += " and cannot be installed here (needs root and apt-get)"
    else:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                "haproxy"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, timeout=600)
            out = r.stdout.decode(errors="replace").strip().splitlines()
        except (OSError, subprocess.TimeoutExpired) as e:
            out = [str(e)]
        path = find_haproxy()
        if path:
            return path
        why += "; apt-get install haproxy failed: %s" % (out[-1] if out else "?")
    raise unittest.SkipTest(why + ": `apt-get install haproxy` to run the PROXY protocol tests")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """True if something listens on 127.0.0.1:port (from /proc/net/tcp, without
    connecting: a probe connection would reach relay25 through HAProxy)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                return True
    return False


class HAProxy:
    """haproxy -db in TCP mode on a free loopback port, forwarding to relay25."""

    def __init__(self, binary, directory, relay_port, send_proxy="send-proxy-v2"):
        self.binary, self.dir = binary, directory
        self.relay_port, self.send_proxy = relay_port, send_proxy
        self.proc = self.port = None
        self.err = b""

    def config(self, port):
        return ("global\n"
                "    maxconn 512\n"
                "defaults\n"
                "    mode tcp\n"
                "    timeout connect 5s\n"
                "    timeout client 60s\n"
                "    timeout server 60s\n"
                "frontend smtp\n"
                "    bind 127.0.0.1:%d\n"
                "    default_backend relay25\n"
                "backend relay25\n"
                "    server relay 127.0.0.1:%d %s\n" % (port, self.relay_port, self.send_proxy))

    def start(self):
        for _ in range(5):                   # the free port can be taken meanwhile: retry
            port = free_port()
            cfg = os.path.join(self.dir, "haproxy-%s.cfg" % self.send_proxy)
            with open(cfg, "w") as f:
                f.write(self.config(port))
            self.proc = subprocess.Popen([self.binary, "-f", cfg, "-db"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if listening(port):
                    self.port = port
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("haproxy did not start: %s" % self.err.decode(errors="replace"))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err = self.proc.stdout.read() or b""
        self.proc.stdout.close()
        self.proc = None


def v2_header(src, dst, sport, dport, local=False):
    """A PROXY protocol v2 header (TCP over IPv4, or LOCAL)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return sig + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


def no_greeting_and_closed(sock, timeout=10.0):
    """Bytes received until the server closed the connection (b"" is expected).
    Raises AssertionError if it stays open."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    except socket.timeout:
        raise AssertionError("connection still open after %.0fs; received %r" % (timeout, got))
    except (ConnectionError, OSError):
        return got


class ProxyProtocolTest(RelayTestCase):
    ALLOW = "127.0.0.1/32, 127.0.0.2/32, 127.0.0.3/32, 127.0.0.5/32"

    @classmethod
    def setUpClass(cls):
        cls.haproxy_bin = ensure_haproxy()
        super().setUpClass()

    def start_proxied(self, relay=None, send_proxy="send-proxy-v2"):
        """Peer + relay25 (proxy_protocol = yes, proxy_from = 127.0.0.1/32) + HAProxy.
        Returns (peer, relay, haproxy)."""
        keys = {"proxy_protocol": "yes", "proxy_from": "127.0.0.1/32"}
        keys.update(relay or {})
        peer, r = self.start_default(relay=keys)
        hp = HAProxy(self.haproxy_bin, self.dir, r.port, send_proxy)
        self.addCleanup(hp.stop)
        hp.start()
        return peer, r, hp

    def via(self, hp, source):
        c = RawClient("127.0.0.1", hp.port, source=source, timeout=15)
        self.addCleanup(c.close)
        return c

    def direct(self, relay, source):
        s = socket.create_connection((relay.host, relay.port), 15, source_address=(source, 0))
        self.addCleanup(s.close)
        return s

    def relay_via(self, hp, source, subject):
        c = self.via(hp, source)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message(subject) + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def check_devices_through(self, send_proxy):
        peer, relay, hp = self.start_proxied(send_proxy=send_proxy)
        self.relay_via(hp, "127.0.0.2", "via scanner")
        self.relay_via(hp, "127.0.0.3", "via printer")
        got = {m.header("Subject"): m for m in peer.messages()}
        self.assertEqual((got["via scanner"].login, got["via printer"].login),
                         (self.SCANNER, self.PRINTER),
                         "upstream logins must follow the addresses in the PROXY header")
        self.assertIn("[127.0.0.2]", got["via scanner"].header("Received"))
        self.assertIn("[127.0.0.3]", got["via printer"].header("Received"))
        relay.wait_log(r"\bevent=connect client=127\.0\.0\.2 port=\d+ device=scanner\b")
        relay.wait_log(r"\bevent=connect client=127\.0\.0\.3 port=\d+ device=printer\b")
        self.assertEqual(relay.grep(r"\bevent=connect client=127\.0\.0\.1\b"), [],
                         "a session was attributed to the proxy's own address")

    def test_v2_devices_by_client_address(self):
        self.check_devices_through("send-proxy-v2")

    def test_v1_devices_by_client_address(self):
        self.check_devices_through("send-proxy")

    def test_proxied_client_outside_allow(self):
        peer, relay, hp = self.start_proxied()
        c = self.via(hp, "127.0.0.9")
        code, text = c.reply()
        self.assertEqual((code, text[0]), (554, "5.7.1 relay.test Client [127.0.0.9] not "
                                                "allowed to relay: not in allow"))
        self.assertEqual(c.cmd("MAIL FROM:<x@example.org>")[0], 503)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assert_nothing_upstream(peer)

    def test_per_ip_limit_uses_proxied_address(self):
        # every connection comes from HAProxy's 127.0.0.1: the limit must count
        # the addresses in the headers
        # the proxied 127.0.0.x addresses are loopback, exempt by default: no exemptions
        peer, relay, hp = self.start_proxied(relay={"max_connections_per_ip": "2",
                                                    "max_connections_per_ip_exempt": ""})
        held = []
        for _ in range(2):
            c = self.via(hp, "127.0.0.2")
            self.assertEqual(c.reply()[0], 220)
            held.append(c)
        c = self.via(hp, "127.0.0.2")
        code, text = c.reply()
        self.assertEqual((code, text[0][:5]), (421, "4.7.0"), text)
        self.assertIn("from your address", text[0])
        self.relay_via(hp, "127.0.0.3", "printer while scanner is full")
        (m,) = peer.messages()
        self.assertEqual(m.login, self.PRINTER)
        for c in held:
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_direct_connection_outside_proxy_from(self):
        # 127.0.0.5 is in allow but not in proxy_from
        peer, relay, hp = self.start_proxied()
        s = self.direct(relay, "127.0.0.5")
        got = no_greeting_and_closed(s)
        self.assertEqual(got, b"", "a client outside proxy_from got %r" % got)
        relay.wait_log(r"\bevent=refused client=127\.0\.0\.5 reason=\"PROXY protocol from an "
                       r"address not in proxy_from\"")
        # even one that sends a well-formed header claiming a trusted device
        s = self.direct(relay, "127.0.0.5")
        s.sendall(b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\nEHLO x\r\n"
                  b"MAIL FROM:<s@example.org>\r\n")
        got = no_greeting_and_closed(s)
        self.assertEqual(got, b"", "a spoofed header from outside proxy_from got %r" % got)
        self.assert_nothing_upstream(peer)
        # HAProxy's connections still work
        self.relay_via(hp, "127.0.0.2", "after refusals")

    def test_trusted_source_without_valid_header(self):
        peer, relay, hp = self.start_proxied()
        garbage = [
            b"EHLO client.test\r\n",
            b"MAIL FROM:<x@example.org>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n",
            b"PROXY TCP4 127.0.0.2\r\n",
            b"PROXY TCP4 999.0.0.2 127.0.0.1 40000 25\r\n",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\n",          # no CR
            b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # bad version nibble
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),  # TLS ClientHello
            b"PROXY " + b"A" * 200 + b"\r\n",
        ]
        for g in garbage:
            with self.subTest(garbage=g[:24]):
                s = self.direct(relay, "127.0.0.1")
                try:
                    s.sendall(g)
                except (ConnectionError, OSError):
                    pass
                got = no_greeting_and_closed(s)
                self.assertEqual(got, b"", "garbage instead of a PROXY header got %r" % got)
        self.assertEqual(len(relay.wait_lines(r"\breason=\"bad PROXY protocol header\"",
                                              len(garbage))), len(garbage))
        self.assert_nothing_upstream(peer)

    def test_hand_made_headers_from_trusted_source(self):
        peer, relay, hp = self.start_proxied()
        # v1 and SMTP in one segment: the bytes after the header are SMTP
        s = self.direct(relay, "127.0.0.1")
        s.sendall(b"PROXY TCP4 127.0.0.3 127.0.0.1 40000 25\r\nEHLO client.test\r\n")
        c = RawClient.__new__(RawClient)
        c.sock, c.buf = s, b""
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.reply()[0], 250, "the EHLO after the header was lost")
        self.assertEqual(c.cmd("MAIL FROM:<p@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("hand v1") + b".\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        # v2 LOCAL (health check): the socket's own address, 127.0.0.1 -> default device
        s = self.direct(relay, "127.0.0.1")
        s.sendall(v2_header(None, None, 0, 0, local=True))
        c = RawClient.__new__(RawClient)
        c.sock, c.buf = s, b""
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        relay.wait_log(r"\bevent=connect client=127\.0\.0\.1 port=\d+ device=default\b")
        # v2 sent in two pieces (split inside the address block)
        s = self.direct(relay, "127.0.0.1")
        h = v2_header("127.0.0.2", "127.0.0.1", 40001, 25)
        s.sendall(h[:20])
        time.sleep(0.2)
        s.sendall(h[20:])
        c = RawClient.__new__(RawClient)
        c.sock, c.buf = s, b""
        self.assertEqual(c.reply()[0], 220)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        relay.wait_log(r"\bevent=connect client=127\.0\.0\.2 port=40001 device=scanner\b")
        (m,) = peer.messages()
        self.assertEqual((m.header("Subject"), m.login), ("hand v1", self.PRINTER))

    def test_no_header_times_out(self):
        peer, relay, hp = self.start_proxied(relay={"idle_timeout": "1"})
        s = self.direct(relay, "127.0.0.1")
        no_greeting_and_closed(s, timeout=15)     # whatever it says, it must close
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.1 state=proxy\b")
        self.assert_nothing_upstream(peer)

    def test_slow_drip_header_times_out(self):
        # one byte a second: the header must be whole within idle_timeout of its
        # first byte (session_timeout is 3600), so the load balancer link is closed
        peer, relay, hp = self.start_proxied(relay={"idle_timeout": "3"})
        s = self.direct(relay, "127.0.0.1")
        header = b"PROXY TCP4 127.0.0.2 127.0.0.1 40001 25\r\n"
        deadline = time.monotonic() + 30
        sent = 0
        s.settimeout(1)
        closed = False
        while time.monotonic() < deadline and not closed:
            if sent < len(header):
                try:
                    s.sendall(header[sent:sent + 1])
                    sent += 1
                except OSError:
                    closed = True
                    break
            try:
                closed = s.recv(65536) == b""
            except socket.timeout:
                pass
            except OSError:
                closed = True
        self.assertTrue(closed, "a PROXY header dripped a byte a second kept the connection "
                        "for 30 s")
        self.assertLess(sent, len(header), "the whole header went through")
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.1 state=proxy\b")
        self.assert_nothing_upstream(peer)


if __name__ == "__main__":
    main()
