/* dsn: the ESMTP parameters of DSN (RFC 3461: RET, ENVID, NOTIFY, ORCPT and
 * their xtext encoding, §4) and the 8-bit test of SMTPUTF8 (RFC 6531 §3.3).
 * Pure and allocation-free; the proxy vets with it, the spool keeps what it
 * vetted, the queue's reports (up_bounce) decode with it. */
#ifndef RELAY25_DSN_H
#define RELAY25_DSN_H

#include <stddef.h>

#define DSN_ENVID_MAX 100 /* RFC 3461 §4.4: at most 100 characters */
#define DSN_ORCPT_MAX 500 /* RFC 3461 §4.2: at most 500 characters */

/* NOTIFY (RFC 3461 §4.1) as bits; none of them: the parameter was absent. */
#define DSN_NOTIFY_NEVER 0x01u
#define DSN_NOTIFY_SUCCESS 0x02u
#define DSN_NOTIFY_FAILURE 0x04u
#define DSN_NOTIFY_DELAY 0x08u

enum dsn_ret {
    DSN_RET_NONE = 0, /* absent: the reporting MTA chooses (relay25: headers) */
    DSN_RET_FULL,
    DSN_RET_HDRS,
};

/* 1 when [s, s+n) is xtext (RFC 3461 §4): "!".."~" except "+" and "=", or "+"
 * and two upper-case hex digits. n == 0 is not. */
int dsn_xtext_ok(const char *s, size_t n);
/* Decodes xtext into out (NUL-terminated). Returns the decoded length, or -1
 * when it is no xtext or does not fit in cap. */
long dsn_xtext_decode(const char *s, size_t n, char *out, size_t cap);
/* RET value: DSN_RET_FULL or DSN_RET_HDRS (case-insensitive), -1 otherwise. */
int dsn_ret_parse(const char *v, size_t n);
/* NOTIFY value: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY
 * (case-insensitive, none twice). Bits, or -1 when malformed. */
int dsn_notify_parse(const char *v, size_t n);
/* 1 when an ENVID value is xtext of at most DSN_ENVID_MAX octets whose decoded
 * text is printable US-ASCII (RFC 3461 §4.4). */
int dsn_envid_ok(const char *v, size_t n);
/* 1 when an ORCPT value is "addr-type;xtext" (addr-type an atom, RFC 3461
 * §4.2), at most DSN_ORCPT_MAX octets, the address decoding to no control
 * characters. */
int dsn_orcpt_ok(const char *v, size_t n);
/* 1 when [s, s+n) holds an octet >= 0x80 (RFC 6531: needs SMTPUTF8). */
int dsn_has_8bit(const char *s, size_t n);

/* In a vetted parameter string "KEY=value KEY=value": the value of key
 * (case-insensitive) and its length, or NULL. */
const char *dsn_param(const char *params, const char *key, size_t *len);

#endif
