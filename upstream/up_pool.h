/* up_pool: authenticated upstream sessions kept after a transaction, so the
 * next transaction with the same identity (address, server name, user,
 * password) skips TCP, TLS and AUTH. Sessions idle longer than the timeout are
 * closed with QUIT; at most `cap` idle sessions per upstream address are kept
 * (the upstream's max_connections). A session that died in the pool leaves it
 * by itself; one that dies just after being taken is the taker's to retry.
 *
 * It also keeps connection slots: inbound transactions (up_pool_get) share at
 * most max_connections live sessions per upstream address, pooled idle ones
 * included, like Postfix's destination concurrency limit; providers refuse
 * more concurrent logins per account. A transaction that finds them all busy
 * waits in FIFO order for one to come back to the pool or to close. */
#ifndef RELAY25_UP_POOL_H
#define RELAY25_UP_POOL_H

#include <stdint.h>

#include <uv.h>

#include "upstream/up_session.h"

struct up_pool;
struct conf_upstream;

struct up_pool *up_pool_new(uv_loop_t *loop, unsigned idle_seconds);
/* An idle session for this identity, now owned by (cbs, arg), or NULL. */
struct up_session *up_pool_take(struct up_pool *p, const struct conf_upstream *up, const char *user,
                                const char *password, const struct up_cbs *cbs, void *arg,
                                uint64_t sid);
/* Give back a ready session with no transaction open upstream. cap: most idle
 * sessions kept for its address; beyond it the session is closed with QUIT. */
void up_pool_put(struct up_pool *p, struct up_session *s, unsigned cap);
/* The TLS session resumption cache shared by the pool's sessions. */
struct up_tlscache *up_pool_tlscache(struct up_pool *p);

/* A transaction's request for an upstream session. The caller fills the
 * first block and keeps the struct alive until on_ready runs or it cancels. */
struct up_pool_wait {
    const struct conf_upstream *up;
    const char *user, *password;
    const struct up_cbs *cbs; /* a pooled session handed over is rebound to these */
    void *arg;
    uint64_t sid;
    unsigned cap; /* the upstream's max_connections */
    int fresh;    /* a new session only: a pooled one just turned out dead */
    /* The wait is over: s is a pooled session now owned by (cbs, arg), or NULL:
     * a slot is held for a new session (up_params.slot_pool). */
    void (*on_ready)(struct up_pool_wait *w, struct up_session *s);
    /* the pool's */
    struct up_pool_wait *prev, *next;
    size_t dest; /* index of its upstream address in the pool's list (never shrinks) */
    int queued;
};

enum up_pool_got {
    UP_POOL_TAKEN, /* *out: an idle session with this identity, now the caller's */
    UP_POOL_SLOT,  /* a slot is the caller's: open a session with slot_pool = p */
    UP_POOL_WAIT,  /* all slots busy: w->on_ready comes later */
    UP_POOL_NOMEM, /* no memory to keep count: nothing was taken */
};
enum up_pool_got up_pool_get(struct up_pool *p, struct up_pool_wait *w, struct up_session **out);
/* Stop waiting (the client left or timed out). No-op when not queued. */
void up_pool_cancel(struct up_pool *p, struct up_pool_wait *w);
/* A session holding a slot was freed (up_params.on_free, free_arg = the pool). */
void up_pool_slot_free(void *pool, const char *where);
/* QUIT every idle session; the pool frees itself once they are closed. */
void up_pool_close(struct up_pool *p);

#endif
