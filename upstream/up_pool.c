/* up_pool: a list of idle, authenticated up_sessions (most recently used
 * first), one timer for the idle timeout. The pool owns a pooled session's
 * callbacks; taking one rebinds them to the new owner. */
#include "upstream/up_pool.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct up_pool_entry {
    struct up_pool_entry *prev, *next;
    struct up_pool *pool;
    struct up_session *s;
    uint64_t since_ms;
    int closing; /* QUIT sent, waiting for on_close */
};

#define UP_POOL_TLS_MAX 32

struct up_pool_tls {
    char key[400]; /* "where server_name" */
    br_ssl_session_parameters params;
    uint64_t used_ms;
};

struct up_pool {
    struct up_pool_tls tls[UP_POOL_TLS_MAX];
    size_t ntls;
    uv_loop_t *loop;
    uv_timer_t timer;
    uint64_t idle_ms;
    struct up_pool_entry *head;
    unsigned n;     /* entries, closing ones included */
    unsigned nidle; /* entries that can be taken */
    int closing, timer_closed;
};

static void up_pool_maybe_free(struct up_pool *p)
{
    if (p->closing && p->timer_closed && p->n == 0) {
        explicit_bzero(p->tls, sizeof(p->tls)); /* master secrets */
        free(p);
    }
}

static struct up_pool_tls *up_pool_tls_find(struct up_pool *p, const char *key)
{
    for (size_t i = 0; i < p->ntls; i++) {
        if (strcmp(p->tls[i].key, key) == 0) {
            return &p->tls[i];
        }
    }
    return NULL;
}

int up_pool_tls_get(struct up_pool *p, const char *key, br_ssl_session_parameters *out)
{
    struct up_pool_tls *e;

    if (!(e = up_pool_tls_find(p, key))) {
        return -1;
    }
    e->used_ms = uv_now(p->loop);
    *out = e->params;
    return 0;
}

void up_pool_tls_put(struct up_pool *p, const char *key, const br_ssl_session_parameters *params)
{
    struct up_pool_tls *e;

    if (!(e = up_pool_tls_find(p, key))) {
        if (p->ntls < UP_POOL_TLS_MAX) {
            e = &p->tls[p->ntls++];
        } else { /* replace the least recently used */
            e = &p->tls[0];
            for (size_t i = 1; i < p->ntls; i++) {
                if (p->tls[i].used_ms < e->used_ms) {
                    e = &p->tls[i];
                }
            }
        }
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    e->params = *params;
    e->used_ms = uv_now(p->loop);
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
    if (!e->closing) {
        p->nidle--;
    }
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
    if (!e->closing) {
        e->closing = 1;
        e->pool->nidle--;
    }
}

static void up_pool_on_close(void *arg)
{
    struct up_pool_entry *e = arg;
    struct up_pool *p = e->pool;

    up_pool_unlink(e);
    free(e);
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
    e->pool->nidle--;
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
    p->loop = loop;
    p->idle_ms = (uint64_t)idle_seconds * 1000u;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
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
    p->nidle++;
    up_session_rebind(s, &up_pool_cbs, e, 0);
    up_pool_arm(p);
}

unsigned up_pool_size(const struct up_pool *p)
{
    return p->nidle;
}

static void up_pool_timer_closed(uv_handle_t *h)
{
    struct up_pool *p = h->data;
    p->timer_closed = 1;
    up_pool_maybe_free(p);
}

void up_pool_close(struct up_pool *p)
{
    p->closing = 1;
    for (struct up_pool_entry *e = p->head; e; e = e->next) {
        up_pool_retire(e);
    }
    uv_close((uv_handle_t *)&p->timer, up_pool_timer_closed);
}
