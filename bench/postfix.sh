#!/bin/bash
# relay25 vs Postfix as a smarthost, on demand (never in CI). Prints one table.
#
#   bench/postfix.sh [--rounds N] [--quick] [--bin PATH] [--no-ceiling] [--keep]
#                    [--only NAME] [--targets LIST] [--alt-bin NAME=PATH] [--count N] [--spool]
#
# --rounds N  rounds, relay order alternating (default 2)
# --quick     200 small messages per scenario (smoke run, about a minute)
# --bin PATH  relay25 binary (default build/relay25, built here if missing)
# --keep      keep the work directory (configs, maillogs, relay25.log)
# --only NAME one scenario (e.g. "1M c10"); repeatable
# --targets   relays to run, default relay25,postfix
# --alt-bin   another relay25 binary as target NAME in the same rounds, e.g.
#             --only "1M c10" --targets relay25 --no-ceiling --alt-bin old=/tmp/relay25
#             compares a change side by side without Postfix (x = NAME / relay25)
# --count N   messages per run instead of the scenario's
# --spool     also each relay25 binary with mode = spool, as target NAME-spool
#             (relay25-spool; before-spool for --alt-bin before=...): passthrough,
#             spool and Postfix in the same rounds
#
# Needs root (Postfix instances are started with `postfix -c DIR start`). Installs
# the Debian packages it needs (postfix, sasl2-bin, libsasl2-modules, openssl)
# non-interactively; the system Postfix is left unconfigured and never started:
# the upstream and the Postfix smarthost run from their own directories on
# 127.0.0.1 ports, and everything is stopped at the end. See bench/postfix_bench.py
# for what is measured and how.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -- "$0" "$@"
fi

need=()
for pkg in postfix sasl2-bin libsasl2-modules openssl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "bench/postfix.sh: installing ${need[*]}" >&2
    # "No configuration": no /etc/postfix/main.cf, so the system instance never starts
    debconf-set-selections <<< "postfix postfix/main_mailer_type select No configuration"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
        { apt-get update -q >&2 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; }
fi

bin=build/relay25
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = --bin ] && bin=${args[$((i + 1))]:-}
done
if [ "$bin" = build/relay25 ] && [ ! -x build/relay25 ]; then
    cmake -S . -B build >&2 && cmake --build build -j2 >&2
fi

exec /usr/bin/python3 bench/postfix_bench.py "$@"
