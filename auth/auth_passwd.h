/* auth_passwd: inbound AUTH credentials (RFC 4954 server side): decoding the
 * PLAIN (RFC 4616) response, and checking a password against a crypt(3) hash
 * from users_file in libuv's thread pool (yescrypt costs tens of ms: never on
 * the loop). Also makes the hashes `relay25 passwd` prints. */
#ifndef RELAY25_AUTH_PASSWD_H
#define RELAY25_AUTH_PASSWD_H

#include <stddef.h>

#include <uv.h>

#define AUTH_PASSWD_MAX 256 /* longest login or password accepted */

/* "authzid\0authcid\0passwd" (already base64-decoded, len bytes) -> login and
 * password, NUL-terminated. The authzid must be empty or equal the login.
 * Returns 0 or -1 (syntax, NUL inside, too long). */
int auth_plain_decode(const char *in, size_t len, char *login, size_t lcap, char *pass,
                      size_t pcap);

typedef void auth_passwd_done_cb(void *arg, int ok);

/* Checks pass against hash (NULL: an unknown login; a dummy hash is checked so
 * the answer takes as long). done(arg, ok) runs later on the loop, always.
 * hash must stay valid until then; pass is copied and wiped. 0 or a uv error. */
int auth_passwd_verify(uv_loop_t *loop, const char *hash, const char *pass,
                       auth_passwd_done_cb *done, void *arg);

/* Synchronous check (tests, the CLI): 1 when pass matches hash. */
int auth_passwd_check(const char *hash, const char *pass);

/* New "$y$..." hash of pass (yescrypt, libcrypt's default cost), malloc'd; NULL on failure. */
char *auth_passwd_hash(const char *pass);

#endif
