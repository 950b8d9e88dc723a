/* up_bounce: the text of a delivery status notification (RFC 3464, in an RFC
 * 3462 multipart/report) for recipients that failed for good, and the short
 * per-recipient reason kept with a failed message. Pure: no I/O, the caller
 * gives the time, the ids and the original header section. */
#ifndef RELAY25_UP_BOUNCE_H
#define RELAY25_UP_BOUNCE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct up_bounce_rcpt {
    const char *addr;   /* the recipient, without <> */
    const char *reason; /* upstream's reply, "550 5.1.1 no such user", or our own text */
    const char *orcpt;  /* RCPT ORCPT= as received ("rfc822;a+40b"), or NULL (RFC 3461 §4.2) */
    int relayed; /* delivered to an upstream without DSN: Action relayed (RFC 3461 §6.2.1) */
};

struct up_bounce {
    const char *hostname; /* the reporting MTA (From:, Reporting-MTA, Message-ID) */
    const char *to;       /* the original sender: the report goes there */
    uint64_t qid;         /* the original message's queue id */
    uint64_t id;          /* the report's own id (Message-ID, boundary) */
    time_t date;          /* Date: (local time) */
    const struct up_bounce_rcpt *failed;
    size_t nfailed;
    const char *headers; /* the original header section (CRLF lines), may be NULL */
    size_t headers_len;
    int full;          /* headers holds the whole message (RET=FULL): message/rfc822 */
    const char *envid; /* MAIL ENVID= as received (xtext), or NULL (RFC 3461 §4.4) */
};

/* The whole report (failed recipients, and relayed ones asking NOTIFY=SUCCESS),
 * CRLF lines (malloc'd, *len bytes, NUL-terminated); NULL
 * when out of memory. */
char *up_bounce_build(const struct up_bounce *b, size_t *len);
/* Bytes of msg up to and including the CRLF of its last header line (all of it
 * when no empty line ends the section within n). */
size_t up_bounce_header_len(const char *msg, size_t n);
/* "<addr>: reason\n" per failed recipient, the reason's first line only
 * (failed/<qid>.reason). malloc'd, *len bytes; NULL when out of memory. */
char *up_bounce_reason(const struct up_bounce_rcpt *failed, size_t nfailed, size_t *len);

#endif
