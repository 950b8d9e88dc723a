/* up_sasl: the client side of SMTP AUTH (RFC 4954) towards upstream, without I/O:
 * which mechanism to use (preference order against what EHLO offered), and each
 * line to send: the AUTH command with its initial response and the answers to
 * 334 challenges, for PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), XOAUTH2 and
 * OAUTHBEARER (RFC 7628). */
#ifndef RELAY25_UP_SASL_H
#define RELAY25_UP_SASL_H

#include <stddef.h>
#include <stdint.h>

/* What a mechanism may use. Secrets (password, token) are only read; every
 * temporary copy made here is wiped. */
struct up_sasl_cred {
    const char *user;
    const char *password; /* PLAIN, LOGIN, CRAM-MD5 */
    const char *token;    /* XOAUTH2, OAUTHBEARER: the OAuth2 access token */
    const char *host;     /* OAUTHBEARER: the server's host name and port (RFC 7628 §3.1) */
    uint16_t port;
};

enum up_sasl_err {
    UP_SASL_E_TOOLONG = -1,   /* the response does not fit (user name or password too long) */
    UP_SASL_E_CHALLENGE = -2, /* the server's challenge is not valid base64 */
    UP_SASL_E_STEP = -3,      /* the mechanism has no answer for this challenge */
};

/* The first mechanism (enum conf_mech) of prefs (ended by CONF_MECH_END; empty:
 * the default order, strongest first) that upstream offers (offered: UP_AUTH_*
 * bits) and that fits the credentials: with a token (token_mech, CONF_MECH_XOAUTH2
 * or CONF_MECH_OAUTHBEARER) only that one, else only password mechanisms.
 * CONF_MECH_END when none does. */
unsigned char up_sasl_pick(const unsigned char *prefs, size_t nprefs, unsigned offered,
                           unsigned char token_mech);

/* The room up_sasl_line needs for mech and c at most, terminating NUL included. */
size_t up_sasl_cap(unsigned char mech, const struct up_sasl_cred *c);

/* The line (without CRLF, NUL-terminated) to send at step: step 0 is the AUTH
 * command ("AUTH PLAIN <initial response>"); step n answers the n-th 334, whose
 * text (base64, the reply's last line without the code) is challenge. Returns
 * the line's length, or enum up_sasl_err (out is then wiped). */
long up_sasl_line(unsigned char mech, unsigned step, const struct up_sasl_cred *c,
                  const char *challenge, char *out, size_t cap);

/* "PLAIN", "LOGIN"... for messages. */
const char *up_sasl_name(unsigned char mech);

#endif
