/* up_caps: what each upstream address ("host:port") offered in its last EHLO
 * after TLS, remembered by the pool from every session it set up. The inbound
 * EHLO is answered before any upstream session of that MAIL exists, so
 * keywords relay25 can only pass through (DSN, SMTPUTF8; RFC 3461, RFC 6531)
 * are offered from this memory. Bounded: one entry per configured address. */
#ifndef RELAY25_UP_CAPS_H
#define RELAY25_UP_CAPS_H

#include "upstream/up_reply.h"

struct up_caps;
struct conf_upstream;

struct up_caps *up_caps_new(void);
void up_caps_free(struct up_caps *c);
/* Remembers e for where (a later EHLO replaces an earlier one). */
void up_caps_note(struct up_caps *c, const char *where, const struct up_ehlo *e);
/* 1 and *out when where's capabilities are known, else 0. c may be NULL. */
int up_caps_get(const struct up_caps *c, const char *where, struct up_ehlo *out);
/* The same for a configured upstream. */
int up_caps_of(const struct up_caps *c, const struct conf_upstream *up, struct up_ehlo *out);

#endif
