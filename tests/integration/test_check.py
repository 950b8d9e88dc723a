#!/usr/bin/python3
"""`relay25 check`: config errors with FILE:LINE, upstream login and RCPT probes."""

import os
import subprocess

from relaytest import RELAY25_BIN, RelayTestCase, main


class CheckTest(RelayTestCase):
    def bad_config(self, bad_line, section="upstream main"):
        """A config whose line bad_line (1-based) is wrong. Returns (path, line)."""
        lines = ["[relay]",
                 "listen = 127.0.0.1:0",
                 "allow = 127.0.0.1/32",
                 "",
                 "[%s]" % section,
                 "host = 127.0.0.1",
                 "port = 587",
                 "ca_file = %s" % self.pki.ca_file,
                 bad_line,
                 "",
                 "[device default]",
                 "user = %s" % self.OFFICE,
                 "password = %s" % self.new_password(self.OFFICE)]
        path = os.path.join(self.dir, "bad.ini")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path, 9

    def assert_points_at(self, r, path, line):
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("%s:%d:" % (path, line), r.stderr, "stderr:\n" + r.stderr)

    def test_unknown_key(self):
        path, line = self.bad_config("hots = smtp.example.com")
        self.assert_points_at(self.run_check(path), path, line)

    def test_bad_value(self):
        path, line = self.bad_config("tls = sometimes")
        self.assert_points_at(self.run_check(path), path, line)

    def test_serve_refuses_bad_config(self):
        path, line = self.bad_config("hots = smtp.example.com")
        s = subprocess.run([RELAY25_BIN, "serve", "-c", path], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        err = s.stderr.decode("utf-8", "replace")
        self.assert_no_secrets(err + s.stdout.decode("utf-8", "replace"), "relay25 serve output")
        self.assertGreater(s.returncode, 0, "serve with a bad config: exit %d\n%s"
                           % (s.returncode, err))
        self.assertIn("%s:%d:" % (path, line), err)

    def good_setup(self, bad_scanner_password=False):
        devices, users = self.default_devices()
        peer_users = dict(users)
        if bad_scanner_password:
            peer_users[self.SCANNER] = "provider-has-another-password"
        peer = self.start_peer(users=peer_users)
        path = self.write_config({"main": self.upstream(peer)}, devices)
        return peer, path

    def test_valid_config_offline(self):
        _, path = self.good_setup()
        r = self.run_check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_readable_inline_password_warned(self):
        # bad_config's [device default] has an inline password on line 13
        path, _ = self.bad_config("")
        os.chmod(path, 0o644)
        r = self.run_check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("warning: %s is readable by others and holds a password (line 13)" % path,
                      r.stdout)
        relay = self.start_own_relay(path)
        line = relay.wait_log(r"^(?:\S+Z )?warn \S+ relay25 event=config file=(\S+) line=13 warning="
                              r"\"readable by others and holds a password").string
        self.assertIn("file=%s " % path, line)
        relay.wait_log(r"\bevent=started\b")
        self.stop_expect_0(relay)
        os.chmod(path, 0o640)
        r = self.run_check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("readable by others", r.stdout)

    def test_upstream_good_credentials(self):
        peer, path = self.good_setup()
        r = self.run_check(path, "--upstream")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        ok = {a.login for a in peer.auth_attempts() if a.success}
        self.assertEqual(ok, {self.OFFICE, self.SCANNER, self.PRINTER})
        self.assertEqual(peer.all_messages(), [])

    def test_upstream_bad_password(self):
        peer, path = self.good_setup(bad_scanner_password=True)
        r = self.run_check(path, "--upstream")
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("535", out)
        self.assertIn(self.SCANNER, out)
        self.assertIn((self.SCANNER, False), {(a.login, a.success) for a in peer.auth_attempts()})

    def test_rcpt_probe(self):
        peer, path = self.good_setup()
        r = self.run_check(path, "--upstream", "--rcpt", "probe@example.net")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        peer.wait_idle(5)
        rcpts = [a for _, _, a in peer.commands("RCPT")]
        self.assertTrue(any(a.startswith("TO:<probe@example.net>") for a in rcpts), rcpts)
        self.assertEqual(peer.all_messages(), [], "--rcpt must not send a message")

    def test_rcpt_probe_refused(self):
        peer, path = self.good_setup()
        r = self.run_check(path, "--upstream", "--rcpt", "reject-probe@example.net")
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("550", out)
        self.assertEqual(peer.all_messages(), [])


if __name__ == "__main__":
    main()
