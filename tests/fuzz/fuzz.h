/* fuzz.h: shared helpers for the libFuzzer targets in tests/fuzz/: an invariant
 * check that aborts (assert() is compiled out by NDEBUG in RelWithDebInfo) and a
 * small PRNG that turns bytes of the input into chunk and buffer sizes, so every
 * split is reproducible from the crash file alone. */
#ifndef RELAY25_FUZZ_H
#define RELAY25_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(c)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct fuzz_rng {
    uint64_t s;
};

/* Seeds from up to 4 leading bytes, which the caller then skips. */
static inline size_t fuzz_rng_init(struct fuzz_rng *r, const uint8_t *data, size_t len)
{
    size_t n = len < 4 ? len : 4;

    r->s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++)
        r->s = (r->s << 8 | (r->s >> 56)) ^ data[i];
    return n;
}

/* splitmix64 */
static inline uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 0..max inclusive */
static inline size_t fuzz_rng_upto(struct fuzz_rng *r, size_t max)
{
    return (size_t)(fuzz_rng_next(r) % ((uint64_t)max + 1));
}

/* A chunk length for rest bytes: mostly tiny (the interesting splits), sometimes
 * empty, sometimes everything left. */
static inline size_t fuzz_rng_chunk(struct fuzz_rng *r, size_t rest)
{
    size_t k = fuzz_rng_upto(r, 15);
    size_t n;

    if (k == 0)
        n = 0;
    else if (k < 10)
        n = 1 + fuzz_rng_upto(r, 7);
    else if (k < 14)
        n = 1 + fuzz_rng_upto(r, 127);
    else
        n = rest;
    return n < rest ? n : rest;
}

#endif
