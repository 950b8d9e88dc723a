/* prx_proxy: PROXY protocol header parser, v1 text line (haproxy
 * doc/proxy-protocol.txt §2.1) and v2 binary block with TLVs (§2.2). It judges the
 * bytes seen so far, so a bad header is refused at its first impossible byte
 * (§2.1: "abort the connection as soon as possible"), not at the read timeout. */
#include "proxy/prx_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN 6
#define V1_ADDR_MAX 45 /* INET6_ADDRSTRLEN - 1: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" */
#define V1_PORT_MAX 5  /* "65535" */

#define V2_SIG_LEN 12
#define V2_HDR_LEN 16       /* signature, ver_cmd, fam, 2-byte length */
#define V2_CMD_LOCAL 0x20   /* version 2, LOCAL */
#define V2_CMD_PROXY 0x21   /* version 2, PROXY */
#define V2_FAM_TCP4 0x11    /* AF_INET, STREAM */
#define V2_FAM_TCP6 0x21    /* AF_INET6, STREAM */
#define V2_ADDR_LEN_TCP4 12 /* 2*4 + 2*2 */
#define V2_ADDR_LEN_TCP6 36 /* 2*16 + 2*2 */
#define V2_TLV_HDR_LEN 3    /* type, length_hi, length_lo */

enum v1_field { V1_SRC, V1_DST, V1_SPORT, V1_DPORT, V1_NFIELDS };

static const unsigned char v2_sig[V2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char *const v1_protos[] = {"TCP4", "TCP6", "UNKNOWN"};

static int parse_v1(const unsigned char *p, size_t len, size_t *consumed,
                    struct prx_proxy_result *out);
static int parse_v1_line(const unsigned char *p, size_t n, int complete,
                         struct prx_proxy_result *res);
static int v1_port(const unsigned char *s, size_t n, int partial, uint16_t *port);
static int v1_addr(const unsigned char *s, size_t n, int family, int partial, void *addr);
static int v1_ipv4_chars(const unsigned char *s, size_t n, int partial);
static int v1_ipv6_chars(const unsigned char *s, size_t n);
static int parse_v2(const unsigned char *p, size_t len, size_t *consumed,
                    struct prx_proxy_result *out);
static void set_addr(struct sockaddr_storage *ss, int family, const void *addr,
                     const void *port_be);

int prx_proxy_parse(const char *data, size_t len, size_t *consumed, struct prx_proxy_result *out)
{
    const unsigned char *p = (const unsigned char *)data;

    if (len == 0)
        return PRX_PROXY_MORE;
    /* §2.2: "PROXY" selects v1, the signature (starting with CR) v2; anything
     * else is not this protocol and the connection must be dropped. */
    if (p[0] == 'P')
        return parse_v1(p, len, consumed, out);
    if (p[0] == v2_sig[0])
        return parse_v2(p, len, consumed, out);
    return PRX_PROXY_ERR;
}

static int parse_v1(const unsigned char *p, size_t len, size_t *consumed,
                    struct prx_proxy_result *out)
{
    struct prx_proxy_result res;
    size_t n = len < PRX_PROXY_V1_MAX ? len : PRX_PROXY_V1_MAX;
    int st;

    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\r' || p[i + 1] != '\n')
            continue;
        st = parse_v1_line(p, i, 1, &res);
        if (st == PRX_PROXY_DONE) {
            *consumed = i + 2;
            *out = res;
        }
        return st;
    }
    /* §2.1: no CRLF within the first 107 characters declares the line invalid */
    if (len >= PRX_PROXY_V1_MAX)
        return PRX_PROXY_ERR;
    /* A trailing CR can only be followed by LF, so the line must already be whole
     * (§2.1: a single CR or LF never ends it). */
    if (p[n - 1] == '\r')
        return parse_v1_line(p, n - 1, 1, &res) == PRX_PROXY_DONE ? PRX_PROXY_MORE : PRX_PROXY_ERR;
    return parse_v1_line(p, n, 0, &res);
}

/* p[0..n) is a whole line without its CRLF (complete) or all bytes received so far,
 * whose last field may be cut short. Returns DONE only when complete, MORE only
 * when not. Every check on a partial field is a relaxation of the check on the
 * whole field, so feeding the bytes one at a time gives the same final answer. */
static int parse_v1_line(const unsigned char *p, size_t n, int complete,
                         struct prx_proxy_result *res)
{
    const unsigned char *tok;
    size_t pos, end, toklen;
    unsigned char addr[2][sizeof(struct in6_addr)];
    uint16_t port[2];
    int family;

    if (memcmp(p, V1_PREFIX, n < V1_PREFIX_LEN ? n : V1_PREFIX_LEN) != 0)
        return PRX_PROXY_ERR;
    if (n < V1_PREFIX_LEN)
        return complete ? PRX_PROXY_ERR : PRX_PROXY_MORE;

    pos = V1_PREFIX_LEN;
    tok = p + pos;
    end = pos;
    while (end < n && p[end] != ' ')
        end++;
    toklen = end - pos;
    if (end == n && !complete) {
        for (size_t i = 0; i < sizeof(v1_protos) / sizeof(v1_protos[0]); i++)
            if (toklen <= strlen(v1_protos[i]) && memcmp(tok, v1_protos[i], toklen) == 0)
                return PRX_PROXY_MORE;
        return PRX_PROXY_ERR;
    }
    if (toklen == 7 && memcmp(tok, "UNKNOWN", 7) == 0) {
        /* §2.1: the receiver must ignore anything presented before the CRLF */
        if (!complete)
            return PRX_PROXY_MORE;
        memset(res, 0, sizeof(*res));
        res->local = 1;
        res->src.ss_family = AF_UNSPEC;
        res->dst.ss_family = AF_UNSPEC;
        return PRX_PROXY_DONE;
    }
    if (toklen == 4 && memcmp(tok, "TCP4", 4) == 0)
        family = AF_INET;
    else if (toklen == 4 && memcmp(tok, "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return PRX_PROXY_ERR;
    if (end == n)
        return PRX_PROXY_ERR; /* complete line "PROXY TCP4" */

    /* §2.1: exactly one space before each field, CRLF right after the last */
    for (int f = V1_SRC; f < V1_NFIELDS; f++) {
        int partial, rc;

        pos = end + 1;
        end = pos;
        while (end < n && p[end] != ' ')
            end++;
        partial = end == n && !complete;
        if (f == V1_DPORT && end < n)
            return PRX_PROXY_ERR;
        if (f != V1_DPORT && end == n && complete)
            return PRX_PROXY_ERR;
        if (f == V1_SRC || f == V1_DST)
            rc = v1_addr(p + pos, end - pos, family, partial, addr[f - V1_SRC]);
        else
            rc = v1_port(p + pos, end - pos, partial, &port[f - V1_SPORT]);
        if (rc < 0)
            return PRX_PROXY_ERR;
        if (partial)
            return PRX_PROXY_MORE;
    }

    memset(res, 0, sizeof(*res));
    port[0] = htons(port[0]);
    port[1] = htons(port[1]);
    set_addr(&res->src, family, addr[0], &port[0]);
    set_addr(&res->dst, family, addr[1], &port[1]);
    return PRX_PROXY_DONE;
}

/* §2.1: decimal 0..65535, no heading zeroes. A partial field only has to be able
 * to become one. */
static int v1_port(const unsigned char *s, size_t n, int partial, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0)
        return partial ? 0 : -1;
    if (n > V1_PORT_MAX || (s[0] == '0' && n > 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    if (!partial)
        *port = (uint16_t)v;
    return 0;
}

/* The character checks are exact for IPv4 and necessary conditions for IPv6; a
 * whole field must also satisfy inet_pton(), so libc quirks can only make it
 * stricter, never let a prefix be refused that a complete field would pass. */
static int v1_addr(const unsigned char *s, size_t n, int family, int partial, void *addr)
{
    char buf[V1_ADDR_MAX + 1];

    if (family == AF_INET ? v1_ipv4_chars(s, n, partial) < 0 : v1_ipv6_chars(s, n) < 0)
        return -1;
    if (partial)
        return 0;
    if (n == 0 || n > V1_ADDR_MAX)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(family, buf, addr) == 1 ? 0 : -1;
}

/* §2.1: exactly 4 decimal integers 0..255 separated by single dots, no heading
 * zeroes (they could be read as octal). */
static int v1_ipv4_chars(const unsigned char *s, size_t n, int partial)
{
    unsigned dots = 0, digits = 0, v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (digits == 0 || ++dots > 3)
                return -1;
            digits = 0;
            v = 0;
        } else if (s[i] >= '0' && s[i] <= '9') {
            if (digits == 1 && v == 0)
                return -1;
            v = v * 10 + (unsigned)(s[i] - '0');
            digits++;
            if (v > 255)
                return -1;
        } else {
            return -1;
        }
    }
    if (!partial && (dots != 3 || digits == 0))
        return -1;
    return 0;
}

/* Hex groups of at most 4 digits, at most one "::" (so never ":::"), and an
 * optional dotted IPv4 tail; the full grammar is left to inet_pton(). */
static int v1_ipv6_chars(const unsigned char *s, size_t n)
{
    size_t run = 0, dcolons = 0;

    if (n > V1_ADDR_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];

        if (c == ':') {
            if (i > 0 && s[i - 1] == ':' && ++dcolons > 1)
                return -1;
            run = 0;
        } else if (c == '.') {
            run = 0;
        } else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            if (++run > 4)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int parse_v2(const unsigned char *p, size_t len, size_t *consumed,
                    struct prx_proxy_result *out)
{
    struct prx_proxy_result res;
    size_t total, off, alen;
    unsigned char cmd, fam;

    if (memcmp(p, v2_sig, len < V2_SIG_LEN ? len : V2_SIG_LEN) != 0)
        return PRX_PROXY_ERR;
    if (len <= V2_SIG_LEN)
        return PRX_PROXY_MORE;
    /* §2.2: version must be 2; commands other than LOCAL and PROXY are dropped */
    cmd = p[12];
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return PRX_PROXY_ERR;
    if (len <= 13)
        return PRX_PROXY_MORE;
    /* §2.2: LOCAL ignores the family. For PROXY, UNSPEC, UDP and UNIX may be refused
     * rather than falling back to the socket address, and we do: that address is
     * the proxy's own, and access rules keyed on client addresses must not see it. */
    fam = p[13];
    if (cmd == V2_CMD_PROXY && fam != V2_FAM_TCP4 && fam != V2_FAM_TCP6)
        return PRX_PROXY_ERR;
    if (len < V2_HDR_LEN)
        return PRX_PROXY_MORE;
    total = V2_HDR_LEN + ((size_t)p[14] << 8 | p[15]);
    if (total > PRX_PROXY_MAX)
        return PRX_PROXY_ERR;

    memset(&res, 0, sizeof(res));
    if (cmd == V2_CMD_LOCAL) {
        /* §2.2: the length is honoured even for LOCAL, the block is discarded */
        if (len < total)
            return PRX_PROXY_MORE;
        res.local = 1;
        res.src.ss_family = AF_UNSPEC;
        res.dst.ss_family = AF_UNSPEC;
        *consumed = total;
        *out = res;
        return PRX_PROXY_DONE;
    }

    alen = fam == V2_FAM_TCP4 ? V2_ADDR_LEN_TCP4 : V2_ADDR_LEN_TCP6;
    if (total < V2_HDR_LEN + alen)
        return PRX_PROXY_ERR;
    /* TLVs are skipped, but their framing must tile the rest of the block exactly;
     * it is checked as the bytes arrive. */
    off = V2_HDR_LEN + alen;
    while (off < total) {
        if (total - off < V2_TLV_HDR_LEN)
            return PRX_PROXY_ERR;
        if (len < off + V2_TLV_HDR_LEN)
            return PRX_PROXY_MORE;
        off += V2_TLV_HDR_LEN + ((size_t)p[off + 1] << 8 | p[off + 2]);
    }
    if (off > total)
        return PRX_PROXY_ERR;
    if (len < total)
        return PRX_PROXY_MORE;

    /* §2.2: src addr, dst addr, src port, dst port, all in network order */
    if (fam == V2_FAM_TCP4) {
        set_addr(&res.src, AF_INET, p + 16, p + 24);
        set_addr(&res.dst, AF_INET, p + 20, p + 26);
    } else {
        set_addr(&res.src, AF_INET6, p + 16, p + 48);
        set_addr(&res.dst, AF_INET6, p + 32, p + 50);
    }
    *consumed = total;
    *out = res;
    return PRX_PROXY_DONE;
}

/* addr and port_be are in network order, as on the wire in v2 */
static void set_addr(struct sockaddr_storage *ss, int family, const void *addr, const void *port_be)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in sin;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, addr, sizeof(sin.sin_addr));
        memcpy(&sin.sin_port, port_be, sizeof(sin.sin_port));
        memcpy(ss, &sin, sizeof(sin));
    } else {
        struct sockaddr_in6 sin6;

        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        memcpy(&sin6.sin6_addr, addr, sizeof(sin6.sin6_addr));
        memcpy(&sin6.sin6_port, port_be, sizeof(sin6.sin6_port));
        memcpy(ss, &sin6, sizeof(sin6));
    }
}
