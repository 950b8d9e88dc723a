#!/bin/sh
# Installs the Debian 12 packages relay25 needs to build, run its demo and run
# its tests, if any is missing. Used by ./run.sh, tests/run-tests.sh and .ci/run.
set -eu
# Extra packages may be named as arguments (tests/run-tests.sh adds its test peers).
PKGS="build-essential cmake pkg-config libuv1-dev libbearssl-dev libcrypt-dev libinih-dev libcjson-dev \
python3 python3-aiosmtpd openssl swaks ca-certificates $*"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "relay25: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
