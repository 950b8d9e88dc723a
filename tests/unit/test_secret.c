/* test_secret: secrets from files and the environment (common/secret.c): one
 * trailing newline stripped, NUL bytes and empty values refused. */
#include "common/secret.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"

static void write_file(const char *name, const char *text, size_t len)
{
    FILE *f = fopen(name, "wb");

    ASSERT_TRUE(f != NULL);
    if (!f) {
        return;
    }
    ASSERT_EQ(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void test_secrets(void)
{
    char err[512];
    char *s;

    write_file("nl.pass", "with-newline\n", 13);
    write_file("nonl.pass", "without-newline", 15);
    write_file("crlf.pass", "with-crlf\r\n", 11);
    write_file("two.pass", "two-newlines\n\n", 14);
    write_file("inner.pass", "pass word\twith blanks \n", 23);

    s = secret_file("nl.pass", err, sizeof(err));
    ASSERT_STREQ(s, "with-newline");
    free(s);
    s = secret_file("nonl.pass", err, sizeof(err));
    ASSERT_STREQ(s, "without-newline");
    free(s);
    s = secret_file("crlf.pass", err, sizeof(err));
    ASSERT_STREQ(s, "with-crlf");
    free(s);
    s = secret_file("two.pass", err, sizeof(err)); /* only one newline is stripped */
    ASSERT_STREQ(s, "two-newlines\n");
    free(s);
    s = secret_file("inner.pass", err, sizeof(err));
    ASSERT_STREQ(s, "pass word\twith blanks ");
    free(s);
    write_file("nul.pass", "a\0b\n", 4);
    s = secret_file("nul.pass", err, sizeof(err));
    ASSERT_TRUE(s == NULL);
    ASSERT_TRUE(strstr(err, "NUL") != NULL);

    setenv("RELAY25_TEST_EMPTY", "", 1);
    s = secret_env("RELAY25_TEST_EMPTY", err, sizeof(err));
    ASSERT_TRUE(s == NULL);
    ASSERT_STREQ(err, "environment variable RELAY25_TEST_EMPTY is empty");
    unsetenv("RELAY25_TEST_EMPTY");
}

int main(void)
{
    char dir[256], cmd[300];
    const char *t = getenv("TMPDIR");
    int n = snprintf(dir, sizeof(dir), "%s/relay25-secret-XXXXXX", t && *t ? t : "/tmp");

    if (n < 0 || (size_t)n >= sizeof(dir) || !mkdtemp(dir) || chdir(dir) != 0) {
        perror("test_secret: temp dir");
        return 1;
    }
    test_secrets();
    n = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (n > 0 && (size_t)n < sizeof(cmd) && system(cmd) != 0) {
        fprintf(stderr, "test_secret: could not remove %s\n", dir);
    }
    return CHECK_DONE();
}
