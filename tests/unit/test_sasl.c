/* test_sasl: base64 against RFC 4648 §10 vectors and strictness cases, PLAIN
 * (RFC 4616) and CRAM-MD5 against RFC 2195 §2's example (auth/auth_sasl.c). */
#include "auth/auth_sasl.h"

#include <string.h>

#include "tests/check.h"

#define ERR ((size_t)-1)

static void test_b64_encode(void)
{
    /* RFC 4648 §10. */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        ASSERT_EQ(b64_encode(vec[i][0], strlen(vec[i][0]), out, sizeof(out)), strlen(vec[i][1]));
        ASSERT_STREQ(out, vec[i][1]);
    }
    /* All byte values and both extra alphabet characters. */
    ASSERT_EQ(b64_encode("\xfb\xff\xbf\x00", 4, out, sizeof(out)), 8);
    ASSERT_STREQ(out, "+/+/AA==");

    /* Exact room: 4*ceil(len/3)+1. */
    ASSERT_EQ(b64_encode("foob", 4, out, 9), 8);
    ASSERT_STREQ(out, "Zm9vYg==");
    ASSERT_EQ(b64_encode("foob", 4, out, 8), ERR);
    ASSERT_EQ(b64_encode("foo", 3, out, 4), ERR);
    ASSERT_EQ(b64_encode("", 0, out, 1), 0);
    ASSERT_STREQ(out, "");
    ASSERT_EQ(b64_encode("", 0, out, 0), ERR);
}

static void test_b64_decode(void)
{
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    static const char *const bad[] = {
        "Zg",
        "Zg=",
        "Zm9",
        "Z===",
        "====",
        "Zg==Zg==",
        "Zm9v\r\n",
        "Zm 9v",
        "Zm9v ",
        "Zm9-",
        "Zm9_",
        "Zh==",
        "Zm9=Zm9v",
        "=m9v",
        "Zm=v",
        "Zm8*",
        "Zm9vYmF=",
        "Zm9vY===",
        "\x80\x80\x80\x80",
    };
    unsigned char out[64];

    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t n = b64_decode(vec[i][1], strlen(vec[i][1]), out, sizeof(out));

        ASSERT_MEMEQ(out, n, vec[i][0], strlen(vec[i][0]));
    }
    ASSERT_EQ(b64_decode("+/+/AA==", 8, out, sizeof(out)), 4);
    ASSERT_MEMEQ(out, 4, "\xfb\xff\xbf\x00", 4);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = b64_decode(bad[i], strlen(bad[i]), out, sizeof(out));

        if (n != ERR)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        ASSERT_EQ(n, ERR);
    }
    /* len is honoured: a NUL or garbage after len is not read. */
    ASSERT_EQ(b64_decode("Zm9vXX", 4, out, sizeof(out)), 3);

    /* Room. */
    ASSERT_EQ(b64_decode("Zm9vYmFy", 8, out, 6), 6);
    ASSERT_EQ(b64_decode("Zm9vYmFy", 8, out, 5), ERR);
    ASSERT_EQ(b64_decode("Zm9vYg==", 8, out, 4), 4);
    ASSERT_EQ(b64_decode("Zm9vYg==", 8, out, 3), ERR);
    ASSERT_EQ(b64_decode("", 0, out, 0), 0);

    /* Round trip over all lengths and byte values. */
    {
        unsigned char in[256], back[256];
        char enc[400];
        int bad_rt = 0;

        for (size_t i = 0; i < sizeof(in); i++)
            in[i] = (unsigned char)(i * 7 + 3);
        for (size_t len = 0; len <= sizeof(in); len++) {
            size_t e = b64_encode(in, len, enc, sizeof(enc));
            size_t d = e == ERR ? ERR : b64_decode(enc, e, back, sizeof(back));

            if (e != (len + 2) / 3 * 4 || d != len || memcmp(in, back, len) != 0)
                bad_rt++;
        }
        ASSERT_EQ(bad_rt, 0);
    }
}

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
    test_b64_encode();
    test_b64_decode();
    test_plain();
    test_cram_md5();
    return CHECK_DONE();
}
