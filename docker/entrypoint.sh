#!/bin/sh
# relay25 container entrypoint (POSIX sh). With a mounted INI file
# (/etc/relay25/relay25.conf, or $RELAY25_CONFIG) it runs `relay25 serve -c FILE`.
# Otherwise it builds the configuration from the environment: every
# RELAY25_<X>_FILE (a Docker secret) becomes RELAY25_<X> with the file's content
# (RELAY25_PASSWORD_FILE and RELAY25_CA_FILE are relay25's own and pass through),
# RELAY25_LISTEN and RELAY25_ALLOW get container defaults, incomplete settings are
# refused with exit 78 (EX_CONFIG), then it execs `relay25 serve`.
# Arguments replace `serve`: `docker run IMAGE check --upstream`, `... sendmail -t`;
# an argument that is no relay25 command but a program (sh) is run as is.
# RELAY25_BIN and RELAY25_ENTRYPOINT_CONF point elsewhere for tests.
set -eu

bin=${RELAY25_BIN:-/usr/sbin/relay25}
conf=${RELAY25_ENTRYPOINT_CONF:-/etc/relay25/relay25.conf}
me=relay25-entrypoint

die() {
    echo "$me: $*" >&2
    exit 78
}

# A relay25 command, or another program given to `docker run IMAGE ...`.
if [ $# -gt 0 ]; then
    case $1 in
    # relay25's commands, even where the image has a program of that name (passwd)
    serve | check | sendmail | mailq | health | queue | passwd | oauth | version | help | -*) ;;
    *)
        if command -v "$1" >/dev/null 2>&1; then
            exec "$@"
        fi
        ;;
    esac
fi

# Mounted INI file: relay25 reads it; the environment is left alone.
if [ -n "${RELAY25_CONFIG:-}" ] || [ -f "$conf" ]; then
    file=${RELAY25_CONFIG:-$conf}
    if [ $# -eq 0 ]; then
        exec "$bin" serve -c "$file"
    fi
    export RELAY25_CONFIG="$file"
    exec "$bin" "$@"
fi

# Docker secrets: RELAY25_X_FILE -> RELAY25_X. Names are restricted to
# [A-Z0-9_] by the pattern, so the eval below only ever sees a variable name.
for name in $(env | sed -n 's/^\(RELAY25_[A-Z0-9_]*_FILE\)=.*/\1/p'); do
    case $name in
    RELAY25_PASSWORD_FILE | RELAY25_CA_FILE) continue ;; # relay25 reads these itself
    esac
    var=${name%_FILE}
    eval "path=\${$name:-}"
    [ -n "$path" ] || continue
    eval "isset=\${$var+x}"
    if [ -n "$isset" ]; then
        die "set $var or $name, not both"
    fi
    if [ ! -r "$path" ]; then
        die "$name: cannot read '$path'"
    fi
    value=$(cat "$path") || die "$name: cannot read '$path'"
    export "$var=$value"
    unset "$name"
done

# Container defaults: all interfaces, and the clients a container sees (its own
# loopback and the private ranges Docker and Podman networks use). Override
# RELAY25_ALLOW with your LAN, and publish port 25 on a LAN address only.
export RELAY25_LISTEN="${RELAY25_LISTEN:-0.0.0.0:25}"
export RELAY25_ALLOW="${RELAY25_ALLOW:-127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16}"

if [ $# -eq 0 ] || [ "$1" = serve ]; then
    if [ -z "${RELAY25_UPSTREAM:-}" ]; then
        die "RELAY25_UPSTREAM is not set (your provider's host:port, e.g. smtp.gmail.com:587), and no $conf is mounted"
    fi
    if [ -z "${RELAY25_USER:-}" ]; then
        die "RELAY25_USER is not set (the login at $RELAY25_UPSTREAM; or RELAY25_USER_FILE)"
    fi
    if [ -z "${RELAY25_PASSWORD:-}" ] && [ -z "${RELAY25_PASSWORD_FILE:-}" ]; then
        die "no password: set RELAY25_PASSWORD_FILE (a Docker secret, e.g. /run/secrets/relay25_password) or RELAY25_PASSWORD"
    fi
    if [ $# -eq 0 ]; then
        exec "$bin" serve
    fi
fi
exec "$bin" "$@"
