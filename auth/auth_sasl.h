/* auth_sasl: client side of SASL mechanisms relay25 uses upstream (RFC 4954):
 * PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195); base64 is common/base64.h. */
#ifndef RELAY25_AUTH_SASL_H
#define RELAY25_AUTH_SASL_H

#include <stddef.h>

/* Initial response for PLAIN: base64("\0user\0pass"). Returns length or (size_t)-1. */
size_t sasl_plain(const char *user, const char *pass, char *out, size_t outcap);
/* CRAM-MD5 answer to a base64 challenge: base64(user " " hex(HMAC-MD5(pass, challenge))).
 * Returns length or (size_t)-1 on a bad challenge or overflow. */
size_t sasl_cram_md5(const char *user, const char *pass, const char *challenge_b64,
                     size_t challenge_len, char *out, size_t outcap);

#endif
