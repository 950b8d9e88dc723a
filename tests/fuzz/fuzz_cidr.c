/* fuzz_cidr: network parsing and formatting (common/cidr.h). What parses has
 * its host bits cleared, formats to text that parses to the same network and
 * formats the same again (RFC 4632 §3.1, RFC 4291 §2.3), matches its own network
 * address (IPv4 also as IPv4-mapped IPv6, RFC 4291 §2.5.5.2), and formats into a
 * too-small buffer as "" rather than a misleading prefix. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cidr.h"
#include "tests/fuzz/fuzz.h"

#define TEXT_MAX 128 /* longer input is not an address either; keep runs fast */
#define FMT_MAX 64   /* INET6_ADDRSTRLEN + "/128" */

static int same_cidr(const struct cidr *a, const struct cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static int peer_matches(const struct cidr *c, const uint8_t *addr, int family, int mapped)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        sin6->sin6_family = AF_INET6;
        if (mapped) {
            sin6->sin6_addr.s6_addr[10] = 0xff;
            sin6->sin6_addr.s6_addr[11] = 0xff;
            memcpy(sin6->sin6_addr.s6_addr + 12, addr, 4);
        } else {
            memcpy(sin6->sin6_addr.s6_addr, addr, 16);
        }
    }
    return cidr_match(c, (const struct sockaddr *)&ss);
}

static void check_network(const struct cidr *c, const uint8_t *data, size_t size)
{
    unsigned max = c->family == AF_INET ? 32 : 128;
    size_t alen = max / 8;
    uint8_t a[16];

    FUZZ_CHECK(c->family == AF_INET || c->family == AF_INET6);
    FUZZ_CHECK(c->prefix <= max);
    /* Host bits are zero. */
    for (unsigned bit = c->prefix; bit < max; bit++)
        FUZZ_CHECK((c->addr[bit / 8] & (0x80u >> (bit % 8))) == 0);

    /* The network address lies in the network, in its own family. */
    FUZZ_CHECK(peer_matches(c, c->addr, c->family, 0));
    if (c->family == AF_INET) {
        FUZZ_CHECK(peer_matches(c, c->addr, AF_INET6, 1));
    } else {
        uint8_t v4[4];

        memcpy(v4, c->addr, 4);
        FUZZ_CHECK(!peer_matches(c, v4, AF_INET, 0));
    }

    /* Flipping one bit: inside the prefix leaves the network, after it stays. */
    memcpy(a, c->addr, alen);
    if (size > 0) {
        unsigned bit = data[size - 1] % max;

        a[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
        FUZZ_CHECK(peer_matches(c, a, c->family, 0) == (bit >= c->prefix));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size < TEXT_MAX ? size : TEXT_MAX;
    char *s = malloc(n + 1); /* exact: a read past the NUL hits ASan */
    struct cidr c, c2;
    char *buf, *buf2;
    size_t flen;

    FUZZ_CHECK(s != NULL);
    memcpy(s, data, n);
    s[n] = '\0';
    memset(&c, 0x5a, sizeof(c));
    if (cidr_parse(s, &c) != 0) {
        /* A failed parse leaves *out alone. */
        for (size_t i = 0; i < sizeof(c); i++)
            FUZZ_CHECK(((unsigned char *)&c)[i] == 0x5a);
        free(s);
        return 0;
    }
    /* No blanks around it, and nothing after an embedded NUL counts. */
    FUZZ_CHECK(strlen(s) > 0 && s[0] != ' ' && s[strlen(s) - 1] != ' ');
    check_network(&c, data, size);

    buf = malloc(FMT_MAX);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(cidr_format(&c, buf, FMT_MAX) == buf);
    flen = strlen(buf);
    FUZZ_CHECK(flen > 0 && flen < FMT_MAX && strchr(buf, '/') != NULL);
    memset(&c2, 0, sizeof(c2));
    FUZZ_CHECK(cidr_parse(buf, &c2) == 0);
    FUZZ_CHECK(same_cidr(&c, &c2));

    /* Canonical: formatting again gives the same text, at any large-enough size;
     * a too-small buffer gives "" (exact-size blocks: overruns hit ASan). */
    for (size_t len = 0; len <= flen + 1; len++) {
        buf2 = malloc(len ? len : 1);
        FUZZ_CHECK(buf2 != NULL);
        FUZZ_CHECK(cidr_format(&c2, buf2, len) == buf2);
        if (len == flen + 1)
            FUZZ_CHECK(strcmp(buf2, buf) == 0);
        else if (len > 0)
            FUZZ_CHECK(buf2[0] == '\0');
        free(buf2);
    }
    free(buf);
    free(s);
    return 0;
}
