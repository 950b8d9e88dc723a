/* up_caps: the remembered EHLO capabilities per upstream address, a small
 * array searched linearly (a handful of upstreams). Only the loop thread
 * touches it. */
#include "upstream/up_caps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/up_session.h"

#define UP_CAPS_MAX 256 /* addresses remembered; more configured upstreams than this is odd */

struct up_caps_entry {
    char where[300];
    struct up_ehlo ehlo;
};

struct up_caps {
    struct up_caps_entry *e;
    size_t n, cap;
};

struct up_caps *up_caps_new(void)
{
    return calloc(1, sizeof(struct up_caps));
}

void up_caps_free(struct up_caps *c)
{
    if (c) {
        free(c->e);
        free(c);
    }
}

static struct up_caps_entry *up_caps_find(const struct up_caps *c, const char *where)
{
    for (size_t i = 0; c && i < c->n; i++) {
        if (strcmp(c->e[i].where, where) == 0) {
            return &c->e[i];
        }
    }
    return NULL;
}

void up_caps_note(struct up_caps *c, const char *where, const struct up_ehlo *e)
{
    struct up_caps_entry *x = up_caps_find(c, where);

    if (!c) {
        return;
    }
    if (!x) {
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 4;
            void *ne;
            if (ncap > UP_CAPS_MAX || !(ne = realloc(c->e, ncap * sizeof(*c->e)))) {
                return; /* not remembered: the keywords are not offered, which is safe */
            }
            c->e = ne;
            c->cap = ncap;
        }
        x = &c->e[c->n++];
        snprintf(x->where, sizeof(x->where), "%s", where);
    }
    x->ehlo = *e;
}

int up_caps_get(const struct up_caps *c, const char *where, struct up_ehlo *out)
{
    const struct up_caps_entry *x = up_caps_find(c, where);

    if (!x) {
        return 0;
    }
    *out = x->ehlo;
    return 1;
}

int up_caps_of(const struct up_caps *c, const struct conf_upstream *up, struct up_ehlo *out)
{
    char where[300];

    if (!c || !up) {
        return 0;
    }
    up_where_of(up, where, sizeof(where));
    return up_caps_get(c, where, out);
}
