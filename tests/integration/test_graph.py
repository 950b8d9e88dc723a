#!/usr/bin/python3
"""type = graph (issue 16): delivery through Microsoft Graph sendMail when SMTP
AUTH is switched off. A local HTTPS Graph stand-in (graphserver.py) checks every
request as Graph documents it (path, bearer token from the token endpoint
stand-in, Content-Type: text/plain, strict base64 of the MIME message); the token
endpoint (tokenserver.py) implements the client_credentials grant. Shown: a small
message end to end, an envelope recipient missing from the headers added as Bcc,
429 with Retry-After retried no earlier than asked, 401 then success after one
token refresh, 403 bounced with Graph's code and message, a national-cloud
graph_url with a path prefix, the bad configurations refused, and no token or
secret in any log."""

import base64
import email
import email.policy
import os
import re
import secrets
import signal
import urllib.request

from graphserver import GraphServer, graph_error
from relaytest import RelayTestCase, main, make_message, strip_received
from spooltest import SpoolTestCase
from tokenserver import TokenServer

MAILBOX = "scanner@contoso.example"
CLIENT_ID = "11111111-aaaa-bbbb-cccc-relay25graph"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SECRET_ENV = "RELAY25_TEST_GRAPH_SECRET"


class GraphTest(SpoolTestCase):
    def setUp(self):
        super().setUp()
        self.tokens = set()
        self.client_secret = "cs-%s" % secrets.token_hex(12)
        self.secrets.append(("", self.client_secret))

    # fixtures -------------------------------------------------------------------

    def servers(self, prefix="", roles=None, **kw):
        def issued(token):
            self.secrets.append(("", token))
            self.tokens.add(token)
        ts = TokenServer(self.pki, client_id=CLIENT_ID, client_secret=self.client_secret,
                         on_issue=issued, roles=roles).start()
        self.addCleanup(ts.stop)
        gs = GraphServer(self.pki, self.tokens, prefix=prefix, **kw).start()
        self.addCleanup(gs.stop)
        return ts, gs

    def graph_config(self, ts, gs, relay=None, device=None, upstream=None):
        up = {"type": "graph", "graph_url": gs.url, "ca_file": self.pki.ca_file}
        up.update(upstream or {})
        up = {k: v for k, v in up.items() if v is not None}
        dev = {"user": MAILBOX, "auth": "xoauth2", "oauth_grant": "client_credentials",
               "oauth_token_url": ts.url, "oauth_client_id": CLIENT_ID,
               "oauth_client_secret_env": SECRET_ENV, "oauth_scope": GRAPH_SCOPE}
        dev.update(device or {})
        dev = {k: v for k, v in dev.items() if v is not None}
        rel = self.spool_relay_keys(mode="spool")
        rel.update(relay or {})
        return self.write_config({"m365": up}, {"default": dev}, rel)

    def graph_relay(self, ts, gs, **kw):
        return self.start_relay(config=self.graph_config(ts, gs, **kw),
                                env={SECRET_ENV: self.client_secret})

    def assert_clean(self, gs):
        for c in gs.requests():
            self.assertIsNone(c.problem, "request broke Graph's rules: %r" % (c,))

    def assert_no_tokens(self, relay):
        log = relay.log()
        for t in self.tokens:
            self.assertNotIn(t, log)
        self.assertNotIn(self.client_secret, log)

    def message(self, size=2048, to="rcpt@example.net", extra=()):
        body = b""
        line = b"scanned page, line %06d ............................................\r\n"
        i = 0
        while len(body) < size:
            body += line % i
            i += 1
        m = make_message("scan", body=body, headers=extra)
        return m.replace(b"To: rcpt@example.net", b"To: " + to.encode())

    # the small message ----------------------------------------------------------------

    def test_small_message_end_to_end(self):
        ts, gs = self.servers()
        relay = self.graph_relay(ts, gs)
        msg = self.message(2048)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"], msg)
        self.wait_spool_empty(relay)
        calls = gs.requests()
        self.assertEqual(len(calls), 1, calls)
        c = calls[0]
        self.assertEqual(c.method, "POST")
        self.assertEqual(c.path, "/v1.0/users/scanner@contoso.example/sendMail")
        self.assertEqual(c.headers["Content-Type"], "text/plain")
        self.assertEqual(c.status, 202)
        self.assert_clean(gs)
        # the bearer token is the one the token endpoint issued for the app
        self.assertEqual(c.headers["Authorization"], "Bearer " + ts.issued[0])
        tok = ts.requests()
        self.assertEqual(len(tok), 1)
        self.assertEqual(tok[0].fields["grant_type"], "client_credentials")
        self.assertEqual(tok[0].fields["scope"], GRAPH_SCOPE)
        sent = gs.sent()
        self.assertEqual(len(sent), 1)
        self.assertEqual(base64.b64decode(c.body), sent[0])
        self.assertEqual(strip_received(sent[0]), msg)  # nothing changed but Received:
        line = relay.wait_log(r"qid=%s relay=graph:m365 .*status=sent" % qid).string
        self.assertIn("request_id=%s" % gs.last_request_id, line)
        self.assertIn("http=202", line)
        relay.wait_log(r"qid=%s to=<rcpt@example.net> relay=m365 status=sent" % qid)
        self.assert_no_tokens(relay)

    def test_provider_m365_graph_preset(self):
        """provider = m365-graph:TENANT makes the upstream type = graph and gives the
        device Graph's .default scope; graph_url and the token URL stay overridable."""
        ts, gs = self.servers()
        relay = self.graph_relay(ts, gs, upstream={"type": None, "provider":
                                                   "m365-graph:contoso.example"},
                                 device={"oauth_scope": None})
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(1024))
        self.wait_spool_empty(relay)
        self.assertEqual([c.status for c in gs.requests()], [202])
        self.assertEqual(ts.requests()[0].fields["scope"], "https://graph.microsoft.com/.default")
        relay.wait_log(r"qid=%s relay=graph:m365 .*status=sent" % qid)

    def test_envelope_recipient_missing_from_headers_goes_as_bcc(self):
        ts, gs = self.servers()
        relay = self.graph_relay(ts, gs)
        msg = self.message(1000, to="Boss <boss@example.net>",
                           extra=["Cc: team@example.net, Boss2 <boss2@example.net>"])
        rcpts = ["BOSS@example.net", "boss2@example.net", "hidden@example.net",
                 "ss@example.net", "archive@example.org"]
        self.submit_queued(relay, "scanner@contoso.example", rcpts, msg)
        self.wait_spool_empty(relay)
        self.assert_clean(gs)
        sent = gs.sent()
        self.assertEqual(len(sent), 1)
        m = email.message_from_bytes(sent[0], policy=email.policy.compat32)
        bcc = m.get_all("Bcc")
        self.assertEqual(len(bcc), 1, bcc)
        got = [a.strip() for a in re.sub(r"\r\n\s", " ", bcc[0]).split(",")]
        # boss (different case) and boss2 are in To/Cc; "ss@" is not "boss@"
        self.assertEqual(got, ["hidden@example.net", "ss@example.net", "archive@example.org"])
        # the message itself is untouched after the added field
        self.assertTrue(sent[0].startswith(b"Bcc: hidden@example.net,\r\n ss@example.net,\r\n "
                                           b"archive@example.org\r\n"), sent[0][:200])
        self.assertEqual(strip_received(sent[0].split(b"\r\n", 3)[3]), msg)
        relay.wait_log(r"relay=graph:m365 .*bcc=3 .*status=sent")

    def test_national_cloud_graph_url(self):
        ts, gs = self.servers(prefix="/usgov/graph")
        relay = self.graph_relay(ts, gs)
        self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                           self.message(500))
        self.wait_spool_empty(relay)
        calls = gs.requests()
        self.assertEqual([c.path for c in calls],
                         ["/usgov/graph/v1.0/users/scanner@contoso.example/sendMail"])
        self.assert_clean(gs)
        self.assertEqual(len(gs.sent()), 1)

    # errors ----------------------------------------------------------------------------

    def test_429_in_spool_mode_is_retried_after_the_delay(self):
        ts, gs = self.servers()
        gs.script.append((429, {"Retry-After": "3"},
                          graph_error("ApplicationThrottled",
                                      "Application is over its MailboxConcurrency limit.")))
        relay = self.graph_relay(ts, gs)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(800))
        line = relay.wait_log(r"qid=%s relay=graph:m365 .*status=deferred" % qid).string
        self.assertIn("451 4.7.0", line)
        self.assertIn("ApplicationThrottled", line)
        self.assertIn("retry after 3 s", line)
        self.wait_spool_empty(relay, timeout=40)
        calls = gs.requests()
        self.assertEqual([c.status for c in calls], [429, 202])
        # retry_min is 1 s: the second try waited for Graph's Retry-After
        self.assertGreaterEqual(calls[1].time - calls[0].time, 2.9)
        self.assert_clean(gs)
        self.assertEqual(len(gs.sent()), 1)

    def test_401_refreshes_the_token_once_and_retries(self):
        ts, gs = self.servers()
        gs.script.append((401, None, graph_error("InvalidAuthenticationToken",
                                                 "Lifetime validation failed, the token is "
                                                 "expired.")))
        relay = self.graph_relay(ts, gs)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(800))
        self.wait_spool_empty(relay)
        calls = gs.requests()
        self.assertEqual([c.status for c in calls], [401, 202])
        self.assertEqual(len(ts.issued), 2)
        self.assertEqual([c.headers["Authorization"] for c in calls],
                         ["Bearer " + t for t in ts.issued])
        relay.wait_log(r"qid=%s relay=graph:m365 event=token_refused" % qid)
        relay.wait_log(r"qid=%s relay=graph:m365 .*http=202 .*status=sent" % qid)
        self.assertEqual(len(relay.grep(r"status=deferred")), 0)

    def test_401_twice_is_a_temporary_failure(self):
        ts, gs = self.servers()
        for _ in range(2):
            gs.script.append((401, None, graph_error("InvalidAuthenticationToken",
                                                     "Access token validation failure.")))
        relay = self.graph_relay(ts, gs)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(800))
        line = relay.wait_log(r"qid=%s relay=graph:m365 .*status=deferred" % qid).string
        self.assertIn("454 4.7.0", line)
        self.wait_spool_empty(relay, timeout=40)   # the next attempt gets through
        self.assertEqual([c.status for c in gs.requests()], [401, 401, 202])

    def test_403_bounces_with_graphs_code_and_message(self):
        ts, gs = self.servers()
        gs.script.append((403, None, graph_error("ErrorAccessDenied",
                                                 "Access is denied. Check credentials and "
                                                 "try again.")))
        relay = self.graph_relay(ts, gs, relay={"bounce": "keep"})
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(800))
        line = relay.wait_log(r"qid=%s to=<rcpt@example.net> relay=m365 status=bounced" % qid).string
        self.assertRegex(line, r"550 5\.7\.1 .*HTTP 403 ErrorAccessDenied: Access is denied\. "
                               r"Check credentials and try again\.")
        self.assertRegex(line, r"\[request-id [0-9a-f-]{36}\]")
        self.wait_spool_empty(relay)
        self.assertEqual(len(gs.requests()), 1)   # a permanent failure is not retried
        self.assertTrue(self.files("failed"))

    def test_404_no_such_mailbox_bounces(self):
        ts, gs = self.servers(mailboxes={"someone@contoso.example"})
        relay = self.graph_relay(ts, gs, relay={"bounce": "drop"})
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(300))
        line = relay.wait_log(r"qid=%s to=<rcpt@example.net> relay=m365 status=bounced" % qid).string
        self.assertRegex(line, r"550 5\.1\.0 .*HTTP 404 ErrorInvalidUser")
        self.assertEqual(len(gs.requests()), 1)

    def test_503_without_retry_after_is_temporary(self):
        ts, gs = self.servers()
        gs.script.append((503, None, graph_error("ServiceUnavailable", "Service Unavailable")))
        relay = self.graph_relay(ts, gs)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(300))
        line = relay.wait_log(r"qid=%s relay=graph:m365 .*status=deferred" % qid).string
        self.assertIn("451 4.4.1", line)
        self.wait_spool_empty(relay, timeout=40)
        self.assertEqual([c.status for c in gs.requests()], [503, 202])

    def test_token_endpoint_failure_is_temporary(self):
        ts, gs = self.servers()
        ts.mode = "http400"
        relay = self.graph_relay(ts, gs)
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(300))
        line = relay.wait_log(r"qid=%s relay=graph:m365 .*status=deferred" % qid).string
        self.assertIn("454 4.7.0", line)
        self.assertEqual(gs.requests(), [])
        ts.mode = "ok"
        self.wait_spool_empty(relay, timeout=40)
        self.assertEqual(len(gs.sent()), 1)

    # passthrough ----------------------------------------------------------------------

    def passthrough_relay(self, ts, gs):
        return self.graph_relay(ts, gs, relay={"mode": "passthrough"})

    def test_passthrough_250_only_after_graphs_202(self):
        ts, gs = self.servers()
        relay = self.passthrough_relay(ts, gs)
        msg = self.message(2048)
        res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"], msg)
        code, text = res["data"]
        self.assertEqual(code, 250, res)
        self.assertIn("accepted by Microsoft Graph", text)
        calls = gs.requests()
        self.assertEqual(len(calls), 1)   # before the reply: the 202 came first
        self.assertIn("request-id %s" % gs.last_request_id, text)
        self.assert_clean(gs)
        self.assertEqual(strip_received(gs.sent()[0]), msg)
        relay.wait_log(r"relay=graph:m365 .*http=202 .*status=sent")
        relay.wait_log(r"prx qid=\S+ from=<scanner@contoso.example> nrcpt=1 .*status=sent")
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)
        self.assertEqual(self.files("q"), [])     # nothing was queued
        self.assert_no_tokens(relay)

    def test_passthrough_bcc_and_several_messages_in_one_session(self):
        ts, gs = self.servers()
        relay = self.passthrough_relay(ts, gs)
        s = self.smtp(relay)
        s.ehlo()
        for i in range(3):
            refused = s.sendmail("scanner@contoso.example", ["rcpt@example.net", "x%d@ex.org" % i],
                                 self.message(300 + 70000 * i))
            self.assertEqual(refused, {})
        s.quit()
        sent = gs.sent()
        self.assertEqual(len(sent), 3)
        for i, m in enumerate(sent):
            self.assertTrue(m.startswith(b"Bcc: x%d@ex.org\r\nReceived: " % i), m[:80])
        self.assertEqual(len(ts.issued), 1)   # the token is cached
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)

    def test_passthrough_429_is_a_4xx_with_retry_after(self):
        ts, gs = self.servers()
        gs.script.append((429, {"Retry-After": "30"},
                          graph_error("ApplicationThrottled", "Too many requests.")))
        relay = self.passthrough_relay(ts, gs)
        res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"],
                          self.message(800))
        code, text = res["data"]
        self.assertEqual(code, 451, res)
        self.assertIn("4.7.0", text)
        self.assertIn("ApplicationThrottled", text)
        self.assertIn("retry after 30 s", text)
        self.assertEqual(len(gs.requests()), 1)
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)
        self.assertEqual(self.files("q"), [])
        relay.wait_log(r"relay=graph:m365 .*http=429 .*status=deferred")

    def test_passthrough_403_is_a_5xx_with_graphs_text(self):
        ts, gs = self.servers()
        gs.script.append((403, None, graph_error("ErrorAccessDenied",
                                                 "Access is denied. Check credentials and "
                                                 "try again.")))
        relay = self.passthrough_relay(ts, gs)
        res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"],
                          self.message(800))
        code, text = res["data"]
        self.assertEqual(code, 550, res)
        self.assertRegex(text, r"5\.7\.1 .*HTTP 403 ErrorAccessDenied: Access is denied\. "
                               r"Check credentials and try again\.")
        self.assertEqual(len(gs.requests()), 1)
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)

    def test_passthrough_401_then_success(self):
        ts, gs = self.servers()
        gs.script.append((401, None, graph_error("InvalidAuthenticationToken",
                                                 "Access token has expired.")))
        relay = self.passthrough_relay(ts, gs)
        res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"],
                          self.message(800))
        self.assertEqual(res["data"][0], 250, res)
        self.assertEqual([c.status for c in gs.requests()], [401, 202])
        self.assertEqual(len(ts.issued), 2)

    def test_passthrough_metrics(self):
        ts, gs = self.servers()
        gs.script.append((503, None, graph_error("ServiceUnavailable", "try later")))
        relay = self.graph_relay(ts, gs, relay={"mode": "passthrough",
                                                "metrics_listen": "127.0.0.1:0"})
        maddr = relay.wait_log(r"metrics event=listening service=metrics addr=(\S+)").group(1)
        host, port = maddr.rsplit(":", 1)
        for want in (451, 250, 250):
            res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"],
                              self.message(400))
            self.assertEqual(res["data"][0], want, res)
        with urllib.request.urlopen("http://%s:%s/metrics" % (host, port), timeout=30) as f:
            text = f.read().decode()
        self.assertRegex(text, r'relay25_messages_total\{status="sent"\} 2\b')
        self.assertRegex(text, r'relay25_messages_total\{status="deferred"\} 1\b')
        self.assertRegex(text, r"relay25_upstream_delivery_seconds_count 2\b")

    def test_passthrough_client_gone_during_body_leaves_nothing(self):
        ts, gs = self.servers()
        relay = self.passthrough_relay(ts, gs)
        s = self.smtp(relay)
        s.ehlo()
        s.mail("scanner@contoso.example")
        s.rcpt("rcpt@example.net")
        s.putcmd("DATA")
        self.assertEqual(s.getreply()[0], 354)
        s.send(b"Subject: cut\r\n\r\n" + b"x" * 200000 + b"\r\n")
        s.close()
        relay.wait_log(r"event=disconnect")
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)
        self.assertEqual(gs.requests(), [])

    # large messages: a draft and upload sessions --------------------------------------------

    def big_message(self, attachment, text=b"Scanned by the 3rd floor printer.\r\n"):
        b64 = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
        return (b"From: Scanner <scanner@contoso.example>\r\n"
                b"To: Boss <boss@example.net>\r\n"
                b"Subject: Scan 0042\r\n"
                b"Message-ID: <scan0042@printer.test>\r\n"
                b"Date: Thu, 03 Dec 2026 20:00:00 +0000\r\n"
                b"MIME-Version: 1.0\r\n"
                b"Content-Type: multipart/mixed; boundary=\"=_scan_0042\"\r\n"
                b"\r\n"
                b"This is a multi-part message in MIME format.\r\n"
                b"--=_scan_0042\r\n"
                b"Content-Type: text/plain; charset=us-ascii\r\n"
                b"\r\n" + text +
                b"--=_scan_0042\r\n"
                b"Content-Type: application/pdf; name=\"scan0042.pdf\"\r\n"
                b"Content-Disposition: attachment; filename=\"scan0042.pdf\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n"
                b"\r\n" + b64 +
                b"--=_scan_0042--\r\n")

    def assert_bounded(self, relay, hwm):
        with open("/proc/%d/maps" % relay.proc.pid) as f:
            if "libasan" in f.read():
                return  # ASan's quarantine keeps freed memory: no bound to check there
        # far below the message, whatever its size (buffers of a few MiB at most)
        self.assertLess(hwm, 20 * 1024)

    def vm_hwm_kib(self, relay):
        with open("/proc/%d/status" % relay.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def check_big_delivery(self, gs, attachment, extra_rcpt):
        self.assert_clean(gs)
        drafts = gs.drafts_sent()
        self.assertEqual(len(drafts), 1)
        mime, atts = drafts[0]
        self.assertEqual(gs.sent(), [])           # not through sendMail
        self.assertEqual(len(atts), 1)
        name, ctype, data = atts[0]
        self.assertEqual((name, ctype), ("scan0042.pdf", "application/pdf"))
        self.assertEqual(len(data), len(attachment))
        self.assertTrue(data == attachment, "uploaded attachment differs")
        # the draft: the whole message but the attachment's part, Bcc in front
        self.assertLess(len(mime), 4096)
        self.assertTrue(mime.startswith(b"Bcc: %s\r\nReceived: " % extra_rcpt.encode()),
                        mime[:100])
        self.assertIn(b"Scanned by the 3rd floor printer.", mime)
        self.assertNotIn(b"scan0042.pdf", mime)
        self.assertTrue(mime.endswith(b"--=_scan_0042--\r\n"), mime[-60:])
        methods = [(c.method, c.path.rsplit("/", 1)[-1]) for c in gs.requests()]
        self.assertEqual(methods[0], ("POST", "messages"))
        self.assertEqual(methods[1], ("POST", "createUploadSession"))
        self.assertEqual(methods[-1], ("POST", "send"))
        puts = [c for c in gs.requests() if c.method == "PUT"]
        self.assertEqual(len(puts), len(methods) - 3)
        self.assertGreater(len(puts), 1)
        self.assertLess(gs.max_chunk, 4 * 1024 * 1024)
        for c in puts:
            self.assertNotIn("Authorization", c.headers)

    def test_25mib_message_through_an_upload_session(self):
        ts, gs = self.servers()
        relay = self.graph_relay(ts, gs)
        attachment = os.urandom(19200000)
        msg = self.big_message(attachment)
        self.assertGreater(len(msg), 25 * 1024 * 1024)
        before = self.vm_hwm_kib(relay)
        self.submit_queued(relay, "scanner@contoso.example",
                           ["boss@example.net", "archive@example.org"], msg)
        self.wait_spool_empty(relay, timeout=120)
        hwm = self.vm_hwm_kib(relay)
        print("\nVmHWM relay25 spool mode, %d-byte message: %d KiB at start, %d KiB after"
              % (len(msg), before, hwm))
        self.check_big_delivery(gs, attachment, "archive@example.org")
        relay.wait_log(r"relay=graph:m365 event=uploaded attachment=1 size=%d" % len(attachment))
        relay.wait_log(r"relay=graph:m365 .*http=202 .*status=sent")
        self.assert_bounded(relay, hwm)

    def test_25mib_message_in_passthrough(self):
        ts, gs = self.servers()
        relay = self.passthrough_relay(ts, gs)
        attachment = os.urandom(19200001)
        msg = self.big_message(attachment)
        self.assertGreater(len(msg), 25 * 1024 * 1024)
        res = self.submit(relay, "scanner@contoso.example",
                          ["boss@example.net", "archive@example.org"], msg)
        self.assertEqual(res["data"][0], 250, res)
        hwm = self.vm_hwm_kib(relay)
        print("\nVmHWM relay25 passthrough, %d-byte message: %d KiB" % (len(msg), hwm))
        self.check_big_delivery(gs, attachment, "archive@example.org")
        self.assert_bounded(relay, hwm)
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", relay)

    def test_large_message_that_is_not_multipart_bounces(self):
        ts, gs = self.servers()
        relay = self.graph_relay(ts, gs, relay={"bounce": "drop"})
        qid = self.submit_queued(relay, "scanner@contoso.example", ["rcpt@example.net"],
                                 self.message(3 * 1000 * 1000 + 10))
        line = relay.wait_log(r"qid=%s to=<rcpt@example.net> relay=m365 status=bounced"
                              % qid).string
        self.assertIn("552 5.3.4", line)
        self.assertEqual(gs.requests(), [])

    # check --upstream ------------------------------------------------------------------------

    def graph_check(self, ts, gs):
        r = self.run_check(self.graph_config(ts, gs), "--upstream",
                           env={SECRET_ENV: self.client_secret})
        self.assertNotIn(self.client_secret, r.stdout + r.stderr)
        for t in self.tokens:
            self.assertNotIn(t, r.stdout + r.stderr)
        self.assertEqual([c.method for c in gs.requests() if c.method != "GET"], [])  # no send
        return r

    def test_check_upstream_reads_the_mailbox(self):
        ts, gs = self.servers(roles=["Mail.Send", "Mail.ReadBasic.All"])
        r = self.graph_check(ts, gs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("upstream m365: type=graph graph_url=%s" % gs.url, r.stdout)
        self.assertRegex(r.stdout, r"device default: user scanner@contoso.example at upstream m365 "
                                   r"\(localhost:\d+\): ok: token roles Mail.Send,"
                                   r"Mail.ReadBasic.All; mailbox scanner@contoso.example found")
        calls = gs.requests()
        self.assertEqual([(c.method, c.path) for c in calls],
                         [("GET", "/v1.0/users/scanner@contoso.example/mailFolders/sentitems"
                                  "?%24select=id")])
        self.assertEqual(calls[0].headers["Authorization"], "Bearer " + ts.issued[0])
        self.assert_clean(gs)

    def test_check_upstream_with_mail_send_only(self):
        ts, gs = self.servers(roles=["Mail.Send"])
        gs.script.append((403, None, graph_error("ErrorAccessDenied", "Access is denied.")))
        r = self.graph_check(ts, gs)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"ok: token roles Mail.Send; mailbox scanner@contoso.example "
                                   r"not verified: reading it is not allowed \(403 "
                                   r"ErrorAccessDenied: Access is denied.\)")

    def test_check_upstream_without_mail_send_fails(self):
        ts, gs = self.servers(roles=["User.Read.All"])
        r = self.graph_check(ts, gs)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("FAILED: 550 token roles User.Read.All: no Mail.Send", r.stdout)

    def test_check_upstream_no_such_mailbox_fails(self):
        ts, gs = self.servers(roles=["Mail.Send"], mailboxes={"other@contoso.example"})
        r = self.graph_check(ts, gs)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertRegex(r.stdout, r"FAILED: 550 no mailbox scanner@contoso.example \(404 "
                                   r"ErrorInvalidUser")

    def test_check_upstream_token_failure_fails(self):
        ts, gs = self.servers(roles=["Mail.Send"])
        ts.mode = "http400"
        r = self.graph_check(ts, gs)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("FAILED: 454 4.7.0 cannot get an access token for Microsoft Graph", r.stdout)
        self.assertEqual(gs.requests(), [])

    def test_reload_to_graph_without_a_spool_refuses_instead_of_smtp(self):
        ts, gs = self.servers()
        peer = self.start_peer(users={MAILBOX: "pw"})
        path = self.write_config({"m365": self.upstream(peer)},
                                 {"default": {"user": MAILBOX, "password_env": SECRET_ENV}})
        relay = self.start_relay(config=path, env={SECRET_ENV: self.client_secret})
        relay.wait_log(r"\brelay25 event=started\b")   # signal handlers in place
        self.graph_config(ts, gs, relay={"mode": "passthrough"})   # rewrites relay25.ini
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"restart to use it")
        res = self.submit(relay, "scanner@contoso.example", ["rcpt@example.net"],
                          self.message(300))
        self.assertEqual(res["mail"][0], 451, res)
        relay.wait_log(r"event=graph_without_spool")
        self.assertEqual(gs.requests(), [])
        self.assertEqual(peer.commands("MAIL"), [])

    # configuration -----------------------------------------------------------------------

    def test_bad_configurations_are_refused(self):
        ts, gs = self.servers()
        cases = [
            ({"upstream": {"host": "graph.microsoft.com"}}, r"not used with type = graph"),
            ({"upstream": {"graph_url": "http://graph.microsoft.com"}}, r"bad graph_url"),
            ({"upstream": {"type": "ews"}}, r"bad value 'ews' \(smtp or graph\)"),
            ({"device": {"auth": "password", "password": "x", "oauth_grant": None}},
             r"type = graph: set auth = xoauth2"),
        ]
        for kw, want in cases:
            up = kw.get("upstream")
            dev = kw.get("device")
            if dev and "oauth_grant" in dev:
                dev = {"auth": "password", "password_env": SECRET_ENV}
                path = self.write_config(
                    {"m365": {"type": "graph", "graph_url": gs.url}},
                    {"default": dict(user=MAILBOX, **dev)},
                    self.spool_relay_keys(mode="spool"), name="bad.ini")
            else:
                path = self.graph_config(ts, gs, upstream=up)
            r = self.run_check(path, env={SECRET_ENV: self.client_secret})
            self.assertNotEqual(r.returncode, 0, r.stdout)
            self.assertRegex(r.stderr + r.stdout, want)
        # graph_url on an SMTP upstream
        path = self.write_config({"m365": {"host": "smtp.example", "graph_url": gs.url}},
                                 {"default": {"user": MAILBOX, "password_env": SECRET_ENV}},
                                 name="bad2.ini")
        r = self.run_check(path, env={SECRET_ENV: self.client_secret})
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr + r.stdout, r"only used with type = graph")


if __name__ == "__main__":
    main()
