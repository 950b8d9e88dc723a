/* up_caps: what each upstream address offered in its last EHLO after TLS, kept
 * across sessions (RFC 1870 SIZE and the RFC 5321 §4.1.1.1 keywords). A small
 * fixed table searched linearly: a relay talks to a handful of upstreams. */
#include "upstream/up_caps.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/up_session.h"

struct up_caps_entry {
    char where[300]; /* "host:port" as up_where_of writes it; "" = free */
    struct up_ehlo ehlo;
    uint64_t seq; /* when learned: the smallest is replaced first */
};

struct up_caps {
    struct up_caps_entry e[UP_CAPS_MAX];
    uint64_t seq;
};

struct up_caps *up_caps_new(void)
{
    return calloc(1, sizeof(struct up_caps));
}

void up_caps_free(struct up_caps *c)
{
    free(c);
}

static struct up_caps_entry *up_caps_find(const struct up_caps *c, const char *where)
{
    for (size_t i = 0; i < UP_CAPS_MAX; i++) {
        if (c->e[i].where[0] && strcmp(c->e[i].where, where) == 0) {
            return (struct up_caps_entry *)&c->e[i];
        }
    }
    return NULL;
}

void up_caps_put(struct up_caps *c, const char *where, const struct up_ehlo *e)
{
    struct up_caps_entry *x;

    if (!c || !where || !where[0] || strlen(where) >= sizeof(c->e[0].where)) {
        return;
    }
    if (!(x = up_caps_find(c, where))) {
        x = &c->e[0];
        for (size_t i = 1; i < UP_CAPS_MAX && x->where[0]; i++) {
            if (!c->e[i].where[0] || c->e[i].seq < x->seq) {
                x = &c->e[i];
            }
        }
        snprintf(x->where, sizeof(x->where), "%s", where);
    }
    x->ehlo = *e;
    x->seq = ++c->seq;
}

int up_caps_get(const struct up_caps *c, const char *where, struct up_ehlo *out)
{
    const struct up_caps_entry *x = c && where ? up_caps_find(c, where) : NULL;

    if (!x) {
        return -1;
    }
    *out = x->ehlo;
    return 0;
}

int up_caps_of(const struct up_caps *c, const struct conf_upstream *up, struct up_ehlo *out)
{
    char where[300];

    if (!c || !up) {
        return 0;
    }
    up_where_of(up, where, sizeof(where));
    return up_caps_get(c, where, out) == 0;
}
