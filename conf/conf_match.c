/* conf_match: questions asked of a loaded snapshot while mail flows: whether an
 * address matches a policy list, which [route] applies to a device and an
 * envelope sender, and whether the daemon keeps a spool. Read-only; no parse state. */
#include "conf/conf.h"

#include <string.h>
#include <strings.h>

/* Patterns are "<>" (the null sender), "local@domain" (whole address), "@domain" or
 * "domain" (any local part at exactly that domain: not its subdomains). The null
 * sender "" (MAIL FROM:<>, RFC 5321 §4.5.5 bounces) matches only "<>", so a
 * non-empty allowed_senders refuses bounces unless it lists "<>". The domain is
 * taken after the last '@'. ASCII case-insensitive throughout. */
int conf_patterns_match(const struct conf_patterns *p, const char *addr)
{
    const char *at = strrchr(addr, '@');

    if (!p || p->n == 0) {
        return 1;
    }
    for (size_t i = 0; i < p->n; i++) {
        const char *item = p->items[i];
        const char *iat = strchr(item, '@');

        if (strcmp(item, "<>") == 0) {
            if (!*addr) {
                return 1;
            }
        } else if (!*addr) {
            continue;
        } else if (!iat || iat == item) {
            if (at && strcasecmp(at + 1, iat ? item + 1 : item) == 0) {
                return 1;
            }
        } else if (strcasecmp(item, addr) == 0) {
            return 1;
        }
    }
    return 0;
}

const struct conf_route *conf_route_for(const struct conf *c, const struct conf_device *d,
                                        const char *sender)
{
    for (size_t i = 0; c && d && i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        size_t j = 0;

        while (j < r->ndevices && strcmp(r->devices[j], d->name) != 0) {
            j++;
        }
        if ((r->ndevices == 0 || j < r->ndevices) && conf_patterns_match(&r->senders, sender)) {
            return r;
        }
    }
    return NULL;
}

const struct conf_route *conf_route_find(const struct conf *c, const char *name)
{
    for (size_t i = 0; c && i < c->nroutes; i++) {
        if (strcmp(c->routes[i].cred.name, name) == 0) {
            return &c->routes[i];
        }
    }
    return NULL;
}

int conf_spool_used(const struct conf *c)
{
    if (c->mode == CONF_MODE_SPOOL || c->on_failure == CONF_ON_FAILURE_QUEUE) {
        return 1;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        /* type = graph in passthrough keeps the body in the spool's tmp/ */
        if (c->devices[i].mode == CONF_MODE_SPOOL ||
            c->devices[i].on_failure == CONF_ON_FAILURE_QUEUE ||
            (c->devices[i].up && c->devices[i].up->type == CONF_UP_GRAPH)) {
            return 1;
        }
    }
    return 0;
}
