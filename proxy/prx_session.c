/* prx_session: inbound SMTP server session (RFC 5321, PIPELINING RFC 2920,
 * SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034) in
 * passthrough mode: every MAIL, RCPT and the end of DATA gets upstream's own
 * verdict, and 250 for DATA only after upstream said 250. One command is
 * handled at a time; pipelined commands wait in the tio until the previous
 * one's upstream reply arrived, which keeps replies in order. */
#include "proxy/prx_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth_map.h"
#include "auth/auth_passwd.h"
#include "auth/auth_rate.h"
#include "auth/auth_sasl.h"
#include "common/data.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "common/tio.h"
#include "conf/conf.h"
#include "proxy/prx_cmd.h"
#include "proxy/prx_proxy.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_queue.h"
#include "upstream/up_session.h"
#include "upstream/up_spool.h"
#define PRX_BODY_STEP 4096u /* input bytes decoded per step */
#define PRX_HIWAT (256u * 1024u)
#define PRX_OUT_HIWAT                                                                              \
    (64u * 1024u) /* replies the client has not read yet */ /* upstream backlog that pauses the    \
                                                               client */
#define PRX_INBUF (PRX_PROXY_MAX > PRX_LINE_MAX ? PRX_PROXY_MAX : PRX_LINE_MAX)
#define PRX_PARAMS_MAX 256u
#define PRX_CLOSE_TIMEOUT_MS 10000u /* flushing the last reply before closing */

enum prx_state {
    PRX_STATE_PROXY,     /* awaiting the PROXY protocol header from the load balancer */
    PRX_STATE_REFUSED,   /* greeted with 554: only QUIT (RFC 5321 §3.1) */
    PRX_STATE_IDLE,      /* no transaction */
    PRX_STATE_SLOT_WAIT, /* MAIL received, all upstream connections busy (max_connections) */
    PRX_STATE_CONNECT,   /* MAIL received, upstream session being set up */
    PRX_STATE_MAIL_WAIT, /* MAIL sent upstream */
    PRX_STATE_TXN,       /* MAIL accepted: RCPT / DATA */
    PRX_STATE_RCPT_WAIT,
    PRX_STATE_DATA_WAIT,
    PRX_STATE_BODY, /* streaming the message */
    PRX_STATE_DOT_WAIT,
    /* end of data sent upstream, awaiting its verdict */ PRX_STATE_RSET_WAIT,
    PRX_STATE_SPOOL_WAIT, /* the message is being committed to the spool */
    PRX_STATE_CLOSING,    /* last reply queued; close once written */
    PRX_STATE_TLS,        /* TLS handshake (STARTTLS, RFC 3207, or an implicit-TLS listener) */
    PRX_STATE_AUTH,       /* AUTH sent 334: awaiting the client's response line (RFC 4954) */
    PRX_STATE_AUTH_WAIT,  /* password being checked in the thread pool */
};

#define PRX_M(st) (1u << (st))
#define PRX_M_CMD (PRX_M(PRX_STATE_REFUSED) | PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN))

enum prx_body_err {
    PRX_BODY_OK = 0,
    PRX_BODY_TOO_BIG,
    PRX_BODY_BARE_LF,
    PRX_BODY_HEADER_TOO_BIG,
    PRX_BODY_UPSTREAM, /* upstream failed during the body: reply is in s->upfail */
    PRX_BODY_SPOOL,    /* the spool could not take it (disk full, max_spool_size, I/O) */
};

struct prx_session {
    struct prx_env *env;
    struct prx_session *prev, *next;
    struct prx_conf *pc; /* the snapshot this session lives on */
    const struct conf *conf;
    size_t devidx;     /* index of dev in conf->devices, for its rate buckets */
    uint64_t start_ms; /* accept time, for session_timeout */
    uint64_t dot_ms;   /* end of data sent upstream */
    unsigned ncmds;    /* commands since the last MAIL (max_commands_before_mail) */
    const struct conf_device *dev;
    uint64_t sid;
    enum prx_state state;
    struct tio *tio;
    uv_timer_t timer;
    struct up_session *up;
    struct up_acquire upq; /* asking the pool for an upstream session (PRX_STATE_CONNECT) */
    int refs;              /* timer + tio + live up sessions */
    unsigned closing : 1, client_gone : 1, in_read : 1, bp : 1, draining : 1, txn_lost : 1,
        line_overflow : 1, esmtp : 1, rset_silent : 1;
    unsigned errors;
    unsigned nmsg;

    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    char helo[256];
    /* inbound TLS and AUTH */
    struct sockaddr_storage peer; /* implicit TLS: greeted after the handshake */
    unsigned tls_implicit : 1, authed : 1, need_helo : 1, auth_login_mech : 1;
    char login[AUTH_PASSWD_MAX + 1]; /* AUTH user (LOGIN: while awaiting the password) */

    /* the transaction */
    uint64_t qid;
    char from[PRX_PATH_MAX];
    char mail_params[PRX_PARAMS_MAX];
    char rcpt[PRX_PATH_MAX];
    char rcpt_params[PRX_PARAMS_MAX];
    unsigned nrcpt; /* accepted by upstream */
    struct data_dec dec;
    struct data_enc enc;
    enum prx_body_err body_err;
    int hdr_done;      /* the header section ended (first empty line) */
    int hdr_eol;       /* 0..3: progress through CR LF CR LF while scanning headers */
    uint64_t hdr_size; /* header section bytes seen so far */
    char *bodybuf;     /* 3 * PRX_BODY_STEP during DATA: decoded, then encoded */
    /* sender rewriting and routing (rewrite_sender, rewrite_from_header, [route]) */
    const struct conf_route *route;   /* chosen at MAIL for this transaction, or NULL */
    const struct conf_device *up_dev; /* whose upstream and credentials s->up carries */
    char orig_from[PRX_PATH_MAX];     /* MAIL FROM as sent, when rewritten */
    char *hbuf;                       /* header section held for the From: rewrite */
    size_t hlen, hcap;
    unsigned rw_from : 1, /* MAIL FROM rewritten */
        hdr_hold : 1;     /* holding the header section in hbuf */
    char upfail[700];     /* the 4xx to give when upstream failed mid-transaction */

    /* spooling (mode = spool, or on_upstream_failure = queue) */
    struct up_spool_writer *spw;
    int spool_err;          /* the writer failed (uv error) */
    unsigned txn_local : 1, /* this transaction goes to the spool only */
        bp_spool : 1,
        /* paused until the spool writer drains */ reply_after_commit : 1, /* the client's DATA
                                                                              reply waits for the
                                                                              commit */
        up_reused : 1,
        /* s->up came from the pool: retry afresh if it is dead */ up_txn : 1, /* a transaction is
                                                                                  open upstream
                                                                                  (MAIL accepted) */
        bp_out : 1;              /* paused until the client reads its replies */
    char (*rcpts)[PRX_PATH_MAX]; /* accepted recipients of this transaction */
    unsigned char *rq;           /* per recipient: 1 = for the spool, 0 = upstream took it */
    size_t nrcpts, rcap;

    size_t linelen;
    char line[PRX_INBUF + 1];
};

static const struct tio_cbs prx_tio_cbs;
static const struct up_cbs prx_up_cbs;
static void prx_close(struct prx_session *s, const char *reason);
static void prx_params_for_up(struct prx_session *s, char *out, size_t cap);
static size_t prx_proxy_input(struct prx_session *s, const char *data, size_t len);
static void prx_body_start(struct prx_session *s);
static void prx_spool_commit(struct prx_session *s, int only_queued, int reply_after);
static void prx_start_mail(struct prx_session *s, int use_pool);
static void prx_send_mail(struct prx_session *s);
static void prx_setup_failed(struct prx_session *s, int err, const char *where, const char *detail);
static int prx_auth_offered(const struct prx_session *s);
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
    case PRX_STATE_SLOT_WAIT:
        return "slot_wait";
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

static void prx_timeout_cb(uv_timer_t *t);

/* (Re)starts the idle timer while we wait for the client: idle_timeout from
 * now, or the end of session_timeout if that comes first. */
static void prx_arm_timer(struct prx_session *s)
{
    uint64_t ms = (uint64_t)s->conf->idle_timeout * 1000u;
    uint64_t end = s->start_ms + (uint64_t)s->conf->session_timeout * 1000u;
    uint64_t now = uv_now(s->env->loop);

    if (s->conf->session_timeout > 0 && end < now + ms) {
        ms = end > now ? end - now : 1;
    }
    uv_timer_start(&s->timer, prx_timeout_cb, ms, 0);
}

/* No transaction open: a clean upstream session goes back to the pool, where
 * this device's next MAIL finds it again, and where a transaction waiting for
 * one of the upstream's max_connections slots can have it meanwhile. */
static void prx_up_release(struct prx_session *s)
{
    if (s->up && s->env->pool && !s->up_txn && up_idle(s->up)) {
        up_pool_put(s->env->pool, s->up, (s->up_dev ? s->up_dev : s->dev)->up->max_connections);
        s->up = NULL;
        s->refs--; /* the pool owns it now; the session's tio or timer close holds it */
    }
}

static void prx_enter_state(struct prx_session *s, enum prx_state st)
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
static void prx_send(struct prx_session *s, const char *text, size_t len)
{
    if (s->client_gone || s->closing) {
        return;
    }
    if (tio_write(s->tio, text, len) < 0 || tio_flush(s->tio) < 0) {
        prx_close(s, "write failed");
    }
}

static void prx_reply(struct prx_session *s, enum reply_id id)
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
    if (s->env->metrics) {
        s->env->metrics->sessions_active--;
    }
    prx_conf_release(s->pc);
    free(s->bodybuf);
    free(s->rcpts);
    free(s->rq);
    free(s);
}

static void prx_unref_env(struct prx_session *s)
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

static void prx_log_message(struct prx_session *s, const char *status, const char *reply,
                            size_t rlen)
{
    char q[600];
    struct metrics *m = s->env->metrics;

    if (m) {
        if (strcmp(status, "sent") == 0) {
            m->messages_sent++;
            m->bytes_total += s->dec.size;
            m->recipients_total += s->nrcpt;
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
             "status=%s reply=\"%s\"",
             (unsigned long long)s->qid, s->from, s->nrcpt, (unsigned long long)s->dec.size,
             s->dev ? s->dev->name : "-",
             s->route ? s->route->cred.user : (s->dev ? s->dev->user : "-"),
             s->route ? " route=" : "", s->route ? s->route->cred.name : "",
             s->rw_from ? " rewrite=from" : "", s->up ? up_where(s->up) : "-", status,
             log_quote(reply, rlen, q, sizeof(q)));
}

static void prx_close(struct prx_session *s, const char *reason)
{
    if (s->closing) {
        return;
    }
    s->closing = 1;
    log_info(s->sid, "prx", "event=disconnect client=%s reason=\"%s\" messages=%u", s->ip, reason,
             s->nmsg);
    if (s->spw && s->state != PRX_STATE_SPOOL_WAIT) {
        /* an unfinished message: nothing was acknowledged, nothing may stay */
        up_spool_abort(s->spw);
        s->spw = NULL;
        s->refs--; /* the timer's close is pending: refs stays above zero */
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

static void prx_txn_reset(struct prx_session *s);

/* A transaction ends in a reply of our own (e.g. 451 4.3.0 out of memory). */
static void prx_txn_abort(struct prx_session *s, enum reply_id id)
{
    prx_reply(s, id);
    prx_txn_reset(s);
    prx_enter_state(s, PRX_STATE_IDLE);
}

/* The transaction is over (delivered, refused or aborted). */
static void prx_txn_reset(struct prx_session *s)
{
    s->from[0] = '\0';
    s->mail_params[0] = '\0';
    s->nrcpt = 0;
    s->qid = 0;
    s->txn_lost = 0;
    s->body_err = PRX_BODY_OK;
    s->hdr_done = 0;
    s->hdr_eol = 2; /* the body starts at the beginning of a line */
    s->route = NULL;
    s->orig_from[0] = '\0';
    s->rw_from = 0;
    s->hdr_hold = 0;
    free(s->hbuf);
    s->hbuf = NULL;
    s->hlen = s->hcap = 0;
    memset(&s->dec, 0, sizeof(s->dec));
    free(s->bodybuf);
    s->bodybuf = NULL;
    if (s->spw) {
        up_spool_abort(s->spw);
        s->spw = NULL;
        s->refs--; /* the writer's hold; the session is alive (this is its code) */
    }
    s->spool_err = 0;
    s->txn_local = 0;
    s->bp_spool = 0;
    s->reply_after_commit = 0;
    free(s->rcpts);
    free(s->rq);
    s->rcpts = NULL;
    s->rq = NULL;
    s->nrcpts = s->rcap = 0;
}

/* A wait for upstream ended: continue with pipelined input. */
static void prx_continue(struct prx_session *s)
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

static void prx_drop_up(struct prx_session *s)
{
    if (s->up) {
        up_close(s->up);
        s->up = NULL;
    }
    s->up_txn = 0;
}

/* An up_* call returned < 0: it had no effect and nothing will answer it
 * (up_session.h), so answer the client now. 0: the answer comes later. */
static void prx_up_check(struct prx_session *s, int r, enum prx_state waiting)
{
    char buf[300];
    size_t n;

    (void)waiting;
    if (r >= 0) {
        return;
    }
    n = reply_upstream(buf, sizeof(buf), RELAY_E_PROTOCOL, up_where(s->up),
                       "session not ready for the command");
    prx_drop_up(s);
    prx_send(s, buf, n);
    prx_txn_reset(s);
    prx_enter_state(s, PRX_STATE_IDLE);
}

/* ---- spool ---- */

static int prx_queue_mode(const struct prx_session *s)
{
    return s->env->queue && s->dev && s->dev->on_failure == CONF_ON_FAILURE_QUEUE;
}

static int prx_spool_mode(const struct prx_session *s)
{
    return s->env->queue && s->dev && s->dev->mode == CONF_MODE_SPOOL;
}

/* max_spool_size: would `more` bytes still fit? */
static int prx_spool_room(const struct prx_session *s, uint64_t more)
{
    uint64_t max = s->conf->max_spool_size;
    return max == 0 || up_queue_bytes(s->env->queue) + more <= max;
}

static int prx_rcpt_add(struct prx_session *s, const char *addr, int queued)
{
    if (s->nrcpts == s->rcap) {
        size_t ncap = s->rcap ? s->rcap * 2 : 4;
        void *a = realloc(s->rcpts, ncap * sizeof(*s->rcpts));
        unsigned char *b;
        if (!a) {
            return -1;
        }
        s->rcpts = a;
        if (!(b = realloc(s->rq, ncap))) {
            return -1;
        }
        s->rq = b;
        s->rcap = ncap;
    }
    snprintf(s->rcpts[s->nrcpts], PRX_PATH_MAX, "%s", addr);
    s->rq[s->nrcpts++] = (unsigned char)queued;
    return 0;
}

static size_t prx_count_queued(const struct prx_session *s, int queued)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nrcpts; i++) {
        n += s->rq[i] == queued;
    }
    return n;
}

/* on_upstream_failure = queue: upstream trouble turns this transaction into a
 * spooled one; every recipient accepted so far goes to the spool. */
static void prx_go_local(struct prx_session *s, const char *why)
{
    char q[600];
    log_info(s->sid, "prx", "qid=%016llx event=queue_fallback reason=\"%s\"",
             (unsigned long long)s->qid, log_quote(why, strlen(why), q, sizeof(q)));
    s->txn_local = 1;
    for (size_t i = 0; i < s->nrcpts; i++) {
        s->rq[i] = 1;
    }
    prx_drop_up(s);
}

static void prx_send_text(struct prx_session *s, const char *text)
{
    prx_send(s, text, strlen(text));
}

/* on_upstream_failure = queue: the pending RCPT is accepted for the spool. */
static void prx_rcpt_queue(struct prx_session *s, const char *reply)
{
    if (prx_rcpt_add(s, s->rcpt, 1) != 0) {
        prx_reply(s, REPLY_NOMEM);
    } else {
        s->nrcpt++;
        prx_send_text(s, reply);
    }
    prx_enter_state(s, PRX_STATE_TXN);
}

static void prx_spool_drain(void *arg)
{
    struct prx_session *s = arg;
    if (s->bp_spool && !s->closing) {
        s->bp_spool = 0;
        prx_continue(s);
    }
}

static void prx_spool_done(void *arg, int err, uint64_t size)
{
    struct prx_session *s = arg;
    char buf[300], q[300];
    int reply = s->reply_after_commit && !s->closing && !s->client_gone;

    s->spw = NULL;
    if (err == 0) {
        up_queue_add(s->env->queue, s->qid, size);
        s->nmsg++;
        log_info(s->sid, "prx", "qid=%016llx from=<%s> nrcpt=%zu size=%llu device=%s status=queued",
                 (unsigned long long)s->qid, s->from, s->nrcpts, (unsigned long long)size,
                 s->dev ? s->dev->name : "-");
        snprintf(buf, sizeof(buf), "250 2.0.0 Ok: queued as %016llx\r\n",
                 (unsigned long long)s->qid);
    } else {
        const char *t = err == UV_ENOSPC || err == -EDQUOT || err == UV_EFBIG
                            ? "452 4.3.1 Insufficient system storage: the spool is full\r\n"
                            : "451 4.3.0 Local error: the message could not be spooled\r\n";
        log_err(s->sid, "prx", "qid=%016llx event=spool_failed error=\"%s\" status=deferred",
                (unsigned long long)s->qid, log_quote(uv_strerror(err), 100, q, sizeof(q)));
        snprintf(buf, sizeof(buf), "%s", t);
        if (s->env->metrics) {
            s->env->metrics->messages_deferred++;
        }
    }
    if (reply) {
        prx_send_text(s, buf);
    }
    if (s->state == PRX_STATE_SPOOL_WAIT) {
        prx_txn_reset(s);
        if (!s->closing) {
            prx_enter_state(s, PRX_STATE_IDLE);
        }
        prx_continue(s);
    }
    prx_unref_env(s); /* the writer's hold */
}

static const struct up_spool_writer_cbs prx_spool_cbs = {
    .on_drain = prx_spool_drain,
    .on_done = prx_spool_done,
};

/* Starts writing this message to the spool (alongside upstream when tee). */
static int prx_spool_open(struct prx_session *s)
{
    s->spw = up_spool_writer_new(s->env->loop, s->conf->spool_dir, s->qid, &prx_spool_cbs, s);
    if (!s->spw) {
        return -1;
    }
    s->refs++;
    return 0;
}

/* The body is complete: commit it with all recipients, or only those upstream
 * did not take. reply_after: the client's DATA reply waits for the result. */
static void prx_spool_commit(struct prx_session *s, int only_queued, int reply_after)
{
    struct up_spool_env env;
    char(*list)[UP_SPOOL_ADDR_MAX] = NULL;
    size_t n = 0;
    const char *v;
    size_t vl;

    memset(&env, 0, sizeof(env));
    env.created = (uint64_t)time(NULL);
    snprintf(env.device, sizeof(env.device), "%s", s->dev->name);
    snprintf(env.user, sizeof(env.user), "%s", s->route ? s->route->cred.user : s->dev->user);
    snprintf(env.route, sizeof(env.route), "%s", s->route ? s->route->cred.name : "");
    snprintf(env.client, sizeof(env.client), "%s", s->ip);
    snprintf(env.helo, sizeof(env.helo), "%s", s->helo);
    if (prx_cmd_param(s->mail_params, strlen(s->mail_params), "BODY", &v, &vl)) {
        snprintf(env.body, sizeof(env.body), "%.*s", (int)vl, v);
    }
    snprintf(env.from, sizeof(env.from), "%s", s->from);
    list = malloc((s->nrcpts ? s->nrcpts : 1) * sizeof(*list));
    for (size_t i = 0; list && i < s->nrcpts; i++) {
        if (!only_queued || s->rq[i]) {
            memcpy(list[n++], s->rcpts[i], UP_SPOOL_ADDR_MAX);
        }
    }
    env.rcpt = list;
    env.nrcpt = n;
    s->reply_after_commit = reply_after;
    prx_enter_state(s, PRX_STATE_SPOOL_WAIT);
    if (!list || n == 0) {
        up_spool_abort(s->spw);
        s->spw = NULL;
        free(list);
        prx_spool_done(s, UV_ENOMEM, 0); /* drops the writer's hold */
        return;
    }
    up_spool_commit(s->spw, &env); /* formats env at once: list can go */
    free(list);
}

/* DATA for a spool-only transaction: 354 from us. */
static void prx_data_local(struct prx_session *s)
{
    if (s->nrcpts == 0) {
        prx_reply(s, REPLY_NO_VALID_RCPT);
        return;
    }
    if (prx_spool_open(s) != 0) {
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    prx_body_start(s);
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
    if (prx_queue_mode(s) && prx_spool_room(s, 0)) {
        buf[n > 2 ? n - 2 : n] = '\0';
        prx_go_local(s, buf);
        prx_send_text(s, "250 2.1.0 Ok (upstream unavailable: the message will be queued)\r\n");
        prx_enter_state(s, PRX_STATE_TXN);
        prx_continue(s);
        return;
    }
    prx_log_message(s, "deferred", buf, n > 2 ? n - 2 : n);
    prx_send(s, buf, n);
    prx_txn_reset(s);
    prx_enter_state(s, PRX_STATE_IDLE);
    prx_continue(s);
}

static void prx_up_reply(void *arg, const struct up_reply *r)
{
    struct prx_session *s = arg;
    int ok = r->code >= 200 && r->code < 300;

    if (s->closing && s->state != PRX_STATE_DOT_WAIT) {
        return;
    }
    switch (s->state) {
    case PRX_STATE_MAIL_WAIT:
        if (r->code == 421 && s->up_reused) {
            /* a pooled session the upstream is closing: nothing was sent, try afresh */
            prx_drop_up(s);
            s->up_reused = 0;
            prx_start_mail(s, 0);
            return;
        }
        if (r->code >= 400 && r->code < 500 && prx_queue_mode(s) && prx_spool_room(s, 0)) {
            char line[600];
            snprintf(line, sizeof(line), "%.*s", (int)(r->len - 2), r->text);
            prx_go_local(s, line);
            prx_send_text(s, "250 2.1.0 Ok (upstream deferred: the message will be queued)\r\n");
            prx_enter_state(s, PRX_STATE_TXN);
            break;
        }
        prx_send(s, r->text, r->len);
        if (ok) {
            s->up_txn = 1;
            prx_enter_state(s, PRX_STATE_TXN);
        } else {
            prx_log_message(s, r->code >= 500 ? "bounced" : "deferred", r->text, r->len - 2);
            prx_txn_reset(s);
            prx_enter_state(s, PRX_STATE_IDLE);
        }
        break;
    case PRX_STATE_RCPT_WAIT:
        if (r->code >= 400 && r->code < 500 && prx_queue_mode(s)) {
            prx_rcpt_queue(s, "250 2.1.5 Ok (upstream deferred it: queued)\r\n");
            break;
        }
        if (ok) {
            s->nrcpt++;
            if (prx_queue_mode(s) && prx_rcpt_add(s, s->rcpt, 0) != 0) {
                s->nrcpt--;
                prx_reply(s, REPLY_NOMEM);
                prx_enter_state(s, PRX_STATE_TXN);
                break;
            }
        } else {
            char q[600];
            log_info(s->sid, "prx", "qid=%016llx to=<%s> status=%s reply=\"%s\"",
                     (unsigned long long)s->qid, s->rcpt, r->code >= 500 ? "bounced" : "deferred",
                     log_quote(r->text, r->len - 2, q, sizeof(q)));
        }
        prx_send(s, r->text, r->len);
        prx_enter_state(s, PRX_STATE_TXN);
        break;
    case PRX_STATE_DATA_WAIT:
        if (r->code >= 400 && r->code < 500 && prx_queue_mode(s)) {
            char line[600];
            snprintf(line, sizeof(line), "%.*s", (int)(r->len - 2), r->text);
            prx_go_local(s, line);
            prx_data_local(s);
            break;
        }
        if (r->code == 354) {
            /* on_upstream_failure = queue: the body goes to the spool too, so a
             * later 4xx can still be answered with 250 */
            if (prx_queue_mode(s) && prx_spool_open(s) != 0) {
                prx_drop_up(s);
                prx_txn_abort(s, REPLY_NOMEM);
                break;
            }
            prx_body_start(s);
            break;
        }
        {
            if (r->code >= 300) {
                prx_log_message(s, r->code >= 500 ? "bounced" : "deferred", r->text, r->len - 2);
            }
            prx_send(s, r->text, r->len);
            prx_txn_reset(s);
            prx_enter_state(s, PRX_STATE_IDLE);
            if (s->up) {
                /* keep upstream in step; its reply to our own RSET is not relayed */
                s->rset_silent = 1;
                prx_enter_state(s, PRX_STATE_RSET_WAIT);
                prx_up_check(s, up_rset(s->up), PRX_STATE_RSET_WAIT);
                return;
            }
        }
        break;
    case PRX_STATE_DOT_WAIT:
        if (s->env->metrics) {
            metrics_observe(&s->env->metrics->upstream_delivery,
                            (double)(uv_now(s->env->loop) - s->dot_ms) / 1000.0);
        }
        if (s->spw && !s->closing) {
            /* tee: the spool copy decides what upstream did not take */
            if (r->code >= 400 && r->code < 500) {
                char line[600];
                snprintf(line, sizeof(line), "%.*s", (int)(r->len - 2), r->text);
                prx_go_local(s, line);
                prx_spool_commit(s, 0, 1);
                return;
            }
            s->up_txn = 0;
            if (ok && prx_count_queued(s, 1) > 0) {
                /* the rest, deferred at RCPT, goes to the queue; the client's 250
                 * waits until that copy is on disk (a failure there is a 4xx) */
                prx_log_message(s, "sent", r->text, r->len - 2);
                prx_spool_commit(s, 1, 1);
                return;
            }
            /* upstream took it all, or refused the content for good: no copy */
            up_spool_abort(s->spw);
            s->spw = NULL;
            s->refs--;
        }
        s->nmsg++;
        prx_log_message(s,
                        ok               ? "sent"
                        : r->code >= 500 ? "bounced"
                                         : "deferred",
                        r->text, r->len - 2);
        prx_send(s, r->text, r->len);
        prx_txn_reset(s);
        s->up_txn = 0; /* end of data closes the transaction upstream */
        if (s->closing) {
            if (s->up) {
                up_quit(s->up);
                s->up = NULL;
            }
            return;
        }
        prx_enter_state(s, PRX_STATE_IDLE);
        break;
    case PRX_STATE_RSET_WAIT:
        if (!s->rset_silent) {
            prx_reply(s, REPLY_RSET);
        }
        s->rset_silent = 0;
        s->up_txn = 0;
        if (!ok) {
            prx_drop_up(s);
        }
        prx_enter_state(s, PRX_STATE_IDLE);
        break;
    case PRX_STATE_PROXY:
    case PRX_STATE_TLS:
    case PRX_STATE_AUTH:
    case PRX_STATE_AUTH_WAIT:
    case PRX_STATE_REFUSED:
    case PRX_STATE_IDLE:
    case PRX_STATE_SLOT_WAIT:
    case PRX_STATE_CONNECT:
    case PRX_STATE_TXN:
    case PRX_STATE_BODY:
    case PRX_STATE_SPOOL_WAIT:
    case PRX_STATE_CLOSING:
        return;
    }
    prx_continue(s);
}

static void prx_up_fail(void *arg, int err, const char *detail, int cmd_pending)
{
    struct prx_session *s = arg;
    char buf[700];
    size_t n;
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
    int fallback =
        prx_queue_mode(s) && s->qid && !s->txn_local && !s->closing &&
        (s->state == PRX_STATE_TXN || s->state == PRX_STATE_MAIL_WAIT ||
         s->state == PRX_STATE_RCPT_WAIT || s->state == PRX_STATE_DATA_WAIT ||
         (s->state == PRX_STATE_BODY && s->spw) || (s->state == PRX_STATE_DOT_WAIT && s->spw));

    n = reply_upstream(buf, sizeof(buf), err, s->up ? up_where(s->up) : "?", detail);
    memcpy(s->upfail, buf, n + 1);
    if (!fallback && (s->state == PRX_STATE_DOT_WAIT || s->state == PRX_STATE_BODY)) {
        prx_log_message(s, "deferred", buf, n - 2);
    }
    s->up = NULL;
    if (s->closing) {
        return;
    }
    if (fallback) {
        buf[n > 2 ? n - 2 : n] = '\0';
        prx_go_local(s, buf);
        switch (s->state) {
        case PRX_STATE_MAIL_WAIT:
            prx_send_text(s, "250 2.1.0 Ok (upstream unavailable: the message will be queued)\r\n");
            prx_enter_state(s, PRX_STATE_TXN);
            break;
        case PRX_STATE_RCPT_WAIT:
            prx_rcpt_queue(s, "250 2.1.5 Ok (upstream unavailable: queued)\r\n");
            break;
        case PRX_STATE_DATA_WAIT:
            prx_data_local(s);
            break;
        case PRX_STATE_DOT_WAIT:
            prx_spool_commit(s, 0, 1);
            return;
        default:
            s->bp = 0; /* BODY: go on reading into the spool only */
            break;
        }
        prx_continue(s);
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
    case PRX_STATE_SLOT_WAIT:
    case PRX_STATE_CONNECT:
    case PRX_STATE_SPOOL_WAIT:
        return; /* nothing was in flight: the next MAIL opens a new session */
    case PRX_STATE_TXN:
        /* the transaction is gone upstream; tell the client at its next command */
        s->txn_lost = 1;
        return;
    case PRX_STATE_BODY:
        /* keep reading the client's body (paused or not) to answer at its end */
        s->body_err = PRX_BODY_UPSTREAM;
        s->bp = 0;
        break;
    case PRX_STATE_MAIL_WAIT:
    case PRX_STATE_RCPT_WAIT:
    case PRX_STATE_DATA_WAIT:
    case PRX_STATE_DOT_WAIT:
        prx_send(s, buf, n);
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_IDLE);
        break;
    case PRX_STATE_RSET_WAIT:
        if (!s->rset_silent) {
            prx_reply(s, REPLY_RSET);
        }
        s->rset_silent = 0;
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_IDLE);
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

/* ---- commands ---- */

static void prx_cmd_helo(struct prx_session *s, const struct prx_cmd *c, int esmtp)
{
    char buf[512];
    int n;

    if (c->arglen == 0) {
        prx_reply(s, REPLY_HELO_NEEDS_ARG);
        return;
    }
    if (s->state == PRX_STATE_TXN) {
        /* RFC 5321 §4.1.4: EHLO resets the transaction */
        prx_drop_up(s);
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_IDLE);
    }
    snprintf(s->helo, sizeof(s->helo), "%.*s", (int)c->arglen, c->arg);
    for (char *p = s->helo; *p; p++) {
        if ((unsigned char)*p < 0x21 || *p == 0x7f || *p == '(' || *p == ')') {
            *p = '_'; /* it goes into a header comment */
        }
    }
    s->esmtp = esmtp;
    s->need_helo = 0;
    if (!esmtp) {
        n = snprintf(buf, sizeof(buf), "250 %s\r\n", s->conf->hostname);
    } else {
        n = snprintf(buf, sizeof(buf),
                     "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n250-8BITMIME\r\n"
                     "250-ENHANCEDSTATUSCODES\r\n%s%s250 HELP\r\n",
                     s->conf->hostname, (unsigned long long)s->conf->max_message_size,
                     s->conf->tls_cert && !tio_tls_active(s->tio) ? "250-STARTTLS\r\n" : "",
                     prx_auth_offered(s) && !s->authed ? "250-AUTH PLAIN LOGIN\r\n" : "");
    }
    if (n > 0 && (size_t)n < sizeof(buf)) {
        prx_send(s, buf, (size_t)n);
    }
}

/* Vets ESMTP parameters: known ones are kept for upstream when it supports
 * them, unknown ones refused (RFC 5321 §4.1.1.11: 555). Returns 0 or -1. */
static int prx_mail_params(struct prx_session *s, const char *p, size_t len)
{
    size_t o = 0;

    s->mail_params[0] = '\0';
    while (len > 0) {
        size_t i = 0, kl;
        while (i < len && p[i] != ' ' && p[i] != '\t') {
            i++;
        }
        kl = 0;
        while (kl < i && p[kl] != '=') {
            kl++;
        }
        if ((kl == 4 && strncasecmp(p, "SIZE", 4) == 0) ||
            (kl == 4 && strncasecmp(p, "BODY", 4) == 0)) {
            if (o + i + 2 >= sizeof(s->mail_params)) {
                return -1;
            }
            if (o) {
                s->mail_params[o++] = ' ';
            }
            memcpy(s->mail_params + o, p, i);
            o += i;
            s->mail_params[o] = '\0';
        } else if (i > 0) {
            return -1;
        }
        while (i < len && (p[i] == ' ' || p[i] == '\t')) {
            i++;
        }
        p += i;
        len -= i;
    }
    return 0;
}

/* What upstream gets of the vetted parameters, by its EHLO keywords. */
static void prx_params_for_up(struct prx_session *s, char *out, size_t cap)
{
    unsigned ext = s->up ? up_ext(s->up) : 0;
    const char *v;
    size_t vl, o = 0;
    size_t pl = strlen(s->mail_params);

    out[0] = '\0';
    if ((ext & UP_EXT_SIZE) && prx_cmd_param(s->mail_params, pl, "SIZE", &v, &vl)) {
        o += (size_t)snprintf(out + o, cap - o, "SIZE=%.*s", (int)vl, v);
    }
    if ((ext & UP_EXT_8BITMIME) && prx_cmd_param(s->mail_params, pl, "BODY", &v, &vl) && o < cap) {
        snprintf(out + o, cap - o, "%sBODY=%.*s", o ? " " : "", (int)vl, v);
    }
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

    prx_enter_state(s, PRX_STATE_MAIL_WAIT);
    prx_params_for_up(s, params, sizeof(params));
    prx_up_check(s, up_mail(s->up, s->from, params), PRX_STATE_MAIL_WAIT);
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
    const struct conf_device *d = s->route ? &s->route->cred : s->dev;
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

/* allowed_senders / allowed_recipients refusal: 550 5.7.1 with the reason. */
static void prx_policy_refuse(struct prx_session *s, const char *what, const char *addr)
{
    char buf[PRX_PATH_MAX + 200];
    int n = snprintf(buf, sizeof(buf), "550 5.7.1 %s <%s> not allowed for device %s\r\n", what,
                     addr, s->dev->name);

    log_info(s->sid, "prx", "event=policy_refused device=%s %s=<%s>", s->dev->name,
             what[0] == 'S' ? "from" : "to", addr);
    if (s->env->metrics) {
        s->env->metrics->policy_refused_total++;
    }
    if (n > 0 && (size_t)n < sizeof(buf)) {
        prx_send(s, buf, (size_t)n);
    }
}

/* One token from the device's bucket, or 450 4.7.1 with a retry hint. */
static int prx_rate_take(struct prx_session *s, struct auth_bucket *buckets,
                         const struct conf_rate *rate, const char *name)
{
    uint64_t retry = 0;
    char buf[300];
    int n;

    if (rate->count == 0 || !buckets ||
        auth_bucket_take(&buckets[s->devidx], rate->count, rate->per_seconds, 1,
                         uv_now(s->env->loop), &retry)) {
        return 1;
    }
    log_info(s->sid, "prx", "event=rate_limited device=%s limit=%s rate=%u/%us", s->dev->name, name,
             rate->count, rate->per_seconds);
    if (s->env->metrics) {
        s->env->metrics->rate_limited_total++;
    }
    n = snprintf(buf, sizeof(buf),
                 "450 4.7.1 Rate limit %s (%u per %u s) exceeded for device %s, try again in "
                 "%llu s\r\n",
                 name, rate->count, rate->per_seconds, s->dev->name,
                 (unsigned long long)(retry / 1000 + 1));
    if (n > 0 && (size_t)n < sizeof(buf)) {
        prx_send(s, buf, (size_t)n);
    }
    return 0;
}

static void prx_cmd_mail(struct prx_session *s, const struct prx_cmd *c)
{
    const char *params, *v;
    size_t plen, vl;
    int r = prx_cmd_path(c->arg, c->arglen, "FROM", s->from, sizeof(s->from), &params, &plen);

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
    if (prx_mail_params(s, params, plen) < 0) {
        prx_reply(s, REPLY_BAD_PARAM);
        s->from[0] = '\0';
        return;
    }
    if (prx_cmd_param(s->mail_params, strlen(s->mail_params), "SIZE", &v, &vl)) {
        unsigned long long sz = strtoull(v, NULL, 10);
        if (sz > s->conf->max_message_size) {
            prx_reply(s, REPLY_TOO_BIG);
            s->from[0] = '\0';
            return;
        }
    }
    if (!conf_patterns_match(&s->dev->allowed_senders, s->from)) {
        prx_policy_refuse(s, "Sender", s->from);
        s->from[0] = '\0';
        return;
    }
    if (!prx_rate_take(s, s->pc->msg_buckets, &s->dev->message_rate, "message_rate")) {
        s->from[0] = '\0';
        return;
    }
    /* policy and rate limits judge what the device sent; upstream sees the rewrite;
     * the null sender stays: bounces must not bounce (RFC 5321 §4.5.5) */
    if (s->dev->rewrite_sender && s->from[0]) {
        memcpy(s->orig_from, s->from, sizeof(s->orig_from));
        snprintf(s->from, sizeof(s->from), "%s", s->dev->rewrite_sender);
        s->rw_from = 1;
    }
    s->route = conf_route_for(s->conf, s->dev, s->from);
    s->qid = up_queue_new_id();
    s->nrcpt = 0;
    if (prx_spool_mode(s)) {
        unsigned long long sz = 0;
        if (prx_cmd_param(s->mail_params, strlen(s->mail_params), "SIZE", &v, &vl)) {
            sz = strtoull(v, NULL, 10);
        }
        if (!prx_spool_room(s, sz)) {
            prx_send_text(s, "452 4.3.1 Insufficient system storage: the spool is full\r\n");
            prx_txn_reset(s);
            return;
        }
        s->txn_local = 1;
        prx_send_text(s, "250 2.1.0 Ok\r\n");
        prx_enter_state(s, PRX_STATE_TXN);
        return;
    }
    prx_start_mail(s, 1);
}

static void prx_cmd_rcpt(struct prx_session *s, const struct prx_cmd *c)
{
    const char *params;
    size_t plen;
    int r;

    if (s->txn_lost) {
        prx_send(s, s->upfail, strlen(s->upfail));
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_IDLE);
        return;
    }
    r = prx_cmd_path(c->arg, c->arglen, "TO", s->rcpt, sizeof(s->rcpt), &params, &plen);
    if (r == PRX_PATH_TOO_LONG) {
        prx_reply(s, REPLY_PATH_TOO_LONG);
        return;
    }
    if (r != PRX_PATH_OK || s->rcpt[0] == '\0') {
        prx_reply(s, REPLY_SYNTAX_PATH);
        return;
    }
    if (plen > 0) {
        prx_reply(s, REPLY_BAD_PARAM);
        return;
    }
    if (s->conf->max_recipients && s->nrcpt >= s->conf->max_recipients) {
        prx_reply(s, REPLY_TOO_MANY_RCPT);
        return;
    }
    if (!conf_patterns_match(&s->dev->allowed_recipients, s->rcpt)) {
        prx_policy_refuse(s, "Recipient", s->rcpt);
        return;
    }
    if (!prx_rate_take(s, s->pc->rcpt_buckets, &s->dev->recipient_rate, "recipient_rate")) {
        return;
    }
    if (s->txn_local) {
        if (prx_rcpt_add(s, s->rcpt, 1) != 0) {
            prx_reply(s, REPLY_NOMEM);
            return;
        }
        s->nrcpt++;
        prx_send_text(s, "250 2.1.5 Ok\r\n");
        return;
    }
    prx_enter_state(s, PRX_STATE_RCPT_WAIT);
    prx_up_check(s, up_rcpt(s->up, s->rcpt, NULL), PRX_STATE_RCPT_WAIT);
}

static void prx_cmd_data(struct prx_session *s, const struct prx_cmd *c)
{
    (void)c;
    if (s->txn_lost) {
        prx_send(s, s->upfail, strlen(s->upfail));
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_IDLE);
        return;
    }
    if (s->nrcpt == 0) {
        prx_reply(s, REPLY_NO_VALID_RCPT);
        return;
    }
    if (s->txn_local) {
        prx_data_local(s);
        return;
    }
    if (prx_queue_mode(s) && prx_count_queued(s, 0) == 0) {
        /* upstream deferred every recipient: all of it goes to the spool */
        prx_go_local(s, "upstream deferred every recipient");
        prx_data_local(s);
        return;
    }
    prx_enter_state(s, PRX_STATE_DATA_WAIT);
    prx_up_check(s, up_data(s->up), PRX_STATE_DATA_WAIT);
}

static void prx_cmd_rset(struct prx_session *s, const struct prx_cmd *c)
{
    (void)c;
    if (s->state == PRX_STATE_TXN && s->up && up_idle(s->up)) {
        prx_txn_reset(s);
        prx_enter_state(s, PRX_STATE_RSET_WAIT);
        prx_up_check(s, up_rset(s->up), PRX_STATE_RSET_WAIT);
        return;
    }
    prx_txn_reset(s);
    if (s->state == PRX_STATE_TXN) {
        prx_enter_state(s, PRX_STATE_IDLE);
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

/* ---- inbound TLS (RFC 3207) and AUTH (RFC 4954) ---- */

static const char prx_334_empty[] = "334 \r\n";
static const char prx_334_user[] = "334 VXNlcm5hbWU6\r\n"; /* "Username:" */
static const char prx_334_pass[] = "334 UGFzc3dvcmQ6\r\n"; /* "Password:" */

/* The Received: protocol name (RFC 3848). */
static const char *prx_with(const struct prx_session *s)
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
static int prx_auth_offered(const struct prx_session *s)
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
static void prx_auth_end(struct prx_session *s)
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
static void prx_auth_line(struct prx_session *s, const char *line, size_t len)
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
            prx_send(s, prx_334_pass, sizeof(prx_334_pass) - 1);
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

static void prx_cmd_auth(struct prx_session *s, const struct prx_cmd *c)
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
        prx_send(s, prx_334_user, sizeof(prx_334_user) - 1);
    } else {
        prx_send(s, prx_334_empty, sizeof(prx_334_empty) - 1);
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
        prx_reply(s, REPLY_NOT_IMPL); /* EXPN, STARTTLS, AUTH, BDAT */
    }
}

/* ---- the body ---- */

/* 354 sent: the body streams to upstream, to the spool, or to both. */
static void prx_body_start(struct prx_session *s)
{
    s->bodybuf = malloc(3 * PRX_BODY_STEP);
    if (!s->bodybuf) {
        prx_drop_up(s);
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    data_dec_init(&s->dec);
    s->hdr_done = 0;
    s->hdr_eol = 2;
    s->hdr_size = 0;
    data_enc_init(&s->enc);
    s->hdr_hold = s->rw_from && s->dev->rewrite_from_header;
    prx_reply(s, REPLY_DATA);
    prx_enter_state(s, PRX_STATE_BODY);
    if (s->conf->received_header) {
        char hdr[600], date[64];
        time_t now = time(NULL);
        struct tm tm;
        int n;
        localtime_r(&now, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
        /* RFC 5321 §4.1.3: IPv6 address literals carry the "IPv6:" tag */
        n = snprintf(hdr, sizeof(hdr),
                     "Received: from %s ([%s%s])\r\n\tby %s (relay25) with %s id "
                     "%016llx;\r\n\t%s\r\n",
                     s->helo[0] ? s->helo : "unknown", strchr(s->ip, ':') ? "IPv6:" : "", s->ip,
                     s->conf->hostname, prx_with(s), (unsigned long long)s->qid, date);
        if (n > 0 && (size_t)n < sizeof(hdr)) {
            if (s->up && !s->txn_local) {
                up_body(s->up, hdr, (size_t)n);
            }
            if (s->spw && up_spool_write(s->spw, hdr, (size_t)n) < 0) {
                s->spool_err = 1;
            }
        }
    }
}

static void prx_body_end(struct prx_session *s)
{
    size_t len;
    const char *t;
    if (s->body_err == PRX_BODY_OK && s->spw && s->spool_err &&
        (s->txn_local || !s->up || prx_count_queued(s, 1) > 0)) {
        /* recipients promised to the queue cannot be served: refuse it all (4xx) */
        s->body_err = PRX_BODY_SPOOL;
        prx_drop_up(s);
    }
    if (s->body_err == PRX_BODY_OK && s->txn_local) {
        free(s->bodybuf);
        s->bodybuf = NULL;
        prx_spool_commit(s, 0, 1);
        return;
    }
    if (s->body_err == PRX_BODY_OK && s->spw && s->spool_err) {
        /* tee: the spool copy failed; upstream alone decides */
        up_spool_abort(s->spw);
        s->spw = NULL;
        s->refs--;
    }
    switch (s->body_err) {
    case PRX_BODY_OK: {
        char term[8];
        size_t n = data_enc_finish(&s->enc, term);
        free(s->bodybuf);
        s->bodybuf = NULL;
        s->dot_ms = uv_now(s->env->loop);
        prx_enter_state(s, PRX_STATE_DOT_WAIT);
        /* the verdict arrives via prx_up_reply / prx_up_fail */
        int r = up_body(s->up, term, n);
        prx_up_check(s, r < 0 ? r : up_data_end(s->up), PRX_STATE_DOT_WAIT);
        return;
    }
    case PRX_BODY_TOO_BIG:
        t = reply_canned(REPLY_TOO_BIG, &len);
        break;
    case PRX_BODY_BARE_LF:
        t = reply_canned(REPLY_BARE_LF, &len);
        break;
    case PRX_BODY_HEADER_TOO_BIG:
        t = reply_canned(REPLY_HEADER_TOO_BIG, &len);
        break;
    case PRX_BODY_SPOOL:
        t = "452 4.3.1 Insufficient system storage: the spool cannot take the message\r\n";
        len = strlen(t);
        break;
    case PRX_BODY_UPSTREAM:
    default:
        t = s->upfail;
        len = strlen(s->upfail);
        break;
    }
    if (s->body_err != PRX_BODY_UPSTREAM) {
        prx_log_message(s, t[0] == '5' ? "bounced" : "deferred", t, len - 2);
    }
    prx_send(s, t, len);
    prx_txn_reset(s);
    prx_enter_state(s, PRX_STATE_IDLE);
}

/* Finds the empty line that ends the header section (RFC 5322 §2.1) in decoded
 * content, whose line ends are always CRLF. hdr_eol: 0 in a line, 1 after its
 * CR, 2 at the start of a line, 3 after a CR at the start of a line. */
static size_t prx_scan_header(struct prx_session *s, const char *p, size_t n)
{
    int st = s->hdr_eol;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\r') {
            st = st == 2 ? 3 : 1;
        } else if (ch == '\n' && st == 3) {
            s->hdr_done = 1;
            s->hdr_size += i + 1;
            return i + 1;
        } else {
            st = ch == '\n' && st == 1 ? 2 : 0;
        }
    }
    s->hdr_eol = st;
    s->hdr_size += n;
    return n;
}

/* Decoded content on its way out: to the spool copy and, re-encoded in steps the
 * encode buffer holds (2 * PRX_BODY_STEP), upstream. */
static void prx_emit(struct prx_session *s, const char *dec, size_t len)
{
    char *enc = s->bodybuf + PRX_BODY_STEP;

    if (len == 0) {
        return;
    }
    if (s->spw && !s->spool_err && !prx_spool_room(s, up_spool_written(s->spw) + len)) {
        s->spool_err = UV_ENOSPC; /* max_spool_size */
    }
    if (s->spw && !s->spool_err) {
        int r = up_spool_write(s->spw, dec, len);
        if (r < 0) {
            s->spool_err = r;
        } else if (r == 1) {
            s->bp_spool = 1; /* resumed by prx_spool_drain */
        }
    }
    for (size_t o = 0; o < len && s->up && !s->txn_local;) {
        size_t k = len - o < PRX_BODY_STEP ? len - o : PRX_BODY_STEP;
        size_t n = data_enc_feed(&s->enc, dec + o, k, enc);
        up_body(s->up, enc, n); /* a failure arrives as prx_up_fail */
        o += k;
    }
}

/* Appends to a header output buffer; -1 when it would not fit. */
static int prx_hput(char *out, size_t cap, size_t *o, const char *p, size_t n)
{
    if (n > cap - *o) {
        return -1;
    }
    memcpy(out + *o, p, n);
    *o += n;
    return 0;
}

/* 1 when the field at p (a header line start) is named `name` (RFC 5322 §2.2:
 * name, optional blanks (obsolete syntax), colon). */
static int prx_field_is(const char *p, const char *end, const char *name)
{
    size_t nl = strlen(name);

    if ((size_t)(end - p) < nl || strncasecmp(p, name, nl) != 0) {
        return 0;
    }
    for (p += nl; p < end && (*p == ' ' || *p == '\t'); p++) {
    }
    return p < end && *p == ':';
}

/* The held header section with From: rewritten to rewrite_sender, the display name
 * kept ("Scanner" <scan@lan> -> "Scanner" <office@example.com>; a bare address
 * becomes the new address; folded values are unfolded), and Reply-To: with the
 * original address after it unless the message has one. Emitted at once; the
 * section as held when anything does not parse or fit. */
static void prx_rewrite_header(struct prx_session *s)
{
    const char *h = s->hbuf, *end = s->hbuf + s->hlen;
    const char *from = NULL, *from_end = NULL, *p;
    int has_reply_to = 0;
    size_t cap = s->hlen + 2 * PRX_PATH_MAX + 64, o = 0;
    char *out;
    char orig[PRX_PATH_MAX];

    /* fields: a line not starting with a blank, plus its continuation lines */
    for (p = h; p < end;) {
        const char *f = p;
        const char *eol;

        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            break; /* the empty line that ends the section */
        }
        do {
            eol = memchr(p, '\n', (size_t)(end - p));
            p = eol ? eol + 1 : end;
        } while (p < end && (*p == ' ' || *p == '\t'));
        if (!from && prx_field_is(f, p, "From")) {
            from = f;
            from_end = p;
        } else if (prx_field_is(f, p, "Reply-To")) {
            has_reply_to = 1;
        }
    }
    out = from ? malloc(cap) : NULL;
    if (!out) {
        prx_emit(s, s->hbuf, s->hlen);
        return;
    }
    {
        /* unfold (RFC 5322 §2.2.3) the value into val, then split at the '<' of
         * the first angle address outside quotes */
        char val[1000 + PRX_PATH_MAX];
        size_t vl = 0;
        const char *v = memchr(from, ':', (size_t)(from_end - from)) + 1;
        const char *lt = NULL, *gt = NULL;
        int inq = 0;

        for (; v < from_end && vl < sizeof(val) - 1; v++) {
            if (*v != '\r' && *v != '\n') {
                val[vl++] = *v == '\t' ? ' ' : *v;
            }
        }
        val[vl] = '\0';
        for (size_t i = 0; i < vl; i++) {
            if (val[i] == '\\' && inq && i + 1 < vl) {
                i++;
            } else if (val[i] == '"') {
                inq = !inq;
            } else if (val[i] == '<' && !inq && !lt) {
                lt = val + i;
            } else if (val[i] == '>' && lt && !gt) {
                gt = val + i;
            }
        }
        if (lt && gt) {
            const char *a = val, *b = lt;
            while (a < b && *a == ' ') {
                a++;
            }
            while (b > a && b[-1] == ' ') {
                b--;
            }
            snprintf(orig, sizeof(orig), "%.*s", (int)(gt - lt - 1), lt + 1);
            if (prx_hput(out, cap, &o, h, (size_t)(from - h)) < 0 ||
                prx_hput(out, cap, &o, "From: ", 6) < 0 ||
                prx_hput(out, cap, &o, a, (size_t)(b - a)) < 0 ||
                (b > a && prx_hput(out, cap, &o, " ", 1) < 0) ||
                prx_hput(out, cap, &o, "<", 1) < 0 ||
                prx_hput(out, cap, &o, s->dev->rewrite_sender, strlen(s->dev->rewrite_sender)) <
                    0 ||
                prx_hput(out, cap, &o, ">\r\n", 3) < 0) {
                o = SIZE_MAX;
            }
        } else {
            /* addr-spec alone, possibly with a trailing comment: the address is the
             * first word */
            const char *a = val;
            while (*a == ' ') {
                a++;
            }
            snprintf(orig, sizeof(orig), "%.*s", (int)strcspn(a, " ,("), a);
            if (prx_hput(out, cap, &o, h, (size_t)(from - h)) < 0 ||
                prx_hput(out, cap, &o, "From: ", 6) < 0 ||
                prx_hput(out, cap, &o, s->dev->rewrite_sender, strlen(s->dev->rewrite_sender)) <
                    0 ||
                prx_hput(out, cap, &o, "\r\n", 2) < 0) {
                o = SIZE_MAX;
            }
        }
    }
    if (!orig[0]) {
        /* From: without an address: the envelope sender is the one to answer */
        snprintf(orig, sizeof(orig), "%s", s->orig_from);
    }
    if (o != SIZE_MAX && !has_reply_to && orig[0] &&
        (prx_hput(out, cap, &o, "Reply-To: <", 11) < 0 ||
         prx_hput(out, cap, &o, orig, strlen(orig)) < 0 ||
         prx_hput(out, cap, &o, ">\r\n", 3) < 0)) {
        o = SIZE_MAX;
    }
    if (o != SIZE_MAX && prx_hput(out, cap, &o, from_end, (size_t)(end - from_end)) < 0) {
        o = SIZE_MAX;
    }
    if (o == SIZE_MAX) {
        prx_emit(s, s->hbuf, s->hlen);
    } else {
        prx_emit(s, out, o);
    }
    free(out);
}

/* Holds header bytes for the rewrite; at the end of the section (or of a message
 * without body) rewrites and emits them. Beyond max_header_size (1 MiB when that
 * is 0: unlimited) the message goes out as sent. */
static void prx_hold_header(struct prx_session *s, const char *p, size_t n, int end)
{
    size_t limit = s->conf->max_header_size ? (size_t)s->conf->max_header_size : (1u << 20);

    if (s->hlen + n > s->hcap) {
        size_t ncap = s->hcap ? s->hcap : 8192;
        char *nb;

        while (ncap < s->hlen + n) {
            ncap *= 2;
        }
        if (ncap > limit + PRX_BODY_STEP) {
            ncap = limit + PRX_BODY_STEP;
        }
        nb = s->hlen + n <= ncap ? realloc(s->hbuf, ncap) : NULL;
        if (!nb) {
            /* not rewritten: out as sent */
            prx_emit(s, s->hbuf, s->hlen);
            prx_emit(s, p, n);
            s->hdr_hold = 0;
            return;
        }
        s->hbuf = nb;
        s->hcap = ncap;
    }
    memcpy(s->hbuf + s->hlen, p, n);
    s->hlen += n;
    if (end) {
        prx_rewrite_header(s);
        s->hdr_hold = 0;
        free(s->hbuf);
        s->hbuf = NULL;
        s->hlen = s->hcap = 0;
    }
}

/* Decode, check, re-encode and forward one step of body bytes. Returns input consumed. */
static size_t prx_body(struct prx_session *s, const char *data, size_t len)
{
    char *dec = s->bodybuf;
    size_t in = len < PRX_BODY_STEP / 2 ? len : PRX_BODY_STEP / 2;
    size_t outlen = 0, c, hl = 0;
    int done = 0;

    c = data_dec_feed(&s->dec, data, in, dec, PRX_BODY_STEP, &outlen, &done);
    if (!s->hdr_done) {
        hl = prx_scan_header(s, dec, outlen);
    }
    if (s->body_err == PRX_BODY_OK) {
        if (s->dec.size > s->conf->max_message_size) {
            s->body_err = PRX_BODY_TOO_BIG;
        } else if (s->conf->max_header_size && s->hdr_size > s->conf->max_header_size) {
            s->body_err = PRX_BODY_HEADER_TOO_BIG;
        } else if (s->dec.bare_seen && s->conf->bare_lf == CONF_BARE_LF_REJECT) {
            s->body_err = PRX_BODY_BARE_LF;
        }
        if (s->body_err != PRX_BODY_OK) {
            prx_drop_up(s); /* no final dot: upstream discards the partial message */
        } else if (s->hdr_hold) {
            /* rewrite_from_header: the header section waits, the rest streams */
            prx_hold_header(s, dec, hl, s->hdr_done || done);
            prx_emit(s, dec + hl, outlen - hl);
        } else {
            prx_emit(s, dec, outlen);
        }
    }
    if (done) {
        prx_body_end(s);
    }
    return c;
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
                break;
            }
            if (s->bp_spool) {
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
        /* input: the idle timer starts again */
        prx_arm_timer(s);
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
    char buf[300];
    size_t n = reply_timeout(buf, sizeof(buf), s->conf->hostname);

    if (s->state == PRX_STATE_CLOSING) {
        prx_close(s, "close timeout");
        return;
    }
    if (s->state == PRX_STATE_TLS) {
        log_info(s->sid, "prx", "event=timeout client=%s state=tls", s->ip);
        prx_close(s, "TLS handshake timeout");
        return;
    }
    log_info(s->sid, "prx", "event=timeout client=%s state=%s limit=%s", s->ip,
             prx_strstate(s->state),
             s->conf->session_timeout &&
                     uv_now(s->env->loop) >= s->start_ms + s->conf->session_timeout * 1000ull
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

/* The client's address is known (socket or PROXY header): refuse, limit or greet. */
static void prx_greet(struct prx_session *s, const struct sockaddr_storage *ss)
{
    char buf[600];
    size_t n;
    const char *why = NULL;
    const struct conf *c = s->conf;

    prx_set_peer(s, ss);
    if (ss != &s->peer) {
        s->peer = *ss;
    }
    if (!auth_map_allowed(c, (const struct sockaddr *)ss)) {
        why = "not in allow";
    } else if (!(s->dev = auth_map_lookup(c, (const struct sockaddr *)ss)) && c->nusers == 0) {
        /* with users_file, AUTH may still give the client a [device] (login = ...) */
        why = "no [device] matches and there is no [device default]";
    }
    if (why) {
        log_info(s->sid, "prx", "event=refused client=%s port=%u reason=\"%s\"", s->ip, s->port,
                 why);
        if (s->env->metrics) {
            s->env->metrics->refused_total++;
        }
        n = reply_refused(buf, sizeof(buf), c->hostname, s->ip, why);
        prx_enter_state(s, PRX_STATE_REFUSED);
        prx_send(s, buf, n);
        return;
    }
    s->devidx = s->dev ? (size_t)(s->dev - c->devices) : 0;
    if ((c->max_connections && s->env->nsessions > c->max_connections) ||
        (c->max_connections_per_ip && prx_count_ip(s) > c->max_connections_per_ip)) {
        int total = c->max_connections && s->env->nsessions > c->max_connections;
        log_info(s->sid, "prx", "event=limited client=%s limit=%s", s->ip,
                 total ? "max_connections" : "max_connections_per_ip");
        if (s->env->metrics) {
            s->env->metrics->limited_total++;
        }
        n = (size_t)snprintf(buf, sizeof(buf),
                             "421 4.7.0 %s Error: too many connections%s, try again later\r\n",
                             c->hostname, total ? "" : " from your address");
        prx_send(s, buf, n);
        prx_finish(s);
        return;
    }
    log_info(s->sid, "prx", "event=connect client=%s port=%u device=%s user=%s", s->ip, s->port,
             s->dev ? s->dev->name : "-", s->dev ? s->dev->user : "-");
    n = (size_t)snprintf(buf, sizeof(buf), "220 %s ESMTP relay25\r\n", c->hostname);
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
        int r = s->conf->tls_cert
                    ? tio_starttls_server(s->tio, s->conf->tls_cert, s->conf->tls_min_version)
                    : UV_EINVAL;
        prx_set_peer(s, &ss);
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

struct prx_conf *prx_conf_new(struct conf *c)
{
    struct prx_conf *pc = calloc(1, sizeof(*pc));

    if (!pc) {
        return NULL;
    }
    pc->c = c;
    pc->refs = 1;
    if (c->ndevices > 0) {
        pc->msg_buckets = calloc(c->ndevices, sizeof(*pc->msg_buckets));
        pc->rcpt_buckets = calloc(c->ndevices, sizeof(*pc->rcpt_buckets));
        if (!pc->msg_buckets || !pc->rcpt_buckets) {
            free(pc->msg_buckets);
            free(pc->rcpt_buckets);
            free(pc);
            return NULL;
        }
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];
        auth_bucket_init(&pc->msg_buckets[i], d->message_rate.count, d->message_rate.per_seconds,
                         0);
        auth_bucket_init(&pc->rcpt_buckets[i], d->recipient_rate.count,
                         d->recipient_rate.per_seconds, 0);
    }
    return pc;
}

void prx_conf_hold(struct prx_conf *pc)
{
    pc->refs++;
}

void prx_conf_release(struct prx_conf *pc)
{
    if (!pc || --pc->refs > 0) {
        return;
    }
    conf_release(pc->c);
    free(pc->msg_buckets);
    free(pc->rcpt_buckets);
    free(pc);
}
