/* test_dsn: the RFC 3461 parameter checks of common/dsn.c: xtext (§4) both
 * ways, RET, NOTIFY (NEVER alone, no repeats), ENVID (length, printable once
 * decoded), ORCPT (addr-type ";" xtext), the 8-bit test of RFC 6531 and the
 * lookup in a vetted parameter string. */
#include "common/dsn.h"

#include <string.h>

#include "tests/check.h"

#define TEXT(s) s, sizeof(s) - 1

static void test_xtext(void)
{
    char out[16];

    ASSERT_EQ(dsn_xtext_decode(TEXT("a+2Bb+3D"), out, sizeof(out)), 4);
    ASSERT_STREQ(out, "a+b=");
    ASSERT_EQ(dsn_xtext_decode(TEXT("a+2b"), out, sizeof(out)), -1); /* upper-case hex only */
    ASSERT_EQ(dsn_xtext_decode(TEXT("a+2"), out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode(TEXT("a+"), out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode(TEXT("a=b"), out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode(TEXT("a b"), out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode(TEXT("\xc3\xa9"), out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode("", 0, out, sizeof(out)), -1);
    ASSERT_EQ(dsn_xtext_decode(TEXT("0123456789abcdef"), out, sizeof(out)), -1); /* no room */
    ASSERT_EQ(dsn_xtext_decode(TEXT("0123456789abcde"), out, sizeof(out)), 15);
    ASSERT_TRUE(dsn_xtext_ok(TEXT("!~+00")));
    ASSERT_TRUE(!dsn_xtext_ok(TEXT("+")));
}

static void test_ret_notify(void)
{
    ASSERT_EQ(dsn_ret_parse(TEXT("FULL")), DSN_RET_FULL);
    ASSERT_EQ(dsn_ret_parse(TEXT("hdrs")), DSN_RET_HDRS);
    ASSERT_EQ(dsn_ret_parse(TEXT("BODY")), -1);
    ASSERT_EQ(dsn_ret_parse("", 0), -1);
    ASSERT_EQ(dsn_notify_parse(TEXT("NEVER")), DSN_NOTIFY_NEVER);
    ASSERT_EQ(dsn_notify_parse(TEXT("success,Failure,DELAY")),
              DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
    ASSERT_EQ(dsn_notify_parse(TEXT("NEVER,SUCCESS")), -1);
    ASSERT_EQ(dsn_notify_parse(TEXT("FAILURE,FAILURE")), -1);
    ASSERT_EQ(dsn_notify_parse(TEXT("FAILURE,")), -1);
    ASSERT_EQ(dsn_notify_parse(TEXT(",FAILURE")), -1);
    ASSERT_EQ(dsn_notify_parse(TEXT("SOMETIMES")), -1);
    ASSERT_EQ(dsn_notify_parse("", 0), -1);
}

static void test_envid_orcpt(void)
{
    char longid[102];

    ASSERT_TRUE(dsn_envid_ok(TEXT("QQ314159+2B")));
    ASSERT_TRUE(!dsn_envid_ok(TEXT("a+0Ab"))); /* decodes to LF */
    ASSERT_TRUE(!dsn_envid_ok(TEXT("a+C3+A9")));
    memset(longid, 'x', sizeof(longid));
    ASSERT_TRUE(dsn_envid_ok(longid, 100));
    ASSERT_TRUE(!dsn_envid_ok(longid, 101));
    ASSERT_TRUE(dsn_orcpt_ok(TEXT("rfc822;a+2Bb@example.net")));
    ASSERT_TRUE(dsn_orcpt_ok(TEXT("utf-8;j\\x{F6}rg@example.net")));
    ASSERT_TRUE(!dsn_orcpt_ok(TEXT("a@example.net")));
    ASSERT_TRUE(!dsn_orcpt_ok(TEXT(";a@example.net")));
    ASSERT_TRUE(!dsn_orcpt_ok(TEXT("rfc822;")));
    ASSERT_TRUE(!dsn_orcpt_ok(TEXT("rfc 822;a@example.net")));
    ASSERT_TRUE(!dsn_orcpt_ok(TEXT("rfc822;a+0D+0Ab")));
}

static void test_misc(void)
{
    size_t len = 99;
    const char *v;

    ASSERT_TRUE(dsn_has_8bit(TEXT("j\xc3\xb6rg")));
    ASSERT_TRUE(!dsn_has_8bit(TEXT("joerg")));
    v = dsn_param("NOTIFY=SUCCESS ORCPT=rfc822;a@b", "orcpt", &len);
    ASSERT_TRUE(v != NULL && len == 10 && strncmp(v, "rfc822;a@b", len) == 0);
    v = dsn_param("NOTIFY=SUCCESS", "NOTIFY", &len);
    ASSERT_TRUE(v != NULL && len == 7);
    ASSERT_TRUE(dsn_param("NOTIFYX=1 XNOTIFY=2", "NOTIFY", &len) == NULL);
    ASSERT_EQ(len, 0);
}

int main(void)
{
    test_xtext();
    test_ret_notify();
    test_envid_orcpt();
    test_misc();
    return CHECK_DONE();
}
