#!/usr/bin/python3
"""`relay25 health`: greeting, EHLO, QUIT against a running relay25; exit 0 when
healthy, 1 with the reason otherwise; the default target comes from the
configuration's first listen address (a wildcard is probed on loopback), else
$RELAY25_LISTEN, else 127.0.0.1:25."""

import os
import socket
import subprocess

from relaytest import RELAY25_BIN, Relay, RelayTestCase, closed_port, main


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


class HealthTest(RelayTestCase):
    def health(self, *args, env=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
        e.update(env or {})
        r = subprocess.run([RELAY25_BIN, "health", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=e, timeout=60)
        return r.returncode, r.stdout.decode() + r.stderr.decode()

    def relay_on(self, listen, allow=None):
        devices, users = self.default_devices()
        peer = self.start_peer(users=users)
        relay = {"listen": listen}
        if allow:
            relay["allow"] = allow
        path = self.write_config({"main": self.upstream(peer)}, devices, relay)
        return self.start_relay(config=path), path

    def relay_on_fixed_port(self, host):
        """A relay on host:PORT with a concrete port (the default target of health
        comes from the config). Another test may take a free port between the
        probe and the bind, so try a few."""
        for attempt in range(5):
            port = free_port()
            devices, users = self.default_devices()
            peer = self.start_peer(users=users)
            path = self.write_config({"main": self.upstream(peer)}, devices,
                                     {"listen": "%s:%d" % (host, port)},
                                     name="fixed-%d.ini" % attempt)
            relay = Relay(path)
            try:
                relay.start()
            except AssertionError:
                if relay.alive() or "address already in use" not in relay.log():
                    raise
                relay.stop()
                continue
            self.addCleanup(self._finish_relay, relay)
            return relay, path, port
        self.fail("no free port in 5 attempts")

    def test_healthy(self):
        relay, _ = self.relay_on("127.0.0.1:0")
        rc, out = self.health("%s:%d" % (relay.host, relay.port))
        self.assertEqual(rc, 0, out)
        self.assertIn("ok", out)
        relay.wait_lines(r'event=disconnect client=127\.0\.0\.1 .*reason="quit"')

    def test_default_target_from_config_wildcard(self):
        relay, path, port = self.relay_on_fixed_port("0.0.0.0")
        rc, out = self.health("-c", path)
        self.assertEqual(rc, 0, out)
        self.assertIn("127.0.0.1:%d ok" % port, out)
        rc, out = self.health(env={"RELAY25_CONFIG": path})
        self.assertEqual(rc, 0, out)

    def test_default_target_from_relay25_listen(self):
        _, _, port = self.relay_on_fixed_port("127.0.0.1")
        # the environment does not make a whole configuration (no upstream):
        # RELAY25_LISTEN alone names the target
        rc, out = self.health(env={"RELAY25_LISTEN": "0.0.0.0:%d, [::]:%d" % (port, port)})
        self.assertEqual(rc, 0, out)
        self.assertIn("127.0.0.1:%d" % port, out)

    def test_down(self):
        sock, port = closed_port()
        self.addCleanup(sock.close)
        rc, out = self.health("127.0.0.1:%d" % port)
        self.assertEqual(rc, 1)
        self.assertIn("unhealthy: 127.0.0.1:%d connection failed" % port, out)

    def test_refused_greeting(self):
        relay, _ = self.relay_on("127.0.0.1:0", allow="127.0.0.2/32")
        rc, out = self.health("%s:%d" % (relay.host, relay.port))
        self.assertEqual(rc, 1, out)
        self.assertIn("refused the session: 554", out)

    def test_usage(self):
        for args in (["a:b:c"], ["--timeout", "0", "127.0.0.1:25"], ["--bogus"],
                     ["127.0.0.1:99999"]):
            with self.subTest(args=args):
                rc, out = self.health(*args)
                self.assertEqual(rc, 64, out)


if __name__ == "__main__":
    main()
