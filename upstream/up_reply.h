/* up_reply: parser for SMTP replies from upstream, single and multi-line
 * (RFC 5321 §4.2). A line longer than UP_REPLY_LINE_MAX or a reply larger than
 * UP_REPLY_MAX is an error, not a reallocation (upstream misbehaves). */
#ifndef RELAY25_UP_REPLY_H
#define RELAY25_UP_REPLY_H

#include <stddef.h>

#define UP_REPLY_LINE_MAX 1000 /* generous; RFC 5321 §4.5.3.1.5 says 512 */
#define UP_REPLY_MAX 4096

struct up_reply {
    int code; /* 200..599 */
    int nlines;
    size_t len; /* bytes in text */
    char
        text[UP_REPLY_MAX]; /* the lines exactly as received, each ending in CRLF, NUL-terminated */
};

struct up_reply_parser {
    struct up_reply r;
    char line[UP_REPLY_LINE_MAX + 2];
    size_t linelen;
    int overflow;
};

enum up_reply_status {
    UP_REPLY_MORE = 0,        /* need more bytes */
    UP_REPLY_DONE = 1,        /* p->r holds a complete reply; the next feed starts a new one */
    UP_REPLY_ERR_SYNTAX = -1, /* not "ddd" + " " / "-" / end, or code changed mid-reply */
    UP_REPLY_ERR_TOO_LONG = -2,
};

void up_reply_init(struct up_reply_parser *p);
/* Consumes bytes up to and including the LF that completes a reply, and stops there
 * (*consumed tells how many), so that bytes after the reply stay with the caller
 * (STARTTLS must discard them). Accepts bare LF as line end. */
int up_reply_feed(struct up_reply_parser *p, const char *data, size_t len, size_t *consumed);

/* Text of the last line without the code and separator, e.g. "2.7.0 Accepted";
 * writes at most cap-1 bytes, no CRLF. Returns out. */
const char *up_reply_lastline(const struct up_reply *r, char *out, size_t cap);
/* Text of all lines joined with " / " (codes stripped), for logs and client replies. */
const char *up_reply_oneline(const struct up_reply *r, char *out, size_t cap);

/* EHLO keywords (RFC 5321 §4.1.1.1); capability bits, kept apart from policy. */
#define UP_EXT_STARTTLS 0x01u
#define UP_EXT_PIPELINING 0x02u
#define UP_EXT_SIZE 0x04u
#define UP_EXT_8BITMIME 0x08u
#define UP_EXT_SMTPUTF8 0x10u
#define UP_EXT_DSN 0x20u
#define UP_EXT_AUTH 0x40u
#define UP_EXT_ENHANCEDSTATUSCODES 0x80u

#define UP_AUTH_PLAIN 0x01u
#define UP_AUTH_LOGIN 0x02u
#define UP_AUTH_CRAM_MD5 0x04u
#define UP_AUTH_XOAUTH2 0x08u
#define UP_AUTH_OAUTHBEARER 0x10u

struct up_ehlo {
    unsigned ext;            /* UP_EXT_* */
    unsigned auth;           /* UP_AUTH_* from "AUTH ..." (and the old "AUTH=..." form) */
    unsigned long long size; /* SIZE value, 0 if absent or no limit */
};

/* Capabilities from a 250 EHLO reply (the first line is the greeting, skipped). */
void up_reply_ehlo(const struct up_reply *r, struct up_ehlo *out);

#endif
