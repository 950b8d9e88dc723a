/* fuzz_metrics: libFuzzer target for the metrics endpoint's HTTP request head
 * parser (common/metrics_req.c, RFC 9112 §2-§5). Each call sees an exactly-sized
 * heap copy so ASan catches a read past len; reading in random chunks, as the
 * server does, must reach the verdict of the one-shot parse, and a 200 needs a
 * GET or HEAD request line and a complete head. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics_req.h"
#include "tests/fuzz/fuzz.h"

static int parse_copy(const uint8_t *data, size_t len, struct metrics_req *out);
static void check_verdict(const uint8_t *data, size_t len, const struct metrics_req *r);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct metrics_req all, inc;
    struct fuzz_rng rng;
    size_t have = 0;
    int st, inc_st = METRICS_REQ_MORE;

    st = parse_copy(data, size, &all);
    if (st == METRICS_REQ_DONE) {
        check_verdict(data, size, &all);
    } else {
        FUZZ_CHECK(size < METRICS_REQ_MAX);
    }

    /* the server's read loop: the bytes so far, a chunk more each time. The split
     * comes from a hash of the whole input so the crash file alone replays it. */
    rng.s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++) {
        rng.s = (rng.s ^ data[i]) * 0x100000001b3ull;
    }
    for (;;) {
        inc_st = parse_copy(data, have, &inc);
        if (inc_st != METRICS_REQ_MORE || have == size) {
            break;
        }
        have += 1 + fuzz_rng_chunk(&rng, size - have - 1);
    }
    FUZZ_CHECK(inc_st == st);
    if (st == METRICS_REQ_DONE) {
        FUZZ_CHECK(inc.code == all.code && inc.head_only == all.head_only);
    }
    return 0;
}

/* out is pre-filled with junk that a MORE must leave alone */
static int parse_copy(const uint8_t *data, size_t len, struct metrics_req *out)
{
    struct metrics_req junk;
    char *copy = malloc(len ? len : 1);
    int st;

    FUZZ_CHECK(copy != NULL);
    if (len)
        memcpy(copy, data, len);
    memset(out, 0x5a, sizeof(*out));
    junk = *out;
    st = metrics_req_parse(copy, len, out);
    free(copy);
    FUZZ_CHECK(st == METRICS_REQ_MORE || st == METRICS_REQ_DONE);
    if (st == METRICS_REQ_MORE) {
        FUZZ_CHECK(len < METRICS_REQ_MAX);
        FUZZ_CHECK(memcmp(out, &junk, sizeof(junk)) == 0);
    }
    return st;
}

/* Does the head end (an empty line) within the first METRICS_REQ_MAX bytes? */
static int head_ends(const uint8_t *data, size_t len)
{
    size_t n = len < METRICS_REQ_MAX ? len : METRICS_REQ_MAX;

    for (size_t i = 1; i < n; i++) {
        if (data[i] == '\n' &&
            (data[i - 1] == '\n' || (i >= 2 && data[i - 1] == '\r' && data[i - 2] == '\n')))
            return 1;
    }
    return 0;
}

static void check_verdict(const uint8_t *data, size_t len, const struct metrics_req *r)
{
    size_t n = len < METRICS_REQ_MAX ? len : METRICS_REQ_MAX;
    size_t p = 0, e;

    FUZZ_CHECK(r->code == 200 || r->code == 400 || r->code == 404 || r->code == 405 ||
               r->code == 431 || r->code == 505);
    FUZZ_CHECK(r->head_only == 0 || r->head_only == 1);
    if (r->code == 431)
        FUZZ_CHECK(len >= METRICS_REQ_MAX);
    while (p < n && (data[p] == '\r' || data[p] == '\n'))
        p++;
    if (r->head_only)
        FUZZ_CHECK(n - p >= 5 && memcmp(data + p, "HEAD ", 5) == 0);
    if (r->code == 200 || r->code == 404 || r->code == 405 || r->code == 505)
        FUZZ_CHECK(head_ends(data + p, n - p));
    if (r->code != 200)
        return;
    FUZZ_CHECK((n - p >= 4 && memcmp(data + p, "GET ", 4) == 0) || r->head_only);
    /* the request line: printable ASCII ending in HTTP/1.x */
    for (e = p; data[e] != '\n'; e++)
        ;
    if (data[e - 1] == '\r')
        e--;
    FUZZ_CHECK(e - p > 13 && memcmp(data + e - 8, "HTTP/1.", 7) == 0);
    for (size_t i = p; i < e; i++)
        FUZZ_CHECK(data[i] >= ' ' && data[i] < 0x7f);
}
