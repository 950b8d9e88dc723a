#!/usr/bin/python3
"""relay25 against Postfix as a smarthost, on demand (never in CI). Run via bench/postfix.sh.

Everything runs on 127.0.0.1 with its own config directories and ports; the
system Postfix (/etc/postfix, port 25) is never touched or started.

  upstream  a Postfix instance: one smtpd port that requires STARTTLS + AUTH
            (Cyrus sasldb, PLAIN/LOGIN; certificate from a throwaway CA made by
            tests/integration/certs.py) and one plain port (the ceiling). Every
            message is discarded (default_transport = discard). It logs through
            postlogd to its own file (maillog_file); a message counts as arrived
            when its "status=sent (...)" line from discard(8) is in that file.
  postfix   a second Postfix instance set up as users set up a null-client
            smarthost: relayhost = [127.0.0.1]:<upstream TLS port>,
            smtp_sasl_auth_enable with a hash: smtp_sasl_password_maps,
            smtp_tls_security_level = secure against the CA, TLS session cache.
  relay25   the binary under test (--bin), tls = starttls, ca_file = the CA,
            server_name = localhost, the same SASL user.
  NAME-spool  a relay25 binary (relay25 or an --alt-bin NAME) with mode = spool:
            the same config plus its own spool_dir; the client's 250 waits for the
            message to be on disk (group commit), delivery follows from the spool.
            --spool adds NAME-spool after every relay25 target.
  ceiling   smtp-source straight to the upstream's plain port, one connection
            per message ("plain") and reusing connections with -d ("plain-reuse");
            smtp-source speaks no TLS, so for the TLS port a Python smtplib client
            (CONCURRENCY threads on the same 2 cores, so a low bound): "tls-new" opens
            a STARTTLS+AUTH session per message (what a relay without reuse could
            reach at best), "tls-reuse" one session per thread for all its messages.

Load: smtp-source (from the postfix package) with -s CONCURRENCY -m COUNT -l SIZE,
no -d: a new client connection per message.

Measured per relay and scenario, between the start of smtp-source and the moment
the upstream has logged the last delivery:
  msg/s       COUNT / that time.
  cpu/1k      CPU seconds (utime+stime) per 1000 messages over the relay's whole
              process tree. relay25: its one process. Postfix: the instance's
              master plus every live child (found by scanning /proc for ppid ==
              master), each utime+stime+cutime+cstime, sampled before and after;
              the master waitpid()s every child it forks, so children that exited
              in between are in its cutime/cstime. after - before is the tree's CPU
              in the interval (the "after" sample is taken once smtp-source has
              exited and 1 s later, so QUITs and cache closes are included).
  up-cpu/1k   the same for the upstream instance (what the relay costs the upstream).
  PSS MB      peak of the summed Pss (/proc/PID/smaps_rollup) over the same process
              set, sampled every 0.2 s during the run.
  up-conns    "connect from" lines at the upstream port used, during the run.
Each relay is started for its own run and stopped after it (one relay at a time;
peaks are per scenario); the upstream runs throughout. Before each run the bench
waits (at most --quiet-wait s) for the rest of the machine to be idle, and notes
runs during which other processes used CPU (/proc/stat minus everything the bench
runs). Rounds alternate the order (relay25 first on odd rounds, Postfix first on
even); the table shows medians over rounds and ratios to Postfix from this run.
"""
import argparse
import datetime
import os
import pwd
import re
import resource
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import certs  # noqa: E402  (stdlib only; relaytest.py would pull in aiosmtpd)

SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"
POSTMAP = "/usr/sbin/postmap"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"
DOMAIN = "bench.test"
USER = "bench"
LOGIN = USER + "@" + DOMAIN
PASSWORD = "bench-pass-Xq7"
SENDER = "sender@" + DOMAIN
RCPT = "sink@example.org"
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Services an instance needs; chroot off (our directories are not chroot-ready).
MASTER_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_ini(sections):
    return "".join("[%s]\n%s\n" % (h, "".join("%s = %s\n" % kv for kv in keys.items()))
                   for h, keys in sections)


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# --------------------------------------------------------------------------- /proc

def read_stat(pid):
    """(ppid, utime+stime+cutime+cstime in ticks) or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] = state (field 3); ppid = field 4; utime..cstime = fields 14..17
    return int(rest[1]), sum(int(x) for x in rest[11:15])


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read_stat(int(d))
            if st and st[0] == pid:
                out.append(int(d))
    return out


def tree_pids(root):
    return [root] + children_of(root) if root and read_stat(root) else []


def tree_cpu(root):
    """CPU seconds of root (with its reaped children) and its live children."""
    if not root:
        return 0.0
    total = 0
    for p in tree_pids(root):
        st = read_stat(p)
        if st:
            total += st[1]
    return total / CLK


def system_busy():
    """CPU seconds the machine spent in processes (/proc/stat user+nice+system; irq and
    softirq, where loopback traffic is accounted, are left out)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2]) / CLK


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def leftovers(base):
    """Processes whose environment names a config directory under base."""
    mine, key = [], ("MAIL_CONFIG=" + base).encode()
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    if any(v.startswith(key) for v in f.read().split(b"\0")):
                        mine.append(int(d))
            except OSError:
                pass
    return mine


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for li in f:
                if li.startswith("Pss:"):
                    return int(li.split()[1])
    except OSError:
        pass
    return 0


class MemSampler(threading.Thread):
    """Peak of the summed PSS over the process tree of each root, every 0.2 s."""

    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots = roots
        self.peak = {r: 0 for r in roots}
        self.stop_ev = threading.Event()

    def sample(self):
        for r in self.roots:
            self.peak[r] = max(self.peak[r], sum(pss_kb(p) for p in tree_pids(r)))

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(0.2)

    def finish(self):
        self.stop_ev.set()
        self.join()
        self.sample()
        return self.peak


# --------------------------------------------------------------------------- Postfix

class PostfixInstance:
    """A Postfix instance in BASE/NAME/{etc,queue,data}, started with postfix -c."""

    def __init__(self, base, name):
        self.name = name
        self.dir = os.path.join(base, name)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        for d in (self.dir, self.etc, self.queue, self.data):
            os.makedirs(d, mode=0o755, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")   # postfix check fixes the rest
        self.started = self.checked = False
        self.master_pid = None

    def main_cf(self, base, extra):
        common = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "bench-" + self.name,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": base,
            "myhostname": self.name + "." + DOMAIN,
            "mydomain": DOMAIN,
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtputf8_enable": "no",
            "readme_directory": "no",
        }
        common.update(extra)
        write(os.path.join(self.etc, "main.cf"),
              "".join("%s = %s\n" % kv for kv in common.items()))

    def master_cf(self, inet_lines):
        write(os.path.join(self.etc, "master.cf"), inet_lines + MASTER_SERVICES)

    def postfix(self, *args, check=True):
        r = subprocess.run([POSTFIX, "-c", self.etc, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out = r.stdout.decode(errors="replace")
        if check and r.returncode != 0:
            raise RuntimeError("postfix -c %s %s failed (%d):\n%s"
                               % (self.etc, " ".join(args), r.returncode, out))
        return out

    def start(self):
        if not self.checked:    # creates the queue directories the first time
            self.postfix("check")
            self.checked = True
        self.started = True
        self.postfix("start")
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        for _ in range(100):
            try:
                with open(pidfile) as f:
                    self.master_pid = int(f.read().strip())
                if read_stat(self.master_pid):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("%s: master did not start:\n%s" % (self.name, self.log_tail()))

    def stop(self):
        if not self.started:
            return
        self.started = False
        self.postfix("stop", check=False)
        pid, self.master_pid = self.master_pid, None
        for _ in range(100):
            if pid is None or not read_stat(pid):
                return
            time.sleep(0.1)
        log("%s: master %d still there after postfix stop; abort" % (self.name, pid))
        self.postfix("abort", check=False)
        time.sleep(1)
        if read_stat(pid):
            os.kill(pid, signal.SIGKILL)

    def queue_count(self):
        """Messages in the instance's queue (maildrop, incoming, active, deferred, hold)."""
        n = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n

    def log_size(self):
        try:
            return os.path.getsize(self.maillog)
        except OSError:
            return 0

    def log_since(self, off):
        try:
            with open(self.maillog, "rb") as f:
                f.seek(off)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=20):
        return "\n".join(self.log_since(0).splitlines()[-n:])


class LogCounter:
    """Counts matching lines appended to a file since an offset (polled)."""

    def __init__(self, path, off, pattern):
        self.path, self.off, self.re = path, off, re.compile(pattern)
        self.count, self.partial = 0, b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self.count
        self.off += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for li in lines:
            if self.re.search(li.decode(errors="replace")):
                self.count += 1
        return self.count


# --------------------------------------------------------------------------- setup

class Bench:
    def __init__(self, args):
        self.args = args
        self.base = tempfile.mkdtemp(prefix="relay25-bench-")
        os.chmod(self.base, 0o755)
        self.relay25_proc = None
        self.instances = []
        self.ports = {}
        # relay25 targets: "relay25" is --bin, the others come from --alt-bin; each
        # also as NAME-spool (mode = spool): name -> (binary, spool)
        self.bins = {}
        for name, path in [("relay25", args.bin)] + list(args.alt_bin):
            self.bins[name] = (path, False)
            self.bins[name + "-spool"] = (path, True)

    def setup(self):
        b = self.base
        log("work directory %s" % b)
        self.pki = certs.make_pki(os.path.join(b, "pki"), "bench")
        for fn in os.listdir(os.path.join(b, "pki")):
            os.chmod(os.path.join(b, "pki", fn), 0o644)
        os.chmod(os.path.join(b, "pki"), 0o755)
        p = self.ports = {k: free_port() for k in ("up_tls", "up_plain", "postfix", "relay25")}

        # ---- upstream
        up = self.upstream = PostfixInstance(b, "upstream")
        # Debian's Postfix reads the Cyrus config from $config_directory/sasl/smtpd.conf
        # (strace shows it; cyrus_sasl_config_path is set to the same place anyway).
        sasl = os.path.join(up.etc, "sasl")
        os.makedirs(sasl, mode=0o755)
        sasldb = os.path.join(sasl, "sasldb2")
        r = subprocess.run([SASLPASSWD2, "-c", "-p", "-f", sasldb, "-u", DOMAIN, USER],
                           input=PASSWORD.encode(), capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("saslpasswd2 failed: %s" % r.stderr.decode())
        os.chmod(sasldb, 0o644)   # smtpd reads it as the postfix user; throwaway secret
        write(os.path.join(sasl, "smtpd.conf"),
              "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
              "sasldb_path: %s\n" % sasldb)
        up.main_cf(b, {
            "default_transport": "discard",
            "relay_transport": "discard",
            "local_transport": "discard",
            "virtual_transport": "discard",
            "smtpd_tls_chain_files": "%s, %s" % (self.pki.key_file, self.pki.cert_file),
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "cyrus_sasl_config_path": sasl,
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        })
        up.master_cf(
            "127.0.0.1:%d inet n - n - - smtpd\n"
            "  -o syslog_name=bench-upstream/tls\n"
            "  -o smtpd_tls_security_level=encrypt\n"
            "  -o smtpd_tls_auth_only=yes\n"
            "  -o smtpd_sasl_auth_enable=yes\n"
            "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
            "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
            "127.0.0.1:%d inet n - n - - smtpd\n"
            "  -o syslog_name=bench-upstream/plain\n" % (p["up_tls"], p["up_plain"]))
        self.instances.append(up)

        # ---- Postfix null-client smarthost
        pf = self.peer = PostfixInstance(b, "postfix")
        pw_map = os.path.join(pf.etc, "sasl_passwd")
        write(pw_map, "[127.0.0.1]:%d %s:%s\n" % (p["up_tls"], LOGIN, PASSWORD), 0o600)
        pf.main_cf(b, {
            "relayhost": "[127.0.0.1]:%d" % p["up_tls"],
            "local_transport": "error:local delivery is disabled",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": "hash:" + pw_map,
            "smtp_sasl_security_options": "noanonymous",
            "smtp_tls_security_level": "secure",
            "smtp_tls_CAfile": self.pki.ca_file,
            "smtp_tls_secure_cert_match": "localhost",
            "smtp_tls_session_cache_database": "btree:${data_directory}/smtp_scache",
        })
        pf.master_cf("127.0.0.1:%d inet n - n - - smtpd\n" % p["postfix"])
        subprocess.run([POSTMAP, "-c", pf.etc, pw_map], check=True)
        self.instances.append(pf)

        up.start()
        log("upstream: master pid %d" % up.master_pid)

        # ---- relay25
        rd = os.path.join(b, "relay25")
        os.makedirs(rd, mode=0o755)
        pwfile = os.path.join(rd, "password")
        write(pwfile, PASSWORD + "\n")
        self.relay25_cfg = os.path.join(rd, "relay25.ini")
        self.relay25_spool_cfg = os.path.join(rd, "relay25-spool.ini")
        spool = os.path.join(rd, "spool")
        os.makedirs(spool, mode=0o700)
        pw = pwd.getpwnam("nobody")
        os.chown(spool, pw.pw_uid, pw.pw_gid)   # relay25 drops to nobody before it opens it
        for cfg, extra in ((self.relay25_cfg, {}),
                           (self.relay25_spool_cfg, {"mode": "spool", "spool_dir": spool})):
            write(cfg, render_ini([
                ("relay", dict({"listen": "127.0.0.1:%d" % p["relay25"], "allow": "127.0.0.0/8",
                                "hostname": "relay25." + DOMAIN, "max_message_size": "64M",
                                "log_level": "info", "max_connections": 1000,
                                "max_connections_per_ip": 1000, "user": "nobody"}, **extra)),
                ("upstream bench", dict({"host": "127.0.0.1", "port": p["up_tls"],
                                         "tls": "starttls", "ca_file": self.pki.ca_file,
                                         "server_name": "localhost"},
                                        **dict(self.args.upstream_set))),
                ("device default", {"user": LOGIN, "password_file": pwfile}),
            ]))
        self.relay25_log = os.path.join(rd, "relay25.log")
        self.relay25_logf = open(self.relay25_log, "ab")
        log("ports: %s" % p)

    # Each relay is started fresh for its run and stopped after it, so its peak memory
    # belongs to that scenario (no idle smtpd processes or heap left from a bigger one)
    # and only one relay exists at a time.
    def start_relay25(self, binary, spool=False):
        off = os.path.getsize(self.relay25_log)
        cfg = self.relay25_spool_cfg if spool else self.relay25_cfg
        self.relay25_proc = subprocess.Popen(
            [binary, "serve", "-c", cfg], stdin=subprocess.DEVNULL,
            stdout=self.relay25_logf, stderr=subprocess.STDOUT)
        for _ in range(100):
            with open(self.relay25_log, errors="replace") as f:
                f.seek(off)
                if "event=listening" in f.read():
                    break
            if self.relay25_proc.poll() is not None:
                raise RuntimeError("relay25 exited:\n" + open(self.relay25_log).read())
            time.sleep(0.1)
        else:
            raise RuntimeError("relay25 is not listening:\n" + open(self.relay25_log).read())
        return self.relay25_proc.pid

    def stop_relay25(self):
        if self.relay25_proc and self.relay25_proc.poll() is None:
            self.relay25_proc.terminate()
            try:
                rc = self.relay25_proc.wait(40)
                if rc != 0:
                    log("relay25 exited %d after SIGTERM" % rc)
            except subprocess.TimeoutExpired:
                log("relay25 did not exit 40 s after SIGTERM; SIGKILL")
                self.relay25_proc.kill()
                self.relay25_proc.wait()
        self.relay25_proc = None

    def start_relay(self, target):
        if target in self.bins:
            return self.start_relay25(*self.bins[target])
        if target == "postfix":
            self.peer.start()
            return self.peer.master_pid
        return None

    def stop_relay(self, target):
        if target in self.bins:
            self.stop_relay25()
        elif target == "postfix":
            self.peer.stop()
            if self.peer.queue_count():     # a failed run: do not deliver it in the next one
                log("postfix: %d messages left in the queue, deleted" % self.peer.queue_count())
                subprocess.run(["/usr/sbin/postsuper", "-c", self.peer.etc, "-d", "ALL"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_quiet(self):
        """Wait (at most --quiet-wait s) until the rest of the machine is idle: busy
        under 0.2 cores over one second. Returns the busy cores last seen."""
        deadline = time.monotonic() + self.args.quiet_wait
        while True:
            b0 = system_busy()
            time.sleep(1.0)
            busy = system_busy() - b0
            if busy < 0.2 or time.monotonic() > deadline:
                return busy

    def teardown(self):
        self.stop_relay25()
        for inst in reversed(self.instances):
            inst.stop()
        # Anything of ours still running? Postfix daemons carry MAIL_CONFIG=<our etc dir>.
        for pid in leftovers(self.base):
            log("left over: pid %d %s; SIGTERM" % (pid, cmdline(pid)))
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        if self.args.keep:
            log("kept %s" % self.base)
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    # ----------------------------------------------------------------------- one run

    def our_cpu(self):
        """CPU seconds of everything this bench runs: relay25, both Postfix trees,
        this process and its reaped children (smtp-source, postfix commands)."""
        t = (tree_cpu(self.relay25_proc.pid if self.relay25_proc else None)
             + sum(tree_cpu(i.master_pid) for i in self.instances))
        me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        return t + me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime

    def wait_drained(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(i.queue_count() == 0 for i in self.instances):
                return
            time.sleep(0.1)
        raise RuntimeError("queues not empty after %ds: %s" % (
            timeout, {i.name: i.queue_count() for i in self.instances}))

    def run_one(self, target, count, size, conc):
        """target: relay25 | postfix | plain | plain-reuse | tls-new | tls-reuse."""
        self.wait_drained()
        relay_root = self.start_relay(target)
        try:
            busy = self.wait_quiet()
            r = self.measure(target, count, size, conc, relay_root)
        finally:
            self.stop_relay(target)
        if busy >= 0.2:
            r["notes"].insert(0, "machine busy (%.2f cores) before the run" % busy)
        return r

    def measure(self, target, count, size, conc, relay_root):
        up = self.upstream
        off = up.log_size()
        delivered = LogCounter(up.maillog, off, r"/discard\[\d+\]: .*status=sent")
        r25_off = os.path.getsize(self.relay25_log)
        mem = MemSampler([r for r in (relay_root, up.master_pid) if r])
        cpu0 = tree_cpu(relay_root) if relay_root else 0.0
        ucpu0 = tree_cpu(up.master_pid)
        ours0 = self.our_cpu()
        sys0 = system_busy()
        mem.start()

        port = self.ports["relay25"] if target in self.bins else {"postfix": self.ports["postfix"],
                "plain": self.ports["up_plain"], "plain-reuse": self.ports["up_plain"],
                "tls-new": self.ports["up_tls"], "tls-reuse": self.ports["up_tls"]}[target]
        errs = tempfile.TemporaryFile()
        t0 = time.monotonic()
        if target.startswith("tls-"):
            client = TlsClient(port, self.pki.ca_file, count, size, conc,
                               reuse=target == "tls-reuse")
            client.start()
            alive = client.is_alive
        else:
            cmd = [SMTP_SOURCE, "-s", str(conc), "-m", str(count), "-l", str(size),
                   "-f", SENDER, "-t", RCPT, "-M", "client." + DOMAIN]
            if target == "plain-reuse":
                cmd.insert(1, "-d")
            client = subprocess.Popen(cmd + ["127.0.0.1:%d" % port], stdin=subprocess.DEVNULL,
                                      stdout=errs, stderr=subprocess.STDOUT)
            alive = lambda: client.poll() is None  # noqa: E731
        t_end = None
        t_client = None
        last_change, last_n = time.monotonic(), 0
        limit = t0 + self.args.timeout
        while True:
            n = delivered.poll()
            now = time.monotonic()
            if n >= count:
                t_end = now
                break
            if n != last_n:
                last_n, last_change = n, now
            if t_client is None and not alive():
                t_client = now
            # the client is done and nothing arrived for 5 s with the queues empty: give up
            if (t_client is not None and now - last_change > 5
                    and all(i.queue_count() == 0 for i in self.instances)):
                break
            if now > limit:
                log("%s: timeout after %ds with %d/%d delivered" % (target, self.args.timeout,
                                                                   n, count))
                break
            time.sleep(0.02)
        # let the client finish (QUITs, closes), then settle and take the CPU samples
        if target.startswith("tls-"):
            client.join(60)
            client_rc = 0 if not client.errors else 1
            errs.write("\n".join(client.errors[:20]).encode())
        else:
            try:
                client.wait(60)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
            client_rc = client.returncode
        time.sleep(1.0)
        cpu1 = tree_cpu(relay_root) if relay_root else 0.0
        ucpu1 = tree_cpu(up.master_pid)
        other = (system_busy() - sys0) - (self.our_cpu() - ours0)
        wall = time.monotonic() - t0
        peaks = mem.finish()
        n = delivered.poll()
        uplog = up.log_since(off)
        tag = {"plain": "plain", "plain-reuse": "plain"}.get(target, "tls")
        conns = len(re.findall(r"bench-upstream/%s/smtpd\[\d+\]: connect from" % tag, uplog))
        errs.seek(0)
        client_out = errs.read().decode(errors="replace")
        errs.close()
        notes = []
        if other / wall > 0.25:
            notes.append("other processes on this machine used %.2f cores meanwhile"
                         % (other / wall))
        if client_rc:
            notes.append("client exit %s: %s" % (client_rc, " | ".join(
                client_out.strip().splitlines()[-3:])))
        elif client_out.strip():
            notes.append("client: " + " | ".join(client_out.strip().splitlines()[-3:]))
        if target in self.bins:
            with open(self.relay25_log, "rb") as f:
                f.seek(r25_off)
                r25 = f.read().decode(errors="replace").splitlines()
            bad = [li for li in r25 if li.startswith(("warn ", "error "))
                   or "status=deferred" in li or "status=bounced" in li]
            if bad:
                notes.append("relay25: %d warn/error/deferred lines, e.g.: %s"
                             % (len(bad), " || ".join(bad[:3])))
        if n < count:
            notes.append("only %d/%d delivered" % (n, count))
        secs = (t_end or time.monotonic()) - t0
        return {
            "target": target, "n": n, "count": count, "secs": secs,
            "rate": n / secs if secs > 0 else 0.0,
            "cpu_k": (cpu1 - cpu0) * 1000.0 / max(n, 1) if relay_root else None,
            "ucpu_k": (ucpu1 - ucpu0) * 1000.0 / max(n, 1),
            "pss_mb": peaks[relay_root] / 1024.0 if relay_root else None,
            "conns": conns, "ok": n >= count, "notes": notes, "other": other / wall,
        }


class TlsClient(threading.Thread):
    """Python smtplib load on the upstream TLS port: conc threads; reuse: one
    STARTTLS+AUTH session per thread for its share, else one session per message."""

    def __init__(self, port, ca_file, count, size, conc, reuse):
        super().__init__(daemon=True)
        self.port, self.ca_file, self.count, self.size, self.conc = port, ca_file, count, size, conc
        self.reuse = reuse
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.errors = []
        line = b"x" * 76 + b"\r\n"
        head = ("From: %s\r\nTo: %s\r\nSubject: bench\r\n\r\n" % (SENDER, RCPT)).encode()
        self.msg = head + (line * (size // len(line) + 1))[:size]

    def session(self, n):
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client." + DOMAIN,
                          timeout=120) as s:
            s.starttls(context=self.ctx)   # name check: the cert has IP:127.0.0.1
            s.login(LOGIN, PASSWORD)
            for _ in range(n):
                s.sendmail(SENDER, [RCPT], self.msg)
            s.quit()

    def worker(self, n):
        try:
            if self.reuse:
                self.session(n)
            else:
                for _ in range(n):
                    self.session(1)
        except Exception as e:  # noqa: BLE001 - reported in the table notes
            self.errors.append("%s: %s" % (type(e).__name__, e))

    def run(self):
        share = [self.count // self.conc + (1 if i < self.count % self.conc else 0)
                 for i in range(self.conc)]
        ts = [threading.Thread(target=self.worker, args=(k,), daemon=True) for k in share if k]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


# --------------------------------------------------------------------------- main

def scenarios(quick):
    if quick:
        return [("2K c1", 200, 2048, 1), ("2K c10", 200, 2048, 10), ("2K c50", 200, 2048, 50)]
    return [("2K c1", 2000, 2048, 1), ("2K c10", 2000, 2048, 10), ("2K c50", 2000, 2048, 50),
            ("1M c10", 200, 1048576, 10)]


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return "-" if a is None or b in (None, 0) else "%.2f" % (a / b)


def med(results, key):
    vals = [r[key] for r in results if r[key] is not None]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="200 small messages per scenario")
    ap.add_argument("--bin", default=os.environ.get("RELAY25_BIN")
                    or os.path.join(REPO, "build", "relay25"))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per run at most")
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="before each run wait up to this many seconds for an idle machine")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help='run only this scenario (e.g. "1M c10"); repeatable')
    ap.add_argument("--targets", metavar="LIST", default="relay25,postfix",
                    help="comma-separated relays to run (relay25, postfix, --alt-bin names); "
                    "the ceiling runs follow --no-ceiling")
    ap.add_argument("--alt-bin", action="append", default=[], metavar="NAME=PATH",
                    type=lambda v: tuple(v.split("=", 1)) if "=" in v else
                    ap.error("--alt-bin wants NAME=PATH"),
                    help="another relay25 binary run as target NAME in the same rounds "
                    "(side-by-side before/after); added to --targets")
    ap.add_argument("--count", type=int, help="messages per run instead of the scenario's")
    ap.add_argument("--spool", action="store_true",
                    help="also run each relay25 target with mode = spool (as NAME-spool)")
    ap.add_argument("--upstream-set", action="append", default=[], metavar="KEY=VALUE",
                    type=lambda v: tuple(v.split("=", 1)) if "=" in v else
                    ap.error("--upstream-set wants KEY=VALUE"),
                    help="a key for relay25's [upstream] section, e.g. max_connections=10 "
                    "(default: relay25's defaults)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (Postfix instances are started with postfix -c DIR start)")
    for _name, path in [("relay25", args.bin)] + args.alt_bin:
        if not os.access(path, os.X_OK):
            sys.exit("relay25 binary not found: %s (build it, or --bin PATH)" % path)
    relay_names = [t for t in args.targets.split(",") if t]
    relay_names += [n for n, _p in args.alt_bin if n not in relay_names]
    if args.spool:
        relay_names = [x for t in relay_names for x in (
            [t, t + "-spool"] if t == "relay25" or t in dict(args.alt_bin) else [t])]
        relay_names = [t for i, t in enumerate(relay_names) if t not in relay_names[:i]]
    r25 = ["relay25"] + [n for n, _p in args.alt_bin]
    for t in relay_names:
        if t != "postfix" and t not in r25 and not (t.endswith("-spool") and t[:-6] in r25):
            sys.exit("unknown target %r" % t)
    scens = [(n, args.count or c, sz, k) for n, c, sz, k in scenarios(args.quick)
             if not args.only or n in args.only]
    if not scens:
        sys.exit("no scenario named %s; have: %s" % (
            args.only, ", ".join(sc[0] for sc in scenarios(args.quick))))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    bench = Bench(args)
    results = {}   # (scenario, target) -> [result, ...]
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.monotonic()
    try:
        bench.setup()
        for rnd in range(args.rounds):
            # rotate the order each round so no relay always runs first
            k = rnd % len(relay_names)
            relays = relay_names[k:] + relay_names[:k]
            if len(relay_names) == 2 and rnd % 2:
                relays = relay_names[::-1]
            for name, count, size, conc in scens:
                targets = relays + ([] if args.no_ceiling else
                                    ["plain", "plain-reuse", "tls-new", "tls-reuse"])
                for target in targets:
                    r = bench.run_one(target, count, size, conc)
                    results.setdefault((name, target), []).append(r)
                    log("round %d %-7s %-11s %6.1f msg/s  %d/%d in %.1fs  cpu/1k %s  "
                        "up-cpu/1k %.2f  pss %s MB  up-conns %d%s" % (
                            rnd + 1, name, target, r["rate"], r["n"], r["count"], r["secs"],
                            fmt(r["cpu_k"], ".2f"), r["ucpu_k"], fmt(r["pss_mb"], ".1f"),
                            r["conns"], ("  NOTE " + "; ".join(r["notes"])) if r["notes"]
                            else ""))
    except KeyboardInterrupt as e:
        log("interrupted (%s)" % e)
    finally:
        bench.teardown()

    if not results:
        sys.exit(1)
    out = []
    out.append("relay25 vs Postfix smarthost, %s, %d round(s)%s, %.0f s; relay25 %s"
               % (started.strftime("%Y-%m-%d %H:%M UTC"), args.rounds,
                  " (--quick)" if args.quick else "", time.monotonic() - t_start, args.bin))
    out.append("medians over rounds; x = relay25/Postfix (--alt-bin/relay25 without Postfix); "
               "cpu/1k = CPU s per 1000 msgs of the relay's process tree; up-* = the upstream's")
    others = [r["other"] for rs in results.values() for r in rs]
    out.append("%d cores; CPU used by other processes during the runs: median %.2f, max %.2f cores"
               % (os.cpu_count(), statistics.median(others), max(others)))
    hdr = "%-7s %-11s %8s %5s %7s %5s %7s %5s %8s %8s  %s" % (
        "load", "target", "msg/s", "x", "cpu/1k", "x", "PSS MB", "x", "up-cpu/1k",
        "up-conns", "delivered")
    out.append(hdr)
    out.append("-" * len(hdr))
    notes = []
    for name, _c, _s, _k in scens:
        pf = results.get((name, "postfix"), [])
        base = pf or results.get((name, "relay25"), [])
        for target in [t for t in bench.bins if t in relay_names] + [
                "postfix", "plain", "plain-reuse", "tls-new", "tls-reuse"]:
            rs = results.get((name, target))
            if not rs:
                continue
            rate, cpu, pss = med(rs, "rate"), med(rs, "cpu_k"), med(rs, "pss_mb")
            # x: relay25 against Postfix; without Postfix, --alt-bin against relay25
            is_r25 = target in bench.bins and (pf or target != "relay25")
            out.append("%-7s %-11s %8.1f %5s %7s %5s %7s %5s %8.2f %8s  %s" % (
                name, target, rate, ratio(rate, med(base, "rate")) if is_r25 else "",
                fmt(cpu, ".2f"), ratio(cpu, med(base, "cpu_k")) if is_r25 else "",
                fmt(pss, ".1f"), ratio(pss, med(base, "pss_mb")) if is_r25 else "",
                med(rs, "ucpu_k"), "%g" % med(rs, "conns"),
                "/".join(str(r["n"]) for r in rs) + " of %d" % rs[0]["count"]))
            for i, r in enumerate(rs):
                for nt in r["notes"]:
                    notes.append("%s %s round %d: %s" % (name, target, i + 1, nt))
    if notes:
        out.append("")
        out.append("notes:")
        out.extend("  " + n for n in notes)
    print("\n".join(out))
    ok = all(r["ok"] for rs in results.values() for r in rs)
    sys.exit(0 if ok else 2)


if __name__ == "__main__":
    main()
