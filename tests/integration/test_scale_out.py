#!/usr/bin/python3
"""Scale-out recipe of the README, tested: two relay25 instances behind a real
HAProxy (Debian package `haproxy`) in TCP mode, PROXY protocol v2 from HAProxy to
relay25 (so each device keeps its own upstream credentials), HAProxy's health
checks through `relay25 health --proxy` (dist/relay25-haproxy-check as the
external-check command). One instance is stopped (SIGTERM) while several devices
(127.0.0.2, .3, .4) send: every message that got 250 arrives upstream exactly
once with its device's login, and the devices keep being served; the stopped
instance comes back and is used again. In spool mode (a volume per instance) the
messages a stopped instance had acknowledged but not yet delivered go out when it
comes back with its spool.

HAProxy is installed with apt-get when missing and running as root (as in
test_proxy_protocol.py; CI installs it); without it the file is skipped."""

import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time

from relaytest import CLIENT_NAME, RELAY25_BIN, REPO, Relay, RelayTestCase, main, make_message
from test_proxy_protocol import ensure_haproxy, free_port, listening

CHECK_SCRIPT = os.path.join(REPO, "dist", "relay25-haproxy-check")
DEVICES = {"127.0.0.2": "scanner", "127.0.0.3": "printer", "127.0.0.4": "nas"}


class Balancer:
    """haproxy -db: a TCP frontend on a free loopback port, a leastconn backend with
    the relays as servers (send-proxy-v2, external check every second), and an
    admin socket for `show stat`."""

    def __init__(self, binary, directory, servers):
        self.binary, self.dir, self.servers = binary, directory, servers  # [(name, port)]
        self.proc = self.port = None
        self.sock = os.path.join(directory, "haproxy.sock")
        self.out = b""

    def config(self, port):
        # the same shape as the README's example (addresses and paths aside)
        lines = [
            "global",
            "    maxconn 512",
            "    external-check",
            "    insecure-fork-wanted",
            "    stats socket %s mode 600 level admin" % self.sock,
            "defaults",
            "    mode tcp",
            "    timeout connect 5s",
            "    timeout client 120s",
            "    timeout server 120s",
            "    timeout check 10s",
            "    retries 3",
            "    option redispatch 1",
            "frontend smtp",
            "    bind 127.0.0.1:%d" % port,
            "    default_backend relay25",
            "backend relay25",
            "    balance leastconn",
            "    option external-check",
            '    external-check path "%s:/usr/bin:/bin"' % os.path.dirname(RELAY25_BIN),
            "    external-check command %s" % CHECK_SCRIPT,
        ]
        lines += ["    server %s 127.0.0.1:%d send-proxy-v2 check inter 1s fall 2 rise 2" % s
                  for s in self.servers]
        return "\n".join(lines) + "\n"

    def start(self):
        for _ in range(5):                   # the free port can be taken meanwhile: retry
            port = free_port()
            cfg = os.path.join(self.dir, "haproxy.cfg")
            with open(cfg, "w") as f:
                f.write(self.config(port))
            self.proc = subprocess.Popen([self.binary, "-f", cfg, "-db"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if listening(port):
                    self.port = port
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError("haproxy did not start: %s" % self.out.decode(errors="replace"))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out = self.proc.stdout.read() or b""
        self.proc.stdout.close()
        self.proc = None

    def status(self):
        """{server name: status} from `show stat` ("UP", "DOWN", "UP 1/2", ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        rows = data.decode().splitlines()
        head = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            f = dict(zip(head, row.split(",")))
            if f.get("pxname") == "relay25" and f.get("svname") not in ("BACKEND", None):
                out[f["svname"]] = f["status"]
        return out

    def wait_status(self, want, timeout=60):
        """Wait until every server in want has that status; returns the last status."""
        deadline = time.monotonic() + timeout
        st = {}
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                st = self.status()
            except OSError as e:      # the admin socket may be bound after the frontend
                st = {"admin socket": repr(e)}
            if all(st.get(k) == v for k, v in want.items()):
                return st
            time.sleep(0.2)
        if self.proc.poll() is not None:
            self.stop()
        raise AssertionError("haproxy servers %r, want %r; haproxy exit %s, output:\n%s"
                             % (st, want, self.proc and self.proc.poll(),
                                self.out.decode(errors="replace")))


class Device(threading.Thread):
    """One device sending messages one after the other through the balancer, each
    in its own SMTP session; a message that does not get 250 is sent again (as
    a device retries), each attempt with its own X-Attempt id."""

    def __init__(self, test, port, source, count, pause=0.0, tag="r1"):
        super().__init__(daemon=True)
        self.test, self.port, self.source, self.tag = test, port, source, tag
        self.count, self.pause = count, pause
        self.acked = {}        # attempt id -> monotonic time of the 250
        self.failed = []       # (attempt id, why)
        self.given_up = []     # message ids that never got 250
        self.sent_ok = 0

    def attempt(self, aid):
        msg = make_message("scale %s" % aid, headers=["X-Attempt: " + aid])
        try:
            with smtplib.SMTP("127.0.0.1", self.port, local_hostname=CLIENT_NAME,
                              source_address=(self.source, 0), timeout=60) as s:
                s.sendmail("dev@example.org", ["rcpt@example.net"], msg)
                acked_at = time.monotonic()
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass     # the 250 to DATA came: acknowledged whatever QUIT does
            self.acked[aid] = acked_at
            return True
        except (smtplib.SMTPException, OSError) as e:
            self.failed.append((aid, repr(e)))
            return False

    def run(self):
        for n in range(self.count):
            for a in range(10):
                if self.attempt("%s-%s-%d-%d" % (self.source, self.tag, n, a)):
                    self.sent_ok += 1
                    break
                time.sleep(0.3)
            else:
                self.given_up.append(n)
            time.sleep(self.pause)


class ScaleOutTest(RelayTestCase):
    ALLOW = "127.0.0.1/32, 127.0.0.2/32, 127.0.0.3/32, 127.0.0.4/32"
    NAS = "nas@example.com"

    @classmethod
    def setUpClass(cls):
        cls.haproxy_bin = ensure_haproxy()
        super().setUpClass()

    def devices(self):
        devices, users = self.default_devices()
        users[self.NAS] = self.new_password(self.NAS)
        devices["nas"] = {"match": "127.0.0.4", "user": self.NAS, "password": users[self.NAS]}
        return devices, users

    def logins(self):
        return {"127.0.0.2": self.SCANNER, "127.0.0.3": self.PRINTER, "127.0.0.4": self.NAS}

    def instance(self, name, peer_port, devices, port=0, extra=None):
        """A relay25 behind the balancer: PROXY protocol from 127.0.0.1 only."""
        relay = {"listen": "127.0.0.1:%d" % port, "proxy_protocol": "yes",
                 "proxy_from": "127.0.0.1/32", "max_connections_per_ip_exempt": "",
                 "log_level": "info"}
        relay.update(extra or {})
        ups = {"main": self.upstream(port=peer_port)}
        path = self.write_config(ups, devices, relay, name="%s.ini" % name)
        r = Relay(path, name=name)
        return self.start_own_relay(path, relay=r)

    def sent_lines(self, relay):
        return relay.grep(r"\bstatus=sent\b")

    def assert_delivered_once(self, peer, devs):
        """Every acknowledged attempt arrived exactly once, with its device's login;
        an attempt that did not get 250 arrived at most once."""
        logins = self.logins()
        seen = {}
        for m in peer.messages():
            aid = m.header("X-Attempt")
            self.assertIsNotNone(aid, "a message without X-Attempt upstream")
            seen.setdefault(aid, []).append(m)
        for aid, ms in seen.items():
            self.assertEqual(len(ms), 1, "attempt %s arrived %d times" % (aid, len(ms)))
            source = aid.split("-", 1)[0]
            self.assertEqual(ms[0].login, logins[source],
                             "attempt %s from %s went upstream as %s" % (aid, source, ms[0].login))
            self.assertIn("[%s]" % source, ms[0].header("Received"))
        for d in devs:
            for aid in d.acked:
                self.assertIn(aid, seen, "attempt %s got 250 and never arrived upstream" % aid)
        return seen

    def run_devices(self, hp, count, pause=0.0, tag="r1"):
        devs = [Device(self, hp.port, src, count, pause, tag) for src in DEVICES]
        for d in devs:
            d.start()
        return devs

    def join(self, devs, timeout=300):
        deadline = time.monotonic() + timeout
        for d in devs:
            d.join(max(0, deadline - time.monotonic()))
            self.assertFalse(d.is_alive(), "device %s still sending after %ds" % (d.source,
                                                                                   timeout))

    def wait_until(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        self.fail("no %s within %ds" % (what, timeout))

    def test_health_check_needs_proxy_header(self):
        # what the external check relies on: a PROXY-protocol listener closes a
        # plain probe, and answers one that sends the v2 LOCAL header first
        devices, users = self.devices()
        peer = self.start_peer(users=users)
        # health probes are logged at debug (issue 14): the probe's connect line needs it
        a = self.instance("a", peer.port, devices, extra={"log_level": "debug"})
        target = "127.0.0.1:%d" % a.port
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY25_")}
        plain = subprocess.run([RELAY25_BIN, "health", "--timeout", "5", target],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               timeout=60)
        self.assertEqual(plain.returncode, 1, plain.stdout)
        r = subprocess.run([CHECK_SCRIPT, "NOT_USED", "NOT_USED", "127.0.0.1", str(a.port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                           env=dict(env, PATH=os.path.dirname(RELAY25_BIN) + ":/usr/bin:/bin"))
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn(b"%s ok" % target.encode(), r.stdout)
        a.wait_log(r"\bevent=connect client=127\.0\.0\.1 port=\d+ device=default\b")
        self.assert_nothing_upstream(peer)
        self.stop_expect_0(a)

    def test_one_instance_stopped_under_load(self):
        devices, users = self.devices()
        peer = self.start_peer(users=users, data_delay=0.1)
        a = self.instance("a", peer.port, devices)
        b = self.instance("b", peer.port, devices)
        hp = Balancer(self.haproxy_bin, self.dir, [("a", a.port), ("b", b.port)])
        self.addCleanup(hp.stop)
        hp.start()
        # both UP only if the external check (relay25 health --proxy) passes
        hp.wait_status({"a": "UP", "b": "UP"})
        devs = self.run_devices(hp, count=25, pause=0.05)
        # load on both instances, then stop a in the middle of it
        self.wait_until(lambda: len(self.sent_lines(a)) >= 5 and len(self.sent_lines(b)) >= 5
                        and len(self.sent_lines(a)) + len(self.sent_lines(b)) >= 25,
                        120, "messages through both instances")
        a_port = a.port
        a.proc.terminate()
        stopped = time.monotonic()
        self.assertEqual(self.wait_exit(a), 0, "relay25 exit status after SIGTERM")
        hp.wait_status({"a": "DOWN", "b": "UP"})
        self.join(devs)
        for d in devs:
            self.assertEqual(d.given_up, [], "device %s not served: %r" % (d.source, d.failed))
            self.assertEqual(d.sent_ok, 25)
            after = [t for t in d.acked.values() if t > stopped]
            self.assertGreater(len(after), 0, "device %s got no 250 after the stop" % d.source)
        peer.wait_idle(10)
        seen = self.assert_delivered_once(peer, devs)
        acked = sum(len(d.acked) for d in devs)
        self.assertGreaterEqual(len(seen), acked)
        sys.stderr.write("scale-out: %d acknowledged (%d after the stop), %d attempts without "
                         "250, %d upstream; a sent %d, b sent %d; a's exit log: %s\n" % (
                             acked, sum(1 for d in devs for t in d.acked.values() if t > stopped),
                             sum(len(d.failed) for d in devs), len(seen),
                             len(self.sent_lines(a)), len(self.sent_lines(b)),
                             " | ".join(a.grep(r"event=(stopping|stopped|disconnect.*421)"))))
        # the stopped instance comes back on its port and is used again
        a2 = self.instance("a2", peer.port, devices, port=a_port)
        hp.wait_status({"a": "UP", "b": "UP"})
        devs2 = self.run_devices(hp, count=6, tag="r2")
        self.join(devs2)
        for d in devs2:
            self.assertEqual(d.given_up, [], "device %s: %r" % (d.source, d.failed))
        self.wait_until(lambda: len(self.sent_lines(a2)) >= 1, 30,
                        "message through the restarted instance")
        peer.wait_idle(10)
        self.assert_delivered_once(peer, devs + devs2)
        self.stop_expect_0(a2)
        self.stop_expect_0(b)

    def test_spool_instance_stopped_and_back_with_its_spool(self):
        # mode = spool, a spool_dir per instance (a StatefulSet's volume per pod): the
        # upstream is down while the devices send, so a holds acknowledged messages
        # when it is stopped; back with the same spool it delivers them
        devices, users = self.devices()
        hold, peer_port = self.reserve_port()
        spools = {n: os.path.join(self.dir, "spool-" + n) for n in ("a", "b")}
        extra = {n: {"mode": "spool", "spool_dir": spools[n], "retry_min": "1s",
                     "retry_max": "2s"} for n in spools}
        a = self.instance("a", peer_port, devices, extra=extra["a"])
        b = self.instance("b", peer_port, devices, extra=extra["b"])
        hp = Balancer(self.haproxy_bin, self.dir, [("a", a.port), ("b", b.port)])
        self.addCleanup(hp.stop)
        hp.start()
        hp.wait_status({"a": "UP", "b": "UP"})
        devs = self.run_devices(hp, count=8)
        self.join(devs)
        for d in devs:
            self.assertEqual(d.given_up, [], "device %s: %r" % (d.source, d.failed))
        self.assertGreater(len(self.queued_lines(a)), 0, "a spooled nothing")
        self.assertGreater(len(self.queued_lines(b)), 0, "b spooled nothing")
        a_port = a.port
        self.stop_expect_0(a)
        self.assertTrue(os.listdir(os.path.join(spools["a"], "q")),
                        "a's spool is empty after the stop")
        hold.close()
        peer = self.start_peer(users=users, port=peer_port)
        a2 = self.instance("a2", peer_port, devices, port=a_port, extra=extra["a"])
        acked = sum(len(d.acked) for d in devs)
        self.assertEqual(acked, 24)
        peer.wait_messages(acked, timeout=120)
        peer.wait_idle(10)
        self.assert_delivered_once(peer, devs)
        self.assertEqual(len(peer.messages()), acked, "a message was delivered twice")
        self.stop_expect_0(a2)
        self.stop_expect_0(b)

    # the README's recipe --------------------------------------------------------

    def readme_blocks(self, lang):
        """The ```lang blocks of the README's scale-out section."""
        with open(os.path.join(REPO, "README.md")) as f:
            text = f.read()
        start = text.index("## Several instances")
        end = text.index("\n## ", start + 1)
        return re.findall(r"(?ms)^```%s\n(.*?)^```" % lang, text[start:end])

    def test_readme_haproxy_config_is_valid(self):
        (cfg,) = self.readme_blocks("haproxy")
        path = os.path.join(self.dir, "readme-haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        r = subprocess.run([self.haproxy_bin, "-c", "-f", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
        # what the tested Balancer config has, the README's has too
        for line in ("external-check", "insecure-fork-wanted", "option redispatch 1",
                     "option external-check", "balance leastconn",
                     "external-check command /usr/local/libexec/relay25-haproxy-check"):
            self.assertRegex(cfg, r"(?m)^\s*%s\b" % re.escape(line))
        self.assertEqual(len(re.findall(r"(?m)^\s*server .* send-proxy-v2 check\b", cfg)), 2)

    def test_readme_kubernetes_example(self):
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml is not installed: the README's manifests are not parsed")
        docs = [d for block in self.readme_blocks("yaml") for d in yaml.safe_load_all(block)]
        kinds = {d["kind"]: d for d in docs}
        self.assertEqual(sorted(kinds), ["ConfigMap", "Deployment", "Service", "StatefulSet"])
        for kind in ("Deployment", "StatefulSet"):
            pod = kinds[kind]["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            self.assertEqual(c["readinessProbe"]["exec"]["command"],
                             ["/usr/sbin/relay25", "health", "--proxy", "127.0.0.1:2525"])
            self.assertGreater(pod["terminationGracePeriodSeconds"], 30)
        sts = kinds["StatefulSet"]["spec"]
        (claim,) = sts["volumeClaimTemplates"]
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        mounts = {m["name"]: m["mountPath"]
                  for m in sts["template"]["spec"]["containers"][0]["volumeMounts"]}
        self.assertEqual(mounts[claim["metadata"]["name"]], "/var/spool/relay25")
        self.assertTrue(any("proxy-protocol" in k or "proxyprotocol" in k
                            for k in kinds["Service"]["metadata"]["annotations"]))
        # the ConfigMap's relay25.conf passes `relay25 check`, in both modes, with the
        # secrets where the pods mount them (here: files in the test directory)
        conf = kinds["ConfigMap"]["data"]["relay25.conf"]
        secrets_dir = os.path.join(self.dir, "secrets")
        os.mkdir(secrets_dir)
        for name in ("scanner", "office"):
            self.password_file(name, self.new_password(name),
                               name=os.path.join("secrets", name))
        conf = conf.replace("/run/secrets/relay25/", secrets_dir + "/")
        spool = conf.replace("; spool mode (the StatefulSet below): mode = spool",
                             "mode = spool").replace(
            ";                                     spool_dir = /var/spool/relay25",
            "spool_dir = %s" % os.path.join(self.dir, "spool"))
        self.assertNotEqual(spool, conf)
        for text in (conf, spool):
            path = os.path.join(self.dir, "k8s.conf")
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600)
            r = self.run_check(path)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("scanner", r.stdout)

    def queued_lines(self, relay):
        return relay.grep(r"\bstatus=queued\b")

    def reserve_port(self):
        """A bound, not listening socket (connections to it are refused) to start the
        upstream on later. Returns (socket, port)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        self.addCleanup(s.close)
        return s, s.getsockname()[1]


if __name__ == "__main__":
    if not shutil.which("haproxy") and not os.path.exists("/usr/sbin/haproxy"):
        print("note: haproxy is not installed; the scale-out tests will try apt-get or skip")
    main()
