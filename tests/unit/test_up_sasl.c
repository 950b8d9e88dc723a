/* test_up_sasl: the wire form of every upstream AUTH line (upstream/up_sasl.c):
 * PLAIN (RFC 4616), LOGIN, CRAM-MD5 against RFC 2195 §2's example, XOAUTH2
 * (Google's published example) and OAUTHBEARER (RFC 7628 §4.1), and the
 * mechanism choice in preference order. */
#include "upstream/up_sasl.h"

#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "conf/conf.h"
#include "tests/check.h"
#include "upstream/up_reply.h"

static const struct up_sasl_cred tim = {.user = "tim", .password = "tanstaaftanstaaf"};

/* The line of mech at step into a buffer of up_sasl_cap()'s size. */
static long line(unsigned char mech, unsigned step, const struct up_sasl_cred *c, const char *chal,
                 char *out)
{
    size_t cap = up_sasl_cap(mech, c);

    ASSERT_TRUE(cap <= 4096);
    return up_sasl_line(mech, step, c, chal, out, cap);
}

static void test_plain(void)
{
    char out[4096], big[1601];
    struct up_sasl_cred c = tim;

    /* RFC 4616 §2: base64("\0tim\0tanstaaftanstaaf") as the initial response */
    ASSERT_EQ(line(CONF_MECH_PLAIN, 0, &tim, NULL, out), 39);
    ASSERT_STREQ(out, "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    /* no challenge is ever answered */
    ASSERT_EQ(line(CONF_MECH_PLAIN, 1, &tim, "", out), UP_SASL_E_STEP);
    /* too long for the command line: refused, nothing of the secret left */
    memset(big, 'p', 1600);
    big[1600] = '\0';
    c.password = big;
    ASSERT_EQ(line(CONF_MECH_PLAIN, 0, &c, NULL, out), UP_SASL_E_TOOLONG);
    ASSERT_EQ(out[0], '\0');
    ASSERT_TRUE(memchr(out, 'A', 100) == NULL);
    /* a buffer one short of the line */
    ASSERT_EQ(up_sasl_line(CONF_MECH_PLAIN, 0, &tim, NULL, out, 39), UP_SASL_E_TOOLONG);
    ASSERT_EQ(up_sasl_line(CONF_MECH_PLAIN, 0, &tim, NULL, out, 40), 39);
}

static void test_login(void)
{
    char out[4096];

    ASSERT_EQ(line(CONF_MECH_LOGIN, 0, &tim, NULL, out), 10);
    ASSERT_STREQ(out, "AUTH LOGIN");
    /* "Username:" then "Password:" */
    ASSERT_EQ(line(CONF_MECH_LOGIN, 1, &tim, "VXNlcm5hbWU6", out), 4);
    ASSERT_STREQ(out, "dGlt");
    ASSERT_EQ(line(CONF_MECH_LOGIN, 2, &tim, "UGFzc3dvcmQ6", out), 24);
    ASSERT_STREQ(out, "dGFuc3RhYWZ0YW5zdGFhZg==");
    ASSERT_EQ(line(CONF_MECH_LOGIN, 3, &tim, "", out), UP_SASL_E_STEP);
}

static void test_cram_md5(void)
{
    static const char chal[] = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
    char out[4096];
    unsigned char dec[64];
    long n;

    ASSERT_EQ(line(CONF_MECH_CRAM_MD5, 0, &tim, NULL, out), 13);
    ASSERT_STREQ(out, "AUTH CRAM-MD5");
    /* RFC 2195 §2: "tim b913a602c7eda7a495b4e6e7334d3890" */
    n = line(CONF_MECH_CRAM_MD5, 1, &tim, chal, out);
    ASSERT_EQ(n, 48);
    ASSERT_STREQ(out, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    n = (long)b64_decode(out, (size_t)n, dec, sizeof(dec));
    ASSERT_MEMEQ(dec, (size_t)n, "tim b913a602c7eda7a495b4e6e7334d3890", 36);
    /* a challenge that is not base64 */
    ASSERT_EQ(line(CONF_MECH_CRAM_MD5, 1, &tim, "PHhA eT4=", out), UP_SASL_E_CHALLENGE);
    ASSERT_EQ(line(CONF_MECH_CRAM_MD5, 1, &tim, "", out), UP_SASL_E_CHALLENGE);
    ASSERT_EQ(line(CONF_MECH_CRAM_MD5, 2, &tim, chal, out), UP_SASL_E_STEP);
}

static void test_xoauth2(void)
{
    /* developers.google.com/gmail/imap/xoauth2-protocol, "The SASL XOAUTH2 Mechanism" */
    struct up_sasl_cred c = {.user = "someuser@example.com",
                             .token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
                             .host = "smtp.gmail.com",
                             .port = 587};
    char out[4096];

    ASSERT_EQ(line(CONF_MECH_XOAUTH2, 0, &c, NULL, out), 13 + 116);
    ASSERT_STREQ(out, "AUTH XOAUTH2 "
                      "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk"
                      "52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
    /* the error challenge is answered with an empty line */
    ASSERT_EQ(line(CONF_MECH_XOAUTH2, 1, &c, "eyJzdGF0dXMiOiI0MDEifQ==", out), 0);
    ASSERT_STREQ(out, "");
    ASSERT_EQ(line(CONF_MECH_XOAUTH2, 2, &c, "", out), UP_SASL_E_STEP);
    /* a buffer too small: refused and wiped */
    ASSERT_EQ(up_sasl_line(CONF_MECH_XOAUTH2, 0, &c, NULL, out, 60), UP_SASL_E_TOOLONG);
    ASSERT_TRUE(memchr(out, 'd', 60) == NULL);
}

static void test_oauthbearer(void)
{
    /* RFC 7628 §4.1 */
    struct up_sasl_cred c = {.user = "user@example.com",
                             .token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                             .host = "server.example.com",
                             .port = 143};
    char out[4096];

    ASSERT_EQ(line(CONF_MECH_OAUTHBEARER, 0, &c, NULL, out), 17 + 148);
    ASSERT_STREQ(out, "AUTH OAUTHBEARER "
                      "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1"
                      "dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
    /* RFC 7628 §3.2.3: the error challenge is answered with base64 of ^A */
    ASSERT_EQ(line(CONF_MECH_OAUTHBEARER, 1, &c, "eyJzdGF0dXMiOiI0MDEifQ==", out), 4);
    ASSERT_STREQ(out, "AQ==");
}

static void test_pick(void)
{
    static const unsigned char none[CONF_MAX_MECHS] = {CONF_MECH_END};
    static const unsigned char login_first[CONF_MAX_MECHS] = {CONF_MECH_LOGIN, CONF_MECH_PLAIN,
                                                              CONF_MECH_END};
    unsigned all =
        UP_AUTH_PLAIN | UP_AUTH_LOGIN | UP_AUTH_CRAM_MD5 | UP_AUTH_XOAUTH2 | UP_AUTH_OAUTHBEARER;

    /* the default order: strongest password mechanism first */
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, all, CONF_MECH_END), CONF_MECH_CRAM_MD5);
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, UP_AUTH_PLAIN | UP_AUTH_LOGIN, CONF_MECH_END),
              CONF_MECH_PLAIN);
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, UP_AUTH_LOGIN, CONF_MECH_END), CONF_MECH_LOGIN);
    /* a token provider: only its mechanism */
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, all, CONF_MECH_XOAUTH2), CONF_MECH_XOAUTH2);
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, all, CONF_MECH_OAUTHBEARER),
              CONF_MECH_OAUTHBEARER);
    ASSERT_EQ(
        up_sasl_pick(none, CONF_MAX_MECHS, UP_AUTH_PLAIN | UP_AUTH_XOAUTH2, CONF_MECH_OAUTHBEARER),
        CONF_MECH_END);
    /* no password mechanism is picked by token alone, nor a token one by password */
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, UP_AUTH_XOAUTH2, CONF_MECH_END), CONF_MECH_END);
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, UP_AUTH_PLAIN, CONF_MECH_XOAUTH2), CONF_MECH_END);
    /* auth_mechanisms: the configured order wins, and only what it names */
    ASSERT_EQ(up_sasl_pick(login_first, CONF_MAX_MECHS, all, CONF_MECH_END), CONF_MECH_LOGIN);
    ASSERT_EQ(
        up_sasl_pick(login_first, CONF_MAX_MECHS, UP_AUTH_PLAIN | UP_AUTH_CRAM_MD5, CONF_MECH_END),
        CONF_MECH_PLAIN);
    ASSERT_EQ(up_sasl_pick(login_first, CONF_MAX_MECHS, UP_AUTH_CRAM_MD5, CONF_MECH_END),
              CONF_MECH_END);
    ASSERT_EQ(up_sasl_pick(none, CONF_MAX_MECHS, 0, CONF_MECH_END), CONF_MECH_END);
}

int main(void)
{
    test_plain();
    test_login();
    test_cram_md5();
    test_xoauth2();
    test_oauthbearer();
    test_pick();
    ASSERT_STREQ(up_sasl_name(CONF_MECH_CRAM_MD5), "CRAM-MD5");
    return CHECK_DONE();
}
