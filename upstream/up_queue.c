/* up_queue: the delivery scheduler for spooled messages: jobs, attempts with a
 * session from up_pool and one transaction through up_send, backoff, failover,
 * and results recorded through spool/ (the report itself is up_bounce's). File
 * work runs in libuv's thread pool as plain POSIX code. While a job is active only
 * its own callbacks touch it. RFC 5321 §4.5.4.1 (retry strategy). */
#include "upstream/up_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/dsn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "spool/spool.h"
#include "upstream/up_bounce.h"
#include "upstream/up_caps.h"
#include "upstream/up_graph.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_send.h"
#include "upstream/up_session.h"

#define UPQ_MAX_BUSY 64u             /* jobs preparing or delivering at once */
#define UPQ_PATH_MAX 4096u           /* <spool_dir>/q/<qid>.msg */
#define UPQ_HEADERS_MAX (64u * 1024) /* original headers quoted in a bounce */
#define UPQ_FULL_MAX (1024u * 1024)  /* RET=FULL: larger messages are returned as headers */

enum upq_rcpt {
    UPQ_R_PENDING = 0,
    UPQ_R_ACCEPTED, /* RCPT accepted in this attempt */
    UPQ_R_OK,       /* delivered (now or before) */
    UPQ_R_FAILED,   /* permanent failure (now or before) */
    UPQ_R_NEW_OK,   /* delivered in this attempt: to record */
    UPQ_R_NEW_FAILED,
};

enum upq_step {
    UPQ_IDLE,
    UPQ_PREPARE, /* work: read .env and .done */
    UPQ_CONNECT, /* waiting for a session from the pool (a slot, then set-up) */
    UPQ_SEND,    /* the transaction runs (up_send) */
    UPQ_RECORD,  /* work: record results, remove / move / bounce */
};

struct upq_job {
    struct upq_job *prev, *next;
    struct up_queue *q;
    uint64_t qid;
    uint64_t size;
    uint64_t since; /* unix time the job was created or found */
    unsigned attempts;
    uint64_t next_ms;
    size_t upidx; /* position in the device's failover list */
    size_t tried; /* upstreams tried since the last backoff */
    enum upq_step step;
    int gone; /* the files disappeared (deleted by `queue delete`) */

    /* an attempt */
    struct conf *conf; /* held during an attempt */
    const struct conf_device *dev;
    const struct conf_upstream *up;
    struct spool_env env;
    unsigned char *rstate;
    /* per recipient: attempts so far (from defer/<qid>) and this attempt's temporary
     * reply, for its defer record */
    struct spool_defer *rdefer;
    /* upstream's final 2xx reply in this attempt (malloc'd), for the log */
    char *okreply;
    /* before the next attempt, when this one leaves some recipient pending */
    uint64_t delay_ms;
    char **rreply;          /* failure reply per recipient (malloc'd), for .done and the bounce */
    int temp_fail;          /* this attempt ended in a temporary failure */
    int reused;             /* the session came from the pool */
    int perm_all;           /* a permanent failure for every pending recipient */
    struct up_acquire acq;  /* asking the pool for a session */
    struct up_send *tx;     /* the transaction, while step is UPQ_SEND */
    const char **sendv;     /* the recipients sent in this attempt (pending ones) */
    const char **sendp;     /* their RCPT parameters (RFC 3461 NOTIFY=, ORCPT=) or NULL */
    int up_dsn;             /* this attempt's upstream offers DSN: it sends the notices */
    char notice_reply[600]; /* upstream's 250 to the end of data, for a relayed notice */
    size_t *sendi;          /* their index in env.rcpt */
    size_t nsend;
    char *msgpath;

    /* type = graph */
    struct up_graph *graph; /* the delivery, while step is UPQ_SEND */
    unsigned retry_after;   /* seconds Graph asked us to wait (Retry-After) */
    uv_work_t work;
    char lasterr[600]; /* this attempt's error */
    char *prev_err;    /* the last attempt's error (malloc'd), for the expiry reason */
    /* results of the record work */
    int finished; /* no pending recipient left: the files are gone (or moved) */
    uint64_t bounce_qid, bounce_size;
    uint64_t found_size; /* .msg size read by the prepare work (0: unknown) */
    char errmsg[4400];
};

struct up_queue {
    uv_loop_t *loop;
    struct conf *conf;
    char *spool_dir; /* a copy: the scan runs in the thread pool while a reload may swap conf */
    struct metrics *m;
    struct upq_job *head;
    size_t njobs;
    uint64_t bytes;
    unsigned busy; /* jobs out of UPQ_IDLE */
    uv_timer_t timer;
    uv_work_t scan;
    int scanning, rescan;
    uint64_t *scan_ids;
    uint64_t *scan_sizes;
    size_t scan_n;
    int closing;
    struct up_pool *pool;       /* reuse of authenticated sessions, may be NULL */
    struct up_oauth_set *oauth; /* token providers for auth = xoauth2, may be NULL */
    unsigned pending_handles;   /* timer */
    void (*done)(void *);
    void *done_arg;
};

static void upq_schedule(struct up_queue *q);
static void upq_attempt_end(struct upq_job *j);
static const struct up_cbs upq_up_cbs;
static const struct up_send_cbs upq_send_cbs;

static uint64_t upq_now_unix(void)
{
    return (uint64_t)time(NULL);
}

/* ---- jobs ---- */

static struct upq_job *upq_find(struct up_queue *q, uint64_t qid)
{
    for (struct upq_job *j = q->head; j; j = j->next) {
        if (j->qid == qid) {
            return j;
        }
    }
    return NULL;
}

static struct upq_job *upq_job_add(struct up_queue *q, uint64_t qid, uint64_t size)
{
    struct upq_job *j;

    if ((j = upq_find(q, qid))) {
        j->next_ms = uv_now(q->loop);
        return j;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        log_err(qid, "queue", "qid=%016" PRIx64 " event=add error=\"out of memory\"", qid);
        return NULL;
    }
    j->q = q;
    j->qid = qid;
    j->size = size;
    j->since = (uint64_t)time(NULL);
    j->next_ms = uv_now(q->loop);
    j->next = q->head;
    if (q->head) {
        q->head->prev = j;
    }
    q->head = j;
    q->njobs++;
    q->bytes += size;
    return j;
}

static void upq_attempt_free(struct upq_job *j)
{
    if (j->rreply) {
        for (size_t i = 0; i < j->env.nrcpt; i++) {
            free(j->rreply[i]);
        }
    }
    free(j->rreply);
    j->rreply = NULL;
    spool_defer_free(j->rdefer, j->env.nrcpt);
    j->rdefer = NULL;
    free(j->okreply);
    j->okreply = NULL;
    free(j->rstate);
    j->rstate = NULL;
    spool_env_free(&j->env);
    free(j->sendv);
    free(j->sendp);
    free(j->sendi);
    free(j->msgpath);
    j->sendv = NULL;
    j->sendp = NULL;
    j->sendi = NULL;
    j->msgpath = NULL;
    j->nsend = 0;
    if (j->conf) {
        conf_release(j->conf);
        j->conf = NULL;
    }
    j->dev = NULL;
    j->up = NULL;
}

static void upq_job_free(struct upq_job *j)
{
    struct up_queue *q = j->q;

    if (j->prev) {
        j->prev->next = j->next;
    } else {
        q->head = j->next;
    }
    if (j->next) {
        j->next->prev = j->prev;
    }
    q->njobs--;
    q->bytes -= j->size < q->bytes ? j->size : q->bytes;
    upq_attempt_free(j);
    free(j->prev_err);
    free(j);
}

/* ---- the close of the whole queue ---- */

static void upq_maybe_done(struct up_queue *q)
{
    void (*done)(void *);
    void *arg;

    if (!q->closing || q->busy > 0 || q->scanning || q->pending_handles > 0) {
        return;
    }
    while (q->head) {
        upq_job_free(q->head);
    }
    done = q->done;
    arg = q->done_arg;
    conf_release(q->conf);
    free(q->spool_dir);
    free(q->scan_ids);
    free(q->scan_sizes);
    free(q);
    if (done) {
        done(arg);
    }
}

static void upq_busy_end(struct upq_job *j)
{
    struct up_queue *q = j->q;
    q->busy--;
    j->step = UPQ_IDLE;
    if (q->closing) {
        upq_attempt_free(j);
        upq_maybe_done(q);
        return;
    }
    upq_schedule(q);
}

/* ---- prepare: read .env and .done (thread pool) ---- */

static void upq_prepare_work(uv_work_t *w)
{
    struct upq_job *j = w->data;
    struct spool_msg m;
    int e;

    j->errmsg[0] = '\0';
    memset(&j->env, 0, sizeof(j->env));
    e = spool_load(j->conf->spool_dir, SPOOL_AREA_Q, j->qid, &m, j->errmsg, sizeof(j->errmsg));
    j->found_size = m.size;
    if (e != 0) {
        if (e == ENOENT) {
            j->gone = 1;
            j->errmsg[0] = '\0';
        }
        spool_msg_free(&m);
        return;
    }
    /* the job keeps the envelope and the failure replies; verdicts become states */
    j->env = m.env;
    j->rreply = m.reply;
    j->rdefer = m.defer; /* the attempts so far count on; the old replies do not */
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        free(j->rdefer[i].reply);
        j->rdefer[i].reply = NULL;
    }
    m.env.rcpt = NULL;
    m.env.rdsn = NULL;
    m.reply = NULL;
    m.defer = NULL;
    j->rstate = calloc(j->env.nrcpt ? j->env.nrcpt : 1, 1);
    for (size_t i = 0; j->rstate && i < j->env.nrcpt; i++) {
        j->rstate[i] = m.verdict[i] == SPOOL_OK       ? UPQ_R_OK
                       : m.verdict[i] == SPOOL_FAILED ? UPQ_R_FAILED
                                                      : UPQ_R_PENDING;
    }
    spool_msg_free(&m);
    if (!j->rstate) {
        snprintf(j->errmsg, sizeof(j->errmsg), "out of memory");
    }
}

static const struct conf_device *upq_device(const struct conf *c, const char *name)
{
    for (size_t i = 0; i < c->ndevices; i++) {
        if (strcmp(c->devices[i].name, name) == 0) {
            return &c->devices[i];
        }
    }
    return NULL;
}

static size_t upq_npending(const struct upq_job *j)
{
    size_t n = 0;
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        n += j->rstate[i] == UPQ_R_PENDING;
    }
    return n;
}

static void upq_start_delivery(struct upq_job *j);

static void upq_prepare_done(uv_work_t *w, int status)
{
    struct upq_job *j = w->data;
    struct up_queue *q = j->q;
    (void)status;
    if (j->env.created && j->env.created < j->since) {
        j->since = j->env.created; /* found at startup: its real age (on the loop) */
    }
    if (j->found_size && j->found_size != j->size) {
        q->bytes = q->bytes - (j->size < q->bytes ? j->size : q->bytes) + j->found_size;
        j->size = j->found_size;
    }
    if (q->closing) {
        upq_busy_end(j);
        return;
    }
    if (j->gone) {
        log_info(j->qid, "queue",
                 "qid=%016" PRIx64 " event=removed reason=\"files gone (queue delete)\"", j->qid);
        q->busy--;
        upq_job_free(j);
        upq_schedule(q);
        return;
    }
    if (j->errmsg[0]) {
        log_err(j->qid, "queue", "qid=%016" PRIx64 " event=unreadable error=\"%s\"", j->qid,
                j->errmsg);
        upq_attempt_free(j);
        j->next_ms = uv_now(q->loop) + (uint64_t)q->conf->retry_max * 1000u;
        upq_busy_end(j);
        return;
    }
    j->dev = upq_device(j->conf, j->env.device);
    if (!j->dev) {
        /* the device was renamed or removed since: the default device takes it */
        j->dev = upq_device(j->conf, "default");
        log_warn(j->qid, "queue", "qid=%016" PRIx64 " event=device_missing device=%s using=%s",
                 j->qid, j->env.device, j->dev ? "default" : "none");
    }
    if (!j->dev) {
        snprintf(j->lasterr, sizeof(j->lasterr), "no [device %s] and no [device default]",
                 j->env.device);
        j->temp_fail = 1;
        upq_attempt_end(j); /* straight to the bookkeeping */
        return;
    }
    if (j->env.route[0]) {
        /* routed at acceptance: the route's upstream and credentials (a device-shaped
         * record) replace the device's; a route since removed falls back to the device */
        const struct conf_route *r = conf_route_find(j->conf, j->env.route);
        if (r) {
            j->dev = &r->cred;
        } else {
            log_warn(j->qid, "queue", "qid=%016" PRIx64 " event=route_missing route=%s device=%s",
                     j->qid, j->env.route, j->dev->name);
        }
    }
    if (upq_npending(j) == 0) {
        upq_attempt_end(j);
        return;
    }
    if (upq_now_unix() > j->env.created + j->conf->max_queue_age) {
        j->perm_all = 1;
        /* lasterr was cleared for this attempt: the reason the message is still
         * here is the previous attempt's error (cut to lasterr's size) */
        snprintf(j->lasterr, sizeof(j->lasterr),
                 "message expired after %u seconds in the queue%s%s", j->conf->max_queue_age,
                 j->prev_err ? "; last error: " : "", j->prev_err ? j->prev_err : "");
        upq_attempt_end(j);
        return;
    }
    j->upidx %= j->dev->nups ? j->dev->nups : 1;
    j->up = j->dev->nups ? j->dev->ups[j->upidx] : j->dev->up;
    upq_start_delivery(j);
}

/* ---- SMTP: a session from the pool, the transaction through up_send ---- */

static void upq_on_acquired(struct up_acquire *req, struct up_session *s, int err,
                            const struct up_reply *r, const char *detail);
static void upq_start_graph(struct upq_job *j);

/* A session from the pool (which counts this upstream's max_connections
 * together with the devices' sessions), for this job's identity. */
static void upq_start_delivery(struct upq_job *j)
{
    struct up_queue *q = j->q;

    if (j->up->type == CONF_UP_GRAPH) {
        upq_start_graph(j);
        return;
    }
    j->step = UPQ_CONNECT;
    j->attempts++;
    j->reused = 0;
    memset(&j->acq, 0, sizeof(j->acq));
    j->acq.dev = j->dev;
    j->acq.ups = &j->up; /* failover along the device's list is the queue's (upidx) */
    j->acq.nups = 1;
    j->acq.conf = j->conf;
    j->acq.oauth = up_oauth_set_find(q->oauth, j->dev); /* NULL unless auth is a token */
    j->acq.sid = j->qid;
    j->acq.wait_seconds = j->conf->command_timeout;
    j->acq.cbs = &upq_up_cbs;
    j->acq.arg = j;
    j->acq.on_done = upq_on_acquired;
    if (!q->pool || up_pool_acquire(q->pool, &j->acq) < 0) {
        snprintf(j->lasterr, sizeof(j->lasterr), "out of memory");
        j->temp_fail = 1;
        upq_attempt_end(j);
        return;
    }
    log_debug(j->qid, "queue", "qid=%016" PRIx64 " event=attempt n=%u relay=%s", j->qid,
              j->attempts, j->up->name);
}

static void upq_reply_text(const struct up_reply *r, char *out, size_t cap)
{
    char line[560];
    snprintf(out, cap, "%d %s", r->code, up_reply_oneline(r, line, sizeof(line)));
}

/* Accepted recipients go back to pending: this attempt did not deliver to them. */
static void upq_unaccept(struct upq_job *j)
{
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        if (j->rstate[i] == UPQ_R_ACCEPTED) {
            j->rstate[i] = UPQ_R_PENDING;
        }
    }
}

/* Apply a verdict to every recipient accepted in this attempt. */
static void upq_settle_accepted(struct upq_job *j, const struct up_reply *r)
{
    char text[600];

    upq_reply_text(r, text, sizeof(text));
    if (r->code < 300) {
        free(j->okreply);
        j->okreply = strdup(text); /* for the log: the provider's own words (its queue id) */
    }
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        if (j->rstate[i] != UPQ_R_ACCEPTED) {
            continue;
        }
        if (r->code < 300) {
            j->rstate[i] = UPQ_R_NEW_OK;
        } else if (r->code >= 500) {
            j->rstate[i] = UPQ_R_NEW_FAILED;
            free(j->rreply[i]);
            j->rreply[i] = strdup(text);
        } else {
            j->rstate[i] = UPQ_R_PENDING;
            j->temp_fail = 1;
        }
    }
    if (r->code >= 300) {
        snprintf(j->lasterr, sizeof(j->lasterr), "%s", text);
    }
}

/* The session failed or could not take the transaction. A pooled session that
 * was dead before MAIL got an answer is replaced by a fresh one (nothing was
 * sent); otherwise the attempt ends in a temporary failure. */
static void upq_session_failed(struct upq_job *j, int err, const char *where, const char *detail,
                               int before_mail_reply)
{
    if (j->reused && before_mail_reply && up_pool_acquire_fresh(j->q->pool, &j->acq) == 0) {
        j->reused = 0;
        j->step = UPQ_CONNECT;
        return;
    }
    reply_upstream(j->lasterr, sizeof(j->lasterr), err, where, detail);
    j->lasterr[strcspn(j->lasterr, "\r\n")] = '\0';
    if (j->q->m) {
        metrics_upstream_error(j->q->m, err);
    }
    j->temp_fail = 1;
    upq_unaccept(j);
    upq_attempt_end(j);
}

/* Appends " KEY=value" (or the first) to params. */
static void upq_param(char *params, size_t cap, const char *key, const char *value)
{
    size_t o = strlen(params);

    if (o < cap) {
        snprintf(params + o, cap - o, "%s%s%s%s", o ? " " : "", key, value ? "=" : "",
                 value ? value : "");
    }
}

/* The pending recipients of this attempt, the .msg path, the MAIL parameters:
 * BODY (RFC 6152), and RET, ENVID (RFC 3461) and SMTPUTF8 (RFC 6531) as the
 * device gave them, each when this upstream offers it. */
static int upq_send_prepare(struct upq_job *j, struct up_session *s, char *params, size_t cap)
{
    size_t n = 0;
    unsigned ext = s ? up_ext(s) : 0; /* NULL: type = graph, no SMTP session */

    free(j->sendv); /* a second session in one attempt (a dead pooled one replaced) */
    free(j->sendp);
    free(j->sendi);
    free(j->msgpath);
    params[0] = '\0';
    if (j->env.body[0] && (ext & UP_EXT_8BITMIME)) {
        upq_param(params, cap, "BODY", j->env.body);
    }
    j->up_dsn = (ext & UP_EXT_DSN) != 0;
    if (j->up_dsn && j->env.ret[0]) {
        upq_param(params, cap, "RET", j->env.ret);
    }
    if (j->up_dsn && j->env.envid[0]) {
        upq_param(params, cap, "ENVID", j->env.envid);
    }
    if (j->env.smtputf8 && (ext & UP_EXT_SMTPUTF8)) {
        upq_param(params, cap, "SMTPUTF8", NULL);
    }
    j->sendv = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(*j->sendv));
    j->sendp = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(*j->sendp));
    j->sendi = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(*j->sendi));
    j->msgpath = malloc(UPQ_PATH_MAX);
    if (!j->sendv || !j->sendp || !j->sendi || !j->msgpath ||
        spool_msg_path(j->msgpath, UPQ_PATH_MAX, j->conf->spool_dir, SPOOL_AREA_Q, j->qid) != 0) {
        return -1;
    }
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        if (j->rstate[i] == UPQ_R_PENDING) {
            j->sendi[n] = i;
            j->sendp[n] = j->up_dsn && j->env.rdsn ? j->env.rdsn[i] : NULL;
            j->sendv[n++] = j->env.rcpt[i];
        }
    }
    j->nsend = n;
    return 0;
}

/* 1 when another upstream of the job's list offered SMTPUTF8 in its last EHLO,
 * or has not been seen yet (up_caps). */
static int upq_utf8_elsewhere(const struct upq_job *j)
{
    const struct up_caps *c = up_pool_caps(j->q->pool);
    size_t n = j->dev->nups ? j->dev->nups : 1;
    struct up_ehlo e;

    for (size_t i = 0; i < n; i++) {
        const struct conf_upstream *u = j->dev->nups ? j->dev->ups[i] : j->dev->up;
        if (u != j->up && (!up_caps_of(c, u, &e) || (e.ext & UP_EXT_SMTPUTF8))) {
            return 1;
        }
    }
    return 0;
}

static void upq_on_acquired(struct up_acquire *req, struct up_session *s, int err,
                            const struct up_reply *r, const char *detail)
{
    struct upq_job *j = req->arg;
    struct up_send_req t;
    char params[256];

    (void)r;
    if (!s) {
        reply_upstream(j->lasterr, sizeof(j->lasterr), err, req->where, detail);
        j->lasterr[strcspn(j->lasterr, "\r\n")] = '\0';
        j->temp_fail = 1;
        upq_attempt_end(j);
        return;
    }
    j->reused = req->reused;
    j->step = UPQ_SEND;
    if (upq_send_prepare(j, s, params, sizeof(params)) != 0) {
        up_close(s);
        snprintf(j->lasterr, sizeof(j->lasterr), "out of memory");
        j->temp_fail = 1;
        upq_attempt_end(j);
        return;
    }
    if (j->env.smtputf8 && !(up_ext(s) & UP_EXT_SMTPUTF8)) {
        /* RFC 6531 §3.2: an SMTPUTF8 message goes only to a server that offers
         * it; relay25 does not downgrade. Another upstream of the device's list
         * may offer it (or is not known not to): try it; else fail for good. */
        int other = upq_utf8_elsewhere(j);

        snprintf(j->lasterr, sizeof(j->lasterr),
                 "%s upstream %s does not offer SMTPUTF8 (RFC 6531), which this message needs",
                 other ? "451 4.6.7" : "550 5.6.7", up_where(s));
        if (j->q->pool) {
            up_pool_put(j->q->pool, s, j->up->max_connections);
        } else {
            up_quit(s);
        }
        j->perm_all = !other;
        j->temp_fail = other;
        upq_attempt_end(j);
        return;
    }
    memset(&t, 0, sizeof(t));
    t.loop = j->q->loop;
    t.from = j->env.from;
    t.params = params;
    t.rcpt_params = j->sendp;
    t.rcpt = j->sendv;
    t.nrcpt = j->nsend;
    t.fd = -1;
    t.path = j->msgpath;
    t.size = j->found_size;
    t.session_cbs = &upq_up_cbs;
    t.session_arg = j;
    t.sid = j->qid;
    t.cbs = &upq_send_cbs;
    t.arg = j;
    if (!(j->tx = up_send_start(s, &t))) { /* nothing was sent */
        char where[300];
        snprintf(where, sizeof(where), "%s", up_where(s));
        up_close(s);
        upq_session_failed(j, RELAY_E_PROTOCOL, where, "upstream session not ready for the command",
                           1);
    }
}

static void upq_on_send_reply(void *arg, enum up_send_step step, size_t i, const struct up_reply *r)
{
    struct upq_job *j = arg;
    size_t k = j->sendi[i];
    char text[600];

    if (step != UP_SEND_RCPT) {
        return; /* the others end the transaction: upq_on_send_done */
    }
    if (r->code >= 200 && r->code < 300) {
        j->rstate[k] = UPQ_R_ACCEPTED;
    } else if (r->code >= 500) {
        upq_reply_text(r, text, sizeof(text));
        j->rstate[k] = UPQ_R_NEW_FAILED;
        free(j->rreply[k]);
        j->rreply[k] = strdup(text);
    } else {
        upq_reply_text(r, j->lasterr, sizeof(j->lasterr));
        j->temp_fail = 1;
        free(j->rdefer[k].reply); /* this recipient's own reason, for its defer record */
        j->rdefer[k].reply = strdup(j->lasterr);
    }
}

static void upq_on_send_done(void *arg, const struct up_send_result *res)
{
    struct upq_job *j = arg;
    struct up_queue *q = j->q;

    j->tx = NULL;
    if (q->closing) { /* cut: the message stays spooled */
        if (res->session) {
            up_close(res->session);
        }
        upq_unaccept(j);
        upq_attempt_end(j);
        return;
    }
    if (res->file_err) {
        snprintf(j->lasterr, sizeof(j->lasterr), "cannot read spooled message: %s", res->detail);
        j->gone = res->file_err == UV_ENOENT;
        j->temp_fail = 1;
        upq_unaccept(j);
        upq_attempt_end(j); /* the session was closed: upstream drops the partial message */
        return;
    }
    if (res->err) {
        upq_session_failed(j, res->err, res->where, res->detail, res->step == UP_SEND_MAIL);
        return;
    }
    if (res->step == UP_SEND_MAIL && res->reply->code == 421 && j->reused) {
        /* the pooled session was being closed upstream (idle): nothing was sent,
         * a fresh one comes ahead of the line (up_pool_acquire_fresh) */
        if (res->session) {
            up_close(res->session);
        }
        if (up_pool_acquire_fresh(q->pool, &j->acq) == 0) {
            j->reused = 0;
            j->step = UPQ_CONNECT;
            return;
        }
        upq_reply_text(res->reply, j->lasterr, sizeof(j->lasterr));
        j->temp_fail = 1;
        upq_attempt_end(j);
        return;
    }
    if (res->step == UP_SEND_MAIL) {
        upq_reply_text(res->reply, j->lasterr, sizeof(j->lasterr));
        if (res->reply->code >= 500) {
            j->perm_all = 1;
        } else {
            j->temp_fail = 1;
        }
    } else if ((res->step == UP_SEND_DATA && res->accepted > 0) || res->step == UP_SEND_DOT) {
        /* DATA refused, or the final reply: it applies to every accepted recipient.
         * With none accepted the RCPT replies already said why. */
        upq_settle_accepted(j, res->reply);
        if (res->reply->code < 300) {
            upq_reply_text(res->reply, j->notice_reply, sizeof(j->notice_reply));
        }
    }
    if (res->session) {
        if (res->step == UP_SEND_DOT && q->pool) {
            up_pool_put(q->pool, res->session, j->up->max_connections);
        } else {
            up_quit(res->session);
        }
    }
    upq_attempt_end(j);
}

static const struct up_send_cbs upq_send_cbs = {
    .on_reply = upq_on_send_reply,
    .on_done = upq_on_send_done,
};

/* The session is up_send's during a transaction; the queue holds it only
 * between the pool and up_send, and to QUIT or pool it afterwards. */
static void upq_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    (void)arg, (void)err, (void)r, (void)detail;
}

static void upq_on_reply(void *arg, const struct up_reply *r)
{
    (void)arg, (void)r;
}

static void upq_on_fail(void *arg, int err, const char *detail, int pending)
{
    (void)arg, (void)err, (void)detail, (void)pending;
}

static void upq_on_drain(void *arg)
{
    (void)arg;
}

static void upq_on_close(void *arg)
{
    (void)arg;
}

static const struct up_cbs upq_up_cbs = {
    .on_ready = upq_on_ready,
    .on_reply = upq_on_reply,
    .on_fail = upq_on_fail,
    .on_drain = upq_on_drain,
    .on_close = upq_on_close,
};

/* ---- Microsoft Graph (type = graph): one HTTPS delivery, all recipients at once ---- */

static void upq_on_graph_done(void *arg, const struct up_graph_result *r)
{
    struct upq_job *j = arg;

    j->graph = NULL;
    snprintf(j->lasterr, sizeof(j->lasterr), "%s", r->code >= 300 ? r->reply : "");
    if (j->q->m && r->err) {
        metrics_upstream_error(j->q->m, r->err);
    }
    for (size_t k = 0; k < j->nsend; k++) {
        size_t i = j->sendi[k];
        if (r->code < 300) {
            j->rstate[i] = UPQ_R_NEW_OK;
        } else if (r->code >= 500) {
            j->rstate[i] = UPQ_R_NEW_FAILED;
            free(j->rreply[i]);
            j->rreply[i] = strdup(r->reply);
        }
    }
    if (r->code >= 300 && r->code < 500) {
        j->temp_fail = 1;
        j->retry_after = r->retry_after;
        j->gone = r->file_err == UV_ENOENT;
    }
    upq_attempt_end(j);
}

/* Graph takes the message with every pending recipient in one request: no
 * session, no pool (Graph has no connection limit of the SMTP kind). */
static void upq_start_graph(struct upq_job *j)
{
    struct up_graph_req g;
    char params[64];

    j->step = UPQ_SEND;
    j->attempts++;
    memset(&g, 0, sizeof(g));
    if (upq_send_prepare(j, NULL, params, sizeof(params)) == 0) {
        g.loop = j->q->loop;
        g.up = j->up;
        g.user = j->dev->user;
        g.oauth = up_oauth_set_find(j->q->oauth, j->dev);
        g.path = j->msgpath;
        g.rcpt = (const char *const *)j->sendv;
        g.nrcpt = j->nsend;
        g.qid = j->qid;
        g.timeout = j->conf->data_timeout;
        j->graph = up_graph_send(&g, upq_on_graph_done, j);
    }
    if (!j->graph) {
        snprintf(j->lasterr, sizeof(j->lasterr), "%s",
                 g.oauth || !g.loop ? "out of memory" : "no OAuth2 token provider");
        j->temp_fail = 1;
        upq_attempt_end(j);
    }
}

/* ---- record: results to disk, then remove / move / bounce (thread pool) ---- */

/* The recipients that failed for good, with why (malloc'd; *n may be 0). */
static struct up_bounce_rcpt *upq_failed(const struct upq_job *j, size_t *n)
{
    struct up_bounce_rcpt *f = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(*f));

    *n = 0;
    for (size_t i = 0; f && i < j->env.nrcpt; i++) {
        if (j->rstate[i] == UPQ_R_FAILED || j->rstate[i] == UPQ_R_NEW_FAILED) {
            f[*n].addr = j->env.rcpt[i];
            f[(*n)++].reason = j->rreply[i] ? j->rreply[i] : j->lasterr;
        }
    }
    return f;
}

/* A recipient's NOTIFY (RFC 3461 §4.1) from its stored RCPT parameters; 0 when
 * it gave none (then failures only: the default of RFC 3461 §4.1 that this
 * relay honours; it sends no delay notices). */
static unsigned upq_notify(const struct upq_job *j, size_t i, const char **orcpt)
{
    const char *v, *d = j->env.rdsn ? j->env.rdsn[i] : NULL;
    size_t vl;
    int bits;

    *orcpt = NULL;
    if (!d) {
        return 0;
    }
    if ((v = dsn_param(d, "ORCPT", &vl))) {
        *orcpt = v; /* the value runs to the next blank: ORCPT comes last or alone */
    }
    v = dsn_param(d, "NOTIFY", &vl);
    bits = v ? dsn_notify_parse(v, vl) : 0;
    return bits > 0 ? (unsigned)bits : 0;
}

/* The recipients this attempt owes a notice (RFC 3461 §6.2): failed for good
 * unless their NOTIFY leaves out FAILURE (NEVER included), and just delivered
 * to an upstream without DSN when their NOTIFY asks for SUCCESS (Action
 * relayed). finished: the failures are reported only once none is pending.
 * ORCPT strings are copied into orc (malloc'd, freed by the caller). */
static struct up_bounce_rcpt *upq_notices(const struct upq_job *j, int finished, size_t *n,
                                          char ***orc)
{
    struct up_bounce_rcpt *f = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(*f));

    *n = 0;
    *orc = calloc(j->env.nrcpt ? j->env.nrcpt : 1, sizeof(**orc));
    if (!*orc) {
        free(f);
        return NULL;
    }
    for (size_t i = 0; f && i < j->env.nrcpt; i++) {
        const char *oc;
        unsigned nt = upq_notify(j, i, &oc);
        int failed = j->rstate[i] == UPQ_R_FAILED || j->rstate[i] == UPQ_R_NEW_FAILED;
        int relayed = j->rstate[i] == UPQ_R_NEW_OK && !j->up_dsn && (nt & DSN_NOTIFY_SUCCESS);

        if ((failed && finished && (nt == 0 || (nt & DSN_NOTIFY_FAILURE))) || relayed) {
            if (oc && !((*orc)[*n] = strndup(oc, strcspn(oc, " ")))) {
                free(f);
                return NULL;
            }
            f[*n].addr = j->env.rcpt[i];
            f[*n].orcpt = (*orc)[*n];
            f[*n].relayed = relayed;
            f[(*n)++].reason = relayed ? j->notice_reply : j->rreply[i] ? j->rreply[i] : j->lasterr;
        }
    }
    return f;
}

/* Writes an RFC 3464 report for the recipients owed a notice (upq_notices) as
 * a new spooled message (null sender, to the original sender, same device),
 * honouring RET (headers, or the whole message up to UPQ_FULL_MAX) and ENVID.
 * Returns its qid, 0 with errno set on failure, or 0 with *none set when no
 * recipient is owed one. */
static uint64_t upq_write_bounce(struct upq_job *j, int finished, uint64_t *size, int *none)
{
    struct up_bounce b;
    struct spool_env be;
    char rcpt1[1][SPOOL_ADDR_MAX];
    char *hdrs = NULL, *out = NULL, **orc = NULL;
    size_t n = 0;
    int err, ok = 0, full = strcmp(j->env.ret, "FULL") == 0;

    memset(&b, 0, sizeof(b));
    *none = 0;
    b.failed = upq_notices(j, finished, &b.nfailed, &orc);
    if (!b.failed) {
        errno = ENOMEM;
        goto done;
    }
    if (b.nfailed == 0) {
        *none = 1;
        goto done;
    }
    for (size_t i = 0; i < b.nfailed; i++) {
        full &= !b.failed[i].relayed; /* RFC 3461 §4.3: RET is for failure notices */
    }
    b.hostname = j->conf->hostname;
    b.to = j->env.from;
    b.qid = j->qid;
    b.id = spool_new_id();
    b.date = time(NULL);
    b.envid = j->env.envid[0] ? j->env.envid : NULL;
    /* RET=FULL: the whole message when it is small enough, else (as RET=HDRS and
     * without RET) its first header section as text/rfc822-headers (RFC 3462) */
    if (full && j->size > 0 && j->size <= UPQ_FULL_MAX) {
        hdrs = spool_msg_head(j->conf->spool_dir, SPOOL_AREA_Q, j->qid, UPQ_FULL_MAX, &n, &err);
        b.full = hdrs != NULL;
    }
    if (!b.full) {
        hdrs = spool_msg_head(j->conf->spool_dir, SPOOL_AREA_Q, j->qid, UPQ_HEADERS_MAX, &n, &err);
    }
    b.headers = hdrs;
    b.headers_len = !hdrs ? 0 : b.full ? n : up_bounce_header_len(hdrs, n);
    if (!(out = up_bounce_build(&b, &n))) {
        errno = ENOMEM;
        goto done;
    }
    memset(&be, 0, sizeof(be));
    be.created = (uint64_t)b.date;
    snprintf(be.device, sizeof(be.device), "%s", j->env.device);
    snprintf(be.user, sizeof(be.user), "%s", j->env.user);
    {
        /* the bounce's sender is <>: a route listing "<>" takes it, as at MAIL */
        const struct conf_device *bd = upq_device(j->conf, j->env.device);
        const struct conf_route *br = conf_route_for(j->conf, bd, "");
        snprintf(be.route, sizeof(be.route), "%s", br ? br->cred.name : "");
    }
    snprintf(be.client, sizeof(be.client), "127.0.0.1");
    snprintf(rcpt1[0], sizeof(rcpt1[0]), "%s", j->env.from);
    be.rcpt = rcpt1;
    be.nrcpt = 1;
    /* the sender's address may need SMTPUTF8 to be delivered back */
    be.smtputf8 = j->env.smtputf8 && dsn_has_8bit(j->env.from, strlen(j->env.from));
    if ((errno = spool_commit(j->conf->spool_dir, b.id, out, n, &be)) != 0) {
        goto done;
    }
    *size = n;
    ok = 1;
done:
    for (size_t i = 0; orc && i < j->env.nrcpt; i++) {
        free(orc[i]);
    }
    free(orc);
    free((void *)b.failed);
    free(hdrs);
    free(out);
    return ok ? b.id : 0;
}

/* "<addr>: reply" per failed recipient, for failed/<qid>.reason. malloc'd. */
static char *upq_reason_text(const struct upq_job *j, size_t *len)
{
    size_t n;
    struct up_bounce_rcpt *f = upq_failed(j, &n);
    char *out = f ? up_bounce_reason(f, n, len) : NULL;

    free(f);
    return out;
}

static void upq_record_work(uv_work_t *w)
{
    struct upq_job *j = w->data;
    const char *dir = j->conf->spool_dir;
    char *lines = NULL;
    size_t cap = 64, o = 0;
    int any_failed = 0, pending = 0, e;

    j->finished = 0;
    j->bounce_qid = 0;
    j->errmsg[0] = '\0';
    if (j->perm_all) {
        for (size_t i = 0; i < j->env.nrcpt; i++) {
            if (j->rstate[i] == UPQ_R_PENDING || j->rstate[i] == UPQ_R_ACCEPTED) {
                j->rstate[i] = UPQ_R_NEW_FAILED;
                free(j->rreply[i]);
                j->rreply[i] = strdup(j->lasterr);
            }
        }
    }
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        cap += SPOOL_ADDR_MAX + 16 + (j->rreply[i] ? strlen(j->rreply[i]) : 6);
        /* a defer record: three numbers and the reason */
        cap += SPOOL_ADDR_MAX + 80 + strlen(j->rdefer[i].reply ? j->rdefer[i].reply : j->lasterr);
    }
    if (!(lines = malloc(cap))) {
        /* without the verdicts nothing may be removed: keep it for the next attempt */
        snprintf(j->errmsg, sizeof(j->errmsg), "cannot record progress of %016" PRIx64 ": %s",
                 j->qid, strerror(ENOMEM));
        return;
    }
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        if (j->rstate[i] == UPQ_R_NEW_OK) {
            o += spool_done_format(lines + o, cap - o, SPOOL_OK, j->env.rcpt[i], NULL);
        } else if (j->rstate[i] == UPQ_R_NEW_FAILED) {
            o += spool_done_format(lines + o, cap - o, SPOOL_FAILED, j->env.rcpt[i],
                                   j->rreply[i] ? j->rreply[i] : "failed");
        }
        any_failed |= j->rstate[i] == UPQ_R_FAILED || j->rstate[i] == UPQ_R_NEW_FAILED;
        pending |= j->rstate[i] == UPQ_R_PENDING || j->rstate[i] == UPQ_R_ACCEPTED;
    }
    if (!j->dev) {
        pending = 1;
    } /* bounce = keep moves .done along: it must say who got the message */
    if (o > 0 && (pending || (any_failed && j->conf->bounce == CONF_BOUNCE_KEEP))) {
        /* progress must survive a crash: appended and fsync'd before going on */
        if ((e = spool_done_append(dir, j->qid, lines, o)) != 0) {
            snprintf(j->errmsg, sizeof(j->errmsg), "cannot record progress of %016" PRIx64 ": %s",
                     j->qid, strerror(e));
        }
    }
    if (pending) {
        /* why each one waits, for `relay25 queue` (spool.h: defer/<qid>) */
        uint64_t now = upq_now_unix();
        o = 0;
        for (size_t i = 0; i < j->env.nrcpt; i++) {
            struct spool_defer d = j->rdefer[i];
            if (j->rstate[i] != UPQ_R_PENDING && j->rstate[i] != UPQ_R_ACCEPTED) {
                continue;
            }
            d.attempts = d.attempts < UINT32_MAX ? d.attempts + 1 : d.attempts;
            d.last = now;
            d.next_retry = now + (j->delay_ms + 999) / 1000;
            d.reply = d.reply ? d.reply : j->lasterr;
            o += spool_defer_format(lines + o, cap - o, j->env.rcpt[i], &d);
        }
        if ((e = spool_defer_write(dir, j->qid, lines, o)) != 0 && !j->errmsg[0]) {
            snprintf(j->errmsg, sizeof(j->errmsg), "cannot write defer/%016" PRIx64 ": %s", j->qid,
                     strerror(e));
        }
    }
    free(lines);
    if (pending) {
        /* NOTIFY=SUCCESS of recipients just relayed to an upstream without DSN */
        if (j->conf->bounce == CONF_BOUNCE_DSN && j->env.from[0] && j->env.rdsn) {
            int none;
            j->bounce_qid = upq_write_bounce(j, 0, &j->bounce_size, &none);
            if (!j->bounce_qid && !none) {
                snprintf(j->errmsg, sizeof(j->errmsg), "cannot write the notice: %s",
                         strerror(errno));
            }
        }
        return;
    }
    /* every recipient has a final verdict */
    if (j->conf->bounce == CONF_BOUNCE_DSN && j->env.from[0]) {
        int none;
        j->bounce_qid = upq_write_bounce(j, 1, &j->bounce_size, &none);
        if (!j->bounce_qid && !none) {
            snprintf(j->errmsg, sizeof(j->errmsg), "cannot write the bounce: %s", strerror(errno));
            return; /* keep the message: the bounce is retried with the next attempt */
        }
    }
    if (any_failed && j->conf->bounce == CONF_BOUNCE_KEEP) {
        size_t rl = 0;
        char *reason = upq_reason_text(j, &rl);
        if (!reason) {
            snprintf(j->errmsg, sizeof(j->errmsg), "out of memory");
        } else {
            spool_fail(dir, j->qid, reason, rl, j->errmsg, sizeof(j->errmsg));
        }
        free(reason);
    } else {
        /* .env first: a crash after it leaves only files startup removes */
        spool_remove(dir, SPOOL_AREA_Q, j->qid, j->errmsg, sizeof(j->errmsg));
        if (spool_sync(dir, SPOOL_AREA_Q) != 0 && !j->errmsg[0]) {
            snprintf(j->errmsg, sizeof(j->errmsg), "cannot sync %s/q", dir);
        }
    }
    j->finished = 1;
}

static const char *upq_status_of(const struct upq_job *j)
{
    int failed = 0;
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        failed |= j->rstate[i] == UPQ_R_NEW_FAILED || j->rstate[i] == UPQ_R_FAILED;
    }
    return failed ? "bounced" : "sent";
}

/* The upstream's address ("host:port") for the log, "-" before one was chosen. */
static const char *upq_relay(const struct upq_job *j, char *buf, size_t cap)
{
    if (!j->up) {
        return "-";
    }
    up_where_of(j->up, buf, cap);
    return buf;
}

/* The provider's final reply for the log: its 2xx to the content when anything
 * was delivered in this attempt, else why the last recipient failed. */
static const char *upq_final_reply(const struct upq_job *j)
{
    if (j->okreply && strcmp(upq_status_of(j), "sent") == 0) {
        return j->okreply;
    }
    for (size_t i = j->env.nrcpt; i-- > 0;) {
        if (j->rstate[i] == UPQ_R_NEW_FAILED && j->rreply[i]) {
            return j->rreply[i];
        }
    }
    return j->okreply ? j->okreply : j->lasterr;
}

static void upq_record_done(uv_work_t *w, int status)
{
    struct upq_job *j = w->data;
    struct up_queue *q = j->q;
    char qt[700], rl[300];
    const char *r;

    (void)status;
    /* sid: a spooled message's delivery logs under its qid (README "Logging") */
    if (j->errmsg[0]) {
        log_err(j->qid, "queue", "qid=%016" PRIx64 " event=spool_error error=\"%s\"", j->qid,
                j->errmsg);
    }
    for (size_t i = 0; i < j->env.nrcpt; i++) {
        if (j->rstate[i] == UPQ_R_NEW_OK || j->rstate[i] == UPQ_R_NEW_FAILED) {
            r = j->rstate[i] == UPQ_R_NEW_OK ? (j->okreply ? j->okreply : "")
                                             : (j->rreply[i] ? j->rreply[i] : "");
            log_info(j->qid, "queue",
                     "qid=%016" PRIx64 " to=<%s> relay=%s status=%s device=%s addr=%s "
                     "reply=\"%s\"",
                     j->qid, j->env.rcpt[i], j->up ? j->up->name : "-",
                     j->rstate[i] == UPQ_R_NEW_OK ? "sent" : "bounced", j->env.device,
                     upq_relay(j, rl, sizeof(rl)), log_quote(r, 500, qt, sizeof(qt)));
        }
    }
    if (j->finished) {
        const char *st = upq_status_of(j);
        r = upq_final_reply(j);
        log_info(j->qid, "queue",
                 "qid=%016" PRIx64 " from=<%s> nrcpt=%zu size=%" PRIu64
                 " device=%s%s%s attempts=%u status=%s bounce=%s relay=%s addr=%s reply=\"%s\"",
                 j->qid, j->env.from, j->env.nrcpt, j->size, j->env.device,
                 j->env.route[0] ? " route=" : "", j->env.route, j->attempts, st,
                 strcmp(st, "sent") == 0               ? "-"
                 : j->bounce_qid                       ? "dsn"
                 : j->conf->bounce == CONF_BOUNCE_KEEP ? "kept"
                                                       : "none",
                 j->up ? j->up->name : "-", upq_relay(j, rl, sizeof(rl)),
                 log_quote(r, strlen(r), qt, sizeof(qt)));
        if (q->m) {
            if (strcmp(st, "sent") == 0) {
                q->m->messages_sent++;
                q->m->bytes_total += j->size;
            } else {
                q->m->messages_bounced++;
            }
        }
        if (j->bounce_qid && !q->closing) {
            upq_job_add(q, j->bounce_qid, j->bounce_size);
        }
        q->busy--;
        upq_job_free(j);
        if (q->closing) {
            upq_maybe_done(q);
            return;
        }
        upq_schedule(q);
        return;
    }
    /* temporary failure: back off (upq_delay), or the next upstream now */
    {
        size_t nups = j->dev && j->dev->nups ? j->dev->nups : 1;

        log_info(j->qid, "queue",
                 "qid=%016" PRIx64 " relay=%s attempts=%u status=deferred device=%s%s%s addr=%s "
                 "delay=%" PRIu64 " reply=\"%s\"",
                 j->qid, j->up ? j->up->name : "-", j->attempts, j->env.device,
                 j->env.route[0] ? " route=" : "", j->env.route, upq_relay(j, rl, sizeof(rl)),
                 (j->delay_ms + 999) / 1000,
                 log_quote(j->lasterr, strlen(j->lasterr), qt, sizeof(qt)));
        if (q->m) {
            q->m->messages_deferred++;
        }
        if (j->bounce_qid && !q->closing) {
            upq_job_add(q, j->bounce_qid, j->bounce_size); /* a relayed notice */
        }
        free(j->prev_err);
        j->prev_err = j->lasterr[0] ? strdup(j->lasterr) : NULL;
        j->tried++;
        if (j->dev && j->tried < nups) {
            j->upidx = (j->upidx + 1) % nups; /* failover */
        } else {
            j->tried = 0;
            j->upidx = 0;
        }
        j->next_ms = uv_now(q->loop) + j->delay_ms;
        j->retry_after = 0;
        upq_attempt_free(j);
        upq_busy_end(j);
    }
}

/* The wait before the next attempt should this one leave recipients pending
 * (RFC 5321 §4.5.4.1): none when another upstream of the device's list is
 * still untried, else retry_min doubling per attempt up to retry_max, with
 * jitter. Decided before the record work so the defer records can say when. */
static uint64_t upq_delay(const struct upq_job *j)
{
    const struct conf *c = j->conf;
    size_t nups = j->dev && j->dev->nups ? j->dev->nups : 1;
    unsigned shift = j->attempts > 0 ? j->attempts - 1 : 0;
    uint64_t delay;
    uint32_t rnd;

    if (j->dev && j->tried + 1 < nups) {
        return 0; /* failover */
    }
    delay = (uint64_t)c->retry_min << (shift > 20 ? 20 : shift);
    if (delay > c->retry_max) {
        delay = c->retry_max;
    }
    delay *= 1000u;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        rnd = (uint32_t)uv_now(j->q->loop);
    }
    /* jitter: 75% .. 125% */
    delay = delay * 3 / 4 + (delay / 2) * (rnd % 1000) / 1000;
    if (j->retry_after && delay < (uint64_t)j->retry_after * 1000u) {
        delay = (uint64_t)j->retry_after * 1000u; /* never before the upstream asked */
    }
    return delay;
}

static void upq_attempt_end(struct upq_job *j)
{
    struct up_queue *q = j->q;

    if (q->pool) {
        up_pool_acquire_cancel(q->pool, &j->acq);
    }
    if (j->gone) {
        q->busy--;
        upq_job_free(j);
        upq_schedule(q);
        return;
    }
    if (q->closing) {
        upq_busy_end(j);
        return;
    }
    j->step = UPQ_RECORD;
    j->delay_ms = upq_delay(j);
    j->work.data = j;
    if (uv_queue_work(q->loop, &j->work, upq_record_work, upq_record_done) != 0) {
        upq_attempt_free(j);
        upq_busy_end(j);
    }
}

/* ---- scheduling ---- */

static void upq_timer_cb(uv_timer_t *t)
{
    upq_schedule(t->data);
}

static void upq_schedule(struct up_queue *q)
{
    uint64_t now = uv_now(q->loop), next = UINT64_MAX;

    if (q->closing) {
        return;
    }
    for (struct upq_job *j = q->head; j; j = j->next) {
        if (j->step != UPQ_IDLE) {
            continue;
        }
        if (j->next_ms > now) {
            next = j->next_ms < next ? j->next_ms : next;
            continue;
        }
        if (q->busy >= UPQ_MAX_BUSY) {
            next = now + 1000 < next ? now + 1000 : next;
            continue;
        }
        q->busy++;
        j->step = UPQ_PREPARE;
        j->temp_fail = j->perm_all = 0;
        j->lasterr[0] = '\0';
        j->conf = conf_hold(q->conf);
        j->work.data = j;
        if (uv_queue_work(q->loop, &j->work, upq_prepare_work, upq_prepare_done) != 0) {
            upq_attempt_free(j);
            q->busy--;
            j->step = UPQ_IDLE;
        }
    }
    if (next != UINT64_MAX) {
        uv_timer_start(&q->timer, upq_timer_cb, next > now ? next - now : 0, 0);
    } else {
        uv_timer_stop(&q->timer);
    }
}

/* ---- scanning the spool ---- */

static void upq_scan_work(uv_work_t *w)
{
    struct up_queue *q = w->data;

    free(q->scan_ids);
    free(q->scan_sizes);
    if (spool_scan(q->spool_dir, SPOOL_AREA_Q, &q->scan_ids, &q->scan_sizes, &q->scan_n) != 0) {
        q->scan_n = 0; /* unreadable now: the next flush scans again */
    }
}

static void upq_scan_start(struct up_queue *q);

static void upq_scan_done(uv_work_t *w, int status)
{
    struct up_queue *q = w->data;
    size_t added = 0;

    (void)status;
    q->scanning = 0;
    if (q->closing) {
        upq_maybe_done(q);
        return;
    }
    for (size_t i = 0; i < q->scan_n; i++) {
        if (!upq_find(q, q->scan_ids[i])) {
            added += upq_job_add(q, q->scan_ids[i], q->scan_sizes[i]) != NULL;
        }
    }
    if (added) {
        log_info(0, "queue", "event=scan added=%zu queued=%zu bytes=%" PRIu64, added, q->njobs,
                 q->bytes);
    }
    if (q->rescan) {
        q->rescan = 0;
        upq_scan_start(q);
    }
    upq_schedule(q);
}

static void upq_scan_start(struct up_queue *q)
{
    if (q->scanning) {
        q->rescan = 1;
        return;
    }
    q->scanning = 1;
    q->scan.data = q;
    if (uv_queue_work(q->loop, &q->scan, upq_scan_work, upq_scan_done) != 0) {
        q->scanning = 0;
    }
}

/* ---- API ---- */

struct up_queue *up_queue_new(uv_loop_t *loop, struct conf *c, struct metrics *m)
{
    struct up_queue *q = calloc(1, sizeof(*q));

    if (!q) {
        return NULL;
    }
    q->loop = loop;
    q->spool_dir = strdup(c->spool_dir);
    if (!q->spool_dir) {
        free(q);
        return NULL;
    }
    q->conf = conf_hold(c);
    q->m = m;
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    upq_scan_start(q);
    return q;
}

void up_queue_reload(struct up_queue *q, struct conf *c)
{
    conf_release(q->conf);
    q->conf = conf_hold(c);
}

void up_queue_add(struct up_queue *q, uint64_t qid, uint64_t size)
{
    if (q->closing) {
        return;
    }
    if (upq_job_add(q, qid, size)) {
        upq_schedule(q);
    }
}

void up_queue_flush(struct up_queue *q)
{
    uint64_t now = uv_now(q->loop);

    if (q->closing) {
        return;
    }
    for (struct upq_job *j = q->head; j; j = j->next) {
        j->next_ms = now;
        j->tried = 0;
    }
    log_info(0, "queue", "event=flush queued=%zu", q->njobs);
    upq_scan_start(q);
    upq_schedule(q);
}

uint64_t up_queue_bytes(const struct up_queue *q)
{
    return q->bytes;
}

static void upq_timer_closed(uv_handle_t *h)
{
    struct up_queue *q = h->data;
    q->pending_handles--;
    upq_maybe_done(q);
}

void up_queue_close(struct up_queue *q, void (*done)(void *arg), void *arg)
{
    q->closing = 1;
    q->done = done;
    q->done_arg = arg;
    q->pending_handles++;
    uv_close((uv_handle_t *)&q->timer, upq_timer_closed);
    for (struct upq_job *j = q->head; j; j = j->next) {
        if (j->tx) {
            /* cut: the message stays spooled and is retried at the next start;
             * upq_on_send_done ends the attempt */
            up_send_abort(j->tx);
        } else if (j->graph) {
            /* cut without an answer: the message stays spooled (Graph may have
             * taken it; the next start sends it again, as after a cut SMTP dot) */
            up_graph_cancel(j->graph);
            j->graph = NULL;
            upq_attempt_free(j);
            q->busy--;
            j->step = UPQ_IDLE;
        } else if (j->step == UPQ_CONNECT) { /* still asking the pool */
            up_pool_acquire_cancel(q->pool, &j->acq);
            upq_attempt_free(j);
            q->busy--;
            j->step = UPQ_IDLE;
        }
    }
}

void up_queue_set_oauth(struct up_queue *q, struct up_oauth_set *set)
{
    q->oauth = set;
}

void up_queue_set_pool(struct up_queue *q, struct up_pool *pool)
{
    q->pool = pool;
}

void up_queue_stats(void *arg, uint64_t *messages, uint64_t *bytes, uint64_t *oldest_unix)
{
    const struct up_queue *q = arg;
    uint64_t oldest = 0;

    for (const struct upq_job *j = q->head; j; j = j->next) {
        if (!oldest || j->since < oldest) {
            oldest = j->since;
        }
    }
    *messages = q->njobs;
    *bytes = q->bytes;
    *oldest_unix = oldest;
}
