/* test_auth_passwd: inbound AUTH pieces: PLAIN response decoding (RFC 4616) and
 * crypt(3) hashes made and checked (auth/auth_passwd.c). */
#include "auth/auth_passwd.h"

#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

static void test_plain_decode(void)
{
    char login[16], pass[16];

    ASSERT_EQ(auth_plain_decode("\0alice\0secret", 13, login, sizeof(login), pass, sizeof(pass)),
              0);
    ASSERT_STREQ(login, "alice");
    ASSERT_STREQ(pass, "secret");
    /* authzid equal to the login is accepted, another identity is not */
    ASSERT_EQ(auth_plain_decode("alice\0alice\0pw", 14, login, sizeof(login), pass, sizeof(pass)),
              0);
    ASSERT_EQ(auth_plain_decode("bob\0alice\0pw", 12, login, sizeof(login), pass, sizeof(pass)),
              -1);
    ASSERT_EQ(auth_plain_decode("\0alice", 6, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0\0pw", 4, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0a\0p\0w", 6, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0a-very-long-login-name\0p", 25, login, sizeof(login), pass,
                                sizeof(pass)),
              -1);
    /* empty password: decoded, and then simply wrong */
    ASSERT_EQ(auth_plain_decode("\0a\0", 3, login, sizeof(login), pass, sizeof(pass)), 0);
    ASSERT_STREQ(pass, "");
}

static void test_hash(void)
{
    char *h = auth_passwd_hash("correct horse");
    char *h2 = auth_passwd_hash("correct horse");

    ASSERT_TRUE(h != NULL && h2 != NULL);
    ASSERT_TRUE(strncmp(h, "$y$", 3) == 0);
    ASSERT_TRUE(strcmp(h, h2) != 0); /* salted */
    ASSERT_EQ(auth_passwd_check(h, "correct horse"), 1);
    ASSERT_EQ(auth_passwd_check(h, "correct horsE"), 0);
    ASSERT_EQ(auth_passwd_check(h, ""), 0);
    ASSERT_EQ(auth_passwd_check("*", "x"), 0);
    ASSERT_EQ(auth_passwd_check(NULL, "x"), 0);
    free(h);
    free(h2);
}

int main(void)
{
    test_plain_decode();
    test_hash();
    return CHECK_DONE();
}
