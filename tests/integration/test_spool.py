#!/usr/bin/python3
"""The durable spool: mode = spool, on_upstream_failure = queue, retries, failover,
bounces (dsn / keep), max_queue_age, a full spool (max_spool_size, a small tmpfs).

Every test has its own spool_dir and retry_min/retry_max of 1s/2s. No timing
assertions: time bounds only turn "never happened" into a failure. "Upstream down"
is a port bound but not listening (closed_port); "upstream back" closes that socket
and starts the peer on the same port."""

import asyncio
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import time

from relaytest import Relay, closed_port, main, make_message, strip_received
from spooltest import (QUEUED_RE, Script, SpoolTestCase, dsn_parts, parse_dsn, parse_env,
                       run_queue_cli)


def body_of(size, tag=b"x"):
    """CRLF lines of 76 octets, with a leading-dot line and 8-bit octets."""
    lines = [b".leading dot", b"caf\xc3\xa9 8bit"]
    n = 0
    while n < size:
        line = (tag * 76)[:76]
        lines.append(line)
        n += 78
    return b"\r\n".join(lines) + b"\r\n"


class SpoolTest(SpoolTestCase):

    def peer_or_closed(self, users, upstream_up):
        """(peer, None, upstreams) with a running peer, or (None, closed socket,
        upstreams) pointing at a port that refuses connections."""
        if upstream_up:
            peer = self.start_peer(users=users)
            return peer, None, {"main": self.upstream(peer)}
        closed, port = closed_port()
        self.addCleanup(closed.close)
        return None, closed, {"main": self.upstream(port=port)}

    def spool_setup(self, relay=None, upstream_up=False, own=False, upstreams=None,
                    device_extra=None):
        """Devices + (peer or closed port) + relay in spool mode.
        Returns (peer or None, closed socket or None, relay, users, config path)."""
        devices, users = self.default_devices()
        if device_extra:
            for d in devices.values():
                d.update(device_extra)
        peer, closed, ups = self.peer_or_closed(users, upstream_up)
        if upstreams is not None:
            ups = upstreams
        keys = self.spool_relay_keys(mode="spool")
        keys.update(relay or {})
        path = self.write_config(ups, devices, keys)
        r = self.start_own_relay(path) if own else self.start_relay(config=path)
        r.wait_lines(r"event=started", timeout=10)   # signal handlers and pid file in place
        return peer, closed, r, users, path

    # 1. spool mode: queued while upstream is down, delivered once it is back ----------

    def test_queued_while_down_delivered_after_restart(self):
        _, closed, r1, users, path = self.spool_setup(own=True)
        msg_a = make_message("null sender", body_of(3000))
        msg_b = make_message("three rcpts", body_of(300 * 1024, b"b"))
        qa = self.submit_queued(r1, "", ["one@example.net"], msg_a, source="127.0.0.2")
        qb = self.submit_queued(r1, "alice@example.org",
                                ["b1@example.net", "b2@example.net", "b3@example.net"], msg_b,
                                source="127.0.0.3", mail_options=["BODY=8BITMIME"])
        self.assertNotEqual(qa, qb)
        # committed: both files in q/, envelope as received
        for q in (qa, qb):
            self.assertIn(q + ".env", self.files("q"))
            self.assertIn(q + ".msg", self.files("q"))
        env_a = parse_env(os.path.join(self.spool, "q", qa + ".env"))
        env_b = parse_env(os.path.join(self.spool, "q", qb + ".env"))
        self.assertEqual((env_a["from"], env_a["rcpt"], env_a["device"], env_a["user"]),
                         ("", ["one@example.net"], "scanner", self.SCANNER))
        self.assertEqual((env_b["from"], env_b["rcpt"], env_b["device"], env_b["user"],
                          env_b["body"]),
                         ("alice@example.org", ["b1@example.net", "b2@example.net",
                                                "b3@example.net"], "printer", self.PRINTER,
                          "8BITMIME"))
        with open(os.path.join(self.spool, "q", qb + ".msg"), "rb") as f:
            self.assertEqual(strip_received(f.read()), msg_b)
        for area in ("q", "tmp", "failed"):
            mode = stat.S_IMODE(os.stat(os.path.join(self.spool, area)).st_mode)
            self.assertEqual(mode, 0o700, "%s/ mode %o" % (area, mode))
        # it tried upstream and deferred (nothing lost while down)
        r1.wait_lines(r"qid=%s .*status=deferred" % qa, timeout=20)
        self.stop_expect_0(r1)
        self.assertEqual(self.files("tmp"), [])
        self.assertEqual(sorted(self.files("q")), sorted(
            [qa + ".env", qa + ".msg", qb + ".env", qb + ".msg"]))

        # upstream comes back on that very port; a new relay25 picks the spool up
        peer = self.peer_on(closed, users)
        r2 = self.start_relay(config=path)
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r2)
        r2.wait_lines(r"qid=(%s|%s) .*status=sent bounce=-" % (qa, qb), n=2, timeout=20)
        msgs = peer.all_messages()
        self.assertEqual(len(msgs), 2, [(m.mail_from, m.rcpt_tos, m.reply) for m in msgs])
        by_subject = {m.header("Subject"): m for m in msgs}
        a, b = by_subject["null sender"], by_subject["three rcpts"]
        self.assertTrue(a.accepted and b.accepted)
        self.assertEqual((a.mail_from, a.rcpt_tos, a.login), ("", ("one@example.net",),
                                                             self.SCANNER))
        self.assertEqual((b.mail_from, b.rcpt_tos, b.login),
                         ("alice@example.org",
                          ("b1@example.net", "b2@example.net", "b3@example.net"), self.PRINTER))
        self.assertIn("BODY=8BITMIME", b.mail_options)
        self.assertEqual(strip_received(a.content), msg_a)
        self.assertEqual(strip_received(b.content), msg_b)
        for m, q in ((a, qa), (b, qb)):
            self.assertIn("id %s" % q, m.header("Received"))
            self.assertEqual(m.tls, "starttls")
        self.assertEqual(self.files("tmp"), [])
        self.assertEqual(self.files("failed"), [])

    def test_queued_while_down_delivered_by_retry(self):
        _, closed, r, users, _ = self.spool_setup()
        msg = make_message("retry", body_of(2000))
        q = self.submit_queued(r, "s@example.org", ["r@example.net"], msg)
        r.wait_lines(r"qid=%s .*status=deferred" % q, timeout=20)
        peer = self.peer_on(closed, users)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        r.wait_lines(r"qid=%s .*status=sent" % q, timeout=20)
        (m,) = peer.all_messages()
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual((m.mail_from, m.rcpt_tos, m.login),
                         ("s@example.org", ("r@example.net",), self.SCANNER))
        self.assertEqual(strip_received(m.content), msg)

    def test_sigusr1_retries_now(self):
        """retry_min = 1h: only SIGUSR1 (pid from <spool_dir>/relay25.pid) can bring the
        message out within the wait."""
        _, closed, r, users, _ = self.spool_setup(relay={"retry_min": "1h", "retry_max": "2h"})
        with open(os.path.join(self.spool, "relay25.pid")) as f:
            self.assertEqual(int(f.read().strip()), r.proc.pid)
        q = self.submit_queued(r, "s@example.org", ["r@example.net"], make_message("usr1"))
        r.wait_lines(r"qid=%s .*status=deferred" % q, timeout=20)
        peer = self.peer_on(closed, users)
        os.kill(r.proc.pid, signal.SIGUSR1)
        r.wait_lines(r"event=flush", timeout=10)
        peer.wait_messages(1, timeout=20)
        self.wait_spool_empty(r)
        (m,) = peer.messages()
        self.assertEqual(m.header("Subject"), "usr1")

    def test_pid_file_mode_0644_whatever_the_umask(self):
        """relay25.pid is for `relay25 queue` and scripts of other users: 0644 even
        under umask 077, and an old file left with 0600 is made 0644 too."""
        devices, _ = self.default_devices()
        closed, port = closed_port()
        self.addCleanup(closed.close)
        spool = os.path.join(self.dir, "spool-pid")
        os.makedirs(spool, mode=0o700)
        pidfile = os.path.join(spool, "relay25.pid")
        with open(pidfile, "w") as f:
            f.write("1\n")
        os.chmod(pidfile, 0o600)
        keys = self.spool_relay_keys(mode="spool", spool_dir=spool)
        path = self.write_config({"main": self.upstream(port=port)}, devices, keys,
                                 name="relay25-pid.ini")
        r = Relay(path, name="relay25-pid")
        self.addCleanup(self._reap, r)
        old = os.umask(0o077)
        try:
            r.start()
        finally:
            os.umask(old)
        r.wait_lines(r"event=started", timeout=15)  # the pid file comes after "listening"
        with open(pidfile) as f:
            self.assertEqual(int(f.read().strip()), r.proc.pid)
        self.assertEqual(os.stat(pidfile).st_mode & 0o777, 0o644)
        self.stop_expect_0(r)

    def test_sigusr1_as_soon_as_the_pid_file_exists(self):
        """A script (or `relay25 queue flush`) that signals the PID in
        <spool_dir>/relay25.pid the moment the file appears must not kill relay25:
        the file may only be there once SIGUSR1 is handled."""
        devices, users = self.default_devices()
        closed, port = closed_port()
        self.addCleanup(closed.close)
        died = []
        for attempt in range(5):
            spool = os.path.join(self.dir, "spool-%d" % attempt)
            keys = self.spool_relay_keys(mode="spool", spool_dir=spool)
            path = self.write_config({"main": self.upstream(port=port)}, devices, keys,
                                     name="relay25-%d.ini" % attempt)
            r = Relay(path, name="relay25-%d" % attempt)
            self.addCleanup(self._reap, r)
            t = threading.Thread(target=r.start, daemon=True)
            t.start()
            pidfile = os.path.join(spool, "relay25.pid")
            pid = None
            deadline = time.monotonic() + 15
            while pid is None and time.monotonic() < deadline:
                try:
                    with open(pidfile) as f:
                        pid = int(f.read())
                except (OSError, ValueError):
                    continue
            self.assertIsNotNone(pid, "no %s" % pidfile)
            os.kill(pid, signal.SIGUSR1)
            t.join(15)
            try:
                r.wait_lines(r"event=started", timeout=10)
            except AssertionError:
                pass
            if r.proc.poll() is not None:
                died.append((attempt, r.proc.returncode, r.tail(5)))
                continue
            self.stop_expect_0(r)
        self.assertEqual(died, [], "relay25 died of SIGUSR1 sent right after its pid file "
                                   "appeared (attempt, exit status, log tail)")

    # 2. passthrough + on_upstream_failure = queue -----------------------------------------

    def queue_setup(self, upstream_up=True):
        devices, users = self.default_devices()
        keys = self.spool_relay_keys(on_upstream_failure="queue")
        peer, closed, ups = self.peer_or_closed(users, upstream_up)
        r = self.start_relay(ups, devices, keys)
        return peer, closed, r, users

    def test_queue_when_upstream_refuses_connection(self):
        _, closed, r, users = self.queue_setup(upstream_up=False)
        msg = make_message("refused", body_of(5000))
        res = self.submit(r, "s@example.org", ["r1@example.net", "r2@example.net"], msg)
        self.assertEqual(res["mail"][0], 250, res)
        self.assertIn("queued", res["mail"][1])
        self.assertEqual([c for c, _ in res["rcpt"]], [250, 250], res)
        self.assertEqual(res["data"][0], 250, res)
        q = QUEUED_RE.search(res["data"][1]).group(1)
        self.assertIn(q + ".env", self.files("q"))
        r.wait_lines(r"qid=%s event=queue_fallback" % q, timeout=10)
        peer = self.peer_on(closed, users)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        (m,) = peer.all_messages()
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual((m.mail_from, m.rcpt_tos, m.login),
                         ("s@example.org", ("r1@example.net", "r2@example.net"), self.SCANNER))
        self.assertEqual(strip_received(m.content), msg)

    def test_queue_on_451_at_end_of_data(self):
        peer, _, r, _ = self.queue_setup()
        Script(peer, data=["451 4.3.0 try later (first attempt)"])
        msg = make_message("451 once", body_of(4000))
        q = self.submit_queued(r, "s@example.org", ["r@example.net"], msg,
                               mail_options=["BODY=8BITMIME"])
        self.assertIn(q + ".env", self.files("q"))
        env = parse_env(os.path.join(self.spool, "q", q + ".env"))
        self.assertEqual((env["from"], env["rcpt"]), ("s@example.org", ["r@example.net"]))
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r)
        first, second = peer.all_messages()
        self.assertTrue(first.reply.startswith("451"), first.reply)
        self.assertTrue(second.accepted, second.reply)
        self.assertEqual((second.mail_from, second.rcpt_tos, second.login),
                         ("s@example.org", ("r@example.net",), self.SCANNER))
        self.assertIn("BODY=8BITMIME", second.mail_options)
        self.assertEqual(strip_received(first.content), msg)
        self.assertEqual(second.content, first.content)   # one Received:, same id

    def test_queue_on_4xx_at_mail(self):
        peer, _, r, _ = self.queue_setup()
        Script(peer, mail=["451 4.3.2 not now"])
        msg = make_message("451 at MAIL")
        res = self.submit(r, "s@example.org", ["r@example.net"], msg)
        self.assertEqual(res["mail"][0], 250, res)
        self.assertEqual(res["data"][0], 250, res)
        self.assertTrue(QUEUED_RE.search(res["data"][1]), res)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        (m,) = peer.all_messages()
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual((m.mail_from, m.rcpt_tos), ("s@example.org", ("r@example.net",)))
        self.assertEqual(strip_received(m.content), msg)

    def test_queue_on_4xx_at_rcpt(self):
        """One of three recipients deferred at RCPT: upstream takes the other two at
        once, the deferred one goes to the spool and is delivered later."""
        peer, _, r, _ = self.queue_setup()
        Script(peer, rcpt={"two@example.net": ["450 4.2.1 mailbox busy"]})
        msg = make_message("450 at RCPT", body_of(3000))
        res = self.submit(r, "s@example.org",
                          ["one@example.net", "two@example.net", "three@example.net"], msg)
        self.assertEqual([c for c, _ in res["rcpt"]], [250, 250, 250], res)
        self.assertEqual(res["data"][0], 250, res)
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r)
        msgs = peer.all_messages()
        self.assertEqual(len(msgs), 2, [(m.rcpt_tos, m.reply) for m in msgs])
        self.assertTrue(all(m.accepted for m in msgs))
        self.assertEqual(msgs[0].rcpt_tos, ("one@example.net", "three@example.net"))
        self.assertEqual(msgs[1].rcpt_tos, ("two@example.net",))
        for m in msgs:
            self.assertEqual((m.mail_from, m.login), ("s@example.org", self.SCANNER))
            self.assertEqual(strip_received(m.content), msg)

    def test_5xx_passed_through_nothing_queued(self):
        peer, _, r, _ = self.queue_setup()
        res = self.submit(r, "s@example.org", ["r@example.net"],
                          make_message("spam", headers=["X-Test-Reply: 554"]))
        self.assertEqual(res["data"][0], 554, res)
        res = self.submit(r, "s@example.org", ["reject-me@example.net", "ok@example.net"],
                          make_message("rcpt 550"))
        self.assertEqual([c for c, _ in res["rcpt"]], [550, 250], res)
        self.assertEqual(res["data"][0], 250, res)
        self.assertFalse(QUEUED_RE.search(res["data"][1]), res)  # upstream's own reply
        r.wait_lines(r"status=bounced", timeout=10)
        r.wait_lines(r"status=sent", timeout=10)
        self.assertEqual(self.files("q"), [])
        # the tee copy is removed asynchronously (its last write may still be in flight)
        self.wait_for(lambda: self.files("tmp") == [], 10, "tmp/ empty", r)
        self.assertEqual(r.grep(r"status=queued|event=queue_fallback"), [])
        msgs = peer.all_messages()
        self.assertEqual([m.reply[:3] for m in msgs], ["554", "250"])
        self.assertEqual(msgs[1].rcpt_tos, ("ok@example.net",))

    # 3. permanent failures: DSN, keep, null sender ------------------------------------

    def assert_dsn(self, m, sender, failed, orig_subject, qid):
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual(m.mail_from, "", "a bounce has the null sender")
        self.assertEqual(m.rcpt_tos, (sender,))
        d = parse_dsn(m.content)
        self.assertIn(sender, d["To"])
        self.assertIn("MAILER-DAEMON", d["From"])
        self.assertEqual(d.get_content_type(), "multipart/report")
        self.assertEqual(d.get_param("report-type"), "delivery-status")
        self.assertEqual(d["Auto-Submitted"], "auto-replied")
        text, rcpts, reporting, headers = dsn_parts(d)
        self.assertIn("reporting-mta", reporting)
        self.assertEqual(reporting.get("x-relay25-queue-id"), qid)
        self.assertEqual([x["final-recipient"] for x in rcpts], ["rfc822; " + a for a in failed])
        for x in rcpts:
            self.assertEqual(x["action"], "failed")
            self.assertEqual(x["status"], "5.1.1")
            self.assertTrue(x["diagnostic-code"].startswith("smtp; 550"), x)
        for a in failed:
            self.assertIn(a, text)
        self.assertIsNotNone(headers)
        self.assertIn("Subject: " + orig_subject, headers)
        self.assertNotIn("hello", headers)   # headers only, not the body
        return rcpts

    def test_permanent_failure_bounces_dsn(self):
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, relay={"bounce": "dsn"})
        q = self.submit_queued(r, "alice@example.org", ["reject-x@example.net"],
                               make_message("will bounce"))
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        r.wait_lines(r"qid=%s .*status=bounced bounce=dsn" % q, timeout=10)
        (m,) = peer.all_messages()   # the original never got to DATA
        self.assert_dsn(m, "alice@example.org", ["reject-x@example.net"], "will bounce", q)
        self.assertEqual(m.login, self.SCANNER)     # sent with the device's credentials
        self.assertEqual(self.files("failed"), [])

    def test_bounce_keep_moves_to_failed(self):
        peer, _, r, _, path = self.spool_setup(upstream_up=True, relay={"bounce": "keep"})
        q = self.submit_queued(r, "alice@example.org", ["reject-x@example.net"],
                               make_message("kept"))
        self.wait_for(lambda: q + ".reason" in self.files("failed"), 30,
                      "failed/%s.reason" % q, r)
        self.wait_spool_empty(r)
        r.wait_lines(r"qid=%s .*status=bounced bounce=kept" % q, timeout=10)
        failed = self.files("failed")
        self.assertIn(q + ".env", failed)
        self.assertIn(q + ".msg", failed)
        env = parse_env(os.path.join(self.spool, "failed", q + ".env"))
        self.assertEqual(env["rcpt"], ["reject-x@example.net"])
        self.assertEqual(peer.all_messages(), [])
        with open(os.path.join(self.spool, "failed", q + ".reason")) as f:
            reason = f.read()
        # the reason must say why: upstream's 550 for the recipient
        self.assertIn("550", reason, "failed/%s.reason is %r" % (q, reason))
        self.assertIn("5.1.1", reason, "failed/%s.reason is %r" % (q, reason))
        cli = run_queue_cli(path, "list", "--failed")
        if cli is None:
            self.skipTest("relay25 has no queue command yet (rest of the test passed)")
        self.assertEqual(cli.returncode, 0, cli.stderr)
        self.assertIn(q, cli.stdout)
        self.assertIn("alice@example.org", cli.stdout)

    def test_keep_partial_failure_records_delivered_recipients(self):
        """bounce = keep, one of three recipients refused: the two delivered ones must
        stay recorded with the kept message (failed/<qid>.done, "ok <addr>" lines, the
        format of up_spool.h), or `queue retry-failed` sends them the message again."""
        peer, _, r, _, path = self.spool_setup(upstream_up=True, relay={"bounce": "keep"})
        rcpts = ["one@example.net", "reject-two@example.net", "three@example.net"]
        q = self.submit_queued(r, "alice@example.org", rcpts, make_message("keep partial"))
        self.wait_for(lambda: q + ".reason" in self.files("failed"), 30,
                      "failed/%s.reason" % q, r)
        self.wait_spool_empty(r)
        (m,) = peer.messages()
        self.assertEqual(m.rcpt_tos, ("one@example.net", "three@example.net"))
        done_path = os.path.join(self.spool, "failed", q + ".done")
        self.assertTrue(os.path.exists(done_path),
                        "failed/ holds %r: no %s.done, so which recipients were delivered "
                        "is lost" % (self.files("failed"), q))
        with open(done_path) as f:
            done = f.read().splitlines()
        self.assertIn("ok one@example.net", done)
        self.assertIn("ok three@example.net", done)
        self.assertTrue(any(li.startswith("failed reject-two@example.net 550") for li in done),
                        done)
        cli = run_queue_cli(path, "retry-failed")
        if cli is None:
            return
        self.assertEqual(cli.returncode, 0, cli.stdout + cli.stderr)
        # queued again: only reject-two is tried (and refused) again
        self.wait_for(lambda: q + ".reason" in self.files("failed"), 30,
                      "failed/%s.reason again" % q, r)
        self.wait_spool_empty(r)
        self.assertEqual([x.rcpt_tos for x in peer.messages()],
                         [("one@example.net", "three@example.net")],
                         "retry-failed delivered again to recipients that had it")

    def test_null_sender_failure_no_bounce(self):
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, relay={"bounce": "dsn"})
        q = self.submit_queued(r, "", ["reject-x@example.net"], make_message("null fails"))
        r.wait_lines(r"qid=%s from=<> .*status=bounced bounce=none" % q, timeout=30)
        self.wait_spool_empty(r)
        self.assertEqual(peer.all_messages(), [])
        self.assertEqual(self.files("failed"), [])
        self.assertEqual(r.grep(r"bounce=dsn"), [])

    # 4. failover ------------------------------------------------------------------------

    def test_failover_to_second_upstream(self):
        devices, users = self.default_devices()
        closed, dead_port = closed_port()
        self.addCleanup(closed.close)
        peer = self.start_peer(users=users)
        for d in devices.values():
            d["upstream"] = "dead, live"
        ups = {"dead": self.upstream(port=dead_port), "live": self.upstream(peer)}
        r = self.start_relay(ups, devices, self.spool_relay_keys(mode="spool"))
        msg = make_message("failover")
        q = self.submit_queued(r, "s@example.org", ["r@example.net"], msg)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        r.wait_lines(r"qid=%s relay=dead .*status=deferred" % q, timeout=10)
        r.wait_lines(r"qid=%s to=<r@example.net> relay=live status=sent" % q, timeout=10)
        (m,) = peer.all_messages()
        self.assertTrue(m.accepted, m.reply)
        self.assertEqual((m.mail_from, m.rcpt_tos, m.login),
                         ("s@example.org", ("r@example.net",), self.SCANNER))
        self.assertEqual(strip_received(m.content), msg)

    # 5. partial failure -------------------------------------------------------------------

    def test_partial_failure_bounces_only_the_failed(self):
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, own=True)
        msg = make_message("partial")
        rcpts = ["one@example.net", "reject-two@example.net", "three@example.net"]
        q = self.submit_queued(r, "alice@example.org", rcpts, msg)
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r)
        r.wait_lines(r"qid=%s .*status=bounced bounce=dsn" % q, timeout=10)
        msgs = peer.all_messages()
        self.assertEqual(len(msgs), 2, [(m.mail_from, m.rcpt_tos) for m in msgs])
        orig = [m for m in msgs if m.mail_from]
        dsn = [m for m in msgs if not m.mail_from]
        self.assertEqual(len(orig), 1)
        self.assertEqual(len(dsn), 1)
        self.assertEqual(orig[0].rcpt_tos, ("one@example.net", "three@example.net"))
        self.assertEqual(strip_received(orig[0].content), msg)
        self.assert_dsn(dsn[0], "alice@example.org", ["reject-two@example.net"], "partial", q)

    def test_bounce_to_refused_sender_is_not_bounced_again(self):
        """The sender itself is refused upstream: its DSN (null sender) fails for good
        and is dropped, not bounced again."""
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, relay={"bounce": "dsn"})
        q = self.submit_queued(r, "reject-sender@example.org", ["reject-x@example.net"],
                               make_message("double bounce"))
        r.wait_lines(r"qid=%s .*status=bounced bounce=dsn" % q, timeout=30)
        r.wait_lines(r"from=<> .*status=bounced bounce=none", timeout=30)
        self.wait_spool_empty(r)
        self.assertEqual(peer.all_messages(), [])
        self.assertEqual(len(r.grep(r"status=bounced bounce=")), 2, r.tail())
        self.assertEqual(self.files("failed"), [])

    def test_envelope_in_one_flight_only_when_offered(self):
        """RFC 2920: with PIPELINING offered (PipelinedSpoolTest), a delivery sends
        MAIL, every RCPT and DATA in one write, so upstream reads MAIL and each RCPT
        with the next command already waiting; without it, one command at a time."""
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, own=True)
        msg = make_message("flight")
        rcpts = ["one@example.net", "reject-two@example.net", "three@example.net"]
        self.submit_queued(r, "alice@example.org", rcpts, msg)
        peer.wait_messages(2, timeout=30)   # the message and the DSN for reject-two
        self.wait_spool_empty(r)
        orig = [m for m in peer.all_messages() if m.mail_from]
        self.assertEqual(orig[0].rcpt_tos, ("one@example.net", "three@example.net"))
        self.assertEqual(strip_received(orig[0].content), msg)
        conn = next(c for c in peer.connections() if "MAIL" in c.verbs())
        if peer.pipelining:
            self.assertEqual(conn.buffered[:4], ("MAIL", "RCPT", "RCPT", "RCPT"), conn)
        else:
            self.assertEqual(conn.buffered, (), conn)

    def test_pooled_session_answering_421_is_replaced_by_a_fresh_one(self):
        """The queue delivers the next message on the session it gave back to the
        pool; when upstream answers that MAIL with 421 (it was closing the idle
        connection), a fresh session carries the message at once, not a retry later."""
        peer, _, r, _, _ = self.spool_setup(upstream_up=True, own=True)
        Script(peer, mail=[None, "421 4.4.2 closing the idle connection"])
        for i in range(2):
            q = self.submit_queued(r, "s@example.org", ["r@example.net"],
                                   make_message("fresh %d" % i))
            self.assertTrue(r.wait_lines(r"qid=%s .*status=sent" % q, timeout=20), r.tail())
        self.assertEqual(r.grep(r"status=deferred"), [])
        self.assertEqual(len(peer.commands("MAIL")), 3, peer.commands("MAIL"))
        self.assertEqual(len(peer.connections()), 2, peer.connections())
        self.assertEqual(len(peer.messages()), 2)

    def test_rcpt_reply_that_never_comes_times_out_and_retries(self):
        """An upstream that answers MAIL and then stalls on RCPT: the delivery fails
        after command_timeout (also when MAIL, RCPT and DATA went in one flight,
        where each reply must re-arm the timer) and a retry delivers the message."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        r = self.start_relay({"main": self.upstream(peer)}, devices,
                             self.spool_relay_keys(mode="spool", command_timeout="2"))
        handler = peer._controller.handler
        orig = handler.handle_RCPT
        calls = []

        async def stall_first(server, session, envelope, address, opts):
            calls.append(address)
            if len(calls) == 1:
                await asyncio.sleep(60)
            return await orig(server, session, envelope, address, opts)
        handler.handle_RCPT = stall_first
        msg = make_message("stalled")
        q = self.submit_queued(r, "s@example.org", ["r@example.net"], msg)
        r.wait_lines(r"event=failed state=(rcpt|data) error=timeout", timeout=20)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        self.assertEqual([strip_received(m.content) for m in peer.messages()], [msg])
        # the status line may follow the files' removal: wait for it, do not grep at once
        self.assertTrue(r.wait_lines(r"qid=%s .*status=sent" % q, timeout=20), r.tail())

    def test_partial_temporary_failure_retries_only_deferred(self):
        """One recipient deferred (450 at RCPT), the other delivered: .done records the
        delivered one, and after a restart only the deferred one is tried again."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        Script(peer, rcpt={"two@example.net": ["450 4.2.1 busy"]})
        keys = self.spool_relay_keys(mode="spool", retry_min="1h", retry_max="2h")
        path = self.write_config({"main": self.upstream(peer)}, devices, keys)
        r1 = self.start_own_relay(path)
        msg = make_message("half")
        q = self.submit_queued(r1, "s@example.org", ["one@example.net", "two@example.net"], msg)
        r1.wait_lines(r"qid=%s .*status=deferred" % q, timeout=20)
        with open(os.path.join(self.spool, "q", q + ".done")) as f:
            self.assertEqual(f.read(), "ok one@example.net\n")
        self.stop_expect_0(r1)
        r2 = self.start_relay(config=path)    # picks the message up at start
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r2)
        msgs = peer.all_messages()
        self.assertEqual([m.rcpt_tos for m in msgs], [("one@example.net",), ("two@example.net",)])
        self.assertTrue(all(m.accepted for m in msgs))
        for m in msgs:
            self.assertEqual(strip_received(m.content), msg)

    # 6. max_queue_age --------------------------------------------------------------------

    def test_expired_message_kept_in_failed(self):
        _, _, r, _, _ = self.spool_setup(relay={"max_queue_age": "2s", "bounce": "keep"})
        q = self.submit_queued(r, "alice@example.org", ["r@example.net"], make_message("old"))
        self.wait_for(lambda: q + ".reason" in self.files("failed"), 30,
                      "failed/%s.reason" % q, r)
        self.wait_spool_empty(r)
        with open(os.path.join(self.spool, "failed", q + ".reason")) as f:
            reason = f.read()
        self.assertIn("expired", reason)
        # and why it never got out: the last attempt's error (upstream down)
        self.assertRegex(reason, r"expired after 2 seconds in the queue; last error: 4\d\d "
                                 r"[^\n]*connection")
        self.assertIn(q + ".msg", self.files("failed"))
        r.wait_lines(r"qid=%s .*status=bounced bounce=kept" % q, timeout=10)

    # 7. a full spool ------------------------------------------------------------------------

    def test_max_spool_size(self):
        """max_spool_size = 10K: a 6 KB message fits, the next does not (452 at MAIL
        with SIZE=, at end of DATA without); once the queue drained, it fits again."""
        _, closed, r, users, _ = self.spool_setup(relay={"max_spool_size": "10K"})
        msg1 = make_message("first", body_of(6000, b"1"))
        msg2 = make_message("second", body_of(6000, b"2"))
        q1 = self.submit_queued(r, "s@example.org", ["r@example.net"], msg1)
        res = self.submit(r, "s@example.org", ["r@example.net"], msg2,
                          mail_options=["SIZE=%d" % len(msg2)])
        self.assertEqual(res["mail"][0], 452, res)
        self.assertIn("4.3.1", res["mail"][1])
        res = self.submit(r, "s@example.org", ["r@example.net"], msg2)
        self.assertEqual(res["mail"][0], 250, res)
        self.assertEqual(res["data"][0], 452, res)
        self.assertIn("4.3.1", res["data"][1])
        self.wait_for(lambda: not self.files("tmp"), 10, "tmp/ empty", r)
        self.assertEqual(self.files("q"), [q1 + ".env", q1 + ".msg"])
        # upstream back: the queue drains, and the same message fits now
        peer = self.peer_on(closed, users)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        q2 = self.submit_queued(r, "s@example.org", ["r@example.net"], msg2,
                                mail_options=["SIZE=%d" % len(msg2)])
        peer.wait_messages(2, timeout=30)
        self.wait_spool_empty(r)
        msgs = peer.all_messages()
        self.assertEqual([m.header("Subject") for m in msgs], ["first", "second"])
        self.assertEqual(strip_received(msgs[1].content), msg2)
        self.assertIn("id %s" % q2, msgs[1].header("Received"))

    def test_full_tmpfs(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        mnt = tempfile.mkdtemp(prefix="tmpfs-", dir=self.dir)
        rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", mnt],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if rc.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % rc.stdout.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        self.spool = mnt
        _, closed, r, users, _ = self.spool_setup()
        accepted, refused = [], []
        for i in range(40):
            msg = make_message("fill %d" % i, body_of(100 * 1024, b"%d" % (i % 10)),
                               msgid="<fill-%d@client.test>" % i)
            res = self.submit(r, "s@example.org", ["r@example.net"], msg)
            self.assertEqual(res["mail"][0], 250, res)
            code, text = res["data"]
            if code == 250:
                self.assertTrue(QUEUED_RE.search(text), text)
                accepted.append(msg)
                continue
            refused.append((code, text))
            break
        self.assertTrue(refused, "no 452 after %d messages of 100 KiB on a 1 MiB tmpfs"
                        % len(accepted))
        self.assertGreater(len(accepted), 0)
        # smaller and smaller messages: the disk fills up at other steps (the data,
        # the .env); each gets 250 or 452, nothing else
        for i, size in enumerate((60000, 30000, 15000, 8000, 4000, 2000, 1000, 300, 50)):
            msg = make_message("small %d" % i, body_of(size, b"s"),
                               msgid="<small-%d@client.test>" % i)
            res = self.submit(r, "s@example.org", ["r@example.net"], msg)
            if res["mail"][0] != 250:
                refused.append(res["mail"])
                continue
            code, text = res["data"]
            if code == 250:
                self.assertTrue(QUEUED_RE.search(text), text)
                accepted.append(msg)
            else:
                refused.append((code, text))
        for code, text in refused:
            self.assertEqual(code, 452, refused)
            self.assertIn("4.3.1", text)
        self.wait_for(lambda: not self.files("tmp"), 10,
                      "tmp/ empty (left: %r)" % (self.files("tmp"),), r)
        # every message that got 250 is complete on disk
        n_env = [f for f in self.files("q") if f.endswith(".env")]
        self.assertEqual(len(n_env), len(accepted))
        # still serving; upstream back: everything acknowledged arrives, then a new
        # message fits again
        peer = self.peer_on(closed, users)
        peer.wait_messages(len(accepted), timeout=60)
        self.wait_spool_empty(r, timeout=60)
        last = make_message("after full", body_of(2000))
        self.submit_queued(r, "s@example.org", ["r@example.net"], last)
        peer.wait_messages(len(accepted) + 1, timeout=30)
        self.wait_spool_empty(r)
        got = [m for m in peer.messages()]
        self.assertEqual(len(got), len(accepted) + 1, "duplicates or losses")
        bodies = sorted(strip_received(m.content) for m in got)
        self.assertEqual(bodies, sorted(accepted + [last]))
        self.assertEqual(self.files("tmp"), [])


class GroupCommitTest(SpoolTestCase):
    """Group commit: commits that start while one is in flight share the next
    batch; the counters relay25 logs at exit (event=commit_stats) show one
    thread-pool job per batch for small messages and one directory fsync per
    batch on top of two per message."""

    peer_or_closed = SpoolTest.peer_or_closed
    spool_setup = SpoolTest.spool_setup

    def stats(self, r):
        (line,) = r.grep(r"event=commit_stats")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    def test_concurrent_small_messages_share_batches(self):
        _, closed, r, _users, _path = self.spool_setup(upstream_up=False, own=True)
        clients, each = 12, 3
        codes = []

        def client(c):
            for i in range(each):
                msg = make_message("batch %d.%d" % (c, i), body_of(1500))
                res = self.submit(r, "s%d@example.org" % c, ["r@example.net"], msg)
                codes.append(res["data"][0] if res["data"] else None)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(codes, [250] * (clients * each))
        n = clients * each
        self.stop_expect_0(r)    # the whole log is read once relay25 has exited
        batches = [int(x) for li in r.grep(r"event=commit_batch messages=")
                   for x in re.findall(r"event=commit_batch messages=(\d+)", li)]
        self.assertEqual(sum(batches), n)
        st = self.stats(r)
        self.assertEqual(st["messages"], n)
        self.assertEqual(st["batches"], len(batches))
        self.assertEqual(st["jobs"], st["batches"])           # small: nothing streamed before
        self.assertEqual(st["fsyncs"], 2 * n + st["batches"])  # .msg + .env each, q/ per batch
        self.assertEqual(len([f for f in self.files("q") if f.endswith(".env")]), n)
        self.assertEqual(len([f for f in self.files("q") if f.endswith(".msg")]), n)
        self.assertEqual(self.files("tmp"), [])

    def test_large_message_streamed_then_committed(self):
        peer, _, r, _users, _path = self.spool_setup(upstream_up=True, own=True)
        msg = make_message("large", body_of(1 << 20))
        self.submit_queued(r, "s@example.org", ["r@example.net"], msg)
        peer.wait_messages(1, timeout=30)
        self.wait_spool_empty(r)
        (m,) = peer.all_messages()
        self.assertEqual(strip_received(m.content), msg)
        self.stop_expect_0(r)
        st = self.stats(r)
        self.assertEqual((st["messages"], st["batches"]), (1, 1))
        self.assertGreaterEqual(st["jobs"], 1 + (1 << 20) // (80 * 1024))  # streamed writes


class PipelinedSpoolTest(SpoolTest):
    """Every case above again, against an upstream that offers PIPELINING: the
    replies to a pipelined envelope are matched to their commands in order."""

    def start_peer(self, tls="starttls", users=None, pki=None, **kw):
        kw.setdefault("pipelining", True)
        return super().start_peer(tls=tls, users=users, pki=pki, **kw)


if __name__ == "__main__":
    main()
