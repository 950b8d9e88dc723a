#!/usr/bin/python3
"""Crash safety of the spool: 10 concurrent clients submit 300 messages (unique
Message-IDs) in spool mode while relay25 is killed with SIGKILL at random moments
(KILLS times) and restarted on the same port and spool_dir. A second run kills
during group commits: 20 clients, and each kill follows a batch of several
messages starting (the debug line event=commit_batch_start), so messages are
inside a batch (written, fsync'd, renamed, or waiting for the directory fsync). A client retries a
message that did not get 250 (connection error, disconnect or 4xx) until it does.
At the end (relay running, upstream up all along) the spool must drain, and every
message that got 250 must have arrived upstream. Duplicates are allowed only for
messages in flight at a kill: one committed whose 250 was lost (the client sends
it again) or one upstream accepted before its files were removed; their number is
printed and bounded by KILLS * (CLIENTS + upstream max_connections).

No timing assertions: waits are bounded only to turn "never" into a failure.
RELAY25_CRASH_SEED=N repeats a run's kill moments."""

import collections
import os
import random
import re
import signal
import smtplib
import socket
import sys
import threading
import time

from relaytest import CLIENT_NAME, Relay, main, make_message
from spooltest import SpoolTestCase

CLIENTS = 10
MESSAGES = 300
KILLS = 5
BATCH_CLIENTS = 20
BATCH_KILLS = 8
BATCH_RE = re.compile(r"event=commit_batch_start messages=(\d+)")
MAX_CONNECTIONS = 4          # [upstream] max_connections (the default, written out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SpoolCrashTest(SpoolTestCase):

    def test_sigkill_during_submission(self):
        self.crash_run(CLIENTS, MESSAGES, KILLS, batches=False)

    def test_sigkill_during_batches(self):
        self.crash_run(BATCH_CLIENTS, MESSAGES, BATCH_KILLS, batches=True)

    def crash_run(self, nclients, nmsgs, nkills, batches):
        seed = int(os.environ.get("RELAY25_CRASH_SEED") or random.randrange(1 << 30))
        rnd = random.Random(seed)
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        port = free_port()
        keys = self.spool_relay_keys(mode="spool", listen="127.0.0.1:%d" % port)
        path = self.write_config({"main": dict(self.upstream(peer),
                                               max_connections=MAX_CONNECTIONS)},
                                 devices, keys)
        relays = []
        lock = threading.Lock()

        def start():
            deadline = time.monotonic() + 15
            while True:
                r = Relay(path, name="relay25-%d" % len(relays))
                self.addCleanup(self._reap, r)
                try:
                    r.start()
                    r.wait_lines(r"event=started", timeout=10)
                    break
                except AssertionError:
                    # the port may still be held by the killed instance's sockets
                    if r.proc.poll() is None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            with lock:
                relays.append(r)
            return r

        current = start()
        t0 = time.monotonic()

        # the messages, in per-client lists
        msgs = {}
        for i in range(nmsgs):
            mid = "<crash-%03d-%s@client.test>" % (i, os.urandom(4).hex())
            body = b"message %d\r\n" % i + (b"x" * 76 + b"\r\n") * (i % 50 + 1)
            msgs[mid] = make_message("crash %d" % i, body, msgid=mid)
        order = list(msgs)
        work = [order[c::nclients] for c in range(nclients)]
        acked = {}                       # Message-ID -> queue id
        attempts = collections.Counter()  # Message-ID -> transactions tried
        failures = []                     # unexpected replies (5xx) / exceptions
        progress = threading.Condition()

        def client(c):
            source = "127.0.0.%d" % (2 + c % 2)
            for mid in work[c]:
                while True:
                    attempts[mid] += 1
                    try:
                        with smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT_NAME,
                                          source_address=(source, 0), timeout=30) as s:
                            # raises unless every RCPT and the end of DATA got 250
                            s.sendmail("sender%d@example.org" % c,
                                       ["r%d@example.net" % c, "x@example.net"], msgs[mid])
                            with progress:
                                acked[mid] = True
                                progress.notify_all()
                            try:
                                s.quit()
                            except OSError:
                                pass
                        break
                    except OSError as e:   # smtplib.SMTPException is an OSError
                        code = 0
                        if isinstance(e, smtplib.SMTPResponseException):
                            code = e.smtp_code
                        elif isinstance(e, smtplib.SMTPRecipientsRefused):
                            code = max(x for x, _ in e.recipients.values())
                        if code >= 500:
                            failures.append((mid, code, str(e)))
                            break
                        time.sleep(0.05 + rnd.random() * 0.2)

        # kills at random points of the submission: after a random number of acks,
        # plus a random delay so that the kill does not line up with a reply
        thresholds = sorted(rnd.sample(range(15, nmsgs - 15), nkills))
        kills = []

        in_batch = []                     # per kill: the relay's last batch line was a start

        def batch_lines(r, seen):
            """Waits for a batch of 2+ messages starting after line number seen
            (no longer once every message got its 250: no batch is coming)."""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and r.alive() and len(acked) < nmsgs:
                ls = r.lines()
                for li in ls[seen:]:
                    m = BATCH_RE.search(li)
                    if m and int(m.group(1)) >= 2:
                        return
                seen = len(ls)
                time.sleep(0.001)

        def killer():
            nonlocal current
            for th in thresholds:
                with progress:
                    progress.wait_for(lambda: len(acked) >= th, timeout=60)
                with lock:
                    r = current
                if batches:
                    batch_lines(r, len(r.lines()))
                else:
                    time.sleep(rnd.random() * 0.05)
                r.proc.send_signal(signal.SIGKILL)
                r.proc.wait()
                for t in r._readers:
                    t.join(5)
                kills.append(len(acked))
                last = [li for li in r.lines() if "event=commit_batch" in li][-1:]
                in_batch.append(bool(last) and "commit_batch_start" in last[0])
                current = start()

        threads = [threading.Thread(target=client, args=(c,), daemon=True)
                   for c in range(nclients)]
        kt = threading.Thread(target=killer, daemon=True)
        for t in threads:
            t.start()
        kt.start()
        for t in threads:
            t.join(90)
        kt.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running")
        self.assertFalse(kt.is_alive(), "killer still running")
        t_submit = time.monotonic() - t0
        self.assertEqual(failures, [])
        self.assertEqual(len(acked), nmsgs)
        self.assertEqual(len(kills), nkills)
        batch_sizes = [int(m.group(1)) for r in relays for li in r.lines()
                       for m in [BATCH_RE.search(li)] if m]

        # the last relay drains the spool
        last = current
        self.assertTrue(last.alive(), last.tail())
        self.wait_for(lambda: not [f for f in self.files("q") if f.endswith(".env")], 60,
                      "spool q/ empty (left: %d .env)" % len(
                          [f for f in self.files("q") if f.endswith(".env")]), last)
        t_drain = time.monotonic() - t0

        arrived = collections.Counter()
        qids = collections.defaultdict(list)     # Message-ID -> queue ids (Received: id)
        for m in peer.messages():
            arrived[m.header("Message-ID")] += 1
            q = re.search(r"\bid ([0-9a-f]{16})\b", m.header("Received") or "")
            qids[m.header("Message-ID")].append(q.group(1) if q else "?")
        missing = sorted(set(acked) - set(arrived))
        unknown = sorted(set(arrived) - set(msgs))
        dups = sum(n - 1 for n in arrived.values() if n > 1)
        dup_ids = sorted(k for k, n in arrived.items() if n > 1)
        # a copy with the same queue id was delivered again (killed between upstream's
        # 250 and the removal); another queue id: committed, 250 lost, sent again
        redelivered = sum(len(v) - len(set(v)) for v in qids.values())
        resent = dups - redelivered
        retried = sum(1 for k in msgs if attempts[k] > 1)
        lines = []
        for i, r in enumerate(relays):
            lines += ["[relay %d] %s" % (i, li) for li in r.grep(
                r"event=(unreadable|spool_error|spool_failed|device_missing)|\berror\b.*spool")]
        sys.stderr.write(
            "\ncrash test (seed %d): %d messages, %d clients, %d SIGKILLs at %s acks; "
            "%d messages retried by clients; submitted in %.1fs, drained at %.1fs; "
            "arrived %d, lost %d, duplicates %d (%d delivered twice from the spool, %d "
            "committed twice after a lost 250) %s; batches %d, largest %d, kills inside a "
            "batch %d of %d\n" % (
                seed, nmsgs, nclients, len(kills), kills, retried, t_submit, t_drain,
                sum(arrived.values()), len(missing), dups, redelivered, resent, dup_ids[:10],
                len(batch_sizes), max(batch_sizes or [0]), sum(in_batch), len(in_batch)))
        for li in lines[:20]:
            sys.stderr.write(li + "\n")

        self.assertEqual(missing, [], "acknowledged with 250 but never arrived (seed %d)" % seed)
        self.assertEqual(unknown, [])
        self.assertEqual(self.files("tmp"), [])
        self.assertEqual(self.files("failed"), [])
        self.assertEqual([li for li in lines if "unreadable" in li], [],
                         "spool files unreadable after a crash")
        self.assertLessEqual(dups, nkills * (nclients + MAX_CONNECTIONS),
                             "more duplicates than messages in flight at the kills")
        # every envelope as sent
        for m in peer.messages():
            i = int(re.search(r"crash (\d+)", m.header("Subject")).group(1))
            c = order.index(m.header("Message-ID")) % nclients
            self.assertEqual((m.mail_from, m.rcpt_tos, m.login),
                             ("sender%d@example.org" % c, ("r%d@example.net" % c, "x@example.net"),
                              self.SCANNER if c % 2 == 0 else self.PRINTER), i)
        self.stop_expect_0(last)


if __name__ == "__main__":
    main()
