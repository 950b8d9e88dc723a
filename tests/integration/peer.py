#!/usr/bin/python3
"""Scripted upstream ("provider") for relay25 integration tests, on aiosmtpd 1.4.3.

One Peer = one aiosmtpd Controller (its own asyncio loop in a daemon thread) on
a loopback port (port 0 allowed: the socket is bound before the thread starts,
so .port is known at once). Modes (tls=):
  "starttls"  STARTTLS offered and required before anything else; AUTH PLAIN and
              LOGIN offered only after TLS and required before MAIL (port 587).
  "implicit"  TLS from the first byte (port 465); AUTH PLAIN/LOGIN required.
  "none"      no STARTTLS; AUTH is still advertised and required, so a relay that
              wrongly sends credentials in the clear is caught (auth_attempts()).
Records, readable from any thread (copies, under a lock): every connection with
the verbs it sent (AUTH arguments redacted), every AUTH attempt (login, success),
every DATA transaction (Message).

Scripted behaviour:
  * RCPT whose local part starts with "reject" -> "550 5.1.1 <addr>: ...".
  * MAIL whose local part starts with "close421" -> "421 4.3.2 ..." and the
    connection closed, like a provider shutting down.
  * End-of-DATA reply chosen by the message itself: a header
        X-Test-Reply: 451                 -> "451 4.3.0 try later"
        X-Test-Reply: 554                 -> "554 5.7.1 spam"
        X-Test-Reply: 452 4.2.2 full      -> that line verbatim
    (header chosen over "next N messages": stateless, so it is safe with
    concurrent sessions and needs no coordination between test and peer).
    Refused messages are kept in all_messages() with .reply, not in messages().

aiosmtpd 1.4.3 facts the tests rely on (checked against its smtp.py):
  * DATA lines are split on CRLF only (readuntil b"\\r\\n"); a bare LF or CR is
    just a byte inside a line, and only an exact ".\\r\\n" line ends DATA.
  * Dot-unstuffing removes the first byte of every CRLF-line that starts with
    "." (including a line such as ".\\nMAIL FROM..."), nothing else.
  * With decode_data=False (used here) envelope.content and
    envelope.original_content are the SAME bytes object: both are after
    dot-unstuffing, CRLFs kept, including the CRLF before the final ".".
    "original" means "not decoded to str", not "before unstuffing".
  * A data line longer than 1001 octets makes the whole message fail with
    "500 Line too long"; data_size_limit (default 32 MiB, raised here) -> 552.
  * MAIL FROM:<> is accepted but envelope.mail_from is the string "<>"; we
    record "" for the null sender.
  * Implicit TLS: aiosmtpd does not know the socket is TLS (session.ssl None),
    so AUTH must be configured with auth_require_tls=False to be offered.
  * The Controller's readiness probe opens one connection itself; this module
    binds that probe to a known port and leaves it out of the records.

DSN (Peer(dsn=True)): "250-DSN" is offered and MAIL's RET/ENVID and RCPT's
NOTIFY/ORCPT are accepted (aiosmtpd knows none of them: they are taken off the
line after it is recorded, so commands() shows them exactly as received).
peer.dsn may be changed while the peer runs (new sessions see it).
SMTPUTF8: aiosmtpd's Controller offers it by default; Peer(smtputf8=False) does not.

CRAM-MD5 (Peer(cram_md5=True)): AUTH CRAM-MD5 is offered too, checked against
users; other peers exclude it.

XOAUTH2 (Peer(xoauth2=True)): AUTH XOAUTH2 is offered too (aiosmtpd 1.4.3 finds
auth_<MECH> methods on the SMTP object and the handler; other peers exclude it
with auth_exclude_mechanism). A token is accepted when it is in peer.tokens (a
set the test changes at will; any user name). A refused token gets, per
peer.xoauth2_error, "334 <base64 JSON>" then (after the client's empty line)
"535 5.7.8" like Gmail, or "535 5.7.3" at once like Microsoft 365. Every attempt
is in peer.xoauth2_attempts() as (conn, user, token, ok, error_reply). AUTH lines
may be 12288 octets (RFC 4954 §4) on such a peer: the line limits are raised for
it (so its DATA line limit is larger too).
Peer(close_after_message=True) closes the connection after each end-of-DATA
reply, so relay25 cannot reuse the authenticated session for the next message.

Standalone (README demo upstream):
  /usr/bin/python3 tests/integration/peer.py --listen 127.0.0.1:0 \\
      --tls starttls|implicit|none --cert C --key K --user NAME:PASSWORD [--print]
prints "listening 127.0.0.1:PORT" once ready; runs until SIGINT/SIGTERM.
"""

import argparse
import asyncio
import base64
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
from typing import List, Optional, Tuple

from aiosmtpd.controller import Controller, _server_to_client_ssl_ctx
from aiosmtpd.smtp import MISSING, SMTP, AuthResult

DATA_REPLIES = {
    "451": "451 4.3.0 try later",
    "452": "452 4.2.2 mailbox full",
    "550": "550 5.7.1 rejected",
    "554": "554 5.7.1 spam",
}
REJECT_PREFIX = "reject"
CLOSE421_PREFIX = "close421"
XOAUTH2_LINE_MAX = 12288  # RFC 4954 §4: AUTH command lines
XOAUTH2_RE = re.compile(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01")
OAUTHBEARER_RE = re.compile(rb"n,a=([^,\x01]*),\x01((?:[A-Za-z]+=[^\x01]*\x01)+)\x01")
DEFAULT_DATA_SIZE_LIMIT = 64 * 1024 * 1024
ALLOWED_BEFORE_STARTTLS = ("EHLO", "HELO", "NOOP", "QUIT", "STARTTLS")

# aiosmtpd logs deprecations (login_data) and handshake failures at WARNING/ERROR;
# the peer records those itself.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)


@dataclasses.dataclass(frozen=True)
class AuthAttempt:
    conn: int                # Connection.id
    mechanism: str           # "PLAIN", "LOGIN", or what the client asked for
    login: Optional[str]     # None when no credentials were decoded
    success: bool


@dataclasses.dataclass(frozen=True)
class Connection:
    id: int
    peer: Tuple[str, int]                # relay's address as seen by upstream
    tls: Optional[str]                   # "implicit", "starttls" or None
    commands: Tuple[Tuple[str, str], ...]  # (VERB, argument); AUTH args redacted
    errors: Tuple[str, ...]              # e.g. a failed STARTTLS handshake
    closed: bool
    # verbs that were read while the client's next command had already arrived
    # (sent in the same flight: PIPELINING, RFC 2920)
    buffered: Tuple[str, ...] = ()

    def verbs(self):
        return [v for v, _ in self.commands]


@dataclasses.dataclass(frozen=True)
class Message:
    conn: int
    mail_from: str               # "" for the null sender
    rcpt_tos: Tuple[str, ...]     # accepted recipients, in order
    mail_options: Tuple[str, ...]  # e.g. ("BODY=8BITMIME",) (upper-cased by aiosmtpd)
    login: Optional[str]         # authenticated upstream user of the session
    tls: Optional[str]
    content: bytes               # after dot-unstuffing, CRLF line ends kept
    reply: str                   # what the peer answered at end of DATA

    @property
    def accepted(self):
        return self.reply.startswith("2")

    def header(self, name):
        """First value of header `name` (unfolded, stripped) or None."""
        head = self.content.split(b"\r\n\r\n", 1)[0]
        head = re.sub(rb"\r\n[ \t]", b" ", head)
        for line in head.split(b"\r\n"):
            k, sep, v = line.partition(b":")
            if sep and k.strip().lower() == name.lower().encode():
                return v.strip().decode("utf-8", "replace")
        return None


class _ConnState:
    """Mutable per-connection record; only touched under Peer._lock."""

    def __init__(self, cid, peer, tls):
        self.id, self.peer, self.tls = cid, peer, tls
        self.commands: List[Tuple[str, str]] = []
        self.errors: List[str] = []
        self.closed = False
        self.buffered: List[str] = []

    def freeze(self):
        return Connection(self.id, self.peer, self.tls, tuple(self.commands),
                          tuple(self.errors), self.closed, tuple(self.buffered))


class _PeerSMTP(SMTP):
    """aiosmtpd SMTP with per-connection recording."""

    def __init__(self, handler, *, peer, auth_require_tls=True, **kw):
        super().__init__(handler, **kw)
        # Set after __init__: passing auth_require_tls=False with auth_required=True
        # makes aiosmtpd emit a UserWarning per connection (and unittest shows them).
        self._auth_require_tls = auth_require_tls
        self._peer = peer
        self._conn = None
        self._smtp_methods = {name: self._recorded(name, m)
                              for name, m in self._smtp_methods.items()}
        if peer.xoauth2 or peer.oauthbearer:
            # instance-level limits: aiosmtpd's class-level dict is shared and cleared
            self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit)
            self.command_size_limits["AUTH"] = XOAUTH2_LINE_MAX
            self._stream_reader._limit = XOAUTH2_LINE_MAX + 2  # the reader _reader will be

    async def auth_CRAM__MD5(self, _, args):
        """SASL CRAM-MD5 (RFC 2195), offered with Peer(cram_md5=True): 334 base64
        challenge, then base64(user SP hex HMAC-MD5(password, challenge))."""
        challenge = ("<%d.%d@peer.test>" % (os.getpid(), id(self))).encode()
        blob = await self.challenge_auth(challenge)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = blob.partition(b" ")
        login = user.decode("utf-8", "replace")
        password = self._peer.users.get(login)
        ok = password is not None and hmac.compare_digest(
            digest, hmac.new(password.encode(), challenge, hashlib.md5).hexdigest().encode())
        self._peer._auth_result(self._conn, "CRAM-MD5", login, ok)
        if ok:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def _oauth_blob(self, args, regex, mech):
        """The client's response (initial, or after an empty 334) matched against
        regex; None when it was missing, not base64 or malformed (answered here)."""
        if len(args) == 1:
            blob = await self.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return None
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return None
        m = regex.fullmatch(blob)
        if not m:
            await self.push("501 5.5.2 malformed %s response" % mech)
        return m

    async def auth_XOAUTH2(self, _, args):
        """SASL XOAUTH2 (Google / Microsoft): base64 of
        "user=" user ^A "auth=Bearer " token ^A ^A, as initial response or after 334."""
        m = await self._oauth_blob(args, XOAUTH2_RE, "XOAUTH2")
        if m is None:
            return AuthResult(success=False, handled=True)
        user = m.group(1).decode("utf-8", "replace")
        token = m.group(2).decode("ascii", "replace")
        ok = token in self._peer.tokens
        self._peer._auth_result(self._conn, "XOAUTH2", user, ok)
        if ok:
            self._peer._xoauth2(self._conn, user, token, True, None)
            return AuthResult(success=True, auth_data=user)
        if self._peer.xoauth2_error == "334":
            err = json.dumps({"status": "401", "schemes": "Bearer",
                              "scope": "https://mail.google.com/"})
            await self.push("334 " + base64.b64encode(err.encode()).decode())
            answer = await self._reader.readline()
            self._peer._xoauth2(self._conn, user, token, False, answer)
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Username and Password not accepted")
        self._peer._xoauth2(self._conn, user, token, False, None)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.3 Authentication unsuccessful")

    async def auth_OAUTHBEARER(self, _, args):
        """SASL OAUTHBEARER (RFC 7628), offered with Peer(oauthbearer=True): base64 of
        "n,a=" user "," ^A "host=" h ^A "port=" p ^A "auth=Bearer " token ^A ^A. Same
        tokens and error styles as XOAUTH2; the client answers an error challenge
        with base64(^A). Attempts go to xoauth2_attempts(), the key-value pairs
        of each to peer.oauthbearer_fields."""
        m = await self._oauth_blob(args, OAUTHBEARER_RE, "OAUTHBEARER")
        if m is None:
            return AuthResult(success=False, handled=True)
        user = m.group(1).decode("utf-8", "replace")
        fields = dict(kv.split(b"=", 1) for kv in m.group(2).split(b"\x01") if b"=" in kv)
        fields = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
        token = fields.get("auth", "")[len("Bearer "):]
        with self._peer._lock:
            self._peer.oauthbearer_fields.append(dict(fields, user=user))
        ok = fields.get("auth", "").startswith("Bearer ") and token in self._peer.tokens
        self._peer._auth_result(self._conn, "OAUTHBEARER", user, ok)
        if ok:
            self._peer._xoauth2(self._conn, user, token, True, None)
            return AuthResult(success=True, auth_data=user)
        if self._peer.xoauth2_error == "334":
            err = json.dumps({"status": "invalid_token", "schemes": "Bearer",
                              "scope": "https://mail.google.com/"})
            await self.push("334 " + base64.b64encode(err.encode()).decode())
            answer = await self._reader.readline()
            self._peer._xoauth2(self._conn, user, token, False, answer)
            return AuthResult(success=False, handled=False,
                              message="535 5.7.8 Username and Password not accepted")
        self._peer._xoauth2(self._conn, user, token, False, None)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.3 Authentication unsuccessful")

    def _recorded(self, verb, method):
        async def wrapper(arg):
            shown = arg or ""
            if verb == "AUTH":   # initial response may hold the password
                shown = shown.split(" ", 1)[0]
                self._peer._auth_command(self._conn, shown.upper())
            self._peer._command(self._conn, verb, shown)
            if self._reader is not None and len(getattr(self._reader, "_buffer", b"")):
                self._peer._buffered(self._conn, verb)
            if (self._peer.tls == "starttls" and self._tls_protocol is None
                    and verb not in ALLOWED_BEFORE_STARTTLS):
                # RFC 3207 §4; done here rather than by aiosmtpd's require_starttls
                # so that the refused command (e.g. a cleartext AUTH) is recorded.
                await self.push("530 5.7.0 Must issue a STARTTLS command first")
                return None
            if verb == "STARTTLS" and self._peer.starttls_reply:
                await self.push(self._peer.starttls_reply)
                return None
            if self._peer.dsn and verb in ("MAIL", "RCPT") and arg:
                arg = _strip_dsn(arg)
            try:
                result = await method(arg)
            except Exception as e:
                self._peer._error(self._conn, "%s: %r" % (verb, e.__cause__ or e))
                raise
            if verb == "STARTTLS" and self._tls_protocol is not None:
                self._peer._set_tls(self._conn, "starttls")
            return result
        return wrapper

    async def _handle_client(self):
        implicit = self.transport.get_extra_info("ssl_object") is not None
        self._conn = self._peer._new_connection(self.session.peer,
                                                "implicit" if implicit else None)
        try:
            await super()._handle_client()
        finally:
            self._peer._closed(self._conn)


_DSN_PARAMS = ("RET=", "ENVID=", "NOTIFY=", "ORCPT=")


def _strip_dsn(arg):
    """MAIL/RCPT argument without the RFC 3461 parameters aiosmtpd does not know."""
    return " ".join(w for w in arg.split(" ") if not w.upper().startswith(_DSN_PARAMS))


class _Handler:
    def __init__(self, peer):
        self.peer = peer

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.peer.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if self.peer.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.split("@", 1)[0].lower().startswith(CLOSE421_PREFIX):
            # runs after the reply is written (push writes before it awaits)
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 peer.test shutting down"
        return MISSING  # aiosmtpd's own MAIL handling

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@", 1)[0].lower().startswith(REJECT_PREFIX):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.peer.data_delay:
            await asyncio.sleep(self.peer.data_delay)  # a slow upstream, per connection
        content = bytes(envelope.original_content)
        reply = self.peer._data(server._conn, session, envelope, content)
        if self.peer.close_after_message:
            # runs after the reply is written (push writes before it awaits)
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_exception(self, error):
        return "421 4.3.0 peer error: %s" % type(error).__name__


def _authenticator(peer):
    def auth(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = peer.users.get(login) == password
        peer._auth_result(server._conn, mechanism, login, ok)
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)
    return auth


class _Controller(Controller):
    def __init__(self, peer, handler, sock, ssl_context, **kw):
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, ssl_context=ssl_context, **kw)
        self._peer, self._sock = peer, sock

    def factory(self):
        return _PeerSMTP(self.handler, peer=self._peer, **self.SMTP_kwargs)

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)

    def _trigger_server(self):
        # Readiness probe from a known port, which the peer leaves out of its records.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((self.hostname, 0))
            self._peer._ignore.add(s.getsockname())
            s.settimeout(self.ready_timeout)
            s.connect((self.hostname, self.port))
            if self.ssl_context:
                s = _server_to_client_ssl_ctx(self.ssl_context).wrap_socket(s)
            s.recv(1024)
            s.sendall(b"QUIT\r\n")
            s.recv(1024)
        finally:
            s.close()


class Peer:
    """Test upstream. Use as a context manager or start()/stop()."""

    def __init__(self, tls="starttls", cert=None, key=None, users=None, host="127.0.0.1",
                 port=0, hostname="peer.test", data_size_limit=DEFAULT_DATA_SIZE_LIMIT,
                 on_message=None, on_auth=None, xoauth2=False, close_after_message=False,
                 cram_md5=False, oauthbearer=False, data_delay=0.0, pipelining=False,
                 starttls_reply=None, dsn=False, smtputf8=None):
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError("tls must be starttls, implicit or none")
        if tls != "none" and not (cert and key):
            raise ValueError("tls=%s needs cert and key" % tls)
        self.tls = tls
        self.users = dict(users or {})
        self.host = host
        self.port = None
        self.on_message, self.on_auth = on_message, on_auth
        self.xoauth2 = xoauth2
        self.oauthbearer = oauthbearer
        self.oauthbearer_fields = []  # per OAUTHBEARER attempt: {user, host, port, auth}
        self.tokens = set()          # XOAUTH2 tokens accepted; the test changes it
        self.xoauth2_error = "334"   # "334": Gmail-style error challenge; "535": at once
        self.close_after_message = close_after_message
        self.data_delay = data_delay  # seconds before answering end of data
        self.pipelining = pipelining  # offer PIPELINING (aiosmtpd reads commands in order)
        self.starttls_reply = starttls_reply  # e.g. "454 4.7.0 ...": STARTTLS refused with it
        self.dsn = dsn  # offer DSN (RFC 3461) and accept its parameters
        self._xoauth2_log = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ignore = set()
        self._conns: List[_ConnState] = []
        self._auths: List[AuthAttempt] = []
        self._msgs: List[Message] = []

        ctx = None
        if tls != "none":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
        kw = dict(server_hostname=hostname, ident="relay25-test-peer",
                  data_size_limit=data_size_limit, auth_required=True,
                  authenticator=_authenticator(self), timeout=120)
        exclude = [] if xoauth2 else ["XOAUTH2"]
        if not cram_md5:
            exclude.append("CRAM-MD5")
        if not oauthbearer:
            exclude.append("OAUTHBEARER")
        kw.update(auth_exclude_mechanism=exclude)
        if smtputf8 is not None:
            kw.update(enable_SMTPUTF8=smtputf8)
        if tls == "starttls":
            kw.update(tls_context=ctx, auth_require_tls=True)  # STARTTLS enforced in _PeerSMTP
        else:
            kw.update(auth_require_tls=False)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._controller = _Controller(self, _Handler(self), self._sock,
                                       ctx if tls == "implicit" else None, **kw)
        self._started = False

    # lifecycle -------------------------------------------------------------

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        self._controller.start()
        self._started = True
        return self

    def stop(self):
        if self._started:
            self._controller.stop()
            self._started = False
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # accessors (any thread; return immutable copies) -----------------------

    def connections(self) -> List[Connection]:
        with self._lock:
            return [c.freeze() for c in self._conns]

    def auth_attempts(self) -> List[AuthAttempt]:
        with self._lock:
            return list(self._auths)

    def messages(self) -> List[Message]:
        """Messages the peer accepted (2xx at end of DATA)."""
        with self._lock:
            return [m for m in self._msgs if m.accepted]

    def all_messages(self) -> List[Message]:
        """Every completed DATA, including those answered 4xx/5xx."""
        with self._lock:
            return list(self._msgs)

    def xoauth2_attempts(self):
        """[(conn, user, token, ok, answer to the error challenge or None)]."""
        with self._lock:
            return list(self._xoauth2_log)

    def commands(self, verb=None) -> List[Tuple[int, str, str]]:
        """(connection id, VERB, argument) over all connections, in order per connection."""
        with self._lock:
            return [(c.id, v, a) for c in self._conns for v, a in c.commands
                    if verb is None or v == verb]

    def wait_messages(self, n, timeout=30.0) -> List[Message]:
        """Wait until at least n DATA transactions completed; returns all_messages()."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._msgs) >= n, timeout)
            return list(self._msgs)

    def wait_idle(self, timeout=10.0):
        """Wait until every recorded connection is closed; True if so."""
        with self._changed:
            return self._changed.wait_for(lambda: all(c.closed for c in self._conns), timeout)

    def reset(self):
        with self._lock:
            self._conns, self._auths, self._msgs = [], [], []

    # recording, called from the loop thread --------------------------------

    def _new_connection(self, peername, tls):
        with self._changed:
            if tuple(peername[:2]) in self._ignore:
                return _ConnState(-1, tuple(peername[:2]), tls)  # probe: not recorded
            c = _ConnState(len(self._conns), tuple(peername[:2]), tls)
            self._conns.append(c)
            self._changed.notify_all()
            return c

    def _command(self, conn, verb, arg):
        with self._lock:
            conn.commands.append((verb, arg))

    def _buffered(self, conn, verb):
        with self._lock:
            conn.buffered.append(verb)

    def _auth_command(self, conn, mechanism):
        # Recorded at the AUTH verb (before TLS/mechanism checks) so that an AUTH
        # refused with 538 in "none" mode still counts as an attempt.
        with self._lock:
            if conn.id >= 0:
                self._auths.append(AuthAttempt(conn.id, mechanism, None, False))

    def _auth_result(self, conn, mechanism, login, ok):
        if conn.id < 0:
            return
        attempt = AuthAttempt(conn.id, mechanism, login, ok)
        with self._lock:
            # replace the placeholder _auth_command() left for this AUTH verb
            for i in range(len(self._auths) - 1, -1, -1):
                if self._auths[i].conn == conn.id:
                    if self._auths[i].login is None and not self._auths[i].success:
                        self._auths[i] = attempt
                    else:
                        self._auths.append(attempt)
                    break
            else:
                self._auths.append(attempt)
        if self.on_auth:
            self.on_auth(attempt)

    def _xoauth2(self, conn, user, token, ok, answer):
        if conn.id >= 0:
            with self._lock:
                self._xoauth2_log.append((conn.id, user, token, ok, answer))

    def _error(self, conn, text):
        with self._lock:
            conn.errors.append(text)

    def _set_tls(self, conn, tls):
        with self._lock:
            conn.tls = tls

    def _closed(self, conn):
        with self._changed:
            conn.closed = True
            self._changed.notify_all()

    def _data(self, conn, session, envelope, content):
        reply = "250 2.0.0 OK: queued as %d" % (len(self._msgs) + 1)
        m = re.search(rb"(?im)^X-Test-Reply:[ \t]*([245]\d\d)([^\r\n]*)",
                      content.split(b"\r\n\r\n", 1)[0])
        if m:
            code, rest = m.group(1).decode(), m.group(2).decode("utf-8", "replace").strip()
            reply = "%s %s" % (code, rest) if rest else DATA_REPLIES.get(code, code + " test")
        mail_from = envelope.mail_from
        msg = Message(conn=conn.id, mail_from="" if mail_from == "<>" else mail_from,
                      rcpt_tos=tuple(envelope.rcpt_tos),
                      mail_options=tuple(envelope.mail_options),
                      login=session.auth_data if session.authenticated else None,
                      tls=conn.tls, content=content, reply=reply)
        with self._changed:
            self._msgs.append(msg)
            self._changed.notify_all()
        if self.on_message:
            self.on_message(msg)
        return reply


# standalone -----------------------------------------------------------------

def _print_message(m):
    out = ["message conn=%d from=<%s> to=%s login=%s tls=%s size=%d reply=%r" % (
        m.conn, m.mail_from, ",".join("<%s>" % r for r in m.rcpt_tos), m.login, m.tls,
        len(m.content), m.reply)]
    for line in m.content.rstrip(b"\r\n").split(b"\r\n")[:12]:
        out.append("  | " + line.decode("utf-8", "replace"))
    print("\n".join(out), flush=True)


def _print_auth(a):
    print("auth conn=%d mechanism=%s login=%s %s" % (
        a.conn, a.mechanism, a.login, "ok" if a.success else "FAILED"), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="relay25 test upstream (aiosmtpd)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    ap.add_argument("--tls", choices=("starttls", "implicit", "none"), default="starttls")
    ap.add_argument("--cert", help="server certificate PEM (starttls/implicit)")
    ap.add_argument("--key", help="server private key PEM")
    ap.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    ap.add_argument("--print", action="store_true", help="print each message and AUTH")
    a = ap.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    users = {}
    for u in a.user:
        name, sep, pw = u.partition(":")
        if not sep:
            ap.error("--user wants NAME:PASSWORD")
        users[name] = pw
    try:
        peer = Peer(tls=a.tls, cert=a.cert, key=a.key, users=users, host=host or "127.0.0.1",
                    port=int(port or 0), on_message=_print_message if a.print else None,
                    on_auth=_print_auth if a.print else None)
    except (ValueError, OSError, ssl.SSLError) as e:
        ap.error(str(e))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with peer:
        print("listening %s" % peer.address, flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
