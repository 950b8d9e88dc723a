#!/usr/bin/python3
"""DSN (RFC 3461) and SMTPUTF8 (RFC 6531) between devices, relay25 and upstream.

Passthrough: relay25 offers DSN / SMTPUTF8 when the device's upstream offered
them in its last EHLO (remembered from an earlier session: up_caps), passes
RET/ENVID/NOTIFY/ORCPT/SMTPUTF8 on unchanged, and answers 455 4.5.4 when the
upstream session of a MAIL turns out not to offer what the device used. Spool
mode: always offered; the .env keeps the parameters, the queue passes them on
to an upstream that offers DSN and writes the notices itself for one that does
not (failures as NOTIFY says, "relayed" for NOTIFY=SUCCESS, RET, ENVID and ORCPT
in an RFC 3464 report parsed by Python's email package); an SMTPUTF8 message
for an upstream without SMTPUTF8 bounces with 5.6.7. Non-ASCII addresses
without SMTPUTF8 get 553 5.6.7; malformed parameters 501 5.5.4.
"""

import os
import smtplib

from relaytest import CLIENT_NAME, closed_port, main, make_message
from spooltest import QUEUED_RE, SpoolTestCase, dsn_parts, parse_dsn

ENVID = "abc+2Bdef+3Dx"         # xtext of "abc+def=x"
ORCPT_OK = "rfc822;orig+2Bok@example.net"          # decodes to orig+ok@example.net
ORCPT_BAD = "rfc822;orig-reject@example.net"
UTF8_FROM = "p\u00e4r@example.org"
UTF8_RCPT = "j\u00f6rg@example.net"


class DsnTest(SpoolTestCase):

    # helpers -------------------------------------------------------------------------

    def session(self, relay, source="127.0.0.2"):
        s = smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                         source_address=(source, 0), timeout=60)
        self.addCleanup(s.close)
        s.command_encoding = "utf-8"   # raw UTF-8 lines, with or without SMTPUTF8
        code, _ = s.ehlo()
        self.assertEqual(code, 250)
        return s

    def cmd(self, s, line):
        code, text = s.docmd(line)
        return code, text.decode("utf-8", "replace")

    def data(self, s, msg):
        code, text = s.data(msg)
        return code, text.decode("utf-8", "replace")

    def relay_for(self, peer, users, devices, mode="passthrough", relay=None):
        keys = self.spool_relay_keys(mode=mode) if mode == "spool" else {}
        keys.update(relay or {})
        path = self.write_config({"main": self.upstream(peer)}, devices, keys)
        r = self.start_relay(config=path)
        r.wait_lines(r"event=started", timeout=10)
        return r

    def setup_relay(self, mode="passthrough", dsn=True, smtputf8=True, relay=None, **peer_kw):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users, dsn=dsn, smtputf8=smtputf8, **peer_kw)
        return peer, self.relay_for(peer, users, devices, mode, relay)

    def down_relay(self):
        """Spool mode with the upstream's port refusing connections."""
        devices, _ = self.default_devices()
        closed, port = closed_port()
        self.addCleanup(closed.close)
        path = self.write_config({"main": self.upstream(port=port)}, devices,
                                 self.spool_relay_keys(mode="spool"))
        r = self.start_relay(config=path)
        r.wait_lines(r"event=started", timeout=10)
        return r

    def learn_caps(self, peer, r):
        """One plain message: the pool sets up a session and remembers its EHLO."""
        s = self.session(r)
        self.assertEqual(self.cmd(s, "MAIL FROM:<warm@example.org>")[0], 250)
        self.assertEqual(self.cmd(s, "RCPT TO:<warm@example.net>")[0], 250)
        self.assertEqual(self.data(s, make_message("warm up"))[0], 250)
        s.quit()
        peer.wait_messages(1, timeout=30)

    def upstream_args(self, peer, verb):
        return [a for _, _, a in peer.commands(verb)]

    # passthrough ---------------------------------------------------------------------

    def test_passthrough_offers_dsn_from_remembered_capabilities(self):
        peer, r = self.setup_relay()
        s = self.session(r)
        # nothing known about the upstream yet: nothing offered, the parameters refused
        self.assertFalse(s.has_extn("dsn"), s.esmtp_features)
        self.assertFalse(s.has_extn("smtputf8"), s.esmtp_features)
        code, text = self.cmd(s, "MAIL FROM:<a@example.org> RET=HDRS")
        self.assertEqual((code, text[:5]), (555, "5.5.4"), text)
        s.quit()
        self.learn_caps(peer, r)
        s = self.session(r)
        self.assertTrue(s.has_extn("dsn"), s.esmtp_features)
        self.assertTrue(s.has_extn("smtputf8"), s.esmtp_features)
        code, text = self.cmd(s, "MAIL FROM:<a@example.org> RET=HDRS ENVID=" + ENVID)
        self.assertEqual(code, 250, text)
        code, text = self.cmd(s, "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT="
                              + ORCPT_OK)
        self.assertEqual(code, 250, text)
        code, text = self.cmd(s, "RCPT TO:<c@example.net> NOTIFY=NEVER")
        self.assertEqual(code, 250, text)
        self.assertEqual(self.data(s, make_message("dsn passthrough"))[0], 250)
        s.quit()
        peer.wait_messages(2, timeout=30)
        # unchanged upstream, values and all
        self.assertEqual(self.upstream_args(peer, "MAIL")[-1],
                         "FROM:<a@example.org> RET=HDRS ENVID=" + ENVID)
        self.assertEqual(self.upstream_args(peer, "RCPT")[-2:],
                         ["TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=" + ORCPT_OK,
                          "TO:<c@example.net> NOTIFY=NEVER"])

    def test_passthrough_smtputf8(self):
        peer, r = self.setup_relay()
        self.learn_caps(peer, r)
        s = self.session(r)
        code, text = self.cmd(s, "MAIL FROM:<%s> SMTPUTF8" % UTF8_FROM)
        self.assertEqual(code, 250, text)
        self.assertEqual(self.cmd(s, "RCPT TO:<%s>" % UTF8_RCPT)[0], 250)
        self.assertEqual(self.data(s, make_message("utf8"))[0], 250)
        # without SMTPUTF8: refused before anything goes upstream (RFC 6531 §3.5)
        code, text = self.cmd(s, "MAIL FROM:<%s>" % UTF8_FROM)
        self.assertEqual((code, text[:5]), (553, "5.6.7"), text)
        self.assertEqual(self.cmd(s, "MAIL FROM:<a@example.org>")[0], 250)
        code, text = self.cmd(s, "RCPT TO:<%s>" % UTF8_RCPT)
        self.assertEqual((code, text[:5]), (553, "5.6.7"), text)
        s.quit()
        (_, m) = peer.wait_messages(2, timeout=30)
        self.assertEqual((m.mail_from, m.rcpt_tos), (UTF8_FROM, (UTF8_RCPT,)))
        self.assertIn("SMTPUTF8", m.mail_options)
        self.assertIn("FROM:<%s> SMTPUTF8" % UTF8_FROM, self.upstream_args(peer, "MAIL"))

    def test_malformed_parameters(self):
        peer, r = self.setup_relay()
        self.learn_caps(peer, r)
        s = self.session(r)
        for line in ("MAIL FROM:<a@example.org> RET=BODY",
                     "MAIL FROM:<a@example.org> ENVID=a=b",        # "=" is not xchar
                     "MAIL FROM:<a@example.org> ENVID=a+2b",       # hex must be upper case
                     "MAIL FROM:<a@example.org> ENVID=a+0Ab",      # decodes to a control
                     "MAIL FROM:<a@example.org> ENVID=" + "x" * 101,
                     "MAIL FROM:<a@example.org> RET=HDRS RET=FULL"):
            code, text = self.cmd(s, line)
            self.assertEqual((code, text[:5]), (501, "5.5.4"), (line, text))
        code, text = self.cmd(s, "MAIL FROM:<a@example.org> SMTPUTF8=yes")
        self.assertEqual((code, text[:5]), (501, "5.5.4"), text)
        self.assertEqual(self.cmd(s, "MAIL FROM:<a@example.org>")[0], 250)
        for line in ("RCPT TO:<b@example.net> NOTIFY=NEVER,SUCCESS",
                     "RCPT TO:<b@example.net> NOTIFY=SOMETIMES",
                     "RCPT TO:<b@example.net> NOTIFY=",
                     "RCPT TO:<b@example.net> ORCPT=b@example.net",   # no addr-type
                     "RCPT TO:<b@example.net> ORCPT=rfc822;a+4",
                     "RCPT TO:<b@example.net> NOTIFY=DELAY NOTIFY=DELAY"):
            code, text = self.cmd(s, line)
            self.assertEqual((code, text[:5]), (501, "5.5.4"), (line, text))
        code, text = self.cmd(s, "RCPT TO:<b@example.net> FOO=1")
        self.assertEqual((code, text[:5]), (555, "5.5.4"), text)
        s.quit()

    def test_upstream_without_dsn_not_offered(self):
        peer, r = self.setup_relay(dsn=False, smtputf8=False)
        self.learn_caps(peer, r)
        s = self.session(r)
        self.assertFalse(s.has_extn("dsn"), s.esmtp_features)
        self.assertFalse(s.has_extn("smtputf8"), s.esmtp_features)
        code, text = self.cmd(s, "MAIL FROM:<a@example.org> ENVID=x")
        self.assertEqual((code, text[:5]), (555, "5.5.4"), text)
        self.assertEqual(self.cmd(s, "MAIL FROM:<a@example.org>")[0], 250)
        code, text = self.cmd(s, "RCPT TO:<b@example.net> NOTIFY=FAILURE")
        self.assertEqual((code, text[:5]), (555, "5.5.4"), text)
        s.quit()

    def test_upstream_lost_dsn_answers_455(self):
        """Offered from memory; the MAIL's new upstream session no longer offers DSN:
        455 4.5.4, nothing sent upstream, and the next EHLO no longer offers it."""
        peer, r = self.setup_relay(close_after_message=True)
        self.learn_caps(peer, r)
        peer.dsn = False
        s = self.session(r)
        self.assertTrue(s.has_extn("dsn"), s.esmtp_features)
        code, text = self.cmd(s, "MAIL FROM:<a@example.org> RET=FULL")
        self.assertEqual((code, text[:5]), (455, "4.5.4"), text)
        self.assertIn("DSN", text)
        s.quit()
        self.assertEqual(len(self.upstream_args(peer, "MAIL")), 1)  # only the warm-up
        s = self.session(r)
        self.assertFalse(s.has_extn("dsn"), s.esmtp_features)
        s.quit()

    def test_upstream_lost_dsn_queues_with_on_upstream_failure(self):
        """on_upstream_failure = queue: instead of 455 the message is queued, the
        upstream (now without DSN) gets it from the queue without the parameters,
        and relay25 writes the notices itself."""
        peer, r = self.setup_relay(close_after_message=True, relay=dict(
            self.spool_relay_keys(on_upstream_failure="queue"), bounce="dsn"))
        self.learn_caps(peer, r)
        peer.dsn = False
        s = self.session(r)
        self.assertTrue(s.has_extn("dsn"), s.esmtp_features)
        code, text = self.cmd(s, "MAIL FROM:<alice@example.org> RET=HDRS ENVID=" + ENVID)
        self.assertEqual(code, 250, text)
        self.assertIn("DSN", text)
        for line in ("<ok@example.net> NOTIFY=SUCCESS ORCPT=" + ORCPT_OK,
                     "<reject-x@example.net> NOTIFY=FAILURE"):
            code, text = self.cmd(s, "RCPT TO:" + line)
            self.assertEqual(code, 250, (line, text))
        code, text = self.data(s, make_message("queued for dsn"))
        self.assertEqual(code, 250, text)
        self.assertTrue(QUEUED_RE.search(text), text)
        s.quit()
        peer.wait_messages(3, timeout=30)   # warm-up, the message, the report
        self.wait_spool_empty(r)
        warm, orig, m = peer.all_messages()
        self.assertEqual(orig.rcpt_tos, ("ok@example.net",))
        self.assertNotIn("RET=", self.upstream_args(peer, "MAIL")[1])
        self.assertEqual((m.mail_from, m.rcpt_tos), ("", ("alice@example.org",)))
        _, rcpts, reporting, _ = dsn_parts(parse_dsn(m.content))
        self.assertEqual(reporting.get("original-envelope-id"), "abc+def=x")
        self.assertEqual(sorted((x["final-recipient"], x["action"]) for x in rcpts),
                         [("rfc822; ok@example.net", "relayed"),
                          ("rfc822; reject-x@example.net", "failed")])

    def test_upstream_lost_dsn_at_rcpt_queues_the_recipient(self):
        """on_upstream_failure = queue, MAIL without DSN parameters (goes upstream),
        a RCPT with NOTIFY on a session without DSN: that recipient is queued."""
        peer, r = self.setup_relay(close_after_message=True, relay=dict(
            self.spool_relay_keys(on_upstream_failure="queue"), bounce="dsn"))
        self.learn_caps(peer, r)
        peer.dsn = False
        s = self.session(r)
        self.assertEqual(self.cmd(s, "MAIL FROM:<alice@example.org>")[0], 250)
        self.assertEqual(self.cmd(s, "RCPT TO:<plain@example.net>")[0], 250)
        code, text = self.cmd(s, "RCPT TO:<asks@example.net> NOTIFY=SUCCESS")
        self.assertEqual(code, 250, text)
        self.assertIn("DSN", text)
        self.assertEqual(self.data(s, make_message("half queued"))[0], 250)
        s.quit()
        peer.wait_messages(4, timeout=30)   # warm-up, upstream's part, the queued part, notice
        self.wait_spool_empty(r)
        msgs = peer.all_messages()
        self.assertEqual([x.rcpt_tos for x in msgs[1:3]],
                         [("plain@example.net",), ("asks@example.net",)])
        _, rcpts, _, _ = dsn_parts(parse_dsn(msgs[3].content))
        self.assertEqual([(x["final-recipient"], x["action"]) for x in rcpts],
                         [("rfc822; asks@example.net", "relayed")])

    # spool mode ----------------------------------------------------------------------

    def submit_dsn(self, r, rcpts, mail_params="", msg=None, mail_from="alice@example.org"):
        s = self.session(r)
        self.assertTrue(s.has_extn("dsn"), s.esmtp_features)
        self.assertTrue(s.has_extn("smtputf8"), s.esmtp_features)
        code, text = self.cmd(s, ("MAIL FROM:<%s> %s" % (mail_from, mail_params)).rstrip())
        self.assertEqual(code, 250, text)
        for line in rcpts:
            code, text = self.cmd(s, "RCPT TO:" + line)
            self.assertEqual(code, 250, (line, text))
        code, text = self.data(s, msg or make_message("spooled dsn", b"the body line\r\n"))
        self.assertEqual(code, 250, text)
        s.quit()
        m = QUEUED_RE.search(text)
        self.assertTrue(m, text)
        return m.group(1)

    def test_spool_passes_dsn_parameters_upstream(self):
        """Upstream offers DSN: parameters go on unchanged and the notices are its
        own; relay25's bounce for a recipient refused at RCPT honours NOTIFY=NEVER."""
        peer, r = self.setup_relay(mode="spool", relay={"bounce": "dsn"})
        self.submit_dsn(r, ["<ok@example.net> NOTIFY=SUCCESS ORCPT=" + ORCPT_OK,
                            "<reject-x@example.net> NOTIFY=NEVER"],
                        "RET=HDRS ENVID=" + ENVID)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        r.wait_lines(r"status=bounced bounce=none", timeout=10)
        self.assertEqual(self.upstream_args(peer, "MAIL")[-1],
                         "FROM:<alice@example.org> RET=HDRS ENVID=" + ENVID)
        self.assertEqual(self.upstream_args(peer, "RCPT"),
                         ["TO:<ok@example.net> NOTIFY=SUCCESS ORCPT=" + ORCPT_OK,
                          "TO:<reject-x@example.net> NOTIFY=NEVER"])
        # no relayed notice (upstream does DSN), no bounce (NEVER)
        self.assertEqual(len(peer.all_messages()), 1)

    def test_spool_envelope_keeps_parameters(self):
        r = self.down_relay()   # upstream down: the message stays
        q = self.submit_dsn(r, ["<b@example.net> NOTIFY=FAILURE,DELAY ORCPT=" + ORCPT_OK,
                                "<c@example.net>"],
                            "RET=FULL ENVID=" + ENVID + " SMTPUTF8")
        with open(os.path.join(self.spool, "q", q + ".env")) as f:
            lines = f.read().splitlines()
        self.assertIn("ret FULL", lines)
        self.assertIn("envid " + ENVID, lines)
        self.assertIn("smtputf8 1", lines)
        i = lines.index("rcpt b@example.net")
        self.assertEqual(lines[i + 1], "rcptdsn NOTIFY=FAILURE,DELAY ORCPT=" + ORCPT_OK)
        self.assertEqual(lines[i + 2], "rcpt c@example.net")

    def test_spool_own_notices_for_upstream_without_dsn(self):
        """Upstream without DSN: relay25 reports the failure (NOTIFY=FAILURE) and the
        relay (NOTIFY=SUCCESS) itself, with ENVID and ORCPT, headers only (RET=HDRS)."""
        peer, r = self.setup_relay(mode="spool", dsn=False, smtputf8=False,
                                   relay={"bounce": "dsn"})
        q = self.submit_dsn(r, ["<ok@example.net> NOTIFY=SUCCESS ORCPT=" + ORCPT_OK,
                                "<reject-x@example.net> NOTIFY=FAILURE ORCPT=" + ORCPT_BAD,
                                "<reject-y@example.net> NOTIFY=SUCCESS,DELAY"],
                            "RET=HDRS ENVID=" + ENVID)
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r)
        orig, m = peer.all_messages()
        self.assertEqual(orig.rcpt_tos, ("ok@example.net",))
        # no DSN parameter to an upstream that does not offer DSN
        self.assertNotIn("RET=", self.upstream_args(peer, "MAIL")[0])
        self.assertNotIn("NOTIFY=", " ".join(self.upstream_args(peer, "RCPT")))
        self.assertEqual((m.mail_from, m.rcpt_tos), ("", ("alice@example.org",)))
        d = parse_dsn(m.content)
        self.assertEqual(d.get_content_type(), "multipart/report")
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        text, rcpts, reporting, headers = dsn_parts(d)
        self.assertEqual(reporting.get("original-envelope-id"), "abc+def=x")
        self.assertEqual(reporting.get("x-relay25-queue-id"), q)
        by = {x["final-recipient"]: x for x in rcpts}
        # reject-y asked for SUCCESS and DELAY only: its failure is not reported
        self.assertEqual(sorted(by), ["rfc822; ok@example.net", "rfc822; reject-x@example.net"])
        ok, bad = by["rfc822; ok@example.net"], by["rfc822; reject-x@example.net"]
        self.assertEqual((ok["action"], ok["status"]), ("relayed", "2.0.0"))
        self.assertEqual(ok["original-recipient"], "rfc822;orig+ok@example.net")
        self.assertEqual((bad["action"], bad["status"]), ("failed", "5.1.1"))
        self.assertEqual(bad["original-recipient"], "rfc822;orig-reject@example.net")
        self.assertIn("reject-x@example.net", text)
        self.assertIsNotNone(headers)                 # text/rfc822-headers
        self.assertIn("Subject: spooled dsn", headers)
        self.assertNotIn("the body line", headers)    # RET=HDRS

    def test_spool_ret_full_returns_the_message(self):
        peer, r = self.setup_relay(mode="spool", dsn=False, relay={"bounce": "dsn"})
        self.submit_dsn(r, ["<reject-z@example.net>"], "RET=FULL")
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        (m,) = peer.all_messages()
        d = parse_dsn(m.content)
        self.assertEqual(d.get_content_type(), "multipart/report")
        types = [p.get_content_type() for p in d.get_payload()]
        self.assertEqual(types, ["text/plain", "message/delivery-status", "message/rfc822"])
        (returned,) = d.get_payload()[2].get_payload()
        self.assertEqual(returned["Subject"], "spooled dsn")
        self.assertIn("the body line", returned.get_payload())
        _, rcpts, reporting, _ = dsn_parts(d)
        self.assertNotIn("original-envelope-id", reporting)
        self.assertEqual([x["action"] for x in rcpts], ["failed"])

    def test_spool_notify_success_only_no_bounce(self):
        peer, r = self.setup_relay(mode="spool", relay={"bounce": "dsn"})
        self.submit_dsn(r, ["<reject-q@example.net> NOTIFY=SUCCESS"])
        self.wait_spool_empty(r)
        r.wait_lines(r"status=bounced bounce=none", timeout=10)
        self.assertEqual(peer.all_messages(), [])

    def test_spool_smtputf8(self):
        """Relayed with SMTPUTF8 to an upstream that offers it; to one that does not,
        refused at delivery with a 5.6.7 bounce."""
        peer, r = self.setup_relay(mode="spool", relay={"bounce": "dsn"})
        self.submit_dsn(r, ["<%s>" % UTF8_RCPT], "SMTPUTF8")
        (m,) = peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        self.assertEqual(m.rcpt_tos, (UTF8_RCPT,))
        self.assertIn("SMTPUTF8", m.mail_options)

        peer2, r2 = self.setup_relay(mode="spool", dsn=False, smtputf8=False,
                                     relay={"bounce": "dsn"})
        self.submit_dsn(r2, ["<%s>" % UTF8_RCPT], "SMTPUTF8")
        (b,) = peer2.wait_messages(1, timeout=30)
        self.wait_spool_empty(r2)
        # the message never went upstream: the only RCPT is the bounce's
        self.assertEqual(self.upstream_args(peer2, "RCPT"), ["TO:<alice@example.org>"])
        d = parse_dsn(b.content)
        _, rcpts, _, _ = dsn_parts(d)
        self.assertEqual([(x["action"], x["status"]) for x in rcpts], [("failed", "5.6.7")])
        self.assertIn("SMTPUTF8", rcpts[0]["diagnostic-code"])
        # RFC 6533 §3: the non-ASCII address as utf-8-addr-xtext in the ASCII report
        self.assertEqual(rcpts[0]["final-recipient"], "utf-8; j\\x{F6}rg@example.net")

    def test_spool_smtputf8_next_upstream(self):
        """upstream = a, b: a lacks SMTPUTF8, b offers it: delivered through b, no bounce."""
        devices, users = self.default_devices()
        peer_a = self.start_peer(users=users, smtputf8=False)
        peer_b = self.start_peer(users=users)
        for d in devices.values():
            d["upstream"] = "a, b"
        path = self.write_config({"a": self.upstream(peer_a), "b": self.upstream(peer_b)},
                                 devices, dict(self.spool_relay_keys(mode="spool"), bounce="dsn"))
        r = self.start_relay(config=path)
        r.wait_lines(r"event=started", timeout=10)
        self.submit_dsn(r, ["<%s>" % UTF8_RCPT], "SMTPUTF8")
        (m,) = peer_b.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        self.assertEqual(m.rcpt_tos, (UTF8_RCPT,))
        self.assertIn("SMTPUTF8", m.mail_options)
        self.assertEqual(peer_a.all_messages(), [])
        self.assertEqual(self.upstream_args(peer_a, "MAIL"), [])

    def test_spool_non_ascii_without_smtputf8(self):
        r = self.down_relay()
        s = self.session(r)
        code, text = self.cmd(s, "MAIL FROM:<%s>" % UTF8_FROM)
        self.assertEqual((code, text[:5]), (553, "5.6.7"), text)
        s.quit()


if __name__ == "__main__":
    main()
