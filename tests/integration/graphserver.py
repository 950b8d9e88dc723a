#!/usr/bin/python3
"""A Microsoft Graph stand-in for relay25's `type = graph` tests, on Debian's
python3 stdlib: http.server over TLS with the test PKI's server certificate
(certs.py: CN/SAN localhost), bound to 127.0.0.1:0 in a thread. It checks every
request the way Graph documents it and records what it got:

    gs = GraphServer(pki, tokens, prefix="").start()
    gs.url                  -> "https://localhost:PORT" + prefix (graph_url)
    gs.requests()           -> [Call(time, method, path, headers, body, status, problem)]
    gs.sent()               -> the MIME messages (bytes) sendMail accepted, in order
    gs.script.append((status, {header: value}, json_or_None))  -> the next answers

POST {prefix}/v1.0/users/{mailbox}/sendMail (user-sendmail, "send a message using
MIME format"): "Authorization: Bearer <one of tokens>", "Content-Type: text/plain",
a body that is strict base64 of an RFC 5322 message (a header section ending in an
empty line). Answer 202 Accepted with no body, or the next scripted answer; every
answer carries a request-id header, errors Graph's JSON error body. A request that
breaks a rule gets 400 and `problem` says which rule (tests assert no problem).

GET {prefix}/v1.0/users/{mailbox}/mailFolders/sentitems (check --upstream: a read
Mail.Send alone does not allow, so a 403 there is expected and reported as such;
Mail.ReadBasic.All allows it) answers 200 with a folder, or the next scripted answer.
"""

import base64
import binascii
import collections
import http.server
import json
import ssl
import threading
import time
import urllib.parse
import uuid

Call = collections.namedtuple("Call", "time method path headers body status problem")


def graph_error(code, message):
    """Graph's error body (errors-and-throttling)."""
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": "2026-12-03T20:00:00",
                                     "request-id": str(uuid.uuid4()),
                                     "client-request-id": str(uuid.uuid4())}}}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def _reply(self, status, headers, payload):
        gs = self.server.gs
        rid = str(uuid.uuid4())
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("request-id", rid)
        self.send_header("client-request-id", rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True
        gs.last_request_id = rid

    def _handle(self, method):
        gs = self.server.gs
        body = self._body() if method == "POST" else b""
        status, headers, payload, problem = gs._answer(method, self.path, self.headers, body)
        gs._record(method, self.path, self.headers, body, status, problem)
        self._reply(status, headers, payload)

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gs, ctx):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.gs, self.ctx = gs, ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class GraphServer:
    def __init__(self, pki, tokens, prefix="", mailboxes=None):
        self.tokens = tokens          # a set the token server's on_issue fills
        self.prefix = prefix.rstrip("/")
        self.mailboxes = mailboxes    # None: any mailbox exists
        self.script = []              # (status, headers, json) answers to come
        self.last_request_id = None
        self._lock = threading.Lock()
        self._calls = []
        self._sent = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        self._httpd = _Server(self, ctx)
        self.port = self._httpd.server_address[1]

    @property
    def url(self):
        return "https://localhost:%d%s" % (self.port, self.prefix)

    def start(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests(self):
        with self._lock:
            return list(self._calls)

    def sent(self):
        with self._lock:
            return list(self._sent)

    def wait_requests(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests()) < n:
            time.sleep(0.05)
        return self.requests()

    def _record(self, method, path, headers, body, status, problem):
        with self._lock:
            self._calls.append(Call(time.monotonic(), method, path, dict(headers.items()), body,
                                    status, problem))

    def _check_auth(self, headers):
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return "no bearer token"
        if auth[7:] not in self.tokens:
            return "token not issued"
        return None

    def _mailbox(self, path, suffix):
        base = self.prefix + "/v1.0/users/"
        if not path.startswith(base) or not path.endswith(suffix):
            return None
        return urllib.parse.unquote(path[len(base):-len(suffix)])

    def _answer(self, method, path, headers, body):
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if method == "POST":
            mailbox = self._mailbox(path, "/sendMail")
            if mailbox is None:
                return 404, None, graph_error("BadRequest", "Resource not found"), "path " + path
            problem = self._check_auth(headers)
            if headers.get("Content-Type") != "text/plain":
                problem = problem or "Content-Type %r" % headers.get("Content-Type")
            try:
                mime = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                mime = None
                problem = problem or "body is not strict base64"
            if mime is not None and b"\r\n\r\n" not in mime:
                problem = problem or "decoded body has no header section"
            if problem:
                if problem.startswith("token"):
                    return 401, None, graph_error("InvalidAuthenticationToken",
                                                  "Access token validation failure."), None
                return 400, None, graph_error("ErrorInvalidRequest", problem), problem
            if scripted:
                status, hdrs, payload = scripted
                return status, hdrs, payload, None
            if self.mailboxes is not None and mailbox not in self.mailboxes:
                return 404, None, graph_error("ErrorInvalidUser",
                                              "The requested user '%s' is invalid." % mailbox), None
            with self._lock:
                self._sent.append(mime)
            return 202, None, None, None
        mailbox = self._mailbox(path, "/mailFolders/sentitems")
        if mailbox is None:
            return 404, None, graph_error("BadRequest", "Resource not found"), "path " + path
        problem = self._check_auth(headers)
        if problem:
            return 401, None, graph_error("InvalidAuthenticationToken",
                                          "Access token validation failure."), None
        if scripted:
            status, hdrs, payload = scripted
            return status, hdrs, payload, None
        if self.mailboxes is not None and mailbox not in self.mailboxes:
            return 404, None, graph_error("ErrorInvalidUser",
                                          "The requested user '%s' is invalid." % mailbox), None
        return 200, None, {"id": "AAMkSentItems", "displayName": "Sent Items",
                           "totalItemCount": 0}, None
