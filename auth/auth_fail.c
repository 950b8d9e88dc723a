/* auth_fail: the per-address AUTH failure table (see auth_fail.h). Memory is
 * fixed at creation; a new address evicts, within its set, a forgotten entry,
 * else the least recently failing unlocked one, else the lockout ending first,
 * so a flood of fresh addresses rarely frees a locked one (the seed keeps an
 * attacker from choosing addresses that share a set). */
#include "auth/auth_fail.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct auth_fail_entry {
    unsigned char key[16]; /* IPv4 as ::ffff:a.b.c.d, IPv6 as its /64 prefix */
    unsigned used : 1;
    unsigned failures;
    uint64_t last_ms;      /* the last failure */
    uint64_t locked_until; /* 0: not locked */
};

struct auth_fail {
    size_t mask; /* nsets - 1 */
    uint64_t seed;
    struct auth_fail_entry *e;
};

struct auth_fail *auth_fail_new(size_t nsets, uint64_t seed)
{
    struct auth_fail *t = calloc(1, sizeof(*t));
    size_t n = 1;

    while (n < nsets && n < ((size_t)1 << 20)) {
        n <<= 1;
    }
    if (!t || !(t->e = calloc(n * AUTH_FAIL_WAYS, sizeof(*t->e)))) {
        free(t);
        return NULL;
    }
    t->mask = n - 1;
    t->seed = seed;
    return t;
}

void auth_fail_free(struct auth_fail *t)
{
    if (t) {
        free(t->e);
        free(t);
    }
}

/* One key per address; an IPv6 host usually holds a whole /64, so that is one key. */
static int auth_fail_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            memcpy(key, &a->sin6_addr, 16); /* the same key as the plain IPv4 address */
        } else {
            memcpy(key, &a->sin6_addr, 8);
        }
        return 0;
    }
    return -1;
}

/* FNV-1a over seed and key, with a final mix so low bits depend on every byte. */
static size_t auth_fail_set(const struct auth_fail *t, const unsigned char key[16])
{
    uint64_t h = 1469598103934665603ull ^ t->seed;

    for (size_t i = 0; i < 16; i++) {
        h = (h ^ key[i]) * 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)(h & t->mask) * AUTH_FAIL_WAYS;
}

/* A lockout that ended starts the count over. */
static void auth_fail_expire(struct auth_fail_entry *e, uint64_t now_ms)
{
    if (e->locked_until && now_ms >= e->locked_until) {
        e->locked_until = 0;
        e->failures = 0;
    }
}

static struct auth_fail_entry *auth_fail_find(struct auth_fail *t, const unsigned char key[16])
{
    struct auth_fail_entry *set = &t->e[auth_fail_set(t, key)];

    for (size_t i = 0; i < AUTH_FAIL_WAYS; i++) {
        if (set[i].used && memcmp(set[i].key, key, 16) == 0) {
            return &set[i];
        }
    }
    return NULL;
}

uint64_t auth_fail_locked(struct auth_fail *t, const struct sockaddr *sa, uint64_t now_ms)
{
    unsigned char key[16];
    struct auth_fail_entry *e;

    if (auth_fail_key(sa, key) != 0 || !(e = auth_fail_find(t, key))) {
        return 0;
    }
    auth_fail_expire(e, now_ms);
    return e->locked_until ? e->locked_until - now_ms : 0;
}

/* The entry a new key takes: free or forgotten, else the unlocked one that
 * failed longest ago, else the lockout that ends first. */
static struct auth_fail_entry *auth_fail_victim(struct auth_fail *t, const unsigned char key[16],
                                                uint64_t window_ms, uint64_t now_ms)
{
    struct auth_fail_entry *set = &t->e[auth_fail_set(t, key)], *old = NULL, *locked = NULL;

    for (size_t i = 0; i < AUTH_FAIL_WAYS; i++) {
        struct auth_fail_entry *e = &set[i];
        if (e->used) {
            auth_fail_expire(e, now_ms);
        }
        if (!e->used || (!e->locked_until && now_ms - e->last_ms >= window_ms)) {
            return e;
        }
        if (!e->locked_until) {
            if (!old || e->last_ms < old->last_ms) {
                old = e;
            }
        } else if (!locked || e->locked_until < locked->locked_until) {
            locked = e;
        }
    }
    return old ? old : locked;
}

unsigned auth_fail_record(struct auth_fail *t, const struct sockaddr *sa,
                          const struct auth_fail_policy *p, uint64_t now_ms, uint64_t *delay_ms,
                          uint64_t *lock_ms)
{
    unsigned char key[16];
    struct auth_fail_entry *e;
    unsigned steps;

    *delay_ms = 0;
    *lock_ms = 0;
    if (auth_fail_key(sa, key) != 0) {
        return 0;
    }
    if ((e = auth_fail_find(t, key)) != NULL) {
        auth_fail_expire(e, now_ms);
        if (!e->locked_until && now_ms - e->last_ms >= p->window_ms) {
            e->failures = 0;
        }
    } else {
        e = auth_fail_victim(t, key, p->window_ms, now_ms);
        memset(e, 0, sizeof(*e));
        memcpy(e->key, key, 16);
        e->used = 1;
    }
    if (e->failures < UINT32_MAX) {
        e->failures++;
    }
    e->last_ms = now_ms;
    steps = e->failures - 1 < AUTH_FAIL_DELAY_STEPS ? e->failures - 1 : AUTH_FAIL_DELAY_STEPS;
    *delay_ms = p->delay_ms << steps;
    if (p->limit && !e->locked_until && e->failures >= p->limit) {
        e->locked_until = now_ms + p->lockout_ms;
        *lock_ms = p->lockout_ms;
    }
    return e->failures;
}
