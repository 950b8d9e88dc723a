#!/usr/bin/python3
"""OAuth2 token endpoint for relay25's XOAUTH2 tests (RFC 6749 §4.4, §5, §6), on
Debian's python3 stdlib: http.server over TLS with the test PKI's server
certificate (certs.py: CN/SAN localhost), bound to 127.0.0.1:0 in a thread.

    ts = TokenServer(pki, client_secret="s3", refresh_token="rt-0").start()
    ts.url                      -> "https://localhost:PORT/oauth2/v2.0/token"
    ts.requests()               -> [Request(time, path, fields, status)] in order
    ts.issued                   -> access tokens handed out, in order

Grants: refresh_token (the refresh token must be the current one; with
rotate=True each use issues a new one and the old one stops working) and
client_credentials (client_id and client_secret must match). Access tokens are
long (like Microsoft's JWTs) and unique; expires_in is configurable. on_issue(token)
runs for each token issued (the test decides whether the peer accepts it).
Failure modes (ts.mode): "ok", "http400" (invalid_grant JSON), "http500" (text),
"badjson" (200 with a broken body), "hang" (never answers). chunked=True sends
200 responses with Transfer-Encoding: chunked.

Device authorization grant (RFC 8628): POST ts.device_url (client_id, scope)
gives device_code, user_code, verification_uri, interval ts.device_interval and
expires_in ts.device_expires_in; the device_code grant on the token URL then answers
ts.device_pending times "authorization_pending" (or ts.device_errors in order, e.g.
["slow_down", "authorization_pending"], or a final "access_denied" /
"expired_token") before a token and a new refresh token (ts.device_refresh_token).
"""

import base64
import collections
import http.server
import json
import secrets
import ssl
import threading
import time
import urllib.parse

Request = collections.namedtuple("Request", "time path fields status")

TOKEN_PATH = "/oauth2/v2.0/token"
DEVICE_PATH = "/oauth2/v2.0/devicecode"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_POST(self):
        ts = self.server.ts
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("ascii", "replace")
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        status, ctype, payload = ts._answer(self.path, fields, self.headers)
        ts._record(self.path, fields, status)
        if status is None:  # "hang"
            time.sleep(ts.hang_seconds)
            return
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if ts.chunked and status == 200:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 100):
                part = data[i:i + 100]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ts, ctx):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.ts, self.ctx = ts, ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class TokenServer:
    def __init__(self, pki, client_id="relay25-test-client", client_secret=None,
                 refresh_token=None, expires_in=3600, rotate=False, chunked=False,
                 on_issue=None, token_len=1500, roles=None):
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token = refresh_token
        self.expires_in, self.rotate, self.chunked = expires_in, rotate, chunked
        self.on_issue, self.token_len = on_issue, token_len
        self.roles = roles  # a list: tokens are JWTs whose payload carries these roles
        self.mode = "ok"
        self.hang_seconds = 40
        self.issued = []
        self.refresh_tokens = [refresh_token] if refresh_token else []
        self._lock = threading.Lock()
        self._requests = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self._httpd = _Server(self, ctx)
        self.port = self._httpd.server_address[1]
        self._thread = None
        self.device_code = "dc-%s" % secrets.token_urlsafe(16)
        self.user_code = "ABCD-EFGH"
        self.device_interval = 1
        self.device_expires_in = 900
        self.device_errors = ["authorization_pending", "authorization_pending"]
        self.device_refresh_token = "rt-device-%s" % secrets.token_urlsafe(24)

    @property
    def url(self):
        return "https://localhost:%d%s" % (self.port, TOKEN_PATH)

    @property
    def device_url(self):
        return "https://localhost:%d%s" % (self.port, DEVICE_PATH)

    def _device_answer(self, fields):
        if fields.get("client_id") != self.client_id:
            return self._error(400, "invalid_client", "unknown client")
        return 200, "application/json", json.dumps({
            "device_code": self.device_code, "user_code": self.user_code,
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": self.device_expires_in, "interval": self.device_interval,
            "message": "To sign in, use a web browser to open the page "
                       "https://microsoft.com/devicelogin and enter the code %s to "
                       "authenticate." % self.user_code})

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests(self):
        with self._lock:
            return list(self._requests)

    def wait_requests(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests()) >= n:
                break
            time.sleep(0.05)
        return self.requests()

    def _record(self, path, fields, status):
        with self._lock:
            self._requests.append(Request(time.monotonic(), path, fields, status))

    def _new_token(self):
        # JWT-like: header.payload.signature, printable, no blanks
        if self.roles is not None:
            # an app-only Graph token: {"aud", "roles", ...} base64url without padding
            payload = json.dumps({"aud": "https://graph.microsoft.com", "roles": self.roles,
                                  "uti": secrets.token_urlsafe(24)}).encode()
            t = "eyJ0eXAiOiJKV1QifQ.%s.%s" % (
                base64.urlsafe_b64encode(payload).decode().rstrip("="),
                secrets.token_urlsafe(32))
        else:
            t = "eyJ0eXAiOiJKV1QifQ.%s.%s" % (secrets.token_urlsafe(self.token_len * 3 // 4),
                                              secrets.token_urlsafe(32))
        self.issued.append(t)
        if self.on_issue:
            self.on_issue(t)
        return t

    def _error(self, code, err, desc):
        return code, "application/json", json.dumps({"error": err, "error_description": desc})

    def _answer(self, path, fields, headers):
        with self._lock:
            if path == DEVICE_PATH:
                return self._device_answer(fields)
            if path != TOKEN_PATH:
                return 404, "text/plain", "not found"
            if headers.get("Content-Type") != "application/x-www-form-urlencoded":
                return self._error(400, "invalid_request", "wrong content type")
            if self.mode == "hang":
                return None, None, None
            if self.mode == "http500":
                return 500, "text/plain", "internal error"
            if self.mode == "http400":
                return self._error(400, "invalid_grant",
                                   "AADSTS70008: The refresh token has expired")
            if fields.get("client_id") != self.client_id:
                return self._error(400, "invalid_client", "unknown client")
            if self.client_secret is not None and fields.get("client_secret") != self.client_secret:
                return self._error(401, "invalid_client", "bad client secret")
            grant = fields.get("grant_type")
            out = {"token_type": "Bearer", "expires_in": self.expires_in}
            if grant == "refresh_token":
                if fields.get("refresh_token") != self.refresh_token:
                    return self._error(400, "invalid_grant", "refresh token not valid")
                if self.rotate:
                    self.refresh_token = "rt-%s" % secrets.token_urlsafe(24)
                    self.refresh_tokens.append(self.refresh_token)
                    out["refresh_token"] = self.refresh_token
            elif grant == DEVICE_GRANT:
                if fields.get("device_code") != self.device_code:
                    return self._error(400, "invalid_grant", "unknown device_code")
                if self.device_errors:
                    return self._error(400, self.device_errors.pop(0), "not yet")
                self.refresh_token = self.device_refresh_token
                self.refresh_tokens.append(self.refresh_token)
                out["refresh_token"] = self.refresh_token
            elif grant == "client_credentials":
                if self.client_secret is None:
                    return self._error(400, "invalid_client", "confidential client only")
            else:
                return self._error(400, "unsupported_grant_type", str(grant))
            if self.mode == "badjson":
                self._new_token()
                return 200, "application/json", '{"access_token": "abc", "expires_in": '
            out["access_token"] = self._new_token()
            return 200, "application/json", json.dumps(out)
