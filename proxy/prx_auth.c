/* prx_auth: inbound AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN. Offered only
 * under TLS unless allow_plaintext_auth; passwords are checked in the thread pool
 * (auth_passwd) and wiped after use, never logged. */
#include "proxy/prx_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_map.h"
#include "auth/auth_passwd.h"
#include "common/base64.h"
#include "common/log.h"
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

static void prx_auth_done(void *arg, int ok)
{
    struct prx_session *s = arg;
    char lb[AUTH_PASSWD_MAX + 1];
    const struct conf *c = s->conf;

    if (s->closing || s->client_gone || s->state != PRX_STATE_AUTH_WAIT) {
        prx_unref_env(s);
        return;
    }
    prx_log_login(s->login, lb, sizeof(lb));
    if (ok) {
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
    } else {
        log_info(s->sid, "prx", "event=auth status=failed client=%s login=%s", s->ip, lb);
        prx_reply(s, REPLY_AUTH_FAILED);
    }
    prx_auth_end(s);
    prx_continue(s);
    prx_unref_env(s); /* the thread pool's reference */
}

/* s->login is set: check pass in the thread pool. */
static void prx_auth_check(struct prx_session *s, const char *pass)
{
    const char *hash = NULL;
    int r;

    for (size_t i = 0; i < s->conf->nusers; i++) {
        if (strcmp(s->conf->users[i].login, s->login) == 0) {
            hash = s->conf->users[i].hash;
            break;
        }
    }
    prx_enter_state(s, PRX_STATE_AUTH_WAIT);
    s->refs++;
    r = auth_passwd_verify(s->env->loop, hash, pass, prx_auth_done, s);
    if (r != 0) {
        s->refs--;
        prx_auth_end(s);
        prx_reply(s, REPLY_AUTH_TEMP);
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
