/* test_auth_sasl: PLAIN (RFC 4616) and CRAM-MD5 against RFC 2195 §2's example
 * (auth/auth_sasl.c); responses are decoded back with common/base64. */
#include "auth/auth_sasl.h"

#include <string.h>

#include "common/base64.h"
#include "tests/check.h"

#define ERR ((size_t)-1)

static void test_plain(void)
{
    char out[600], big[301];

    /* base64("\0tim\0tanstaaftanstaaf") */
    ASSERT_EQ(sasl_plain("tim", "tanstaaftanstaaf", out, sizeof(out)), 28);
    ASSERT_STREQ(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    ASSERT_EQ(sasl_plain("tim", "tanstaaftanstaaf", out, 29), 28);
    ASSERT_EQ(sasl_plain("tim", "tanstaaftanstaaf", out, 28), ERR);
    ASSERT_STREQ(out, ""); /* nothing of the secret left behind */
    ASSERT_EQ(sasl_plain("tim", "tanstaaftanstaaf", out, 0), ERR);
    /* base64("\0\0") */
    ASSERT_EQ(sasl_plain("", "", out, sizeof(out)), 4);
    ASSERT_STREQ(out, "AAA=");

    /* Long passwords (tokens) are not truncated. */
    memset(big, 'p', 300);
    big[300] = '\0';
    ASSERT_EQ(sasl_plain("user", big, out, sizeof(out)), 408);
    {
        unsigned char dec[400];
        size_t n = b64_decode(out, 408, dec, sizeof(dec));

        ASSERT_EQ(n, 306);
        ASSERT_MEMEQ(dec, 6, "\0user\0", 6);
        ASSERT_MEMEQ(dec + 6, 300, big, 300);
    }
    /* 8-bit credentials pass through. */
    ASSERT_EQ(sasl_plain("\xc3\xa9", "\xff", out, sizeof(out)), 8);
    ASSERT_STREQ(out, "AMOpAP8=");
}

static void test_cram_md5(void)
{
    static const char chal[] = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
    char out[128], key[101];
    unsigned char dec[64];
    size_t n;

    /* RFC 2195 §2: "tim b913a602c7eda7a495b4e6e7334d3890". */
    n = sasl_cram_md5("tim", "tanstaaftanstaaf", chal, strlen(chal), out, sizeof(out));
    ASSERT_EQ(n, 48);
    ASSERT_STREQ(out, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    n = b64_decode(out, n, dec, sizeof(dec));
    ASSERT_MEMEQ(dec, n, "tim b913a602c7eda7a495b4e6e7334d3890", 36);

    /* Exact room and one short. */
    ASSERT_EQ(sasl_cram_md5("tim", "tanstaaftanstaaf", chal, strlen(chal), out, 49), 48);
    ASSERT_EQ(sasl_cram_md5("tim", "tanstaaftanstaaf", chal, strlen(chal), out, 48), ERR);

    /* Key longer than the MD5 block (hashed first, RFC 2104 §2); empty key. */
    memset(key, 'k', 100);
    key[100] = '\0';
    ASSERT_EQ(sasl_cram_md5("bob", key, "PHhAeT4=", 8, out, sizeof(out)), 48);
    ASSERT_STREQ(out, "Ym9iIDQ2MWE4Y2MxZTUzYzYxNDc5ZjVkYmIyYjE1M2U5MGE1");
    ASSERT_EQ(sasl_cram_md5("bob", "", "PHhAeT4=", 8, out, sizeof(out)), 48);
    ASSERT_STREQ(out, "Ym9iIDcxOTkwYWNjM2E1NGY3ZDAxZmVlYjg0M2E0ZTk5YzIy");

    /* Only challenge_len bytes are read. */
    ASSERT_EQ(sasl_cram_md5("bob", "", "PHhAeT4=garbage", 8, out, sizeof(out)), 48);

    /* Bad challenges: not base64, not padded, empty. */
    ASSERT_EQ(sasl_cram_md5("tim", "x", "PHhAeT4", 7, out, sizeof(out)), ERR);
    ASSERT_EQ(sasl_cram_md5("tim", "x", "PHhA eT4=", 9, out, sizeof(out)), ERR);
    ASSERT_EQ(sasl_cram_md5("tim", "x", "", 0, out, sizeof(out)), ERR);
    /* Challenge too large for the internal buffer. */
    {
        static char huge[4000];

        memset(huge, 'A', sizeof(huge));
        ASSERT_EQ(sasl_cram_md5("tim", "x", huge, sizeof(huge), out, sizeof(out)), ERR);
    }
}

int main(void)
{
    test_plain();
    test_cram_md5();
    return CHECK_DONE();
}
