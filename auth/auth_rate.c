/* auth_rate: token bucket arithmetic (RFC 2697 §3, one bucket: rate
 * count/per_seconds, burst count, initially full) and the per-address table of
 * buckets. Levels are doubles; the tiny rounding that accumulates over many
 * partial refills is snapped away so that refusals and retry delays are exact to
 * the millisecond. */
#include "auth/auth_rate.h"

#include <string.h>

/* A level within this many milliseconds' worth of refill of a whole number is
 * that number: a token is never released more than a microsecond early, and for
 * any sane period (up to ~10^6 s) the margin dwarfs double rounding. */
#define SNAP_MS 1e-3

static double level(double tokens, unsigned count, unsigned per_seconds, uint64_t elapsed_ms);

void auth_bucket_init(struct auth_bucket *b, unsigned count, unsigned per_seconds, uint64_t now_ms)
{
    (void)per_seconds;
    b->tokens = count;
    b->last_ms = now_ms;
}

int auth_bucket_take(struct auth_bucket *b, unsigned count, unsigned per_seconds, unsigned n,
                     uint64_t now_ms, uint64_t *retry_after_ms)
{
    uint64_t wait;
    double est;

    if (count == 0 || n == 0) {
        if (retry_after_ms)
            *retry_after_ms = 0;
        return 1;
    }
    if (now_ms > b->last_ms) {
        b->tokens = level(b->tokens, count, per_seconds, now_ms - b->last_ms);
        b->last_ms = now_ms;
    } else {
        b->tokens = level(b->tokens, count, per_seconds, 0);
    }
    if (b->tokens >= n) {
        b->tokens -= n;
        if (retry_after_ms)
            *retry_after_ms = 0;
        return 1;
    }
    if (n > count) {
        if (retry_after_ms)
            *retry_after_ms = UINT64_MAX;
        return 0;
    }
    /* per_seconds > 0 here (else the bucket was full). Estimate the wait, then
     * move it to the smallest value for which level() itself says yes, so a retry
     * at exactly now + wait succeeds and one millisecond earlier fails. */
    est = ((double)n - b->tokens) * (double)per_seconds * 1000.0 / (double)count;
    wait = (uint64_t)est;
    while (wait > 0 && level(b->tokens, count, per_seconds, wait - 1) >= n)
        wait--;
    while (level(b->tokens, count, per_seconds, wait) < n)
        wait++;
    /* the level is as of last_ms, which a backwards clock leaves in the future */
    wait += b->last_ms - (now_ms < b->last_ms ? now_ms : b->last_ms);
    if (retry_after_ms)
        *retry_after_ms = wait;
    return 0;
}

/* tokens after elapsed_ms of refill, capped at count */
static double level(double tokens, unsigned count, unsigned per_seconds, uint64_t elapsed_ms)
{
    double per_ms, t, r;

    if (per_seconds == 0)
        return count;
    per_ms = (double)count / ((double)per_seconds * 1000.0);
    /* elapsed * count first: exact below 2^53, so whole periods add whole tokens */
    t = tokens + (double)elapsed_ms * (double)count / ((double)per_seconds * 1000.0);
    if (t > count)
        t = count;
    if (t < 0)
        t = 0;
    r = (double)(uint64_t)(t + 0.5);
    if (t - r < per_ms * SNAP_MS && r - t < per_ms * SNAP_MS)
        t = r;
    return t;
}

struct auth_rate_slot *auth_rate_lookup(struct auth_rate_table *t, const void *key, size_t keylen,
                                        uint64_t now_ms, int *fresh)
{
    struct auth_rate_slot *e = NULL;

    *fresh = 0;
    if (keylen == 0 || keylen > AUTH_RATE_KEY_MAX) {
        return NULL;
    }
    /* linear: a few hundred short compares per MAIL or RCPT cost less than a hash */
    for (size_t i = 0; i < t->n; i++) {
        if (t->slot[i].keylen == keylen && memcmp(t->slot[i].key, key, keylen) == 0) {
            t->slot[i].used_ms = now_ms;
            return &t->slot[i];
        }
    }
    if (t->n < AUTH_RATE_SLOTS) {
        e = &t->slot[t->n++];
    } else {
        e = &t->slot[0];
        for (size_t i = 1; i < t->n; i++) {
            if (t->slot[i].used_ms < e->used_ms) {
                e = &t->slot[i];
            }
        }
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, keylen);
    e->keylen = (unsigned char)keylen;
    e->used_ms = now_ms;
    *fresh = 1;
    return e;
}
