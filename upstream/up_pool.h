/* up_pool: the one way to get an upstream session. up_pool_acquire() gives a
 * ready, authenticated session for (upstream list, identity): an idle pooled
 * one with that identity (address, server name, user, password), else a new
 * one. It owns the connection slots: at most max_connections live sessions per
 * upstream address, pooled idle ones included, whoever asked (devices, queued
 * deliveries, `check`, `sendmail`), like Postfix's destination concurrency
 * limit; providers refuse more concurrent logins per account. Requests that
 * find every slot busy wait in FIFO order, at most wait_seconds. An upstream
 * that cannot be reached (resolve, connect, TLS, greeting, EHLO) is left for
 * the next one of the list. Sessions given back (up_pool_put) stay idle until
 * the idle timeout, then QUIT. */
#ifndef RELAY25_UP_POOL_H
#define RELAY25_UP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "upstream/up_session.h"

struct up_pool;
struct up_acquire;
struct up_acquire_wait;
struct up_caps;
struct conf;
struct conf_device;
struct conf_upstream;
struct metrics;
struct up_oauth;
struct up_caps;

/* The outcome of an acquire. s: ready and authenticated, now owned by
 * (req->cbs, req->arg), or NULL on failure: err is enum relay_err (RELAY_E_BUSY
 * when every slot stayed in use for wait_seconds), r upstream's reply when one
 * caused it (valid during the call), detail a one-line reason. */
typedef void up_acquire_cb(struct up_acquire *req, struct up_session *s, int err,
                           const struct up_reply *r, const char *detail);

/* A request. The caller fills the first block and keeps the struct alive and
 * unchanged until on_done runs or it cancels; the same struct may be used
 * again afterwards. */
struct up_acquire {
    const struct conf_device *dev; /* identity: user, password, auth, mechanisms */
    /* the upstreams to try, in order; NULL: the device's list (ups, or up) */
    const struct conf_upstream *const *ups;
    size_t nups;
    const struct conf *conf; /* hostname for EHLO, timeouts */
    struct up_oauth *oauth;  /* token provider when auth is a token; else NULL */
    uint64_t sid;            /* log id */
    unsigned wait_seconds;   /* longest wait for a slot */
    const struct up_cbs *cbs;
    void *arg;
    up_acquire_cb *on_done;

    /* Results, valid from on_done on. */
    int reused;                     /* s came from the pool (it may turn out dead) */
    uint64_t setup_ms;              /* a new session: connect to ready */
    const struct conf_upstream *up; /* the upstream s is for (the last tried on failure) */
    char where[300];                /* its "host:port" */

    /* The pool's, while the request is pending: callers neither set nor read it. */
    struct up_acquire_wait *pool_wait;
};

struct up_pool *up_pool_new(uv_loop_t *loop, unsigned idle_seconds);
/* Counts new and reused sessions and set-up failures here (may be NULL). */
void up_pool_set_metrics(struct up_pool *p, struct metrics *m);
/* 0: on_done follows, always from the loop, never from inside this call.
 * < 0 (out of memory, request already pending): nothing follows. */
int up_pool_acquire(struct up_pool *p, struct up_acquire *req);
/* The session req got from the pool (req->reused) failed or answered 421
 * before any transaction started on it: ask again for a new one, ahead of the
 * line. 0: on_done follows; < 0: req was not a reused session (or out of
 * memory), the caller handles the failure. */
int up_pool_acquire_fresh(struct up_pool *p, struct up_acquire *req);
/* No on_done will come (no-op when none was due). A session being set up for
 * the request is closed. */
void up_pool_acquire_cancel(struct up_pool *p, struct up_acquire *req);
/* Give back a ready session with no transaction open upstream. cap: most idle
 * sessions kept for its address; beyond it the session is closed with QUIT. */
void up_pool_put(struct up_pool *p, struct up_session *s, unsigned cap);
/* What each upstream address offered in its last EHLO after TLS (up_caps.h),
 * learned from every session the pool set up; NULL for a NULL pool. */
const struct up_caps *up_pool_caps(const struct up_pool *p);
/* QUIT every idle session; the pool frees itself once they are closed. */
void up_pool_close(struct up_pool *p);

#endif
