#!/usr/bin/python3
"""Connection and session limits: max_connections_per_ip, max_connections,
max_recipients, max_header_size, max_errors, max_commands_before_mail,
max_messages_per_session and session_timeout. Each test checks the exact reply
of the limit and that other clients (another address, or another session) are
not affected. No timing assertions: a time bound only turns "never happened"
into a failure."""

import select
import socket
import time

from relaytest import RawClient, RelayTestCase, main, make_message

MANY = 200            # connections from one address
PER_IP = 20           # max_connections_per_ip in that test


def header_of(size, subject="big header"):
    """A message whose header section (up to and including the empty line that
    ends it) is `size` octets, followed by a short body."""
    head = make_message(subject, b"")             # ends with the CRLF CRLF
    filler = []
    room = size - len(head)
    while room > 0:
        n = min(room, 78)                         # "X-Filler: " + text + CRLF
        if n < 13:
            filler[-1] = filler[-1][:-2] + b"y" * n + b"\r\n"
            break
        filler.append(b"X-Filler: " + b"f" * (n - 12) + b"\r\n")
        room -= n
    msg = head[:-2] + b"".join(filler) + b"\r\nshort body\r\n"
    assert len(msg.split(b"\r\n\r\n", 1)[0]) + 4 == size, (len(msg), size)
    return msg


def closed_by_peer(sock, timeout=10.0):
    """True if the server closed the connection (EOF or reset) within timeout,
    after discarding whatever it still sent."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionError, OSError) as e:
        return not isinstance(e, socket.timeout)


class LimitsTest(RelayTestCase):
    ALLOW = "127.0.0.0/24"

    def connect(self, relay, source="127.0.0.2"):
        c = RawClient(relay.host, relay.port, source=source, timeout=15)
        self.addCleanup(c.close)
        return c

    def client(self, relay, source="127.0.0.2", ehlo=True):
        c = self.connect(relay, source)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        if ehlo:
            code, text = c.cmd("EHLO client.test")
            self.assertEqual(code, 250, text)
        return c

    def raw_mail(self, c, msg, mail="MAIL FROM:<s@example.org>", rcpts=("r@example.net",)):
        """MAIL/RCPT/DATA asserting 250/250/354; returns the end-of-DATA reply."""
        code, text = c.cmd(mail)
        self.assertEqual(code, 250, "%s -> %s %s" % (mail, code, text))
        for r in rcpts:
            code, text = c.cmd("RCPT TO:<%s>" % r)
            self.assertEqual(code, 250, "RCPT %s -> %s %s" % (r, code, text))
        code, text = c.cmd("DATA")
        self.assertEqual(code, 354, text)
        c.send(msg + b".\r\n")
        return c.reply()

    def assert_other_client_relays(self, peer, relay, subject, source="127.0.0.3",
                                   login=None):
        """A fresh session from `source` relays one message end to end."""
        n = len(peer.messages())
        self.assertEqual(self.send_mail(relay, "other@example.org", ["r@example.net"],
                                        make_message(subject), source=source), {})
        msgs = peer.wait_messages(n + 1)
        self.assertIn(subject, [m.header("Subject") for m in msgs])
        m = [m for m in msgs if m.header("Subject") == subject][0]
        self.assertEqual(m.login, login or {"127.0.0.2": self.SCANNER,
                                            "127.0.0.3": self.PRINTER}.get(source, self.OFFICE))

    def assert_421_then_close(self, c, code_prefix="4.7.0", contains=None):
        rest = c.read_until_close()
        self.assertEqual(len(rest), 1, "want exactly one 421 then close, got %r" % rest)
        code, text = rest[0]
        self.assertEqual((code, text[0][:5]), (421, code_prefix), rest)
        if contains:
            self.assertIn(contains, text[0])
        self.assertTrue(closed_by_peer(c.sock), "connection still open after 421")
        return text[0]

    # --- max_connections_per_ip -------------------------------------------------------

    def test_max_connections_per_ip(self):
        # 127.0.0.2 is loopback, exempt from the per-address limit by default: no exemptions
        peer, relay = self.start_default(relay={"max_connections_per_ip": str(PER_IP),
                                                "max_connections_per_ip_exempt": "",
                                                "max_connections": "1000"})
        socks = [self.connect(relay, "127.0.0.2") for _ in range(MANY)]
        greeted, limited, other = [], [], []
        for c in socks:
            code, text = c.reply()
            if code == 220:
                greeted.append(c)
            elif code == 421:
                limited.append((c, text[0]))
            else:
                other.append((code, text))
        self.assertEqual(other, [], "unexpected first replies")
        self.assertEqual((len(greeted), len(limited)), (PER_IP, MANY - PER_IP),
                         "greeted / limited of %d connections from one address" % MANY)
        for c, text in limited:
            self.assertEqual(text, "4.7.0 relay.test Error: too many connections from your "
                             "address, try again later")
            self.assertTrue(closed_by_peer(c.sock), "a limited connection was left open")
        relay.wait_lines(r"\bevent=limited client=127\.0\.0\.2 limit=max_connections_per_ip\b",
                         MANY - PER_IP)
        # while 127.0.0.2 holds its 20 sessions, 127.0.0.3 relays mail
        self.assert_other_client_relays(peer, relay, "during the flood")
        # the 20 admitted sessions all still work, one of them relays a message
        for c in greeted:
            self.assertEqual(c.cmd("NOOP")[0], 250)
        code, text = self.raw_mail(greeted[0], make_message("from an admitted session"))
        self.assertEqual(code, 250, text)
        self.assertEqual(sorted(m.header("Subject") for m in peer.messages()),
                         ["during the flood", "from an admitted session"])
        # still full: one more from 127.0.0.2 is limited ...
        c = self.connect(relay, "127.0.0.2")
        self.assert_421_then_close(c, contains="from your address")
        # ... until one admitted session ends
        self.assertEqual(greeted[1].cmd("QUIT")[0], 221)
        self.assertTrue(closed_by_peer(greeted[1].sock))
        c = self.connect(relay, "127.0.0.2")
        code, text = c.reply()
        self.assertEqual(code, 220, "a freed per-IP slot was not reusable: %s %s" % (code, text))

    # --- max_connections ------------------------------------------------------------

    def test_max_connections_total(self):
        peer, relay = self.start_default(relay={"max_connections": "10"})
        held = [self.client(relay, "127.0.0.%d" % (2 + i % 2)) for i in range(10)]
        for source in ("127.0.0.4", "127.0.0.2"):
            c = self.connect(relay, source)
            text = self.assert_421_then_close(c)
            self.assertEqual(text, "4.7.0 relay.test Error: too many connections, "
                             "try again later", "excess connection from %s" % source)
        relay.wait_lines(r"\bevent=limited client=\S+ limit=max_connections\b", 2)
        # the sessions already connected keep working, including whole transactions
        for i, c in enumerate(held):
            self.assertEqual(c.cmd("NOOP")[0], 250, "held session %d" % i)
        code, text = self.raw_mail(held[0], make_message("held scanner"))
        self.assertEqual(code, 250, text)
        code, text = self.raw_mail(held[1], make_message("held printer"))
        self.assertEqual(code, 250, text)
        self.assertEqual(sorted((m.header("Subject"), m.login) for m in peer.messages()),
                         [("held printer", self.PRINTER), ("held scanner", self.SCANNER)])
        # a slot freed by QUIT is given to the next client (the freed session's
        # handles close asynchronously: retry a bounded number of times)
        self.assertEqual(held[5].cmd("QUIT")[0], 221)
        self.assertTrue(closed_by_peer(held[5].sock))
        for _ in range(50):
            c = self.connect(relay, "127.0.0.4")
            code, text = c.reply()
            if code == 220:
                break
            c.close()
            time.sleep(0.1)
        self.assertEqual(code, 220, "no slot after a session quit: %s %s" % (code, text))

    # --- max_recipients ---------------------------------------------------------------

    def test_max_recipients(self):
        peer, relay = self.start_default(relay={"max_recipients": "3"})
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        rcpts = ["r%d@example.net" % i for i in range(1, 6)]
        replies = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        self.assertEqual([code for code, _ in replies], [250, 250, 250, 452, 452], replies)
        for code, text in replies[3:]:
            self.assertEqual(text[0], "4.5.3 Error: too many recipients")
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(make_message("three of five") + b".\r\n")
        code, text = c.reply()
        self.assertEqual(code, 250, text)
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.rcpt_tos, tuple(rcpts[:3]))
        self.assertEqual([a for _, _, a in peer.commands("RCPT")],
                         ["TO:<%s>" % r for r in rcpts[:3]], "excess RCPT reached upstream")
        # the count is per message: the next transaction gets three again
        code, text = self.raw_mail(c, make_message("next message"),
                                   rcpts=["n%d@example.net" % i for i in range(3)])
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("RCPT TO:<late@example.net>")[0], 503)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assert_other_client_relays(peer, relay, "other after max_recipients")

    # --- max_header_size -----------------------------------------------------------------

    def test_header_section_over_max_header_size(self):
        peer, relay = self.start_default(relay={"max_header_size": "1K"})
        c = self.client(relay)
        # sizes of the header section: just over the limit, within the first 2 KiB
        # of the body (one read), and far over it
        for size in (1100, 1500, 2000, 3000, 64 * 1024):
            with self.subTest(header=size):
                code, text = self.raw_mail(c, header_of(size, "header %d" % size))
                self.assertEqual((code, text[0][:5]), (552, "5.3.4"),
                                 "header section of %d octets with max_header_size = 1K: "
                                 "%s %s" % (size, code, text))
                self.assertEqual(text[0], "5.3.4 Error: message header section exceeds "
                                 "fixed limit")
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        peer.wait_idle(10)
        self.assertEqual([m.header("Subject") for m in peer.all_messages()], [],
                         "a message with an oversized header section reached upstream")

    def test_small_header_big_body_passes_max_header_size(self):
        peer, relay = self.start_default(relay={"max_header_size": "1K"})
        c = self.client(relay)
        # header section well under 1K, body of 64 KiB without empty lines
        body = (b"b" * 98 + b"\r\n") * 655
        code, text = self.raw_mail(c, make_message("small header", body))
        self.assertEqual(code, 250, text)
        # a header of exactly 1K is at the limit, not over it
        code, text = self.raw_mail(c, header_of(1024, "header 1024"))
        self.assertEqual(code, 250, "header section of exactly 1024 octets: %s %s" % (code, text))
        self.assertEqual(c.cmd("QUIT")[0], 221)
        msgs = peer.messages()
        self.assertEqual([m.header("Subject") for m in msgs], ["small header", "header 1024"])
        self.assertTrue(msgs[0].content.endswith(body), "body changed")
        self.assert_other_client_relays(peer, relay, "other after header limit")

    # --- max_errors ------------------------------------------------------------------

    def test_max_errors(self):
        peer, relay = self.start_default(relay={"max_errors": "3"})
        c = self.client(relay)
        self.assertEqual(c.cmd("XBAD1")[0], 500)
        self.assertEqual(c.cmd("NOOP")[0], 250)       # a good command does not reset
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 503)
        c.send(b"XBAD2\r\n")
        rest = c.read_until_close()
        self.assertEqual([r[0] for r in rest], [500, 421], rest)
        self.assertEqual(rest[1][1][0], "4.7.0 Error: too many errors, closing connection")
        self.assertTrue(closed_by_peer(c.sock))
        # the count is per session: a new session from the same address starts at 0
        c2 = self.client(relay)
        self.assertEqual(c2.cmd("XBAD3")[0], 500)
        self.assertEqual(c2.cmd("XBAD4")[0], 500)
        code, text = self.raw_mail(c2, make_message("same address, new session"))
        self.assertEqual(code, 250, text)
        self.assertEqual(c2.cmd("QUIT")[0], 221)
        self.assert_other_client_relays(peer, relay, "other after max_errors")

    # --- max_commands_before_mail ------------------------------------------------------------

    def test_max_commands_before_mail(self):
        peer, relay = self.start_default(relay={"max_commands_before_mail": "5"})
        c = self.client(relay, ehlo=False)
        for i in range(5):
            code, text = c.cmd("NOOP")
            self.assertEqual(code, 250, "NOOP %d: %s %s" % (i + 1, code, text))
        c.send(b"NOOP\r\n")
        rest = c.read_until_close()
        self.assertEqual(len(rest), 1, rest)
        self.assertEqual((rest[0][0], rest[0][1][0]),
                         (421, "4.7.0 Error: too many commands without MAIL, closing "
                               "connection"))
        self.assertTrue(closed_by_peer(c.sock))
        # QUIT is not counted; MAIL resets the count
        c2 = self.client(relay)                                      # EHLO: 1
        for _ in range(4):                                           # 2..5
            self.assertEqual(c2.cmd("NOOP")[0], 250)
        code, text = self.raw_mail(c2, make_message("after five commands"))
        self.assertEqual(code, 250, text)
        for i in range(5):
            code, text = c2.cmd("RSET" if i % 2 else "NOOP")
            self.assertEqual(code, 250, "command %d after a transaction: %s %s"
                             % (i + 1, code, text))
        self.assertEqual(c2.cmd("QUIT")[0], 221)
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["after five commands"])
        self.assert_other_client_relays(peer, relay, "other after max_commands")

    # --- max_messages_per_session --------------------------------------------------

    def test_max_messages_per_session(self):
        peer, relay = self.start_default(relay={"max_messages_per_session": "2"})
        c = self.client(relay)
        for i in (1, 2):
            code, text = self.raw_mail(c, make_message("message %d" % i))
            self.assertEqual(code, 250, text)
        c.send(b"MAIL FROM:<s@example.org>\r\n")
        rest = c.read_until_close()
        self.assertEqual(len(rest), 1, rest)
        self.assertEqual((rest[0][0], rest[0][1][0]),
                         (421, "4.7.0 Error: too many messages in this session, closing "
                               "connection"))
        self.assertTrue(closed_by_peer(c.sock))
        self.assertEqual([m.header("Subject") for m in peer.messages()],
                         ["message 1", "message 2"])
        self.assertEqual(len(peer.commands("MAIL")), 2, "the third MAIL reached upstream")
        # a new session (same address) may send again
        self.assert_other_client_relays(peer, relay, "new session", source="127.0.0.2")
        self.assert_other_client_relays(peer, relay, "other address")

    # --- session_timeout ---------------------------------------------------------------

    def wait_closed_while(self, c, step, limit):
        """Call step() (which sends something) repeatedly until the server closes the
        connection or `limit` seconds pass. Returns (closed, [(code, text)])."""
        got = b""
        deadline = time.monotonic() + limit
        closed = False
        while time.monotonic() < deadline and not closed:
            r, _, _ = select.select([c.sock], [], [], 0)
            if r:
                try:
                    chunk = c.sock.recv(65536)
                except (ConnectionError, OSError):
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                got += chunk
                continue
            try:
                step()
            except (ConnectionError, OSError):
                closed = True
        if closed:
            c.sock.settimeout(2)
            try:
                while True:
                    chunk = c.sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except (ConnectionError, OSError):
                pass
        replies = []
        for line in got.split(b"\r\n"):
            if len(line) >= 3 and line[:3].isdigit() and line[3:4] != b"-":
                replies.append((int(line[:3]), line[4:].decode("utf-8", "replace")))
        return closed, replies

    def test_session_timeout_busy_client(self):
        # idle_timeout never fires (a NOOP every 0.5 s), session_timeout = 2 must
        peer, relay = self.start_default(relay={"session_timeout": "2", "idle_timeout": "30"})
        c = self.client(relay)

        def noop():
            c.send(b"NOOP\r\n")
            time.sleep(0.5)

        closed, replies = self.wait_closed_while(c, noop, 15)
        self.assertTrue(closed, "a client sending NOOP every 0.5 s was not closed within 15 s "
                        "with session_timeout = 2 (replies: %d x 250)"
                        % sum(1 for code, _ in replies if code == 250))
        self.assertTrue(replies and replies[-1][0] == 421, replies[-3:])
        self.assertTrue(replies[-1][1].startswith("4.4.2 "), replies[-1])
        self.assertTrue(all(code == 250 for code, _ in replies[:-1]), replies)
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.2\b")
        self.assert_other_client_relays(peer, relay, "other after session_timeout")

    def test_slow_client_idle_restarts_session_timeout_closes(self):
        # idle_timeout counts from a line's first byte (issue 15 item 4: a line that
        # arrives a byte at a time gets no more time per byte), so it is 3 here: each
        # line below takes at most 1.6 s, and only session_timeout may end the session
        peer, relay = self.start_default(relay={"idle_timeout": "3", "session_timeout": "4"})
        c = self.client(relay, ehlo=False)
        # "EHLO x" one byte per 0.2 s: 1.6 s of input, many reads within idle_timeout
        for b in b"EHLO x\r\n":
            c.send(bytes([b]))
            time.sleep(0.2)
        code, text = c.reply()
        self.assertEqual(code, 250, "a client sending a byte every 0.2 s was cut off with "
                         "idle_timeout = 3: %s %s" % (code, text))
        data = iter(b"NOOP\r\n" * 1000)

        def one_byte():
            c.send(bytes([next(data)]))
            time.sleep(0.2)

        closed, replies = self.wait_closed_while(c, one_byte, 20)
        self.assertTrue(closed, "a client sending a byte every 0.2 s was not closed within "
                        "20 s with session_timeout = 4 (%d NOOPs answered)" % len(replies))
        self.assertTrue(replies and replies[-1][0] == 421, replies[-3:])
        self.assertTrue(all(code == 250 for code, _ in replies[:-1]), replies)
        relay.wait_log(r"\bevent=timeout client=127\.0\.0\.2\b")
        self.assert_other_client_relays(peer, relay, "other after slow client")


if __name__ == "__main__":
    main()
