#!/usr/bin/python3
"""The relay25 command line: `--help` (and `-h`, `relay25 help CMD`) for every
subcommand prints its usage on stdout and exits 0; an option whose value is
missing is named ("--rcpt needs an address", not "unknown argument") with exit
64 (EX_USAGE); relay25(8) names every subcommand the dispatcher knows."""

import os
import re
import subprocess
import unittest

from relaytest import RELAY25_BIN, REPO, main

EX_USAGE = 64

# subcommand -> what its usage line starts with
SUBCOMMANDS = {
    "serve": "usage: relay25 serve",
    "check": "usage: relay25 check",
    "sendmail": "usage: sendmail",
    "health": "usage: relay25 health",
    "queue": "usage: relay25 queue",
    "passwd": "usage: relay25 passwd",
    "oauth": "usage: relay25 oauth login",
    "mailq": "usage: mailq",
}

# argv after `relay25`, and what stderr must say
MISSING = [
    (["serve", "-c"], "relay25 serve: -c needs a file"),
    (["check", "--rcpt"], "relay25 check: --rcpt needs an address"),
    (["check", "--rcpt", "--upstream"], "relay25 check: --rcpt needs an address"),
    (["check", "-c"], "relay25 check: -c needs a file"),
    (["health", "--timeout"], "relay25 health: --timeout needs a number of seconds"),
    (["health", "-c"], "relay25 health: -c needs a file"),
    (["queue", "-c"], "relay25 queue: -c needs a file"),
    (["queue"], "relay25 queue: the command is missing"),
    (["queue", "show"], "relay25 queue: show needs an ID"),
    (["queue", "delete"], "relay25 queue: delete needs an ID (or --all)"),
    (["passwd"], "relay25 passwd: LOGIN is missing"),
    (["oauth"], "relay25 oauth: the command is missing (login)"),
    (["oauth", "login"], "relay25 oauth login: DEVICE is missing"),
    (["oauth", "login", "office", "-c"], "relay25 oauth login: -c needs a file"),
    (["sendmail", "-f"], "sendmail: option -f needs an argument"),
]


def run(*args, stdin=b""):
    # no configuration from the environment: the usage checks come before any load
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
    r = subprocess.run([RELAY25_BIN, *args], input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


class CliTest(unittest.TestCase):
    def test_help_of_every_subcommand(self):
        for cmd, head in SUBCOMMANDS.items():
            for argv in ([cmd, "--help"], [cmd, "-h"], ["help", cmd]):
                if cmd == "sendmail" and argv[1] == "-h":
                    continue        # sendmail's -h is the hop count (takes an argument)
                with self.subTest(argv=argv):
                    rc, out, err = run(*argv)
                    self.assertEqual(rc, 0, "exit status of %s\n%s%s" % (argv, out, err))
                    self.assertTrue(out.startswith(head), "stdout of %s:\n%s" % (argv, out))
                    self.assertEqual(err, "", "stderr of %s" % argv)

    def test_help_after_other_options(self):
        # --help wins wherever it stands, before any configuration is loaded
        for argv in (["check", "-c", "/nonexistent.conf", "--help"],
                     ["health", "--timeout", "3", "--help"],
                     ["oauth", "login", "office", "--help"],
                     ["queue", "-c", "/nonexistent.conf", "list", "--help"]):
            with self.subTest(argv=argv):
                rc, out, err = run(*argv)
                self.assertEqual((rc, err), (0, ""), out + err)
                self.assertIn("usage: relay25 " + argv[0], out)

    def test_help_lists_every_subcommand(self):
        rc, out, err = run("--help")
        self.assertEqual(rc, 0, err)
        for cmd in SUBCOMMANDS:
            self.assertRegex(out, r"(?m)^(usage:)? +relay25 %s\b" % cmd)
        self.assertIn("--version", out)
        rc2, out2, _ = run("help")
        self.assertEqual((rc2, out2), (0, out))

    def test_help_texts_give_exit_statuses(self):
        for cmd in ("serve", "check", "health", "passwd", "oauth"):
            with self.subTest(cmd=cmd):
                rc, out, _ = run(cmd, "--help")
                self.assertEqual(rc, 0)
                self.assertRegex(out, r"(?s)\nExit: 0\b.*\b64 usage")

    def test_missing_arguments(self):
        for argv, want in MISSING:
            with self.subTest(argv=argv):
                rc, out, err = run(*argv)
                self.assertEqual(rc, EX_USAGE, "exit status of %s\n%s" % (argv, err))
                self.assertIn(want, err)
                self.assertNotIn("unknown argument", err)
                self.assertIn("usage:", err, "the usage follows the message")
                self.assertEqual(out, "")

    def test_unknown_arguments(self):
        for argv in (["serve", "--bogus"], ["check", "--bogus"], ["health", "--bogus"],
                     ["oauth", "login", "office", "--bogus"], ["oauth", "logout"],
                     ["queue", "--bogus"], ["queue", "frobnicate"], ["bogus"],
                     ["help", "bogus"]):
            with self.subTest(argv=argv):
                rc, out, err = run(*argv)
                self.assertEqual(rc, EX_USAGE, err)
                self.assertRegex(err, r"unknown (argument|option|command) '")
                self.assertIn("usage:", err)

    def test_man_page_documents_every_subcommand(self):
        with open(os.path.join(REPO, "dist", "relay25.8")) as f:
            man = f.read()
        for cmd in list(SUBCOMMANDS) + ["mailq"]:
            with self.subTest(cmd=cmd):
                # a subsection per subcommand: .SS "relay25 CMD ..." (sendmail/mailq by name)
                self.assertRegex(man, r'(?m)^\.SS "?(relay25 )?%s\b' % cmd)
        section = re.search(r"(?ms)^\.SH EXIT STATUS\n(.*?)^\.SH ", man)
        self.assertIsNotNone(section, "relay25(8) has no EXIT STATUS section")
        for code in ("0", "1", "64", "65", "69", "70", "71", "73", "75", "77", "78"):
            self.assertRegex(section.group(1), r"(?m)^\.B %s\b|^\.TP\n\.B %s\b" % (code, code),
                             "exit status %s is not documented" % code)


if __name__ == "__main__":
    main()
