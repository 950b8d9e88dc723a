#!/bin/sh
# Builds docker/Dockerfile with podman and checks the runtime stage without
# running a container (no registry and no `podman run` are needed): the base
# image comes from debootstrap, the build uses --isolation chroot, and the image
# is checked through `podman create` + `podman mount` + chroot: libraries
# resolve, CA bundle, user relay25, the binary's capability, sendmail/mailq
# links, `relay25 check` on an environment config, and the entrypoint starting
# relay25 from environment variables as user relay25 on port 25 (probed with
# `relay25 health`). Exit 77 (ctest: skipped) without root, podman or debootstrap.
#   RELAY25_TEST_BASE   base image (default localhost/debian:bookworm-slim; made
#                       with debootstrap when missing)
#   RELAY25_TEST_IMAGE  image to build (default localhost/relay25:test)
#   DEBIAN_MIRROR       for debootstrap (default http://deb.debian.org/debian)
set -eu

skip() {
    echo "SKIP: $*"
    exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, podman mount, chroot)"
command -v podman >/dev/null 2>&1 || skip "podman is not installed"
command -v debootstrap >/dev/null 2>&1 || skip "debootstrap is not installed"

repo=$(cd "$(dirname "$0")/../.." && pwd)
base=${RELAY25_TEST_BASE:-localhost/debian:bookworm-slim}
image=${RELAY25_TEST_IMAGE:-localhost/relay25:test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /tmp/relay25-docker.XXXXXX)
cid=
mnt=
pid=
failures=0

cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    for d in proc dev; do
        if [ -n "$mnt" ] && mountpoint -q "$mnt/$d" 2>/dev/null; then
            umount -l "$mnt/$d" || true
        fi
    done
    if [ -n "$cid" ]; then
        podman umount "$cid" >/dev/null 2>&1 || true
        podman rm -f "$cid" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

now() { date +%s; }
ok() { echo "ok: $*"; }
fail() {
    echo "FAILED: $*"
    failures=$((failures + 1))
}

# 1. base image ------------------------------------------------------------------
t0=$(now)
if ! podman image exists "$base"; then
    echo "== base image $base from debootstrap ($mirror)"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log"; exit 1; }
    # like the registry's slim image: no package archives or lists
    rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | podman import - "$base" >/dev/null
    rm -rf "$work/rootfs"
fi
t1=$(now)

# 2. build -----------------------------------------------------------------------
echo "== podman build $image"
podman build --isolation chroot --build-arg BASE="$base" -t "$image" \
    -f "$repo/docker/Dockerfile" "$repo" >"$work/build.log" 2>&1 ||
    { tail -40 "$work/build.log"; exit 1; }
t2=$(now)
echo "base image: $((t1 - t0)) s, build: $((t2 - t1)) s"
podman image inspect --format 'image size: {{.Size}} bytes' "$image"

# 3. the runtime stage -----------------------------------------------------------
cid=$(podman create "$image")
mnt=$(podman mount "$cid")
# relay25 needs /dev/null and /dev/urandom, and getaddrinfo reads /proc at most
mount --bind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
run() { chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

if out=$(run /usr/sbin/relay25 --version 2>&1); then ok "libraries resolve: $out"; else fail "relay25 --version: $out"; fi
if run /usr/bin/ldd /usr/sbin/relay25 2>&1 | grep -q "not found"; then fail "missing library"; fi
if [ -s "$mnt/etc/ssl/certs/ca-certificates.crt" ]; then ok "CA bundle present"; else fail "no CA bundle"; fi
if grep -q '^relay25:x:2525:2525:' "$mnt/etc/passwd"; then ok "user relay25"; else fail "no user relay25"; fi
if [ "$(podman image inspect --format '{{.Config.User}}' "$image")" = relay25 ]; then ok "image runs as relay25"; else fail "image user"; fi
caps=$(/usr/bin/python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "security.capability").hex())' \
    "$mnt/usr/sbin/relay25" 2>&1) || caps=none
# vfs_cap_data, little endian: revision 2 or 3 with the effective flag, then the
# permitted low word: bit 10 alone (CAP_NET_BIND_SERVICE)
case $caps in
0100000[23]00040000*) ok "cap_net_bind_service on the binary ($caps)" ;;
*) fail "binary capability: $caps" ;;
esac
if [ "$(readlink "$mnt/usr/sbin/sendmail")" = relay25 ] &&
    [ "$(run /usr/bin/mailq)" = "Mail queue is empty" ]; then ok "sendmail and mailq links"; else fail "sendmail/mailq links"; fi
for f in /usr/bin/cc /usr/bin/gcc /usr/bin/cmake /usr/include/bearssl.h; do
    if [ -e "$mnt$f" ]; then fail "build tool in the runtime stage: $f"; fi
done

if out=$(run RELAY25_UPSTREAM=smtp.example.com:587 RELAY25_USER=me@example.com RELAY25_PASSWORD=x \
    /usr/sbin/relay25 check 2>&1) && echo "$out" | grep -q "config (environment): ok"; then
    ok "relay25 check on an environment config (CA bundle loads)"
else
    fail "relay25 check: $out"
fi

# 4. the entrypoint serves from the environment, as relay25, on port 25 ---------
port=25 # the binary's capability is what lets user relay25 bind it
if ss -ltn 2>/dev/null | grep -q ':25 '; then
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
printf 'me@example.com\n' >"$mnt/tmp/user"
secret=pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$secret" >"$mnt/tmp/password"
chmod 0644 "$mnt/tmp/user" "$mnt/tmp/password"
chroot --userspec=relay25:relay25 "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    RELAY25_UPSTREAM=smtp.example.com:587 RELAY25_USER_FILE=/tmp/user \
    RELAY25_PASSWORD_FILE=/tmp/password "RELAY25_LISTEN=127.0.0.1:$port" \
    RELAY25_HOSTNAME=relay.test /usr/local/bin/relay25-entrypoint >"$work/serve.log" 2>&1 &
pid=$!
healthy=
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    if out=$(run "RELAY25_LISTEN=127.0.0.1:$port" /usr/sbin/relay25 health 2>&1); then
        healthy=1
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if [ -n "$healthy" ]; then ok "entrypoint serves on 127.0.0.1:$port as relay25: $out"; else fail "health: $out"; fi
if grep -q "event=listening" "$work/serve.log"; then :; else fail "no listening line"; fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" = 0 ]; then ok "SIGTERM: exit 0"; else fail "exit status $rc after SIGTERM"; fi
if grep -q "$secret" "$work/serve.log"; then fail "password in the log"; fi
sed 's/^/  | /' "$work/serve.log" | head -20

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "image $image: all checks passed"
