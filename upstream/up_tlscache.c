/* up_tlscache: a small fixed array of (key, session parameters, last use);
 * uv_now gives the use time, so the loop is only read, never waited on. */
#include "upstream/up_tlscache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UP_TLSCACHE_MAX 32

struct up_tlscache_entry {
    char key[UP_TLSCACHE_KEY_MAX]; /* "verify ca-digest where server_name" */
    br_ssl_session_parameters params;
    uint64_t used_ms;
};

struct up_tlscache {
    uv_loop_t *loop;
    struct up_tlscache_entry e[UP_TLSCACHE_MAX];
    size_t n;
};

struct up_tlscache *up_tlscache_new(uv_loop_t *loop)
{
    struct up_tlscache *c = calloc(1, sizeof(*c));

    if (c) {
        c->loop = loop;
    }
    return c;
}

void up_tlscache_free(struct up_tlscache *c)
{
    if (c) {
        explicit_bzero(c->e, sizeof(c->e)); /* master secrets */
        free(c);
    }
}

static struct up_tlscache_entry *up_tlscache_find(struct up_tlscache *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0) {
            return &c->e[i];
        }
    }
    return NULL;
}

int up_tlscache_get(struct up_tlscache *c, const char *key, br_ssl_session_parameters *out)
{
    struct up_tlscache_entry *e;

    if (!(e = up_tlscache_find(c, key))) {
        return -1;
    }
    e->used_ms = uv_now(c->loop);
    *out = e->params;
    return 0;
}

void up_tlscache_put(struct up_tlscache *c, const char *key,
                     const br_ssl_session_parameters *params)
{
    struct up_tlscache_entry *e;

    if (strlen(key) >= sizeof(e->key)) {
        return; /* never stored cut: it could match another server's key */
    }
    if (!(e = up_tlscache_find(c, key))) {
        if (c->n < UP_TLSCACHE_MAX) {
            e = &c->e[c->n++];
        } else { /* replace the least recently used */
            e = &c->e[0];
            for (size_t i = 1; i < c->n; i++) {
                if (c->e[i].used_ms < e->used_ms) {
                    e = &c->e[i];
                }
            }
        }
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    e->params = *params;
    e->used_ms = uv_now(c->loop);
}
