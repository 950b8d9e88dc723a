/* test_up_reply: upstream reply parser (upstream/up_reply.c): single and multi-line
 * replies, CRLF and bare LF, stopping right after a reply, byte-by-byte feeding,
 * errors and limits, text helpers and the EHLO capability scan (RFC 5321 §4.2). */
#include "upstream/up_reply.h"

#include <string.h>

#include "tests/check.h"

/* Feeds all of s at once; returns the status, *used the bytes consumed. */
static int feed(struct up_reply_parser *p, const char *s, size_t *used)
{
    return up_reply_feed(p, s, strlen(s), used);
}

/* Feeds s one byte at a time until a status other than MORE; returns it. */
static int feed_bytes(struct up_reply_parser *p, const char *s, size_t len, size_t *used)
{
    size_t total = 0;
    int rc = UP_REPLY_MORE;

    for (size_t i = 0; i < len && rc == UP_REPLY_MORE; i++) {
        size_t c;

        rc = up_reply_feed(p, s + i, 1, &c);
        total += c;
    }
    *used = total;
    return rc;
}

static void test_single(void)
{
    struct up_reply_parser p;
    size_t used;
    char buf[128];

    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "220 mx.example ESMTP ready\r\n", &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 28);
    ASSERT_EQ(p.r.code, 220);
    ASSERT_EQ(p.r.nlines, 1);
    ASSERT_EQ(p.r.len, 28);
    ASSERT_STREQ(p.r.text, "220 mx.example ESMTP ready\r\n");
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "mx.example ESMTP ready");
    ASSERT_STREQ(up_reply_oneline(&p.r, buf, sizeof(buf)), "mx.example ESMTP ready");

    /* Bare LF is normalised to CRLF in text. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "250 ok\n", &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 7);
    ASSERT_STREQ(p.r.text, "250 ok\r\n");
    ASSERT_EQ(p.r.len, 8);

    /* Code alone. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "354\r\n", &used), UP_REPLY_DONE);
    ASSERT_EQ(p.r.code, 354);
    ASSERT_STREQ(p.r.text, "354\r\n");
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "");

    /* "ddd " with empty text. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "250 \r\n", &used), UP_REPLY_DONE);
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "");

    /* Limits of the code range. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "200 a\r\n", &used), UP_REPLY_DONE);
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "599 a\r\n", &used), UP_REPLY_DONE);
    ASSERT_EQ(p.r.code, 599);

    /* Incomplete. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "250 o", &used), UP_REPLY_MORE);
    ASSERT_EQ(used, 5);
    ASSERT_EQ(feed(&p, "k\r", &used), UP_REPLY_MORE);
    ASSERT_EQ(feed(&p, "\n", &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 1);
    ASSERT_STREQ(p.r.text, "250 ok\r\n");
}

static void test_multi(void)
{
    static const char ehlo[] = "250-mx.example Hello\r\n"
                               "250-PIPELINING\r\n"
                               "250-SIZE 35882577\n"
                               "250 STARTTLS\r\n";
    static const char ehlo_norm[] = "250-mx.example Hello\r\n"
                                    "250-PIPELINING\r\n"
                                    "250-SIZE 35882577\r\n"
                                    "250 STARTTLS\r\n";
    struct up_reply_parser p;
    size_t used;
    char buf[256];

    up_reply_init(&p);
    ASSERT_EQ(feed(&p, ehlo, &used), UP_REPLY_DONE);
    ASSERT_EQ(used, strlen(ehlo));
    ASSERT_EQ(p.r.code, 250);
    ASSERT_EQ(p.r.nlines, 4);
    ASSERT_STREQ(p.r.text, ehlo_norm);
    ASSERT_EQ(p.r.len, strlen(ehlo_norm));
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "STARTTLS");
    ASSERT_STREQ(up_reply_oneline(&p.r, buf, sizeof(buf)),
                 "mx.example Hello / PIPELINING / SIZE 35882577 / STARTTLS");

    /* Byte by byte: same result. */
    up_reply_init(&p);
    ASSERT_EQ(feed_bytes(&p, ehlo, strlen(ehlo), &used), UP_REPLY_DONE);
    ASSERT_EQ(used, strlen(ehlo));
    ASSERT_STREQ(p.r.text, ehlo_norm);
    ASSERT_EQ(p.r.nlines, 4);

    /* Every 2-way split. */
    for (size_t c = 0; c <= strlen(ehlo); c++) {
        int rc;
        size_t u2 = 0;

        up_reply_init(&p);
        rc = up_reply_feed(&p, ehlo, c, &used);
        if (rc == UP_REPLY_MORE)
            rc = up_reply_feed(&p, ehlo + c, strlen(ehlo) - c, &u2);
        ASSERT_EQ(rc, UP_REPLY_DONE);
        ASSERT_EQ(used + u2, strlen(ehlo));
        ASSERT_EQ(strcmp(p.r.text, ehlo_norm), 0);
    }

    /* Truncated output. */
    ASSERT_STREQ(up_reply_oneline(&p.r, buf, 8), "mx.exam");
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, 5), "STAR");
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, 1), "");
    ASSERT_TRUE(up_reply_oneline(&p.r, buf, 0) == buf);
}

/* Bytes after the reply stay with the caller (STARTTLS response injection). */
static void test_stop(void)
{
    static const char two[] = "220 go ahead\r\n250 injected\r\n";
    struct up_reply_parser p;
    size_t used;

    up_reply_init(&p);
    ASSERT_EQ(feed(&p, two, &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 14);
    ASSERT_EQ(p.r.code, 220);
    ASSERT_STREQ(p.r.text, "220 go ahead\r\n");

    /* The next feed starts a new reply without an explicit init. */
    ASSERT_EQ(feed(&p, two + used, &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 14);
    ASSERT_EQ(p.r.code, 250);
    ASSERT_EQ(p.r.nlines, 1);
    ASSERT_STREQ(p.r.text, "250 injected\r\n");

    /* A multi-line reply followed by more: stops after the final line. */
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "250-a\n250 b\nXYZ", &used), UP_REPLY_DONE);
    ASSERT_EQ(used, 12);
    ASSERT_EQ(p.r.nlines, 2);

    /* An empty feed after DONE keeps the finished reply readable. */
    ASSERT_EQ(up_reply_feed(&p, "", 0, &used), UP_REPLY_MORE);
    ASSERT_EQ(used, 0);
    ASSERT_EQ(p.r.nlines, 2);
    ASSERT_STREQ(p.r.text, "250-a\r\n250 b\r\n");
    ASSERT_EQ(feed(&p, "221 bye\r\n", &used), UP_REPLY_DONE);
    ASSERT_STREQ(p.r.text, "221 bye\r\n");
}

static int parse_one(const char *s)
{
    struct up_reply_parser p;
    size_t used;

    up_reply_init(&p);
    return feed(&p, s, &used);
}

static void test_errors(void)
{
    static const char *const syntax[] = {
        "25 ok\r\n",
        "2500 ok\r\n",
        "250ok\r\n",
        "250_ok\r\n",
        "abc ok\r\n",
        "\r\n",
        "\n",
        "199 x\r\n",
        "600 x\r\n",
        "099 x\r\n",
        " 250 ok\r\n",
        "250-a\r\n251 b\r\n",
        "250-a\r\n550 b\r\n",
        "250-a\r\nxyz\r\n",
        "250 a\rb\r\n",
        "250-a\r\n\r\n",
        "2x0 ok\r\n",
        "-250 ok\r\n",
    };
    struct up_reply_parser p;
    size_t used;
    char line[UP_REPLY_LINE_MAX + 16];

    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
        int rc = parse_one(syntax[i]);

        if (rc != UP_REPLY_ERR_SYNTAX)
            fprintf(stderr, "\"%s\" gave %d\n", syntax[i], rc);
        ASSERT_EQ(rc, UP_REPLY_ERR_SYNTAX);
    }
    /* A NUL inside a line. */
    up_reply_init(&p);
    ASSERT_EQ(up_reply_feed(&p, "250 a\0b\r\n", 9, &used), UP_REPLY_ERR_SYNTAX);

    /* Errors are sticky until up_reply_init. */
    ASSERT_EQ(feed(&p, "250 ok\r\n", &used), UP_REPLY_ERR_SYNTAX);
    ASSERT_EQ(used, 0);
    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "250 ok\r\n", &used), UP_REPLY_DONE);

    /* Line length: UP_REPLY_LINE_MAX octets before CRLF is fine, one more is not. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "250 ", 4);
    memcpy(line + UP_REPLY_LINE_MAX, "\r\n", 3);
    ASSERT_EQ(parse_one(line), UP_REPLY_DONE);
    memcpy(line + UP_REPLY_LINE_MAX, "\n", 2);
    ASSERT_EQ(parse_one(line), UP_REPLY_DONE);
    memcpy(line + UP_REPLY_LINE_MAX, "x\r\n", 4);
    ASSERT_EQ(parse_one(line), UP_REPLY_ERR_TOO_LONG);
    memcpy(line + UP_REPLY_LINE_MAX, "x\n", 3);
    ASSERT_EQ(parse_one(line), UP_REPLY_ERR_TOO_LONG);
    /* ... also byte by byte, and with no line end in sight. */
    memcpy(line + UP_REPLY_LINE_MAX, "x\r\n", 4);
    up_reply_init(&p);
    ASSERT_EQ(feed_bytes(&p, line, strlen(line), &used), UP_REPLY_ERR_TOO_LONG);
    memset(line + 4, 'x', sizeof(line) - 5);
    line[sizeof(line) - 1] = '\0';
    ASSERT_EQ(parse_one(line), UP_REPLY_ERR_TOO_LONG);

    /* Total size: many continuation lines overflow UP_REPLY_MAX. */
    {
        static const char l[] = "250-0123456789012345678901234567890123456789\r\n"; /* 46 */
        size_t total = 0;
        int rc = UP_REPLY_MORE;

        up_reply_init(&p);
        while (rc == UP_REPLY_MORE) {
            rc = feed(&p, l, &used);
            total += 46;
        }
        ASSERT_EQ(rc, UP_REPLY_ERR_TOO_LONG);
        ASSERT_TRUE(total > UP_REPLY_MAX - 46 && total <= UP_REPLY_MAX + 46);
    }
    /* Exactly UP_REPLY_MAX - 1 bytes of text fits (the NUL takes the last). */
    {
        char big[UP_REPLY_MAX + 64];
        size_t n = 0;

        /* 4095 = 4 lines of 1000+2 + one line of 87 (85 + CRLF). */
        for (int k = 0; k < 4; k++) {
            memset(big + n, 'y', 1000);
            memcpy(big + n, "250-", 4);
            memcpy(big + n + 1000, "\r\n", 2);
            n += 1002;
        }
        memset(big + n, 'z', 85);
        memcpy(big + n, "250 ", 4);
        memcpy(big + n + 85, "\r\n", 3);
        up_reply_init(&p);
        ASSERT_EQ(feed(&p, big, &used), UP_REPLY_DONE);
        ASSERT_EQ(p.r.len, UP_REPLY_MAX - 1);
        ASSERT_EQ(strlen(p.r.text), UP_REPLY_MAX - 1);
        memcpy(big + n + 85, "z\r\n", 4);
        up_reply_init(&p);
        ASSERT_EQ(feed(&p, big, &used), UP_REPLY_ERR_TOO_LONG);
    }
}

static void test_text_sanitised(void)
{
    struct up_reply_parser p;
    size_t used;
    char buf[64];

    up_reply_init(&p);
    ASSERT_EQ(feed(&p, "550-a\tb\x1b[31m\r\n550 5.7.1 \x7fno\r\n", &used), UP_REPLY_DONE);
    ASSERT_STREQ(up_reply_oneline(&p.r, buf, sizeof(buf)), "a b [31m / 5.7.1  no");
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "5.7.1  no");

    /* Empty reply (before any line). */
    up_reply_init(&p);
    ASSERT_STREQ(up_reply_lastline(&p.r, buf, sizeof(buf)), "");
    ASSERT_STREQ(up_reply_oneline(&p.r, buf, sizeof(buf)), "");
}

static struct up_ehlo ehlo_of(const char *reply)
{
    struct up_reply_parser p;
    struct up_ehlo e;
    size_t used;

    memset(&e, 0xa5, sizeof(e));
    up_reply_init(&p);
    if (feed(&p, reply, &used) != UP_REPLY_DONE)
        fprintf(stderr, "bad test reply %s\n", reply);
    up_reply_ehlo(&p.r, &e);
    return e;
}

static void test_ehlo(void)
{
    struct up_ehlo e;

    e = ehlo_of("250-mx.example Hello [192.0.2.1]\r\n"
                "250-PIPELINING\r\n"
                "250-SIZE 35882577\r\n"
                "250-8BITMIME\r\n"
                "250-SMTPUTF8\r\n"
                "250-DSN\r\n"
                "250-ENHANCEDSTATUSCODES\r\n"
                "250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n"
                "250 STARTTLS\r\n");
    ASSERT_EQ(e.ext, UP_EXT_STARTTLS | UP_EXT_PIPELINING | UP_EXT_SIZE | UP_EXT_8BITMIME |
                         UP_EXT_SMTPUTF8 | UP_EXT_DSN | UP_EXT_AUTH | UP_EXT_ENHANCEDSTATUSCODES);
    ASSERT_EQ(e.auth, UP_AUTH_PLAIN | UP_AUTH_LOGIN | UP_AUTH_CRAM_MD5 | UP_AUTH_XOAUTH2);
    ASSERT_EQ(e.size, 35882577);

    /* Case-insensitive keywords and mechanisms; legacy AUTH= form. */
    e = ehlo_of("250-mx\r\n250-starttls\r\n250-Auth=plain login\r\n250 size\r\n");
    ASSERT_EQ(e.ext, UP_EXT_STARTTLS | UP_EXT_AUTH | UP_EXT_SIZE);
    ASSERT_EQ(e.auth, UP_AUTH_PLAIN | UP_AUTH_LOGIN);
    ASSERT_EQ(e.size, 0);

    /* Both AUTH forms together (common): the union. */
    e = ehlo_of("250-mx\r\n250-AUTH CRAM-MD5\r\n250 AUTH=PLAIN\r\n");
    ASSERT_EQ(e.auth, UP_AUTH_CRAM_MD5 | UP_AUTH_PLAIN);

    /* The greeting line is not a keyword; single-line reply has no extensions. */
    e = ehlo_of("250 STARTTLS\r\n");
    ASSERT_EQ(e.ext, 0);
    ASSERT_EQ(e.auth, 0);
    ASSERT_EQ(e.size, 0);

    /* Unknown mechanisms, extra blanks, whole-word matches only. */
    e = ehlo_of("250-mx\r\n250-AUTH  GSSAPI  PLAIN   NTLM\r\n250-STARTTLSX\r\n"
                "250-SIZEX 10\r\n250-X-PIPELINING\r\n250 DSN \r\n");
    ASSERT_EQ(e.ext, UP_EXT_AUTH | UP_EXT_DSN);
    ASSERT_EQ(e.auth, UP_AUTH_PLAIN);
    ASSERT_EQ(e.size, 0);

    /* SIZE values: 0, garbage, huge. */
    e = ehlo_of("250-mx\r\n250 SIZE 0\r\n");
    ASSERT_EQ(e.ext, UP_EXT_SIZE);
    ASSERT_EQ(e.size, 0);
    e = ehlo_of("250-mx\r\n250 SIZE 12abc\r\n");
    ASSERT_EQ(e.size, 0);
    e = ehlo_of("250-mx\r\n250 SIZE 99999999999999999999999\r\n");
    ASSERT_TRUE(e.size == ~0ULL);
    e = ehlo_of("250-mx\n250 SIZE 10240000  \n");
    ASSERT_EQ(e.size, 10240000);

    /* AUTH without mechanisms. */
    e = ehlo_of("250-mx\r\n250 AUTH\r\n");
    ASSERT_EQ(e.ext, UP_EXT_AUTH);
    ASSERT_EQ(e.auth, 0);

    /* Not a 250: nothing. */
    e = ehlo_of("550-no\r\n550 STARTTLS\r\n");
    ASSERT_EQ(e.ext, 0);
    ASSERT_EQ(e.auth, 0);
    ASSERT_EQ(e.size, 0);
}

int main(void)
{
    test_single();
    test_multi();
    test_stop();
    test_errors();
    test_text_sanitised();
    test_ehlo();
    return CHECK_DONE();
}
