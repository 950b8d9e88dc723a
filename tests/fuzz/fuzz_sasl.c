/* fuzz_sasl: base64 (common/base64.h) and the SASL client responses
 * (auth/auth_sasl.h). The input is decoded as base64 (strict RFC 4648: what
 * decodes re-encodes to the same text) and encoded (decodes back to the input);
 * split at NULs into user, password and challenge it drives PLAIN (RFC 4616) and
 * CRAM-MD5 (RFC 2195), checked against BearSSL's HMAC-MD5. Output buffers are
 * exact-size heap blocks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <bearssl.h>

#include "auth/auth_sasl.h"
#include "common/base64.h"
#include "tests/fuzz/fuzz.h"

#define B64_FAIL ((size_t)-1)

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    FUZZ_CHECK(p != NULL);
    return p;
}

/* Decode what the fuzzer gives; a success must be canonical. */
static void check_decode(const char *in, size_t len)
{
    size_t cap = len / 4 * 3;
    unsigned char *out = xmalloc(cap);
    size_t n = b64_decode(in, len, out, cap);

    if (n != B64_FAIL) {
        char *txt = xmalloc(len + 1);

        FUZZ_CHECK(len % 4 == 0 && n <= cap && n + 2 >= cap);
        FUZZ_CHECK(b64_encode(out, n, txt, len + 1) == len);
        FUZZ_CHECK(memcmp(txt, in, len) == 0 && txt[len] == '\0');
        /* One byte less room than the output needs is an overflow, not a short write. */
        if (n > 0) {
            unsigned char *small = xmalloc(n - 1);

            FUZZ_CHECK(b64_decode(in, len, small, n - 1) == B64_FAIL);
            free(small);
        }
        free(txt);
    }
    free(out);
}

/* Encode the raw bytes; exact room works, one byte less fails and leaves "". */
static void check_encode(const uint8_t *in, size_t len)
{
    size_t need = b64_len(len) + 1;
    char *txt = xmalloc(need);
    unsigned char *back = xmalloc(len);
    char *small;
    size_t n;

    n = b64_encode(in, len, txt, need);
    FUZZ_CHECK(n == need - 1 && txt[n] == '\0' && strlen(txt) == n);
    FUZZ_CHECK(b64_decode(txt, n, back, len) == len);
    FUZZ_CHECK(len == 0 || memcmp(back, in, len) == 0);

    small = xmalloc(need - 1);
    FUZZ_CHECK(b64_encode(in, len, small, need - 1) == B64_FAIL);
    free(small);
    free(back);
    free(txt);
}

/* Splits at the first NULs: user NUL pass NUL rest (missing parts are ""). */
static void split(const char *in, size_t len, char **user, char **pass, const char **rest,
                  size_t *restlen)
{
    const char *p = in, *end = in + len;
    const char *nul1 = memchr(p, '\0', len);
    const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1)) : NULL;
    size_t ul = nul1 ? (size_t)(nul1 - p) : len;
    size_t pl = nul1 ? (nul2 ? (size_t)(nul2 - nul1 - 1) : (size_t)(end - nul1 - 1)) : 0;

    *user = xmalloc(ul + 1);
    memcpy(*user, p, ul);
    (*user)[ul] = '\0';
    *pass = xmalloc(pl + 1);
    if (pl > 0)
        memcpy(*pass, nul1 + 1, pl);
    (*pass)[pl] = '\0';
    *rest = nul2 ? nul2 + 1 : end;
    *restlen = (size_t)(end - *rest);
}

static void check_plain(const char *user, const char *pass)
{
    size_t ul = strlen(user), pl = strlen(pass), ml = ul + pl + 2;
    size_t need = b64_len(ml) + 1;
    char *out = xmalloc(need);
    unsigned char *msg = xmalloc(ml);
    size_t n;

    n = sasl_plain(user, pass, out, need);
    FUZZ_CHECK(n == need - 1 && strlen(out) == n);
    /* RFC 4616 §2: NUL authcid NUL passwd (no authzid). */
    FUZZ_CHECK(b64_decode(out, n, msg, ml) == ml);
    FUZZ_CHECK(msg[0] == '\0' && memcmp(msg + 1, user, ul) == 0 && msg[1 + ul] == '\0' &&
               memcmp(msg + 2 + ul, pass, pl) == 0);
    free(out);

    /* Too small: fails, and does not leave part of the secret behind. */
    out = xmalloc(need - 1);
    memset(out, 'X', need - 1);
    FUZZ_CHECK(sasl_plain(user, pass, out, need - 1) == B64_FAIL);
    FUZZ_CHECK(out[0] == '\0');
    for (size_t i = 0; i < need - 1; i++)
        FUZZ_CHECK(out[i] == '\0' || out[i] == 'X');
    FUZZ_CHECK(sasl_plain(user, pass, out, 0) == B64_FAIL);
    free(out);
    free(msg);
}

static void check_cram(const char *user, const char *pass, const char *ch, size_t chlen)
{
    static const char hexdig[] = "0123456789abcdef";
    size_t ul = strlen(user), ml = ul + 1 + 32;
    size_t need = b64_len(ml) + 1;
    char *out = xmalloc(need);
    unsigned char *challenge = xmalloc(chlen / 4 * 3);
    size_t clen = b64_decode(ch, chlen, challenge, chlen / 4 * 3);
    size_t n = sasl_cram_md5(user, pass, ch, chlen, out, need);

    if (clen == B64_FAIL || clen == 0 || clen > 1024) {
        /* Undecodable, empty, or longer than a msg-id needs (SASL_CHALLENGE_MAX). */
        FUZZ_CHECK(n == B64_FAIL);
    } else {
        unsigned char mac[16];
        char expect[32];
        unsigned char *msg = xmalloc(ml);
        br_hmac_key_context kc;
        br_hmac_context hc;

        br_hmac_key_init(&kc, &br_md5_vtable, pass, strlen(pass));
        br_hmac_init(&hc, &kc, 0);
        br_hmac_update(&hc, challenge, clen);
        br_hmac_out(&hc, mac);
        for (size_t i = 0; i < sizeof(mac); i++) {
            expect[2 * i] = hexdig[mac[i] >> 4];
            expect[2 * i + 1] = hexdig[mac[i] & 0x0f];
        }
        /* RFC 2195 §2: base64(user SP lower-case-hex(HMAC-MD5(pass, challenge))). */
        FUZZ_CHECK(n == need - 1 && strlen(out) == n);
        FUZZ_CHECK(b64_decode(out, n, msg, ml) == ml);
        FUZZ_CHECK(memcmp(msg, user, ul) == 0 && msg[ul] == ' ' &&
                   memcmp(msg + ul + 1, expect, 32) == 0);
        free(msg);

        free(out);
        out = xmalloc(need - 1);
        memset(out, 'X', need - 1);
        FUZZ_CHECK(sasl_cram_md5(user, pass, ch, chlen, out, need - 1) == B64_FAIL);
        FUZZ_CHECK(out[0] == '\0');
        for (size_t i = 0; i < need - 1; i++)
            FUZZ_CHECK(out[i] == '\0' || out[i] == 'X');
    }
    free(challenge);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = xmalloc(size); /* exact copy, not NUL-terminated */
    char *user, *pass;
    const char *rest;
    size_t restlen;

    if (size > 0)
        memcpy(in, data, size);
    check_decode(in, size);
    check_encode(data, size);

    split(in, size, &user, &pass, &rest, &restlen);
    check_plain(user, pass);
    check_cram(user, pass, rest, restlen);
    /* The challenge is often the whole input: base64 without NULs. */
    check_cram(user, pass, in, size);
    free(user);
    free(pass);
    free(in);
    return 0;
}
