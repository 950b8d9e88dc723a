/* up_session: outbound SMTP submission client (RFC 5321, STARTTLS RFC 3207, AUTH
 * RFC 4954, PIPELINING RFC 2920). Whoever handles a reply enters the next state
 * and sends its command; up_on_reply() switches on the state awaiting a reply
 * (OpenSMTPD mta_session.c); the AUTH lines themselves are up_sasl's. Owns a
 * tio, a timer and, while connecting, an up_dial; freed in up_unref() once all
 * of them are done. */
#include "upstream/up_session.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/reply.h"
#include "common/tio.h"
#include "common/tls_ca.h"
#include "conf/conf.h"
#include "upstream/up_dial.h"
#include "upstream/up_oauth.h"
#include "upstream/up_sasl.h"
#include "upstream/up_tlscache.h"

#define UP_QUIT_TIMEOUT 5
/* seconds a TLS server has to answer the ClientHello of the greeting probe */
#define UP_PROBE_TIMEOUT 5

enum up_state {
    UP_STATE_INIT,
    UP_STATE_RESOLVE,
    UP_STATE_CONNECT,
    UP_STATE_TLS_IMPLICIT,
    UP_STATE_GREETING,
    UP_STATE_EHLO,
    UP_STATE_STARTTLS,
    UP_STATE_TLS,
    UP_STATE_EHLO2,
    UP_STATE_AUTH_PLAIN,
    UP_STATE_AUTH_LOGIN,
    UP_STATE_AUTH_LOGIN_USER,
    UP_STATE_AUTH_LOGIN_PASS,
    UP_STATE_AUTH_CRAM,
    UP_STATE_AUTH_CRAM_RESP,
    UP_STATE_AUTH_TOKEN,       /* waiting for an OAuth2 access token (up_oauth) */
    UP_STATE_AUTH_XOAUTH2,     /* AUTH XOAUTH2 sent */
    UP_STATE_AUTH_XOAUTH2_ERR, /* empty line sent after the error challenge */
    UP_STATE_READY,
    UP_STATE_MAIL,
    UP_STATE_RCPT,
    UP_STATE_DATA,
    UP_STATE_BODY,
    UP_STATE_DOT,
    UP_STATE_RSET,
    UP_STATE_QUIT,
    UP_STATE_CLOSED,
};

struct up_session {
    uv_loop_t *loop;
    struct up_params p;
    const struct up_cbs *cbs;
    void *arg;
    enum up_state state;
    struct tio *tio;
    uv_timer_t timer;
    struct up_dial dial;
    struct up_ehlo ehlo;
    struct up_reply_parser rp;
    int refs;                            /* timer + tio + the dial until its on_done */
    char *user, *password, *server_name; /* own copies: a pooled session outlives its conf */
    char tls_key[UP_TLSCACHE_KEY_MAX];
    unsigned closing : 1, ready : 1, failed : 1, token_wait : 1, token_retried : 1;
    /* heard: upstream sent something in clear; probing: no greeting came, and a
     * ClientHello went out to see whether the port expects TLS at once */
    unsigned heard : 1, probing : 1;
    /* Inside one of the owner's calls (up_mail...): a failure found there is
     * reported from a zero timer instead (libuv's rule, see up_session.h). */
    unsigned in_call : 1;
    int late_err;
    char late_detail[200];
    /* PIPELINING (RFC 2920): commands sent after the one s->state awaits, in
     * order: pipe_rcpt RCPTs, then DATA when pipe_data. corked: written, not
     * yet flushed, so a group leaves in one TLS record. */
    unsigned pipe_rcpt;
    unsigned pipe_data : 1, corked : 1;
    char *token;        /* the OAuth2 access token of this login; wiped */
    unsigned char mech; /* enum conf_mech chosen for AUTH (up_sasl) */
    char where[300];
    char name[128]; /* the [upstream NAME] section, for logs (the conf may go) */
};

static const struct tio_cbs up_tio_cbs;
static void up_fail_probe(struct up_session *s, const char *how);
static void up_arm(struct up_session *s, unsigned seconds);

static const char *up_strstate(enum up_state st)
{
    switch (st) {
    case UP_STATE_INIT:
        return "init";
    case UP_STATE_RESOLVE:
        return "resolve";
    case UP_STATE_CONNECT:
        return "connect";
    case UP_STATE_TLS_IMPLICIT:
        return "tls_implicit";
    case UP_STATE_GREETING:
        return "greeting";
    case UP_STATE_EHLO:
        return "ehlo";
    case UP_STATE_STARTTLS:
        return "starttls";
    case UP_STATE_TLS:
        return "tls";
    case UP_STATE_EHLO2:
        return "ehlo2";
    case UP_STATE_AUTH_PLAIN:
        return "auth_plain";
    case UP_STATE_AUTH_LOGIN:
        return "auth_login";
    case UP_STATE_AUTH_LOGIN_USER:
        return "auth_login_user";
    case UP_STATE_AUTH_LOGIN_PASS:
        return "auth_login_pass";
    case UP_STATE_AUTH_CRAM:
        return "auth_cram";
    case UP_STATE_AUTH_CRAM_RESP:
        return "auth_cram_resp";
    case UP_STATE_AUTH_TOKEN:
        return "auth_token";
    case UP_STATE_AUTH_XOAUTH2:
        return "auth_xoauth2";
    case UP_STATE_AUTH_XOAUTH2_ERR:
        return "auth_xoauth2_err";
    case UP_STATE_READY:
        return "ready";
    case UP_STATE_MAIL:
        return "mail";
    case UP_STATE_RCPT:
        return "rcpt";
    case UP_STATE_DATA:
        return "data";
    case UP_STATE_BODY:
        return "body";
    case UP_STATE_DOT:
        return "dot";
    case UP_STATE_RSET:
        return "rset";
    case UP_STATE_QUIT:
        return "quit";
    case UP_STATE_CLOSED:
        return "closed";
    }
    abort();
}

static void up_enter_state(struct up_session *s, enum up_state st)
{
    log_debug(s->p.sid, "up", "relay=%s state=%s->%s", s->where, up_strstate(s->state),
              up_strstate(st));
    s->state = st;
}

static void up_unref(struct up_session *s)
{
    if (--s->refs > 0) {
        return;
    }
    up_dial_free(&s->dial);
    if (s->cbs->on_close) {
        s->cbs->on_close(s->arg);
    }
    if (s->p.on_free) {
        s->p.on_free(s->p.free_arg, s->where);
    }
    if (s->password) {
        explicit_bzero(s->password, strlen(s->password));
    }
    if (s->token) {
        explicit_bzero(s->token, strlen(s->token));
    }
    free(s->token);
    free(s->user);
    free(s->password);
    free(s->server_name);
    free(s);
}

static void up_timer_close_cb(uv_handle_t *h)
{
    up_unref(h->data);
}

static void up_shutdown(struct up_session *s)
{
    if (s->closing) {
        return;
    }
    s->closing = 1;
    if (s->token_wait) { /* the provider must not call back into a closed session */
        s->token_wait = 0;
        up_oauth_cancel(s->p.oauth, s);
    }
    up_enter_state(s, UP_STATE_CLOSED);
    uv_close((uv_handle_t *)&s->timer, up_timer_close_cb);
    if (s->tio) {
        tio_close(s->tio);
    }
}

/* Tells the owner of a failure (on_ready before ready, on_fail after), then closes. */
static void up_report(struct up_session *s, int err, const struct up_reply *r, const char *detail)
{
    int pending = s->state != UP_STATE_READY;

    if (!s->ready) {
        s->cbs->on_ready(s->arg, err, r, detail);
    } else {
        s->cbs->on_fail(s->arg, err, detail, pending);
    }
    up_shutdown(s);
}

static void up_late_cb(uv_timer_t *t)
{
    struct up_session *s = t->data;
    up_report(s, s->late_err, NULL, s->late_detail);
}

/* Failure: tell the owner once (before or after ready), then close. Found
 * inside an owner's call, it is told on the next loop turn, never from inside
 * the call; meanwhile the session ignores its connection. */
static void up_fail(struct up_session *s, int err, const struct up_reply *r, const char *detail)
{
    char q[600];

    if (s->failed || s->closing) {
        return;
    }
    s->failed = 1;
    if (s->state == UP_STATE_QUIT) {
        up_shutdown(s);
        return;
    }
    if (err == RELAY_E_AUTH) {
        log_warn(s->p.sid, "up", "relay=%s event=auth_failed user=%s reply=\"%s\"", s->where,
                 s->p.user, log_quote(detail, strlen(detail), q, sizeof(q)));
    } else {
        log_warn(s->p.sid, "up", "relay=%s event=failed state=%s error=%s detail=\"%s\"", s->where,
                 up_strstate(s->state), reply_err_name(err),
                 log_quote(detail, strlen(detail), q, sizeof(q)));
    }
    if (s->in_call) {
        s->late_err = err;
        snprintf(s->late_detail, sizeof(s->late_detail), "%s", detail);
        uv_timer_start(&s->timer, up_late_cb, 0, 0);
        return;
    }
    up_report(s, err, r, detail);
}

/* An owner's call begins: refused (no effect, no callback) once the session
 * failed or closes. */
static int up_call_begin(struct up_session *s)
{
    if (s->closing || s->failed) {
        return RELAY_E_LOST;
    }
    s->in_call = 1;
    return 0;
}

/* r < 0 from the call's own checks means it had no effect; a failure found on
 * the way was scheduled for on_ready / on_fail, so the call returns 0. */
static int up_call_end(struct up_session *s, int r)
{
    s->in_call = 0;
    return s->failed ? 0 : r;
}

/* The failure's detail is upstream's reply, code first ("535 5.7.8 ..."), so an
 * admin sees exactly what the provider said. */
static void up_fail_reply(struct up_session *s, int err, const struct up_reply *r)
{
    char line[600], detail[620];
    snprintf(detail, sizeof(detail), "%d %s", r->code, up_reply_oneline(r, line, sizeof(line)));
    up_fail(s, err, r, detail);
}

/* No 220 within connect_timeout. A port that expects TLS at once (465, RFC 8314
 * §3.3) waits in silence for a ClientHello, which looks like a dead server, so
 * one is sent, unverified, to tell the two apart: the session fails either way,
 * nothing follows the handshake and nothing of it is cached (up_tio_handshake). */
static void up_greeting_timeout(struct up_session *s)
{
    char d[200];
    unsigned t = s->p.connect_timeout;

    if (s->probing) {
        snprintf(d, sizeof(d), "no greeting within %us, and no answer to a TLS handshake either",
                 t);
    } else if (!s->heard && !s->p.local_plain && s->p.up->tls == CONF_TLS_STARTTLS &&
               !tio_tls_active(s->tio)) {
        s->probing = 1;
        if (tio_starttls_client(s->tio, NULL, NULL, 0, NULL) == 0) {
            if (!s->failed) {
                up_arm(s, t < UP_PROBE_TIMEOUT ? t : UP_PROBE_TIMEOUT);
            }
            return;
        }
        s->probing = 0;
        snprintf(d, sizeof(d), "no greeting within %us", t);
    } else {
        snprintf(d, sizeof(d), "no greeting within %us", t);
    }
    up_fail(s, RELAY_E_TIMEOUT, NULL, d);
}

static void up_timeout_cb(uv_timer_t *t)
{
    struct up_session *s = t->data;
    char d[64];
    snprintf(d, sizeof(d), "no answer in state %s", up_strstate(s->state));
    if (s->state == UP_STATE_QUIT) {
        up_shutdown(s);
        return;
    }
    if (s->state == UP_STATE_GREETING) {
        up_greeting_timeout(s);
        return;
    }
    up_fail(s, RELAY_E_TIMEOUT, NULL, d);
}

static void up_arm(struct up_session *s, unsigned seconds)
{
    uv_timer_start(&s->timer, up_timeout_cb, (uint64_t)seconds * 1000u, 0);
}

/* Sends one command line (with CRLF added) as one write. */
static int up_send(struct up_session *s, unsigned timeout, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int up_send(struct up_session *s, unsigned timeout, const char *fmt, ...)
{
    char line[2100];
    va_list ap;
    int n, r;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 2) {
        explicit_bzero(line, sizeof(line));
        /* never leave the owner waiting: this is a failure like any other */
        /* (AUTH lines go through up_sasl_send(), which reports its own limits) */
        up_fail(s, RELAY_E_PROTOCOL, NULL, "command line too long");
        return RELAY_E_PROTOCOL;
    }
    line[n++] = '\r';
    line[n++] = '\n';
    r = tio_write(s->tio, line, (size_t)n);
    explicit_bzero(line, (size_t)n); /* may hold an AUTH response */
    if (r == 0 && !s->corked) {
        r = tio_flush(s->tio);
    }
    if (r < 0) {
        char e[128];
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
        return RELAY_E_LOST;
    }
    up_arm(s, timeout);
    return 0;
}

/* Resumption skips the certificate check, so a cached session is only offered
 * under the same verification: address, server name, CA set and tls_verify. */
/* The resumption key: everything verification depended on, verify and CA
 * first. NULL when it does not fit: such a session is neither cached nor
 * resumed (a cut key could match another server's). */
static const char *up_tls_key(struct up_session *s)
{
    const struct tls_ca *ca = s->p.up->ca;
    char ca_id[2 * 16 + 1] = "-";
    int n;

    for (size_t i = 0; ca && i < 16; i++) { /* half the CA file's SHA-256 */
        snprintf(ca_id + 2 * i, 3, "%02x", ca->digest[i]);
    }
    n = snprintf(s->tls_key, sizeof(s->tls_key), "%d %s %s %s", s->p.up->tls_verify, ca_id,
                 s->where, s->server_name);
    return n > 0 && (size_t)n < sizeof(s->tls_key) ? s->tls_key : NULL;
}

/* TLS towards upstream, offering the last session with it for resumption. */
static int up_start_tls(struct up_session *s)
{
    br_ssl_session_parameters sp;
    const char *key = s->p.tls_cache ? up_tls_key(s) : NULL;
    int have = key && up_tlscache_get(s->p.tls_cache, key, &sp) == 0;
    int r = tio_starttls_client(s->tio, s->p.up->ca, s->p.up->server_name, s->p.up->tls_verify,
                                have ? &sp : NULL);
    explicit_bzero(&sp, sizeof(sp));
    return r;
}

/* The SASL error of enum up_sasl_err, as the session's failure. */
static void up_sasl_fail(struct up_session *s, long err)
{
    char d[100];

    if (err == UP_SASL_E_CHALLENGE) {
        snprintf(d, sizeof(d), "bad %s challenge", up_sasl_name(s->mech));
        up_fail(s, RELAY_E_PROTOCOL, NULL, d);
    } else if (err == UP_SASL_E_TOOLONG &&
               (s->mech == CONF_MECH_XOAUTH2 || s->mech == CONF_MECH_OAUTHBEARER)) {
        up_fail(s, RELAY_E_NOMEM, NULL, "out of memory");
    } else if (err == UP_SASL_E_TOOLONG) {
        snprintf(d, sizeof(d), "user name or password too long for AUTH %s", up_sasl_name(s->mech));
        up_fail(s, RELAY_E_AUTH, NULL, d);
    } else {
        snprintf(d, sizeof(d), "AUTH %s: unexpected challenge", up_sasl_name(s->mech));
        up_fail(s, RELAY_E_PROTOCOL, NULL, d);
    }
}

/* Sends line step of s->mech (up_sasl: 0 the AUTH command, n the answer to the
 * n-th 334 challenge). Its own write, not up_send(): a token runs to a few KiB. */
static void up_sasl_send(struct up_session *s, unsigned step, const char *challenge)
{
    struct up_sasl_cred c = {.user = s->p.user,
                             .password = s->p.password,
                             .token = s->token,
                             .host = s->p.up->host,
                             .port = s->p.up->port};
    size_t cap = up_sasl_cap(s->mech, &c) + 2;
    char *line = malloc(cap);
    long n;
    int r;

    if (!line) {
        up_fail(s, RELAY_E_NOMEM, NULL, "out of memory");
        return;
    }
    n = up_sasl_line(s->mech, step, &c, challenge, line, cap - 2);
    if (n < 0) {
        free(line); /* wiped by up_sasl_line */
        up_sasl_fail(s, n);
        return;
    }
    line[n++] = '\r';
    line[n++] = '\n';
    r = tio_write(s->tio, line, (size_t)n);
    if (r == 0) {
        r = tio_flush(s->tio);
    }
    explicit_bzero(line, (size_t)n);
    free(line);
    if (r < 0) {
        char e[128];
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
        return;
    }
    up_arm(s, s->p.command_timeout);
}

static void up_on_token(void *arg, const char *token, const char *err)
{
    struct up_session *s = arg;
    char d[400];

    s->token_wait = 0;
    if (s->closing || s->failed) {
        return;
    }
    if (!token) {
        snprintf(d, sizeof(d), "no OAuth2 token: %s", err);
        up_fail(s, RELAY_E_AUTH, NULL, d);
        return;
    }
    if (s->token) {
        explicit_bzero(s->token, strlen(s->token));
        free(s->token);
    }
    s->token = strdup(token);
    if (!s->token) {
        up_fail(s, RELAY_E_NOMEM, NULL, "out of memory");
        return;
    }
    up_enter_state(s, UP_STATE_AUTH_XOAUTH2);
    up_sasl_send(s, 0, NULL);
}

/* The provider may answer at once (cached token) or after a fetch. */
static void up_get_token(struct up_session *s)
{
    up_enter_state(s, UP_STATE_AUTH_TOKEN);
    up_arm(s, s->p.connect_timeout + s->p.command_timeout);
    s->token_wait = 1;
    if (up_oauth_get(s->p.oauth, up_on_token, s) != 0) {
        s->token_wait = 0;
        up_fail(s, RELAY_E_AUTH, NULL, "no OAuth2 token: out of memory");
    }
}

/* An expired or revoked token is refused with 535 or a 5.7.x code (after the
 * error challenge, whatever comes): one fresh token and one more AUTH. */
static void up_xoauth2_rejected(struct up_session *s, const struct up_reply *r)
{
    char last[200], q[300];

    up_reply_lastline(r, last, sizeof(last));
    if (s->token_retried || r->code / 100 != 5 ||
        !(r->code == 535 || strncmp(last, "5.7.", 4) == 0 ||
          s->state == UP_STATE_AUTH_XOAUTH2_ERR)) {
        up_fail_reply(s, RELAY_E_AUTH, r);
        return;
    }
    log_info(s->p.sid, "up", "relay=%s event=token_rejected user=%s reply=\"%d %s\" retry=yes",
             s->where, s->p.user, r->code, log_quote(last, strlen(last), q, sizeof(q)));
    s->token_retried = 1;
    up_oauth_invalidate(s->p.oauth, s->token);
    up_get_token(s);
}

static void up_start_auth(struct up_session *s)
{
    unsigned char token_mech = !s->p.oauth        ? CONF_MECH_END
                               : s->p.oauthbearer ? CONF_MECH_OAUTHBEARER
                                                  : CONF_MECH_XOAUTH2;

    if (!s->p.oauth && !s->p.password[0]) {
        up_fail(s, RELAY_E_AUTH, NULL, "no password and no OAuth2 token provider");
        return;
    }
    s->mech = up_sasl_pick(s->p.mechs, sizeof(s->p.mechs), s->ehlo.auth, token_mech);
    switch (s->mech) {
    case CONF_MECH_XOAUTH2:
    case CONF_MECH_OAUTHBEARER:
        up_get_token(s); /* AUTH goes once the token is there */
        break;
    case CONF_MECH_PLAIN:
        up_enter_state(s, UP_STATE_AUTH_PLAIN);
        up_sasl_send(s, 0, NULL);
        break;
    case CONF_MECH_LOGIN:
        up_enter_state(s, UP_STATE_AUTH_LOGIN);
        up_sasl_send(s, 0, NULL);
        break;
    case CONF_MECH_CRAM_MD5:
        up_enter_state(s, UP_STATE_AUTH_CRAM);
        up_sasl_send(s, 0, NULL);
        break;
    default:
        up_fail(
            s, RELAY_E_NO_AUTH_MECH, NULL,
            !(s->ehlo.ext & UP_EXT_AUTH) ? "no AUTH advertised after TLS"
            : s->p.oauth && s->p.oauthbearer
                ? "auth = oauthbearer, but OAUTHBEARER is not offered (or not in auth_mechanisms)"
            : s->p.oauth ? "auth = xoauth2, but XOAUTH2 is not offered (or not in auth_mechanisms)"
                         : "mechanisms offered: none usable (see auth_mechanisms)");
    }
}

static void up_auth_done(struct up_session *s, const struct up_reply *r)
{
    char tls[96];

    if (r->code != 235) {
        up_fail_reply(s, RELAY_E_AUTH, r);
        return;
    }
    log_info(s->p.sid, "up", "relay=%s event=ready user=%s tls=%s%s", s->where, s->p.user,
             tio_tls_desc(s->tio, tls, sizeof(tls)),
             !s->p.oauth        ? ""
             : s->p.oauthbearer ? " auth=oauthbearer"
                                : " auth=xoauth2");
    up_enter_state(s, UP_STATE_READY);
    uv_timer_stop(&s->timer);
    s->ready = 1;
    s->cbs->on_ready(s->arg, 0, r, NULL);
}

/* A reply during AUTH (RFC 4954 §4): 334 asks for the mechanism's next line
 * (up_sasl), 235 ends it, anything else is a refusal. */
static void up_on_auth_reply(struct up_session *s, const struct up_reply *r)
{
    switch (s->state) {
    case UP_STATE_AUTH_PLAIN:
    case UP_STATE_AUTH_LOGIN_PASS:
    case UP_STATE_AUTH_CRAM_RESP:
        up_auth_done(s, r);
        return;
    case UP_STATE_AUTH_XOAUTH2:
        if (r->code == 334) {
            /* an error challenge (base64 JSON: status, schemes, scope); the
             * final reply follows our empty response */
            up_enter_state(s, UP_STATE_AUTH_XOAUTH2_ERR);
            up_sasl_send(s, 1, NULL);
            return;
        }
        if (r->code == 235) {
            up_auth_done(s, r);
        } else {
            up_xoauth2_rejected(s, r);
        }
        return;
    case UP_STATE_AUTH_XOAUTH2_ERR:
        if (r->code == 235) {
            up_auth_done(s, r);
        } else {
            up_xoauth2_rejected(s, r);
        }
        return;
    case UP_STATE_AUTH_LOGIN:
        if (r->code != 334) {
            up_fail_reply(s, RELAY_E_AUTH, r);
            return;
        }
        up_enter_state(s, UP_STATE_AUTH_LOGIN_USER);
        up_sasl_send(s, 1, NULL);
        return;
    case UP_STATE_AUTH_LOGIN_USER:
        if (r->code != 334) {
            up_fail_reply(s, RELAY_E_AUTH, r);
            return;
        }
        up_enter_state(s, UP_STATE_AUTH_LOGIN_PASS);
        up_sasl_send(s, 2, NULL);
        return;
    case UP_STATE_AUTH_CRAM: {
        char chal[600];
        if (r->code != 334) {
            up_fail_reply(s, RELAY_E_AUTH, r);
            return;
        }
        up_reply_lastline(r, chal, sizeof(chal));
        up_enter_state(s, UP_STATE_AUTH_CRAM_RESP);
        up_sasl_send(s, 1, chal);
        return;
    }
    default:
        abort(); /* not an AUTH state */
    }
}

/* A reply on the way to AUTH: greeting, EHLO, STARTTLS (RFC 3207), EHLO again. */
static void up_on_hello_reply(struct up_session *s, const struct up_reply *r)
{
    switch (s->state) {
    case UP_STATE_GREETING:
        if (r->code != 220) {
            up_fail_reply(s, RELAY_E_REFUSED, r);
            return;
        }
        up_enter_state(s, tio_tls_active(s->tio) ? UP_STATE_EHLO2 : UP_STATE_EHLO);
        up_send(s, s->p.command_timeout, "EHLO %s", s->p.helo);
        return;
    case UP_STATE_EHLO:
        if (r->code != 250) {
            up_fail_reply(s, RELAY_E_REFUSED, r);
            return;
        }
        up_reply_ehlo(r, &s->ehlo);
        if (s->p.local_plain) {
            up_enter_state(s, UP_STATE_READY);
            s->ready = 1;
            s->cbs->on_ready(s->arg, 0, r, NULL);
            return;
        }
        if (!(s->ehlo.ext & UP_EXT_STARTTLS)) {
            up_fail(s, RELAY_E_NO_STARTTLS, NULL, "STARTTLS not in EHLO reply");
            return;
        }
        up_enter_state(s, UP_STATE_STARTTLS);
        up_send(s, s->p.command_timeout, "STARTTLS");
        return;
    case UP_STATE_STARTTLS: {
        int e;
        if (r->code != 220) {
            /* offered, then refused (RFC 3207 §4: 454): say so, with its reply */
            up_fail_reply(s, RELAY_E_STARTTLS_REFUSED, r);
            return;
        }
        up_enter_state(s, UP_STATE_TLS);
        /* RFC 3207 §4.2: forget everything learned in clear */
        memset(&s->ehlo, 0, sizeof(s->ehlo));
        e = up_start_tls(s);
        if (e < 0) {
            char d[128];
            up_fail(s, RELAY_E_TLS, NULL, tio_strerror(e, d, sizeof(d)));
            return;
        }
        up_arm(s, s->p.connect_timeout);
        return;
    }
    case UP_STATE_EHLO2:
        if (r->code != 250) {
            up_fail_reply(s, RELAY_E_REFUSED, r);
            return;
        }
        up_reply_ehlo(r, &s->ehlo);
        up_start_auth(s);
        return;
    default:
        abort(); /* not a greeting or EHLO state */
    }
}

static void up_on_reply(struct up_session *s, const struct up_reply *r)
{
    uv_timer_stop(&s->timer);
    switch (s->state) {
    case UP_STATE_GREETING:
    case UP_STATE_EHLO:
    case UP_STATE_STARTTLS:
    case UP_STATE_EHLO2:
        up_on_hello_reply(s, r);
        return;
    case UP_STATE_AUTH_PLAIN:
    case UP_STATE_AUTH_LOGIN:
    case UP_STATE_AUTH_LOGIN_USER:
    case UP_STATE_AUTH_LOGIN_PASS:
    case UP_STATE_AUTH_CRAM:
    case UP_STATE_AUTH_CRAM_RESP:
    case UP_STATE_AUTH_XOAUTH2:
    case UP_STATE_AUTH_XOAUTH2_ERR:
        up_on_auth_reply(s, r);
        return;
    case UP_STATE_MAIL:
    case UP_STATE_RCPT:
        if (s->pipe_rcpt || s->pipe_data) {
            tio_quickack(s->tio); /* more replies to come: do not delay our ACK */
            /* each reply stops the timer: the next one is due within the same limit */
            up_arm(s, s->p.command_timeout);
        }
        /* pipelined: the reply to the next command sent is the one due now */
        if (s->pipe_rcpt) {
            s->pipe_rcpt--;
            up_enter_state(s, UP_STATE_RCPT);
        } else if (s->pipe_data) {
            s->pipe_data = 0;
            up_enter_state(s, UP_STATE_DATA);
        } else {
            up_enter_state(s, UP_STATE_READY);
        }
        s->cbs->on_reply(s->arg, r);
        return;
    case UP_STATE_RSET:
    case UP_STATE_DOT:
        up_enter_state(s, UP_STATE_READY);
        s->cbs->on_reply(s->arg, r);
        return;
    case UP_STATE_DATA:
        up_enter_state(s, r->code == 354 ? UP_STATE_BODY : UP_STATE_READY);
        if (r->code == 354) {
            up_arm(s, s->p.data_timeout);
        }
        s->cbs->on_reply(s->arg, r);
        return;
    case UP_STATE_QUIT:
        up_shutdown(s);
        return;
    case UP_STATE_READY:
    case UP_STATE_BODY:
        /* unsolicited, e.g. "421 idle timeout" */
        up_fail_reply(s, r->code == 421 ? RELAY_E_LOST : RELAY_E_PROTOCOL, r);
        return;
    case UP_STATE_INIT:
    case UP_STATE_AUTH_TOKEN:
    case UP_STATE_RESOLVE:
    case UP_STATE_CONNECT:
    case UP_STATE_TLS_IMPLICIT:
    case UP_STATE_TLS:
    case UP_STATE_CLOSED:
        up_fail_reply(s, RELAY_E_PROTOCOL, r);
        return;
    }
    abort();
}

static size_t up_tio_read(void *arg, const char *data, size_t len)
{
    struct up_session *s = arg;
    size_t off = 0;

    s->heard = 1;
    while (off < len && !s->closing && !s->failed) {
        size_t c = 0;
        int r = up_reply_feed(&s->rp, data + off, len - off, &c);
        off += c;
        if (r == UP_REPLY_MORE) {
            break;
        }
        if (r < 0) {
            up_fail(s, RELAY_E_PROTOCOL, NULL,
                    r == UP_REPLY_ERR_TOO_LONG ? "reply too long" : "malformed reply");
            return len;
        }
        up_on_reply(s, &s->rp.r);
        if (s->state == UP_STATE_TLS) {
            return len; /* tio discarded the rest: nothing in clear after STARTTLS */
        }
    }
    return s->closing || s->failed ? len : off;
}

static void up_tio_handshake(void *arg)
{
    struct up_session *s = arg;
    char tls[96];

    if (s->failed) {
        return;
    }
    if (s->probing) {
        up_fail_probe(s, "");
        return;
    }
    {
        br_ssl_session_parameters sp;
        int resumed = 0;
        if (s->p.tls_cache && tio_tls_session(s->tio, &sp, &resumed) == 0) {
            const char *key = up_tls_key(s);
            if (key) {
                up_tlscache_put(s->p.tls_cache, key, &sp);
            }
            explicit_bzero(&sp, sizeof(sp));
        }
        log_debug(s->p.sid, "up", "relay=%s event=tls tls=%s verify=%s resumed=%s", s->where,
                  tio_tls_desc(s->tio, tls, sizeof(tls)), s->p.up->tls_verify ? "yes" : "no",
                  resumed ? "yes" : "no");
    }
    if (s->state == UP_STATE_TLS_IMPLICIT) {
        up_enter_state(s, UP_STATE_GREETING);
        up_arm(s, s->p.connect_timeout);
    } else if (s->state == UP_STATE_TLS) {
        up_enter_state(s, UP_STATE_EHLO2);
        up_send(s, s->p.command_timeout, "EHLO %s", s->p.helo);
    }
}

static void up_tio_drain(void *arg)
{
    struct up_session *s = arg;
    if (s->state == UP_STATE_BODY && !s->failed) {
        up_arm(s, s->p.data_timeout); /* progress: the data block timer restarts */
        if (s->cbs->on_drain) {
            s->cbs->on_drain(s->arg);
        }
    }
}

/* The greeting probe got a TLS answer (a handshake, or an alert to our ClientHello,
 * how): the port speaks TLS from the first byte. */
static void up_fail_probe(struct up_session *s, const char *how)
{
    char d[300];
    snprintf(d, sizeof(d),
             "no greeting within %us, but the server answered a TLS handshake%s: this port "
             "expects TLS at once: use tls = implicit",
             s->p.connect_timeout, how);
    up_fail(s, RELAY_E_TIMEOUT, NULL, d);
}

/* A TLS failure in words for whoever configured the upstream. */
static void up_tls_detail(struct up_session *s, int err, char *d, size_t cap)
{
    int e = TIO_ERR_TLS - err;
    char base[160];

    tio_strerror(err, base, sizeof(base));
    if (err == TIO_ERR_PLAINTEXT && s->state == UP_STATE_TLS_IMPLICIT) {
        snprintf(d, cap,
                 "server sent \"%s\" in plain text where a TLS handshake was expected: this port "
                 "speaks plain SMTP: use tls = starttls",
                 tio_tls_detail(s->tio));
    } else if (err == TIO_ERR_PLAINTEXT) {
        snprintf(d, cap, "server answered STARTTLS, then sent \"%s\" in plain text, not TLS",
                 tio_tls_detail(s->tio));
    } else if (e == BR_ERR_RECV_FATAL_ALERT + 70) {
        /* RFC 5246 §7.2.2 protocol_version: a TLS 1.3-only server */
        snprintf(d, cap,
                 "server requires a TLS version relay25 does not have (TLS alert 70, "
                 "protocol_version): relay25's TLS library, BearSSL, supports TLS 1.2 at most");
    } else if (e == BR_ERR_X509_BAD_SERVER_NAME) {
        const char *names = tio_tls_detail(s->tio);
        snprintf(d, cap, "certificate does not match server_name %s: it names %s",
                 s->p.up->server_name, names[0] ? names : "no DNS or IP name");
    } else {
        snprintf(d, cap, "%s", base);
    }
}

static void up_tio_error(void *arg, int err)
{
    struct up_session *s = arg;
    char d[400];

    tio_strerror(err, d, sizeof(d));
    if (s->probing) {
        int e = TIO_ERR_TLS - err;
        if (TIO_IS_TLS_ERR(err) && e >= BR_ERR_RECV_FATAL_ALERT && e < BR_ERR_SEND_FATAL_ALERT) {
            char how[40];
            snprintf(how, sizeof(how), " (alert %d)", e - BR_ERR_RECV_FATAL_ALERT);
            up_fail_probe(s, how);
        } else {
            char t[480];
            snprintf(t, sizeof(t), "no greeting within %us; a TLS handshake then failed too: %s",
                     s->p.connect_timeout, err == UV_EOF ? "connection closed by upstream" : d);
            up_fail(s, RELAY_E_TIMEOUT, NULL, t);
        }
    } else if (TIO_IS_TLS_ERR(err)) {
        up_tls_detail(s, err, d, sizeof(d));
        up_fail(s, tio_err_is_cert(err) ? RELAY_E_CERT : RELAY_E_TLS, NULL, d);
    } else if (s->state == UP_STATE_QUIT) {
        up_shutdown(s);
    } else {
        up_fail(s, RELAY_E_LOST, NULL, err == UV_EOF ? "connection closed by upstream" : d);
    }
}

static void up_tio_close(void *arg)
{
    up_unref(arg);
}

static const struct tio_cbs up_tio_cbs = {
    .on_read = up_tio_read,
    .on_handshake = up_tio_handshake,
    .on_drain = up_tio_drain,
    .on_error = up_tio_error,
    .on_close = up_tio_close,
};

/* A handle for the next address of the upstream's name. */
static uv_tcp_t *up_dial_socket(void *arg, int prev)
{
    struct up_session *s = arg;

    if (s->closing || s->failed) {
        return NULL;
    }
    if (prev < 0) {
        log_debug(s->p.sid, "up", "relay=%s event=connect_failed error=\"%s\" next=yes", s->where,
                  uv_strerror(prev));
        tio_close(s->tio); /* a fresh handle for the next address */
        s->tio = NULL;
    } else {
        up_enter_state(s, UP_STATE_CONNECT);
    }
    if (!(s->tio = tio_new(s->loop, &up_tio_cbs, s))) {
        return NULL;
    }
    s->refs++;
    return tio_tcp(s->tio);
}

/* PROXY protocol v2 (haproxy's proxy-protocol.txt §2.2): the signature, version 2
 * command LOCAL, family UNSPEC, no addresses: the receiver keeps the socket's own
 * addresses, as for a load balancer's health check. */
static int up_send_proxy_local(struct up_session *s)
{
    static const unsigned char hdr[16] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                          0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
    char e[128];
    int r = tio_write(s->tio, hdr, sizeof(hdr));

    if (r == 0) {
        r = tio_flush(s->tio);
    }
    if (r < 0) {
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
        return -1;
    }
    return 0;
}

static void up_dial_connected(struct up_session *s)
{
    char d[160];

    uv_tcp_nodelay(tio_tcp(s->tio), 1);
    if (s->p.up->tls == CONF_TLS_IMPLICIT) {
        int e;
        up_enter_state(s, UP_STATE_TLS_IMPLICIT);
        e = up_start_tls(s);
        if (e < 0) {
            up_fail(s, RELAY_E_TLS, NULL, tio_strerror(e, d, sizeof(d)));
            return;
        }
        up_arm(s, s->p.connect_timeout);
    } else {
        up_enter_state(s, UP_STATE_GREETING);
        /* RFC 5321 §4.5.3.2.1 allows 5 minutes for the 220, but a new connection
         * that stays silent is far more often a port that expects TLS at once than
         * a slow server: the greeting is part of connecting (up_greeting_timeout) */
        up_arm(s, s->p.connect_timeout);
        if (s->p.local_plain && s->p.proxy_local && up_send_proxy_local(s) != 0) {
            return;
        }
    }
    tio_start(s->tio); /* on failure on_error has run */
}

static void up_dial_done(void *arg, int status, enum up_dial_stage stage)
{
    struct up_session *s = arg;
    char d[300];

    if (s->closing || s->failed) {
        /* gone meanwhile: nothing to report */
    } else if (status == 0) {
        up_dial_connected(s);
    } else if (stage == UP_DIAL_RESOLVE) {
        snprintf(d, sizeof(d), "%s: %s", s->p.up->host, uv_strerror(status));
        up_fail(s, RELAY_E_RESOLVE, NULL, d);
    } else if (status == UV_ENOMEM) {
        up_fail(s, RELAY_E_NOMEM, NULL, "out of memory");
    } else {
        up_fail(s, RELAY_E_CONNECT, NULL, uv_strerror(status));
    }
    up_unref(s); /* the dial's reference: last, it may free s */
}

static const struct up_dial_cbs up_dial_cbs = {
    .on_socket = up_dial_socket,
    .on_done = up_dial_done,
};

struct up_session *up_session_new(uv_loop_t *loop, const struct up_params *p,
                                  const struct up_cbs *cbs, void *arg)
{
    struct up_session *s = calloc(1, sizeof(*s));

    if (!s) {
        return NULL;
    }
    s->loop = loop;
    s->p = *p;
    s->cbs = cbs;
    s->arg = arg;
    s->user = strdup(p->user ? p->user : "");
    s->password = strdup(p->password ? p->password : "");
    s->server_name = strdup(p->up->server_name ? p->up->server_name : "");
    if (!s->user || !s->password || !s->server_name) {
        free(s->user);
        free(s->password);
        free(s->server_name);
        free(s);
        return NULL;
    }
    s->p.user = s->user;
    s->p.password = s->password;
    up_where_of(p->up, s->where, sizeof(s->where));
    snprintf(s->name, sizeof(s->name), "%s", p->up->name ? p->up->name : "-");
    up_reply_init(&s->rp);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->refs = 1;
    return s;
}

int up_session_start(struct up_session *s)
{
    int r;

    if (s->state != UP_STATE_INIT || up_call_begin(s) < 0) {
        return RELAY_E_PROTOCOL;
    }
    up_enter_state(s, UP_STATE_RESOLVE);
    up_arm(s, s->p.connect_timeout);
    r = up_dial_start(&s->dial, s->loop, s->p.up->host, s->p.up->port, &up_dial_cbs, s);
    if (r < 0) {
        up_fail(s, RELAY_E_RESOLVE, NULL, uv_strerror(r));
    } else {
        s->refs++;
    }
    return up_call_end(s, 0);
}

void up_params_for(struct up_params *p, const struct conf_device *d, const struct conf *c,
                   uint64_t sid)
{
    memset(p, 0, sizeof(*p));
    p->up = d->up;
    p->user = d->user;
    p->password = d->password;
    memcpy(p->mechs, d->auth_mechanisms, sizeof(p->mechs));
    p->oauthbearer = d->auth == CONF_AUTH_OAUTHBEARER;
    p->helo = c->hostname;
    p->sid = sid;
    p->connect_timeout = c->connect_timeout;
    p->command_timeout = c->command_timeout;
    p->data_timeout = c->data_timeout;
}

void up_where_of(const struct conf_upstream *up, char *buf, size_t cap)
{
    snprintf(buf, cap, strchr(up->host, ':') ? "[%s]:%u" : "%s:%u", up->host, (unsigned)up->port);
}

const char *up_where(const struct up_session *s)
{
    return s->where;
}

const char *up_name(const struct up_session *s)
{
    return s->name;
}

unsigned up_ext(const struct up_session *s)
{
    return s->ehlo.ext;
}

void up_session_ehlo(const struct up_session *s, struct up_ehlo *out)
{
    *out = s->ehlo;
}

const struct up_ehlo *up_ehlo(const struct up_session *s)
{
    return &s->ehlo;
}

const char *up_tls_desc(const struct up_session *s, char *buf, size_t len)
{
    return tio_tls_desc(s->tio, buf, len);
}

const char *up_mech_name(const struct up_session *s)
{
    return up_sasl_name(s->mech);
}

int up_idle(const struct up_session *s)
{
    return !s->closing && !s->failed && s->state == UP_STATE_READY;
}

/* "VERB<arg> params", or "VERB" when arg is NULL. */
static int up_send_cmd(struct up_session *s, unsigned timeout, const char *verb, const char *arg,
                       const char *params)
{
    if (arg) {
        return up_send(s, timeout, "%s<%s>%s%s", verb, arg, params && *params ? " " : "",
                       params ? params : "");
    }
    return up_send(s, timeout, "%s", verb);
}

static int up_command(struct up_session *s, enum up_state st, unsigned timeout, const char *verb,
                      const char *arg, const char *params)
{
    if (s->closing || s->state != UP_STATE_READY) {
        return RELAY_E_PROTOCOL;
    }
    up_enter_state(s, st);
    return up_send_cmd(s, timeout, verb, arg, params);
}

/* RFC 2920: while MAIL or RCPT replies are outstanding, RCPT and DATA may
 * follow when upstream offers PIPELINING; DATA ends the group. */
static int up_pipelined(struct up_session *s, enum up_state st, const char *verb, const char *arg,
                        const char *params)
{
    if (s->closing || !(s->ehlo.ext & UP_EXT_PIPELINING) || s->pipe_data ||
        (s->state != UP_STATE_MAIL && s->state != UP_STATE_RCPT)) {
        return RELAY_E_PROTOCOL;
    }
    if (st == UP_STATE_DATA) {
        s->pipe_data = 1;
    } else {
        s->pipe_rcpt++;
    }
    return up_send_cmd(s, s->p.command_timeout, verb, arg, params);
}

void up_cork(struct up_session *s)
{
    s->corked = 1;
}

static int up_uncork_call(struct up_session *s)
{
    int r;

    if (s->pipe_rcpt || s->pipe_data) {
        tio_quickack(s->tio); /* a reply per command comes back: ACK each at once */
    }
    if ((r = tio_flush(s->tio)) < 0) {
        char e[128];
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
    }
    return 0;
}

int up_uncork(struct up_session *s)
{
    s->corked = 0;
    if (up_call_begin(s) < 0) {
        return RELAY_E_LOST;
    }
    return up_call_end(s, up_uncork_call(s));
}

/* MAIL or RSET from READY; RCPT and DATA also pipelined after MAIL / RCPT. */
static int up_cmd_call(struct up_session *s, enum up_state st, const char *verb, const char *arg,
                       const char *params)
{
    if (up_call_begin(s) < 0) {
        return RELAY_E_LOST;
    }
    if ((st == UP_STATE_RCPT || st == UP_STATE_DATA) && s->state != UP_STATE_READY) {
        return up_call_end(s, up_pipelined(s, st, verb, arg, params));
    }
    /* RFC 5321 §4.5.3.2.2: DATA initiation, 2 minutes (command_timeout) */
    return up_call_end(s, up_command(s, st, s->p.command_timeout, verb, arg, params));
}

int up_mail(struct up_session *s, const char *from, const char *params)
{
    return up_cmd_call(s, UP_STATE_MAIL, "MAIL FROM:", from, params);
}

int up_rcpt(struct up_session *s, const char *to, const char *params)
{
    return up_cmd_call(s, UP_STATE_RCPT, "RCPT TO:", to, params);
}

int up_data(struct up_session *s)
{
    return up_cmd_call(s, UP_STATE_DATA, "DATA", NULL, NULL);
}

int up_rset(struct up_session *s)
{
    return up_cmd_call(s, UP_STATE_RSET, "RSET", NULL, NULL);
}

int up_body(struct up_session *s, const char *data, size_t len)
{
    int r;

    if (s->state != UP_STATE_BODY || up_call_begin(s) < 0) {
        return RELAY_E_PROTOCOL;
    }
    r = tio_write(s->tio, data, len);
    if (r < 0) {
        char e[128];
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
    }
    return up_call_end(s, 0);
}

size_t up_pending(const struct up_session *s)
{
    return s->tio && !s->closing ? tio_pending(s->tio) : 0;
}

int up_data_end(struct up_session *s)
{
    int r;

    if (s->state != UP_STATE_BODY || up_call_begin(s) < 0) {
        return RELAY_E_PROTOCOL;
    }
    up_enter_state(s, UP_STATE_DOT);
    r = tio_flush(s->tio);
    if (r < 0) {
        char e[128];
        up_fail(s, RELAY_E_LOST, NULL, tio_strerror(r, e, sizeof(e)));
    } else {
        up_arm(s, s->p.data_timeout); /* RFC 5321 §4.5.3.2.6: 10 minutes */
    }
    return up_call_end(s, 0);
}

void up_quit(struct up_session *s)
{
    if (s->closing) {
        return;
    }
    if (s->state == UP_STATE_READY) {
        up_enter_state(s, UP_STATE_QUIT);
        if (tio_write(s->tio, "QUIT\r\n", 6) == 0 && tio_flush(s->tio) == 0) {
            up_arm(s, UP_QUIT_TIMEOUT);
            return;
        }
    }
    up_shutdown(s);
}

void up_close(struct up_session *s)
{
    up_shutdown(s);
}

int up_session_same(const struct up_session *s, const struct conf_upstream *up, const char *user,
                    const char *password)
{
    char where[sizeof(s->where)];

    up_where_of(up, where, sizeof(where));
    /* auth = xoauth2 has no password: its sessions match each other by user */
    return strcmp(where, s->where) == 0 && strcmp(user, s->user) == 0 &&
           strcmp(password ? password : "", s->password) == 0 &&
           strcmp(up->server_name ? up->server_name : "", s->server_name) == 0;
}

void up_session_rebind(struct up_session *s, const struct up_cbs *cbs, void *arg, uint64_t sid)
{
    s->cbs = cbs;
    s->arg = arg;
    s->p.sid = sid;
}
