/* auth_map: maps a client's source address to relay permission (conf->allow)
 * and to the device whose upstream credentials it uses: longest-prefix match over
 * every device's networks, IPv4 and IPv4-mapped IPv6 peers alike. */
#include "auth/auth_map.h"

#include <stddef.h>

#include "common/cidr.h"
#include "conf/conf.h"

int auth_map_allowed(const struct conf *c, const struct sockaddr *sa)
{
    for (size_t i = 0; i < c->nallow; i++) {
        if (cidr_match(&c->allow[i], sa)) {
            return 1;
        }
    }
    return 0;
}

/* Prefix length on one scale: an IPv4 /n is the IPv4-mapped IPv6 /96+n, so a
 * v4-mapped peer prefers 192.168.1.0/24 (=/120) over ::/0. */
static int auth_map_specificity(const struct cidr *n)
{
    return n->family == AF_INET ? 96 + n->prefix : n->prefix;
}

const struct conf_device *auth_map_lookup(const struct conf *c, const struct sockaddr *sa)
{
    const struct conf_device *best = NULL, *def = NULL;
    int best_len = -1;

    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];

        if (d->is_default && !def) {
            def = d;
        }
        for (size_t j = 0; j < d->nmatch; j++) {
            int len = auth_map_specificity(&d->match[j]);

            /* strictly longer: on a tie the device listed first keeps it */
            if (len > best_len && cidr_match(&d->match[j], sa)) {
                best = d;
                best_len = len;
            }
        }
    }
    return best ? best : def;
}
