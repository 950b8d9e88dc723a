/* cidr: IPv4/IPv6 networks ("192.168.1.0/24", "fd00::50", "10.0.0.1")
 * and matching of peer addresses, IPv4-mapped IPv6 included. */
#ifndef RELAY25_CIDR_H
#define RELAY25_CIDR_H

#include <stdint.h>
#include <sys/socket.h>

struct cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network, host bits cleared; 4 bytes used for AF_INET */
    uint8_t prefix;   /* 0..32 or 0..128; a bare address is /32 or /128 */
};

/* Parse one network. Surrounding blanks are not accepted (the caller splits lists).
 * Returns 0, or -1 if s is not an address, the prefix is out of range or not a number. */
int cidr_parse(const char *s, struct cidr *out);
/* 1 when sa (AF_INET, AF_INET6, or ::ffff:a.b.c.d against an IPv4 network) lies in c. */
int cidr_match(const struct cidr *c, const struct sockaddr *sa);
/* "192.168.1.0/24" into buf; returns buf. */
const char *cidr_format(const struct cidr *c, char *buf, size_t len);

#endif
