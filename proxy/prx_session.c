/* prx_session: inbound SMTP server session (RFC 5321, PIPELINING RFC 2920,
 * SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034, STARTTLS RFC
 * 3207): the protocol state machine, the verb table, the client's I/O and the
 * session's one teardown. One command is handled at a time; pipelined commands
 * wait in the tio until the previous one's reply is decided, which keeps replies
 * in order. A transaction (prx_txn.c) delivers through the sink chosen at MAIL:
 * relayed (prx_relay.c) or spooled (prx_spool.c); the body pump is prx_data.c,
 * inbound AUTH prx_auth.c. */
#include "proxy/prx_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_map.h"
#include "auth/auth_rate.h"
#include "common/dsn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "common/tio.h"
#include "conf/conf.h"
#include "proxy/prx_cmd.h"
#include "proxy/prx_int.h"
#include "proxy/prx_proxy.h"
#include "spool/spool.h"
#include "spool/spool_writer.h"
#include "upstream/up_pool.h"
#include "upstream/up_session.h"

#define PRX_CLOSE_TIMEOUT_MS 10000u /* flushing the last reply before closing */

static const struct tio_cbs prx_tio_cbs;
static void prx_close(struct prx_session *s, const char *reason);
static void prx_timeout_cb(uv_timer_t *t);
static size_t prx_proxy_input(struct prx_session *s, const char *data, size_t len);
static void prx_greet(struct prx_session *s, const struct sockaddr_storage *ss);

static const char *prx_strstate(enum prx_state st)
{
    switch (st) {
    case PRX_STATE_PROXY:
        return "proxy";
    case PRX_STATE_REFUSED:
        return "refused";
    case PRX_STATE_IDLE:
        return "idle";
    case PRX_STATE_CONNECT:
        return "connect";
    case PRX_STATE_MAIL_WAIT:
        return "mail_wait";
    case PRX_STATE_TXN:
        return "txn";
    case PRX_STATE_RCPT_WAIT:
        return "rcpt_wait";
    case PRX_STATE_DATA_WAIT:
        return "data_wait";
    case PRX_STATE_BODY:
        return "body";
    case PRX_STATE_DOT_WAIT:
        return "dot_wait";
    case PRX_STATE_RSET_WAIT:
        return "rset_wait";
    case PRX_STATE_SPOOL_WAIT:
        return "spool_wait";
    case PRX_STATE_CLOSING:
        return "closing";
    case PRX_STATE_TLS:
        return "tls";
    case PRX_STATE_AUTH:
        return "auth";
    case PRX_STATE_AUTH_WAIT:
        return "auth_wait";
    }
    abort();
}

/* 1 when idle_timeout (counted from wait_ms) or session_timeout has run out. */
static int prx_wait_over(const struct prx_session *s, uint64_t now)
{
    return now >= s->wait_ms + (uint64_t)s->conf->idle_timeout * 1000u ||
           (s->conf->session_timeout > 0 &&
            now >= s->start_ms + (uint64_t)s->conf->session_timeout * 1000u);
}

/* The timer for the first of: idle_timeout after wait_ms, the end of
 * session_timeout, and during DATA the end of the data_min_rate window. */
static void prx_set_timer(struct prx_session *s)
{
    uint64_t now = uv_now(s->env->loop);
    uint64_t due = s->wait_ms + (uint64_t)s->conf->idle_timeout * 1000u;
    uint64_t end = s->start_ms + (uint64_t)s->conf->session_timeout * 1000u;
    uint64_t win = s->state == PRX_STATE_BODY ? prx_body_rate_due(s) : 0;

    if (s->conf->session_timeout > 0 && end < due) {
        due = end;
    }
    if (win && win < due) {
        due = win;
    }
    uv_timer_start(&s->timer, prx_timeout_cb, due > now ? due - now : 1, 0);
}

/* We wait for the client from now: a command line, the PROXY header, an AUTH
 * step or the next body bytes. A line is not given more time for each byte of
 * it (prx_tio_read arms only at its first byte), so a client that drips one
 * byte at a time is gone after idle_timeout. */
static void prx_arm_timer(struct prx_session *s)
{
    if (s->state == PRX_STATE_REFUSED) {
        return; /* refused_timeout runs from the refusal (prx_greet); input does not extend it */
    }
    s->wait_ms = uv_now(s->env->loop);
    prx_set_timer(s);
}

void prx_enter_state(struct prx_session *s, enum prx_state st)
{
    enum prx_state old = s->state;

    log_debug(s->sid, "prx", "state=%s->%s", prx_strstate(s->state), prx_strstate(st));
    s->state = st;
    if (s->closing) {
        return;
    }
    if (st == PRX_STATE_IDLE) {
        prx_up_release(s);
    }
    /* a body arrives in bulk: large reads for it, the small idle buffer after */
    if ((st == PRX_STATE_BODY) != (old == PRX_STATE_BODY) && s->tio) {
        tio_bulk(s->tio, st == PRX_STATE_BODY);
    }
    /* the idle timer runs only while we wait for the client */
    if (st == PRX_STATE_IDLE || st == PRX_STATE_TXN || st == PRX_STATE_BODY ||
        st == PRX_STATE_REFUSED || st == PRX_STATE_PROXY || st == PRX_STATE_TLS ||
        st == PRX_STATE_AUTH) {
        prx_arm_timer(s);
    } else {
        uv_timer_stop(&s->timer);
    }
}

static int prx_waiting(const struct prx_session *s)
{
    return !(PRX_M(s->state) &
             (PRX_M_CMD | PRX_M(PRX_STATE_BODY) | PRX_M(PRX_STATE_PROXY) | PRX_M(PRX_STATE_AUTH)));
}

/* Queue a reply and send it as one write. */
void prx_send(struct prx_session *s, const char *text, size_t len)
{
    if (s->client_gone || s->closing) {
        return;
    }
    if (tio_write(s->tio, text, len) < 0 || tio_flush(s->tio) < 0) {
        prx_close(s, "write failed");
    }
}

void prx_reply(struct prx_session *s, enum reply_id id)
{
    size_t len;
    const char *t = reply_canned(id, &len);
    if (t[0] == '5') {
        s->errors++;
    }
    prx_send(s, t, len);
}

/* Send what we have, then close once it is written. */
static void prx_finish(struct prx_session *s)
{
    prx_enter_state(s, PRX_STATE_CLOSING);
    if (s->closing || s->client_gone || tio_pending(s->tio) == 0) {
        prx_close(s, "quit");
        return;
    }
    /* a client that does not read its last reply does not keep the session */
    uv_timer_start(&s->timer, prx_timeout_cb, PRX_CLOSE_TIMEOUT_MS, 0);
}

static void prx_unref(struct prx_session *s)
{
    if (--s->refs > 0) {
        return;
    }
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        s->env->head = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    s->env->nsessions--;
    if (s->refused) {
        s->env->nrefused--;
    }
    if (s->env->metrics) {
        s->env->metrics->sessions_active--;
    }
    if (s->txn) {
        prx_txn_end(s); /* closed inside a transaction */
    }
    prx_conf_release(s->pc);
    free(s);
}

void prx_unref_env(struct prx_session *s)
{
    struct prx_env *env = s->env;
    prx_unref(s);
    if (env->nsessions == 0 && env->draining && env->on_empty) {
        env->on_empty(env);
    }
}

static void prx_timer_close_cb(uv_handle_t *h)
{
    prx_unref_env(h->data);
}

/* The connect line of a greeted client, written at its first command (or when it
 * leaves without one): by then a `relay25 health` probe has said who it is, and
 * each probe does not add two info lines (issue 14). */
static void prx_log_connect(struct prx_session *s, int level)
{
    if (!s->connect_pending) {
        return;
    }
    s->connect_pending = 0;
    log_msg(level, s->sid, "prx", "event=connect client=%s port=%u device=%s user=%s", s->ip,
            s->port, s->dev ? s->dev->name : "-", s->dev ? s->dev->user : "-");
}

static void prx_close(struct prx_session *s, const char *reason)
{
    if (s->closing) {
        return;
    }
    s->closing = 1;
    prx_log_connect(s, LOG_INFO);
    log_msg(s->probe && s->nmsg == 0 ? LOG_DEBUG : LOG_INFO, s->sid, "prx",
            "event=disconnect client=%s reason=\"%s\" messages=%u", s->ip, reason, s->nmsg);
    if (s->txn && s->txn->spw && s->state != PRX_STATE_SPOOL_WAIT) {
        /* an unfinished message: nothing was acknowledged, nothing may stay */
        spool_writer_abort(s->txn->spw);
        s->txn->spw = NULL;
        s->refs--; /* the timer's close is pending: refs stays above zero */
    }
    if (s->txn && s->txn->gw && s->state != PRX_STATE_SPOOL_WAIT) {
        prx_graph_abort(s->txn->gw); /* the same for the Graph sink's unfinished body */
        s->txn->gw = NULL;
        s->refs--;
    }
    if (s->env->pool) {
        up_pool_acquire_cancel(s->env->pool, &s->upq);
    }
    uv_close((uv_handle_t *)&s->timer, prx_timer_close_cb);
    if (!s->client_gone) {
        s->client_gone = 1;
        tio_close(s->tio);
    }
    if (s->up && (s->state == PRX_STATE_BODY || s->state == PRX_STATE_DOT_WAIT)) {
        /* inside DATA: closing without the final dot makes upstream drop it */
        up_close(s->up);
        s->up = NULL;
    }
    prx_up_release(s); /* authenticated and clean: the next device reuses it */
    if (s->up) {
        up_quit(s->up);
        s->up = NULL;
    }
}

/* A wait for upstream ended: continue with pipelined input. */
void prx_continue(struct prx_session *s)
{
    if (s->client_gone && !s->closing) {
        prx_close(s, "client gone");
    }
    if (s->closing || s->client_gone) {
        return;
    }
    if (!s->in_read) {
        tio_resume(s->tio);
    }
}

/* ---- commands ---- */

static void prx_cmd_helo(struct prx_session *s, const struct prx_cmd *c, int esmtp)
{
    char buf[512];
    size_t n;

    if (c->arglen == 0) {
        prx_reply(s, REPLY_HELO_NEEDS_ARG);
        return;
    }
    if (s->state == PRX_STATE_TXN) {
        /* RFC 5321 §4.1.4: EHLO resets the transaction */
        prx_drop_up(s);
        prx_txn_end(s);
    }
    snprintf(s->helo, sizeof(s->helo), "%.*s", (int)c->arglen, c->arg);
    for (char *p = s->helo; *p; p++) {
        /* it goes into a header: RFC 5322 §2.2 allows only printable US-ASCII there, so
         * bytes >= 0x80 (raw UTF-8 or Latin-1) are replaced like controls */
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == '(' || *p == ')') {
            *p = '_';
        }
    }
    s->esmtp = esmtp;
    s->need_helo = 0;
    s->offer = esmtp ? prx_offer(s) : 0;
    /* SIZE: the smaller of max_message_size and the upstream's (RFC 1870) */
    n = reply_ehlo(
        buf, sizeof(buf), s->conf->hostname, esmtp, (unsigned long long)prx_size_limit(s, NULL),
        s->conf->tls_cert && !tio_tls_active(s->tio), prx_auth_offered(s) && !s->authed, s->offer);
    prx_send(s, buf, n);
}

/* One ESMTP parameter "KEY" or "KEY=value" (RFC 5321 §4.1.2) of [p, p+len):
 * its length, the key's length and the value (NULL for a bare keyword). */
static size_t prx_param_next(const char *p, size_t len, size_t *kl, const char **v, size_t *vl)
{
    size_t i = 0;

    while (i < len && p[i] != ' ' && p[i] != '\t') {
        i++;
    }
    *kl = 0;
    while (*kl < i && p[*kl] != '=') {
        (*kl)++;
    }
    *v = *kl < i ? p + *kl + 1 : NULL;
    *vl = *kl < i ? i - *kl - 1 : 0;
    return i;
}

static int prx_key(const char *p, size_t kl, const char *name)
{
    return kl == strlen(name) && strncasecmp(p, name, kl) == 0;
}

/* Appends the token [p, p+n) to out (cap), blank-separated. -1 when it does not fit. */
static int prx_param_keep(char *out, size_t cap, size_t *o, const char *p, size_t n)
{
    if (*o + n + 2 >= cap) {
        return -1;
    }
    if (*o) {
        out[(*o)++] = ' ';
    }
    memcpy(out + *o, p, n);
    *o += n;
    out[*o] = '\0';
    return 0;
}

/* Vets MAIL's ESMTP parameters into out (cap PRX_PARAMS_MAX): known ones are
 * kept for upstream, unknown ones (or ones not offered) refused (RFC 5321
 * §4.1.1.11: 555). BODY takes only the values we offer: 7BIT and 8BITMIME (RFC
 * 6152); BINARYMIME needs CHUNKING (RFC 3030), which is not offered. RET and
 * ENVID when DSN was offered (RFC 3461 §4.3, §4.4), SMTPUTF8 without a value
 * when it was (RFC 6531 §3.4); a malformed or repeated one is 501.
 * REPLY_COUNT when they are fine, else the reply. */
static enum reply_id prx_mail_params(const struct prx_session *s, char *out, size_t cap,
                                     const char *p, size_t len)
{
    unsigned seen = 0;
    size_t o = 0;

    out[0] = '\0';
    while (len > 0) {
        const char *v;
        size_t kl, vl, i = prx_param_next(p, len, &kl, &v, &vl);
        unsigned bit = 0;

        if (prx_key(p, kl, "BODY")) {
            if (!v || !((vl == 4 && strncasecmp(v, "7BIT", 4) == 0) ||
                        (vl == 8 && strncasecmp(v, "8BITMIME", 8) == 0))) {
                return REPLY_BAD_PARAM;
            }
            bit = 1;
        } else if (prx_key(p, kl, "SIZE")) {
            bit = 2;
        } else if (prx_key(p, kl, "RET") && (s->offer & REPLY_EHLO_DSN)) {
            if (!v || dsn_ret_parse(v, vl) < 0) {
                return REPLY_DSN_SYNTAX;
            }
            bit = 4;
        } else if (prx_key(p, kl, "ENVID") && (s->offer & REPLY_EHLO_DSN)) {
            if (!v || !dsn_envid_ok(v, vl)) {
                return REPLY_DSN_SYNTAX;
            }
            bit = 8;
        } else if (prx_key(p, kl, "SMTPUTF8") && (s->offer & REPLY_EHLO_SMTPUTF8)) {
            if (v) {
                return REPLY_SYNTAX_PARAM; /* RFC 6531 §3.4: a keyword without a value */
            }
            bit = 16;
        } else if (i > 0) {
            return REPLY_BAD_PARAM;
        }
        if (seen & bit) {
            return bit >= 4 && bit <= 8 ? REPLY_DSN_SYNTAX : REPLY_SYNTAX_PARAM;
        }
        seen |= bit;
        if (bit && prx_param_keep(out, cap, &o, p, i) < 0) {
            return REPLY_BAD_PARAM;
        }
        while (i < len && (p[i] == ' ' || p[i] == '\t')) {
            i++;
        }
        p += i;
        len -= i;
    }
    return REPLY_COUNT;
}

/* Vets RCPT's parameters into out: NOTIFY and ORCPT when DSN was offered (RFC
 * 3461 §4.1, §4.2), each once. REPLY_COUNT when fine, else the reply. */
static enum reply_id prx_rcpt_params(const struct prx_session *s, char *out, size_t cap,
                                     const char *p, size_t len)
{
    unsigned seen = 0;
    size_t o = 0;

    out[0] = '\0';
    while (len > 0) {
        const char *v;
        size_t kl, vl, i = prx_param_next(p, len, &kl, &v, &vl);
        unsigned bit;

        if (prx_key(p, kl, "NOTIFY") && (s->offer & REPLY_EHLO_DSN)) {
            if (!v || dsn_notify_parse(v, vl) < 0) {
                return REPLY_DSN_SYNTAX;
            }
            bit = 1;
        } else if (prx_key(p, kl, "ORCPT") && (s->offer & REPLY_EHLO_DSN)) {
            if (!v || !dsn_orcpt_ok(v, vl)) {
                return REPLY_DSN_SYNTAX;
            }
            bit = 2;
        } else {
            return REPLY_BAD_PARAM;
        }
        if ((seen & bit) || prx_param_keep(out, cap, &o, p, i) < 0) {
            return REPLY_DSN_SYNTAX;
        }
        seen |= bit;
        while (i < len && (p[i] == ' ' || p[i] == '\t')) {
            i++;
        }
        p += i;
        len -= i;
    }
    return REPLY_COUNT;
}

/* allowed_senders / allowed_recipients refusal: 550 5.7.1 with the reason. */
static void prx_policy_refuse(struct prx_session *s, const char *what, const char *addr)
{
    char buf[PRX_PATH_MAX + 200];
    size_t n = reply_not_allowed(buf, sizeof(buf), what, addr, s->dev->name);

    log_info(s->sid, "prx", "event=policy_refused device=%s %s=<%s>", s->dev->name,
             what[0] == 'S' ? "from" : "to", addr);
    if (s->env->metrics) {
        s->env->metrics->policy_refused_total++;
    }
    prx_send(s, buf, n);
}

/* One token from the bucket of the device (or of this client of it), or 450
 * 4.7.1 with a retry hint. */
static int prx_rate_take(struct prx_session *s, enum prx_rate_kind kind,
                         const struct conf_rate *rate, const char *name)
{
    uint64_t retry = 0, now = uv_now(s->env->loop);
    struct auth_bucket *b;
    char buf[300];
    size_t n;

    b = prx_conf_bucket(s->pc, s->devidx, kind, (const struct sockaddr *)&s->peer, now);
    if (!b || auth_bucket_take(b, rate->count, rate->per_seconds, 1, now, &retry)) {
        return 1;
    }
    log_info(s->sid, "prx", "event=rate_limited device=%s limit=%s rate=%u/%us client=%s by=%s",
             s->dev->name, name, rate->count, rate->per_seconds, s->ip,
             s->dev->rate_by == CONF_RATE_BY_DEVICE ? "device" : "address");
    if (s->env->metrics) {
        s->env->metrics->rate_limited_total++;
    }
    n = reply_rate_limited(buf, sizeof(buf), name, rate->count, rate->per_seconds, s->dev->name,
                           (unsigned long long)(retry / 1000 + 1));
    prx_send(s, buf, n);
    return 0;
}

static void prx_cmd_mail(struct prx_session *s, const struct prx_cmd *c)
{
    char from[PRX_PATH_MAX], mp[PRX_PARAMS_MAX];
    const char *params;
    size_t plen;
    enum reply_id rid;
    int r = prx_cmd_path(c->arg, c->arglen, "FROM", from, sizeof(from), &params, &plen);

    if (s->need_helo) {
        prx_reply(s, REPLY_NEED_EHLO); /* RFC 3207 §4.2: EHLO again after STARTTLS */
        return;
    }
    if (!s->dev) {
        prx_reply(s, REPLY_AUTH_REQUIRED); /* allowed, but no [device]: only AUTH helps */
        return;
    }
    if (s->conf->max_messages_per_session && s->nmsg >= s->conf->max_messages_per_session) {
        prx_reply(s, REPLY_TOO_MANY_MESSAGES);
        prx_finish(s);
        return;
    }
    s->ncmds = 0;
    if (r == PRX_PATH_TOO_LONG) {
        prx_reply(s, REPLY_PATH_TOO_LONG);
        return;
    }
    if (r != PRX_PATH_OK) {
        prx_reply(s, REPLY_SYNTAX_PATH);
        return;
    }
    if ((rid = prx_mail_params(s, mp, sizeof(mp), params, plen)) != REPLY_COUNT) {
        prx_reply(s, rid);
        return;
    }
    /* RFC 6531 §3.5: a non-ASCII address only in an SMTPUTF8 transaction */
    if (dsn_has_8bit(from, strlen(from)) &&
        !prx_cmd_param(mp, strlen(mp), "SMTPUTF8", &params, &plen)) {
        prx_reply(s, REPLY_NEED_SMTPUTF8);
        return;
    }
    if (prx_param_size(mp) >
        prx_size_limit(s, s->dev->rewrite_sender && from[0] ? s->dev->rewrite_sender : from)) {
        prx_reply(s, REPLY_TOO_BIG); /* RFC 1870 §6.1: before any data */
        return;
    }
    if (!conf_patterns_match(&s->dev->allowed_senders, from)) {
        prx_policy_refuse(s, "Sender", from);
        return;
    }
    if (!prx_rate_take(s, PRX_RATE_MESSAGE, &s->dev->message_rate, "message_rate")) {
        return;
    }
    prx_txn_begin(s, from, mp);
}

static void prx_cmd_rcpt(struct prx_session *s, const struct prx_cmd *c)
{
    struct prx_txn *t = s->txn;
    const char *params;
    size_t plen;
    enum reply_id rid;
    int r;

    if (t->txn_lost) {
        prx_send(s, t->upfail, strlen(t->upfail));
        prx_txn_end(s);
        return;
    }
    r = prx_cmd_path(c->arg, c->arglen, "TO", t->rcpt, sizeof(t->rcpt), &params, &plen);
    if (r == PRX_PATH_TOO_LONG) {
        prx_reply(s, REPLY_PATH_TOO_LONG);
        return;
    }
    if (r != PRX_PATH_OK || t->rcpt[0] == '\0') {
        prx_reply(s, REPLY_SYNTAX_PATH);
        return;
    }
    if ((rid = prx_rcpt_params(s, t->rparams, sizeof(t->rparams), params, plen)) != REPLY_COUNT) {
        prx_reply(s, rid);
        return;
    }
    if (!t->smtputf8 && dsn_has_8bit(t->rcpt, strlen(t->rcpt))) {
        prx_reply(s, REPLY_NEED_SMTPUTF8); /* RFC 6531 §3.5 */
        return;
    }
    if (s->conf->max_recipients && t->nrcpt >= s->conf->max_recipients) {
        prx_reply(s, REPLY_TOO_MANY_RCPT);
        return;
    }
    if (!conf_patterns_match(&s->dev->allowed_recipients, t->rcpt)) {
        prx_policy_refuse(s, "Recipient", t->rcpt);
        return;
    }
    if (!prx_rate_take(s, PRX_RATE_RECIPIENT, &s->dev->recipient_rate, "recipient_rate")) {
        return;
    }
    t->sink->rcpt(s);
}

static void prx_cmd_data(struct prx_session *s, const struct prx_cmd *c)
{
    struct prx_txn *t = s->txn;

    (void)c;
    if (t->txn_lost) {
        prx_send(s, t->upfail, strlen(t->upfail));
        prx_txn_end(s);
        return;
    }
    if (t->nrcpt == 0) {
        prx_reply(s, REPLY_NO_VALID_RCPT);
        return;
    }
    t->sink->data(s);
}

static void prx_cmd_rset(struct prx_session *s, const struct prx_cmd *c)
{
    (void)c;
    if (s->state == PRX_STATE_TXN && s->up && up_idle(s->up)) {
        prx_txn_end(s);
        prx_enter_state(s, PRX_STATE_RSET_WAIT);
        prx_up_check(s, up_rset(s->up));
        return;
    }
    if (s->state == PRX_STATE_TXN) {
        prx_txn_end(s);
    }
    prx_reply(s, REPLY_RSET);
}

static void prx_cmd_quit(struct prx_session *s, const struct prx_cmd *c)
{
    (void)c;
    prx_reply(s, REPLY_QUIT);
    prx_finish(s);
}

static void prx_cmd_simple(struct prx_session *s, const struct prx_cmd *c)
{
    switch (c->verb) {
    case PRX_V_NOOP:
        prx_reply(s, REPLY_OK);
        break;
    case PRX_V_VRFY:
        prx_reply(s, REPLY_VRFY);
        break;
    case PRX_V_HELP:
        prx_reply(s, REPLY_HELP);
        break;
    default:
        prx_reply(s, REPLY_NOT_IMPL);
        break;
    }
}

static void prx_cmd_helo_h(struct prx_session *s, const struct prx_cmd *c)
{
    prx_cmd_helo(s, c, 0);
}

static void prx_cmd_ehlo_h(struct prx_session *s, const struct prx_cmd *c)
{
    prx_cmd_helo(s, c, 1);
}

/* The Received: protocol name (RFC 3848). */
const char *prx_with(const struct prx_session *s)
{
    int tls = tio_tls_active(s->tio);

    if (!s->esmtp) {
        return "SMTP";
    }
    if (tls) {
        return s->authed ? "ESMTPSA" : "ESMTPS";
    }
    return s->authed ? "ESMTPA" : "ESMTP";
}

static void prx_cmd_starttls(struct prx_session *s, const struct prx_cmd *c)
{
    int r;

    if (!s->conf->tls_cert) {
        prx_reply(s, REPLY_NOT_IMPL);
        return;
    }
    if (tio_tls_active(s->tio)) {
        prx_reply(s, REPLY_TLS_ACTIVE);
        return;
    }
    if (c->arglen > 0) {
        prx_reply(s, REPLY_SYNTAX_PARAM);
        return;
    }
    prx_reply(s, REPLY_STARTTLS);
    if (s->closing) {
        return;
    }
    prx_enter_state(s, PRX_STATE_TLS);
    /* at this line boundary: anything pipelined after STARTTLS is dropped */
    r = tio_starttls_server(s->tio, s->conf->tls_cert, s->conf->tls_min_version);
    if (r != 0) {
        char e[128];
        log_warn(s->sid, "prx", "event=tls_failed client=%s error=\"%s\"", s->ip,
                 tio_strerror(r, e, sizeof(e)));
        prx_close(s, "STARTTLS failed");
    }
}

/* Which verbs run in which state; anything else gets `wrong`. */
static const struct {
    enum prx_verb verb;
    unsigned states;
    enum reply_id wrong;
    void (*handler)(struct prx_session *s, const struct prx_cmd *c);
} prx_verbs[] = {
    {PRX_V_HELO, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_helo_h},
    {PRX_V_EHLO, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_ehlo_h},
    {PRX_V_MAIL, PRX_M(PRX_STATE_IDLE), REPLY_NESTED_MAIL, prx_cmd_mail},
    {PRX_V_RCPT, PRX_M(PRX_STATE_TXN), REPLY_NEED_MAIL, prx_cmd_rcpt},
    {PRX_V_DATA, PRX_M(PRX_STATE_TXN), REPLY_NEED_MAIL, prx_cmd_data},
    {PRX_V_RSET, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_rset},
    {PRX_V_NOOP, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_simple},
    {PRX_V_VRFY, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_simple},
    {PRX_V_HELP, PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN), REPLY_ONLY_QUIT, prx_cmd_simple},
    {PRX_V_QUIT, PRX_M_CMD, REPLY_ONLY_QUIT, prx_cmd_quit},
    {PRX_V_STARTTLS, PRX_M(PRX_STATE_IDLE), REPLY_STARTTLS_IN_TXN, prx_cmd_starttls},
    {PRX_V_AUTH, PRX_M(PRX_STATE_IDLE), REPLY_AUTH_IN_TXN, prx_cmd_auth},
};

static void prx_command(struct prx_session *s, const char *line, size_t len)
{
    struct prx_cmd c;

    prx_cmd_parse(line, len, &c);
    if (s->connect_pending) {
        s->probe = (c.verb == PRX_V_EHLO || c.verb == PRX_V_HELO) &&
                   c.arglen == strlen(PRX_HEALTH_HELO) &&
                   memcmp(c.arg, PRX_HEALTH_HELO, c.arglen) == 0;
        prx_log_connect(s, s->probe ? LOG_DEBUG : LOG_INFO);
    }
    if (s->state == PRX_STATE_IDLE && (s->draining || s->env->draining) && c.verb != PRX_V_QUIT) {
        char buf[300];
        size_t n = reply_shutdown(buf, sizeof(buf), s->conf->hostname);
        prx_send(s, buf, n);
        prx_finish(s);
        return;
    }
    /* Postfix's junk command limit: a client that never sends mail goes away */
    if (c.verb != PRX_V_MAIL && c.verb != PRX_V_QUIT && s->state == PRX_STATE_IDLE &&
        s->conf->max_commands_before_mail && ++s->ncmds > s->conf->max_commands_before_mail) {
        prx_reply(s, REPLY_TOO_MANY_COMMANDS);
        prx_finish(s);
        return;
    }
    for (size_t i = 0; i < sizeof(prx_verbs) / sizeof(prx_verbs[0]); i++) {
        if (prx_verbs[i].verb != c.verb) {
            continue;
        }
        if (PRX_M(s->state) & prx_verbs[i].states) {
            prx_verbs[i].handler(s, &c);
        } else {
            prx_reply(s, s->state == PRX_STATE_REFUSED ? REPLY_ONLY_QUIT : prx_verbs[i].wrong);
        }
        return;
    }
    if (s->state == PRX_STATE_REFUSED) {
        prx_reply(s, REPLY_ONLY_QUIT);
    } else if (c.verb == PRX_V_UNKNOWN) {
        prx_reply(s, REPLY_UNKNOWN);
    } else {
        prx_reply(s, REPLY_NOT_IMPL); /* EXPN, BDAT */
    }
}

/* ---- client I/O ---- */

static size_t prx_tio_read(void *arg, const char *data, size_t len)
{
    struct prx_session *s = arg;
    size_t off = 0;

    s->in_read = 1;
    while (off < len && !s->closing && !s->client_gone) {
        if (s->state == PRX_STATE_PROXY) {
            off += prx_proxy_input(s, data + off, len - off);
            continue;
        }
        if (s->state == PRX_STATE_BODY) {
            if (s->up && up_pending(s->up) > PRX_HIWAT) {
                s->bp = 1; /* resumed by prx_up_drain */
                s->txn->rate_paused = 1;
                break;
            }
            if (s->txn->bp_spool) {
                s->txn->rate_paused = 1;
                break;
            }
            prx_arm_timer(s);
            off += prx_body(s, data + off, len - off);
            continue;
        }
        if (prx_waiting(s)) {
            break;
        }
        if (tio_pending(s->tio) > PRX_OUT_HIWAT) {
            /* a client that pipelines without reading: stop until it reads */
            s->bp_out = 1;
            break;
        }
        /* a new line: its first byte starts the clock, the rest must follow in time */
        if (s->linelen == 0 && !s->line_overflow) {
            prx_arm_timer(s);
        }
        const char *nl = memchr(data + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (data + off)) + 1 : len - off;
        if (s->linelen + n > PRX_LINE_MAX || s->line_overflow) {
            s->line_overflow = 1;
        } else {
            memcpy(s->line + s->linelen, data + off, n);
            s->linelen += n;
        }
        off += n;
        if (!nl) {
            break;
        }
        if (s->line_overflow) {
            s->line_overflow = 0;
            s->linelen = 0;
            if (s->state == PRX_STATE_AUTH) {
                prx_auth_end(s);
            }
            prx_reply(s, REPLY_LINE_TOO_LONG);
        } else {
            size_t l = s->linelen - 1;
            if (l > 0 && s->line[l - 1] == '\r') {
                l--;
            }
            s->line[l] = '\0';
            s->linelen = 0;
            if (s->state == PRX_STATE_AUTH) {
                prx_auth_line(s, s->line, l);
            } else {
                prx_command(s, s->line, l);
            }
            if (s->state == PRX_STATE_TLS) {
                break; /* the tio dropped what followed STARTTLS (RFC 3207 §4.2) */
            }
        }
        if (s->conf->max_errors && s->errors >= s->conf->max_errors && !s->closing &&
            s->state != PRX_STATE_CLOSING) {
            prx_reply(s, REPLY_TOO_MANY_ERRORS);
            prx_finish(s);
        }
    }
    s->in_read = 0;
    if (s->closing || s->client_gone || s->state == PRX_STATE_CLOSING) {
        return len; /* discard the rest */
    }
    return off;
}

static void prx_tio_drain(void *arg)
{
    struct prx_session *s = arg;
    if (s->bp_out && s->state != PRX_STATE_CLOSING && tio_pending(s->tio) < PRX_OUT_HIWAT / 2) {
        s->bp_out = 0;
        prx_continue(s);
        return;
    }
    if (s->state == PRX_STATE_CLOSING && tio_pending(s->tio) == 0) {
        prx_close(s, "quit");
    }
}

static void prx_tio_error(void *arg, int err)
{
    struct prx_session *s = arg;
    char e[128];

    if (s->state == PRX_STATE_CLOSING) {
        prx_close(s, "quit");
        return;
    }
    tio_strerror(err, e, sizeof(e));
    if (s->state == PRX_STATE_TLS) {
        log_info(s->sid, "prx", "event=tls_failed client=%s error=\"%s\"", s->ip, e);
    }
    if (s->state == PRX_STATE_DOT_WAIT && s->up) {
        /* the message is complete upstream: wait for its verdict to log it */
        s->client_gone = 1;
        tio_close(s->tio);
        uv_timer_stop(&s->timer);
        log_info(s->sid, "prx", "event=client_gone client=%s state=dot_wait", s->ip);
        return;
    }
    if (s->state == PRX_STATE_BODY) {
        prx_log_message(s, "aborted", "client disconnected during DATA", 31);
    }
    prx_close(s, err == UV_EOF ? "client closed connection" : e);
}

static void prx_tio_close(void *arg)
{
    prx_unref_env(arg);
}

/* Handshake done: an implicit-TLS client is greeted now; after STARTTLS the
 * session starts over without its EHLO (RFC 3207 §4.2). */
static void prx_tio_handshake(void *arg)
{
    struct prx_session *s = arg;
    char d[96];

    log_info(s->sid, "prx", "event=tls client=%s mode=%s tls=%s", s->ip,
             s->tls_implicit ? "implicit" : "starttls", tio_tls_desc(s->tio, d, sizeof(d)));
    if (s->tls_implicit) {
        prx_greet(s, &s->peer);
        return;
    }
    s->helo[0] = '\0';
    s->esmtp = 0;
    s->offer = 0;
    s->need_helo = 1;
    prx_enter_state(s, PRX_STATE_IDLE);
}

static const struct tio_cbs prx_tio_cbs = {
    .on_read = prx_tio_read,
    .on_handshake = prx_tio_handshake,
    .on_drain = prx_tio_drain,
    .on_error = prx_tio_error,
    .on_close = prx_tio_close,
};

static void prx_timeout_cb(uv_timer_t *t)
{
    struct prx_session *s = t->data;
    uint64_t now = uv_now(s->env->loop);
    char buf[300];
    size_t n = reply_timeout(buf, sizeof(buf), s->conf->hostname);

    if (s->state == PRX_STATE_BODY && !prx_wait_over(s, now)) {
        /* the data_min_rate window ended */
        if (prx_body_rate_ok(s, now)) {
            prx_set_timer(s);
            return;
        }
        prx_log_message(s, "aborted", "client too slow during DATA", 27);
        prx_drop_up(s);
        prx_send(s, buf, reply_too_slow(buf, sizeof(buf), s->conf->hostname));
        prx_finish(s);
        return;
    }
    if (s->state == PRX_STATE_CLOSING) {
        prx_close(s, "close timeout");
        return;
    }
    if (s->state == PRX_STATE_REFUSED) {
        prx_close(s, "refused");
        return;
    }
    if (s->state == PRX_STATE_TLS) {
        log_info(s->sid, "prx", "event=timeout client=%s state=tls", s->ip);
        prx_close(s, "TLS handshake timeout");
        return;
    }
    log_info(s->sid, "prx", "event=timeout client=%s state=%s limit=%s", s->ip,
             prx_strstate(s->state),
             s->conf->session_timeout && now >= s->start_ms + s->conf->session_timeout * 1000ull
                 ? "session_timeout"
                 : "idle_timeout");
    if (s->state == PRX_STATE_BODY) {
        prx_log_message(s, "aborted", "client timed out during DATA", 28);
        prx_drop_up(s);
    }
    prx_send(s, buf, n);
    prx_finish(s);
}

/* Address text and port of a sockaddr. */
static void prx_set_peer(struct prx_session *s, const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, s->ip, sizeof(s->ip));
        s->port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, s->ip, sizeof(s->ip));
        s->port = ntohs(a->sin6_port);
    }
}

static size_t prx_count_ip(const struct prx_session *s)
{
    size_t n = 0;
    for (const struct prx_session *o = s->env->head; o; o = o->next) {
        n += !o->closing && strcmp(o->ip, s->ip) == 0;
    }
    return n;
}

/* Why the client at sa may not use the relay, or NULL; *dev gets its [device]. */
static const char *prx_refusal(const struct conf *c, const struct sockaddr *sa,
                               const struct conf_device **dev)
{
    *dev = NULL;
    if (!auth_map_allowed(c, sa)) {
        return "not in allow";
    }
    if (!(*dev = auth_map_lookup(c, sa)) && c->nusers == 0) {
        /* with users_file, AUTH may still give the client a [device] (login = ...) */
        return "no [device] matches and there is no [device default]";
    }
    return NULL;
}

static void prx_mark_refused(struct prx_session *s)
{
    if (!s->refused) {
        s->refused = 1;
        s->env->nrefused++;
    }
}

/* The connection limit s is over, or NULL. Refused sessions are a pool of their
 * own (max_connections of them): however many a host outside allow opens, the
 * devices keep theirs. Both kinds count per address, except for the exempt
 * networks (loopback by default: the relay's own users, as Postfix's mynetworks). */
static const char *prx_over_limit(const struct prx_session *s, const struct sockaddr *sa)
{
    const struct conf *c = s->conf;
    size_t n = s->refused ? s->env->nrefused : s->env->nsessions - s->env->nrefused;

    if (c->max_connections && n > c->max_connections) {
        return "max_connections";
    }
    if (c->max_connections_per_ip == 0) {
        return NULL;
    }
    for (size_t i = 0; i < c->nper_ip_exempt; i++) {
        if (cidr_match(&c->per_ip_exempt[i], sa)) {
            return NULL;
        }
    }
    return prx_count_ip(s) > c->max_connections_per_ip ? "max_connections_per_ip" : NULL;
}

/* tls_listen: a client that would be refused or limited is closed before any TLS
 * work. Its 554 or 421 cannot be sent (the client expects a ServerHello), so only
 * the log says why. Returns 1 when s was closed. */
static int prx_tls_gate(struct prx_session *s, const struct sockaddr_storage *ss)
{
    const struct sockaddr *sa = (const struct sockaddr *)ss;
    const struct conf_device *dev;
    const char *why = prx_refusal(s->conf, sa, &dev), *limit;

    if (why) {
        prx_mark_refused(s);
    }
    limit = prx_over_limit(s, sa);
    if (!why && !limit) {
        return 0;
    }
    if (why) {
        log_info(s->sid, "prx", "event=refused client=%s port=%u reason=\"%s\" tls=implicit", s->ip,
                 s->port, why);
    }
    if (limit) {
        log_info(s->sid, "prx", "event=limited client=%s limit=%s tls=implicit", s->ip, limit);
    }
    if (s->env->metrics) {
        if (why) {
            s->env->metrics->refused_total++;
        } else {
            s->env->metrics->limited_total++;
        }
    }
    s->state = PRX_STATE_CLOSING;
    prx_close(s, why ? "refused before TLS" : "limited before TLS");
    return 1;
}

/* The client's address is known (socket or PROXY header): limit, refuse or greet. */
static void prx_greet(struct prx_session *s, const struct sockaddr_storage *ss)
{
    char buf[600];
    size_t n;
    const char *why, *limit;
    const struct conf *c = s->conf;

    prx_set_peer(s, ss);
    if (ss != &s->peer) {
        s->peer = *ss;
    }
    why = prx_refusal(c, (const struct sockaddr *)ss, &s->dev);
    if (why) {
        prx_mark_refused(s);
    }
    s->devidx = s->dev ? (size_t)(s->dev - c->devices) : 0;
    limit = prx_over_limit(s, (const struct sockaddr *)ss);
    if (limit) {
        log_info(s->sid, "prx", "event=limited client=%s limit=%s%s", s->ip, limit,
                 why ? " refused=yes" : "");
        if (s->env->metrics) {
            s->env->metrics->limited_total++;
        }
        n = reply_too_many_connections(buf, sizeof(buf), c->hostname,
                                       strcmp(limit, "max_connections") != 0);
        prx_send(s, buf, n);
        prx_finish(s);
        return;
    }
    if (why) {
        log_info(s->sid, "prx", "event=refused client=%s port=%u reason=\"%s\"", s->ip, s->port,
                 why);
        if (s->env->metrics) {
            s->env->metrics->refused_total++;
        }
        n = reply_refused(buf, sizeof(buf), c->hostname, s->ip, why);
        prx_enter_state(s, PRX_STATE_REFUSED);
        /* refused_timeout: long enough to read the 554 and QUIT (RFC 5321 §3.1), short
         * enough that refused clients do not hold descriptors for idle_timeout */
        uv_timer_start(&s->timer, prx_timeout_cb, (uint64_t)c->refused_timeout * 1000u, 0);
        prx_send(s, buf, n);
        return;
    }
    s->connect_pending = 1; /* logged at the first command: prx_log_connect */
    n = reply_greeting(buf, sizeof(buf), c->hostname);
    prx_enter_state(s, PRX_STATE_IDLE);
    prx_send(s, buf, n);
}

/* PROXY protocol: bytes are gathered in the line buffer until the header is whole. */
static size_t prx_proxy_input(struct prx_session *s, const char *data, size_t len)
{
    struct prx_proxy_result res;
    size_t before = s->linelen, take = PRX_INBUF - s->linelen, used = 0;
    int r;

    if (take > len) {
        take = len;
    }
    memcpy(s->line + s->linelen, data, take);
    s->linelen += take;
    r = prx_proxy_parse(s->line, s->linelen, &used, &res);
    if (r == PRX_PROXY_MORE && s->linelen < PRX_INBUF) {
        return take;
    }
    if (r != PRX_PROXY_DONE) {
        log_info(s->sid, "prx", "event=refused client=%s reason=\"bad PROXY protocol header\"",
                 s->ip);
        if (s->env->metrics) {
            s->env->metrics->refused_total++;
        }
        prx_close(s, "bad PROXY header");
        return len;
    }
    s->linelen = 0;
    if (!res.local) {
        log_debug(s->sid, "prx", "event=proxy via=%s", s->ip);
        prx_greet(s, &res.src);
    } else {
        struct sockaddr_storage ss;
        int sl = sizeof(ss);
        uv_tcp_getpeername(tio_tcp(s->tio), (struct sockaddr *)&ss, &sl);
        prx_greet(s, &ss);
    }
    /* bytes after the header (it ended inside this chunk) are SMTP input */
    return used - before;
}

struct prx_session *prx_session_accept(struct prx_env *env, uv_stream_t *listener, int implicit_tls)
{
    struct prx_session *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);

    if (!s) {
        return NULL;
    }
    s->env = env;
    s->pc = env->cur;
    prx_conf_hold(s->pc);
    s->conf = s->pc->c;
    s->sid = log_new_id();
    s->start_ms = uv_now(env->loop);
    s->tio = tio_new(env->loop, &prx_tio_cbs, s);
    if (!s->tio) {
        prx_conf_release(s->pc);
        free(s);
        return NULL;
    }
    s->refs = 2; /* tio + timer */
    uv_timer_init(env->loop, &s->timer);
    s->timer.data = s;
    s->next = env->head;
    if (env->head) {
        env->head->prev = s;
    }
    env->head = s;
    env->nsessions++;
    if (env->metrics) {
        env->metrics->sessions_total++;
        env->metrics->sessions_active++;
    }
    if (uv_accept(listener, tio_stream(s->tio)) != 0 ||
        uv_tcp_getpeername(tio_tcp(s->tio), (struct sockaddr *)&ss, &sslen) != 0) {
        s->state = PRX_STATE_CLOSING;
        prx_close(s, "accept failed");
        return NULL;
    }
    uv_tcp_nodelay(tio_tcp(s->tio), 1);
    if (implicit_tls) {
        int r;

        prx_set_peer(s, &ss);
        if (prx_tls_gate(s, &ss)) {
            return s;
        }
        r = s->conf->tls_cert
                ? tio_starttls_server(s->tio, s->conf->tls_cert, s->conf->tls_min_version)
                : UV_EINVAL;
        if (r != 0) {
            log_warn(s->sid, "prx", "event=tls_failed client=%s error=\"no certificate\"", s->ip);
            s->state = PRX_STATE_CLOSING;
            prx_close(s, "no TLS certificate");
            return s;
        }
        s->peer = ss;
        s->tls_implicit = 1;
        s->state = PRX_STATE_TLS;
        prx_enter_state(s, PRX_STATE_TLS);
    } else if (s->conf->proxy_protocol) {
        int trusted = 0;
        prx_set_peer(s, &ss);
        for (size_t i = 0; i < s->conf->nproxy_from && !trusted; i++) {
            trusted = cidr_match(&s->conf->proxy_from[i], (struct sockaddr *)&ss);
        }
        if (!trusted) {
            log_info(s->sid, "prx",
                     "event=refused client=%s reason=\"PROXY protocol from an address not in "
                     "proxy_from\"",
                     s->ip);
            if (env->metrics) {
                env->metrics->refused_total++;
            }
            s->state = PRX_STATE_CLOSING;
            prx_close(s, "untrusted PROXY source");
            return s;
        }
        s->state = PRX_STATE_PROXY;
        prx_enter_state(s, PRX_STATE_PROXY);
    } else {
        prx_greet(s, &ss);
    }
    if (!s->closing) {
        tio_start(s->tio);
    }
    return s;
}

static void prx_session_drain(struct prx_session *s)
{
    if (s->closing) {
        return;
    }
    s->draining = 1;
    if (s->state == PRX_STATE_IDLE || s->state == PRX_STATE_REFUSED || s->state == PRX_STATE_AUTH) {
        char buf[300];
        size_t n = reply_shutdown(buf, sizeof(buf), s->conf->hostname);
        prx_send(s, buf, n);
        prx_finish(s);
    }
}

static void prx_session_abort(struct prx_session *s)
{
    if (s->closing) {
        return;
    }
    if (s->state != PRX_STATE_CLOSING) {
        char buf[300];
        size_t n = reply_shutdown(buf, sizeof(buf), s->conf->hostname);
        if (s->state == PRX_STATE_BODY || s->state == PRX_STATE_DOT_WAIT) {
            prx_log_message(s, "aborted", "shutdown", 8);
        }
        prx_send(s, buf, n);
    }
    prx_close(s, "shutdown");
}

/* Closing only starts here (memory goes in close callbacks), so the list stays
 * intact while it is walked. */
void prx_session_drain_all(struct prx_env *env)
{
    for (struct prx_session *s = env->head; s; s = s->next) {
        prx_session_drain(s);
    }
}

void prx_session_abort_all(struct prx_env *env)
{
    for (struct prx_session *s = env->head; s; s = s->next) {
        prx_session_abort(s);
    }
}
