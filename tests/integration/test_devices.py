#!/usr/bin/python3
"""Upstream credentials chosen by the client's source address."""

from relaytest import RelayTestCase, main, make_message


class DevicesTest(RelayTestCase):
    def test_two_devices_two_users(self):
        peer, relay = self.start_default()
        self.send_mail(relay, "scan@example.org", ["a@example.net"], make_message("scanner"),
                       source="127.0.0.2")
        self.send_mail(relay, "print@example.org", ["b@example.net"], make_message("printer"),
                       source="127.0.0.3")
        got = {m.mail_from: m.login for m in peer.messages()}
        self.assertEqual(got, {"scan@example.org": self.SCANNER,
                               "print@example.org": self.PRINTER})
        ok = {(a.login, a.success) for a in peer.auth_attempts()}
        self.assertEqual(ok, {(self.SCANNER, True), (self.PRINTER, True)})

    def test_unmatched_allowed_client_uses_default_device(self):
        peer, relay = self.start_default()
        self.send_mail(relay, "pc@example.org", ["c@example.net"], make_message("default"),
                       source="127.0.0.1")
        (m,) = peer.messages()
        self.assertEqual(m.login, self.OFFICE)

    def test_client_outside_allow_refused(self):
        peer, relay = self.start_default()
        stage, code, text = self.transaction(relay, "x@example.org", ["d@example.net"],
                                             make_message("refused"), source="127.0.0.9")
        self.assertEqual(code, 554, "stage=%s reply=%s %s" % (stage, code, text))
        relay.wait_log(r"\bevent=refused\b", 10)
        self.assert_nothing_upstream(peer)

    def test_password_env(self):
        devices, users = self.default_devices()
        devices["printer"] = {"match": "127.0.0.3", "user": self.PRINTER,
                              "password_env": "RELAY25_TEST_PRINTER_PASSWORD"}
        peer = self.start_peer(users=users)
        relay = self.start_relay({"main": self.upstream(peer)}, devices,
                                 env={"RELAY25_TEST_PRINTER_PASSWORD": users[self.PRINTER]})
        self.send_mail(relay, "print@example.org", ["b@example.net"], make_message("env"),
                       source="127.0.0.3")
        (m,) = peer.messages()
        self.assertEqual(m.login, self.PRINTER)

    def test_device_cidr_match(self):
        devices, users = self.default_devices()
        devices["scanner"]["match"] = "127.0.0.4/30"     # .4 .. .7
        peer = self.start_peer(users=users)
        relay = self.start_relay({"main": self.upstream(peer)}, devices,
                                 relay={"allow": "127.0.0.0/24"})
        for src in ("127.0.0.5", "127.0.0.8"):
            self.send_mail(relay, "from-%s@example.org" % src, ["e@example.net"],
                           make_message(src), source=src)
        got = {m.mail_from: m.login for m in peer.messages()}
        self.assertEqual(got, {"from-127.0.0.5@example.org": self.SCANNER,
                               "from-127.0.0.8@example.org": self.OFFICE})


if __name__ == "__main__":
    main()
