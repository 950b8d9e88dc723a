/* prx_txn: one mail transaction (RFC 5321 §3.3) from MAIL to its final reply:
 * prx_txn_begin chooses its delivery sink once, prx_txn_end alone frees it and
 * returns the session to IDLE. Owns the envelope, the accepted recipients and
 * the message's final log line. */
#include "proxy/prx_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "proxy/prx_cmd.h"
#include "spool/spool.h"
#include "spool/spool_writer.h"
#include "upstream/up_caps.h"
#include "upstream/up_pool.h"
#include "upstream/up_queue.h"
#include "upstream/up_session.h"

/* The SIZE= of vetted MAIL parameters, 0 without one. */
unsigned long long prx_param_size(const char *params)
{
    const char *v;
    size_t vl;

    if (!prx_cmd_param(params, strlen(params), "SIZE", &v, &vl)) {
        return 0;
    }
    return strtoull(v, NULL, 10);
}

/* The vetted MAIL opens a transaction; its delivery path is chosen here, once. */
void prx_txn_begin(struct prx_session *s, const char *from, const char *params)
{
    struct prx_txn *t = calloc(1, sizeof(*t));

    if (!t) {
        prx_reply(s, REPLY_NOMEM);
        return;
    }
    s->txn = t;
    snprintf(t->from, sizeof(t->from), "%s", from);
    snprintf(t->mail_params, sizeof(t->mail_params), "%s", params);
    {
        const char *v;
        size_t vl, pl = strlen(params);
        t->smtputf8 = prx_cmd_param(params, pl, "SMTPUTF8", &v, &vl);
        t->dsn_mail = prx_cmd_param(params, pl, "RET", &v, &vl) ||
                      prx_cmd_param(params, pl, "ENVID", &v, &vl);
    }
    t->hdr_eol = 2; /* the body starts at the beginning of a line */
    /* policy and rate limits judge what the device sent; upstream sees the rewrite;
     * the null sender stays: bounces must not bounce (RFC 5321 §4.5.5) */
    if (s->dev->rewrite_sender && t->from[0]) {
        memcpy(t->orig_from, t->from, sizeof(t->orig_from));
        snprintf(t->from, sizeof(t->from), "%s", s->dev->rewrite_sender);
        t->rw_from = 1;
    }
    t->route = conf_route_for(s->conf, s->dev, t->from);
    t->qid = spool_new_id();
    if (!s->env->queue && (t->route ? t->route->cred.up : s->dev->up)->type == CONF_UP_GRAPH) {
        /* a reload added Graph while the spool was off at start: no place for the
         * body (the reload logged "restart to use it"); never SMTP to Graph's host */
        log_warn(s->sid, "prx", "qid=%016llx event=graph_without_spool",
                 (unsigned long long)t->qid);
        prx_txn_abort(s, REPLY_SPOOL_FAILED);
        return;
    }
    if (s->env->queue && s->dev->mode == CONF_MODE_SPOOL) {
        t->sink = &prx_sink_spool;
    } else if (s->env->queue &&
               (t->route ? t->route->cred.up : s->dev->up)->type == CONF_UP_GRAPH) {
        t->sink = &prx_sink_graph; /* passthrough to Graph (the spool's tmp/ holds the body) */
    } else if (s->env->queue && s->dev->on_failure == CONF_ON_FAILURE_QUEUE) {
        t->sink = &prx_sink_relay_queue;
    } else {
        t->sink = &prx_sink_relay;
    }
    log_debug(s->sid, "prx", "qid=%016llx event=mail sink=%s", (unsigned long long)t->qid,
              t->sink->name);
    t->sink->mail(s);
}

/* The transaction is over (delivered, refused or aborted): the one place a
 * transaction is freed, and the session is back in IDLE. A spool copy not yet
 * committed is dropped. */
void prx_txn_end(struct prx_session *s)
{
    struct prx_txn *t = s->txn;

    if (t) {
        s->txn = NULL;
        if (t->spw) {
            spool_writer_abort(t->spw);
            s->refs--; /* the writer's hold; the session is alive (this is its code) */
        }
        if (t->gw) {
            prx_graph_abort(t->gw);
            s->refs--; /* the same for the Graph sink's file */
        }
        free(t->hbuf);
        free(t->bodybuf);
        for (size_t i = 0; t->rpar && i < t->nrcpts; i++) {
            free(t->rpar[i]);
        }
        free(t->rpar);
        free(t->rcpts);
        free(t->rq);
        free(t);
    }
    prx_enter_state(s, PRX_STATE_IDLE);
}

/* A transaction ends in a reply of our own (e.g. 451 4.3.0 out of memory). */
void prx_txn_abort(struct prx_session *s, enum reply_id id)
{
    prx_reply(s, id);
    prx_txn_end(s);
}

/* Records an accepted recipient: queued 1 for the spool, 0 taken by upstream. */
int prx_rcpt_add(struct prx_session *s, const char *addr, int queued)
{
    if (s->txn->nrcpts == s->txn->rcap) {
        size_t ncap = s->txn->rcap ? s->txn->rcap * 2 : 4;
        void *a = realloc(s->txn->rcpts, ncap * sizeof(*s->txn->rcpts));
        unsigned char *b;
        if (!a) {
            return -1;
        }
        s->txn->rcpts = a;
        if (!(b = realloc(s->txn->rq, ncap))) {
            return -1;
        }
        s->txn->rq = b;
        if (!(a = realloc(s->txn->rpar, ncap * sizeof(*s->txn->rpar)))) {
            return -1;
        }
        s->txn->rpar = a;
        s->txn->rcap = ncap;
    }
    s->txn->rpar[s->txn->nrcpts] = NULL;
    if (s->txn->rparams[0] && !(s->txn->rpar[s->txn->nrcpts] = strdup(s->txn->rparams))) {
        return -1;
    }
    snprintf(s->txn->rcpts[s->txn->nrcpts], PRX_PATH_MAX, "%s", addr);
    s->txn->rq[s->txn->nrcpts++] = (unsigned char)queued;
    return 0;
}

/* What the device's EHLO offers beyond the fixed keywords: DSN and SMTPUTF8
 * (REPLY_EHLO_*). Spool mode always: relay25 stores the parameters and writes
 * the notices itself, and refuses an SMTPUTF8 message at delivery with a bounce
 * when the upstream lacks it. Passthrough only what the device's first upstream
 * offered in its last EHLO (remembered by the pool, up_caps): nothing before a
 * first session to it. Before AUTH names the device, only what every device
 * would offer. */
static unsigned prx_offer_dev(const struct prx_session *s, const struct conf_device *d)
{
    struct up_ehlo e;
    unsigned o = 0;

    if (s->env->queue && d->mode == CONF_MODE_SPOOL) {
        return REPLY_EHLO_DSN | REPLY_EHLO_SMTPUTF8;
    }
    if (up_caps_of(up_pool_caps(s->env->pool), d->nups ? d->ups[0] : d->up, &e)) {
        o |= (e.ext & UP_EXT_DSN) ? REPLY_EHLO_DSN : 0;
        o |= (e.ext & UP_EXT_SMTPUTF8) ? REPLY_EHLO_SMTPUTF8 : 0;
    }
    return o;
}

unsigned prx_offer(const struct prx_session *s)
{
    unsigned o = REPLY_EHLO_DSN | REPLY_EHLO_SMTPUTF8;

    if (s->dev) {
        return prx_offer_dev(s, s->dev);
    }
    for (size_t i = 0; i < s->conf->ndevices && o; i++) {
        o &= prx_offer_dev(s, &s->conf->devices[i]);
    }
    return s->conf->ndevices ? o : 0;
}

/* How many recipients are for the spool (queued 1) or upstream's (0). */
size_t prx_count_queued(const struct prx_session *s, int queued)
{
    size_t n = 0;
    for (size_t i = 0; i < s->txn->nrcpts; i++) {
        n += s->txn->rq[i] == queued;
    }
    return n;
}

/* on_upstream_failure = queue: upstream trouble turns this transaction into a
 * spooled one; every recipient accepted so far goes to the spool. */
void prx_go_local(struct prx_session *s, const char *why)
{
    struct prx_txn *t = s->txn;
    char q[600];

    log_info(s->sid, "prx", "qid=%016llx event=queue_fallback reason=\"%s\"",
             (unsigned long long)t->qid, log_quote(why, strlen(why), q, sizeof(q)));
    t->sink = &prx_sink_spool;
    for (size_t i = 0; i < t->nrcpts; i++) {
        t->rq[i] = 1;
    }
    prx_drop_up(s);
}

/* Already spooled: nothing to fall back to. */
int prx_no_queue(const struct prx_session *s, int need_room)
{
    (void)s;
    (void)need_room;
    return 0;
}

/* The message's final log line (one per message, Postfix-like) and its counters. */
void prx_log_message(struct prx_session *s, const char *status, const char *reply, size_t rlen)
{
    char q[600];
    struct metrics *m = s->env->metrics;

    if (m) {
        if (strcmp(status, "sent") == 0) {
            m->messages_sent++;
            m->bytes_total += s->txn->dec.size;
            m->recipients_total += s->txn->nrcpt;
        } else if (strcmp(status, "deferred") == 0) {
            m->messages_deferred++;
        } else if (strcmp(status, "bounced") == 0) {
            m->messages_bounced++;
        } else {
            m->messages_aborted++;
        }
    }
    log_info(s->sid, "prx",
             "qid=%016llx from=<%s> nrcpt=%u size=%llu device=%s user=%s%s%s%s relay=%s "
             "addr=%s status=%s reply=\"%s\"",
             (unsigned long long)s->txn->qid, s->txn->from, s->txn->nrcpt,
             (unsigned long long)s->txn->dec.size, s->dev ? s->dev->name : "-",
             s->txn->route ? s->txn->route->cred.user : (s->dev ? s->dev->user : "-"),
             s->txn->route ? " route=" : "", s->txn->route ? s->txn->route->cred.name : "",
             s->txn->rw_from ? " rewrite=from" : "", s->up ? up_name(s->up) : "-",
             s->up ? up_where(s->up) : "-", status, log_quote(reply, rlen, q, sizeof(q)));
}
