#!/usr/bin/python3
"""A config that cannot mislead (issue 14 items 1 and 2), through the binary:
provider presets expanded as `check` shows them (a table test), every config error
reported in one run with file:line and hints, the duplicate-match error, warnings in
`check` and in the daemon's start log, `check` printing each device's effective
policy, rates, mode, spool, routes and failover list, and `check --upstream` logging
in to every upstream of every failover list with TLS version, cipher and mechanism."""

import os
import re
import signal
import subprocess

from relaytest import RELAY25_BIN, RelayTestCase, main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "dist", "relay25.conf.sample")

# provider -> (host, port, tls, max_connections, auth_mechanisms of a password device)
PRESETS = {
    "gmail": ("smtp.gmail.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "google-workspace-relay": ("smtp-relay.gmail.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "m365": ("smtp.office365.com", 587, "starttls", 3, "LOGIN"),
    "ses:eu-west-1": ("email-smtp.eu-west-1.amazonaws.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "sendgrid": ("smtp.sendgrid.net", 587, "starttls", 4, "PLAIN, LOGIN"),
    "mailgun": ("smtp.mailgun.org", 587, "starttls", 4, "PLAIN, LOGIN"),
    "mailgun-eu": ("smtp.eu.mailgun.org", 587, "starttls", 4, "PLAIN, LOGIN"),
    "fastmail": ("smtp.fastmail.com", 465, "implicit", 4, "PLAIN"),
    "brevo": ("smtp-relay.brevo.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "postmark": ("smtp.postmarkapp.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "zoho": ("smtp.zoho.com", 587, "starttls", 4, "PLAIN, LOGIN"),
    "zoho-eu": ("smtp.zoho.eu", 587, "starttls", 4, "PLAIN, LOGIN"),
    "icloud": ("smtp.mail.me.com", 587, "starttls", 4, "PLAIN, LOGIN"),
}


class ConfigUxTest(RelayTestCase):
    def write(self, text, name="ux.ini", mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def check(self, path, *args, env=None):
        return self.run_check(path, *args, env=env)

    # the sample config --------------------------------------------------------

    def test_sample_config(self):
        """dist/relay25.conf.sample is the README's first config block, and with only
        the password file paths changed it passes `check` without a warning; with the
        upstream pointed at the test peer it carries mail."""
        with open(SAMPLE) as f:
            sample = f.read()
        with open(os.path.join(REPO, "README.md")) as f:
            readme = f.read()
        first = readme.split("### A first configuration", 1)[1]
        block = first.split("```ini\n", 1)[1].split("```", 1)[0]
        self.assertEqual(block, sample, "README's first config block differs from the sample")
        users = {"printer@example.com": self.new_password("printer@example.com"),
                 "office@example.com": self.new_password("office@example.com")}
        text = sample
        for user, pw in users.items():
            old = "/etc/relay25/%s.pass" % user.split("@")[0]
            self.assertIn(old, text)
            text = text.replace(old, self.password_file(user, pw))
        path = self.write(text)
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("warning:", r.stdout)
        self.assertIn("upstream mail: smtp.gmail.com:587 tls=starttls", r.stdout)
        self.assertIn("device printer: 192.168.1.50/32 -> user printer@example.com", r.stdout)
        # the same file, the provider swapped for the test peer, on a free port
        peer = self.start_peer(users=users)
        text = text.replace("listen = 0.0.0.0:25", "listen = 127.0.0.1:0")
        text = text.replace("provider = gmail\n", "provider = gmail\nhost = 127.0.0.1\nport = %d\n"
                            "ca_file = %s\nserver_name = localhost\n" % (peer.port, self.pki.ca_file))
        path = self.write(text, name="live.ini")
        relay = self.start_own_relay(path)
        relay.wait_log(r"\bevent=started\b")
        self.assertEqual(self.send_mail(relay, "office@example.com", ["b@example.net"],
                                        b"Subject: sample\r\n\r\nhi\r\n", source="127.0.0.2"), {})
        self.stop_expect_0(relay)

    # presets ----------------------------------------------------------------

    def test_every_preset_expands(self):
        pw = self.password_file("a@example.com", "x")
        for provider, (host, port, tls, conns, mechs) in PRESETS.items():
            with self.subTest(provider=provider):
                path = self.write("[upstream up]\nprovider = %s\nca_file = %s\n\n"
                                  "[device default]\nuser = a@example.com\npassword_file = %s\n"
                                  % (provider, self.pki.ca_file, pw))
                r = self.check(path)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("upstream up: %s:%d tls=%s server_name=%s " % (host, port, tls, host),
                              r.stdout)
                self.assertIn("  max_connections %d\n" % conns, r.stdout)
                self.assertIn("  provider %s set: host %s, port %d, tls %s, max_connections %d\n"
                              % (provider, host, port, tls, conns), r.stdout)
                self.assertIn("  auth_mechanisms %s\n" % mechs, r.stdout)
                self.assertIn("  from provider %s: auth_mechanisms %s\n" % (provider, mechs),
                              r.stdout)

    def test_preset_overridden_and_delivers(self):
        """An explicit host/port/tls wins over the preset wherever it stands, so a
        preset upstream can point at the test peer and carry mail."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        up = self.upstream(peer)
        up = dict([("port", up["port"]), ("provider", "sendgrid")] + list(up.items()))
        path = self.write_config({"main": up}, devices)
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("upstream main: 127.0.0.1:%d tls=starttls" % peer.port, r.stdout)
        self.assertIn("  provider sendgrid set: max_connections 4\n", r.stdout)
        relay = self.start_own_relay(path)
        relay.wait_log(r"\bevent=started\b")
        self.assertEqual(self.send_mail(relay, "a@example.org", ["b@example.net"],
                                        b"Subject: preset\r\n\r\nhi\r\n", source="127.0.0.2"), {})
        self.stop_expect_0(relay)

    # errors -----------------------------------------------------------------

    def test_several_errors_in_one_run(self):
        path = self.write("[relay]\n"                           # 1
                          "lisen = 127.0.0.1:25\n"              # 2
                          "[upstream main]\n"                   # 3
                          "provider = gmial\n"                  # 4
                          "[device default]\n"                  # 5
                          "user = a@example.com\n"              # 6
                          "pasword_file = /etc/relay25/pw\n"    # 7
                          "ca_file = /etc/ssl/ca.pem\n"         # 8
                          "[printer]\n"                         # 9
                          "match = 10.0.0.1\n")                 # 10
        r = self.check(path)
        self.assertEqual(r.returncode, 78, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(lines, [
            "relay25: %s:2: unknown key 'lisen' in [relay] (did you mean 'listen'?)" % path,
            "relay25: %s:4: provider: unknown provider 'gmial'; did you mean 'gmail'? (known: "
            "gmail, google-workspace-relay, m365[:TENANT], m365-graph[:TENANT], ses:REGION, "
            "sendgrid, mailgun, mailgun-eu, fastmail, brevo, postmark, zoho, zoho-eu, icloud)"
            % path,
            "relay25: %s:7: unknown key 'pasword_file' in [device default] (did you mean "
            "'password_file'?)" % path,
            "relay25: %s:8: unknown key 'ca_file' in [device default] ('ca_file' belongs in "
            "[upstream NAME])" % path,
            "relay25: %s:9: unknown section type 'printer' (expected [relay], [upstream NAME], "
            "[device NAME], [route NAME] or [sendmail])" % path,
        ], r.stderr)
        # the daemon refuses the same file with the same lines
        s = subprocess.run([RELAY25_BIN, "serve", "-c", path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(s.returncode, 78, s.stderr)
        self.assertEqual(s.stderr.splitlines(), lines)

    def test_reload_refused_with_every_error(self):
        """SIGHUP with a broken file: one log line naming every error, the old
        configuration stays."""
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        path = self.write_config({"main": self.upstream(peer)}, devices)
        relay = self.start_own_relay(path)
        relay.wait_log(r"\bevent=started\b")
        with open(path, "a") as f:
            f.write("\n[device extra]\nmatch = 10.9.9.9\nuser = x@example.com\npasword = x\n"
                    "ca_file = /x\n")
        relay.proc.send_signal(signal.SIGHUP)
        line = relay.wait_log(r"^error \S+ relay25 event=reload status=refused error=\"(.*)\"$")
        errs = line.group(1).split(";")
        self.assertEqual(len(errs), 2, line.string)
        self.assertRegex(errs[0], r"^%s:\d+: unknown key 'pasword' in \[device extra\] \(did you "
                         r"mean 'password'\?\)$" % re.escape(path))
        self.assertRegex(errs[1], r"^%s:\d+: unknown key 'ca_file' in \[device extra\] "
                         r"\('ca_file' belongs in \[upstream NAME\]\)$" % re.escape(path))
        self.assertEqual(self.send_mail(relay, "a@example.org", ["b@example.net"],
                                        b"Subject: still\r\n\r\nhi\r\n", source="127.0.0.2"), {})
        self.stop_expect_0(relay)

    def test_duplicate_match(self):
        devices, users = self.default_devices()
        devices["copier"] = {"match": "10.1.1.1, 127.0.0.3", "user": self.PRINTER,
                             "password": users[self.PRINTER]}
        peer = self.start_peer(users=users)
        path = self.write_config({"main": self.upstream(peer)}, devices)
        r = self.check(path)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertRegex(r.stderr, r"^relay25: %s:\d+: match: 127\.0\.0\.3/32 is also the match "
                         r"of \[device printer\] \(line \d+\): the first device would always win"
                         % re.escape(path))

    # warnings ---------------------------------------------------------------

    def test_warnings_in_check_and_at_start(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        open_pw = self.password_file("open@example.com", "x", name="open.secret")
        os.chmod(open_pw, 0o644)
        devices["scanner"]["password_file"] = open_pw
        path = self.write_config({"main": self.upstream(peer)}, devices,
                                 {"listen": "0.0.0.0:0", "allow": "127.0.0.1/32, 0.0.0.0/0"})
        env = {"RELAY25_LISTNE": "0.0.0.0:25"}
        r = self.check(path, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        want = [
            r"allow = 0\.0\.0\.0/0 reaches beyond the private ranges",
            r"password_file %s is readable by every user \(mode 0644\)" % re.escape(open_pw),
            r"RELAY25_LISTNE is not a relay25 variable and is ignored \(did you mean "
            r"RELAY25_LISTEN\?\)",
        ]
        for w in want:
            self.assertRegex(r.stdout, r"(?m)^warning: (%s:\d+: )?%s" % (re.escape(path), w))
        relay = self.start_own_relay(path, env=dict(os.environ, **env))
        for w in want:
            relay.wait_log(r"^warn \S+ relay25 event=config (file=\S+ line=\d+ )?warning=\"%s" % w)
        relay.wait_log(r"\bevent=started\b")
        self.stop_expect_0(relay)

    def test_listen_with_loopback_allow_warned(self):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        path = self.write_config({"main": self.upstream(peer)}, devices,
                                 {"listen": "0.0.0.0:0", "allow": "127.0.0.0/8"})
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^warning: %s:\d+: listen = 0\.0\.0\.0:0 takes connections "
                         r"from other hosts, but allow admits only this host: every other client "
                         r"gets 554" % re.escape(path))
        # loopback listener: no warning
        path = self.write_config({"main": self.upstream(peer)}, devices, name="quiet.ini")
        os.chmod(path, 0o600)
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("warning:", r.stdout)

    def test_secret_unreadable_by_drop_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (relay25 drops privileges only when started as root)")
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        os.chmod(self.dir, 0o755)
        path = self.write_config({"main": self.upstream(peer)}, devices, {"user": "nobody"})
        os.chmod(path, 0o644)
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^warning: %s:\d+: password_file %s is not readable by "
                         r"user nobody, which relay25 runs as after start: the next reload "
                         r"\(SIGHUP\) will fail" % (re.escape(path),
                                                   re.escape(devices["scanner"]["password_file"])))

    # what check prints ------------------------------------------------------

    def test_check_prints_effective_settings(self):
        users = {u: self.new_password(u) for u in (self.OFFICE, self.SCANNER)}
        a = self.start_peer(users=users)
        b = self.start_peer(users=users)
        devices = {
            "default": {"upstream": "a, b", "user": self.OFFICE, "password": users[self.OFFICE]},
            "scanner": {"match": "127.0.0.2", "upstream": "b", "user": self.SCANNER,
                        "password": users[self.SCANNER], "mode": "spool",
                        "message_rate": "30/minute", "allowed_senders": "@example.com"},
        }
        path = self.write_config({"a": self.upstream(a), "b": self.upstream(b)}, devices,
                                 {"recipient_rate": "500/hour",
                                  "spool_dir": os.path.join(self.dir, "spool")})
        with open(path, "a") as f:
            f.write("\n[route boss]\nsenders = boss@example.com\ndevices = default\nupstream = b\n"
                    "user = %s\npassword = %s\n" % (self.OFFICE, users[self.OFFICE]))
        r = self.check(path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = r.stdout
        self.assertIn("device default: any other allowed client -> user %s (password from "
                      "inline) -> upstream a\n"
                      "  failover: a (127.0.0.1:%d), b (127.0.0.1:%d)\n"
                      "  mode passthrough, on_upstream_failure reject\n"
                      "  policy: allowed_senders any; allowed_recipients any\n"
                      "  rates: message_rate unlimited, recipient_rate 500/hour per client address\n"
                      "  auth_mechanisms default (strongest offered)\n"
                      "  route boss: senders boss@example.com -> user %s -> upstream b\n"
                      % (self.OFFICE, a.port, b.port, self.OFFICE), out)
        self.assertIn("device scanner: 127.0.0.2/32 -> user %s (password from inline) -> "
                      "upstream b\n"
                      "  failover: b (127.0.0.1:%d)\n"
                      "  mode spool, on_upstream_failure reject, spool_dir %s\n"
                      "  policy: allowed_senders @example.com; allowed_recipients any\n"
                      "  rates: message_rate 30/minute, recipient_rate 500/hour per client "
                      "address\n"
                      % (self.SCANNER, b.port, os.path.join(self.dir, "spool")), out)
        self.assertNotIn("route boss", out.split("device scanner:")[1])

    def test_check_upstream_every_failover_target(self):
        users = {self.OFFICE: self.new_password(self.OFFICE)}
        a = self.start_peer(users=users)
        b = self.start_peer(users={self.OFFICE: "another-password"})
        devices = {"default": {"upstream": "a, b", "user": self.OFFICE,
                               "password": users[self.OFFICE]}}
        path = self.write_config({"a": self.upstream(a), "b": self.upstream(b)}, devices)
        r = self.check(path, "--upstream")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"(?m)^device default: user %s at upstream a \(127\.0\.0\.1:%d\):"
                         r" ok: authenticated \(TLSv1\.2:[A-Z0-9-]+, AUTH (PLAIN|LOGIN|CRAM-MD5)\)$"
                         % (re.escape(self.OFFICE), a.port))
        # the failover target refuses this password: found now, not on the day a is down
        self.assertRegex(r.stdout, r"(?m)^device default: user %s at upstream b \(127\.0\.0\.1:%d\):"
                         r" FAILED: " % (re.escape(self.OFFICE), b.port))


if __name__ == "__main__":
    main()
