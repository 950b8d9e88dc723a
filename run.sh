#!/bin/sh
# Installs what is missing, builds relay25 and runs it on 127.0.0.1:2525.
# - RELAY25_UPSTREAM (with RELAY25_USER and RELAY25_PASSWORD or _FILE) set:
#   relays to that provider, configured from the environment.
# - otherwise: a demo. A local test upstream (STARTTLS + AUTH, certificate from a
#   CA made now) runs on loopback and prints every message it receives.
set -eu
cd "$(dirname "$0")"
sh tests/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target relay25 >/dev/null
BIN="$PWD/build/relay25"

if [ -n "${RELAY25_UPSTREAM:-}" ]; then
    export RELAY25_LISTEN="${RELAY25_LISTEN:-127.0.0.1:2525}"
    echo "relay25: relaying $RELAY25_LISTEN -> $RELAY25_UPSTREAM" >&2
    exec "$BIN" serve
fi

DEMO="$PWD/build/demo"
mkdir -p "$DEMO"
/usr/bin/python3 - "$DEMO" <<'PY'
import sys
sys.path.insert(0, "tests/integration")
import certs
certs.make_pki(sys.argv[1], name="demo")
PY
/usr/bin/python3 tests/integration/peer.py --listen 127.0.0.1:0 --tls starttls \
    --cert "$DEMO/demo-server.pem" --key "$DEMO/demo-server.key" \
    --user demo@relay25.test:demo-password --print >"$DEMO/upstream.out" 2>&1 &
PEER=$!
trap 'kill $PEER 2>/dev/null' EXIT INT TERM
i=0
until grep -q '^listening ' "$DEMO/upstream.out" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { cat "$DEMO/upstream.out" >&2; exit 1; }
    sleep 0.1
done
PORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$DEMO/upstream.out")
# Started as root, relay25 binds and then serves as `user` (default relay25) and
# warns when that user does not exist: the demo serves as nobody instead, as a
# real install serves as relay25. The file holds a password: only ours to read.
RUNAS=""
if [ "$(id -u)" -eq 0 ] && ! getent passwd relay25 >/dev/null 2>&1; then
    RUNAS="user = nobody"
fi
rm -f "$DEMO/relay25.conf"
(umask 077 && cat >"$DEMO/relay25.conf") <<CONF
; demo: relay25 on 127.0.0.1:2525 in front of a local test upstream
[relay]
listen = 127.0.0.1:2525
allow = 127.0.0.0/8, ::1/128
hostname = relay25.demo
$RUNAS

[upstream demo]
host = 127.0.0.1
port = $PORT
tls = starttls
ca_file = $DEMO/demo-ca.pem
server_name = localhost

[device default]
user = demo@relay25.test
password = demo-password
CONF
tail -f "$DEMO/upstream.out" &
TAIL=$!
trap 'kill $PEER $TAIL 2>/dev/null' EXIT INT TERM
cat >&2 <<MSG
relay25 demo: relay on 127.0.0.1:2525, test upstream (STARTTLS + AUTH) on 127.0.0.1:$PORT.
Send a mail from another terminal:
    swaks --server 127.0.0.1:2525 --from me@example.com --to you@example.org
It is printed here as the upstream receives it. Ctrl-C stops the demo.
MSG
"$BIN" serve -c "$DEMO/relay25.conf"
