#!/usr/bin/python3
"""Hostile and sloppy clients: over-long and binary lines, error limits, lenient
syntax, commands out of order, clients outside `allow`, bare_lf = reject,
received_header = no and the max_message_size boundary."""

import random
import smtplib

from relaytest import RawClient, RelayTestCase, main, make_message

MAX_ERRORS = 20          # bad commands in a row before "421 4.7.0"


def sized_message(size, subject="sized"):
    """A CRLF message of exactly `size` octets (as the SIZE extension counts them:
    content after dot-unstuffing, ending with CRLF, without the final ".")."""
    head = make_message(subject, b"")
    full, rest = divmod(size - len(head), 80)          # 78 "x" + CRLF per line
    if full < 1:
        raise ValueError("size %d too small" % size)
    lines = [b"x" * 78 + b"\r\n"] * full
    if rest == 1:
        lines[-1] = b"x" * 79 + b"\r\n"
    elif rest >= 2:
        lines.append(b"x" * (rest - 2) + b"\r\n")
    msg = head + b"".join(lines)
    assert len(msg) == size, (len(msg), size)
    return msg


class RobustnessTest(RelayTestCase):
    def client(self, relay, source="127.0.0.2", ehlo=True):
        c = RawClient(relay.host, relay.port, source=source)
        self.addCleanup(c.close)
        code, text = c.reply()
        self.assertEqual(code, 220, text)
        if ehlo:
            code, text = c.cmd("EHLO client.test")
            self.assertEqual(code, 250, text)
        return c

    def raw_mail(self, c, subject, mail="MAIL FROM:<s@example.org>",
                 rcpt="RCPT TO:<r@example.net>", data="DATA", body=None):
        """One transaction on a raw client; asserts 250/250/354 and returns the
        end-of-DATA reply (code, text)."""
        code, text = c.cmd(mail)
        self.assertEqual(code, 250, "%s -> %s %s" % (mail, code, text))
        code, text = c.cmd(rcpt)
        self.assertEqual(code, 250, "%s -> %s %s" % (rcpt, code, text))
        code, text = c.cmd(data)
        self.assertEqual(code, 354, "%s -> %s %s" % (data, code, text))
        c.send((body if body is not None else make_message(subject)) + b".\r\n")
        return c.reply()

    def assert_relays_again(self, peer, c, subject):
        code, text = self.raw_mail(c, subject)
        self.assertEqual(code, 250, text)
        self.assertIn(subject, [m.header("Subject") for m in peer.wait_messages(1)])

    # --- over-long and garbage lines -------------------------------------------

    def test_command_line_over_512_octets(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        # exactly 512 octets with CRLF is the RFC 5321 §4.5.3.1.4 limit: accepted
        line = "NOOP " + "a" * (512 - 2 - 5)
        self.assertEqual(len(line) + 2, 512)
        code, text = c.cmd(line)
        self.assertEqual(code, 250, "512-octet command line: %s %s" % (code, text))
        # 513 octets
        code, text = c.cmd(line + "a")
        self.assertEqual((code, text[0][:5]), (500, "5.5.2"), text)
        # a very long line arriving in many reads
        code, text = c.cmd("MAIL FROM:<" + "b" * 100000 + "@example.org>")
        self.assertEqual((code, text[0][:5]), (500, "5.5.2"), text)
        # nothing of the long lines was taken as a command, and the session works
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assert_relays_again(peer, c, "after long lines")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual([a.split()[0] for _, _, a in peer.commands("MAIL")],
                         ["FROM:<s@example.org>"])

    def test_long_line_tail_not_executed(self):
        # The part of an over-long line after 512 octets must not become a command.
        peer, relay = self.start_default()
        c = self.client(relay)
        c.send(b"NOOP " + b"x" * 600 + b" MAIL FROM:<evil@example.org>\r\n")
        code, text = c.reply()
        self.assertEqual(code, 500, text)
        self.assertEqual(c.cmd("RCPT TO:<r@example.net>")[0], 503,
                         "a transaction was started by the tail of an over-long line")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assert_nothing_upstream(peer)

    def test_binary_garbage_lines(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        rnd = random.Random(25)
        garbage = [
            b"\x00\x00\x00\x00",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(0x20, 0x40)),
            b"\xff\xfe\xfd\xfc MAIL FROM:<x@y>",
            b"MAIL\x00FROM:<x@example.org>",
            bytes(rnd.choice([b for b in range(256) if b not in (10, 13)])
                  for _ in range(300)),
            b"\x1b[31m\x7f\x08\x08\x08",
        ]
        for g in garbage:
            c.send(g + b"\r\n")
            code, text = c.reply()
            self.assertEqual(code, 500, "garbage %r -> %s %s" % (g[:20], code, text))
        self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assert_relays_again(peer, c, "after garbage")
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_too_many_errors_then_421(self):
        peer, relay = self.start_default(relay={"allow": "127.0.0.0/24"})
        c = self.client(relay, source="127.0.0.2")
        codes = []
        for i in range(MAX_ERRORS - 1):
            codes.append(c.cmd("XBAD%d" % i)[0])
        self.assertEqual(codes, [500] * (MAX_ERRORS - 1))
        c.send(b"XBAD-last\r\n")
        rest = c.read_until_close()
        self.assertGreaterEqual(len(rest), 2, "want 500 then 421, got %r" % rest)
        self.assertEqual(rest[0][0], 500, rest)
        code, text = rest[1]
        self.assertEqual((code, text[0][:5]), (421, "4.7.0"), rest)
        self.assertEqual(len(rest), 2, "replies after the 421: %r" % rest)
        # the connection is closed: nothing more is read and writes eventually fail
        with self.assertRaises((ConnectionError, OSError)):
            c.send(b"NOOP\r\n")
            c.readline()
        # another client on another address is unaffected
        self.send_mail(relay, "other@example.org", ["r@example.net"],
                       make_message("other client"), source="127.0.0.3")
        (m,) = peer.messages()
        self.assertEqual((m.header("Subject"), m.login), ("other client", self.PRINTER))

    # --- lenient syntax -------------------------------------------------------------

    def test_lower_case_verbs(self):
        peer, relay = self.start_default()
        c = self.client(relay, ehlo=False)
        self.assertEqual(c.cmd("ehlo client.test")[0], 250)
        code, text = self.raw_mail(c, "lower", mail="mail from:<low@example.org>",
                                   rcpt="rcpt to:<r@example.net>", data="data")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("noop")[0], 250)
        self.assertEqual(c.cmd("rset")[0], 250)
        self.assertEqual(c.cmd("quit")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.rcpt_tos), ("low@example.org", ("r@example.net",)))

    def test_space_after_colon(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        code, text = self.raw_mail(c, "space", mail="MAIL FROM: <sp@example.org>",
                                   rcpt="RCPT TO: <r@example.net>")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.rcpt_tos), ("sp@example.org", ("r@example.net",)))
        self.assertEqual([a for _, _, a in peer.commands("MAIL")][0].split()[0],
                         "FROM:<sp@example.org>")

    def test_address_without_brackets(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        code, text = self.raw_mail(c, "bare", mail="MAIL FROM:bare@example.org",
                                   rcpt="RCPT TO:r@example.net")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.rcpt_tos), ("bare@example.org", ("r@example.net",)))
        self.assertEqual([a for _, _, a in peer.commands("MAIL")][0].split()[0],
                         "FROM:<bare@example.org>", "upstream must get a bracketed path")

    def test_mail_without_helo(self):
        peer, relay = self.start_default()
        c = self.client(relay, ehlo=False)
        code, text = self.raw_mail(c, "no helo", mail="MAIL FROM:<nohelo@example.org>")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        (m,) = peer.messages()
        self.assertEqual((m.mail_from, m.login), ("nohelo@example.org", self.SCANNER))
        self.assertTrue(m.content.startswith(b"Received:"), m.content[:200])

    # --- access and command order ---------------------------------------------------

    def test_client_outside_allow(self):
        peer, relay = self.start_default()
        c = RawClient(relay.host, relay.port, source="127.0.0.9")
        self.addCleanup(c.close)
        code, text = c.reply()
        self.assertEqual(code, 554, text)
        for cmd in ("HELO client.test", "EHLO client.test", "MAIL FROM:<x@example.org>",
                    "RCPT TO:<y@example.net>", "DATA", "NOOP"):
            code, text = c.cmd(cmd)
            self.assertEqual(code, 503, "%s after the 554 greeting -> %s %s" % (cmd, code, text))
        c.send(b"QUIT\r\n")
        rest = c.read_until_close()
        self.assertEqual([r[0] for r in rest], [221], rest)
        self.assert_nothing_upstream(peer)

    def test_rcpt_before_mail(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        code, text = c.cmd("RCPT TO:<r@example.net>")
        self.assertEqual(code, 503, text)
        code, text = c.cmd("DATA")
        self.assertEqual(code, 503, "DATA without MAIL: %s" % text)
        self.assert_relays_again(peer, c, "in order now")
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_data_without_accepted_recipient(self):
        peer, relay = self.start_default()
        c = self.client(relay)
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<reject-me@example.net>")[0], 550)
        code, text = c.cmd("DATA")
        self.assertIn(code, (503, 554), "DATA without accepted recipients: %s %s" % (code, text))
        # no 354 was given, so a body line is just a (bad) command, not message data
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assert_relays_again(peer, c, "recipient accepted")
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual([m.header("Subject") for m in peer.all_messages()],
                         ["recipient accepted"])

    # --- body options ---------------------------------------------------------------

    def test_bare_lf_reject(self):
        peer, relay = self.start_default(relay={"bare_lf": "reject"})
        c = self.client(relay)
        bad = make_message("bare lf", b"line one\nline two\r\nline three\r\n")
        code, text = self.raw_mail(c, "bare lf", body=bad)
        self.assertEqual((code, text[0][:5]), (554, "5.6.0"), text)
        relay.wait_lines(r"\bstatus=bounced\b")
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [], "message with a bare LF reached upstream")
        # the same session goes on with a clean message
        clean = make_message("clean", b"line one\r\nline two\r\n")
        code, text = self.raw_mail(c, "clean", body=clean)
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        msgs = peer.all_messages()
        self.assertEqual([m.header("Subject") for m in msgs], ["clean"])
        self.assertTrue(msgs[0].content.endswith(clean), msgs[0].content[-200:])

    def test_bare_cr_reject(self):
        peer, relay = self.start_default(relay={"bare_lf": "reject"})
        c = self.client(relay)
        code, text = self.raw_mail(c, "bare cr",
                                   body=make_message("bare cr", b"one\rtwo\r\n"))
        self.assertEqual((code, text[0][:5]), (554, "5.6.0"), text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        peer.wait_idle(10)
        self.assertEqual(peer.all_messages(), [])

    def test_received_header_no(self):
        peer, relay = self.start_default(relay={"received_header": "no"})
        msg = make_message("as sent", b"..leading dot\r\n.\r\nlast line\r\n",
                           headers=["Received: from earlier.test by device; "
                                    "Thu, 01 Jan 2026 00:00:00 +0000"])
        self.assertEqual(self.send_mail(relay, "s@example.org", ["r@example.net"], msg), {})
        (m,) = peer.messages()
        self.assertEqual(m.content, msg, "upstream bytes differ from what was sent")

    # --- max_message_size boundary --------------------------------------------------

    LIMIT = 4096

    def start_limited(self):
        peer, relay = self.start_default(relay={"max_message_size": "4K"})
        return peer, relay

    def test_size_advertised(self):
        _, relay = self.start_limited()
        c = self.client(relay, ehlo=False)
        code, lines = c.cmd("EHLO client.test")
        self.assertIn("SIZE %d" % self.LIMIT, lines)

    def test_exactly_max_message_size(self):
        peer, relay = self.start_limited()
        msg = sized_message(self.LIMIT, "exact")
        # smtplib declares SIZE=4096 on MAIL
        self.assertEqual(self.send_mail(relay, "s@example.org", ["r@example.net"], msg), {})
        # and without SIZE=: counted while streaming
        c = self.client(relay)
        code, text = self.raw_mail(c, "exact raw", body=sized_message(self.LIMIT, "exact raw"))
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertEqual([m.header("Subject") for m in peer.messages()], ["exact", "exact raw"])
        self.assertTrue(peer.messages()[0].content.endswith(msg))

    def test_one_byte_over_with_size_param(self):
        peer, relay = self.start_limited()
        msg = sized_message(self.LIMIT + 1, "over")
        with self.assertRaises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as cm:
            self.send_mail(relay, "s@example.org", ["r@example.net"], msg)
        self.assertEqual(cm.exception.smtp_code, 552, cm.exception)
        self.assertEqual(peer.all_messages(), [])

    def test_one_byte_over_without_size_param(self):
        peer, relay = self.start_limited()
        c = self.client(relay)
        code, text = self.raw_mail(c, "over raw", body=sized_message(self.LIMIT + 1, "over raw"))
        self.assertEqual(code, 552, text)
        # the session goes on
        code, text = self.raw_mail(c, "small")
        self.assertEqual(code, 250, text)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        peer.wait_idle(10)
        self.assertEqual([m.header("Subject") for m in peer.all_messages()], ["small"])


if __name__ == "__main__":
    main()
