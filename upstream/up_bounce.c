/* up_bounce: builds the RFC 3464 delivery status notification the queue sends
 * back to a sender when recipients failed for good: a human-readable part, a
 * message/delivery-status part with one block per recipient, and the original
 * header section as text/rfc822-headers (RFC 3462). Pure text, no I/O. */
#include "upstream/up_bounce.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dsn.h"

#define UPB_FIXED 8192u    /* the report's own text, recipients aside */
#define UPB_PER_RCPT 700u  /* its text per recipient, address and reason aside */
#define UPB_ADDR_MAX 1200u /* an address of 255 octets, xtext-encoded (upb_addr) */

struct upb_out {
    char *p;
    size_t len, cap;
    int full;
};

static void upb_put(struct upb_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void upb_put(struct upb_out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->full) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->full = 1;
        return;
    }
    o->len += (size_t)n;
}

/* RFC 3463 status from a reply "550 5.1.1 ..." -> "5.1.1"; else 5.0.0 (the
 * recipient failed for good, whatever the text says). */
static void upb_status(const char *why, char *out, size_t cap)
{
    snprintf(out, cap, "5.0.0");
    if (strlen(why) > 9 && why[4] == '5' && why[5] == '.') {
        snprintf(out, cap, "%.*s", (int)strcspn(why + 4, " "), why + 4);
    }
}

/* An xtext value for a report field (RFC 3464 §2.2.1, §2.3.1 want it decoded):
 * decoded when that is printable US-ASCII, else as received (xtext is ASCII). */
static const char *upb_xtext(const char *x, char *out, size_t cap)
{
    long n = dsn_xtext_decode(x, strlen(x), out, cap);

    for (long i = 0; i < n; i++) {
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e) {
            n = -1;
        }
    }
    return n < 0 ? x : out;
}

/* A recipient for the ASCII report: "rfc822; addr", or for a non-ASCII one
 * "utf-8; " and RFC 6533 §3 utf-8-addr-xtext (each non-ASCII character, "\\",
 * "+" and "=" as \x{HEX} of its code point; a byte that is no UTF-8 as itself).
 * typed 0: without the type, for the text part. */
static const char *upb_addr(const char *a, int typed, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)a;
    size_t o;

    if (!dsn_has_8bit(a, strlen(a))) {
        snprintf(out, cap, "%s%s", typed ? "rfc822; " : "", a);
        return out;
    }
    o = (size_t)snprintf(out, cap, "%s", typed ? "utf-8; " : "");
    while (*p && o + 12 < cap) {
        unsigned long cp = *p;
        size_t len = 1;

        if (*p >= 0xc2 && *p <= 0xdf && (p[1] & 0xc0) == 0x80) {
            cp = ((unsigned long)(*p & 0x1f) << 6) | (p[1] & 0x3f);
            len = 2;
        } else if (*p >= 0xe0 && *p <= 0xef && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
            cp = ((unsigned long)(*p & 0x0f) << 12) | ((unsigned long)(p[1] & 0x3f) << 6) |
                 (p[2] & 0x3f);
            len = 3;
        } else if (*p >= 0xf0 && *p <= 0xf4 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
                   (p[3] & 0xc0) == 0x80) {
            cp = ((unsigned long)(*p & 0x07) << 18) | ((unsigned long)(p[1] & 0x3f) << 12) |
                 ((unsigned long)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
            len = 4;
        }
        if (cp >= 0x80 || cp == '\\' || cp == '+' || cp == '=') {
            o += (size_t)snprintf(out + o, cap - o, "\\x{%lX}", cp);
        } else {
            out[o++] = (char)cp;
        }
        p += len;
    }
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}

size_t up_bounce_header_len(const char *msg, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(msg + i, "\r\n\r\n", 4) == 0) {
            return i + 2;
        }
    }
    return n;
}

char *up_bounce_build(const struct up_bounce *b, size_t *len)
{
    const char *host = b->hostname;
    char date[64], boundary[64], xbuf[DSN_ORCPT_MAX + 1], abuf[UPB_ADDR_MAX];
    struct upb_out o;
    struct tm tm;
    size_t nrelayed = 0;

    memset(&o, 0, sizeof(o));
    o.cap = UPB_FIXED + b->headers_len + strlen(b->to) + 1;
    o.cap += b->envid ? 2 * strlen(b->envid) : 0;
    for (size_t i = 0; i < b->nfailed; i++) {
        o.cap += UPB_PER_RCPT + 3 * strlen(b->failed[i].reason) + 2 * UPB_ADDR_MAX;
        o.cap += b->failed[i].orcpt ? 2 * strlen(b->failed[i].orcpt) : 0;
        nrelayed += b->failed[i].relayed != 0;
    }
    if (!(o.p = malloc(o.cap))) {
        return NULL;
    }
    localtime_r(&b->date, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    snprintf(boundary, sizeof(boundary), "%016" PRIx64 "/%.40s", b->id, host);
    upb_put(&o,
            "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n"
            "Subject: %s\r\nDate: %s\r\n"
            "Message-ID: <%016" PRIx64 ".bounce@%s>\r\nAuto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"%s\"\r\n\r\n",
            host, b->to,
            nrelayed == b->nfailed ? "Successful Mail Delivery Report"
                                   : "Undelivered Mail Returned to Sender",
            date, b->id, host, boundary);
    upb_put(&o,
            "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            "This is the relay25 mail relay at %s.\r\n\r\n",
            boundary, host);
    if (nrelayed < b->nfailed) {
        upb_put(&o,
                "Your message (queue id %016" PRIx64 ") could not be delivered to the\r\n"
                "following recipients:\r\n\r\n",
                b->qid);
        for (size_t i = 0; i < b->nfailed; i++) {
            if (!b->failed[i].relayed) {
                upb_put(&o, "<%s>: %s\r\n", upb_addr(b->failed[i].addr, 0, abuf, sizeof(abuf)),
                        b->failed[i].reason);
            }
        }
    }
    if (nrelayed > 0) {
        upb_put(&o,
                "%sYour message (queue id %016" PRIx64 ") was handed on to a mail server\r\n"
                "that does not return delivery notices, for the following recipients:\r\n\r\n",
                nrelayed < b->nfailed ? "\r\n" : "", b->qid);
        for (size_t i = 0; i < b->nfailed; i++) {
            if (b->failed[i].relayed) {
                upb_put(&o, "<%s>: %s\r\n", upb_addr(b->failed[i].addr, 0, abuf, sizeof(abuf)),
                        b->failed[i].reason);
            }
        }
    }
    /* RFC 3464 §2.2: per-message fields, then one block per recipient */
    upb_put(&o,
            "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; %s\r\nX-Relay25-Queue-ID: %016" PRIx64 "\r\n",
            boundary, host, b->qid);
    if (b->envid) {
        upb_put(&o, "Original-Envelope-Id: %s\r\n", upb_xtext(b->envid, xbuf, sizeof(xbuf)));
    }
    for (size_t i = 0; i < b->nfailed; i++) {
        char status[16];
        const char *oc = b->failed[i].orcpt;

        if (b->failed[i].relayed) {
            snprintf(status, sizeof(status), "2.0.0");
        } else {
            upb_status(b->failed[i].reason, status, sizeof(status));
        }
        upb_put(&o, "\r\n");
        if (oc && strchr(oc, ';')) {
            /* RFC 3464 §2.3.1: address-type ";" the decoded address */
            const char *semi = strchr(oc, ';');
            upb_put(&o, "Original-Recipient: %.*s;%s\r\n", (int)(semi - oc), oc,
                    upb_xtext(semi + 1, xbuf, sizeof(xbuf)));
        }
        upb_put(&o,
                "Final-Recipient: %s\r\nAction: %s\r\nStatus: %s\r\n"
                "Diagnostic-Code: smtp; %s\r\n",
                upb_addr(b->failed[i].addr, 1, abuf, sizeof(abuf)),
                b->failed[i].relayed ? "relayed" : "failed", status, b->failed[i].reason);
    }
    upb_put(&o, "\r\n--%s\r\nContent-Type: %s\r\n\r\n", boundary,
            b->full ? "message/rfc822" : "text/rfc822-headers");
    if (b->headers && !o.full && o.len + b->headers_len + 200 < o.cap) {
        memcpy(o.p + o.len, b->headers, b->headers_len);
        o.len += b->headers_len;
    }
    upb_put(&o, "\r\n--%s--\r\n", boundary);
    if (o.full) { /* the capacity above is ample: not reached */
        free(o.p);
        return NULL;
    }
    *len = o.len;
    return o.p;
}

char *up_bounce_reason(const struct up_bounce_rcpt *failed, size_t nfailed, size_t *len)
{
    size_t cap = 1, o = 0;
    char *out;

    for (size_t i = 0; i < nfailed; i++) {
        cap += strlen(failed[i].addr) + 8 + strlen(failed[i].reason);
    }
    if (!(out = malloc(cap))) {
        return NULL;
    }
    out[0] = '\0';
    for (size_t i = 0; i < nfailed; i++) {
        const char *why = failed[i].reason;
        int n = snprintf(out + o, cap - o, "<%s>: %.*s\n", failed[i].addr,
                         (int)strcspn(why, "\r\n"), why);
        o += n > 0 && (size_t)n < cap - o ? (size_t)n : 0;
    }
    *len = o;
    return out;
}
