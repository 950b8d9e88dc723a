/* test_auth_rate: token buckets (auth/auth_rate.c): a burst of count, refusal after
 * it, refill over time with the cap, exact retry delays (also for rates that do
 * not divide a millisecond), unlimited buckets and requests above the burst. */
#include "auth/auth_rate.h"

#include <stdint.h>
#include <string.h>

#include "tests/check.h"

static void test_burst_then_refuse(void)
{
    struct auth_bucket b;
    uint64_t retry = 42;

    auth_bucket_init(&b, 10, 60, 1000);
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 1000, &retry), 1);
        ASSERT_EQ(retry, 0);
    }
    /* 10 per 60 s: one token every 6000 ms */
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 1000, &retry), 0);
    ASSERT_EQ(retry, 6000);
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 6999, &retry), 0);
    ASSERT_EQ(retry, 1);
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 7000, &retry), 1);
    ASSERT_EQ(retry, 0);
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 7000, &retry), 0);
    ASSERT_EQ(retry, 6000);
}

static void test_refill_capped(void)
{
    struct auth_bucket b;
    uint64_t retry;
    int taken = 0;

    auth_bucket_init(&b, 5, 10, 0);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 5, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 1, 0, &retry), 0);
    ASSERT_EQ(retry, 2000);
    /* half the period refills half the bucket: 2.5 tokens, 0.5 short of a third */
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 3, 5000, &retry), 0);
    ASSERT_EQ(retry, 1000);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 2, 5000, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 1, 5000, &retry), 0);
    ASSERT_EQ(retry, 1000);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 1, 6000, &retry), 1);
    /* an hour idle gives a full bucket, not 1800 tokens */
    while (auth_bucket_take(&b, 5, 10, 1, 3605000, &retry) == 1 && taken < 100)
        taken++;
    ASSERT_EQ(taken, 5);
    ASSERT_EQ(retry, 2000);
}

static void test_retry_after_multi_token(void)
{
    struct auth_bucket b;
    uint64_t retry;

    auth_bucket_init(&b, 10, 10, 0);
    ASSERT_EQ(auth_bucket_take(&b, 10, 10, 8, 0, &retry), 1);
    /* 2 left, 5 wanted: 3 tokens at 1 per 1000 ms */
    ASSERT_EQ(auth_bucket_take(&b, 10, 10, 5, 0, &retry), 0);
    ASSERT_EQ(retry, 3000);
    ASSERT_EQ(auth_bucket_take(&b, 10, 10, 5, 2999, &retry), 0);
    ASSERT_EQ(retry, 1);
    ASSERT_EQ(auth_bucket_take(&b, 10, 10, 5, 3000, &retry), 1);
    ASSERT_EQ(retry, 0);
}

static void test_retry_after_fractional_rate(void)
{
    struct auth_bucket b;
    uint64_t retry;

    /* 3 per second: a token every 333.33 ms, so the first one is due at 334 */
    auth_bucket_init(&b, 3, 1, 0);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 3, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 0, &retry), 0);
    ASSERT_EQ(retry, 334);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 333, &retry), 0);
    ASSERT_EQ(retry, 1);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 334, &retry), 1);
    /* 0.002 carried over: the next whole token is at 666.67, i.e. 667 */
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 334, &retry), 0);
    ASSERT_EQ(retry, 333);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 666, &retry), 0);
    ASSERT_EQ(retry, 1);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 667, &retry), 1);
    /* and the one after at exactly 1000 */
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 999, &retry), 0);
    ASSERT_EQ(retry, 1);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 1000, &retry), 1);
}

static void test_many_small_refills(void)
{
    struct auth_bucket b;
    uint64_t retry, exact = 0;

    /* six refills of 1/6 token each must add up to exactly one token */
    auth_bucket_init(&b, 10, 60, 0);
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 10, 0, &retry), 1);
    for (uint64_t t = 1000; t < 6000; t += 1000) {
        ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, t, &retry), 0);
        ASSERT_EQ(retry, 6000 - t);
    }
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 6000, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 10, 60, 1, 6000, &retry), 0);
    ASSERT_EQ(retry, 6000);

    /* 1 per 3 s polled every millisecond */
    auth_bucket_init(&b, 1, 3, 0);
    ASSERT_EQ(auth_bucket_take(&b, 1, 3, 1, 0, &retry), 1);
    for (uint64_t t = 1; t < 3000; t++)
        if (auth_bucket_take(&b, 1, 3, 1, t, &retry) == 0 && retry == 3000 - t)
            exact++;
    ASSERT_EQ(exact, 2999);
    ASSERT_EQ(auth_bucket_take(&b, 1, 3, 1, 3000, &retry), 1);
}

static void test_unlimited(void)
{
    struct auth_bucket b;
    uint64_t retry = 42;

    auth_bucket_init(&b, 0, 60, 0);
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(auth_bucket_take(&b, 0, 60, 7, 0, &retry), 1);
    ASSERT_EQ(retry, 0);
    ASSERT_EQ(auth_bucket_take(&b, 0, 0, 1000000, 0, NULL), 1);
}

static void test_n_above_count(void)
{
    struct auth_bucket b;
    uint64_t retry = 0;

    auth_bucket_init(&b, 5, 10, 0);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 6, 0, &retry), 0);
    ASSERT_EQ(retry, UINT64_MAX);
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 6, 1000000, &retry), 0);
    ASSERT_TRUE(retry == UINT64_MAX);
    /* the refused request took nothing */
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 5, 1000000, &retry), 1);
    /* n == 0 never needs a token */
    ASSERT_EQ(auth_bucket_take(&b, 5, 10, 0, 1000000, &retry), 1);
}

static void test_edges(void)
{
    struct auth_bucket b;
    uint64_t retry;

    /* per_seconds 0: refilled instantly */
    auth_bucket_init(&b, 2, 0, 0);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(auth_bucket_take(&b, 2, 0, 2, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 2, 0, 3, 0, &retry), 0);
    ASSERT_TRUE(retry == UINT64_MAX);

    /* a clock going backwards refills nothing and keeps the newest time */
    auth_bucket_init(&b, 1, 1, 5000);
    ASSERT_EQ(auth_bucket_take(&b, 1, 1, 1, 5000, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 1, 1, 1, 1000, &retry), 0);
    ASSERT_EQ(retry, 5000);
    ASSERT_EQ(auth_bucket_take(&b, 1, 1, 1, 5999, &retry), 0);
    ASSERT_EQ(auth_bucket_take(&b, 1, 1, 1, 6000, &retry), 1);

    /* a smaller count after a reload caps the level */
    auth_bucket_init(&b, 100, 1, 0);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 3, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 3, 1, 1, 0, &retry), 0);

    /* extreme configuration stays finite */
    auth_bucket_init(&b, UINT32_MAX, UINT32_MAX, 0);
    ASSERT_EQ(auth_bucket_take(&b, UINT32_MAX, UINT32_MAX, UINT32_MAX, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, UINT32_MAX, UINT32_MAX, 1, 0, &retry), 0);
    ASSERT_EQ(retry, 1000);
    auth_bucket_init(&b, 1, UINT32_MAX, 0);
    ASSERT_EQ(auth_bucket_take(&b, 1, UINT32_MAX, 1, 0, &retry), 1);
    ASSERT_EQ(auth_bucket_take(&b, 1, UINT32_MAX, 1, 0, &retry), 0);
    ASSERT_EQ(retry, (uint64_t)UINT32_MAX * 1000);
}

/* The per-address table: one slot per key, kept between lookups, and the slot
 * looked up least recently making room when all are taken. */
static void test_table(void)
{
    static struct auth_rate_table t; /* 32 KiB: not on the stack */
    unsigned char a[4] = {127, 0, 0, 2}, b[4] = {127, 0, 0, 3}, v6[16] = {0xfe, 0x80};
    struct auth_rate_slot *sa, *sb, *e;
    int fresh = -1;

    ASSERT_EQ(auth_rate_lookup(&t, a, 0, 1, &fresh) == NULL, 1);
    ASSERT_EQ(auth_rate_lookup(&t, v6, 17, 1, &fresh) == NULL, 1);
    sa = auth_rate_lookup(&t, a, 4, 10, &fresh);
    ASSERT_EQ(fresh, 1);
    auth_bucket_init(&sa->b[0], 1, 60, 10);
    ASSERT_EQ(auth_bucket_take(&sa->b[0], 1, 60, 1, 10, NULL), 1);
    sb = auth_rate_lookup(&t, b, 4, 11, &fresh);
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(sa != sb, 1);
    auth_bucket_init(&sb->b[0], 1, 60, 11);
    ASSERT_EQ(auth_bucket_take(&sb->b[0], 1, 60, 1, 11, NULL), 1);
    /* a's bucket is still empty: its slot, not a new one */
    ASSERT_EQ(auth_rate_lookup(&t, a, 4, 12, &fresh) == sa, 1);
    ASSERT_EQ(fresh, 0);
    ASSERT_EQ(auth_bucket_take(&sa->b[0], 1, 60, 1, 12, NULL), 0);
    /* the same first 4 bytes with another length are another key */
    memcpy(v6, a, 4);
    ASSERT_EQ(auth_rate_lookup(&t, v6, 16, 13, &fresh) != sa, 1);
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(t.n, 3);
    /* fill the table; b (used at 11) is the stalest once a is used again */
    for (unsigned i = 3; i < AUTH_RATE_SLOTS; i++) {
        unsigned char k[4] = {10, 0, (unsigned char)(i >> 8), (unsigned char)i};
        ASSERT_EQ(auth_rate_lookup(&t, k, 4, 100 + i, &fresh) != NULL, 1);
        ASSERT_EQ(fresh, 1);
    }
    ASSERT_EQ(t.n, AUTH_RATE_SLOTS);
    ASSERT_EQ(auth_rate_lookup(&t, a, 4, 5000, &fresh) == sa, 1);
    ASSERT_EQ(fresh, 0);
    {
        unsigned char k[4] = {192, 168, 1, 1};
        e = auth_rate_lookup(&t, k, 4, 5001, &fresh);
    }
    ASSERT_EQ(fresh, 1);
    ASSERT_EQ(e == sb, 1); /* b was evicted, its slot reused and cleared */
    ASSERT_EQ(e->used_ms, 5001);
    ASSERT_EQ(t.n, AUTH_RATE_SLOTS);
    ASSERT_EQ(auth_rate_lookup(&t, b, 4, 5002, &fresh) != NULL, 1);
    ASSERT_EQ(fresh, 1); /* b starts over */
    /* a is still there, with its empty bucket */
    ASSERT_EQ(auth_rate_lookup(&t, a, 4, 5003, &fresh) == sa, 1);
    ASSERT_EQ(fresh, 0);
    ASSERT_EQ(auth_bucket_take(&sa->b[0], 1, 60, 1, 12, NULL), 0);
}

int main(void)
{
    test_burst_then_refuse();
    test_refill_capped();
    test_retry_after_multi_token();
    test_retry_after_fractional_rate();
    test_many_small_refills();
    test_unlimited();
    test_n_above_count();
    test_edges();
    test_table();
    return CHECK_DONE();
}
