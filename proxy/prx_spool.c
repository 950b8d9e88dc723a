/* prx_spool: the spool sink (mode = spool, and the copy kept for
 * on_upstream_failure = queue): replies of our own, the body written to the
 * spool and committed with its envelope at the end; the client's 250 waits
 * until the message is on disk. */
#include "proxy/prx_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "proxy/prx_cmd.h"
#include "spool/spool.h"
#include "spool/spool_writer.h"
#include "upstream/up_queue.h"

/* max_spool_size: would `more` bytes still fit? */
int prx_spool_room(const struct prx_session *s, uint64_t more)
{
    uint64_t max = s->conf->max_spool_size;
    return max == 0 || up_queue_bytes(s->env->queue) + more <= max;
}

/* on_upstream_failure = queue: the pending RCPT is accepted for the spool;
 * reply says why (upstream deferred it, or is unavailable). */
void prx_rcpt_queue(struct prx_session *s, enum reply_id reply)
{
    if (prx_rcpt_add(s, s->txn->rcpt, 1) != 0) {
        prx_reply(s, REPLY_NOMEM);
    } else {
        s->txn->nrcpt++;
        prx_reply(s, reply);
    }
    prx_enter_state(s, PRX_STATE_TXN);
}

static void prx_spool_drain(void *arg)
{
    struct prx_session *s = arg;
    if (s->txn && s->txn->bp_spool && !s->closing) {
        s->txn->bp_spool = 0;
        prx_continue(s);
    }
}

static void prx_spool_done(void *arg, int err, uint64_t size)
{
    struct prx_session *s = arg;
    char buf[300], q[300];
    const char *text = buf;
    size_t n;
    int reply = s->txn->reply_after_commit && !s->closing && !s->client_gone;

    s->txn->spw = NULL;
    if (err == 0) {
        up_queue_add(s->env->queue, s->txn->qid, size);
        s->nmsg++;
        log_info(s->sid, "prx", "qid=%016llx from=<%s> nrcpt=%zu size=%llu device=%s status=queued",
                 (unsigned long long)s->txn->qid, s->txn->from, s->txn->nrcpts,
                 (unsigned long long)size, s->dev ? s->dev->name : "-");
        n = reply_queued(buf, sizeof(buf), (unsigned long long)s->txn->qid);
    } else {
        enum reply_id id = err == UV_ENOSPC || err == -EDQUOT || err == UV_EFBIG
                               ? REPLY_SPOOL_FULL
                               : REPLY_SPOOL_FAILED;
        text = reply_canned(id, &n);
        log_err(s->sid, "prx", "qid=%016llx event=spool_failed error=\"%s\" status=deferred",
                (unsigned long long)s->txn->qid, log_quote(uv_strerror(err), 100, q, sizeof(q)));
        if (s->env->metrics) {
            s->env->metrics->messages_deferred++;
        }
    }
    if (reply) {
        prx_send(s, text, n);
    }
    if (s->state == PRX_STATE_SPOOL_WAIT) {
        prx_txn_end(s);
        prx_continue(s);
    }
    prx_unref_env(s); /* the writer's hold */
}

static const struct spool_writer_cbs prx_spool_cbs = {
    .on_drain = prx_spool_drain,
    .on_done = prx_spool_done,
};

/* Starts writing this message to the spool (alongside upstream when tee). */
int prx_spool_open(struct prx_session *s)
{
    s->txn->spw =
        spool_writer_new(s->env->spool, s->conf->spool_dir, s->txn->qid, &prx_spool_cbs, s);
    if (!s->txn->spw) {
        return -1;
    }
    s->refs++;
    return 0;
}

/* The body is complete: commit it with all recipients, or only those upstream
 * did not take. reply_after: the client's DATA reply waits for the result. */
void prx_spool_commit(struct prx_session *s, int only_queued, int reply_after)
{
    struct spool_env env;
    char(*list)[SPOOL_ADDR_MAX] = NULL;
    char **dsn = NULL;
    size_t n = 0;
    const char *v;
    size_t vl;

    memset(&env, 0, sizeof(env));
    env.created = (uint64_t)time(NULL);
    snprintf(env.device, sizeof(env.device), "%s", s->dev->name);
    snprintf(env.user, sizeof(env.user), "%s",
             s->txn->route ? s->txn->route->cred.user : s->dev->user);
    snprintf(env.route, sizeof(env.route), "%s", s->txn->route ? s->txn->route->cred.name : "");
    snprintf(env.client, sizeof(env.client), "%s", s->ip);
    snprintf(env.helo, sizeof(env.helo), "%s", s->helo);
    if (prx_cmd_param(s->txn->mail_params, strlen(s->txn->mail_params), "BODY", &v, &vl)) {
        snprintf(env.body, sizeof(env.body), "%.*s", (int)vl, v);
    }
    snprintf(env.from, sizeof(env.from), "%s", s->txn->from);
    /* RFC 3461 and RFC 6531 parameters as the device sent them: the queue
     * passes them on, or honours them in its own notices */
    if (prx_cmd_param(s->txn->mail_params, strlen(s->txn->mail_params), "RET", &v, &vl)) {
        snprintf(env.ret, sizeof(env.ret), "%.*s", (int)vl, v);
    }
    if (prx_cmd_param(s->txn->mail_params, strlen(s->txn->mail_params), "ENVID", &v, &vl)) {
        snprintf(env.envid, sizeof(env.envid), "%.*s", (int)vl, v);
    }
    env.smtputf8 = s->txn->smtputf8;
    list = malloc((s->txn->nrcpts ? s->txn->nrcpts : 1) * sizeof(*list));
    dsn = calloc(s->txn->nrcpts ? s->txn->nrcpts : 1, sizeof(*dsn));
    for (size_t i = 0; list && dsn && i < s->txn->nrcpts; i++) {
        if (!only_queued || s->txn->rq[i]) {
            dsn[n] = s->txn->rpar ? s->txn->rpar[i] : NULL;
            memcpy(list[n++], s->txn->rcpts[i], SPOOL_ADDR_MAX);
        }
    }
    if (!dsn) {
        free(list);
        list = NULL;
    }
    env.rcpt = list;
    env.rdsn = dsn; /* borrowed strings: env is not spool_env_free'd */
    env.nrcpt = n;
    s->txn->reply_after_commit = reply_after;
    prx_enter_state(s, PRX_STATE_SPOOL_WAIT);
    if (!list || n == 0) {
        spool_writer_abort(s->txn->spw);
        s->txn->spw = NULL;
        free(list);
        free(dsn);
        prx_spool_done(s, UV_ENOMEM, 0); /* drops the writer's hold */
        return;
    }
    spool_writer_commit(s->txn->spw, &env); /* formats env at once: list can go */
    free(list);
    free(dsn);
}

/* DATA for a spool-only transaction: 354 from us. */
static void prx_data_local(struct prx_session *s)
{
    if (s->txn->nrcpts == 0) {
        prx_reply(s, REPLY_NO_VALID_RCPT);
        return;
    }
    if (prx_spool_open(s) != 0) {
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    prx_body_start(s);
}

/* ---- the sink ---- */

/* Spool: every reply is ours, the message is committed to disk at the end. */
static void prx_spool_mail(struct prx_session *s)
{
    if (!prx_spool_room(s, prx_param_size(s->txn->mail_params))) {
        prx_reply(s, REPLY_SPOOL_FULL);
        prx_txn_end(s);
        return;
    }
    prx_reply(s, REPLY_MAIL_OK);
    prx_enter_state(s, PRX_STATE_TXN);
}

static void prx_spool_rcpt(struct prx_session *s)
{
    if (prx_rcpt_add(s, s->txn->rcpt, 1) != 0) {
        prx_reply(s, REPLY_NOMEM);
        return;
    }
    s->txn->nrcpt++;
    prx_reply(s, REPLY_RCPT_OK);
}

static void prx_spool_body_done(struct prx_session *s)
{
    struct prx_txn *t = s->txn;

    if (t->spool_err) {
        /* recipients promised to the queue cannot be served: refuse it all (4xx) */
        t->body_err = PRX_BODY_SPOOL;
        prx_drop_up(s);
        prx_body_refuse(s);
        return;
    }
    free(t->bodybuf);
    t->bodybuf = NULL;
    prx_spool_commit(s, 0, 1);
}

const struct prx_sink prx_sink_spool = {
    .name = "spool",
    .relays = 0,
    .mail = prx_spool_mail,
    .rcpt = prx_spool_rcpt,
    .data = prx_data_local,
    .can_queue = prx_no_queue,
    .body_done = prx_spool_body_done,
};
