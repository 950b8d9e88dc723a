#!/usr/bin/python3
"""Issue 14: the README's first configuration (dist/relay25.conf.sample) works when
copied with only the logins and password files changed. first_config.py runs in a
private mount and network namespace, where smtp.gmail.com is a local STARTTLS+AUTH
upstream trusted through the system CA bundle, and the printer (192.168.1.50) and
another device (192.168.1.77) are loopback addresses; both must deliver with their
own logins. Needs root and unshare(1) (skipped otherwise)."""

import os
import subprocess
import tempfile
import unittest

from relaytest import RELAY25_BIN, REPO, main

HERE = os.path.dirname(os.path.abspath(__file__))


class FirstConfigTest(unittest.TestCase):
    def test_sample_config_delivers_for_printer_and_default(self):
        if os.geteuid() != 0 or subprocess.run(["unshare", "-mn", "true"],
                                               capture_output=True).returncode != 0:
            self.skipTest("needs root and unshare -mn")
        with tempfile.TemporaryDirectory(prefix="relay25-first-config-") as d:
            r = subprocess.run(["unshare", "-mn", "/usr/bin/python3",
                                os.path.join(HERE, "first_config.py"), REPO,
                                os.path.abspath(RELAY25_BIN)],
                               capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, FIRST_CONFIG_DIR=os.path.join(d, "w")))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok: authenticated", r.stdout)
        self.assertIn("login=printer@example.com", r.stdout)
        self.assertIn("login=office@example.com", r.stdout)
        self.assertIn("done: both devices delivered with their own logins", r.stdout)


if __name__ == "__main__":
    main()
