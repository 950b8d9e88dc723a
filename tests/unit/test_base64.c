/* test_base64: base64 (common/base64.c) against RFC 4648 §10 vectors,
 * strictness cases and a round trip over all lengths. */
#include "common/base64.h"

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

int main(void)
{
    test_b64_encode();
    test_b64_decode();
    return CHECK_DONE();
}
