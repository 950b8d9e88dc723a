/* check.h: minimal assertions for unit tests; each failure prints file:line and
 * both values, and the test's exit status counts the failures. */
#ifndef RELAY25_CHECK_H
#define RELAY25_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define ASSERT_TRUE(c)                                                                             \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: ASSERT_TRUE(%s) failed\n", __FILE__, __LINE__, #c);            \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        check_count++;                                                                             \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "%s:%d: ASSERT_EQ(%s, %s) failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, check_a_, check_b_);                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        check_count++;                                                                             \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                           \
            fprintf(stderr, "%s:%d: ASSERT_STREQ(%s, %s) failed: \"%s\" != \"%s\"\n", __FILE__,    \
                    __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                              \
                    check_b_ ? check_b_ : "(null)");                                               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define ASSERT_MEMEQ(a, alen, b, blen)                                                             \
    do {                                                                                           \
        size_t check_al_ = (alen), check_bl_ = (blen);                                             \
        check_count++;                                                                             \
        if (check_al_ != check_bl_ || memcmp((a), (b), check_al_) != 0) {                          \
            fprintf(stderr, "%s:%d: ASSERT_MEMEQ(%s, %s) failed: \"%.*s\" != \"%.*s\"\n",          \
                    __FILE__, __LINE__, #a, #b, (int)check_al_, (const char *)(a), (int)check_bl_, \
                    (const char *)(b));                                                            \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Last line of main(): prints the summary and yields the exit status. */
#define CHECK_DONE()                                                                               \
    (printf("%d passed, %d failed\n", check_count - check_failures, check_failures),               \
     check_failures ? 1 : 0)

#endif
