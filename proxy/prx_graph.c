/* prx_graph: the Graph sink (type = graph in passthrough): MAIL and RCPT are
 * answered by us, the body goes to a temp file in the spool's tmp/ (Graph takes a
 * whole MIME message per request, so it must be somewhere bounded first), then
 * up_graph delivers it and Graph's verdict is the client's reply to the final dot.
 * Owns the temp file writer: uv_fs_* with one buffer filling while one is written. */
#include "proxy/prx_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_graph.h"
#include "upstream/up_oauth.h"

#define PRX_GRAPH_BUF (64u * 1024u)

enum prx_graph_step {
    PG_OPEN,    /* uv_fs_open in flight */
    PG_IDLE,    /* open, nothing in flight */
    PG_WRITE,   /* a buffer is being written */
    PG_CLOSE,   /* closing the file */
    PG_UNLINK,  /* removing it */
    PG_DELIVER, /* up_graph runs */
};

struct prx_graph {
    struct prx_session *s; /* NULL once aborted: the file is only cleaned up */
    uv_loop_t *loop;
    uv_fs_t req;
    uv_file fd;
    enum prx_graph_step step;
    int err;      /* first write error (uv) */
    int finish;   /* the body is complete: deliver once all is written */
    int released; /* the session's hold was given back */
    char *fill, *flight;
    size_t fill_len, flight_len;
    size_t fill_cap, flight_cap; /* PRX_GRAPH_BUF, or more for one larger piece */
    uint64_t off;
    char path[4096];
    struct up_graph *graph;
    const char **rcpt;
};

static void prx_graph_next(struct prx_graph *g);

static void prx_graph_free(struct prx_graph *g)
{
    free(g->fill);
    free(g->flight);
    free(g->rcpt);
    free(g);
}

/* The writer is done with the session: the session's hold goes. */
static void prx_graph_release(struct prx_graph *g)
{
    struct prx_session *s = g->s;

    g->s = NULL;
    if (s && !g->released) {
        g->released = 1;
        prx_unref_env(s);
    }
}

static void prx_graph_fs_cb(uv_fs_t *req)
{
    struct prx_graph *g = req->data;
    ssize_t r = req->result;

    uv_fs_req_cleanup(req);
    switch (g->step) {
    case PG_OPEN:
        if (r < 0) {
            g->err = (int)r;
            g->fd = -1;
            g->path[0] = '\0'; /* nothing to remove */
        } else {
            g->fd = (uv_file)r;
        }
        g->step = PG_IDLE;
        break;
    case PG_WRITE:
        if (r < 0) {
            g->err = g->err ? g->err : (int)r;
        } else if ((size_t)r < g->flight_len) {
            /* short write: the rest goes next */
            memmove(g->flight, g->flight + r, g->flight_len - (size_t)r);
            g->flight_len -= (size_t)r;
            g->off += (uint64_t)r;
            uv_buf_t b = uv_buf_init(g->flight, (unsigned)g->flight_len);
            uv_fs_write(g->loop, &g->req, g->fd, &b, 1, (int64_t)g->off, prx_graph_fs_cb);
            return;
        } else {
            g->off += (uint64_t)r;
        }
        g->flight_len = 0;
        g->step = PG_IDLE;
        if (g->s && g->s->txn && g->s->txn->bp_spool && !g->s->closing) {
            g->s->txn->bp_spool = 0;
            prx_continue(g->s);
        }
        break;
    case PG_CLOSE:
        g->fd = -1;
        g->step = PG_IDLE;
        break;
    case PG_UNLINK:
        g->path[0] = '\0';
        g->step = PG_IDLE;
        break;
    case PG_IDLE:
    case PG_DELIVER:
    default:
        abort();
    }
    prx_graph_next(g);
}

static void prx_graph_delivered(void *arg, const struct up_graph_result *r);

/* Starts the delivery once the whole body is on disk. */
static void prx_graph_deliver(struct prx_graph *g)
{
    struct prx_session *s = g->s;
    struct prx_txn *t = s->txn;
    struct up_graph_req rq;
    const struct conf_device *d = t->route ? &t->route->cred : s->dev;

    memset(&rq, 0, sizeof(rq));
    g->rcpt = calloc(t->nrcpts ? t->nrcpts : 1, sizeof(*g->rcpt));
    for (size_t i = 0; g->rcpt && i < t->nrcpts; i++) {
        g->rcpt[i] = t->rcpts[i];
    }
    rq.loop = g->loop;
    rq.up = d->up;
    rq.user = d->user;
    rq.oauth = up_oauth_set_find(s->env->oauth, d);
    rq.path = g->path;
    rq.rcpt = g->rcpt;
    rq.nrcpt = t->nrcpts;
    rq.qid = t->qid;
    rq.timeout = s->conf->data_timeout;
    g->step = PG_DELIVER;
    if (!g->rcpt || !(g->graph = up_graph_send(&rq, prx_graph_delivered, g))) {
        struct up_graph_result res;
        char text[200];
        size_t n = reply_upstream(text, sizeof(text), RELAY_E_NOMEM, "graph",
                                  rq.oauth ? "out of memory" : "no OAuth2 token provider");
        memset(&res, 0, sizeof(res));
        text[n >= 2 ? n - 2 : 0] = '\0';
        res.code = 451;
        res.reply = text;
        prx_graph_delivered(g, &res);
    }
}

/* What is next for the file: write, deliver, close, remove, free. */
static void prx_graph_next(struct prx_graph *g)
{
    if (g->step != PG_IDLE) {
        return;
    }
    if (g->s && !g->err && g->fd >= 0 && g->fill_len > 0) {
        char *t = g->flight;
        size_t tcap = g->flight_cap;
        uv_buf_t b;

        g->flight = g->fill;
        g->flight_len = g->fill_len;
        g->flight_cap = g->fill_cap;
        g->fill = t;
        g->fill_cap = tcap;
        g->fill_len = 0;
        b = uv_buf_init(g->flight, (unsigned)g->flight_len);
        g->step = PG_WRITE;
        uv_fs_write(g->loop, &g->req, g->fd, &b, 1, (int64_t)g->off, prx_graph_fs_cb);
        return;
    }
    if (g->s && g->finish && !g->graph) {
        if (g->err) {
            struct prx_session *s = g->s;
            /* the body could not be stored: nothing was sent, the client retries */
            s->txn->body_err = PRX_BODY_SPOOL;
            s->txn->gw = NULL;
            s->refs++; /* the session lives until its code below has run */
            prx_graph_release(g);
            prx_body_refuse(s);
            prx_continue(s);
            prx_unref_env(s);
        } else {
            prx_graph_deliver(g);
            return;
        }
    }
    if (g->s) {
        return; /* more body to come */
    }
    if (g->fd >= 0) {
        g->step = PG_CLOSE;
        uv_fs_close(g->loop, &g->req, g->fd, prx_graph_fs_cb);
        return;
    }
    if (g->path[0]) {
        g->step = PG_UNLINK;
        uv_fs_unlink(g->loop, &g->req, g->path, prx_graph_fs_cb);
        return;
    }
    prx_graph_free(g);
}

static void prx_graph_delivered(void *arg, const struct up_graph_result *r)
{
    struct prx_graph *g = arg;
    struct prx_session *s = g->s;
    char text[1300];
    int n;

    g->graph = NULL;
    g->step = PG_IDLE;
    if (s && s->txn) {
        n = snprintf(text, sizeof(text), "%s\r\n", r->reply);
        if (n < 0 || (size_t)n >= sizeof(text)) {
            n = (int)sizeof(text) - 1;
            text[n - 2] = '\r';
            text[n - 1] = '\n';
        }
        if (r->code < 300) {
            s->nmsg++;
        }
        if (s->env->metrics) {
            if (r->err) {
                metrics_upstream_error(s->env->metrics, r->err);
            } else if (r->code < 300) {
                metrics_observe(&s->env->metrics->upstream_delivery, (double)r->ms / 1000.0);
            }
        }
        prx_log_message(s,
                        r->code < 300   ? "sent"
                        : r->code < 500 ? "deferred"
                                        : "bounced",
                        text, (size_t)n - 2);
        if (!s->closing && !s->client_gone) {
            prx_send(s, text, (size_t)n);
        }
        s->txn->gw = NULL;
        s->refs++;
        prx_graph_release(g);
        prx_txn_end(s);
        prx_continue(s);
        prx_unref_env(s);
    }
    prx_graph_next(g); /* close and remove the file */
}

int prx_graph_write(struct prx_graph *g, const char *data, size_t len)
{
    if (g->err) {
        return g->err;
    }
    if (len > g->fill_cap - g->fill_len) {
        /* one piece larger than the room left (a held header section): the
         * buffer grows for it and the caller pauses until it is written */
        char *nb = realloc(g->fill, g->fill_len + len);
        if (!nb) {
            g->err = UV_ENOMEM;
            return g->err;
        }
        g->fill = nb;
        g->fill_cap = g->fill_len + len;
    }
    memcpy(g->fill + g->fill_len, data, len);
    g->fill_len += len;
    prx_graph_next(g);
    return g->fill_len >= PRX_GRAPH_BUF ? 1 : 0;
}

/* The body is complete: deliver once it is all on disk. */
void prx_graph_finish(struct prx_graph *g)
{
    g->finish = 1;
    prx_graph_next(g);
}

/* The transaction ended without delivery (or the session closes): no callback
 * comes; the file is closed and removed, a running delivery cancelled. */
void prx_graph_abort(struct prx_graph *g)
{
    g->s = NULL; /* the caller gives the session's hold back itself */
    g->released = 1;
    if (g->graph) {
        up_graph_cancel(g->graph);
        g->graph = NULL;
        g->step = PG_IDLE;
    }
    prx_graph_next(g);
}

/* A temp file in the spool's tmp/ (emptied at every start) for this message. */
struct prx_graph *prx_graph_open(struct prx_session *s)
{
    struct prx_graph *g = calloc(1, sizeof(*g));
    int n;

    if (!g || !(g->fill = malloc(PRX_GRAPH_BUF)) || !(g->flight = malloc(PRX_GRAPH_BUF))) {
        goto fail;
    }
    n = snprintf(g->path, sizeof(g->path), "%s/tmp/%016llx.graph", s->conf->spool_dir,
                 (unsigned long long)s->txn->qid);
    if (n < 0 || (size_t)n >= sizeof(g->path)) {
        goto fail;
    }
    g->fill_cap = g->flight_cap = PRX_GRAPH_BUF;
    g->s = s;
    g->loop = s->env->loop;
    g->fd = -1;
    g->req.data = g;
    g->step = PG_OPEN;
    s->refs++; /* the writer's hold */
    uv_fs_open(g->loop, &g->req, g->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
               prx_graph_fs_cb);
    return g;
fail:
    if (g) {
        free(g->fill);
        free(g->flight);
        free(g);
    }
    return NULL;
}

/* ---- the sink ---- */

static void prx_graph_mail(struct prx_session *s)
{
    prx_reply(s, REPLY_MAIL_OK);
    prx_enter_state(s, PRX_STATE_TXN);
}

static void prx_graph_rcpt(struct prx_session *s)
{
    if (prx_rcpt_add(s, s->txn->rcpt, 0) != 0) {
        prx_reply(s, REPLY_NOMEM);
        return;
    }
    s->txn->nrcpt++;
    prx_reply(s, REPLY_RCPT_OK);
}

static void prx_graph_data(struct prx_session *s)
{
    if (s->txn->nrcpts == 0) {
        prx_reply(s, REPLY_NO_VALID_RCPT);
        return;
    }
    if (!(s->txn->gw = prx_graph_open(s))) {
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    prx_body_start(s);
}

static void prx_graph_body_done(struct prx_session *s)
{
    struct prx_txn *t = s->txn;

    free(t->bodybuf);
    t->bodybuf = NULL;
    /* the client waits for Graph's answer, as for upstream's reply to the dot */
    prx_enter_state(s, PRX_STATE_SPOOL_WAIT);
    prx_graph_finish(t->gw);
}

const struct prx_sink prx_sink_graph = {
    .name = "graph",
    .relays = 0,
    .mail = prx_graph_mail,
    .rcpt = prx_graph_rcpt,
    .data = prx_graph_data,
    .can_queue = prx_no_queue,
    .body_done = prx_graph_body_done,
};
