#!/usr/bin/python3
"""One upstream, max_connections = 2, two kinds of traffic at once: a passthrough
device's clients and a spool-mode device's queued deliveries. The pool counts
both together, so the upstream never sees more than 2 sessions at a time
(counted on its side), and every message arrives exactly once."""
import collections
import threading

from relaytest import main, make_message
from spooltest import SpoolTestCase

PASSTHROUGH_CLIENTS = 4
SPOOLED = 8


class PoolConcurrencyTest(SpoolTestCase):
    def count_peak(self, peer):
        """Wraps the peer's connection records: returns a dict whose "peak" is the
        most connections open at once (the readiness probe left out)."""
        state = {"open": 0, "peak": 0}
        lock = threading.Lock()
        new, closed = peer._new_connection, peer._closed

        def on_new(peername, tls):
            c = new(peername, tls)
            if c.id >= 0:
                with lock:
                    state["open"] += 1
                    state["peak"] = max(state["peak"], state["open"])
            return c

        def on_closed(c):
            if c.id >= 0:
                with lock:
                    state["open"] -= 1
            closed(c)

        peer._new_connection, peer._closed = on_new, on_closed
        return state

    def test_devices_and_queue_share_max_connections(self):
        devices, users = self.default_devices()
        devices["printer"]["mode"] = "spool"  # 127.0.0.3: queued deliveries
        # each end of DATA takes a while, so sessions overlap
        peer = self.start_peer(users=users, data_delay=0.2)
        state = self.count_peak(peer)
        relay = self.start_relay({"main": self.upstream(peer, max_connections="2")}, devices,
                                 self.spool_relay_keys(command_timeout="60"))
        relay.wait_lines(r"event=started", timeout=10)

        errors, sent = [], []
        lock = threading.Lock()
        barrier = threading.Barrier(PASSTHROUGH_CLIENTS + 1)

        def passthrough(n):
            try:
                barrier.wait(30)
                for k in range(2):
                    msgid = "<p%d-%d@client.test>" % (n, k)
                    refused = self.send_mail(relay, "p%d@example.org" % n, ["r@example.net"],
                                             make_message("pass %d %d" % (n, k), msgid=msgid),
                                             source="127.0.0.2")
                    with lock:
                        (errors.append(refused) if refused else sent.append(msgid))
            except Exception as e:  # noqa: BLE001 - asserted below
                with lock:
                    errors.append(repr(e))

        def spooled():
            try:
                barrier.wait(30)
                for k in range(SPOOLED):
                    msgid = "<q%d@client.test>" % k
                    self.submit_queued(relay, "q@example.org", ["r@example.net"],
                                       make_message("queued %d" % k, msgid=msgid),
                                       source="127.0.0.3")
                    with lock:
                        sent.append(msgid)
            except Exception as e:  # noqa: BLE001 - asserted below
                with lock:
                    errors.append(repr(e))

        threads = [threading.Thread(target=passthrough, args=(n,))
                   for n in range(PASSTHROUGH_CLIENTS)]
        threads.append(threading.Thread(target=spooled))
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running")
        self.assertEqual(errors, [], relay.tail(40))
        total = PASSTHROUGH_CLIENTS * 2 + SPOOLED
        self.assertEqual(len(sent), total)

        msgs = peer.wait_messages(total, timeout=120)
        self.wait_spool_empty(relay, timeout=60)
        ids = collections.Counter(m.header("Message-ID") for m in peer.messages())
        self.assertEqual(dict(ids), {i: 1 for i in sent}, "every message exactly once")
        logins = {m.header("Message-ID"): m.login for m in msgs}
        self.assertTrue(all(logins[i] == (self.PRINTER if i.startswith("<q") else self.SCANNER)
                            for i in sent), logins)
        self.assertLessEqual(state["peak"], 2, "sessions open at once on the upstream")
        self.assertGreaterEqual(state["peak"], 1)


if __name__ == "__main__":
    main()
