/* auth_rate: token buckets for rate limits ("count per per_seconds"), the
 * single-bucket form of RFC 2697 §3 (refill at a fixed rate, capped at the burst
 * size), and a fixed-size table of them per client address. Pure: the caller
 * passes the time in milliseconds (uv_now()), so no clock is read and every
 * refill is reproducible in tests. */
#ifndef RELAY25_AUTH_RATE_H
#define RELAY25_AUTH_RATE_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_RATE_SLOTS 512  /* client addresses tracked per table (32 KiB) */
#define AUTH_RATE_KEY_MAX 16 /* an IPv6 address */
#define AUTH_RATE_NBUCKETS 2 /* per address: the caller's kinds (messages, recipients) */

struct auth_bucket {
    double tokens;    /* available as of last_ms, 0..count */
    uint64_t last_ms; /* time of the last refill */
};

/* Start full: count tokens at now_ms. */
void auth_bucket_init(struct auth_bucket *b, unsigned count, unsigned per_seconds, uint64_t now_ms);

/* Refill count/per_seconds tokens per second since the last call (capped at count),
 * then take n. Returns 1 when taken (*retry_after_ms = 0), or 0 with nothing taken
 * and *retry_after_ms = the smallest delay after which the same call succeeds
 * (UINT64_MAX when n > count: never). count == 0 is unlimited: always 1.
 * per_seconds == 0 refills instantly (a full bucket on every call). Time going
 * backwards refills nothing. retry_after_ms may be NULL. */
int auth_bucket_take(struct auth_bucket *b, unsigned count, unsigned per_seconds, unsigned n,
                     uint64_t now_ms, uint64_t *retry_after_ms);

/* One client address and its buckets. keylen 0: a free slot. */
struct auth_rate_slot {
    unsigned char key[AUTH_RATE_KEY_MAX];
    unsigned char keylen;
    uint64_t used_ms; /* last lookup: the stalest slot makes room for a new address */
    struct auth_bucket b[AUTH_RATE_NBUCKETS];
};

/* Buckets per client address in bounded memory, like Postfix's anvil but with a
 * fixed size: when every slot is taken, a new address replaces the one looked up
 * least recently (an address that keeps hitting its limit is never the stalest).
 * Plain data: copying the struct copies the counts (a reload keeps them). */
struct auth_rate_table {
    size_t n; /* slots in use, 0..AUTH_RATE_SLOTS */
    struct auth_rate_slot slot[AUTH_RATE_SLOTS];
};

/* The slot of key (1..AUTH_RATE_KEY_MAX bytes), its used_ms set to now_ms. A key
 * not in the table gets a free slot, or the stalest one; *fresh is then 1 and the
 * caller initialises its buckets (else 0). NULL only for a bad keylen. */
struct auth_rate_slot *auth_rate_lookup(struct auth_rate_table *t, const void *key, size_t keylen,
                                        uint64_t now_ms, int *fresh);

#endif
