/* test_metrics_req: the metrics endpoint's request head parser
 * (common/metrics_req.c): 200 for GET/HEAD of /metrics and /, 404 for other
 * paths, 405 for other methods, 400 for malformed lines, 505 for HTTP/2, 431 for a
 * head that does not end within METRICS_REQ_MAX, and MORE for every prefix of a
 * valid head. */
#include "common/metrics_req.h"

#include <string.h>

#include "tests/check.h"

/* The code for a complete request; every proper prefix of it is MORE. */
static int code_of(const char *s, int *head_only)
{
    struct metrics_req r = {-1, -1};
    size_t n = strlen(s);

    for (size_t i = 0; i < n; i++) {
        struct metrics_req p = {-1, -1};
        if (metrics_req_parse(s, i, &p) != METRICS_REQ_MORE) {
            return -1000 - (int)i; /* decided before the head ended */
        }
        ASSERT_EQ(p.code, -1);
    }
    if (metrics_req_parse(s, n, &r) != METRICS_REQ_DONE) {
        return -1;
    }
    if (head_only) {
        *head_only = r.head_only;
    }
    return r.code;
}

/* The code for a request decided before its end (a bad line) */
static int early(const char *s)
{
    struct metrics_req r = {-1, -1};

    if (metrics_req_parse(s, strlen(s), &r) != METRICS_REQ_DONE) {
        return -1;
    }
    return r.code;
}

static void test_valid(void)
{
    int h = -1;

    ASSERT_EQ(code_of("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9325\r\nUser-Agent: "
                      "Prometheus/2.45.0\r\nAccept: text/plain;version=0.0.4;q=0.5\r\n\r\n",
                      &h),
              200);
    ASSERT_EQ(h, 0);
    ASSERT_EQ(code_of("GET / HTTP/1.0\r\n\r\n", NULL), 200);
    ASSERT_EQ(code_of("GET /metrics?name[]=x HTTP/1.1\n\n", NULL), 200);
    ASSERT_EQ(code_of("\r\nGET /metrics HTTP/1.1\r\nX:\r\n\r\n", NULL), 200);
    ASSERT_EQ(code_of("GET http://localhost:9325/metrics HTTP/1.1\r\n\r\n", NULL), 200);
    ASSERT_EQ(code_of("GET HTTP://host HTTP/1.1\r\n\r\n", NULL), 200);
    ASSERT_EQ(code_of("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &h), 200);
    ASSERT_EQ(h, 1);
    /* the body after the head is not the parser's business */
    ASSERT_EQ(early("GET /metrics HTTP/1.0\r\n\r\n\x01\x02garbage"), 200);
}

static void test_refused(void)
{
    int h = -1;

    ASSERT_EQ(code_of("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n", NULL), 405);
    ASSERT_EQ(code_of("get /metrics HTTP/1.1\r\n\r\n", NULL), 405); /* methods are case-sensitive */
    ASSERT_EQ(code_of("DELETE / HTTP/1.1\r\n\r\n", NULL), 405);
    ASSERT_EQ(code_of("GET /other HTTP/1.1\r\n\r\n", NULL), 404);
    ASSERT_EQ(code_of("POST /other HTTP/1.1\r\n\r\n", NULL), 404);
    ASSERT_EQ(code_of("GET /metrics/ HTTP/1.1\r\n\r\n", NULL), 404);
    ASSERT_EQ(code_of("GET /metricsx HTTP/1.1\r\n\r\n", NULL), 404);
    ASSERT_EQ(code_of("GET http://host/other HTTP/1.1\r\n\r\n", NULL), 404);
    ASSERT_EQ(code_of("HEAD /x HTTP/1.1\r\n\r\n", &h), 404);
    ASSERT_EQ(h, 1);
    ASSERT_EQ(code_of("GET /metrics HTTP/2.0\r\n\r\n", NULL), 505);
    ASSERT_EQ(code_of("GET /metrics HTTP/0.9\r\n\r\n", NULL), 505);
}

static void test_malformed(void)
{
    /* decided when the bad line ends, without waiting for the head's end */
    ASSERT_EQ(early("GET /metrics\r\n"), 400);
    ASSERT_EQ(early("GET  /metrics HTTP/1.1\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.1 \r\n"), 400);
    ASSERT_EQ(early("GET /metrics http/1.1\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.10\r\n"), 400);
    ASSERT_EQ(early("GET /met\x80rics HTTP/1.1\r\n"), 400);
    ASSERT_EQ(early("GET /met\rrics HTTP/1.1\r\n"), 400);
    ASSERT_EQ(early("GET metrics HTTP/1.1\r\n"), 400);
    ASSERT_EQ(early("G(T /metrics HTTP/1.1\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.1\r\nHost : x\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.1\r\n folded\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.1\r\nNoColon\r\n"), 400);
    ASSERT_EQ(early("GET /metrics HTTP/1.1\r\nX: a\x01z\r\n"), 400);
    ASSERT_EQ(early("\x16\x03\x01\x02\x01\xfc\x03\x03\n"), 400); /* a TLS ClientHello */
}

static void test_too_long(void)
{
    static char big[METRICS_REQ_MAX + 100];
    struct metrics_req r = {-1, -1};
    const char *line = "GET /metrics HTTP/1.1\r\nX: ";
    size_t n = strlen(line);

    memcpy(big, line, n);
    memset(big + n, 'a', sizeof(big) - n);
    ASSERT_EQ(metrics_req_parse(big, METRICS_REQ_MAX - 1, &r), METRICS_REQ_MORE);
    ASSERT_EQ(metrics_req_parse(big, METRICS_REQ_MAX, &r), METRICS_REQ_DONE);
    ASSERT_EQ(r.code, 431);
    /* a head ending at the last byte of the window still counts */
    memcpy(big + METRICS_REQ_MAX - 4, "\r\n\r\n", 4);
    ASSERT_EQ(metrics_req_parse(big, sizeof(big), &r), METRICS_REQ_DONE);
    ASSERT_EQ(r.code, 200);
    memcpy(big + METRICS_REQ_MAX - 4, "aa\r\n", 4);
    memcpy(big + METRICS_REQ_MAX, "\r\n", 2);
    ASSERT_EQ(metrics_req_parse(big, sizeof(big), &r), METRICS_REQ_DONE);
    ASSERT_EQ(r.code, 431);
}

int main(void)
{
    test_valid();
    test_refused();
    test_malformed();
    test_too_long();
    return CHECK_DONE();
}
