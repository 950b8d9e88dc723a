/* reply: the one place that decides SMTP replies relay25 itself sends to
 * clients: canned replies for the inbound protocol (code + enhanced status
 * RFC 3463 + text) and the mapping of upstream failures to 4xx, so a device
 * retries instead of losing mail. Upstream's own replies are passed on with
 * their text, given an enhanced status code when they lack one (reply_pass). */
#ifndef RELAY25_REPLY_H
#define RELAY25_REPLY_H

#include <stddef.h>

/* Why an upstream session failed before it could answer a command itself. */
enum relay_err {
    RELAY_OK = 0,
    RELAY_E_RESOLVE = -1,      /* host name did not resolve */
    RELAY_E_CONNECT = -2,      /* TCP connect failed */
    RELAY_E_TIMEOUT = -3,      /* no answer within the phase's timeout */
    RELAY_E_TLS = -4,          /* handshake failed, not a certificate problem */
    RELAY_E_CERT = -5,         /* certificate not trusted / name mismatch / expired */
    RELAY_E_NO_STARTTLS = -6,  /* upstream does not offer STARTTLS */
    RELAY_E_AUTH = -7,         /* upstream rejected the credentials */
    RELAY_E_NO_AUTH_MECH = -8, /* no AUTH mechanism in common */
    RELAY_E_REFUSED = -9,      /* upstream refused the session (greeting, EHLO, STARTTLS) */
    RELAY_E_PROTOCOL = -10,    /* malformed or unexpected reply */
    RELAY_E_LOST = -11,        /* connection closed or reset */
    RELAY_E_NOMEM = -12,
    RELAY_E_BUSY = -13,             /* every connection slot (max_connections) stayed in use */
    RELAY_E_STARTTLS_REFUSED = -14, /* STARTTLS offered, but answered with an error */
};

/* Short name for logs: "resolve", "connect", "timeout", "tls", "cert", ... */
const char *reply_err_name(int err);

enum reply_id {
    REPLY_OK,                /* 250 2.0.0 Ok */
    REPLY_RSET,              /* 250 2.0.0 Reset */
    REPLY_QUIT,              /* 221 2.0.0 Bye */
    REPLY_VRFY,              /* 252 2.1.5 */
    REPLY_HELP,              /* 214 2.0.0 */
    REPLY_DATA,              /* 354 */
    REPLY_UNKNOWN,           /* 500 5.5.2 command unrecognized */
    REPLY_LINE_TOO_LONG,     /* 500 5.5.2 line too long */
    REPLY_SYNTAX_PARAM,      /* 501 5.5.4 */
    REPLY_SYNTAX_PATH,       /* 501 5.1.7/5.1.3 bad address syntax */
    REPLY_PATH_TOO_LONG,     /* 501 5.1.3? -> 553 5.1.3 */
    REPLY_HELO_NEEDS_ARG,    /* 501 5.5.4 */
    REPLY_NOT_IMPL,          /* 502 5.5.1 */
    REPLY_NESTED_MAIL,       /* 503 5.5.1 */
    REPLY_NEED_MAIL,         /* 503 5.5.1 */
    REPLY_NEED_RCPT,         /* 503 5.5.1 */
    REPLY_ONLY_QUIT,         /* 503 5.7.1 after a refused greeting (RFC 5321 §3.1) */
    REPLY_NO_VALID_RCPT,     /* 554 5.5.1 */
    REPLY_TOO_BIG,           /* 552 5.3.4 */
    REPLY_TOO_MANY_RCPT,     /* 452 4.5.3 */
    REPLY_BARE_LF,           /* 554 5.6.0 */
    REPLY_BAD_PARAM,         /* 555 5.5.4 unsupported MAIL/RCPT parameter */
    REPLY_NOMEM,             /* 451 4.3.0 */
    REPLY_TOO_MANY_ERRORS,   /* 421 4.7.0 */
    REPLY_TOO_MANY_COMMANDS, /* 421 4.7.0 max_commands_before_mail */
    REPLY_TOO_MANY_MESSAGES, /* 421 4.7.0 max_messages_per_session */
    REPLY_HEADER_TOO_BIG,    /* 552 5.3.4 max_header_size */
    REPLY_STARTTLS,          /* 220 2.0.0 Ready to start TLS (RFC 3207) */
    REPLY_STARTTLS_IN_TXN,   /* 503 5.5.1 STARTTLS inside a transaction */
    REPLY_TLS_ACTIVE,        /* 503 5.5.1 TLS already active */
    REPLY_TLS_UNAVAILABLE,   /* 454 4.7.0 TLS not available */
    REPLY_NEED_EHLO,         /* 503 5.5.1 send EHLO first (after STARTTLS) */
    REPLY_AUTH_OK,           /* 235 2.7.0 (RFC 4954) */
    REPLY_AUTH_FAILED,       /* 535 5.7.8 */
    REPLY_AUTH_NEED_TLS,     /* 538 5.7.11 encryption required */
    REPLY_AUTH_REQUIRED,     /* 530 5.7.0 authentication required */
    REPLY_AUTH_TWICE,        /* 503 5.5.1 already authenticated */
    REPLY_AUTH_IN_TXN,       /* 503 5.5.1 AUTH during a transaction */
    REPLY_AUTH_MECH,         /* 504 5.5.4 unrecognized authentication type */
    REPLY_AUTH_CANCELLED,    /* 501 5.0.0 */
    REPLY_AUTH_SYNTAX,       /* 501 5.5.2 cannot decode the response */
    REPLY_AUTH_TEMP,         /* 454 4.7.0 temporary authentication failure */
    REPLY_AUTH_LOCKED,       /* 454 4.7.0 this address failed too often (auth_fail_limit) */
    REPLY_AUTH_BUSY,         /* 454 4.7.0 too many password checks waiting */
    REPLY_AUTH_CONTINUE,     /* 334 with an empty challenge (RFC 4954 §4, PLAIN) */
    REPLY_AUTH_USERNAME,     /* 334 "Username:" (LOGIN) */
    REPLY_AUTH_PASSWORD,     /* 334 "Password:" (LOGIN) */
    REPLY_MAIL_OK,           /* 250 2.1.0 our own MAIL acceptance (spool) */
    REPLY_RCPT_OK,           /* 250 2.1.5 our own RCPT acceptance (spool) */
    REPLY_MAIL_QUEUED_DOWN,  /* 250 2.1.0 upstream unavailable: the message will be queued */
    REPLY_MAIL_QUEUED_TEMP,  /* 250 2.1.0 upstream deferred MAIL: the message will be queued */
    REPLY_RCPT_QUEUED_DOWN,  /* 250 2.1.5 upstream unavailable: this recipient is queued */
    REPLY_RCPT_QUEUED_TEMP,  /* 250 2.1.5 upstream deferred this recipient: queued */
    REPLY_SPOOL_FULL,        /* 452 4.3.1 the spool is full (disk, quota, max_spool_size) */
    REPLY_SPOOL_NO_ROOM,     /* 452 4.3.1 the spool cannot take this message */
    REPLY_SPOOL_FAILED,      /* 451 4.3.0 the message could not be spooled */
    REPLY_DSN_SYNTAX,        /* 501 5.5.4 malformed RET/ENVID/NOTIFY/ORCPT (RFC 3461 §4) */
    REPLY_NEED_SMTPUTF8,     /* 553 5.6.7 non-ASCII address without SMTPUTF8 (RFC 6531 §3.5) */
    REPLY_MAIL_QUEUED_DSN,   /* 250 2.1.0 upstream lacks DSN: queued, relay25 sends the notices */
    REPLY_RCPT_QUEUED_DSN,   /* 250 2.1.5 the same for one recipient's NOTIFY/ORCPT */
    REPLY_COUNT
};

/* The canned reply with CRLF (static storage). */
const char *reply_canned(enum reply_id id, size_t *len);

/* "421 4.4.2 HOST Error: timeout exceeded\r\n" and friends with the host name. */
size_t reply_timeout(char *out, size_t cap, const char *hostname);
/* "421 4.4.2 HOST Error: transfer too slow": a body below data_min_rate */
size_t reply_too_slow(char *out, size_t cap, const char *hostname);
size_t reply_shutdown(char *out, size_t cap, const char *hostname);
/* 554 5.7.1 refusal of a client, reason e.g. "not in allow" or "no [device] matches". */
size_t reply_refused(char *out, size_t cap, const char *hostname, const char *ip,
                     const char *reason);

/* 220 greeting. */
size_t reply_greeting(char *out, size_t cap, const char *hostname);
/* The HELO reply, or the EHLO reply with its keywords (RFC 5321 §4.1.1.1;
 * PIPELINING RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES
 * RFC 2034, STARTTLS RFC 3207, AUTH RFC 4954 when offered). */
#define REPLY_EHLO_DSN 0x01u      /* DSN, RFC 3461 */
#define REPLY_EHLO_SMTPUTF8 0x02u /* SMTPUTF8, RFC 6531 */
size_t reply_ehlo(char *out, size_t cap, const char *hostname, int esmtp,
                  unsigned long long max_size, int starttls, int auth, unsigned offer);
/* 455 4.5.4: the device used DSN or SMTPUTF8 (what), offered because upstream
 * offered it before, and the upstream session of this MAIL does not offer it. */
size_t reply_upstream_lacks(char *out, size_t cap, const char *where, const char *what);
/* 421 4.7.0 too many connections (per_ip: from this client's address). */
size_t reply_too_many_connections(char *out, size_t cap, const char *hostname, int per_ip);
/* 550 5.7.1 allowed_senders / allowed_recipients; what is "Sender" or "Recipient". */
size_t reply_not_allowed(char *out, size_t cap, const char *what, const char *addr,
                         const char *device);
/* 450 4.7.1 a device's message_rate / recipient_rate, with when to retry. */
size_t reply_rate_limited(char *out, size_t cap, const char *name, unsigned count,
                          unsigned per_seconds, const char *device, unsigned long long retry_s);
/* 250 2.0.0 the message is on disk, with its queue id. */
size_t reply_queued(char *out, size_t cap, unsigned long long qid);

/* sendmail -bs: the reply to a message's end of data from the sysexits.h status
 * of its delivery (0: 250 2.0.0; EX_NOUSER: 550 5.1.1; EX_DATAERR: 554 5.6.0;
 * EX_UNAVAILABLE: 554 5.0.0; EX_CONFIG: 451 4.3.5; any other: 451 4.3.0) and a
 * text (control characters become '?'). */
size_t reply_sendmail(char *out, size_t cap, int sysexit, const char *text);
/* The command an upstream reply answers, for the enhanced code derived in reply_pass. */
enum reply_cmd {
    REPLY_CMD_MAIL,
    REPLY_CMD_RCPT,
    REPLY_CMD_DATA, /* the DATA command itself (its 354 is never passed on) */
    REPLY_CMD_DOT,  /* the end of data */
    REPLY_CMD_OTHER,
};
/* Room reply_pass needs for any reply of len bytes: each line grows by at most
 * REPLY_PASS_GROWTH octets (a separator, "X.YYY.ZZZ", a blank, a CR), and a line
 * is at least 4 octets. */
#define REPLY_PASS_GROWTH 16u
#define REPLY_PASS_CAP(len) ((len) + ((len) / 4 + 1) * REPLY_PASS_GROWTH + 1)
/* An upstream reply (one or more lines "ddd-text" / "ddd text", CRLF or LF) as the
 * client gets it, with an RFC 3463 enhanced status code on every line (RFC 2034
 * §3: relay25 offers ENHANCEDSTATUSCODES). Lines that carry one keep it; the
 * others get the first line's, or, when none has one, one derived from the reply
 * code and the command as Postfix's smtpd words its own (250 after MAIL 2.1.0,
 * after RCPT 2.1.5, after the end of data 2.0.0, 550 at RCPT 5.1.1, ...) and
 * otherwise "X.0.0" like Postfix's smtp client. Text kept, lines end in CRLF.
 * 1xx/3xx replies (354, 334) have no enhanced code class and are copied as they
 * are. Lines that do not fit cap are dropped, the last kept one made final; cap
 * >= REPLY_PASS_CAP(len) holds them all. Returns the bytes written (0 if cap < 16). */
size_t reply_pass(char *out, size_t cap, const char *text, size_t len, enum reply_cmd cmd);
/* Microsoft Graph's answer to a sendMail as an SMTP reply (issue 16): 250 for
 * 202; 4xx for throttling and outages (429, 5xx, with retry_after seconds when
 * Graph gave Retry-After), a refused token (401) and timeouts (408); 5xx with
 * Graph's error code and message for what will not change on retry (400 bad
 * message, 403 no permission or not allowed to send as, 404 no such mailbox, 413
 * too large). request_id (may be "") is quoted so an admin can ask Microsoft.
 * status 0: no token could be had (message says why): 454 4.7.0. */
size_t reply_graph(char *out, size_t cap, int status, const char *code, const char *message,
                   const char *request_id, unsigned retry_after);

/* The 4xx a client gets when its upstream session failed: code and enhanced
 * status by err, then what happened ("upstream smtp.example:587: " + detail).
 * detail (may be NULL) is upstream's reply text or a TLS/socket error; control
 * characters are dropped so it stays one line. Always 4xx. */
size_t reply_upstream(char *out, size_t cap, int err, const char *where, const char *detail);
/* The same failure as a reason for people, without code: "HOST:PORT what: detail"
 * (e.g. sendmail's and health's messages). Truncated to fit out. */
void reply_upstream_reason(char *out, size_t cap, int err, const char *where, const char *detail);

#endif
