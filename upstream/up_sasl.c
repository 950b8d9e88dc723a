/* up_sasl: upstream AUTH mechanisms as pure functions: mechanism choice and the
 * wire form of every client line (RFC 4954 §4), built from the credentials and the
 * server's challenge. PLAIN and CRAM-MD5 encoding is auth/auth_sasl's; base64 is
 * common/base64's. No I/O and no logging: the lines carry secrets. */
#include "upstream/up_sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_sasl.h"
#include "common/base64.h"
#include "conf/conf.h"
#include "upstream/up_reply.h"

/* Base64 payload limits for password mechanisms: the AUTH line must fit
 * up_session's 2100-byte command line, and a longer password is refused with a
 * clear error instead (tests/integration/test_regressions.py). */
#define UP_SASL_PLAIN_MAX 1100u
#define UP_SASL_LOGIN_MAX 800u

/* The default preference: strongest first. */
static const unsigned char up_sasl_default[] = {
    CONF_MECH_XOAUTH2, CONF_MECH_OAUTHBEARER, CONF_MECH_CRAM_MD5,
    CONF_MECH_PLAIN,   CONF_MECH_LOGIN,       CONF_MECH_END,
};

static unsigned up_sasl_bit(unsigned char mech)
{
    switch (mech) {
    case CONF_MECH_XOAUTH2:
        return UP_AUTH_XOAUTH2;
    case CONF_MECH_OAUTHBEARER:
        return UP_AUTH_OAUTHBEARER;
    case CONF_MECH_CRAM_MD5:
        return UP_AUTH_CRAM_MD5;
    case CONF_MECH_PLAIN:
        return UP_AUTH_PLAIN;
    case CONF_MECH_LOGIN:
        return UP_AUTH_LOGIN;
    default:
        return 0; /* not supported here */
    }
}

static int up_sasl_is_token(unsigned char mech)
{
    return mech == CONF_MECH_XOAUTH2 || mech == CONF_MECH_OAUTHBEARER;
}

unsigned char up_sasl_pick(const unsigned char *prefs, size_t nprefs, unsigned offered,
                           unsigned char token_mech)
{
    const unsigned char *list = prefs;
    size_t n = nprefs;

    if (n == 0 || prefs[0] == CONF_MECH_END) {
        list = up_sasl_default;
        n = sizeof(up_sasl_default);
    }
    for (size_t i = 0; i < n && list[i] != CONF_MECH_END; i++) {
        int token = up_sasl_is_token(list[i]);

        if (token == (token_mech != CONF_MECH_END) && (!token || list[i] == token_mech) &&
            (offered & up_sasl_bit(list[i]))) {
            return list[i];
        }
    }
    return CONF_MECH_END;
}

const char *up_sasl_name(unsigned char mech)
{
    switch (mech) {
    case CONF_MECH_XOAUTH2:
        return "XOAUTH2";
    case CONF_MECH_OAUTHBEARER:
        return "OAUTHBEARER";
    case CONF_MECH_CRAM_MD5:
        return "CRAM-MD5";
    case CONF_MECH_PLAIN:
        return "PLAIN";
    case CONF_MECH_LOGIN:
        return "LOGIN";
    default:
        return "?";
    }
}

/* The raw token message before base64 (its length bound, when out is NULL). */
static size_t up_sasl_token_raw(unsigned char mech, const struct up_sasl_cred *c, char *out,
                                size_t cap)
{
    const char *host = c->host ? c->host : "";
    size_t bound = 60 + strlen(c->user) + strlen(host) + strlen(c->token);
    int n;

    if (!out) {
        return bound;
    }
    if (mech == CONF_MECH_OAUTHBEARER) {
        /* RFC 7628 §3.1: gs2-header "n,a=user," then kvpairs, each ended by ^A */
        n = snprintf(out, cap, "n,a=%s,\001host=%s\001port=%u\001auth=Bearer %s\001\001", c->user,
                     host, (unsigned)c->port, c->token);
    } else {
        /* XOAUTH2 (Google, Microsoft): "user=" user ^A "auth=Bearer " token ^A ^A */
        n = snprintf(out, cap, "user=%s\001auth=Bearer %s\001\001", c->user, c->token);
    }
    return n < 0 || (size_t)n >= cap ? (size_t)-1 : (size_t)n;
}

size_t up_sasl_cap(unsigned char mech, const struct up_sasl_cred *c)
{
    if (up_sasl_is_token(mech)) {
        /* "AUTH OAUTHBEARER " + base64 of the message + NUL */
        return 20 + (up_sasl_token_raw(mech, c, NULL, 0) + 2) / 3 * 4 + 1;
    }
    return 20 + UP_SASL_PLAIN_MAX;
}

/* prefix, then base64 of data. */
static long up_sasl_b64_line(const char *prefix, const char *data, size_t len, size_t max,
                             char *out, size_t cap)
{
    size_t p = strlen(prefix), n;

    if (cap <= p) {
        return UP_SASL_E_TOOLONG;
    }
    memcpy(out, prefix, p);
    n = b64_encode(data, len, out + p, cap - p < max ? cap - p : max);
    return n == (size_t)-1 ? UP_SASL_E_TOOLONG : (long)(p + n);
}

static long up_sasl_token_line(unsigned char mech, const struct up_sasl_cred *c, char *out,
                               size_t cap)
{
    size_t rawcap = up_sasl_token_raw(mech, c, NULL, 0) + 1, n;
    char *raw = malloc(rawcap);
    long r = UP_SASL_E_TOOLONG;

    if (!raw) {
        return UP_SASL_E_TOOLONG;
    }
    n = up_sasl_token_raw(mech, c, raw, rawcap);
    if (n != (size_t)-1) {
        r = up_sasl_b64_line(mech == CONF_MECH_OAUTHBEARER ? "AUTH OAUTHBEARER " : "AUTH XOAUTH2 ",
                             raw, n, cap, out, cap);
    }
    explicit_bzero(raw, rawcap);
    free(raw);
    return r;
}

static long up_sasl_first(unsigned char mech, const struct up_sasl_cred *c, char *out, size_t cap)
{
    static const char plain[] = "AUTH PLAIN ";
    size_t n;

    switch (mech) {
    case CONF_MECH_PLAIN:
        /* RFC 4616 §2 with the initial response of RFC 4954 §4 */
        if (cap <= sizeof(plain) - 1) {
            return UP_SASL_E_TOOLONG;
        }
        memcpy(out, plain, sizeof(plain) - 1);
        n = sasl_plain(c->user, c->password, out + sizeof(plain) - 1,
                       cap - (sizeof(plain) - 1) < UP_SASL_PLAIN_MAX ? cap - (sizeof(plain) - 1)
                                                                     : UP_SASL_PLAIN_MAX);
        return n == (size_t)-1 ? UP_SASL_E_TOOLONG : (long)(sizeof(plain) - 1 + n);
    case CONF_MECH_LOGIN:
        return snprintf(out, cap, "AUTH LOGIN") < (int)cap ? 10 : UP_SASL_E_TOOLONG;
    case CONF_MECH_CRAM_MD5:
        return snprintf(out, cap, "AUTH CRAM-MD5") < (int)cap ? 13 : UP_SASL_E_TOOLONG;
    case CONF_MECH_XOAUTH2:
    case CONF_MECH_OAUTHBEARER:
        return up_sasl_token_line(mech, c, out, cap);
    default:
        return UP_SASL_E_STEP;
    }
}

static long up_sasl_answer(unsigned char mech, unsigned step, const struct up_sasl_cred *c,
                           const char *challenge, char *out, size_t cap)
{
    size_t n;

    switch (mech) {
    case CONF_MECH_LOGIN:
        /* "Username:" then "Password:" (the prompts themselves do not matter) */
        if (step == 1) {
            return up_sasl_b64_line("", c->user, strlen(c->user), UP_SASL_LOGIN_MAX, out, cap);
        }
        if (step == 2) {
            return up_sasl_b64_line("", c->password, strlen(c->password), UP_SASL_LOGIN_MAX, out,
                                    cap);
        }
        return UP_SASL_E_STEP;
    case CONF_MECH_CRAM_MD5:
        if (step != 1) {
            return UP_SASL_E_STEP;
        }
        n = sasl_cram_md5(c->user, c->password, challenge, strlen(challenge), out,
                          cap < UP_SASL_LOGIN_MAX ? cap : UP_SASL_LOGIN_MAX);
        return n == (size_t)-1 ? UP_SASL_E_CHALLENGE : (long)n;
    case CONF_MECH_XOAUTH2:
    case CONF_MECH_OAUTHBEARER:
        /* A 334 here is an error challenge (base64 JSON: status, schemes, scope);
         * the final reply follows our answer: XOAUTH2 an empty line, OAUTHBEARER
         * base64 of ^A (RFC 7628 §3.2.3). */
        if (step != 1 || cap < 5) {
            return UP_SASL_E_STEP;
        }
        n = mech == CONF_MECH_OAUTHBEARER ? 4 : 0;
        memcpy(out, "AQ==", n);
        out[n] = '\0';
        return (long)n;
    default: /* PLAIN: everything went with the initial response */
        return UP_SASL_E_STEP;
    }
}

long up_sasl_line(unsigned char mech, unsigned step, const struct up_sasl_cred *c,
                  const char *challenge, char *out, size_t cap)
{
    long r;

    if (cap == 0) {
        return UP_SASL_E_TOOLONG;
    }
    r = step == 0 ? up_sasl_first(mech, c, out, cap)
                  : up_sasl_answer(mech, step, c, challenge ? challenge : "", out, cap);
    if (r < 0) {
        explicit_bzero(out, cap);
    } else {
        out[r] = '\0';
    }
    return r;
}
