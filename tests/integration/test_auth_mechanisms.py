#!/usr/bin/python3
"""auth_mechanisms: which SASL mechanism relay25 uses upstream. The default is the
strongest one offered (CRAM-MD5, then PLAIN, then LOGIN for passwords); a list per
device (or in [relay] for all devices) sets the order and excludes the rest. An
unknown name is a configuration error at its file:line."""

from relaytest import RelayTestCase, main, make_message


class AuthMechanismsTest(RelayTestCase):
    def relay_for(self, peer, users, device=None, relay=None):
        dev = {"user": self.OFFICE, "password": users[self.OFFICE]}
        dev.update(device or {})
        return self.start_relay({"main": self.upstream(peer)}, {"default": dev}, relay)

    def mechanisms_used(self, peer, relay):
        self.send_mail(relay, "pc@example.org", ["a@example.net"], make_message("mech"),
                       source="127.0.0.1")
        (m,) = peer.messages()
        self.assertEqual(m.login, self.OFFICE)
        return [(a.mechanism, a.success) for a in peer.auth_attempts()]

    def users(self):
        return {self.OFFICE: self.new_password(self.OFFICE)}

    def test_default_prefers_plain_over_login(self):
        users = self.users()
        peer = self.start_peer(users=users)           # offers LOGIN and PLAIN
        relay = self.relay_for(peer, users)
        self.assertEqual(self.mechanisms_used(peer, relay), [("PLAIN", True)])

    def test_device_list_picks_login(self):
        users = self.users()
        peer = self.start_peer(users=users)
        relay = self.relay_for(peer, users, {"auth_mechanisms": "LOGIN"})
        self.assertEqual(self.mechanisms_used(peer, relay), [("LOGIN", True)])

    def test_relay_default_list(self):
        users = self.users()
        peer = self.start_peer(users=users, cram_md5=True)
        relay = self.relay_for(peer, users, relay={"auth_mechanisms": "login, plain"})
        self.assertEqual(self.mechanisms_used(peer, relay), [("LOGIN", True)])

    def test_device_list_overrides_relay(self):
        users = self.users()
        peer = self.start_peer(users=users, cram_md5=True)
        relay = self.relay_for(peer, users, {"auth_mechanisms": "PLAIN"},
                               relay={"auth_mechanisms": "LOGIN"})
        self.assertEqual(self.mechanisms_used(peer, relay), [("PLAIN", True)])

    def test_default_prefers_cram_md5(self):
        users = self.users()
        peer = self.start_peer(users=users, cram_md5=True)
        relay = self.relay_for(peer, users)
        self.assertEqual(self.mechanisms_used(peer, relay), [("CRAM-MD5", True)])

    def test_none_offered_from_list(self):
        users = self.users()
        peer = self.start_peer(users=users)           # no CRAM-MD5
        relay = self.relay_for(peer, users, {"auth_mechanisms": "CRAM-MD5"})
        stage, code, text = self.transaction(relay, "pc@example.org", ["a@example.net"],
                                             make_message("none"), source="127.0.0.1")
        self.assertTrue(400 <= code < 500, "stage=%s reply=%s %s" % (stage, code, text))
        relay.wait_log(r"none usable", 10)
        self.assertEqual(peer.auth_attempts(), [])

    def test_unknown_mechanism_is_config_error(self):
        users = self.users()
        path = self.write_config(
            {"main": {"host": "127.0.0.1", "port": "2525"}},
            {"default": {"user": self.OFFICE, "password": users[self.OFFICE],
                         "auth_mechanisms": "PLAIN, SCRAM-SHA-1"}})
        with open(path) as f:
            line = 1 + [i for i, l in enumerate(f) if "auth_mechanisms" in l][0]
        r = self.run_check(path)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("%s:%d:" % (path, line), r.stderr, "stderr:\n" + r.stderr)
        self.assertIn("SCRAM-SHA-1", r.stderr)


if __name__ == "__main__":
    main()
