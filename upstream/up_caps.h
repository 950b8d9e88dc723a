/* up_caps: capability memory per upstream address ("host:port"): what its last
 * EHLO after TLS offered (RFC 5321 §4.1.1.1: the UP_EXT_* bits, AUTH mechanisms,
 * SIZE of RFC 1870), so the inbound side can tell a device what its upstream will
 * take before a session to it is open (EHLO SIZE, MAIL SIZE= refused early).
 * up_pool owns one and fills it from every session it sets up. At most
 * UP_CAPS_MAX addresses; the one learned longest ago is replaced first. */
#ifndef RELAY25_UP_CAPS_H
#define RELAY25_UP_CAPS_H

#include "upstream/up_reply.h"

#define UP_CAPS_MAX 64u

struct up_caps;
struct conf_upstream;

struct up_caps *up_caps_new(void);
void up_caps_free(struct up_caps *c);
/* where offered e (a later EHLO replaces what an earlier one said). */
void up_caps_put(struct up_caps *c, const char *where, const struct up_ehlo *e);
/* 0 and *out: what where offered last; -1: nothing known yet. */
int up_caps_get(const struct up_caps *c, const char *where, struct up_ehlo *out);
/* For a configured upstream: 1 and *out when known, else 0 (c may be NULL). */
int up_caps_of(const struct up_caps *c, const struct conf_upstream *up, struct up_ehlo *out);

#endif
