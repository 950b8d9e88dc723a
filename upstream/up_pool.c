/* up_pool: a list of idle, authenticated up_sessions (most recently used
 * first), one timer for the idle timeout. The pool owns a pooled session's
 * callbacks; taking one rebinds them to the new owner. */
#include "upstream/up_pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "upstream/up_tlscache.h"

struct up_pool_entry {
    struct up_pool_entry *prev, *next;
    struct up_pool *pool;
    struct up_session *s;
    uint64_t since_ms;
    int closing; /* QUIT sent, waiting for on_close */
};

/* Connection slots of one upstream address, and who waits for one. */
struct up_pool_dest {
    char where[300];
    unsigned used; /* live sessions holding a slot */
    struct up_pool_wait *wh, *wt;
};

struct up_pool {
    struct up_tlscache *tls;
    uv_loop_t *loop;
    uv_timer_t timer; /* idle timeout */
    uv_timer_t kick;  /* hands freed slots and sessions to waiters, outside callers' stacks */
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
    if (!(p->tls = up_tlscache_new(loop))) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->idle_ms = (uint64_t)idle_seconds * 1000u;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uv_timer_init(loop, &p->kick);
    p->kick.data = p;
    p->handles_open = 2;
    return p;
}

struct up_session *up_pool_take(struct up_pool *p, const struct conf_upstream *up, const char *user,
                                const char *password, const struct up_cbs *cbs, void *arg,
                                uint64_t sid)
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

/* ---- connection slots ---- */

/* At the tail; a fresh retry (its pooled session died while it was being
 * served) keeps its turn at the head. */
static void up_pool_enqueue(struct up_pool *p, struct up_pool_dest *d, struct up_pool_wait *w)
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
    w->queued = 1;
    p->nwait++;
}

static void up_pool_dequeue(struct up_pool *p, struct up_pool_dest *d, struct up_pool_wait *w)
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

/* Serves d's waiters while it can: first whoever has an idle session of its
 * identity, then the head of the line with a free slot. 1: one was served
 * (its callback ran, so d may have moved). */
static int up_pool_serve_one(struct up_pool *p, size_t di)
{
    struct up_pool_dest *d = &p->dests[di];
    struct up_pool_wait *w;
    struct up_session *s = NULL;

    for (w = d->wh; w; w = w->next) {
        if (!w->fresh &&
            (s = up_pool_take(p, w->up, w->user, w->password, w->cbs, w->arg, w->sid))) {
            break;
        }
    }
    if (!w && up_pool_slot_take(p, d, d->wh->cap)) {
        w = d->wh;
    }
    if (!w) {
        up_pool_make_room(p, d);
        return 0;
    }
    up_pool_dequeue(p, d, w);
    w->on_ready(w, s);
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

enum up_pool_got up_pool_get(struct up_pool *p, struct up_pool_wait *w, struct up_session **out)
{
    char where[sizeof(p->dests[0].where)];
    struct up_pool_dest *d;

    *out = NULL;
    if (w->queued) {
        return UP_POOL_WAIT;
    }
    up_where_of(w->up, where, sizeof(where));
    if (!(d = up_pool_dest_find(p, where))) {
        struct up_pool_dest *nd = realloc(p->dests, (p->ndests + 1) * sizeof(*nd));
        if (!nd) {
            return UP_POOL_NOMEM;
        }
        p->dests = nd;
        d = &p->dests[p->ndests++];
        memset(d, 0, sizeof(*d));
        snprintf(d->where, sizeof(d->where), "%s", where);
    }
    if (!d->wh) { /* nobody ahead in the line */
        if (!w->fresh &&
            (*out = up_pool_take(p, w->up, w->user, w->password, w->cbs, w->arg, w->sid))) {
            return UP_POOL_TAKEN;
        }
        if (up_pool_slot_take(p, d, w->cap)) {
            return UP_POOL_SLOT;
        }
    }
    w->dest = (size_t)(d - p->dests);
    up_pool_enqueue(p, d, w);
    log_debug(w->sid, "up", "relay=%s event=slot_wait used=%u max_connections=%u waiting=%u",
              d->where, d->used, w->cap, p->nwait);
    /* the kick decides: an idle session may be just what a waiter wants, so
     * only when none does is one closed to make room (up_pool_serve_one) */
    up_pool_kick(p);
    return UP_POOL_WAIT;
}

void up_pool_cancel(struct up_pool *p, struct up_pool_wait *w)
{
    if (w->queued) {
        up_pool_dequeue(p, &p->dests[w->dest], w);
    }
}

void up_pool_slot_free(void *pool, const char *where)
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

void up_pool_close(struct up_pool *p)
{
    p->closing = 1;
    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        up_pool_retire(e);
    }
    /* nobody should be waiting by now (sessions close first); if so, no limit */
    for (size_t i = 0; i < p->ndests; i++) {
        while (p->dests[i].wh && up_pool_serve_one(p, i)) {
        }
    }
    uv_close((uv_handle_t *)&p->timer, up_pool_timer_closed);
    uv_close((uv_handle_t *)&p->kick, up_pool_timer_closed);
}
