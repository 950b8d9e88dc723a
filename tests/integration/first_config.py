#!/usr/bin/python3
"""Issue 14's new-user trial, simulated without the Internet: inside a private mount
and network namespace, smtp.gmail.com resolves to a local aiosmtpd upstream whose
certificate comes from a throwaway CA added to the system bundle (bind mounts only),
and 192.168.1.50 (the printer) and 192.168.1.77 (another device) are loopback
addresses. The README's first configuration is copied with only the logins and the
password files changed. Run by test_first_config.py as: unshare -mn python3 first_config.py SRC_DIR RELAY25_BIN"""
import os
import shutil
import smtplib
import subprocess
import sys
import time

t0 = time.time()
src = sys.argv[1]
sys.path.insert(0, os.path.join(src, "tests", "integration"))
from certs import make_pki  # noqa: E402
from peer import Peer  # noqa: E402

work = os.environ.get("FIRST_CONFIG_DIR", "/tmp/relay25-first-config")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)


def sh(*cmd, **kw):
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def step(what):
    print("[%5.1fs] %s" % (time.time() - t0, what), flush=True)


# the "network": lo up, the printer's and another device's addresses
sh("mount", "--make-rprivate", "/")
sh("ip", "link", "set", "lo", "up")
sh("ip", "addr", "add", "192.168.1.50/32", "dev", "lo")
sh("ip", "addr", "add", "192.168.1.77/32", "dev", "lo")
pki = make_pki(os.path.join(work, "pki"), name="gmail", san="DNS:smtp.gmail.com")
with open(os.path.join(work, "hosts"), "w") as f:
    f.write("127.0.0.1 localhost\n127.0.0.1 smtp.gmail.com\n")
sh("mount", "--bind", os.path.join(work, "hosts"), "/etc/hosts")
bundle = os.path.join(work, "ca-certificates.crt")
with open(bundle, "w") as f:
    f.write(open("/etc/ssl/certs/ca-certificates.crt").read() + open(pki.ca_file).read())
sh("mount", "--bind", bundle, "/etc/ssl/certs/ca-certificates.crt")
os.makedirs("/etc/relay25", exist_ok=True)
sh("mount", "-t", "tmpfs", "tmpfs", "/etc/relay25")

users = {"printer@example.com": "printer-app-password", "office@example.com": "office-app-pw"}
peer = Peer(tls="starttls", cert=pki.cert_file, key=pki.key_file, users=users,
            host="127.0.0.1", port=587, hostname="smtp.gmail.com")
peer.start()
step("the stand-in smtp.gmail.com:587 runs (STARTTLS, AUTH)")

# what the user does, from the README ------------------------------------------------
relay25 = sys.argv[2]
sample = os.path.join(src, "dist", "relay25.conf.sample")
conf = "/etc/relay25/relay25.conf"
shutil.copy(sample, conf)
for name, pw in (("printer", users["printer@example.com"]),
                 ("office", users["office@example.com"])):
    with open("/etc/relay25/%s.pass" % name, "w") as f:
        f.write(pw + "\n")
    os.chmod("/etc/relay25/%s.pass" % name, 0o600)
os.chmod(conf, 0o640)
step("sample copied to %s; password files written (the logins in it are kept)" % conf)
r = subprocess.run([relay25, "check", "-c", conf, "--upstream"], capture_output=True, text=True)
print(r.stdout + r.stderr)
step("check --upstream exit %d" % r.returncode)
assert r.returncode == 0, "check --upstream failed"
proc = subprocess.Popen([relay25, "serve", "-c", conf], stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
for ip, dev in (("192.168.1.50", "printer"), ("192.168.1.77", "office")):
    with smtplib.SMTP("192.168.1.50", 25, source_address=(ip, 0), timeout=30) as s:
        s.sendmail("%s@example.com" % dev, ["boss@example.org"],
                   "From: %s@example.com\r\nTo: boss@example.org\r\nSubject: scan from %s\r\n"
                   "\r\nsee attachment\r\n" % (dev, dev))
    step("%s (%s) got 250" % (dev, ip))
msgs = peer.wait_messages(2, timeout=30)
for m in msgs:
    print("upstream got: login=%s from=%s rcpt=%s tls=%s" % (m.login, m.mail_from, m.rcpt_tos,
                                                               m.tls))
assert sorted(m.login for m in msgs) == ["office@example.com", "printer@example.com"]
proc.terminate()
out = proc.communicate(timeout=30)[1]
print("\n".join(li for li in out.splitlines() if "status=" in li or "warn" in li))
peer.stop()
step("done: both devices delivered with their own logins")
