/* dsn: checks and decoding for the RFC 3461 DSN parameters (xtext, §4) and the
 * RFC 6531 SMTPUTF8 8-bit test. No I/O, no allocation: fuzzed by
 * tests/fuzz/fuzz_dsn.c. */
#include "common/dsn.h"

#include <string.h>
#include <strings.h>

static int dsn_hex(char c)
{
    /* RFC 3461 §4: hexchar is "+" followed by two upper-case hex digits */
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

long dsn_xtext_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    if (n == 0 || cap == 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int hi, lo;

        if (o + 1 >= cap) {
            return -1;
        }
        if (c == '+') {
            if (n - i < 3) {
                return -1;
            }
            hi = dsn_hex(s[i + 1]);
            lo = dsn_hex(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c < '!' || c > '~' || c == '=') {
            return -1;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return (long)o;
}

int dsn_xtext_ok(const char *s, size_t n)
{
    char buf[DSN_ORCPT_MAX + 1];

    return n <= DSN_ORCPT_MAX && dsn_xtext_decode(s, n, buf, sizeof(buf)) >= 0;
}

int dsn_ret_parse(const char *v, size_t n)
{
    if (n == 4 && strncasecmp(v, "FULL", 4) == 0) {
        return DSN_RET_FULL;
    }
    if (n == 4 && strncasecmp(v, "HDRS", 4) == 0) {
        return DSN_RET_HDRS;
    }
    return -1;
}

int dsn_notify_parse(const char *v, size_t n)
{
    static const struct {
        const char *name;
        unsigned bit;
    } kw[] = {{"NEVER", DSN_NOTIFY_NEVER},
              {"SUCCESS", DSN_NOTIFY_SUCCESS},
              {"FAILURE", DSN_NOTIFY_FAILURE},
              {"DELAY", DSN_NOTIFY_DELAY}};
    unsigned bits = 0;
    size_t i = 0;

    if (n == 0) {
        return -1;
    }
    while (i <= n) {
        size_t e = i, k;
        while (e < n && v[e] != ',') {
            e++;
        }
        for (k = 0; k < sizeof(kw) / sizeof(kw[0]); k++) {
            if (e - i == strlen(kw[k].name) && strncasecmp(v + i, kw[k].name, e - i) == 0) {
                break;
            }
        }
        if (k == sizeof(kw) / sizeof(kw[0]) || (bits & kw[k].bit)) {
            return -1;
        }
        bits |= kw[k].bit;
        i = e + 1;
    }
    /* RFC 3461 §4.1: NEVER stands alone */
    if ((bits & DSN_NOTIFY_NEVER) && bits != DSN_NOTIFY_NEVER) {
        return -1;
    }
    return (int)bits;
}

int dsn_envid_ok(const char *v, size_t n)
{
    char buf[DSN_ENVID_MAX + 1];
    long dl;

    if (n > DSN_ENVID_MAX || (dl = dsn_xtext_decode(v, n, buf, sizeof(buf))) < 0) {
        return 0;
    }
    for (long i = 0; i < dl; i++) {
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* RFC 5322 atext, the characters of an atom */
static int dsn_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

int dsn_orcpt_ok(const char *v, size_t n)
{
    char buf[DSN_ORCPT_MAX + 1];
    const char *semi = n ? memchr(v, ';', n) : NULL;
    long dl;

    if (n > DSN_ORCPT_MAX || !semi || semi == v) {
        return 0;
    }
    for (const char *p = v; p < semi; p++) {
        if (!dsn_atext(*p)) {
            return 0;
        }
    }
    dl = dsn_xtext_decode(semi + 1, (size_t)(v + n - semi - 1), buf, sizeof(buf));
    if (dl < 0) {
        return 0;
    }
    for (long i = 0; i < dl; i++) {
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
            return 0; /* it goes into a report's header field */
        }
    }
    return 1;
}

int dsn_has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return 1;
        }
    }
    return 0;
}

const char *dsn_param(const char *params, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    const char *p = params;

    while (*p) {
        size_t tl;
        while (*p == ' ') {
            p++;
        }
        tl = strcspn(p, " ");
        if (tl > kl && p[kl] == '=' && strncasecmp(p, key, kl) == 0) {
            *len = tl - kl - 1;
            return p + kl + 1;
        }
        p += tl;
    }
    *len = 0;
    return NULL;
}
