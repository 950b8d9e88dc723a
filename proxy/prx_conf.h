/* prx_conf: a configuration snapshot as the sessions see it, and the rate-limit
 * state that lives with it: per device one pair of token buckets
 * (rate_limit_by = device) or a bounded table of them per client address
 * (rate_limit_by = address, the default; auth_rate). 32 KiB per rate-limited device. */
#ifndef RELAY25_PRX_CONF_H
#define RELAY25_PRX_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

struct conf;
struct auth_bucket;
struct prx_rates;

/* The limits kept per device (and per address): auth_rate_slot.b[] indexes. */
enum prx_rate_kind {
    PRX_RATE_MESSAGE,   /* message_rate, taken at MAIL */
    PRX_RATE_RECIPIENT, /* recipient_rate, taken at RCPT */
};

/* Sessions opened before a reload keep their snapshot until they end; a reload
 * carries each device's rate state over by name (prx_conf_carry), so it does not
 * reset the limits. */
struct prx_conf {
    struct conf *c;
    unsigned refs;
    struct prx_rates *rates; /* parallel to c->devices */
};

/* Wraps c (taking ownership) with refs = 1 and full buckets. NULL on allocation
 * failure (c is then the caller's). */
struct prx_conf *prx_conf_new(struct conf *c);
void prx_conf_hold(struct prx_conf *pc);
/* Frees c with the last reference. */
void prx_conf_release(struct prx_conf *pc);

/* Reload: each device of pc that old also has (same name) takes over old's rate
 * state; a device whose rate_limit_by changed starts with full buckets. */
void prx_conf_carry(struct prx_conf *pc, const struct prx_conf *old);

/* The bucket counting kind for device devidx and the client at addr (AF_INET or
 * AF_INET6; ignored for rate_limit_by = device). NULL when that rate is
 * unlimited. A new address starts with a full bucket; when the device's table
 * is full it replaces the address looked up least recently. */
struct auth_bucket *prx_conf_bucket(struct prx_conf *pc, size_t devidx, enum prx_rate_kind kind,
                                    const struct sockaddr *addr, uint64_t now_ms);

#endif
