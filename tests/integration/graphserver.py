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

Large messages (user-post-messages, attachment-createuploadsession, user-send):
POST .../users/{mailbox}/messages with a MIME draft as above -> 201 {"id"}; POST
.../messages/{id}/attachments/createUploadSession with JSON {"AttachmentItem":
{"attachmentType": "file", "name", "size"}} -> 201 {"uploadUrl", ...}; PUT
<uploadUrl> WITHOUT an Authorization header, Content-Range "bytes a-b/size" starting
where the last one ended, chunks below 4 MiB in multiples of 320 KiB but the last
-> 200 {"nextExpectedRanges"}, the last 201; POST .../messages/{id}/send with no
body -> 202. gs.drafts_sent() -> [(mime, [(name, content_type, bytes)])].

GET {prefix}/v1.0/users/{mailbox}/mailFolders/sentitems (check --upstream: a read
Mail.Send alone does not allow, so a 403 there is expected and reported as such;
Mail.ReadBasic.All allows it) answers 200 with a folder, or the next scripted answer.
"""

import base64
import binascii
import collections
import http.server
import json
import os
import ssl
import threading
import time
import urllib.parse
import re
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
        gs.last_request_id = rid  # before the answer: the client may act on it at once
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("request-id", rid)
        self.send_header("client-request-id", rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data and not (headers or {}).get("Content-Type"):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _handle(self, method):
        gs = self.server.gs
        body = self._body() if method in ("POST", "PUT") else b""
        status, headers, payload, problem = gs._answer(method, self.path, self.headers, body)
        gs._record(method, self.path, self.headers, body, status, problem)
        self._reply(status, headers, payload)

    def do_POST(self):
        self._handle("POST")

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")


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
        self._drafts = {}      # id -> {"mime", "attachments": [...], "sent"}
        self._uploads = {}     # token -> {"draft", "name", "ctype", "size", "data"}
        self.max_chunk = 0
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

    def drafts_sent(self):
        with self._lock:
            return [(d["mime"], list(d["attachments"])) for d in self._drafts.values()
                    if d["sent"]]

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

    def _mime_body(self, headers, body):
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
        if mime is not None and len(body) > 4 * 1000 * 1000:
            problem = problem or "request over 4 MB"
        return mime, problem

    def _large(self, method, path, headers, body, scripted):
        """The draft, upload session and send calls; None when path is none of them."""
        base = self.prefix + "/v1.0/users/"
        if method == "PUT" and path.startswith("/upload/"):
            tok, _, query = path[len("/upload/"):].partition("?")
            with self._lock:
                up = self._uploads.get(tok)
            if up is not None and query != "authtoken=" + up["authtoken"]:
                return 401, None, graph_error("InvalidAuthenticationToken", "authtoken"), \
                    "upload URL's authtoken lost"
            if up is None:
                return 404, None, graph_error("ItemNotFound", "no such upload"), "upload " + path
            if "Authorization" in headers:
                return 400, None, graph_error("BadRequest", "Authorization on an upload URL"), \
                    "Authorization header sent to the upload URL"
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range", ""))
            if not m:
                return 400, None, graph_error("BadRequest", "Content-Range"), "Content-Range %r" \
                    % headers.get("Content-Range")
            a, b, n = int(m.group(1)), int(m.group(2)), int(m.group(3))
            problem = None
            if n != up["size"] or a != len(up["data"]) or b - a + 1 != len(body) or b >= n:
                problem = "range %d-%d/%d after %d of %d, %d bytes" % (
                    a, b, n, len(up["data"]), up["size"], len(body))
            elif len(body) >= 4 * 1024 * 1024:
                problem = "chunk of %d bytes (4 MiB or more)" % len(body)
            elif b + 1 < n and len(body) % (320 * 1024) != 0:
                problem = "chunk of %d bytes, not a multiple of 320 KiB" % len(body)
            if problem:
                return 416, None, graph_error("InvalidRange", problem), problem
            if scripted:
                return scripted + (None,)
            with self._lock:
                up["data"] += body
                self.max_chunk = max(self.max_chunk, len(body))
                if len(up["data"]) == up["size"]:
                    self._drafts[up["draft"]]["attachments"].append(
                        (up["name"], up["ctype"], bytes(up["data"])))
                    del self._uploads[tok]
                    return 201, {"Location": "https://localhost/att/1"}, None, None
            return 200, None, {"expirationDateTime": "2026-12-04T20:00:00Z",
                               "nextExpectedRanges": ["%d-" % (b + 1)]}, None
        if method != "POST" or not path.startswith(base):
            return None
        rest = path[len(base):]
        m = re.fullmatch(r"([^/]+)/messages", rest)
        if m:
            mime, problem = self._mime_body(headers, body)
            if problem:
                return 400, None, graph_error("ErrorInvalidRequest", problem), problem
            if scripted:
                return scripted + (None,)
            mid = "AAMkAD%s=" % uuid.uuid4().hex
            with self._lock:
                self._drafts[mid] = {"mime": mime, "attachments": [], "sent": False}
            return 201, None, {"id": mid, "isDraft": True}, None
        m = re.fullmatch(r"([^/]+)/messages/([^/]+)/attachments/createUploadSession", rest)
        if m:
            mid = urllib.parse.unquote(m.group(2))
            problem = self._check_auth(headers)
            if headers.get("Content-Type") != "application/json":
                problem = problem or "Content-Type %r" % headers.get("Content-Type")
            try:
                item = json.loads(body)["AttachmentItem"]
                if item["attachmentType"] != "file" or not item["name"] or \
                        not isinstance(item["size"], int):
                    raise ValueError(item)
            except (ValueError, KeyError, TypeError) as e:
                problem = problem or "AttachmentItem %r" % (e,)
            if mid not in self._drafts:
                problem = problem or "no draft %s" % mid
            if problem:
                return 400, None, graph_error("ErrorInvalidRequest", problem), problem
            if scripted:
                return scripted + (None,)
            tok = uuid.uuid4().hex
            # like Graph's: the URL carries a long pre-authenticated token
            authtoken = base64.urlsafe_b64encode(os.urandom(1800)).decode().rstrip("=")
            with self._lock:
                self._uploads[tok] = {"draft": mid, "name": item["name"],
                                      "ctype": item.get("contentType", ""),
                                      "size": item["size"], "data": bytearray(),
                                      "authtoken": authtoken}
            return 201, None, {"uploadUrl": "https://localhost:%d/upload/%s?authtoken=%s"
                                            % (self.port, tok, authtoken),
                               "expirationDateTime": "2026-12-04T20:00:00Z",
                               "nextExpectedRanges": ["0-"]}, None
        m = re.fullmatch(r"([^/]+)/messages/([^/]+)/send", rest)
        if m:
            mid = urllib.parse.unquote(m.group(2))
            problem = self._check_auth(headers)
            if headers.get("Content-Length") != "0":
                problem = problem or "send with Content-Length %r" % headers.get("Content-Length")
            if mid not in self._drafts:
                problem = problem or "no draft %s" % mid
            elif self._uploads:
                problem = problem or "send before every upload ended"
            if problem:
                return 400, None, graph_error("ErrorInvalidRequest", problem), problem
            if scripted:
                return scripted + (None,)
            with self._lock:
                self._drafts[mid]["sent"] = True
            return 202, None, None, None
        return None

    def _answer(self, method, path, headers, body):
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        large = self._large(method, path, headers, body, scripted)
        if large is not None:
            return large
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
        mailbox = self._mailbox(path.split("?", 1)[0], "/mailFolders/sentitems")
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
