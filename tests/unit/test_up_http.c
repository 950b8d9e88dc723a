/* test_up_http: the pure parts of the HTTPS client (upstream/up_http.c): response
 * framing (RFC 9112 §6.3: Content-Length, chunked §7.1, close), header lookup and
 * the form encoding of request bodies. */
#include "upstream/up_http.h"

#include <string.h>

#include "tests/check.h"

/* Parses text as the whole response so far (a copy, the parser writes into it). */
static int parse(const char *text, int eof, struct up_http_resp *r, char *buf, size_t cap)
{
    size_t len = strlen(text);

    ASSERT_TRUE(len < cap);
    memcpy(buf, text, len);
    memset(r, 0, sizeof(*r));
    return up__http_parse(buf, len, 65536, eof, r);
}

static void test_framing(void)
{
    char buf[1024];
    struct up_http_resp r;

    /* Content-Length: complete once the body is there, whether or not closed */
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 0, &r, buf, sizeof(buf)), 0);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1, &r, buf, sizeof(buf)),
              -1);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", 0, &r, buf, sizeof(buf)),
              1);
    ASSERT_EQ(r.status, 200);
    ASSERT_MEMEQ(r.body, r.body_len, "hello", 5);
    /* chunked, with an extension and a trailer; decoded in place */
    ASSERT_EQ(parse("HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "4;ext=1\r\n{\"er\r\n6\r\nror\":1\r\n0\r\nX-T: y\r\n\r\n",
                    0, &r, buf, sizeof(buf)),
              1);
    ASSERT_EQ(r.status, 400);
    ASSERT_MEMEQ(r.body, r.body_len, "{\"error\":1", 10);
    /* a chunk not complete yet: more needed, or broken when closed there */
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n12345", 0, &r, buf,
                    sizeof(buf)),
              0);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n12345", 1, &r, buf,
                    sizeof(buf)),
              -1);
    /* a chunk size beyond the bound, a chunk without its CRLF, no size at all */
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n", 0, &r,
                    buf, sizeof(buf)),
              -1);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n", 0,
                    &r, buf, sizeof(buf)),
              -1);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n", 0, &r, buf,
                    sizeof(buf)),
              -1);
    /* no length: the body runs to the close */
    ASSERT_EQ(parse("HTTP/1.0 500 Oops\r\nServer: x\r\n\r\npartial", 0, &r, buf, sizeof(buf)), 0);
    ASSERT_EQ(parse("HTTP/1.0 500 Oops\r\nServer: x\r\n\r\npartial", 1, &r, buf, sizeof(buf)), 1);
    ASSERT_EQ(r.status, 500);
    ASSERT_MEMEQ(r.body, r.body_len, "partial", 7);
    /* not HTTP, a bad status, a head cut off by the close */
    ASSERT_EQ(parse("SSH-2.0-OpenSSH\r\n\r\n", 0, &r, buf, sizeof(buf)), -1);
    ASSERT_EQ(parse("HTTP/1.1 6xx Nope\r\n\r\n", 0, &r, buf, sizeof(buf)), -1);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Le", 0, &r, buf, sizeof(buf)), 0);
    ASSERT_EQ(parse("HTTP/1.1 200 OK\r\nContent-Le", 1, &r, buf, sizeof(buf)), -1);
}

static void test_header(void)
{
    char buf[1024], v[32];
    struct up_http_resp r;

    ASSERT_EQ(parse("HTTP/1.1 429 Too Many\r\nX-A: 1\r\nretry-after:  120 \r\n"
                    "Retry-After: 7\r\nContent-Length: 0\r\n\r\n",
                    0, &r, buf, sizeof(buf)),
              1);
    ASSERT_EQ(up_http_header(&r, "Retry-After", v, sizeof(v)), 3); /* the first one, trimmed */
    ASSERT_STREQ(v, "120");
    ASSERT_EQ(up_http_header(&r, "X-A", v, sizeof(v)), 1);
    ASSERT_STREQ(v, "1");
    ASSERT_EQ(up_http_header(&r, "X", v, sizeof(v)), -1); /* a prefix is not a name */
    ASSERT_EQ(up_http_header(&r, "Location", v, sizeof(v)), -1);
    ASSERT_EQ(up_http_header(&r, "Retry-After", v, 3), -1); /* no room */
    /* no header fields at all */
    ASSERT_EQ(parse("HTTP/1.1 204 No Content\r\n\r\n", 1, &r, buf, sizeof(buf)), 1);
    ASSERT_EQ(r.head_len, 0);
    ASSERT_EQ(up_http_header(&r, "Retry-After", v, sizeof(v)), -1);
}

static void test_form(void)
{
    char out[64];
    size_t len = 0;

    ASSERT_EQ(up_http_form_add(out, sizeof(out), &len, "grant_type", "refresh_token"), 0);
    ASSERT_EQ(up_http_form_add(out, sizeof(out), &len, "scope", "a b/c+d~é"), 0);
    ASSERT_STREQ(out, "grant_type=refresh_token&scope=a%20b%2Fc%2Bd~%C3%A9");
    ASSERT_EQ(len, strlen(out));
    /* full: -1, and the length stays */
    ASSERT_EQ(up_http_form_add(out, sizeof(out), &len, "x", "0123456789abcdef"), -1);
    ASSERT_EQ(len, 51);
    len = 0;
    ASSERT_EQ(up_http_form_add(out, 8, &len, "abcdefgh", "v"), -1);
}

int main(void)
{
    test_framing();
    test_header();
    test_form();
    return CHECK_DONE();
}
