#!/usr/bin/python3
"""auth = xoauth2: OAuth2 access tokens for upstream AUTH XOAUTH2 (Microsoft 365,
Gmail). A local HTTPS token endpoint (tokenserver.py, test CA) implements the
refresh_token and client_credentials grants; the test upstream (peer.py,
xoauth2=True) accepts the tokens the test lets it. Shown: both grants end to end,
token caching, refresh before expiry, a fresh token and a second AUTH after the
upstream refused one, rotated refresh tokens saved to their file (0600), a token
command, and failures as a 4xx with a log line that holds no secret."""

import base64
import os
import re
import signal
import stat
import threading
import time

import subprocess

from relaytest import RELAY25_BIN, RelayTestCase, main, make_message
from tokenserver import DEVICE_GRANT, DEVICE_PATH, TOKEN_PATH, TokenServer

USER = "scanner@contoso.example"
USER2 = "printer@contoso.example"
CLIENT_ID = "00000000-aaaa-bbbb-cccc-relay25test"
M365_SCOPE = "https://outlook.office365.com/.default"
DELEGATED_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


class OAuthTest(RelayTestCase):
    # fixtures -------------------------------------------------------------------

    def secret(self, value):
        """value must never appear in a log (raw or base64)."""
        self.secrets.append(("", value))
        return value

    def write_secret(self, name, value):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)
        return path

    def token_server(self, peer=None, accept=True, **kw):
        """A token endpoint whose tokens the peer accepts (accept=True) and that
        registers every issued token as a secret."""
        def issued(token):
            self.secret(token)
            if peer is not None and accept:
                peer.tokens.add(token)
        ts = TokenServer(self.pki, client_id=CLIENT_ID, on_issue=issued, **kw)
        ts.start()
        self.addCleanup(ts.stop)
        for rt in ts.refresh_tokens:
            self.secret(rt)
        return ts

    def oauth_peer(self, **kw):
        return self.start_peer(xoauth2=True, **kw)

    def refresh_device(self, ts, match=None, user=USER, secret=True):
        rt_path = self.write_secret("refresh.token", ts.refresh_token)
        dev = {"user": user, "auth": "xoauth2", "oauth_token_url": ts.url,
               "oauth_client_id": CLIENT_ID, "oauth_refresh_token_file": rt_path,
               "oauth_scope": DELEGATED_SCOPE}
        if secret:
            dev["oauth_client_secret_file"] = self.write_secret("client.secret", ts.client_secret)
        if match:
            dev["match"] = match
        return dev

    def app_device(self, ts, match=None, user=USER):
        dev = {"user": user, "auth": "xoauth2", "oauth_grant": "client_credentials",
               "oauth_token_url": ts.url, "oauth_client_id": CLIENT_ID,
               "oauth_client_secret_env": "RELAY25_TEST_CLIENT_SECRET",
               "oauth_scope": M365_SCOPE}
        if match:
            dev["match"] = match
        return dev

    def send(self, relay, subject, source="127.0.0.2"):
        return self.send_mail(relay, "scan@contoso.example", ["boss@contoso.example"],
                              make_message(subject), source=source)

    def assert_no_token_in_log(self, relay, ts):
        log = relay.log()
        for t in ts.issued:
            self.assertNotIn(t, log)
            for user in (USER, USER2):
                sasl = "user=%s\x01auth=Bearer %s\x01\x01" % (user, t)
                self.assertNotIn(base64.b64encode(sasl.encode()).decode(), log)

    def assert_tempfail(self, relay, peer, detail_re):
        stage, code, text = self.transaction(relay, "scan@contoso.example",
                                             ["boss@contoso.example"], make_message("fail"))
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertIn("4.7.0", text)
        self.assertRegex(text, detail_re)
        lines = relay.wait_lines(r"event=auth_failed user=%s .*no OAuth2 token" % re.escape(USER))
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], detail_re)
        peer.wait_idle(5)
        self.assertEqual(peer.xoauth2_attempts(), [])
        self.assertEqual(peer.commands("MAIL"), [])
        return lines[0]

    # the grants -------------------------------------------------------------------

    def test_refresh_token_grant_end_to_end(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret=self.secret("cs-%s" % os.urandom(8).hex()),
                               refresh_token="rt-initial-%s" % os.urandom(8).hex())
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        self.send(relay, "refresh grant")
        (m,) = peer.wait_messages(1)
        self.assertTrue(m.accepted)
        self.assertEqual(m.login, USER)
        (req,) = ts.requests()
        self.assertEqual(req.fields, {"grant_type": "refresh_token",
                                      "refresh_token": ts.refresh_token,
                                      "client_id": CLIENT_ID,
                                      "client_secret": ts.client_secret,
                                      "scope": DELEGATED_SCOPE})
        (att,) = peer.xoauth2_attempts()
        self.assertEqual(att[1:4], (USER, ts.issued[0], True))
        self.assertEqual([a.mechanism for a in peer.auth_attempts()], ["XOAUTH2"])
        relay.wait_log(r"oauth device=default event=token grant=refresh_token expires_in=3600")
        relay.wait_log(r"event=ready user=%s .*auth=xoauth2" % re.escape(USER))
        self.assert_no_token_in_log(relay, ts)

    def test_client_credentials_grant_m365_app_only(self):
        peer = self.oauth_peer()
        secret = self.secret("app-secret-%s" % os.urandom(8).hex())
        ts = self.token_server(peer, client_secret=secret, chunked=True)
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": self.app_device(ts)},
                                 env={"RELAY25_TEST_CLIENT_SECRET": secret})
        self.send(relay, "app-only")
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.login, USER)
        (req,) = ts.requests()
        self.assertEqual(req.fields, {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                      "client_secret": secret, "scope": M365_SCOPE})
        self.assertEqual(peer.xoauth2_attempts()[0][2], ts.issued[0])
        relay.wait_log(r"event=token grant=client_credentials")
        self.assert_no_token_in_log(relay, ts)

    # caching and refresh ---------------------------------------------------------

    def test_token_is_cached_between_messages(self):
        # the peer drops the connection after each message: every message logs in again
        peer = self.oauth_peer(close_after_message=True)
        ts = self.token_server(peer, client_secret="cs-cache", refresh_token="rt-cache")
        self.secret("cs-cache")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        self.send(relay, "one")
        peer.wait_messages(1)
        peer.wait_idle(5)
        self.send(relay, "two")
        self.assertEqual(len(peer.wait_messages(2)), 2)
        atts = peer.xoauth2_attempts()
        self.assertEqual(len(atts), 2, atts)
        self.assertEqual({a[2] for a in atts}, {ts.issued[0]})
        self.assertNotEqual(atts[0][0], atts[1][0], "two connections")
        self.assertEqual(len(ts.requests()), 1)

    def test_concurrent_logins_share_one_fetch(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-conc", refresh_token="rt-conc")
        self.secret("cs-conc")
        relay = self.start_relay({"m365": self.upstream(peer, max_connections="4")},
                                 {"default": self.refresh_device(ts)})
        threads = [threading.Thread(target=self.send, args=(relay, "c%d" % i)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(peer.wait_messages(3)), 3)
        self.assertEqual(len(ts.requests()), 1)

    def test_early_refresh_before_expiry(self):
        # expires_in = 10: refreshed at 80% of the lifetime (8 s), while still valid
        peer = self.oauth_peer(close_after_message=True)
        ts = self.token_server(peer, client_secret="cs-early", refresh_token="rt-early",
                               expires_in=10)
        self.secret("cs-early")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        self.send(relay, "t0")
        (first,) = ts.wait_requests(1)
        peer.wait_idle(5)
        self.send(relay, "t0 again")                     # within 80%: cached
        self.assertEqual(len(ts.requests()), 1)
        time.sleep(max(0.0, first.time + 8.4 - time.monotonic()))
        self.send(relay, "t8")
        reqs = ts.requests()
        self.assertEqual(len(reqs), 2)
        self.assertLess(reqs[1].time - first.time, 10.0, "refreshed before the old one expired")
        self.assertEqual(len(peer.wait_messages(3)), 3)
        tokens = [a[2] for a in peer.xoauth2_attempts()]
        self.assertEqual(tokens, [ts.issued[0], ts.issued[0], ts.issued[1]])

    def test_rejected_token_is_refreshed_once_gmail_style(self):
        self._rejected_token("334")

    def test_rejected_token_is_refreshed_once_m365_style(self):
        self._rejected_token("535")

    def _rejected_token(self, style):
        # the upstream refuses the first token (expired or revoked early): relay25
        # fetches another and logs in again on the same connection
        peer = self.oauth_peer()
        peer.xoauth2_error = style
        issued = []

        def accept_all_but_first(token):
            issued.append(token)
            if len(issued) > 1:
                peer.tokens.add(token)
        ts = self.token_server(None, client_secret="cs-rej", refresh_token="rt-rej")
        ts.on_issue = lambda t: (self.secret(t), accept_all_but_first(t))
        self.secret("cs-rej")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        self.send(relay, "retry")
        (m,) = peer.wait_messages(1)
        self.assertTrue(m.accepted)
        atts = peer.xoauth2_attempts()
        self.assertEqual([(a[2], a[3]) for a in atts], [(issued[0], False), (issued[1], True)])
        self.assertEqual(atts[0][0], atts[1][0], "same connection")
        if style == "334":
            self.assertEqual(atts[0][4], b"\r\n", "empty line after the error challenge")
        self.assertEqual(len(ts.requests()), 2)
        relay.wait_log(r"event=token_rejected user=%s reply=\"535 5\.7\.[38] .*retry=yes"
                       % re.escape(USER))
        self.assert_no_token_in_log(relay, ts)

    def test_rejected_twice_is_a_4xx(self):
        peer = self.oauth_peer()     # accepts no token at all
        ts = self.token_server(None, client_secret="cs-rej2", refresh_token="rt-rej2")
        self.secret("cs-rej2")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        stage, code, text = self.transaction(relay, "a@contoso.example", ["b@contoso.example"],
                                             make_message("no"))
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertEqual(len(peer.xoauth2_attempts()), 2)
        self.assertEqual(len(ts.requests()), 2)

    def test_refresh_token_rotation_is_saved(self):
        peer = self.oauth_peer(close_after_message=True)
        ts = self.token_server(peer, client_secret="cs-rot", refresh_token="rt-rot-0",
                               rotate=True, expires_in=1)
        self.secret("cs-rot")
        dev = self.refresh_device(ts)
        rt_path = dev["oauth_refresh_token_file"]
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
        for i in range(2):
            if i:
                time.sleep(1.2)  # the 1 s token is stale: a second refresh, with the new token
            self.send(relay, "rotation %d" % i)
            for rt in ts.refresh_tokens:
                self.secret(rt)
            relay.wait_lines(r"event=refresh_token_saved file=%s" % re.escape(rt_path), i + 1)
        self.assertEqual(len(ts.requests()), 2)
        self.assertEqual([r.fields["refresh_token"] for r in ts.requests()],
                         ts.refresh_tokens[:2])
        with open(rt_path) as f:
            self.assertEqual(f.read(), ts.refresh_tokens[2] + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(rt_path).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(os.path.dirname(rt_path))).count("refresh.token"), 1)
        self.assertFalse([n for n in os.listdir(self.dir) if ".tmp-" in n])
        # a restart reads the saved one; the old ones no longer work at the endpoint
        self._finish_relay(relay)
        relay.proc = None  # stopped and checked: nothing left for the cleanup
        relay2 = self.start_relay(config=relay.config_path)
        self.send(relay2, "after restart")
        self.assertEqual(len(peer.wait_messages(3)), 3)
        self.assertEqual(ts.requests()[2].fields["refresh_token"], ts.refresh_tokens[2])
        self.assertEqual(ts.requests()[2].status, 200)

    def test_reload_takes_a_replaced_refresh_token(self):
        # the admin puts a new refresh token in the file and reloads (SIGHUP)
        peer = self.oauth_peer(close_after_message=True)
        ts = self.token_server(peer, client_secret="cs-hup", refresh_token="rt-hup-a",
                               expires_in=1)
        self.secret("cs-hup")
        dev = self.refresh_device(ts)
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
        self.send(relay, "before reload")
        ts.refresh_token = self.secret("rt-hup-b")   # the old one is revoked
        self.write_secret("refresh.token", ts.refresh_token)
        relay.proc.send_signal(signal.SIGHUP)
        relay.wait_log(r"event=reload status=ok")
        time.sleep(1.2)
        self.send(relay, "after reload")
        self.assertEqual(len(peer.wait_messages(2)), 2)
        self.assertEqual([(r.fields["refresh_token"], r.status) for r in ts.requests()],
                         [("rt-hup-a", 200), ("rt-hup-b", 200)])
        relay.wait_log(r"event=refresh_token_reloaded")

    # token command ----------------------------------------------------------------

    def command(self, body):
        path = os.path.join(self.dir, "get-token.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o700)
        return path

    def test_token_command(self):
        peer = self.oauth_peer()
        token = self.secret("cmd-token-%s" % os.urandom(12).hex())
        peer.tokens.add(token)
        cmd = self.command('[ "$1" = "--for" ] && [ "$2" = "%s" ] || exit 9\n'
                           'echo "%s"\n' % (USER, token))
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": {"user": USER, "auth": "xoauth2",
                                              "oauth_token_command": '%s --for "%s"' % (cmd, USER)}})
        self.send(relay, "command")
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.login, USER)
        self.assertEqual(peer.xoauth2_attempts()[0][2:4], (token, True))
        relay.wait_log(r"event=token grant=command expires_in=300")

    def test_token_command_json(self):
        peer = self.oauth_peer()
        token = self.secret("cmd-json-%s" % os.urandom(12).hex())
        peer.tokens.add(token)
        cmd = self.command('printf \'{"access_token":"%s","token_type":"Bearer",'
                           '"expires_in":1234}\\n\'\n' % token)
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": {"user": USER, "auth": "xoauth2",
                                              "oauth_token_command": cmd}})
        self.send(relay, "command json")
        peer.wait_messages(1)
        relay.wait_log(r"event=token grant=command expires_in=1234")

    def test_token_command_failure(self):
        peer = self.oauth_peer()
        cmd = self.command("echo 'secret-on-stderr' >&2\nexit 3\n")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": {"user": USER, "auth": "xoauth2",
                                              "oauth_token_command": cmd}})
        self.assert_tempfail(relay, peer, r"oauth_token_command exited with status 3")

    def test_token_command_missing(self):
        peer = self.oauth_peer()
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": {"user": USER, "auth": "xoauth2",
                                              "oauth_token_command": "/nonexistent/get-token"}})
        self.assert_tempfail(relay, peer, r"cannot run oauth_token_command /nonexistent/get-token")

    # endpoint failures ----------------------------------------------------------------

    def _endpoint_failure(self, mode, detail_re):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-fail-%s" % mode,
                               refresh_token="rt-fail-%s" % mode)
        self.secret(ts.client_secret)
        ts.mode = mode
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        line = self.assert_tempfail(relay, peer, detail_re)
        self.assertIn("token endpoint localhost:%d" % ts.port, line)
        # the endpoint recovers: the next message gets a token
        ts.mode = "ok"
        self.send(relay, "recovered")
        self.assertEqual(len(peer.wait_messages(1)), 1)
        self.assert_no_token_in_log(relay, ts)

    def test_endpoint_http_400(self):
        self._endpoint_failure("http400", r"HTTP 400 invalid_grant \(AADSTS70008: .*expired\)")

    def test_endpoint_http_500(self):
        self._endpoint_failure("http500", r"answered HTTP 500")

    def test_endpoint_bad_json(self):
        self._endpoint_failure("badjson", r"token response is not a JSON object")

    def test_endpoint_wrong_client_secret(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-right", refresh_token="rt-wcs")
        self.secret("cs-right")
        dev = self.refresh_device(ts, secret=False)
        dev["oauth_client_secret_file"] = self.write_secret("wrong.secret",
                                                            self.secret("cs-wrong-one"))
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
        self.assert_tempfail(relay, peer, r"HTTP 401 invalid_client")

    def test_endpoint_untrusted_certificate(self):
        # the endpoint's certificate is from another CA than the upstream's ca_file
        peer = self.oauth_peer()
        ts = TokenServer(self.other_pki, client_id=CLIENT_ID, client_secret="cs-x",
                         refresh_token="rt-x")
        ts.start()
        self.addCleanup(ts.stop)
        self.secret("cs-x")
        self.secret("rt-x")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        self.assert_tempfail(relay, peer, r"TLS: certificate not trusted")
        self.assertEqual(ts.requests(), [])

    def test_upstream_without_xoauth2(self):
        peer = self.start_peer(users={USER: "x"})
        ts = self.token_server(peer, client_secret="cs-nomech", refresh_token="rt-nomech")
        self.secret("cs-nomech")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        stage, code, text = self.transaction(relay, "a@contoso.example", ["b@contoso.example"],
                                             make_message("x"))
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertIn("XOAUTH2 is not offered", text)
        self.assertEqual(ts.requests(), [])

    # auth = oauthbearer (RFC 7628) --------------------------------------------------

    def oauthbearer_peer(self, **kw):
        return self.start_peer(oauthbearer=True, **kw)

    def test_oauthbearer_end_to_end(self):
        peer = self.start_peer(oauthbearer=True, xoauth2=True)   # offers both
        ts = self.token_server(peer, client_secret=self.secret("cs-ob"),
                               refresh_token="rt-ob-%s" % os.urandom(8).hex())
        dev = dict(self.refresh_device(ts), auth="oauthbearer")
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
        self.send(relay, "oauthbearer")
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.login, USER)
        self.assertEqual([a.mechanism for a in peer.auth_attempts()], ["OAUTHBEARER"])
        (f,) = peer.oauthbearer_fields
        self.assertEqual(f, {"user": USER, "host": "127.0.0.1", "port": str(peer.port),
                             "auth": "Bearer " + ts.issued[0]})
        relay.wait_log(r"event=ready user=%s .*auth=oauthbearer" % re.escape(USER))
        log = relay.log()
        for t in ts.issued:
            self.assertNotIn(t, log)

    def test_oauthbearer_rejected_token_is_refreshed_once(self):
        for style in ("334", "535"):
            with self.subTest(style=style):
                peer = self.oauthbearer_peer()
                peer.xoauth2_error = style
                issued = []

                def accept_all_but_first(token, issued=issued, peer=peer):
                    issued.append(token)
                    if len(issued) > 1:
                        peer.tokens.add(token)
                ts = self.token_server(None, client_secret="cs-obr", refresh_token="rt-obr")
                ts.on_issue = lambda t, f=accept_all_but_first: (self.secret(t), f(t))
                self.secret("cs-obr")
                dev = dict(self.refresh_device(ts), auth="oauthbearer")
                relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
                self.send(relay, "retry")
                (m,) = peer.wait_messages(1)
                atts = peer.xoauth2_attempts()
                self.assertEqual([(a[2], a[3]) for a in atts],
                                 [(issued[0], False), (issued[1], True)])
                self.assertEqual(atts[0][0], atts[1][0], "same connection")
                if style == "334":
                    self.assertEqual(atts[0][4], b"AQ==\r\n", "^A after the error challenge")
                relay.wait_log(r"event=token_rejected user=%s .*retry=yes" % re.escape(USER))

    def test_oauthbearer_not_offered(self):
        peer = self.oauth_peer()      # XOAUTH2 only
        ts = self.token_server(peer, client_secret="cs-obn", refresh_token="rt-obn")
        self.secret("cs-obn")
        dev = dict(self.refresh_device(ts), auth="oauthbearer")
        relay = self.start_relay({"m365": self.upstream(peer)}, {"default": dev})
        stage, code, text = self.transaction(relay, "a@contoso.example", ["b@contoso.example"],
                                             make_message("x"))
        self.assertEqual((stage, code), ("mail", 451), text)
        self.assertIn("OAUTHBEARER is not offered", text)
        self.assertEqual(ts.requests(), [])

    # relay25 oauth login (RFC 8628 device authorization grant) ---------------------

    def login_config(self, peer, ts):
        dev = {"user": USER, "auth": "xoauth2", "oauth_token_url": ts.url,
               "oauth_device_url": ts.device_url, "oauth_client_id": CLIENT_ID,
               "oauth_client_secret_file": self.write_secret("client.secret", ts.client_secret),
               "oauth_refresh_token_file": os.path.join(self.dir, "login.refresh"),
               "oauth_scope": DELEGATED_SCOPE}
        self.secret(ts.device_refresh_token)
        self.secret(ts.device_code)
        return self.write_config({"m365": self.upstream(peer)}, {"default": dev}), dev

    def run_login(self, config, device="default"):
        r = subprocess.run([RELAY25_BIN, "oauth", "login", device, "-c", config],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assert_no_secrets(r.stdout + r.stderr, "relay25 oauth login output")
        return r

    def test_oauth_login_device_code(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret=self.secret("cs-login"))
        config, dev = self.login_config(peer, ts)
        rt_path = dev["oauth_refresh_token_file"]
        self.assertFalse(os.path.exists(rt_path))
        r = self.run_login(config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("https://microsoft.com/devicelogin", r.stdout)
        self.assertIn("ABCD-EFGH", r.stdout)
        self.assertIn("Signed in", r.stdout)
        with open(rt_path) as f:
            self.assertEqual(f.read(), ts.device_refresh_token + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(rt_path).st_mode), 0o600)
        reqs = ts.requests()
        self.assertEqual([q.path for q in reqs], [DEVICE_PATH] + [TOKEN_PATH] * 3)
        self.assertEqual(reqs[0].fields, {"client_id": CLIENT_ID,
                                          "client_secret": ts.client_secret,
                                          "scope": DELEGATED_SCOPE})
        for q in reqs[1:]:
            self.assertEqual(q.fields, {"grant_type": DEVICE_GRANT,
                                        "device_code": ts.device_code,
                                        "client_id": CLIENT_ID,
                                        "client_secret": ts.client_secret})
        self.assertEqual([q.status for q in reqs], [200, 400, 400, 200])
        for a, b in zip(reqs[1:], reqs[2:]):
            self.assertGreaterEqual(b.time - a.time, 0.9, "polls every interval seconds")
        # the relay then uses the refresh token it got
        relay = self.start_relay(config=config)
        self.send(relay, "after login")
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.login, USER)

    def test_oauth_login_slow_down(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret=self.secret("cs-slow"))
        ts.device_errors = ["slow_down"]
        config, dev = self.login_config(peer, ts)
        r = self.run_login(config)
        self.assertEqual(r.returncode, 0, r.stderr)
        polls = ts.requests()[1:]
        self.assertEqual([q.status for q in polls], [400, 200])
        self.assertGreaterEqual(polls[1].time - polls[0].time, 5.9, "interval + 5 s")

    def test_oauth_login_access_denied(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret=self.secret("cs-deny"))
        ts.device_errors = ["authorization_pending", "access_denied"]
        config, dev = self.login_config(peer, ts)
        r = self.run_login(config)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("access denied", r.stderr)
        self.assertFalse(os.path.exists(dev["oauth_refresh_token_file"]))
        self.assertEqual(len(ts.requests()), 3)

    def test_oauth_login_expired_and_unknown_device(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret=self.secret("cs-exp"))
        ts.device_errors = ["expired_token"]
        config, dev = self.login_config(peer, ts)
        r = self.run_login(config)
        self.assertEqual(r.returncode, 1)
        self.assertIn("expired", r.stderr)
        r = self.run_login(config, device="nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no [device nope]", r.stderr)

    def test_spooled_message_delivered_with_xoauth2(self):
        # mode = spool: the background delivery (up_queue) logs in with a token too
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-spool", refresh_token="rt-spool")
        self.secret("cs-spool")
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)},
                                 relay={"mode": "spool",
                                        "spool_dir": os.path.join(self.dir, "spool")})
        self.send(relay, "spooled")
        (m,) = peer.wait_messages(1)
        self.assertTrue(m.accepted)
        self.assertEqual(m.login, USER)
        self.assertEqual(peer.xoauth2_attempts()[0][2:4], (ts.issued[0], True))
        self.assertEqual(len(ts.requests()), 1)

    def test_shutdown_while_fetching(self):
        # SIGTERM while the token request hangs: the client gets a 4xx, relay25 exits 0
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-hang", refresh_token="rt-hang")
        self.secret("cs-hang")
        ts.mode = "hang"
        relay = self.start_relay({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)},
                                 relay={"shutdown_timeout": "2"})
        result = []
        t = threading.Thread(target=lambda: result.append(self.transaction(
            relay, "a@contoso.example", ["b@contoso.example"], make_message("hang"))))
        t.start()
        ts.wait_requests(1)
        started = time.monotonic()
        self.assertEqual(relay.stop(), 0, relay.tail())
        self.assertLess(time.monotonic() - started, 15)
        self.assert_no_secrets(relay.log(), "relay25 log")
        relay.proc = None  # stopped and checked here
        t.join(30)
        stage, code, text = result[0]
        self.assertEqual(stage, "mail")
        self.assertTrue(code is None or 400 <= code < 500, (code, text))

    # relay25 check --upstream ---------------------------------------------------------

    def test_check_upstream_logs_in_with_xoauth2(self):
        peer = self.oauth_peer()
        ts = self.token_server(peer, client_secret="cs-check", refresh_token="rt-check")
        self.secret("cs-check")
        path = self.write_config({"m365": self.upstream(peer)},
                                 {"default": self.refresh_device(ts)})
        r = self.run_check(path, "--upstream")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("XOAUTH2, refresh_token grant at %s" % ts.url, r.stdout)
        self.assertRegex(r.stdout, r"device default: user %s .*: ok: authenticated"
                         % re.escape(USER))
        self.assertEqual(len(ts.requests()), 1)
        for t in ts.issued:
            self.assertNotIn(t, r.stdout + r.stderr)


if __name__ == "__main__":
    main()
