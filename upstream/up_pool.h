/* up_pool: authenticated upstream sessions kept after a transaction, so the
 * next transaction with the same identity (address, server name, user,
 * password) skips TCP, TLS and AUTH. Sessions idle longer than the timeout are
 * closed with QUIT; at most `cap` idle sessions per upstream address are kept
 * (the upstream's max_connections). A session that died in the pool leaves it
 * by itself; one that dies just after being taken is the taker's to retry. */
#ifndef RELAY25_UP_POOL_H
#define RELAY25_UP_POOL_H

#include <stdint.h>

#include <bearssl.h>
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
/* TLS session resumption cache: what to offer on the next connection, by a key
 * the caller builds from everything verification depends on. get returns 0
 * and fills out, or -1. */
int up_pool_tls_get(struct up_pool *p, const char *key, br_ssl_session_parameters *out);
void up_pool_tls_put(struct up_pool *p, const char *key, const br_ssl_session_parameters *params);

/* Sessions currently idle in the pool. */
unsigned up_pool_size(const struct up_pool *p);
/* QUIT every idle session; the pool frees itself once they are closed. */
void up_pool_close(struct up_pool *p);

#endif
