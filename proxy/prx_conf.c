/* prx_conf: the sessions' configuration snapshot with its reference count, and
 * the rate-limit buckets of each device, for the whole device or per client
 * address (like Postfix's anvil, which counts per client) in a fixed-size table. */
#include "proxy/prx_conf.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_rate.h"
#include "conf/conf.h"

/* One device's rate state: the device's own buckets, and with rate_limit_by =
 * address and a rate set, the table of its clients' buckets. */
struct prx_rates {
    struct auth_bucket dev[AUTH_RATE_NBUCKETS];
    struct auth_rate_table *addr;
};

static const struct conf_rate *prx_rate_of(const struct conf_device *d, enum prx_rate_kind kind)
{
    return kind == PRX_RATE_MESSAGE ? &d->message_rate : &d->recipient_rate;
}

static void prx_buckets_init(struct auth_bucket *b, const struct conf_device *d, uint64_t now_ms)
{
    for (int k = 0; k < AUTH_RATE_NBUCKETS; k++) {
        const struct conf_rate *r = prx_rate_of(d, (enum prx_rate_kind)k);
        auth_bucket_init(&b[k], r->count, r->per_seconds, now_ms);
    }
}

static void prx_rates_free(struct prx_conf *pc)
{
    if (!pc->rates) {
        return;
    }
    for (size_t i = 0; i < pc->c->ndevices; i++) {
        free(pc->rates[i].addr);
    }
    free(pc->rates);
}

struct prx_conf *prx_conf_new(struct conf *c)
{
    struct prx_conf *pc = calloc(1, sizeof(*pc));

    if (!pc) {
        return NULL;
    }
    pc->c = c;
    pc->refs = 1;
    if (c->ndevices > 0 && !(pc->rates = calloc(c->ndevices, sizeof(*pc->rates)))) {
        goto fail;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];
        prx_buckets_init(pc->rates[i].dev, d, 0);
        /* only a device with a limit counts its clients: the table is 32 KiB */
        if (d->rate_by == CONF_RATE_BY_ADDRESS &&
            (d->message_rate.count > 0 || d->recipient_rate.count > 0) &&
            !(pc->rates[i].addr = calloc(1, sizeof(*pc->rates[i].addr)))) {
            goto fail;
        }
    }
    return pc;
fail:
    prx_rates_free(pc);
    free(pc);
    return NULL;
}

void prx_conf_hold(struct prx_conf *pc)
{
    pc->refs++;
}

void prx_conf_release(struct prx_conf *pc)
{
    if (!pc || --pc->refs > 0) {
        return;
    }
    prx_rates_free(pc);
    conf_release(pc->c);
    free(pc);
}

void prx_conf_carry(struct prx_conf *pc, const struct prx_conf *old)
{
    for (size_t i = 0; i < pc->c->ndevices; i++) {
        for (size_t k = 0; k < old->c->ndevices; k++) {
            if (strcmp(old->c->devices[k].name, pc->c->devices[i].name) != 0) {
                continue;
            }
            memcpy(pc->rates[i].dev, old->rates[k].dev, sizeof(pc->rates[i].dev));
            if (pc->rates[i].addr && old->rates[k].addr) {
                *pc->rates[i].addr = *old->rates[k].addr;
            }
            break;
        }
    }
}

/* The client address as the table's key: 4 or 16 bytes. */
static size_t prx_addr_key(const struct sockaddr *sa, const unsigned char **key)
{
    if (sa->sa_family == AF_INET) {
        *key = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        *key = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        return 16;
    }
    return 0;
}

struct auth_bucket *prx_conf_bucket(struct prx_conf *pc, size_t devidx, enum prx_rate_kind kind,
                                    const struct sockaddr *addr, uint64_t now_ms)
{
    const struct conf_device *d;
    struct prx_rates *r;
    struct auth_rate_slot *e;
    const unsigned char *key = NULL;
    size_t keylen;
    int fresh;

    if (devidx >= pc->c->ndevices) {
        return NULL;
    }
    d = &pc->c->devices[devidx];
    r = &pc->rates[devidx];
    if (prx_rate_of(d, kind)->count == 0) {
        return NULL;
    }
    if (d->rate_by == CONF_RATE_BY_DEVICE || !r->addr) {
        return &r->dev[kind];
    }
    keylen = prx_addr_key(addr, &key);
    e = keylen ? auth_rate_lookup(r->addr, key, keylen, now_ms, &fresh) : NULL;
    if (!e) {
        return &r->dev[kind]; /* no address (cannot happen for TCP): the device's */
    }
    if (fresh) {
        prx_buckets_init(e->b, d, now_ms);
    }
    return &e->b[kind];
}
