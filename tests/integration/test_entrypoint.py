#!/usr/bin/python3
"""docker/entrypoint.sh without a container engine: the environment -> relay25
invocation (checked with a fake relay25 that prints its arguments and RELAY25_*
environment), *_FILE secrets, the mounted-INI mode, refusal of incomplete
settings, arguments passed through, and one real run that relays a message
through the test peer."""

import os
import smtplib
import subprocess

from relaytest import (CLIENT_NAME, RELAY25_BIN, REPO, Relay, RelayTestCase, main,
                       make_message)

ENTRYPOINT = os.path.join(REPO, "docker", "entrypoint.sh")
EX_CONFIG = 78
DEFAULT_ALLOW = "127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16"

FAKE = """#!/bin/sh
# fake relay25: prints its arguments and its RELAY25_* environment
for a in "$@"; do printf 'arg=%s\\n' "$a"; done
env | grep '^RELAY25_' | sort | sed 's/^/env:/'
"""


class EntrypointTest(RelayTestCase):
    def setUp(self):
        super().setUp()
        self.fake = os.path.join(self.dir, "fake-relay25")
        with open(self.fake, "w") as f:
            f.write(FAKE)
        os.chmod(self.fake, 0o755)
        self.absent_conf = os.path.join(self.dir, "relay25.conf")   # not created

    def secret(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content)
        return path

    def run_ep(self, *args, env=None, binary=None):
        """Runs the entrypoint; returns (exit code, [args], {env}, stderr)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
        e.update({"RELAY25_BIN": binary or self.fake,
                  "RELAY25_ENTRYPOINT_CONF": self.absent_conf})
        e.update(env or {})
        r = subprocess.run([ENTRYPOINT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=e, timeout=30)
        out = r.stdout.decode()
        argv = [li[4:] for li in out.splitlines() if li.startswith("arg=")]
        envd = dict(li[4:].split("=", 1) for li in out.splitlines() if li.startswith("env:"))
        envd.pop("RELAY25_BIN", None)
        envd.pop("RELAY25_ENTRYPOINT_CONF", None)
        return r.returncode, argv, envd, r.stderr.decode() + out

    def minimal(self, **extra):
        env = {"RELAY25_UPSTREAM": "smtp.example.com:587", "RELAY25_USER": "me@example.com",
               "RELAY25_PASSWORD_FILE": "/run/secrets/relay25_password"}
        env.update(extra)
        return env

    # environment mode ---------------------------------------------------------

    def test_environment_defaults(self):
        rc, argv, env, err = self.run_ep(env=self.minimal())
        self.assertEqual(rc, 0, err)
        self.assertEqual(argv, ["serve"])
        self.assertEqual(env, {"RELAY25_UPSTREAM": "smtp.example.com:587",
                               "RELAY25_USER": "me@example.com",
                               "RELAY25_PASSWORD_FILE": "/run/secrets/relay25_password",
                               "RELAY25_LISTEN": "0.0.0.0:25",
                               "RELAY25_ALLOW": DEFAULT_ALLOW})

    def test_overrides_kept(self):
        rc, argv, env, err = self.run_ep(env=self.minimal(
            RELAY25_LISTEN="[::]:2525", RELAY25_ALLOW="192.168.1.0/24",
            RELAY25_PASSWORD_FILE="", RELAY25_PASSWORD="inline", RELAY25_LOG_LEVEL="debug"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(env["RELAY25_LISTEN"], "[::]:2525")
        self.assertEqual(env["RELAY25_ALLOW"], "192.168.1.0/24")
        self.assertEqual(env["RELAY25_PASSWORD"], "inline")
        self.assertEqual(env["RELAY25_LOG_LEVEL"], "debug")

    def test_file_secrets(self):
        user = self.secret("user", "me@example.com\n")
        upstream = self.secret("upstream", "smtp.example.com:465")
        tricky = self.secret("tricky", "a b;$(echo no) 'c' \"d\"\n")
        rc, argv, env, err = self.run_ep(env={
            "RELAY25_UPSTREAM_FILE": upstream, "RELAY25_USER_FILE": user,
            "RELAY25_HOSTNAME_FILE": tricky,
            "RELAY25_PASSWORD_FILE": "/run/secrets/pw", "RELAY25_CA_FILE": "/etc/ca.pem"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(argv, ["serve"])
        self.assertEqual(env["RELAY25_USER"], "me@example.com")
        self.assertEqual(env["RELAY25_UPSTREAM"], "smtp.example.com:465")
        self.assertEqual(env["RELAY25_HOSTNAME"], "a b;$(echo no) 'c' \"d\"")
        self.assertNotIn("RELAY25_USER_FILE", env)
        self.assertNotIn("RELAY25_UPSTREAM_FILE", env)
        self.assertEqual(env["RELAY25_PASSWORD_FILE"], "/run/secrets/pw")   # relay25's own
        self.assertEqual(env["RELAY25_CA_FILE"], "/etc/ca.pem")             # a path, not a secret
        self.assertNotIn("RELAY25_PASSWORD", env)
        self.assertNotIn("RELAY25_CA", env)

    def test_secret_errors(self):
        user = self.secret("user", "me@example.com\n")
        rc, argv, _, err = self.run_ep(env=self.minimal(RELAY25_USER_FILE=user))
        self.assertEqual(rc, EX_CONFIG)
        self.assertIn("set RELAY25_USER or RELAY25_USER_FILE, not both", err)
        self.assertEqual(argv, [])
        env = self.minimal(RELAY25_USER_FILE=os.path.join(self.dir, "missing"))
        del env["RELAY25_USER"]
        rc, argv, _, err = self.run_ep(env=env)
        self.assertEqual(rc, EX_CONFIG)
        self.assertIn("RELAY25_USER_FILE: cannot read", err)
        self.assertEqual(argv, [])

    def test_incomplete_settings_refused(self):
        cases = [("RELAY25_UPSTREAM", "RELAY25_UPSTREAM is not set"),
                 ("RELAY25_USER", "RELAY25_USER is not set"),
                 ("RELAY25_PASSWORD_FILE", "no password")]
        for missing, want in cases:
            with self.subTest(missing=missing):
                env = self.minimal()
                del env[missing]
                rc, argv, _, err = self.run_ep(env=env)
                self.assertEqual(rc, EX_CONFIG, err)
                self.assertIn("relay25-entrypoint: " + want, err)
                self.assertEqual(argv, [], "relay25 was started")
        rc, argv, _, err = self.run_ep("serve", env={})
        self.assertEqual(rc, EX_CONFIG, err)
        self.assertEqual(argv, [])

    # mounted INI ----------------------------------------------------------------

    def test_mounted_ini(self):
        with open(self.absent_conf, "w") as f:
            f.write("[relay]\n")
        rc, argv, env, err = self.run_ep(env={"RELAY25_LOG_LEVEL": "debug"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(argv, ["serve", "-c", self.absent_conf])
        self.assertEqual(env, {"RELAY25_LOG_LEVEL": "debug"})   # no defaults, no refusal
        rc, argv, env, err = self.run_ep("check", "--upstream")
        self.assertEqual(argv, ["check", "--upstream"])
        self.assertEqual(env, {"RELAY25_CONFIG": self.absent_conf})

    def test_relay25_config_variable(self):
        path = os.path.join(self.dir, "elsewhere.ini")
        rc, argv, env, err = self.run_ep(env={"RELAY25_CONFIG": path})
        self.assertEqual(rc, 0, err)
        self.assertEqual(argv, ["serve", "-c", path])

    # arguments ------------------------------------------------------------------

    def test_arguments_replace_serve(self):
        user = self.secret("user", "me@example.com\n")
        rc, argv, env, err = self.run_ep("check", "--upstream",
                                         env={"RELAY25_USER_FILE": user})
        self.assertEqual(rc, 0, err)                   # no refusal: relay25 check decides
        self.assertEqual(argv, ["check", "--upstream"])
        self.assertEqual(env["RELAY25_USER"], "me@example.com")
        rc, argv, _, err = self.run_ep("sendmail", "-t")
        self.assertEqual(argv, ["sendmail", "-t"])
        rc, argv, _, err = self.run_ep("serve", env=self.minimal())
        self.assertEqual(argv, ["serve"])

    def test_every_relay25_command_goes_to_relay25(self):
        # passwd is also a program of the image (/usr/bin/passwd): relay25's wins
        for args in (["passwd", "office"], ["queue", "list"], ["oauth", "login", "office"],
                     ["health", "--proxy"], ["mailq"], ["help", "check"], ["--version"]):
            with self.subTest(args=args):
                rc, argv, _, err = self.run_ep(*args)
                self.assertEqual((rc, argv), (0, args), err)

    def test_other_program(self):
        rc, argv, _, out = self.run_ep("echo", "hello from the image")
        self.assertEqual(rc, 0)
        self.assertEqual(argv, [])
        self.assertIn("hello from the image", out)

    # a real relay ---------------------------------------------------------------

    def test_real_relay_from_environment(self):
        pw = self.new_password(self.OFFICE)
        peer = self.start_peer(users={self.OFFICE: pw})
        env = {k: "" for k in os.environ if k.startswith("RELAY25_")}
        env.update({
            "RELAY25_BIN": RELAY25_BIN,
            "RELAY25_ENTRYPOINT_CONF": self.absent_conf,
            "RELAY25_LISTEN": "127.0.0.1:0",
            "RELAY25_UPSTREAM": "127.0.0.1:%d" % peer.port,
            "RELAY25_TLS": "starttls",
            "RELAY25_CA_FILE": self.pki.ca_file,
            "RELAY25_SERVER_NAME": "localhost",
            "RELAY25_HOSTNAME": "relay.test",
            "RELAY25_LOG_LEVEL": "debug",
            "RELAY25_USER_FILE": self.secret("user", self.OFFICE + "\n"),
            "RELAY25_PASSWORD_FILE": self.password_file(self.OFFICE, pw),
        })
        for k in [k for k, v in env.items() if v == ""]:
            del env[k]
        relay = Relay(None, binary=ENTRYPOINT, env=env, name="entrypoint")
        relay.env = {k: v for k, v in relay.env.items()
                     if not k.startswith("RELAY25_") or k in env}
        self.addCleanup(self._finish_relay, relay)
        relay.start()
        with smtplib.SMTP(relay.host, relay.port, local_hostname=CLIENT_NAME,
                          source_address=("127.0.0.2", 0), timeout=60) as s:
            s.sendmail("app@example.org", ["r@example.net"], make_message("via entrypoint"))
            s.quit()
        (m,) = peer.wait_messages(1)
        self.assertEqual(m.login, self.OFFICE)
        self.assertEqual(m.rcpt_tos, ("r@example.net",))
        h = subprocess.run([RELAY25_BIN, "health", "%s:%d" % (relay.host, relay.port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(h.returncode, 0, h.stdout)


if __name__ == "__main__":
    main()
