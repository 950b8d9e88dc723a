/* test_auth_fail: the per-address AUTH failure table (auth/auth_fail.c): the
 * doubling delay and its cap, the lockout at the limit and its end, the window
 * that forgets old failures, addresses kept apart (IPv6 by /64, IPv4-mapped as
 * IPv4), and eviction in a full table that spares locked addresses. */
#include "auth/auth_fail.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/check.h"

static const struct auth_fail_policy pol = {
    .limit = 4, .window_ms = 60000, .lockout_ms = 300000, .delay_ms = 1000};

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, text, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, text, &a->sin_addr);
    }
    return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void test_delay_and_lockout(void)
{
    struct auth_fail *t = auth_fail_new(4, 1);
    struct sockaddr_storage a = addr("192.0.2.7"), b = addr("192.0.2.8");
    uint64_t delay, lock;

    ASSERT_TRUE(t != NULL);
    ASSERT_EQ(auth_fail_locked(t, SA(a), 1000), 0);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 1000, &delay, &lock), 1);
    ASSERT_EQ(delay, 1000);
    ASSERT_EQ(lock, 0);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 2000, &delay, &lock), 2);
    ASSERT_EQ(delay, 2000);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 3000, &delay, &lock), 3);
    ASSERT_EQ(delay, 4000);
    ASSERT_EQ(lock, 0);
    ASSERT_EQ(auth_fail_locked(t, SA(a), 3000), 0);
    /* the fourth starts the lockout */
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 4000, &delay, &lock), 4);
    ASSERT_EQ(delay, 8000);
    ASSERT_EQ(lock, 300000);
    ASSERT_EQ(auth_fail_locked(t, SA(a), 4000), 300000);
    ASSERT_EQ(auth_fail_locked(t, SA(a), 303999), 1);
    /* another address is not affected */
    ASSERT_EQ(auth_fail_locked(t, SA(b), 5000), 0);
    /* a failure during the lockout (a check already running) does not extend it */
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 5000, &delay, &lock), 5);
    ASSERT_EQ(delay, 16000);
    ASSERT_EQ(lock, 0);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 6000, &delay, &lock), 6);
    ASSERT_EQ(delay, 16000); /* capped at 16 times the base */
    ASSERT_EQ(auth_fail_locked(t, SA(a), 303999), 1);
    /* the lockout ends and the count starts over */
    ASSERT_EQ(auth_fail_locked(t, SA(a), 304000), 0);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 304000, &delay, &lock), 1);
    ASSERT_EQ(delay, 1000);
    ASSERT_EQ(lock, 0);
    auth_fail_free(t);
}

static void test_window_forgets(void)
{
    struct auth_fail *t = auth_fail_new(4, 2);
    struct sockaddr_storage a = addr("198.51.100.1");
    uint64_t delay, lock;

    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 0, &delay, &lock), 1);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 59999, &delay, &lock), 2);
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 119998, &delay, &lock), 3);
    /* a whole window without a failure: forgotten */
    ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 179998, &delay, &lock), 1);
    ASSERT_EQ(delay, 1000);
    auth_fail_free(t);
}

static void test_no_limit_no_delay(void)
{
    struct auth_fail_policy p = {.limit = 0, .window_ms = 1000, .lockout_ms = 1000, .delay_ms = 0};
    struct auth_fail *t = auth_fail_new(1, 3);
    struct sockaddr_storage a = addr("203.0.113.5");
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    uint64_t delay, lock;

    for (unsigned i = 1; i <= 100; i++) {
        ASSERT_EQ(auth_fail_record(t, SA(a), &p, i, &delay, &lock), i);
        ASSERT_EQ(delay, 0);
        ASSERT_EQ(lock, 0);
    }
    ASSERT_EQ(auth_fail_locked(t, SA(a), 100), 0);
    ASSERT_EQ(auth_fail_record(t, &unix_sa, &pol, 1, &delay, &lock), 0);
    ASSERT_EQ(auth_fail_locked(t, &unix_sa, 1), 0);
    auth_fail_free(t);
}

static void test_keys(void)
{
    struct auth_fail *t = auth_fail_new(8, 4);
    struct sockaddr_storage v6a = addr("2001:db8:1:2::1"), v6b = addr("2001:db8:1:2:ffff::9"),
                            v6c = addr("2001:db8:1:3::1"), v4 = addr("192.0.2.9"),
                            mapped = addr("::ffff:192.0.2.9");
    uint64_t delay, lock;

    for (int i = 0; i < 4; i++) {
        auth_fail_record(t, SA(v6a), &pol, 10, &delay, &lock);
    }
    /* one /64 is one client */
    ASSERT_TRUE(auth_fail_locked(t, SA(v6b), 20) > 0);
    ASSERT_EQ(auth_fail_locked(t, SA(v6c), 20), 0);
    for (int i = 0; i < 4; i++) {
        auth_fail_record(t, SA(mapped), &pol, 10, &delay, &lock);
    }
    ASSERT_TRUE(auth_fail_locked(t, SA(v4), 20) > 0);
    auth_fail_free(t);
}

/* One set of AUTH_FAIL_WAYS entries: a flood of new addresses evicts the
 * unlocked ones, oldest first, and keeps the locked one. */
static void test_eviction(void)
{
    struct auth_fail *t = auth_fail_new(1, 5);
    struct sockaddr_storage locked = addr("10.0.0.1"), first = addr("10.0.0.2");
    uint64_t delay, lock;
    char ip[32];

    for (int i = 0; i < 4; i++) {
        auth_fail_record(t, SA(locked), &pol, 100, &delay, &lock);
    }
    ASSERT_EQ(auth_fail_record(t, SA(first), &pol, 200, &delay, &lock), 1);
    ASSERT_EQ(auth_fail_record(t, SA(first), &pol, 201, &delay, &lock), 2);
    for (int i = 0; i < 100; i++) {
        struct sockaddr_storage a;
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 200, i % 200 + 1);
        a = addr(ip);
        ASSERT_EQ(auth_fail_record(t, SA(a), &pol, 300 + (uint64_t)i, &delay, &lock), 1);
    }
    ASSERT_TRUE(auth_fail_locked(t, SA(locked), 500) > 0);
    /* first was evicted: it starts over */
    ASSERT_EQ(auth_fail_record(t, SA(first), &pol, 500, &delay, &lock), 1);
    /* a table full of locked addresses still takes a new one (the lockout ending first) */
    auth_fail_free(t);
    t = auth_fail_new(1, 6);
    for (int i = 0; i < AUTH_FAIL_WAYS + 1; i++) {
        struct sockaddr_storage a;
        snprintf(ip, sizeof(ip), "10.2.0.%d", i + 1);
        a = addr(ip);
        for (int k = 0; k < 4; k++) {
            auth_fail_record(t, SA(a), &pol, 1000 + (uint64_t)i, &delay, &lock);
        }
        ASSERT_EQ(lock, 300000);
        ASSERT_TRUE(auth_fail_locked(t, SA(a), 2000) > 0);
    }
    locked = addr("10.2.0.1"); /* the earliest lockout made room */
    ASSERT_EQ(auth_fail_locked(t, SA(locked), 2000), 0);
    auth_fail_free(t);
}

int main(void)
{
    test_delay_and_lockout();
    test_window_forgets();
    test_no_limit_no_delay();
    test_keys();
    test_eviction();
    return CHECK_DONE();
}
