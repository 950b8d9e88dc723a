/* prx_relay: the relay sinks. Each MAIL, RCPT and the end of data goes upstream
 * and the client gets upstream's own verdict (passthrough); with
 * on_upstream_failure = queue a temporary failure hands the transaction to the
 * spool sink (prx_go_local). Owns the session's upstream session: getting one
 * from the pool, its callbacks, and its return to the pool. */
#include "proxy/prx_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/data.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "proxy/prx_cmd.h"
#include "spool/spool.h"
#include "spool/spool_writer.h"
#include "upstream/up_caps.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_session.h"

static void prx_start_mail(struct prx_session *s, int use_pool);
static void prx_send_mail(struct prx_session *s);
static void prx_setup_failed(struct prx_session *s, int err, const char *where, const char *detail);
static void prx_params_for_up(struct prx_session *s, char *out, size_t cap);

/* No transaction open: a clean upstream session goes back to the pool, where
 * this device's next MAIL finds it again, and where a transaction waiting for
 * one of the upstream's max_connections slots can have it meanwhile. */
void prx_up_release(struct prx_session *s)
{
    if (s->up && s->env->pool && !s->up_txn && up_idle(s->up)) {
        up_pool_put(s->env->pool, s->up, (s->up_dev ? s->up_dev : s->dev)->up->max_connections);
        s->up = NULL;
        s->refs--; /* the pool owns it now; the session's tio or timer close holds it */
    }
}

void prx_drop_up(struct prx_session *s)
{
    if (s->up) {
        up_close(s->up);
        s->up = NULL;
    }
    s->up_txn = 0;
}

/* An up_* call returned < 0: it had no effect and nothing will answer it
 * (up_session.h), so answer the client now. 0: the answer comes later. */
void prx_up_check(struct prx_session *s, int r)
{
    char buf[300];
    size_t n;

    if (r >= 0) {
        return;
    }
    n = reply_upstream(buf, sizeof(buf), RELAY_E_PROTOCOL, up_where(s->up),
                       "session not ready for the command");
    prx_drop_up(s);
    prx_send(s, buf, n);
    prx_txn_end(s);
}

/* Upstream's reply as the client gets it: its text, with an enhanced status
 * code on every line (reply_pass; relay25 offers ENHANCEDSTATUSCODES, RFC 2034). */
static void prx_send_up(struct prx_session *s, const struct up_reply *r, enum reply_cmd cmd)
{
    char buf[REPLY_PASS_CAP(UP_REPLY_MAX)];
    size_t n = reply_pass(buf, sizeof(buf), r->text, r->len, cmd);

    prx_send(s, buf, n);
}

/* The largest message the device's upstreams will take (issue 13): relay25's
 * max_message_size, lowered to the SIZE (RFC 1870) an upstream offered in an
 * earlier or pooled session (up_caps). sender: the envelope sender after
 * rewrite_sender, whose [route] may choose other upstreams; NULL: the device's
 * own. With a failover list the largest of theirs counts, and an upstream not
 * known yet, or without a limit, takes anything: the message may still go there. */
uint64_t prx_size_limit(const struct prx_session *s, const char *sender)
{
    const struct up_caps *caps = s->env ? up_pool_caps(s->env->pool) : NULL;
    const struct conf_device *d = s->dev;
    const struct conf_upstream *const *ups;
    const struct conf_route *rt;
    uint64_t lim = s->conf->max_message_size, most = 0;
    size_t n;

    if (!caps || !d || !d->up) {
        return lim;
    }
    if (sender && (rt = conf_route_for(s->conf, d, sender))) {
        d = &rt->cred;
    }
    ups = d->ups && d->nups ? d->ups : &d->up;
    n = d->ups && d->nups ? d->nups : 1;
    for (size_t i = 0; i < n; i++) {
        struct up_ehlo e;
        char where[300];

        up_where_of(ups[i], where, sizeof(where));
        if (up_caps_get(caps, where, &e) < 0 || !(e.ext & UP_EXT_SIZE) || e.size == 0) {
            return lim;
        }
        most = e.size > most ? e.size : most;
    }
    return most < lim ? most : lim;
}

/* ---- upstream callbacks ---- */

/* Sessions come ready from up_pool_acquire (prx_slot_ready): never called. */
static void prx_up_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    (void)arg, (void)err, (void)r, (void)detail;
}

/* No upstream session for this MAIL: queue the message when the device says
 * so and there is room, else answer the 4xx. */
static void prx_setup_failed(struct prx_session *s, int err, const char *where, const char *detail)
{
    char buf[700];
    size_t n = reply_upstream(buf, sizeof(buf), err, where, detail);

    s->up = NULL; /* it closes itself; its on_close drops our ref */
    if (s->txn->sink->can_queue(s, 1)) {
        buf[n > 2 ? n - 2 : n] = '\0';
        prx_go_local(s, buf);
        prx_reply(s, REPLY_MAIL_QUEUED_DOWN);
        prx_enter_state(s, PRX_STATE_TXN);
        prx_continue(s);
        return;
    }
    prx_log_message(s, "deferred", buf, n > 2 ? n - 2 : n);
    prx_send(s, buf, n);
    prx_txn_end(s);
    prx_continue(s);
}

/* Upstream's reply to MAIL (why: its text when 4xx). 0: do not go on reading. */
static int prx_mail_reply(struct prx_session *s, const struct up_reply *r, const char *why)
{
    if (r->code == 421 && s->up_reused) {
        /* a pooled session the upstream is closing: nothing was sent, try afresh */
        prx_drop_up(s);
        s->up_reused = 0;
        prx_start_mail(s, 0);
        return 0;
    }
    if (why && s->txn->sink->can_queue(s, 1)) {
        prx_go_local(s, why);
        prx_reply(s, REPLY_MAIL_QUEUED_TEMP);
        prx_enter_state(s, PRX_STATE_TXN);
        return 1;
    }
    if (r->code == 421) {
        /* RFC 5321 §3.8: upstream is closing its session, not ours. Passed on,
         * the device would take its own session for ended while we went on;
         * like Postfix's smtp client it is a 4xx for this transaction, and the
         * next MAIL gets a fresh upstream session. */
        char buf[700];
        size_t n = reply_upstream(buf, sizeof(buf), RELAY_E_REFUSED, up_where(s->up), why);

        prx_drop_up(s);
        prx_log_message(s, "deferred", buf, n > 2 ? n - 2 : n);
        prx_send(s, buf, n);
        prx_txn_end(s);
        return 1;
    }
    prx_send_up(s, r, REPLY_CMD_MAIL);
    if (r->code >= 200 && r->code < 300) {
        s->up_txn = 1;
        prx_enter_state(s, PRX_STATE_TXN);
    } else {
        prx_log_message(s, r->code >= 500 ? "bounced" : "deferred", r->text, r->len - 2);
        prx_txn_end(s);
    }
    return 1;
}

static void prx_rcpt_reply(struct prx_session *s, const struct up_reply *r, const char *why)
{
    struct prx_txn *t = s->txn;

    if (why && t->sink->can_queue(s, 0)) {
        prx_rcpt_queue(s, REPLY_RCPT_QUEUED_TEMP);
        return;
    }
    if (r->code >= 200 && r->code < 300) {
        t->nrcpt++;
        if (prx_rcpt_add(s, t->rcpt, 0) != 0) {
            t->nrcpt--;
            prx_reply(s, REPLY_NOMEM);
            prx_enter_state(s, PRX_STATE_TXN);
            return;
        }
    } else {
        char q[600];
        log_info(s->sid, "prx",
                 "qid=%016llx to=<%s> status=%s device=%s relay=%s addr=%s reply=\"%s\"",
                 (unsigned long long)t->qid, t->rcpt, r->code >= 500 ? "bounced" : "deferred",
                 s->dev ? s->dev->name : "-", s->up ? up_name(s->up) : "-",
                 s->up ? up_where(s->up) : "-", log_quote(r->text, r->len - 2, q, sizeof(q)));
    }
    prx_send_up(s, r, REPLY_CMD_RCPT);
    prx_enter_state(s, PRX_STATE_TXN);
}

/* Upstream's reply to DATA. 0: do not go on reading (our own RSET is out). */
static int prx_data_reply(struct prx_session *s, const struct up_reply *r, const char *why)
{
    struct prx_txn *t = s->txn;

    if (why && t->sink->can_queue(s, 0)) {
        prx_go_local(s, why);
        t->sink->data(s);
        return 1;
    }
    if (r->code == 354) {
        /* a sink that can queue keeps a spool copy of the body, so a later
         * 4xx can still be answered with 250 */
        if (t->sink->can_queue(s, 0) && prx_spool_open(s) != 0) {
            prx_drop_up(s);
            prx_txn_abort(s, REPLY_NOMEM);
            return 1;
        }
        prx_body_start(s);
        return 1;
    }
    if (r->code >= 300) {
        prx_log_message(s, r->code >= 500 ? "bounced" : "deferred", r->text, r->len - 2);
    }
    prx_send_up(s, r, REPLY_CMD_DATA);
    prx_txn_end(s);
    if (s->up) {
        /* keep upstream in step; its reply to our own RSET is not relayed */
        s->rset_silent = 1;
        prx_enter_state(s, PRX_STATE_RSET_WAIT);
        prx_up_check(s, up_rset(s->up));
        return 0;
    }
    return 1;
}

/* Upstream's verdict on the message. 0: do not go on reading. */
static int prx_dot_reply(struct prx_session *s, const struct up_reply *r, const char *why)
{
    struct prx_txn *t = s->txn;
    int ok = r->code >= 200 && r->code < 300;

    if (s->env->metrics) {
        metrics_observe(&s->env->metrics->upstream_delivery,
                        (double)(uv_now(s->env->loop) - t->dot_ms) / 1000.0);
    }
    if (t->spw && !s->closing) {
        /* tee: the spool copy decides what upstream did not take */
        if (why && t->sink->can_queue(s, 0)) {
            prx_go_local(s, why);
            prx_spool_commit(s, 0, 1);
            return 0;
        }
        s->up_txn = 0;
        if (ok && prx_count_queued(s, 1) > 0) {
            /* the rest, deferred at RCPT, goes to the queue; the client's 250
             * waits until that copy is on disk (a failure there is a 4xx) */
            prx_log_message(s, "sent", r->text, r->len - 2);
            prx_spool_commit(s, 1, 1);
            return 0;
        }
        /* upstream took it all, or refused the content for good: no copy */
        spool_writer_abort(t->spw);
        t->spw = NULL;
        s->refs--;
    }
    s->nmsg++;
    prx_log_message(s, ok ? "sent" : r->code >= 500 ? "bounced" : "deferred", r->text, r->len - 2);
    prx_send_up(s, r, REPLY_CMD_DOT);
    s->up_txn = 0; /* end of data closes the transaction upstream */
    if (s->closing && s->up) {
        up_quit(s->up);
        s->up = NULL;
    }
    prx_txn_end(s);
    return !s->closing;
}

static void prx_rset_reply(struct prx_session *s, const struct up_reply *r)
{
    if (!s->rset_silent) {
        prx_reply(s, REPLY_RSET);
    }
    s->rset_silent = 0;
    s->up_txn = 0;
    if (r->code < 200 || r->code >= 300) {
        prx_drop_up(s);
    }
    prx_enter_state(s, PRX_STATE_IDLE);
}

static void prx_up_reply(void *arg, const struct up_reply *r)
{
    struct prx_session *s = arg;
    char line[600];
    const char *why = NULL; /* a 4xx: the reason if the message is queued instead */
    int go = 1;

    if (s->closing && s->state != PRX_STATE_DOT_WAIT) {
        return;
    }
    if (r->code >= 400 && r->code < 500) {
        snprintf(line, sizeof(line), "%.*s", (int)(r->len - 2), r->text);
        why = line;
    }
    switch (s->state) {
    case PRX_STATE_MAIL_WAIT:
        go = prx_mail_reply(s, r, why);
        break;
    case PRX_STATE_RCPT_WAIT:
        prx_rcpt_reply(s, r, why);
        break;
    case PRX_STATE_DATA_WAIT:
        go = prx_data_reply(s, r, why);
        break;
    case PRX_STATE_DOT_WAIT:
        go = prx_dot_reply(s, r, why);
        break;
    case PRX_STATE_RSET_WAIT:
        prx_rset_reply(s, r);
        break;
    case PRX_STATE_PROXY:
    case PRX_STATE_TLS:
    case PRX_STATE_AUTH:
    case PRX_STATE_AUTH_WAIT:
    case PRX_STATE_REFUSED:
    case PRX_STATE_IDLE:
    case PRX_STATE_CONNECT:
    case PRX_STATE_TXN:
    case PRX_STATE_BODY:
    case PRX_STATE_SPOOL_WAIT:
    case PRX_STATE_CLOSING:
        return;
    }
    if (go) {
        prx_continue(s);
    }
}

/* on_upstream_failure = queue: upstream failed mid-transaction (why: the 4xx
 * text); the spool takes the message over and the pending command is answered
 * as if upstream had accepted it. */
static void prx_up_fail_queue(struct prx_session *s, const char *why)
{
    prx_go_local(s, why);
    switch (s->state) {
    case PRX_STATE_MAIL_WAIT:
        prx_reply(s, REPLY_MAIL_QUEUED_DOWN);
        prx_enter_state(s, PRX_STATE_TXN);
        break;
    case PRX_STATE_RCPT_WAIT:
        prx_rcpt_queue(s, REPLY_RCPT_QUEUED_DOWN);
        break;
    case PRX_STATE_DATA_WAIT:
        s->txn->sink->data(s);
        break;
    case PRX_STATE_DOT_WAIT:
        prx_spool_commit(s, 0, 1);
        return;
    default:
        s->bp = 0; /* TXN, BODY: go on reading into the spool only */
        break;
    }
    prx_continue(s);
}

static void prx_up_fail(void *arg, int err, const char *detail, int cmd_pending)
{
    struct prx_session *s = arg;
    struct prx_txn *t = s->txn;
    char buf[700];
    size_t n;
    int fallback;

    (void)cmd_pending;
    if (s->up_reused && s->state == PRX_STATE_MAIL_WAIT && !s->closing) {
        /* a pooled session died before answering MAIL: nothing was sent, try afresh */
        log_debug(s->sid, "prx", "event=reuse_failed error=%s retry=fresh", reply_err_name(err));
        s->up = NULL;
        s->up_reused = 0;
        s->up_txn = 0;
        prx_start_mail(s, 0);
        return;
    }
    s->up_txn = 0;
    if (s->env->metrics) {
        metrics_upstream_error(s->env->metrics, err);
    }
    /* in the body only while a spool copy is being written */
    fallback = t && !s->closing && t->sink->can_queue(s, 0) &&
               (s->state == PRX_STATE_TXN || s->state == PRX_STATE_MAIL_WAIT ||
                s->state == PRX_STATE_RCPT_WAIT || s->state == PRX_STATE_DATA_WAIT ||
                ((s->state == PRX_STATE_BODY || s->state == PRX_STATE_DOT_WAIT) && t->spw));

    n = reply_upstream(buf, sizeof(buf), err, s->up ? up_where(s->up) : "?", detail);
    if (t) {
        memcpy(t->upfail, buf, n + 1);
    }
    if (!fallback && (s->state == PRX_STATE_DOT_WAIT || s->state == PRX_STATE_BODY)) {
        prx_log_message(s, "deferred", buf, n - 2);
    }
    s->up = NULL;
    if (s->closing) {
        return;
    }
    if (fallback) {
        buf[n > 2 ? n - 2 : n] = '\0';
        prx_up_fail_queue(s, buf);
        return;
    }
    switch (s->state) {
    case PRX_STATE_PROXY:
    case PRX_STATE_TLS:
    case PRX_STATE_AUTH:
    case PRX_STATE_AUTH_WAIT:
    case PRX_STATE_IDLE:
    case PRX_STATE_REFUSED:
    case PRX_STATE_CLOSING:
    case PRX_STATE_CONNECT:
    case PRX_STATE_SPOOL_WAIT:
        return; /* nothing was in flight: the next MAIL opens a new session */
    case PRX_STATE_TXN:
        /* the transaction is gone upstream; tell the client at its next command */
        t->txn_lost = 1;
        return;
    case PRX_STATE_BODY:
        /* keep reading the client's body (paused or not) to answer at its end */
        t->body_err = PRX_BODY_UPSTREAM;
        s->bp = 0;
        break;
    case PRX_STATE_MAIL_WAIT:
    case PRX_STATE_RCPT_WAIT:
    case PRX_STATE_DATA_WAIT:
    case PRX_STATE_DOT_WAIT:
        prx_send(s, buf, n);
        prx_txn_end(s);
        break;
    case PRX_STATE_RSET_WAIT:
        if (!s->rset_silent) {
            prx_reply(s, REPLY_RSET);
        }
        s->rset_silent = 0;
        prx_txn_end(s);
        break;
    }
    prx_continue(s);
}

static void prx_up_drain(void *arg)
{
    struct prx_session *s = arg;
    if (s->bp && !s->closing) {
        s->bp = 0;
        prx_continue(s);
    }
}

static void prx_up_close(void *arg)
{
    prx_unref_env(arg);
}

static const struct up_cbs prx_up_cbs = {
    .on_ready = prx_up_ready,
    .on_reply = prx_up_reply,
    .on_fail = prx_up_fail,
    .on_drain = prx_up_drain,
    .on_close = prx_up_close,
};

/* What upstream gets of the vetted parameters, by its EHLO keywords. */
static void prx_params_for_up(struct prx_session *s, char *out, size_t cap)
{
    unsigned ext = s->up ? up_ext(s->up) : 0;
    const char *v;
    size_t vl, o = 0;
    size_t pl = strlen(s->txn->mail_params);

    out[0] = '\0';
    if ((ext & UP_EXT_SIZE) && prx_cmd_param(s->txn->mail_params, pl, "SIZE", &v, &vl)) {
        o += (size_t)snprintf(out + o, cap - o, "SIZE=%.*s", (int)vl, v);
    }
    if ((ext & UP_EXT_8BITMIME) && prx_cmd_param(s->txn->mail_params, pl, "BODY", &v, &vl) &&
        o < cap) {
        o += (size_t)snprintf(out + o, cap - o, "%sBODY=%.*s", o ? " " : "", (int)vl, v);
    }
    /* RFC 3461 §4.3, §4.4 and RFC 6531 §3.4: passed on as the device sent them
     * (prx_send_mail refuses the MAIL when upstream lacks the extension) */
    if ((ext & UP_EXT_DSN) && prx_cmd_param(s->txn->mail_params, pl, "RET", &v, &vl) && o < cap) {
        o += (size_t)snprintf(out + o, cap - o, "%sRET=%.*s", o ? " " : "", (int)vl, v);
    }
    if ((ext & UP_EXT_DSN) && prx_cmd_param(s->txn->mail_params, pl, "ENVID", &v, &vl) && o < cap) {
        o += (size_t)snprintf(out + o, cap - o, "%sENVID=%.*s", o ? " " : "", (int)vl, v);
    }
    if ((ext & UP_EXT_SMTPUTF8) && s->txn->smtputf8 && o < cap) {
        snprintf(out + o, cap - o, "%sSMTPUTF8", o ? " " : "");
    }
}

/* What the device used that this upstream session does not offer (EHLO
 * offered it from what the upstream said before: up_caps), or NULL. rcpt: the
 * RCPT's parameters, else MAIL's. */
static const char prx_lacks_dsn[] = "DSN (RFC 3461)";

static const char *prx_up_lacks(const struct prx_session *s, int rcpt)
{
    unsigned ext = up_ext(s->up);

    if (rcpt) {
        return s->txn->rparams[0] && !(ext & UP_EXT_DSN) ? prx_lacks_dsn : NULL;
    }
    /* SMTPUTF8 first: queueing would not help it (the queue would bounce it) */
    if (s->txn->smtputf8 && !(ext & UP_EXT_SMTPUTF8)) {
        return "SMTPUTF8 (RFC 6531)";
    }
    return s->txn->dsn_mail && !(ext & UP_EXT_DSN) ? prx_lacks_dsn : NULL;
}

/* Whether the upstream session s->up carries d's upstream and credentials: a
 * route may change them between two transactions of one inbound session. */
static int prx_up_fits(const struct prx_session *s, const struct conf_device *d)
{
    if (s->up_dev == d) {
        return 1;
    }
    return d->auth == CONF_AUTH_PASSWORD && s->up_dev && s->up_dev->auth == CONF_AUTH_PASSWORD &&
           up_session_same(s->up, d->up, d->user, d->password);
}

/* MAIL upstream on the session s->up, which is ready and idle. */
static void prx_send_mail(struct prx_session *s)
{
    char params[PRX_PARAMS_MAX];
    const char *lacks = prx_up_lacks(s, 0);

    if (lacks && lacks == prx_lacks_dsn && s->txn->sink->can_queue(s, 1)) {
        /* on_upstream_failure = queue: the spool keeps the parameters and the
         * queue writes the notices an upstream without DSN would not */
        char why[400];

        snprintf(why, sizeof(why), "upstream %s does not offer DSN", up_where(s->up));
        prx_up_release(s); /* clean: back to the pool */
        prx_go_local(s, why);
        prx_reply(s, REPLY_MAIL_QUEUED_DSN);
        prx_enter_state(s, PRX_STATE_TXN);
        prx_continue(s);
        return;
    }
    if (lacks) {
        /* passed on without them, the device's notices would silently not come */
        char buf[500];
        size_t n = reply_upstream_lacks(buf, sizeof(buf), up_where(s->up), lacks);

        prx_log_message(s, "deferred", buf, n > 2 ? n - 2 : n);
        prx_send(s, buf, n);
        prx_txn_end(s); /* the clean session goes back to the pool */
        prx_continue(s);
        return;
    }
    prx_enter_state(s, PRX_STATE_MAIL_WAIT);
    prx_params_for_up(s, params, sizeof(params));
    prx_up_check(s, up_mail(s->up, s->txn->from, params));
}

/* up_pool_acquire's answer: a ready session for this MAIL, or why there is
 * none (every connection stayed busy, or no upstream of the list could be
 * reached or logged in to). */
static void prx_slot_ready(struct up_acquire *req, struct up_session *up, int err,
                           const struct up_reply *r, const char *detail)
{
    struct prx_session *s = req->arg;

    (void)r;
    if (!up) {
        if (err == RELAY_E_BUSY) {
            log_info(s->sid, "prx", "event=slot_timeout relay=%s max_connections=%u waited=%us",
                     req->where, req->up->max_connections, req->wait_seconds);
        }
        prx_setup_failed(s, err, req->where, detail);
        return;
    }
    s->up = up;
    s->refs++;
    s->up_reused = req->reused;
    if (!req->reused && s->env->metrics) {
        metrics_observe(&s->env->metrics->upstream_setup, (double)req->setup_ms / 1000.0);
    }
    prx_send_mail(s);
}

/* An upstream session for this MAIL: the one kept from the last transaction
 * when it fits, else one from the pool (fresh: a pooled one just turned out
 * dead before MAIL was accepted, so a new one, ahead of the line). */
static void prx_start_mail(struct prx_session *s, int use_pool)
{
    const struct conf_device *d = s->txn->route ? &s->txn->route->cred : s->dev;
    int r;

    if (s->up && !prx_up_fits(s, d)) {
        /* another identity: hand the clean session to the pool for whoever fits it */
        prx_up_release(s);
        prx_drop_up(s); /* closed without QUIT: no late reply can reach this session */
    }
    if (s->up && up_idle(s->up)) {
        prx_send_mail(s);
        return;
    }
    prx_drop_up(s);
    s->up_dev = d;
    if (!s->env->pool) {
        r = RELAY_E_NOMEM; /* the server always has one */
    } else if (!use_pool) {
        r = up_pool_acquire_fresh(s->env->pool, &s->upq);
    } else {
        memset(&s->upq, 0, sizeof(s->upq));
        s->upq.dev = d;
        s->upq.conf = s->conf;
        s->upq.oauth = up_oauth_set_find(s->env->oauth, d); /* NULL unless auth is a token */
        s->upq.sid = s->sid;
        s->upq.wait_seconds = s->conf->command_timeout;
        s->upq.cbs = &prx_up_cbs;
        s->upq.arg = s;
        s->upq.on_done = prx_slot_ready;
        r = up_pool_acquire(s->env->pool, &s->upq);
    }
    if (r < 0) {
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    prx_enter_state(s, PRX_STATE_CONNECT);
}

/* Relay: upstream's own verdict for MAIL, each RCPT and the end of data. */
static void prx_relay_mail(struct prx_session *s)
{
    prx_start_mail(s, 1);
}

static void prx_relay_rcpt(struct prx_session *s)
{
    const char *lacks = s->up ? prx_up_lacks(s, 1) : NULL;

    if (lacks && s->txn->sink->can_queue(s, 0)) {
        prx_rcpt_queue(s, REPLY_RCPT_QUEUED_DSN); /* the spool copy keeps its NOTIFY/ORCPT */
        return;
    }
    if (lacks) {
        char buf[500];
        size_t n = reply_upstream_lacks(buf, sizeof(buf), up_where(s->up), lacks);
        prx_send(s, buf, n);
        return;
    }
    prx_enter_state(s, PRX_STATE_RCPT_WAIT);
    prx_up_check(s, up_rcpt(s->up, s->txn->rcpt, s->txn->rparams));
}

static void prx_relay_data(struct prx_session *s)
{
    if (s->txn->sink->can_queue(s, 0) && prx_count_queued(s, 0) == 0) {
        /* upstream deferred every recipient: all of it goes to the spool */
        prx_go_local(s, "upstream deferred every recipient");
        s->txn->sink->data(s);
        return;
    }
    prx_enter_state(s, PRX_STATE_DATA_WAIT);
    prx_up_check(s, up_data(s->up));
}

/* on_upstream_failure = queue: a temporary failure spools the message, when
 * need_room only while the spool has room. */
static int prx_can_queue(const struct prx_session *s, int need_room)
{
    return !need_room || prx_spool_room(s, 0);
}

static void prx_relay_body_done(struct prx_session *s)
{
    struct prx_txn *t = s->txn;
    char term[8];
    size_t n;

    if (t->spw && t->spool_err) {
        if (!s->up || prx_count_queued(s, 1) > 0) {
            /* recipients promised to the queue cannot be served: refuse it all (4xx) */
            t->body_err = PRX_BODY_SPOOL;
            prx_drop_up(s);
            prx_body_refuse(s);
            return;
        }
        /* tee: the spool copy failed; upstream alone decides */
        spool_writer_abort(t->spw);
        t->spw = NULL;
        s->refs--;
    }
    n = data_enc_finish(&t->enc, term);
    free(t->bodybuf);
    t->bodybuf = NULL;
    t->dot_ms = uv_now(s->env->loop);
    prx_enter_state(s, PRX_STATE_DOT_WAIT);
    /* the verdict arrives via prx_up_reply / prx_up_fail */
    int r = up_body(s->up, term, n);
    prx_up_check(s, r < 0 ? r : up_data_end(s->up));
}

const struct prx_sink prx_sink_relay = {
    .name = "relay",
    .relays = 1,
    .mail = prx_relay_mail,
    .rcpt = prx_relay_rcpt,
    .data = prx_relay_data,
    .can_queue = prx_no_queue,
    .body_done = prx_relay_body_done,
};

const struct prx_sink prx_sink_relay_queue = {
    .name = "relay_queue",
    .relays = 1,
    .mail = prx_relay_mail,
    .rcpt = prx_relay_rcpt,
    .data = prx_relay_data,
    .can_queue = prx_can_queue,
    .body_done = prx_relay_body_done,
};
