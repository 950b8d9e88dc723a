/* auth_passwd: inbound AUTH credentials (RFC 4954 server side): decoding the
 * PLAIN (RFC 4616) response, and checking a password against a crypt(3) hash
 * from users_file in libuv's thread pool (yescrypt costs tens of ms: never on
 * the loop), a bounded number at a time. Also makes the hashes `relay25 passwd` prints. */
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

/* The check's outcome: AUTH_PASSWD_SKIPPED when the request waited in the queue
 * and its live callback said it was no longer wanted (nothing was checked). */
enum { AUTH_PASSWD_SKIPPED = -1, AUTH_PASSWD_BAD = 0, AUTH_PASSWD_OK = 1 };

typedef void auth_passwd_done_cb(void *arg, int result);
typedef int auth_passwd_live_cb(void *arg);

/* The budget of password checks in libuv's shared thread pool: at most
 * max_running at once (the rest of the pool stays free for the spool's writes
 * and fsyncs), the others wait in a FIFO of at most max_queued. */
struct auth_passwd_sched;

struct auth_passwd_sched *auth_passwd_sched_new(uv_loop_t *loop, unsigned max_running,
                                                size_t max_queued);
/* Only when nothing runs or waits (every done callback has run). */
void auth_passwd_sched_free(struct auth_passwd_sched *q);

/* Checks pass against hash (NULL: an unknown login; a dummy hash is checked so
 * the answer takes as long). done(arg, result) runs later on the loop, always,
 * unless this returns an error: UV_EBUSY when the queue is full, UV_EINVAL,
 * UV_ENOMEM. hash must stay valid until done; pass is copied and wiped. live
 * (may be NULL) is asked when a queued request's turn comes: 0 skips the check. */
int auth_passwd_verify(struct auth_passwd_sched *q, const char *hash, const char *pass,
                       auth_passwd_done_cb *done, auth_passwd_live_cb *live, void *arg);

/* Synchronous check (tests, the CLI): 1 when pass matches hash. */
int auth_passwd_check(const char *hash, const char *pass);

/* New "$y$..." hash of pass (yescrypt, libcrypt's default cost), malloc'd; NULL on failure. */
char *auth_passwd_hash(const char *pass);

#endif
