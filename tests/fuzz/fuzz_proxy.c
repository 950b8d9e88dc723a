/* fuzz_proxy: libFuzzer target for the PROXY protocol parser (proxy/prx_proxy.c,
 * haproxy doc/proxy-protocol.txt §2.1, §2.2). Every prefix is parsed from an
 * exactly-sized heap copy so ASan sees any read past len; feeding the bytes one at
 * a time must end with the status, length and addresses of the one-shot parse. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/prx_proxy.h"
#include "tests/fuzz/fuzz.h"

#define SENTINEL ((size_t)-7)

static int parse_copy(const uint8_t *data, size_t len, size_t *consumed,
                      struct prx_proxy_result *out);
static void check_result(int st, size_t len, size_t consumed, const struct prx_proxy_result *r);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct prx_proxy_result all, inc;
    size_t all_consumed = SENTINEL, inc_consumed = SENTINEL, i;
    int st, inc_st = PRX_PROXY_MORE;

    st = parse_copy(data, size, &all_consumed, &all);
    check_result(st, size, all_consumed, &all);

    /* Byte by byte: a header is settled within PRX_PROXY_MAX bytes, so this stops
     * at the first non-MORE status after at most that many calls. */
    for (i = 0; i <= size; i++) {
        inc_consumed = SENTINEL;
        inc_st = parse_copy(data, i, &inc_consumed, &inc);
        check_result(inc_st, i, inc_consumed, &inc);
        if (inc_st != PRX_PROXY_MORE)
            break;
        FUZZ_CHECK(i <= PRX_PROXY_MAX);
    }
    FUZZ_CHECK(inc_st == st);
    if (st == PRX_PROXY_DONE) {
        FUZZ_CHECK(inc_consumed == all_consumed);
        FUZZ_CHECK(memcmp(&inc, &all, sizeof(all)) == 0);
        /* the header alone is enough, whatever follows it */
        FUZZ_CHECK(i == all_consumed);
    }
    return 0;
}

/* Parse from a heap copy of exactly len bytes; out is pre-filled with junk that a
 * non-DONE call must leave alone. */
static int parse_copy(const uint8_t *data, size_t len, size_t *consumed,
                      struct prx_proxy_result *out)
{
    struct prx_proxy_result junk;
    char *copy = malloc(len ? len : 1);
    int st;

    FUZZ_CHECK(copy != NULL);
    if (len)
        memcpy(copy, data, len);
    memset(out, 0x5a, sizeof(*out));
    junk = *out;
    st = prx_proxy_parse(copy, len, consumed, out);
    free(copy);
    FUZZ_CHECK(st == PRX_PROXY_MORE || st == PRX_PROXY_DONE || st == PRX_PROXY_ERR);
    if (st != PRX_PROXY_DONE) {
        FUZZ_CHECK(*consumed == SENTINEL);
        FUZZ_CHECK(memcmp(out, &junk, sizeof(junk)) == 0);
    }
    return st;
}

static void check_result(int st, size_t len, size_t consumed, const struct prx_proxy_result *r)
{
    if (st != PRX_PROXY_DONE)
        return;
    FUZZ_CHECK(consumed <= len);
    FUZZ_CHECK(consumed >= 15); /* "PROXY UNKNOWN\r\n"; v2 needs 16 */
    FUZZ_CHECK(consumed <= PRX_PROXY_MAX);
    if (r->local) {
        FUZZ_CHECK(r->local == 1);
        FUZZ_CHECK(r->src.ss_family == AF_UNSPEC && r->dst.ss_family == AF_UNSPEC);
    } else {
        FUZZ_CHECK(r->src.ss_family == AF_INET || r->src.ss_family == AF_INET6);
        FUZZ_CHECK(r->dst.ss_family == r->src.ss_family);
    }
}
