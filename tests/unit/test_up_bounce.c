/* test_up_bounce: the RFC 3464 report (upstream/up_bounce.c): a multipart/report
 * with report-type=delivery-status, one boundary used throughout, the human part,
 * one Final-Recipient/Action/Status/Diagnostic-Code block per failed recipient
 * (Status from the reply's enhanced code, else 5.0.0), the original header
 * section as text/rfc822-headers (RFC 3462), and the failed/<qid>.reason text. */
#include "upstream/up_bounce.h"

#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

/* The text between the end of "after" (found from p) and the next "\r\n". */
static int line_after(const char *p, const char *after, const char *want)
{
    const char *s = strstr(p, after);
    size_t n;

    if (!s) {
        return 0;
    }
    s += strlen(after);
    n = strcspn(s, "\r\n");
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

static size_t count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) {
        n++;
    }
    return n;
}

static void test_report(void)
{
    static const char headers[] = "Subject: hello\r\nFrom: <a@example.org>\r\n";
    static const struct up_bounce_rcpt failed[] = {
        {"x@example.net", "550 5.1.1 <x@example.net>: no such user", NULL, 0},
        {"y@example.net", "message expired after 60 seconds in the queue", NULL, 0},
    };
    struct up_bounce b;
    const char *part1, *part2, *part3, *x, *y, *end;
    size_t len = 0;
    char *out;

    memset(&b, 0, sizeof(b));
    b.hostname = "relay.test";
    b.to = "a@example.org";
    b.qid = 0x1234;
    b.id = 0xabcd;
    b.date = 0;
    b.failed = failed;
    b.nfailed = 2;
    b.headers = headers;
    b.headers_len = sizeof(headers) - 1;
    out = up_bounce_build(&b, &len);
    ASSERT_TRUE(out != NULL);
    if (!out) {
        return;
    }
    ASSERT_EQ(strlen(out), len);
    /* the message header */
    ASSERT_TRUE(strncmp(out, "From: Mail Delivery System <MAILER-DAEMON@relay.test>\r\n", 55) == 0);
    ASSERT_TRUE(line_after(out, "\r\nTo: ", "<a@example.org>"));
    ASSERT_TRUE(line_after(out, "\r\nMessage-ID: ", "<000000000000abcd.bounce@relay.test>"));
    ASSERT_TRUE(line_after(out, "\r\nAuto-Submitted: ", "auto-replied"));
    ASSERT_TRUE(
        line_after(out, "\r\nContent-Type: ", "multipart/report; report-type=delivery-status;"));
    ASSERT_TRUE(line_after(out, "\r\n\tboundary=", "\"000000000000abcd/relay.test\""));
    /* three parts, in order, then the closing boundary at the very end */
    ASSERT_EQ(count(out, "\r\n--000000000000abcd/relay.test\r\n"), 3);
    ASSERT_TRUE(strncmp(strstr(out, "\r\n\r\n") + 4, "--000000000000abcd/relay.test\r\n", 31) == 0);
    end = out + len - strlen("\r\n--000000000000abcd/relay.test--\r\n");
    ASSERT_STREQ(end, "\r\n--000000000000abcd/relay.test--\r\n");
    part1 = strstr(out, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    part2 = strstr(out, "Content-Type: message/delivery-status\r\n\r\n");
    part3 = strstr(out, "Content-Type: text/rfc822-headers\r\n\r\n");
    ASSERT_TRUE(part1 && part2 && part3 && part1 < part2 && part2 < part3);
    if (!part1 || !part2 || !part3) {
        free(out);
        return;
    }
    /* the human part names each recipient with its reason */
    ASSERT_TRUE(line_after(part1, "\r\n<x@example.net>: ", failed[0].reason));
    ASSERT_TRUE(line_after(part1, "\r\n<y@example.net>: ", failed[1].reason));
    ASSERT_TRUE(strstr(part1, "0000000000001234") != NULL);
    /* per-message fields, then one block per recipient (RFC 3464 §2.2, §2.3) */
    ASSERT_TRUE(line_after(part2, "\r\n\r\nReporting-MTA: ", "dns; relay.test"));
    x = strstr(part2, "\r\n\r\nFinal-Recipient: rfc822; x@example.net\r\n");
    y = strstr(part2, "\r\n\r\nFinal-Recipient: rfc822; y@example.net\r\n");
    ASSERT_TRUE(x && y && x < y && y < part3);
    if (x && y) {
        static const char block[] = "Action: failed\r\nStatus: 5.1.1\r\n"
                                    "Diagnostic-Code: smtp; 550 5.1.1 <x@example.net>: no such "
                                    "user\r\n";
        ASSERT_TRUE(strncmp(x + 4 + strlen("Final-Recipient: rfc822; x@example.net\r\n"), block,
                            sizeof(block) - 1) == 0);
        ASSERT_TRUE(line_after(x, "Status: ", "5.1.1"));
        ASSERT_TRUE(line_after(y, "Action: ", "failed"));
        ASSERT_TRUE(line_after(y, "Status: ", "5.0.0")); /* no enhanced code in the reason */
        ASSERT_TRUE(line_after(y, "Diagnostic-Code: ",
                               "smtp; message expired after 60 seconds "
                               "in the queue"));
    }
    ASSERT_EQ(count(part2, "Final-Recipient: "), 2);
    /* the original header section, and nothing else, in the third part */
    ASSERT_TRUE(strncmp(part3 + strlen("Content-Type: text/rfc822-headers\r\n\r\n"), headers,
                        sizeof(headers) - 1) == 0);
    free(out);
}

static void test_no_headers(void)
{
    static const struct up_bounce_rcpt failed[] = {{"x@example.net", "554 5.7.1 spam", NULL, 0}};
    struct up_bounce b;
    size_t len = 0;
    char *out;

    memset(&b, 0, sizeof(b));
    b.hostname = "relay.test";
    b.to = "a@example.org";
    b.failed = failed;
    b.nfailed = 1;
    out = up_bounce_build(&b, &len);
    ASSERT_TRUE(out != NULL);
    if (out) {
        ASSERT_TRUE(strstr(out, "Content-Type: text/rfc822-headers\r\n\r\n\r\n--") != NULL);
        ASSERT_TRUE(line_after(out, "Status: ", "5.7.1"));
        free(out);
    }
}

/* RFC 3461 in the report: ENVID and ORCPT decoded from xtext, a relayed
 * recipient (NOTIFY=SUCCESS, upstream without DSN), the whole message for
 * RET=FULL, a non-ASCII recipient as RFC 6533 utf-8-addr-xtext. */
static void test_dsn_fields(void)
{
    static const struct up_bounce_rcpt rc[] = {
        {"x@example.net", "550 5.1.1 unknown", "rfc822;orig+2Bx@example.net", 0},
        {"y@example.net", "250 2.0.0 ok", NULL, 1},
        {"j\xc3\xb6rg@example.net", "550 5.6.7 no SMTPUTF8", NULL, 0},
    };
    static const char msg[] = "Subject: s\r\n\r\nthe body\r\n";
    struct up_bounce b;
    size_t len = 0;
    char *out;

    memset(&b, 0, sizeof(b));
    b.hostname = "relay.test";
    b.to = "a@example.org";
    b.failed = rc;
    b.nfailed = 3;
    b.envid = "id+3D1";
    b.headers = msg;
    b.headers_len = sizeof(msg) - 1;
    b.full = 1;
    out = up_bounce_build(&b, &len);
    ASSERT_TRUE(out != NULL);
    if (out) {
        ASSERT_TRUE(strstr(out, "\r\nOriginal-Envelope-Id: id=1\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "\r\nOriginal-Recipient: rfc822;orig+x@example.net\r\n"
                                "Final-Recipient: rfc822; x@example.net\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "Final-Recipient: rfc822; y@example.net\r\nAction: relayed\r\n"
                                "Status: 2.0.0\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "Final-Recipient: utf-8; j\\x{F6}rg@example.net\r\n"
                                "Action: failed\r\nStatus: 5.6.7\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "Content-Type: message/rfc822\r\n\r\nSubject: s\r\n\r\nthe "
                                "body\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "Subject: Undelivered Mail Returned to Sender") != NULL);
        ASSERT_TRUE(memchr(out, 0xc3, len) == NULL); /* the report stays ASCII */
        free(out);
    }
    /* relayed only: a success report */
    b.failed = rc + 1;
    b.nfailed = 1;
    b.full = 0;
    b.envid = "x+ZZ"; /* no xtext: shown as received */
    out = up_bounce_build(&b, &len);
    ASSERT_TRUE(out != NULL);
    if (out) {
        ASSERT_TRUE(strstr(out, "Subject: Successful Mail Delivery Report") != NULL);
        ASSERT_TRUE(strstr(out, "Original-Envelope-Id: x+ZZ\r\n") != NULL);
        ASSERT_TRUE(strstr(out, "Content-Type: text/rfc822-headers") != NULL);
        free(out);
    }
}

static void test_header_len(void)
{
    static const char m[] = "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore";
    ASSERT_EQ(up_bounce_header_len(m, sizeof(m) - 1), 12);
    ASSERT_EQ(up_bounce_header_len("A: 1\r\n", 6), 6); /* no end within: all of it */
    ASSERT_EQ(up_bounce_header_len("", 0), 0);
}

static void test_reason(void)
{
    static const struct up_bounce_rcpt failed[] = {
        {"x@example.net", "550 5.1.1 unknown\r\nsecond line", NULL, 0},
        {"y@example.net", "451 4.3.0 later", NULL, 0},
    };
    size_t len = 0;
    char *r = up_bounce_reason(failed, 2, &len);

    ASSERT_STREQ(r, "<x@example.net>: 550 5.1.1 unknown\n<y@example.net>: 451 4.3.0 later\n");
    ASSERT_EQ(len, r ? strlen(r) : 0);
    free(r);
    r = up_bounce_reason(failed, 0, &len);
    ASSERT_STREQ(r, "");
    ASSERT_EQ(len, 0);
    free(r);
}

int main(void)
{
    test_report();
    test_no_headers();
    test_dsn_fields();
    test_header_len();
    test_reason();
    return CHECK_DONE();
}
