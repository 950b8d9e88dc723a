/* prx_auth: inbound AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN. Offered only
 * under TLS unless allow_plaintext_auth; passwords are checked in the thread pool
 * within auth_passwd's budget and wiped after use, never logged. Failures are
 * counted per client address (auth_fail): a growing delay before each 535, and
 * 454 4.7.0 for every AUTH from an address while it is locked out. */
#include "proxy/prx_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_fail.h"
#include "auth/auth_map.h"
#include "auth/auth_passwd.h"
#include "common/base64.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "common/tio.h"
#include "conf/conf.h"

static int prx_peer_loopback(const struct prx_session *s)
{
    if (s->peer.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&s->peer;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (s->peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->peer;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

/* AUTH only under TLS, unless allow_plaintext_auth (then only for loopback or
 * allow networks: never a password in clear across the Internet). */
int prx_auth_offered(const struct prx_session *s)
{
    if (s->conf->nusers == 0) {
        return 0;
    }
    if (tio_tls_active(s->tio)) {
        return 1;
    }
    return s->conf->allow_plaintext_auth &&
           (prx_peer_loopback(s) || auth_map_allowed(s->conf, (const struct sockaddr *)&s->peer));
}

/* A login fit for a log line: printable, no blanks or quotes. */
static const char *prx_log_login(const char *login, char *buf, size_t cap)
{
    size_t i = 0;

    for (; login[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)login[i];
        buf[i] = ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    buf[i] = '\0';
    return buf;
}

/* Back to IDLE without a login. */
void prx_auth_end(struct prx_session *s)
{
    if (!s->authed) {
        explicit_bzero(s->login, sizeof(s->login));
    }
    prx_enter_state(s, PRX_STATE_IDLE);
}

static struct auth_fail_policy prx_auth_policy(const struct conf *c)
{
    struct auth_fail_policy p = {
        .limit = c->auth_fail_limit,
        .window_ms = (uint64_t)c->auth_lockout * 1000u,
        .lockout_ms = (uint64_t)c->auth_lockout * 1000u,
        .delay_ms = (uint64_t)c->auth_fail_delay * 1000u,
    };
    return p;
}

/* The held 535 goes out: the session's timer is free in AUTH_WAIT (the idle
 * timer runs only while we wait for the client), and closing the session
 * closes it, so no reference is needed for the delay. */
static void prx_auth_on_delay(uv_timer_t *t)
{
    struct prx_session *s = t->data;

    if (s->closing || s->client_gone || s->state != PRX_STATE_AUTH_WAIT) {
        return;
    }
    prx_reply(s, REPLY_AUTH_FAILED);
    prx_auth_end(s);
    prx_continue(s);
}

/* A wrong login or password: count it for the address, start a lockout at the
 * limit, and hold the 535 for the address's delay. */
static void prx_auth_failed(struct prx_session *s, const char *lb)
{
    struct auth_fail_policy p = prx_auth_policy(s->conf);
    uint64_t delay = 0, lock = 0;
    unsigned n = auth_fail_record(s->env->auth_fails, (const struct sockaddr *)&s->peer, &p,
                                  uv_now(s->env->loop), &delay, &lock);

    log_info(s->sid, "prx", "event=auth status=failed client=%s login=%s", s->ip, lb);
    if (s->env->metrics) {
        s->env->metrics->auth_failures_total++;
        if (lock) {
            s->env->metrics->auth_lockouts_total++;
        }
    }
    if (lock) {
        log_warn(s->sid, "prx", "event=auth_locked client=%s failures=%u for=%llus", s->ip, n,
                 (unsigned long long)(lock / 1000u));
    }
    /* shutting down: the session should end, not wait out a delay */
    if (delay > 0 && !s->draining && !s->env->draining) {
        uv_timer_start(&s->timer, prx_auth_on_delay, delay, 0);
        return;
    }
    prx_reply(s, REPLY_AUTH_FAILED);
    prx_auth_end(s);
    prx_continue(s);
}

static uint64_t prx_auth_lock_left(struct prx_session *s)
{
    return auth_fail_locked(s->env->auth_fails, (const struct sockaddr *)&s->peer,
                            uv_now(s->env->loop));
}

/* Asked when a queued check's turn comes: a session that went away, or whose
 * address was locked out while it waited, is not checked. */
static int prx_auth_live(void *arg)
{
    struct prx_session *s = arg;

    return !s->closing && !s->client_gone && s->state == PRX_STATE_AUTH_WAIT &&
           prx_auth_lock_left(s) == 0;
}

static void prx_auth_done(void *arg, int result)
{
    struct prx_session *s = arg;
    char lb[AUTH_PASSWD_MAX + 1];
    const struct conf *c = s->conf;

    if (s->closing || s->client_gone || s->state != PRX_STATE_AUTH_WAIT) {
        prx_unref_env(s);
        return;
    }
    prx_log_login(s->login, lb, sizeof(lb));
    if (result == AUTH_PASSWD_OK) {
        /* a device with this login wins over the one the address matched */
        for (size_t i = 0; i < c->ndevices; i++) {
            if (c->devices[i].login && strcmp(c->devices[i].login, s->login) == 0) {
                s->dev = &c->devices[i];
                s->devidx = i;
                break;
            }
        }
        s->authed = 1;
        log_info(s->sid, "prx", "event=auth status=ok client=%s login=%s device=%s user=%s", s->ip,
                 lb, s->dev ? s->dev->name : "-", s->dev ? s->dev->user : "-");
        prx_reply(s, REPLY_AUTH_OK);
        prx_auth_end(s);
        prx_continue(s);
    } else if (result == AUTH_PASSWD_BAD) {
        prx_auth_failed(s, lb);
    } else {
        /* skipped in the queue: the address was locked out meanwhile */
        prx_reply(s, prx_auth_lock_left(s) ? REPLY_AUTH_LOCKED : REPLY_AUTH_TEMP);
        prx_auth_end(s);
        prx_continue(s);
    }
    prx_unref_env(s); /* the thread pool's reference */
}

/* An address locked out gets 454 at once, for AUTH and for a response already
 * under way (another connection may have reached the limit meanwhile). */
static int prx_auth_locked(struct prx_session *s)
{
    uint64_t left = prx_auth_lock_left(s);

    if (left == 0) {
        return 0;
    }
    log_info(s->sid, "prx", "event=auth status=locked client=%s for=%llus", s->ip,
             (unsigned long long)((left + 999u) / 1000u));
    prx_reply(s, REPLY_AUTH_LOCKED);
    return 1;
}

/* s->login is set: check pass in the thread pool. */
static void prx_auth_check(struct prx_session *s, const char *pass)
{
    const char *hash = NULL;
    int r;

    if (prx_auth_locked(s)) {
        prx_auth_end(s);
        return;
    }
    for (size_t i = 0; i < s->conf->nusers; i++) {
        if (strcmp(s->conf->users[i].login, s->login) == 0) {
            hash = s->conf->users[i].hash;
            break;
        }
    }
    prx_enter_state(s, PRX_STATE_AUTH_WAIT);
    s->refs++;
    r = auth_passwd_verify(s->env->pw, hash, pass, prx_auth_done, prx_auth_live, s);
    if (r != 0) {
        s->refs--;
        if (r == UV_EBUSY) {
            log_warn(s->sid, "prx", "event=auth status=busy client=%s", s->ip);
        }
        prx_auth_end(s);
        prx_reply(s, r == UV_EBUSY ? REPLY_AUTH_BUSY : REPLY_AUTH_TEMP);
    }
}

/* One SASL response line (RFC 4954 §4): "*" cancels, "=" is empty, else base64. */
void prx_auth_line(struct prx_session *s, const char *line, size_t len)
{
    char buf[PRX_LINE_MAX];
    size_t n = 0;

    if (len == 1 && line[0] == '*') {
        prx_auth_end(s);
        prx_reply(s, REPLY_AUTH_CANCELLED);
        goto out;
    }
    if (!(len == 1 && line[0] == '=') &&
        (n = b64_decode(line, len, buf, sizeof(buf) - 1)) == (size_t)-1) {
        prx_auth_end(s);
        prx_reply(s, REPLY_AUTH_SYNTAX);
        goto out;
    }
    buf[n] = '\0';
    if (!s->auth_login_mech) {
        char pass[AUTH_PASSWD_MAX + 1];
        if (auth_plain_decode(buf, n, s->login, sizeof(s->login), pass, sizeof(pass)) != 0) {
            prx_auth_end(s);
            prx_reply(s, REPLY_AUTH_SYNTAX);
        } else {
            prx_auth_check(s, pass);
        }
        explicit_bzero(pass, sizeof(pass));
    } else if (!s->login[0]) {
        if (n == 0 || n >= sizeof(s->login) || memchr(buf, '\0', n)) {
            prx_auth_end(s);
            prx_reply(s, REPLY_AUTH_SYNTAX);
        } else {
            memcpy(s->login, buf, n + 1);
            prx_enter_state(s, PRX_STATE_AUTH);
            prx_reply(s, REPLY_AUTH_PASSWORD);
        }
    } else if (n > AUTH_PASSWD_MAX || memchr(buf, '\0', n)) {
        prx_auth_end(s);
        prx_reply(s, REPLY_AUTH_SYNTAX);
    } else {
        prx_auth_check(s, buf);
    }
out:
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(s->line, sizeof(s->line)); /* the response held the password */
}

void prx_cmd_auth(struct prx_session *s, const struct prx_cmd *c)
{
    const char *sp = memchr(c->arg, ' ', c->arglen);
    size_t ml = sp ? (size_t)(sp - c->arg) : c->arglen;
    const char *resp = sp ? sp + 1 : "";
    size_t rl = sp ? c->arglen - ml - 1 : 0;

    if (s->conf->nusers == 0) {
        prx_reply(s, REPLY_NOT_IMPL);
        return;
    }
    if (s->authed) {
        prx_reply(s, REPLY_AUTH_TWICE);
        return;
    }
    if (!s->esmtp || s->need_helo) {
        prx_reply(s, REPLY_NEED_EHLO);
        return;
    }
    if (!prx_auth_offered(s)) {
        prx_reply(s, REPLY_AUTH_NEED_TLS);
        return;
    }
    if (prx_auth_locked(s)) {
        return;
    }
    while (rl > 0 && *resp == ' ') {
        resp++;
        rl--;
    }
    s->login[0] = '\0';
    if (ml == 5 && strncasecmp(c->arg, "PLAIN", 5) == 0) {
        s->auth_login_mech = 0;
    } else if (ml == 5 && strncasecmp(c->arg, "LOGIN", 5) == 0) {
        s->auth_login_mech = 1;
    } else {
        prx_reply(s, REPLY_AUTH_MECH);
        return;
    }
    prx_enter_state(s, PRX_STATE_AUTH);
    if (rl > 0) {
        prx_auth_line(s, resp, rl); /* initial response (RFC 4954 §4) */
    } else if (s->auth_login_mech) {
        prx_reply(s, REPLY_AUTH_USERNAME);
    } else {
        prx_reply(s, REPLY_AUTH_CONTINUE);
    }
}
