"""Helpers for the spool tests (test_spool.py, test_spool_crash.py).

SpoolTestCase   RelayTestCase plus: a spool_dir per test, relays the test stops or
                kills itself (own=True), the spool's files, bounded waits, a
                submit() that returns every reply, a peer started on a given port,
                and Script (stateful replies for a Peer: the first N end-of-DATA,
                MAIL or RCPT replies of a kind can be made 4xx/5xx, then the peer
                behaves normally again).
"""

import dataclasses
import email
import email.policy
import os
import re
import smtplib
import subprocess
import threading
import time

from relaytest import CLIENT_NAME, RELAY25_BIN, RelayTestCase

QUEUED_RE = re.compile(r"queued as ([0-9a-f]{16})\b")
SPOOL_ENV_KEYS = ("relay25-spool", "created", "device", "user", "client", "helo", "body",
                  "from")


def parse_env(path):
    """A .env file (up_spool.h) as {key: value, "rcpt": [..]}; order is checked."""
    with open(path, "rb") as f:
        text = f.read().decode()
    out = {"rcpt": []}
    keys = []
    for line in text.split("\n"):
        if not line:
            continue
        k, _, v = line.partition(" ")
        keys.append(k)
        if k == "rcpt":
            out["rcpt"].append(v)
        else:
            out[k] = v
    want = list(SPOOL_ENV_KEYS) + ["rcpt"] * len(out["rcpt"])
    if "route" in out:   # only when a [route] applies, right after "user"
        want.insert(want.index("user") + 1, "route")
    if keys != want:
        raise AssertionError("%s: keys %r, want %r; text:\n%s" % (path, keys, want, text))
    return out


class Script:
    """Stateful replies for a Peer (its own replies are stateless, chosen by header).
    data:  list of end-of-DATA replies for the next transactions (then the normal one)
    mail:  list of MAIL replies for the next MAIL commands
    rcpt:  {address: [replies for its next RCPTs]}
    The peer still records every DATA transaction, with the reply it really gave."""

    def __init__(self, peer, data=(), mail=(), rcpt=None):
        self.peer = peer
        self.lock = threading.Lock()
        self.data = list(data)
        self.mail = list(mail)
        self.rcpt = {k.lower(): list(v) for k, v in (rcpt or {}).items()}
        orig_data = peer._data
        handler = peer._controller.handler
        orig_rcpt = handler.handle_RCPT

        def data_hook(conn, session, envelope, content):
            reply = orig_data(conn, session, envelope, content)
            with self.lock:
                override = self.data.pop(0) if self.data else None
            if override is None:
                return reply
            with peer._lock:   # the loop thread is the only writer: _msgs[-1] is ours
                peer._msgs[-1] = dataclasses.replace(peer._msgs[-1], reply=override)
            return override

        async def mail_hook(server, session, envelope, address, mail_options):
            with self.lock:
                override = self.mail.pop(0) if self.mail else None
            if override is not None:
                return override
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            return "250 OK"

        async def rcpt_hook(server, session, envelope, address, rcpt_options):
            with self.lock:
                lst = self.rcpt.get(address.lower())
                override = lst.pop(0) if lst else None
            if override is not None:
                return override
            return await orig_rcpt(server, session, envelope, address, rcpt_options)

        peer._data = data_hook
        # aiosmtpd looks hooks up with getattr per connection: instance attributes work
        handler.handle_MAIL = mail_hook
        handler.handle_RCPT = rcpt_hook


class SpoolTestCase(RelayTestCase):
    RETRY = {"retry_min": "1s", "retry_max": "2s"}

    def setUp(self):
        super().setUp()
        self.spool = os.path.join(self.dir, "spool")

    # config -------------------------------------------------------------------------

    def spool_relay_keys(self, **extra):
        keys = {"spool_dir": self.spool}
        keys.update(self.RETRY)
        keys.update(extra)
        return keys

    # peers ----------------------------------------------------------------------------

    def peer_on(self, closed, users, **kw):
        """Close the socket from closed_port() and start a peer on its port."""
        port = closed.getsockname()[1]
        closed.close()
        return self.start_peer(users=users, port=port, **kw)

    # the spool --------------------------------------------------------------------------

    def files(self, area="q"):
        d = os.path.join(self.spool, area)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def wait_for(self, pred, timeout, what, relay=None):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0fs%s" % (
                    what, timeout, "; log:\n" + relay.tail(60) if relay else ""))
            time.sleep(0.1)

    def wait_spool_empty(self, relay=None, timeout=30):
        self.wait_for(lambda: not self.files("q"), timeout,
                      "spool q/ empty (left: %r)" % (self.files("q"),), relay)

    # clients ----------------------------------------------------------------------------

    def submit(self, relay, mail_from, rcpts, msg, source="127.0.0.2", mail_options=()):
        """One transaction; returns {"mail": (code, text), "rcpt": [(code, text)],
        "data": (code, text) or None} (None: not reached, no recipient accepted)."""
        out = {"mail": None, "rcpt": [], "data": None}
        with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                          source_address=(source, 0), timeout=60) as s:
            s.ehlo()
            code, text = s.mail(mail_from, list(mail_options))
            out["mail"] = (code, text.decode("utf-8", "replace"))
            if code != 250:
                s.rset()
                s.quit()
                return out
            for r in rcpts:
                code, text = s.rcpt(r)
                out["rcpt"].append((code, text.decode("utf-8", "replace")))
            if any(c == 250 for c, _ in out["rcpt"]):
                try:
                    code, text = s.data(msg)
                except smtplib.SMTPDataError as e:
                    code, text = e.smtp_code, e.smtp_error
                out["data"] = (code, text.decode("utf-8", "replace"))
            else:
                s.rset()
            s.quit()
        return out

    def submit_queued(self, relay, mail_from, rcpts, msg, **kw):
        """submit(), expecting 250 ... queued as QID at end of DATA; returns QID."""
        res = self.submit(relay, mail_from, rcpts, msg, **kw)
        self.assertIsNotNone(res["data"], res)
        code, text = res["data"]
        self.assertEqual(code, 250, res)
        m = QUEUED_RE.search(text)
        self.assertTrue(m, "no queue id in %r" % text)
        return m.group(1)


def parse_dsn(content):
    """The peer's content of a DSN as an email.message.EmailMessage."""
    return email.message_from_bytes(content, policy=email.policy.compat32)


def dsn_parts(msg):
    """(text part, [per-recipient field dicts], reporting fields, headers part) of a
    multipart/report; delivery-status parsed by hand (field blocks split on
    blank lines)."""
    parts = msg.get_payload()
    text = status = headers = None
    for p in parts:
        ct = p.get_content_type()
        if ct == "text/plain":
            text = p.get_payload(decode=True).decode("ascii", "replace")
        elif ct == "message/delivery-status":
            status = p
        elif ct == "text/rfc822-headers":
            headers = p.get_payload(decode=False)
    blocks = []
    if status is not None:
        # compat32 parses message/delivery-status into a list of Message blocks
        pl = status.get_payload()
        if isinstance(pl, list):
            blocks = [dict((k.lower(), v.strip()) for k, v in b.items()) for b in pl]
        else:
            for blk in re.split(r"\r?\n\r?\n", pl.strip()):
                d = {}
                for line in blk.splitlines():
                    k, _, v = line.partition(":")
                    d[k.strip().lower()] = v.strip()
                blocks.append(d)
    return text, blocks[1:], (blocks[0] if blocks else {}), headers


def run_queue_cli(config, *args, timeout=30):
    """`relay25 queue ARGS -c config`; None when the binary has no queue command."""
    r = subprocess.run([RELAY25_BIN, "queue", *args, "-c", config], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = r.stderr.decode("utf-8", "replace")
    if "unknown command" in err:
        return None
    r.stdout = r.stdout.decode("utf-8", "replace")
    r.stderr = err
    return r
