/* fuzz_dsn: the RFC 3461 parameter checks (common/dsn.h) on arbitrary bytes:
 * xtext decoding stays inside exact-size buffers and agrees with dsn_xtext_ok;
 * what dsn_envid_ok / dsn_orcpt_ok accept can go into a report's header field
 * (no CR, LF or other controls once decoded); NOTIFY bits are consistent;
 * dsn_param finds only what is in the string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/dsn.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t cap = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
    char *out = malloc(cap); /* exact size: overruns hit ASan */
    char *big = malloc(size + 1);
    char *str = malloc(size + 1);
    long n, nb;
    int bits;

    FUZZ_CHECK(out && big && str);
    n = dsn_xtext_decode(in, size, out, cap);
    nb = dsn_xtext_decode(in, size, big, size + 1);
    FUZZ_CHECK(n == -1 || (n >= 0 && (size_t)n < cap && out[n] == '\0'));
    FUZZ_CHECK(nb == -1 || ((size_t)nb <= size && big[nb] == '\0'));
    if (n >= 0) {
        FUZZ_CHECK(n == nb && memcmp(out, big, (size_t)n) == 0);
    }
    if (size <= DSN_ORCPT_MAX) {
        FUZZ_CHECK(dsn_xtext_ok(in, size) == (nb >= 0));
    }
    if (dsn_envid_ok(in, size)) {
        FUZZ_CHECK(size <= DSN_ENVID_MAX && nb >= 0);
        for (long i = 0; i < nb; i++) {
            FUZZ_CHECK((unsigned char)big[i] >= 0x20 && (unsigned char)big[i] <= 0x7e);
        }
    }
    if (dsn_orcpt_ok(in, size)) {
        const char *semi = memchr(in, ';', size);
        FUZZ_CHECK(semi && semi > in && size <= DSN_ORCPT_MAX);
        FUZZ_CHECK(!memchr(in, '\r', size) && !memchr(in, '\n', size) && !memchr(in, ' ', size));
    }
    bits = dsn_notify_parse(in, size);
    FUZZ_CHECK(bits == -1 || (bits > 0 && bits <= 0x0f));
    if (bits > 0 && (bits & DSN_NOTIFY_NEVER)) {
        FUZZ_CHECK(bits == DSN_NOTIFY_NEVER);
    }
    bits = dsn_ret_parse(in, size);
    FUZZ_CHECK(bits == -1 || bits == DSN_RET_FULL || bits == DSN_RET_HDRS);

    memcpy(str, in, size);
    str[size] = '\0';
    {
        static const char *const keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT"};
        for (size_t k = 0; k < 4; k++) {
            size_t vl = 99;
            const char *v = dsn_param(str, keys[k], &vl);
            size_t sl = strlen(str);
            if (v) {
                FUZZ_CHECK(v > str && v <= str + sl && vl <= (size_t)(str + sl - v));
                FUZZ_CHECK(v[-1] == '=' && !memchr(v, ' ', vl));
            } else {
                FUZZ_CHECK(vl == 0);
            }
        }
    }
    free(out);
    free(big);
    free(str);
    return 0;
}
