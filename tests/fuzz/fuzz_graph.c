/* fuzz_graph: the pure parts of a Graph delivery (upstream/up_graph_msg.h). The
 * first byte picks the parser: even, Graph's JSON error body with output buffers
 * of random size (each NUL-terminated, within its cap, no control character);
 * odd, the Bcc field for a header section and recipients split at the first NUL
 * (recipients one per line): a "Bcc: " field ending in CRLF, each address of it
 * one of the recipients, and the same answer again with an exact-size buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "upstream/up_graph_msg.h"

#define MAX_RCPT 16

static void check_text(const char *out, size_t cap)
{
    size_t n;

    if (cap == 0) {
        return;
    }
    FUZZ_CHECK(memchr(out, '\0', cap) != NULL);
    n = strlen(out);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
    }
}

static void fuzz_error(struct fuzz_rng *r, const char *data, size_t len)
{
    size_t cc = fuzz_rng_upto(r, 80 - 1), mc = fuzz_rng_upto(r, 600 - 1),
           rc = fuzz_rng_upto(r, 80 - 1);
    char *code = malloc(cc ? cc : 1), *msg = malloc(mc ? mc : 1), *rid = malloc(rc ? rc : 1);
    int ok;

    FUZZ_CHECK(code && msg && rid);
    ok = up__graph_parse_error(data, len, code, cc, msg, mc, rid, rc);
    FUZZ_CHECK(ok == 0 || ok == -1);
    check_text(code, cc);
    check_text(msg, mc);
    check_text(rid, rc);
    if (ok < 0) {
        FUZZ_CHECK(cc == 0 || code[0] == '\0');
        FUZZ_CHECK(mc == 0 || msg[0] == '\0');
    }
    free(code);
    free(msg);
    free(rid);
}

static void fuzz_bcc(struct fuzz_rng *r, const char *data, size_t len)
{
    const char *nul = memchr(data, '\0', len);
    size_t hlen = nul ? (size_t)(nul - data) : len, n = 0, cap;
    char *rbuf, *rcpt[MAX_RCPT], *out, *again;
    long got;

    rbuf = nul ? strndup(nul + 1, len - hlen - 1) : strdup("");
    FUZZ_CHECK(rbuf);
    for (char *p = rbuf, *e; p && *p && n < MAX_RCPT; p = e ? e + 1 : NULL) {
        e = strchr(p, '\n');
        if (e) {
            *e = '\0';
        }
        if (*p && !strpbrk(p, "\r, ")) {
            rcpt[n++] = p;
        }
    }
    cap = fuzz_rng_upto(r, 2048 - 1) + 1;
    out = malloc(cap);
    FUZZ_CHECK(out);
    got = up__graph_bcc(data, hlen, (const char *const *)rcpt, n, out, cap);
    FUZZ_CHECK(got >= -1 && got < (long)cap);
    FUZZ_CHECK(memchr(out, '\0', cap) != NULL);
    if (got > 0) {
        char *copy = strndup(out, (size_t)got), *tok, *save = NULL;
        FUZZ_CHECK((size_t)got == strlen(out));
        FUZZ_CHECK(strncmp(out, "Bcc: ", 5) == 0);
        FUZZ_CHECK(got >= 7 && out[got - 2] == '\r' && out[got - 1] == '\n');
        FUZZ_CHECK(copy);
        copy[got - 2] = '\0';
        for (tok = strtok_r(copy + 5, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int found = 0;
            while (*tok == '\r' || *tok == '\n' || *tok == ' ') {
                tok++;
            }
            for (size_t i = 0; i < n; i++) {
                found |= strcmp(tok, rcpt[i]) == 0;
            }
            FUZZ_CHECK(found);
        }
        free(copy);
        again = malloc((size_t)got + 1);
        FUZZ_CHECK(again);
        FUZZ_CHECK(
            up__graph_bcc(data, hlen, (const char *const *)rcpt, n, again, (size_t)got + 1) == got);
        FUZZ_CHECK(memcmp(again, out, (size_t)got) == 0);
        free(again);
    } else if (got == 0) {
        FUZZ_CHECK(out[0] == '\0');
    }
    free(out);
    free(rbuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct fuzz_rng r;
    size_t skip = fuzz_rng_init(&r, data, len);

    if (len <= skip) {
        return 0;
    }
    if (data[0] & 1) {
        fuzz_bcc(&r, (const char *)data + skip, len - skip);
    } else {
        fuzz_error(&r, (const char *)data + skip, len - skip);
    }
    return 0;
}
