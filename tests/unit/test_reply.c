/* test_reply: reply_pass (common/reply.c), the enhanced status codes (RFC 2034
 * §3, RFC 3463) given to upstream replies that lack one: derived per code and
 * command, copied from a line that has one, kept where present, text kept;
 * 3xx untouched; truncation keeps whole lines. */
#include "common/reply.h"

#include <string.h>

#include "tests/check.h"

#define PASS_IS(in, cmd, want)                                                                     \
    do {                                                                                           \
        char out_[512];                                                                            \
        size_t n_ = reply_pass(out_, sizeof(out_), in, sizeof(in) - 1, cmd);                       \
        ASSERT_MEMEQ(out_, n_, want, sizeof(want) - 1);                                            \
    } while (0)

static void test_derived(void)
{
    PASS_IS("250 OK\r\n", REPLY_CMD_MAIL, "250 2.1.0 OK\r\n");
    PASS_IS("250 OK\r\n", REPLY_CMD_RCPT, "250 2.1.5 OK\r\n");
    PASS_IS("251 will forward\r\n", REPLY_CMD_RCPT, "251 2.1.5 will forward\r\n");
    PASS_IS("250 Message accepted\r\n", REPLY_CMD_DOT, "250 2.0.0 Message accepted\r\n");
    PASS_IS("550 No such user\r\n", REPLY_CMD_RCPT, "550 5.1.1 No such user\r\n");
    PASS_IS("550 Sender rejected\r\n", REPLY_CMD_MAIL, "550 5.1.0 Sender rejected\r\n");
    PASS_IS("550 Content rejected\r\n", REPLY_CMD_DOT, "550 5.0.0 Content rejected\r\n");
    PASS_IS("552 Too big\r\n", REPLY_CMD_MAIL, "552 5.3.4 Too big\r\n");
    PASS_IS("552 Too big\r\n", REPLY_CMD_DOT, "552 5.3.4 Too big\r\n");
    PASS_IS("552 Mailbox full\r\n", REPLY_CMD_RCPT, "552 5.2.2 Mailbox full\r\n");
    PASS_IS("452 Too many recipients\r\n", REPLY_CMD_RCPT, "452 4.5.3 Too many recipients\r\n");
    PASS_IS("452 Out of disk\r\n", REPLY_CMD_DOT, "452 4.3.1 Out of disk\r\n");
    PASS_IS("451 Try later\r\n", REPLY_CMD_MAIL, "451 4.3.0 Try later\r\n");
    PASS_IS("554 Relay denied\r\n", REPLY_CMD_RCPT, "554 5.7.1 Relay denied\r\n");
    PASS_IS("554 Transaction failed\r\n", REPLY_CMD_DOT, "554 5.0.0 Transaction failed\r\n");
    PASS_IS("503 Bad sequence\r\n", REPLY_CMD_DATA, "503 5.5.1 Bad sequence\r\n");
    PASS_IS("599 odd\r\n", REPLY_CMD_OTHER, "599 5.0.0 odd\r\n");
    PASS_IS("499 odd\r\n", REPLY_CMD_OTHER, "499 4.0.0 odd\r\n");
    /* no text at all, LF only, no separator */
    PASS_IS("250\r\n", REPLY_CMD_DOT, "250 2.0.0\r\n");
    PASS_IS("250 \r\n", REPLY_CMD_DOT, "250 2.0.0\r\n");
    PASS_IS("250 OK\n", REPLY_CMD_MAIL, "250 2.1.0 OK\r\n");
}

static void test_kept(void)
{
    /* a code upstream sent stays as it is */
    PASS_IS("250 2.0.0 OK: queued as 7\r\n", REPLY_CMD_DOT, "250 2.0.0 OK: queued as 7\r\n");
    PASS_IS("550 5.7.1 rejected\r\n", REPLY_CMD_RCPT, "550 5.7.1 rejected\r\n");
    PASS_IS("250 2.1.5\r\n", REPLY_CMD_RCPT, "250 2.1.5\r\n");
    /* multi-line: every line gets one; lines without take the first one found */
    PASS_IS("550-first\r\n550-5.7.1 second\r\n550 third\r\n", REPLY_CMD_RCPT,
            "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n");
    PASS_IS("452-a\r\n452 b\r\n", REPLY_CMD_RCPT, "452-4.5.3 a\r\n452 4.5.3 b\r\n");
    /* a code of the wrong class is not one (RFC 3463 §2): text kept behind ours */
    PASS_IS("535 4.7.8 no\r\n", REPLY_CMD_OTHER, "535 5.7.8 4.7.8 no\r\n");
    /* something that only looks like one */
    PASS_IS("250 2.0 done\r\n", REPLY_CMD_DOT, "250 2.0.0 2.0 done\r\n");
    PASS_IS("250 2.0.0.0 x\r\n", REPLY_CMD_DOT, "250 2.0.0 2.0.0.0 x\r\n");
    /* 3xx: no enhanced code class exists; copied */
    PASS_IS("354 Go ahead\r\n", REPLY_CMD_DATA, "354 Go ahead\r\n");
}

static void test_room(void)
{
    static const char in[] = "250-one\r\n250-two\r\n250 three\r\n";
    char out[64];
    size_t n;

    /* room for two lines: the second becomes the last */
    n = reply_pass(out, 38, in, sizeof(in) - 1, REPLY_CMD_DOT);
    ASSERT_MEMEQ(out, n, "250-2.0.0 one\r\n250 2.0.0 two\r\n", 30);
    ASSERT_EQ(out[n], '\0');
    ASSERT_EQ(reply_pass(out, 15, in, sizeof(in) - 1, REPLY_CMD_DOT), 0);
    n = reply_pass(out, sizeof(out), in, sizeof(in) - 1, REPLY_CMD_DOT);
    ASSERT_EQ(n, sizeof(in) - 1 + 3 * 6);
    ASSERT_TRUE(REPLY_PASS_CAP(sizeof(in) - 1) > n);
}

int main(void)
{
    test_derived();
    test_kept();
    test_room();
    return CHECK_DONE();
}
