/* prx_rewrite: the From: rewrite of rewrite_from_header as a pure function over
 * a held header section (RFC 5322 §3.6.2 originator fields): no I/O, no session.
 * The body pump (prx_data.c) holds the section and sends what this returns. */
#ifndef RELAY25_PRX_REWRITE_H
#define RELAY25_PRX_REWRITE_H

#include <stddef.h>

/* The header section h[0, len) with its first From: set to sender, the display
 * name kept ("Scanner" <scan@lan> -> "Scanner" <sender>; a bare address becomes
 * sender; a folded value is unfolded), followed by Reply-To: <the original
 * address> unless the section has a Reply-To: (orig_from, the envelope sender,
 * when From: names no address). Returns a malloc'd section of *outlen bytes, or
 * NULL when there is no From:, memory is short or the result would not fit:
 * the caller then sends the section as it was. */
char *prx_rewrite_from(const char *h, size_t len, const char *sender, const char *orig_from,
                       size_t *outlen);

#endif
