#!/usr/bin/python3
"""50 concurrent clients x 5 messages: every message arrives exactly once, with the
credentials of its own device."""

import collections
import smtplib
import threading

from relaytest import CLIENT_NAME, RelayTestCase, main, make_message

CLIENTS = 50
PER_CLIENT = 5


class ConcurrencyTest(RelayTestCase):
    def test_50_clients_5_messages_each(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        relay = self.start_relay({"main": self.upstream(peer)}, devices,
                                 relay={"allow": "127.0.0.0/24"})
        expect = {"127.0.0.2": self.SCANNER, "127.0.0.3": self.PRINTER}
        sent = {}          # Message-ID -> source address
        errors = []
        lock = threading.Lock()
        barrier = threading.Barrier(CLIENTS)

        def client(n):
            source = "127.0.0.%d" % (2 + n)
            try:
                barrier.wait(30)
                with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                                  source_address=(source, 0), timeout=120) as s:
                    for k in range(PER_CLIENT):
                        msgid = "<c%02d-m%d@client.test>" % (n, k)
                        msg = make_message("c%d m%d" % (n, k), msgid=msgid,
                                           body=b"client %d message %d\r\n" % (n, k))
                        refused = s.sendmail("c%d@example.org" % n,
                                             ["r%d-%d@example.net" % (n, k)], msg)
                        with lock:
                            if refused:
                                errors.append((source, k, refused))
                            sent[msgid] = source
                    s.quit()
            except Exception as e:
                with lock:
                    errors.append((source, repr(e)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running")
        self.assertEqual(errors, [])
        self.assertEqual(len(sent), CLIENTS * PER_CLIENT)

        msgs = peer.messages()
        ids = collections.Counter(m.header("Message-ID") for m in msgs)
        dup = {k: v for k, v in ids.items() if v != 1}
        self.assertEqual(dup, {}, "messages delivered more than once")
        self.assertEqual(set(ids), set(sent), "missing: %s" % sorted(set(sent) - set(ids))[:10])
        self.assertEqual(len(msgs), CLIENTS * PER_CLIENT)
        wrong = [(m.header("Message-ID"), sent[m.header("Message-ID")], m.login) for m in msgs
                 if m.login != expect.get(sent[m.header("Message-ID")], self.OFFICE)]
        self.assertEqual(wrong, [], "message relayed with another device's credentials")
        self.assertEqual(len(relay.wait_lines(r"\bstatus=sent\b", CLIENTS * PER_CLIENT)),
                         CLIENTS * PER_CLIENT)


if __name__ == "__main__":
    main()
