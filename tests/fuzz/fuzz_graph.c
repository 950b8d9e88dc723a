/* fuzz_graph: the pure parts of a Graph delivery (upstream/up_graph_msg.h). The
 * first byte picks the parser (mod 4): 0, Graph's JSON error body with output
 * buffers of random size (each NUL-terminated, within its cap, no control
 * character); 1, the Bcc field for a header section and recipients split at the
 * first NUL (recipients one per line): a "Bcc: " field ending in CRLF, each
 * address of it one of the recipients, and the same answer again with an
 * exact-size buffer; 2, the MIME boundary and a part's header (bounded, NUL-
 * terminated outputs, a boundary of 1 to 70 characters); 3, the upload-session /
 * draft reply ("uploadUrl", "id": one line within its cap) and a token's roles. */
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

static void fuzz_mime(struct fuzz_rng *r, const char *data, size_t len)
{
    char b[80], name[256], ctype[128];
    size_t nc = fuzz_rng_upto(r, sizeof(name)), cc = fuzz_rng_upto(r, sizeof(ctype));
    int b64 = 7;

    if (up__graph_boundary(data, len, b, sizeof(b))) {
        FUZZ_CHECK(strlen(b) >= 1 && strlen(b) <= 70);
    } else {
        FUZZ_CHECK(b[0] == '\0');
    }
    up__graph_part(data, len, &b64, name, nc, ctype, cc);
    FUZZ_CHECK(b64 == 0 || b64 == 1);
    check_text(name, nc);
    if (cc) {
        FUZZ_CHECK(memchr(ctype, '\0', cc) != NULL);
    }
}

static void fuzz_json(struct fuzz_rng *r, const char *data, size_t len)
{
    size_t cap = fuzz_rng_upto(r, 200);
    char *out = malloc(cap ? cap : 1), roles[64];
    char *tok;
    int k;

    FUZZ_CHECK(out);
    if (up__graph_json_str(data, len, (data[0] & 1) ? "uploadUrl" : "id", out, cap) == 0) {
        FUZZ_CHECK(strlen(out) < cap && !strpbrk(out, "\r\n"));
    } else if (cap) {
        FUZZ_CHECK(out[0] == '\0');
    }
    free(out);
    tok = strndup(data, len);
    FUZZ_CHECK(tok);
    k = up__graph_jwt_roles(tok, roles, sizeof(roles));
    FUZZ_CHECK(k >= -1 && k <= 1);
    check_text(roles, sizeof(roles));
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    struct fuzz_rng r;
    size_t skip = fuzz_rng_init(&r, data, len);

    if (len <= skip) {
        return 0;
    }
    switch (data[0] & 3) {
    case 0:
        fuzz_error(&r, (const char *)data + skip, len - skip);
        break;
    case 1:
        fuzz_bcc(&r, (const char *)data + skip, len - skip);
        break;
    case 2:
        fuzz_mime(&r, (const char *)data + skip, len - skip);
        break;
    default:
        fuzz_json(&r, (const char *)data + skip, len - skip);
        break;
    }
    return 0;
}
