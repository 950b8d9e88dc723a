/* cidr: parse, match and format IPv4/IPv6 networks (RFC 4632 §3.1 prefix
 * notation, RFC 4291 §2.3 for IPv6). IPv4 peers that reach a dual-stack socket
 * arrive as IPv4-mapped IPv6 (RFC 4291 §2.5.5.2) and still match IPv4 networks. */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Clears host bits so that matching is a plain prefix comparison. */
static void cidr_mask(uint8_t *addr, size_t alen, unsigned prefix)
{
    for (size_t i = 0; i < alen; i++) {
        unsigned bits = i * 8 >= prefix ? 0 : prefix - (unsigned)i * 8;

        if (bits < 8)
            addr[i] &= (uint8_t)(0xffu << (8 - bits));
    }
}

/* 1 when the first prefix bits of a and b are equal. */
static int cidr_prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    size_t whole = prefix / 8;
    unsigned rest = prefix % 8;

    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[whole] ^ b[whole]) & (uint8_t)(0xffu << (8 - rest))) == 0;
}

int cidr_parse(const char *s, struct cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned max, prefix;
    struct cidr c;

    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';

    memset(&c, 0, sizeof(c));
    if (memchr(host, ':', hlen)) {
        c.family = AF_INET6;
        max = 128;
    } else {
        c.family = AF_INET;
        max = 32;
    }
    /* inet_pton is strict: no "1.2.3", no blanks, no zone ids. */
    if (inet_pton(c.family, host, c.addr) != 1)
        return -1;

    prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t n = 0;

        prefix = 0;
        for (; p[n] >= '0' && p[n] <= '9'; n++) {
            if (n == 3)
                return -1;
            prefix = prefix * 10 + (unsigned)(p[n] - '0');
        }
        if (n == 0 || p[n] != '\0' || prefix > max)
            return -1;
    }
    c.prefix = (uint8_t)prefix;
    cidr_mask(c.addr, max / 8, prefix);
    *out = c;
    return 0;
}

int cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
    const uint8_t *a;

    if (sa->sa_family == AF_INET) {
        if (c->family != AF_INET)
            return 0;
        a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        return cidr_prefix_eq(a, c->addr, c->prefix);
    }
    if (sa->sa_family != AF_INET6)
        return 0;
    a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    if (c->family == AF_INET6)
        return cidr_prefix_eq(a, c->addr, c->prefix);
    if (c->family == AF_INET && memcmp(a, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0)
        return cidr_prefix_eq(a + 12, c->addr, c->prefix);
    return 0;
}

const char *cidr_format(const struct cidr *c, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int n;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    if ((c->family != AF_INET && c->family != AF_INET6) ||
        !inet_ntop(c->family, c->addr, host, sizeof(host)))
        return buf;
    n = snprintf(buf, len, "%s/%u", host, (unsigned)c->prefix);
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0'; /* a truncated network would be misleading */
    return buf;
}
