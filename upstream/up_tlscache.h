/* up_tlscache: TLS session resumption cache for upstream connections (RFC 5246
 * §7.3, by session ID): the last session parameters per key, at most
 * UP_TLSCACHE_MAX entries, least recently used replaced first. The key is built
 * by up_session from everything verification depends on. */
#ifndef RELAY25_UP_TLSCACHE_H
#define RELAY25_UP_TLSCACHE_H

#include <bearssl.h>
#include <uv.h>

struct up_tlscache;

/* Longest key, NUL included: "verify ca host:port server_name" (names up to 255
 * octets each). A longer key is the caller's to refuse. */
#define UP_TLSCACHE_KEY_MAX 640u

struct up_tlscache *up_tlscache_new(uv_loop_t *loop);
/* Wipes the master secrets. */
void up_tlscache_free(struct up_tlscache *c);
/* What to offer on the next connection for key: 0 and out filled, or -1. */
int up_tlscache_get(struct up_tlscache *c, const char *key, br_ssl_session_parameters *out);
void up_tlscache_put(struct up_tlscache *c, const char *key,
                     const br_ssl_session_parameters *params);

#endif
