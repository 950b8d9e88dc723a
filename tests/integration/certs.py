#!/usr/bin/python3
"""Throwaway test PKI made with the openssl CLI at test time (never committed).

make_pki(dir, name) writes a self-signed CA and a server certificate for
"localhost" (SAN DNS:localhost, IP:127.0.0.1) signed by it, all EC P-256
(BearSSL validates ECDSA chains; TLS 1.2 ECDHE-ECDSA with AES-GCM/ChaCha20).
Call it twice with different names to get an unrelated CA for the
"untrusted CA" tests.

Standalone: /usr/bin/python3 tests/integration/certs.py OUTDIR
prints the paths (for the README demo upstream, see peer.py).
"""

import collections
import os
import subprocess
import sys

Pki = collections.namedtuple("Pki", "ca_file ca_key cert_file key_file")

DAYS = "7"

_SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = %s
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

SAN = "DNS:localhost, IP:127.0.0.1"


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args),
                                                       r.stdout.decode(errors="replace")))


def make_pki(directory, name="test", san=SAN):
    """Create <name>-ca.pem/.key and <name>-server.pem/.key in directory; san is the
    server certificate's subjectAltName in openssl's syntax ("IP:127.0.0.1")."""
    os.makedirs(directory, exist_ok=True)
    ca_key = os.path.join(directory, name + "-ca.key")
    ca_file = os.path.join(directory, name + "-ca.pem")
    key = os.path.join(directory, name + "-server.key")
    csr = os.path.join(directory, name + "-server.csr")
    cert = os.path.join(directory, name + "-server.pem")
    ext = os.path.join(directory, name + "-server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_file, "-days", DAYS,
             "-subj", "/O=relay25 tests/CN=relay25 %s CA" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-new", *ec, "-keyout", key, "-out", csr,
             "-subj", "/O=relay25 tests/CN=localhost", cwd=directory)
    with open(ext, "w") as f:
        f.write(_SERVER_EXT % san)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key,
             "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", ext, "-out", cert,
             cwd=directory)
    return Pki(ca_file, ca_key, cert, key)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: certs.py OUTDIR")
    p = make_pki(sys.argv[1])
    print("ca_file   %s\ncert_file %s\nkey_file  %s" % (p.ca_file, p.cert_file, p.key_file))
