/* auth_fail: inbound AUTH failures counted per client address (IPv4 address, or
 * IPv6 /64) in a fixed-size set-associative table with eviction, for the growing
 * delay before a failure reply and the temporary lockout (454 4.7.0, RFC 4954 §6).
 * Pure: the caller passes the time in milliseconds, so tests replay any sequence. */
#ifndef RELAY25_AUTH_FAIL_H
#define RELAY25_AUTH_FAIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_FAIL_WAYS 8            /* entries per set: eviction chooses among these */
#define AUTH_FAIL_DELAY_STEPS 4     /* the delay doubles up to 2^4 = 16 times the base */
#define AUTH_FAIL_DEFAULT_SETS 256u /* 2,048 addresses, ~80 KiB */

struct auth_fail;

struct auth_fail_policy {
    unsigned limit;      /* failures that start a lockout; 0: never locked */
    uint64_t window_ms;  /* failures are forgotten after this long without one */
    uint64_t lockout_ms; /* how long a lockout lasts */
    uint64_t delay_ms;   /* delay of the first failure reply; doubles per failure; 0: none */
};

/* A table of nsets * AUTH_FAIL_WAYS addresses (nsets rounded up to a power of
 * two); seed randomizes which addresses share a set. NULL when out of memory. */
struct auth_fail *auth_fail_new(size_t nsets, uint64_t seed);
void auth_fail_free(struct auth_fail *t);

/* Milliseconds of lockout left for sa's address at now_ms, 0 when not locked. */
uint64_t auth_fail_locked(struct auth_fail *t, const struct sockaddr *sa, uint64_t now_ms);

/* One failed check from sa at now_ms: returns the address's failures in the
 * window, this one included; *delay_ms = how long to hold the failure reply;
 * *lock_ms = the lockout this failure started (0 when it started none; a
 * failure during a lockout does not extend it). An evicted address starts over.
 * Addresses of another family than AF_INET/AF_INET6 are not counted (returns 0). */
unsigned auth_fail_record(struct auth_fail *t, const struct sockaddr *sa,
                          const struct auth_fail_policy *p, uint64_t now_ms, uint64_t *delay_ms,
                          uint64_t *lock_ms);

#endif
