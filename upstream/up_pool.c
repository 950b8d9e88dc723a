/* up_pool: a list of idle, authenticated up_sessions (most recently used
 * first) with one timer for the idle timeout; per upstream address its slot
 * count and FIFO line of waiting requests, one timer for their wait limits and
 * a zero timer that serves them outside callers' stacks. The pool owns a
 * pooled session's callbacks, and a new session's until it is ready. */
#include "upstream/up_pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_caps.h"
#include "upstream/up_tlscache.h"

struct up_pool_entry {
    struct up_pool_entry *prev, *next;
    struct up_pool *pool;
    struct up_session *s;
    uint64_t since_ms;
    int closing; /* QUIT sent, waiting for on_close */
};

/* A pending request: in its upstream's line, or while a new session is being
 * set up for it (cancelling frees it at once in both cases). */
struct up_acquire_wait {
    struct up_acquire_wait *prev, *next;
    struct up_pool *pool;
    struct up_acquire *req;
    const struct conf_upstream *const *ups;
    size_t nups, upi; /* the list and the upstream tried now */
    size_t dest;      /* index of ups[upi]'s address in the pool's list (never shrinks) */
    int queued, fresh;
    uint64_t deadline_ms;     /* while queued */
    uint64_t start_ms;        /* while a session is set up */
    struct up_session *setup; /* the new session being set up for it, or NULL */
};

/* Connection slots of one upstream address, and who waits for one. */
struct up_pool_dest {
    char where[300];
    unsigned used; /* live sessions holding a slot */
    struct up_acquire_wait *wh, *wt;
};

struct up_pool {
    struct up_tlscache *tls;
    struct up_caps *caps; /* what each address offered in its last EHLO */
    uv_loop_t *loop;
    uv_timer_t timer; /* idle timeout */
    uv_timer_t kick;  /* hands freed slots and sessions to waiters, outside callers' stacks */
    uv_timer_t wait;  /* the earliest wait limit of a queued request */
    struct metrics *m;
    uint64_t idle_ms;
    struct up_pool_entry *head;
    unsigned n; /* entries, closing ones included */
    struct up_pool_dest *dests;
    size_t ndests;
    unsigned nslots, nwait; /* over all dests */
    int closing, handles_open;
};

static void up_pool_maybe_free(struct up_pool *p)
{
    /* a session holding a slot gives it back here when freed: wait for it */
    if (p->closing && p->handles_open == 0 && p->n == 0 && p->nslots == 0) {
        up_tlscache_free(p->tls);
        up_caps_free(p->caps);
        free(p->dests);
        free(p);
    }
}

static void up_pool_kick_cb(uv_timer_t *t);

static void up_pool_kick(struct up_pool *p)
{
    if (p->nwait && !p->closing) {
        uv_timer_start(&p->kick, up_pool_kick_cb, 0, 0);
    }
}

static struct up_pool_dest *up_pool_dest_find(const struct up_pool *p, const char *where)
{
    for (size_t i = 0; i < p->ndests; i++) {
        if (strcmp(p->dests[i].where, where) == 0) {
            return &p->dests[i];
        }
    }
    return NULL;
}

struct up_tlscache *up_pool_tlscache(struct up_pool *p)
{
    return p->tls;
}

const struct up_caps *up_pool_caps(const struct up_pool *p)
{
    return p ? p->caps : NULL;
}

static void up_pool_unlink(struct up_pool_entry *e)
{
    struct up_pool *p = e->pool;
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        p->head = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    }
    p->n--;
}

static void up_pool_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    (void)arg, (void)err, (void)r, (void)detail; /* pooled sessions are ready already */
}

static void up_pool_on_reply(void *arg, const struct up_reply *r)
{
    (void)arg, (void)r;
}

/* The upstream closed an idle session (timeout, restart): it leaves the pool. */
static void up_pool_on_fail(void *arg, int err, const char *detail, int pending)
{
    struct up_pool_entry *e = arg;
    (void)err, (void)detail, (void)pending;
    e->closing = 1;
}

static void up_pool_on_close(void *arg)
{
    struct up_pool_entry *e = arg;
    struct up_pool *p = e->pool;

    up_pool_unlink(e);
    free(e);
    up_pool_kick(p); /* room may have been made for a waiter */
    up_pool_maybe_free(p);
}

static const struct up_cbs up_pool_cbs = {
    .on_ready = up_pool_on_ready,
    .on_reply = up_pool_on_reply,
    .on_fail = up_pool_on_fail,
    .on_drain = NULL,
    .on_close = up_pool_on_close,
};

static void up_pool_orphan_close(void *arg)
{
    (void)arg;
}

static void up_pool_orphan_fail(void *arg, int err, const char *detail, int pending)
{
    (void)arg, (void)err, (void)detail, (void)pending;
}

/* For a session the pool closes without keeping: nobody is told anything. */
static const struct up_cbs up_pool_orphan_cbs = {
    .on_ready = up_pool_on_ready,
    .on_reply = up_pool_on_reply,
    .on_fail = up_pool_orphan_fail,
    .on_drain = NULL,
    .on_close = up_pool_orphan_close,
};

static void up_pool_retire(struct up_pool_entry *e)
{
    if (e->closing) {
        return;
    }
    e->closing = 1;
    up_quit(e->s); /* on_close frees the entry */
}

static void up_pool_arm(struct up_pool *p);

static void up_pool_timer_cb(uv_timer_t *t)
{
    struct up_pool *p = t->data;
    uint64_t now = uv_now(p->loop);

    for (struct up_pool_entry *e = p->head, *next; e; e = next) {
        next = e->next;
        if (!e->closing && now - e->since_ms >= p->idle_ms) {
            up_pool_retire(e);
        }
    }
    up_pool_arm(p);
}

static void up_pool_arm(struct up_pool *p)
{
    uint64_t now = uv_now(p->loop), first = UINT64_MAX;

    if (p->closing) {
        return;
    }
    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        if (!e->closing && e->since_ms + p->idle_ms < first) {
            first = e->since_ms + p->idle_ms;
        }
    }
    if (first == UINT64_MAX) {
        uv_timer_stop(&p->timer);
    } else {
        uv_timer_start(&p->timer, up_pool_timer_cb, first > now ? first - now : 0, 0);
    }
}

struct up_pool *up_pool_new(uv_loop_t *loop, unsigned idle_seconds)
{
    struct up_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    if (!(p->tls = up_tlscache_new(loop)) || !(p->caps = up_caps_new())) {
        if (p->tls) {
            up_tlscache_free(p->tls);
        }
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->idle_ms = (uint64_t)idle_seconds * 1000u;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_init(loop, &p->kick);
    p->kick.data = p;
    uv_timer_init(loop, &p->wait);
    p->wait.data = p;
    p->handles_open = 3;
    return p;
}

/* An idle session for this identity, now owned by (cbs, arg), or NULL. */
static struct up_session *up_pool_take(struct up_pool *p, const struct conf_upstream *up,
                                       const char *user, const char *password,
                                       const struct up_cbs *cbs, void *arg, uint64_t sid)
{
    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        struct up_session *s = e->s;
        if (e->closing || !up_idle(s) || !up_session_same(s, up, user, password)) {
            continue;
        }
        up_pool_unlink(e);
        free(e);
        up_session_rebind(s, cbs, arg, sid);
        log_debug(sid, "up", "relay=%s event=reuse", up_where(s));
        up_pool_arm(p);
        return s;
    }
    return NULL;
}

void up_pool_put(struct up_pool *p, struct up_session *s, unsigned cap)
{
    struct up_pool_entry *e;
    unsigned same = 0; /* from here on the pool owns s, whatever happens to it */
    if (!p->closing && up_idle(s)) {
        for (e = p->head; e; e = e->next) {
            same += !e->closing && strcmp(up_where(e->s), up_where(s)) == 0;
        }
    }
    if (p->closing || !up_idle(s) || same >= cap || !(e = calloc(1, sizeof(*e)))) {
        up_session_rebind(s, &up_pool_orphan_cbs, NULL, 0);
        up_quit(s);
        return;
    }
    e->pool = p;
    e->s = s;
    e->since_ms = uv_now(p->loop);
    e->next = p->head;
    if (p->head) {
        p->head->prev = e;
    }
    p->head = e;
    p->n++;
    up_session_rebind(s, &up_pool_cbs, e, 0);
    up_pool_arm(p);
    up_pool_kick(p);
}

static void up_pool_timer_closed(uv_handle_t *h)
{
    struct up_pool *p = h->data;
    p->handles_open--;
    up_pool_maybe_free(p);
}

/* ---- connection slots and requests ---- */

static void up_pool_wait_arm(struct up_pool *p);

void up_pool_set_metrics(struct up_pool *p, struct metrics *m)
{
    p->m = m;
}

static const struct conf_upstream *up_pool_wait_up(const struct up_acquire_wait *w)
{
    return w->ups[w->upi];
}

static struct up_pool_dest *up_pool_dest_get(struct up_pool *p, const struct conf_upstream *up)
{
    char where[sizeof(p->dests[0].where)];
    struct up_pool_dest *d;

    up_where_of(up, where, sizeof(where));
    if ((d = up_pool_dest_find(p, where))) {
        return d;
    }
    d = realloc(p->dests, (p->ndests + 1) * sizeof(*d));
    if (!d) {
        return NULL;
    }
    p->dests = d;
    d = &p->dests[p->ndests++];
    memset(d, 0, sizeof(*d));
    snprintf(d->where, sizeof(d->where), "%s", where);
    return d;
}

/* At the tail; a fresh retry (its pooled session died while it was being
 * served) keeps its turn at the head. */
static void up_pool_enqueue(struct up_pool *p, struct up_pool_dest *d, struct up_acquire_wait *w)
{
    if (w->fresh && d->wh) {
        w->prev = NULL;
        w->next = d->wh;
        d->wh->prev = w;
        d->wh = w;
    } else {
        w->next = NULL;
        w->prev = d->wt;
        if (d->wt) {
            d->wt->next = w;
        } else {
            d->wh = w;
        }
        d->wt = w;
    }
    w->dest = (size_t)(d - p->dests);
    w->queued = 1;
    w->deadline_ms = uv_now(p->loop) + (uint64_t)w->req->wait_seconds * 1000u;
    p->nwait++;
    if (d->wh != w || d->used >= up_pool_wait_up(w)->max_connections) {
        log_debug(w->req->sid, "up",
                  "relay=%s event=slot_wait used=%u max_connections=%u waiting=%u", d->where,
                  d->used, up_pool_wait_up(w)->max_connections, p->nwait);
    }
    up_pool_wait_arm(p);
    /* the kick decides: an idle session may be just what a waiter wants, so
     * only when none does is one closed to make room (up_pool_serve_one) */
    up_pool_kick(p);
}

static void up_pool_dequeue(struct up_pool *p, struct up_pool_dest *d, struct up_acquire_wait *w)
{
    if (w->prev) {
        w->prev->next = w->next;
    } else {
        d->wh = w->next;
    }
    if (w->next) {
        w->next->prev = w->prev;
    } else {
        d->wt = w->prev;
    }
    w->prev = w->next = NULL;
    w->queued = 0;
    p->nwait--;
}

/* The request is answered: its wait ends, then on_done runs (last: it may
 * free or reuse req). */
static void up_pool_done(struct up_acquire_wait *w, struct up_session *s, int err,
                         const struct up_reply *r, const char *detail)
{
    struct up_acquire *req = w->req;

    free(w);
    req->pool_wait = NULL;
    req->on_done(req, s, err, r, detail);
}

static void up_pool_result(struct up_acquire_wait *w)
{
    struct up_acquire *req = w->req;

    req->up = up_pool_wait_up(w);
    up_where_of(req->up, req->where, sizeof(req->where));
}

/* All slots of d are busy and someone waits: if idle sessions of d are only
 * for other identities, close the oldest one so its slot comes free (one at
 * a time; its close kicks the waiters again). */
static void up_pool_make_room(struct up_pool *p, const struct up_pool_dest *d)
{
    struct up_pool_entry *old = NULL;

    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        if (strcmp(up_where(e->s), d->where) != 0) {
            continue;
        }
        if (e->closing) {
            return;
        }
        old = e; /* the list is most recent first */
    }
    if (old) {
        log_debug(0, "up", "relay=%s event=pool_evict reason=slot_wanted", d->where);
        up_pool_retire(old);
    }
}

/* A slot of d for whoever asks, if one is free (any while the pool closes). */
static int up_pool_slot_take(struct up_pool *p, struct up_pool_dest *d, unsigned cap)
{
    if (!p->closing && d->used >= cap) {
        return 0;
    }
    d->used++;
    p->nslots++;
    return 1;
}

static void up_pool_slot_free(void *pool, const char *where)
{
    struct up_pool *p = pool;
    struct up_pool_dest *d = up_pool_dest_find(p, where);

    if (d && d->used > 0) {
        d->used--;
        p->nslots--;
        up_pool_kick(p);
    }
    up_pool_maybe_free(p);
}

/* ---- a new session, owned by the pool until it is ready ---- */

/* Resolve, connect, TLS, greeting, EHLO: failures of the address, not of the
 * identity, so the next upstream of the list may do better. */
static int up_pool_unreachable(int err)
{
    switch (err) {
    case RELAY_E_RESOLVE:
    case RELAY_E_CONNECT:
    case RELAY_E_TIMEOUT:
    case RELAY_E_TLS:
    case RELAY_E_CERT:
    case RELAY_E_NO_STARTTLS:
    case RELAY_E_STARTTLS_REFUSED:
    case RELAY_E_REFUSED:
    case RELAY_E_PROTOCOL:
    case RELAY_E_LOST:
        return 1;
    default:
        return 0;
    }
}

/* Hands s to the request's owner. */
static void up_pool_hand(struct up_acquire_wait *w, struct up_session *s, int reused)
{
    struct up_acquire *req = w->req;
    struct up_pool *p = w->pool;

    req->reused = reused;
    req->setup_ms = reused ? 0 : uv_now(p->loop) - w->start_ms;
    if (p->m && reused) {
        p->m->upstream_reused++;
    }
    up_pool_result(w);
    up_session_rebind(s, req->cbs, req->arg, req->sid);
    up_pool_done(w, s, 0, NULL, NULL);
}

static void up_pool_setup_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    struct up_acquire_wait *w = arg;
    struct up_pool *p = w->pool;
    struct up_session *s = w->setup;

    w->setup = NULL;
    if (err == 0) {
        struct up_ehlo e;
        /* remembered for sessions not yet open (EHLO SIZE to devices) */
        up_session_ehlo(s, &e);
        up_caps_put(p->caps, up_where(s), &e);
        up_pool_hand(w, s, 0);
        return;
    }
    if (p->m) {
        metrics_upstream_error(p->m, err);
    }
    if (up_pool_unreachable(err) && w->upi + 1 < w->nups && !p->closing) {
        struct up_pool_dest *d;
        char from[300];

        up_where_of(up_pool_wait_up(w), from, sizeof(from));
        if ((d = up_pool_dest_get(p, w->ups[w->upi + 1]))) {
            w->upi++;
            w->fresh = 0;
            log_info(w->req->sid, "up", "relay=%s event=failover error=%s next=%s", from,
                     reply_err_name(err), d->where);
            up_pool_enqueue(p, d, w);
            return;
        }
    }
    up_pool_result(w);
    up_pool_done(w, NULL, err, r, detail);
}

static void up_pool_setup_reply(void *arg, const struct up_reply *r)
{
    (void)arg, (void)r; /* no command is sent before ready */
}

static void up_pool_setup_fail(void *arg, int err, const char *detail, int pending)
{
    (void)arg, (void)err, (void)detail, (void)pending; /* only after ready: never here */
}

static void up_pool_setup_close(void *arg)
{
    (void)arg; /* a failed set-up: the request was answered by on_ready */
}

static const struct up_cbs up_pool_setup_cbs = {
    .on_ready = up_pool_setup_ready,
    .on_reply = up_pool_setup_reply,
    .on_fail = up_pool_setup_fail,
    .on_drain = NULL,
    .on_close = up_pool_setup_close,
};

/* A slot of w's upstream is w's: open a new session in it. */
static void up_pool_open(struct up_pool *p, struct up_acquire_wait *w)
{
    struct up_acquire *req = w->req;
    struct up_params prm;
    struct up_session *s;

    up_params_for(&prm, req->dev, req->conf, req->sid);
    prm.up = up_pool_wait_up(w);
    prm.oauth = req->oauth;
    prm.tls_cache = p->tls;
    prm.on_free = up_pool_slot_free;
    prm.free_arg = p;
    w->start_ms = uv_now(p->loop);
    if (!(s = up_session_new(p->loop, &prm, &up_pool_setup_cbs, w))) {
        up_pool_slot_free(p, p->dests[w->dest].where);
        up_pool_result(w);
        up_pool_done(w, NULL, RELAY_E_NOMEM, NULL, "out of memory");
        return;
    }
    log_debug(req->sid, "up", "relay=%s event=session_open", up_where(s));
    if (p->m) {
        p->m->upstream_connections++;
    }
    w->setup = s;
    if (up_session_start(s) < 0) { /* a new session cannot refuse: nothing follows */
        w->setup = NULL;
        up_close(s); /* frees the slot */
        up_pool_result(w);
        up_pool_done(w, NULL, RELAY_E_PROTOCOL, NULL, "session could not start");
    }
}

/* Serves d's waiters while it can: first whoever has an idle session of its
 * identity, then the head of the line with a free slot. 1: one was served
 * (its callback may have run, so d may have moved). */
static int up_pool_serve_one(struct up_pool *p, size_t di)
{
    struct up_pool_dest *d = &p->dests[di];
    struct up_acquire_wait *w;
    struct up_session *s = NULL;

    for (w = d->wh; w; w = w->next) {
        const struct conf_device *dev = w->req->dev;
        if (!w->fresh && (s = up_pool_take(p, up_pool_wait_up(w), dev->user, dev->password,
                                           w->req->cbs, w->req->arg, w->req->sid))) {
            break;
        }
    }
    if (!w && up_pool_slot_take(p, d, up_pool_wait_up(d->wh)->max_connections)) {
        w = d->wh;
    }
    if (!w) {
        up_pool_make_room(p, d);
        return 0;
    }
    up_pool_dequeue(p, d, w);
    up_pool_wait_arm(p);
    if (s) {
        up_pool_hand(w, s, 1);
    } else {
        up_pool_open(p, w);
    }
    return 1;
}

static void up_pool_kick_cb(uv_timer_t *t)
{
    struct up_pool *p = t->data;

    for (size_t i = 0; i < p->ndests; i++) {
        while (p->dests[i].wh && up_pool_serve_one(p, i)) {
        }
    }
}

/* The oldest queued request past its wait limit, or NULL. */
static struct up_acquire_wait *up_pool_expired(struct up_pool *p, uint64_t now, uint64_t *next)
{
    *next = UINT64_MAX;
    for (size_t i = 0; i < p->ndests; i++) {
        for (struct up_acquire_wait *w = p->dests[i].wh; w; w = w->next) {
            if (w->deadline_ms <= now) {
                return w;
            }
            if (w->deadline_ms < *next) {
                *next = w->deadline_ms;
            }
        }
    }
    return NULL;
}

static void up_pool_wait_cb(uv_timer_t *t);

static void up_pool_wait_arm(struct up_pool *p)
{
    uint64_t now = uv_now(p->loop), next;

    if (p->closing) {
        return;
    }
    if (up_pool_expired(p, now, &next)) {
        next = now;
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&p->wait);
    } else {
        uv_timer_start(&p->wait, up_pool_wait_cb, next > now ? next - now : 0, 0);
    }
}

/* Every slot of the request's upstream stayed in use for wait_seconds. */
static void up_pool_wait_cb(uv_timer_t *t)
{
    struct up_pool *p = t->data;
    struct up_acquire_wait *w;
    uint64_t next;

    while ((w = up_pool_expired(p, uv_now(p->loop), &next))) {
        char detail[160];
        unsigned cap = up_pool_wait_up(w)->max_connections;

        up_pool_dequeue(p, &p->dests[w->dest], w);
        snprintf(detail, sizeof(detail),
                 "all %u connections (max_connections) stayed in use for %u s", cap,
                 w->req->wait_seconds);
        if (p->m) {
            metrics_upstream_error(p->m, RELAY_E_BUSY);
        }
        up_pool_result(w);
        up_pool_done(w, NULL, RELAY_E_BUSY, NULL, detail);
    }
    up_pool_wait_arm(p);
}

static int up_pool_ask(struct up_pool *p, struct up_acquire *req, int fresh)
{
    struct up_acquire_wait *w;
    struct up_pool_dest *d;

    if (req->pool_wait || !req->dev || !req->conf || !req->on_done || p->closing) {
        return RELAY_E_PROTOCOL;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        return RELAY_E_NOMEM;
    }
    w->pool = p;
    w->req = req;
    w->fresh = fresh;
    if (req->ups && req->nups) {
        w->ups = req->ups;
        w->nups = req->nups;
    } else if (req->dev->nups) {
        w->ups = req->dev->ups;
        w->nups = req->dev->nups;
    } else {
        w->ups = &req->dev->up;
        w->nups = 1;
    }
    if (fresh && req->up) { /* the same upstream as the dead session */
        for (size_t i = 0; i < w->nups; i++) {
            if (w->ups[i] == req->up) {
                w->upi = i;
            }
        }
    }
    if (!(d = up_pool_dest_get(p, up_pool_wait_up(w)))) {
        free(w);
        return RELAY_E_NOMEM;
    }
    req->pool_wait = w;
    req->reused = 0;
    up_pool_enqueue(p, d, w);
    return 0;
}

int up_pool_acquire(struct up_pool *p, struct up_acquire *req)
{
    req->up = NULL;
    return up_pool_ask(p, req, 0);
}

int up_pool_acquire_fresh(struct up_pool *p, struct up_acquire *req)
{
    if (!req->reused) {
        return RELAY_E_PROTOCOL;
    }
    log_debug(req->sid, "up", "relay=%s event=reuse_failed retry=fresh", req->where);
    return up_pool_ask(p, req, 1);
}

void up_pool_acquire_cancel(struct up_pool *p, struct up_acquire *req)
{
    struct up_acquire_wait *w = req->pool_wait;

    if (!w) {
        return;
    }
    req->pool_wait = NULL;
    if (w->queued) {
        up_pool_dequeue(p, &p->dests[w->dest], w);
        free(w);
        up_pool_wait_arm(p);
        return;
    }
    if (w->setup) {
        /* closed, not kept: its upstream's conf may go with the owner, and an
         * up_close()d session calls nothing but on_close (a no-op here) */
        up_close(w->setup);
    }
    free(w);
}

void up_pool_close(struct up_pool *p)
{
    p->closing = 1;
    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        up_pool_retire(e);
    }
    /* nobody should be waiting by now (its owners close first); if so, it ends */
    for (size_t i = 0; i < p->ndests; i++) {
        struct up_acquire_wait *w;
        while ((w = p->dests[i].wh)) {
            up_pool_dequeue(p, &p->dests[i], w);
            up_pool_result(w);
            up_pool_done(w, NULL, RELAY_E_LOST, NULL, "shutting down");
        }
    }
    uv_close((uv_handle_t *)&p->timer, up_pool_timer_closed);
    uv_close((uv_handle_t *)&p->kick, up_pool_timer_closed);
    uv_close((uv_handle_t *)&p->wait, up_pool_timer_closed);
}
