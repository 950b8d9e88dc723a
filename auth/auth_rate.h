/* auth_rate: token buckets for per-device rate limits ("count per per_seconds"),
 * the single-bucket form of RFC 2697 §3 (refill at a fixed rate, capped at the
 * burst size). Pure: the caller passes the time in milliseconds (uv_now()), so no
 * clock is read and every refill is reproducible in tests. */
#ifndef RELAY25_AUTH_RATE_H
#define RELAY25_AUTH_RATE_H

#include <stdint.h>

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

#endif
