/* test_prx_proxy: PROXY protocol header parser (proxy/prx_proxy.c): v1 TCP4, TCP6 and
 * UNKNOWN lines, v2 PROXY (with and without TLVs) and LOCAL blocks, MORE for every
 * prefix of a valid header, ERR at the first impossible byte, and no bytes
 * consumed past the header. */
#include "proxy/prx_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "tests/check.h"

#define SMTP_TAIL "EHLO client.example\r\n"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int parse(const void *data, size_t len, size_t *consumed, struct prx_proxy_result *out)
{
    return prx_proxy_parse((const char *)data, len, consumed, out);
}

/* "192.0.2.1:25" for an AF_INET or AF_INET6 address, "unspec" otherwise */
static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;

    if (ss->ss_family == AF_INET) {
        struct sockaddr_in sin;

        memcpy(&sin, ss, sizeof(sin));
        inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
        port = ntohs(sin.sin_port);
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, ss, sizeof(sin6));
        inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
        port = ntohs(sin6.sin6_port);
    } else {
        return "unspec";
    }
    if ((size_t)snprintf(buf, len, "%s:%u", ip, port) >= len)
        return "truncated";
    return buf;
}

/* Every proper prefix is MORE, the header alone is DONE, and with SMTP bytes after
 * it only the header is consumed. Returns the DONE result in out. */
static void expect_done(const void *hdr, size_t hlen, struct prx_proxy_result *out)
{
    unsigned char buf[PRX_PROXY_MAX + sizeof(SMTP_TAIL)];
    struct prx_proxy_result res;
    size_t consumed, more = 0;

    for (size_t i = 0; i < hlen; i++) {
        consumed = 999;
        if (parse(hdr, i, &consumed, &res) == PRX_PROXY_MORE && consumed == 999)
            more++;
    }
    ASSERT_EQ(more, hlen);
    consumed = 0;
    ASSERT_EQ(parse(hdr, hlen, &consumed, out), PRX_PROXY_DONE);
    ASSERT_EQ(consumed, hlen);

    memcpy(buf, hdr, hlen);
    memcpy(buf + hlen, SMTP_TAIL, sizeof(SMTP_TAIL) - 1);
    consumed = 0;
    ASSERT_EQ(parse(buf, hlen + sizeof(SMTP_TAIL) - 1, &consumed, &res), PRX_PROXY_DONE);
    ASSERT_EQ(consumed, hlen);
    ASSERT_MEMEQ(&res, sizeof(res), out, sizeof(*out));
}

static void expect_addrs(const struct prx_proxy_result *r, const char *src, const char *dst)
{
    char a[80], b[80];

    ASSERT_EQ(r->local, 0);
    ASSERT_STREQ(fmt(&r->src, a, sizeof(a)), src);
    ASSERT_STREQ(fmt(&r->dst, b, sizeof(b)), dst);
}

static void expect_local(const struct prx_proxy_result *r)
{
    ASSERT_EQ(r->local, 1);
    ASSERT_EQ(r->src.ss_family, AF_UNSPEC);
    ASSERT_EQ(r->dst.ss_family, AF_UNSPEC);
}

/* ERR for the whole string and for the shortest prefix that shows it; MORE
 * before that. out and consumed stay untouched. */
static void expect_err_at(const void *data, size_t len, size_t at)
{
    struct prx_proxy_result res;
    size_t consumed = 999;

    memset(&res, 0xA5, sizeof(res));
    ASSERT_EQ(parse(data, len, &consumed, &res), PRX_PROXY_ERR);
    ASSERT_EQ(parse(data, at, &consumed, &res), PRX_PROXY_ERR);
    if (at > 0)
        ASSERT_EQ(parse(data, at - 1, &consumed, &res), PRX_PROXY_MORE);
    ASSERT_EQ(consumed, 999);
    ASSERT_EQ(res.local, (int)0xA5A5A5A5);
}

static void expect_v1_err(const char *line)
{
    struct prx_proxy_result res;
    size_t consumed = 999;
    int st = parse(line, strlen(line), &consumed, &res);

    if (st != PRX_PROXY_ERR)
        fprintf(stderr, "accepted: \"%s\"\n", line);
    ASSERT_EQ(st, PRX_PROXY_ERR);
    ASSERT_EQ(consumed, 999);
}

static size_t v2_build(unsigned char *buf, unsigned char cmd, unsigned char fam, const void *body,
                       size_t blen)
{
    memcpy(buf, sig, sizeof(sig));
    buf[12] = cmd;
    buf[13] = fam;
    buf[14] = (unsigned char)(blen >> 8);
    buf[15] = (unsigned char)blen;
    if (blen)
        memcpy(buf + 16, body, blen);
    return 16 + blen;
}

static void test_v1_valid(void)
{
    static const char tcp4[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    static const char tcp4_max[] = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    static const char tcp6[] = "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.7 0 25\r\n";
    static const char tcp6_max[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                   "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n";
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    static const char unknown_max[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    static const char unknown_junk[] = "PROXY UNKNOWN whatever \x01\r\x7f goes\r\n";
    struct prx_proxy_result r;

    expect_done(tcp4, strlen(tcp4), &r);
    expect_addrs(&r, "192.168.0.1:56324", "192.168.0.11:443");
    expect_done(tcp4_max, strlen(tcp4_max), &r);
    ASSERT_EQ(strlen(tcp4_max), 56);
    expect_addrs(&r, "255.255.255.255:65535", "255.255.255.255:65535");
    expect_done("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", 33, &r);
    expect_addrs(&r, "0.0.0.0:0", "10.0.0.1:0");

    expect_done(tcp6, strlen(tcp6), &r);
    expect_addrs(&r, "2001:db8::1:0", "::ffff:192.0.2.7:25");
    ASSERT_EQ(strlen(tcp6_max), 104);
    expect_done(tcp6_max, strlen(tcp6_max), &r);
    expect_addrs(&r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:65535",
                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:65535");

    expect_done(unknown, strlen(unknown), &r);
    expect_local(&r);
    ASSERT_EQ(strlen(unknown_max), PRX_PROXY_V1_MAX);
    expect_done(unknown_max, strlen(unknown_max), &r);
    expect_local(&r);
    expect_done(unknown_junk, strlen(unknown_junk), &r);
    expect_local(&r);
}

static void test_v1_invalid(void)
{
    static const char *const bad[] = {
        /* framing */
        "PROXY\r\n",
        "PROXY \r\n",
        "PROXY TCP4\r\n",
        "PROXY TCP4 \r\n",
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
        "PROXY TCP4 1.2.3.4\r\n",
        "PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY UNKNOWN\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        /* ports */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 0x19 2\r\n",
        /* IPv4 */
        "PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n",
        "PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n",
        "PROXY TCP4 1.2.3.1000 5.6.7.8 1 2\r\n",
        "PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
        /* wrong family */
        "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2\r\n",
        "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        "PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
        /* IPv6 */
        "PROXY TCP6 ::1:: ::1 1 2\r\n",
        "PROXY TCP6 ::: ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
        "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
        "PROXY TCP6 12345::1 ::1 1 2\r\n",
        "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "PROXY TCP6 [::1] ::1 1 2\r\n",
        "PROXY TCP6 g::1 ::1 1 2\r\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_v1_err(bad[i]);
}

static void test_v1_err_early(void)
{
    static const char junk[] = "EHLO client.example\r\n";
    static const char port[] = "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n";
    static const char lead0[] = "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n";
    static const char fam[] = "PROXY TCP4 ::1 5.6.7.8 1 2\r\n";
    static const char v6[] = "PROXY TCP6 ::1 1.2.3.4 1 2\r\n";
    static const char lf[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n";
    static const char cr[] = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX";
    static const char short_cr[] = "PROXY TCP4 1.2.3.4\r\n";
    static const char unknown[] = "PROXY UNKNOWN\n";
    char line[PRX_PROXY_V1_MAX + 8];
    struct prx_proxy_result r;
    size_t consumed;

    /* anything not starting with 'P' or CR is refused at once */
    expect_err_at(junk, strlen(junk), 1);
    expect_err_at("\x16\x03\x01", 3, 1);
    expect_err_at("PROXX", 5, 5);
    expect_err_at(port, strlen(port), 32);
    expect_err_at(lead0, strlen(lead0), 29);
    expect_err_at(fam, strlen(fam), 12);
    /* v4 tail in a TCP6 address is fine, but "1.2.3.4" alone is not IPv6 */
    expect_err_at(v6, strlen(v6), 23);
    expect_err_at(lf, strlen(lf), strlen(lf));
    expect_err_at(cr, strlen(cr), strlen(cr));
    /* a CR can only end the line, so "PROXY TCP4 1.2.3.4\r" is already wrong */
    expect_err_at(short_cr, strlen(short_cr), 19);
    expect_err_at(unknown, strlen(unknown), strlen(unknown));

    /* §2.1: CRLF must come within 107 bytes */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    expect_err_at(line, PRX_PROXY_V1_MAX, PRX_PROXY_V1_MAX);
    memcpy(line + PRX_PROXY_V1_MAX - 2, "\r\n", 2);
    expect_done(line, PRX_PROXY_V1_MAX, &r);
    expect_local(&r);
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PRX_PROXY_V1_MAX - 1, "\r\n", 2);
    ASSERT_EQ(parse(line, PRX_PROXY_V1_MAX - 1, &consumed, &r), PRX_PROXY_MORE);
    ASSERT_EQ(parse(line, PRX_PROXY_V1_MAX, &consumed, &r), PRX_PROXY_ERR);
    ASSERT_EQ(parse(line, PRX_PROXY_V1_MAX + 1, &consumed, &r), PRX_PROXY_ERR);
}

static void test_v2_valid(void)
{
    static const unsigned char ip4[12] = {192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb};
    unsigned char ip6[36];
    unsigned char body[PRX_PROXY_MAX], hdr[PRX_PROXY_MAX];
    struct prx_proxy_result r;
    size_t n;

    n = v2_build(hdr, 0x21, 0x11, ip4, sizeof(ip4));
    ASSERT_EQ(n, 28);
    expect_done(hdr, n, &r);
    expect_addrs(&r, "192.168.0.1:56324", "192.168.0.11:443");

    /* TLVs: ALPN "smtp", an empty NOOP, an SSL block with a sub-TLV */
    memcpy(body, ip4, sizeof(ip4));
    memcpy(body + 12,
           "\x01\x00\x04smtp\x04\x00\x00\x20\x00\x0b\x01\x00\x00\x00\x00\x21\x00\x03"
           "1.2",
           4 + 3 + 3 + 3 + 11);
    n = v2_build(hdr, 0x21, 0x11, body, 12 + 24);
    expect_done(hdr, n, &r);
    expect_addrs(&r, "192.168.0.1:56324", "192.168.0.11:443");

    inet_pton(AF_INET6, "2001:db8::1", ip6);
    inet_pton(AF_INET6, "2001:db8::25", ip6 + 16);
    memcpy(ip6 + 32, "\x30\x39\x02\x4b", 4);
    n = v2_build(hdr, 0x21, 0x21, ip6, sizeof(ip6));
    ASSERT_EQ(n, 52);
    expect_done(hdr, n, &r);
    expect_addrs(&r, "2001:db8::1:12345", "2001:db8::25:587");

    memcpy(body, ip6, sizeof(ip6));
    memcpy(body + 36, "\x05\x00\x02id", 5);
    n = v2_build(hdr, 0x21, 0x21, body, 36 + 5);
    expect_done(hdr, n, &r);
    expect_addrs(&r, "2001:db8::1:12345", "2001:db8::25:587");

    /* largest accepted: TCP4 + one NOOP TLV padding to PRX_PROXY_MAX */
    memset(body, 0, sizeof(body));
    memcpy(body, ip4, sizeof(ip4));
    body[12] = 0x04;
    body[13] = (PRX_PROXY_MAX - 16 - 12 - 3) >> 8;
    body[14] = (PRX_PROXY_MAX - 16 - 12 - 3) & 0xff;
    n = v2_build(hdr, 0x21, 0x11, body, PRX_PROXY_MAX - 16);
    ASSERT_EQ(n, PRX_PROXY_MAX);
    expect_done(hdr, n, &r);
    expect_addrs(&r, "192.168.0.1:56324", "192.168.0.11:443");
}

static void test_v2_local(void)
{
    unsigned char hdr[64];
    struct prx_proxy_result r;
    size_t n;

    n = v2_build(hdr, 0x20, 0x00, NULL, 0);
    expect_done(hdr, n, &r);
    expect_local(&r);
    /* §2.2: the length is honoured and the family ignored for LOCAL */
    n = v2_build(hdr, 0x20, 0x11, "\x7f\x00\x00\x01\x7f\x00\x00\x01\x00\x01\x00\x02", 12);
    expect_done(hdr, n, &r);
    expect_local(&r);
    n = v2_build(hdr, 0x20, 0xff, "abc", 3);
    expect_done(hdr, n, &r);
    expect_local(&r);
}

static void test_v2_invalid(void)
{
    static const unsigned char ip4[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2};
    unsigned char hdr[PRX_PROXY_MAX + 16], body[64];
    size_t n;

    /* every corrupted signature byte is refused as soon as it arrives */
    for (size_t i = 1; i < 12; i++) {
        n = v2_build(hdr, 0x21, 0x11, ip4, sizeof(ip4));
        hdr[i] ^= 0x20;
        expect_err_at(hdr, n, i + 1);
    }
    /* version other than 2, unknown commands */
    n = v2_build(hdr, 0x11, 0x11, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 13);
    n = v2_build(hdr, 0x31, 0x11, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 13);
    n = v2_build(hdr, 0x22, 0x11, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 13);
    n = v2_build(hdr, 0x2f, 0x11, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 13);
    /* PROXY is only accepted for TCP over IPv4/IPv6: not UDP, UNIX, UNSPEC */
    n = v2_build(hdr, 0x21, 0x12, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 14);
    n = v2_build(hdr, 0x21, 0x22, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 14);
    n = v2_build(hdr, 0x21, 0x31, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 14);
    n = v2_build(hdr, 0x21, 0x00, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 14);
    n = v2_build(hdr, 0x21, 0x41, ip4, sizeof(ip4));
    expect_err_at(hdr, n, 14);
    /* address block shorter than the family needs */
    n = v2_build(hdr, 0x21, 0x11, ip4, 11);
    expect_err_at(hdr, n, 16);
    n = v2_build(hdr, 0x21, 0x21, ip4, 12);
    expect_err_at(hdr, n, 16);
    n = v2_build(hdr, 0x21, 0x21, NULL, 0);
    expect_err_at(hdr, n, 16);
    /* above PRX_PROXY_MAX: refused from the length field alone */
    n = v2_build(hdr, 0x21, 0x11, ip4, sizeof(ip4));
    hdr[14] = (PRX_PROXY_MAX - 16 + 1) >> 8;
    hdr[15] = (PRX_PROXY_MAX - 16 + 1) & 0xff;
    expect_err_at(hdr, 16, 16);
    hdr[14] = 0xff;
    hdr[15] = 0xff;
    expect_err_at(hdr, 16, 16);
    n = v2_build(hdr, 0x20, 0x00, NULL, 0);
    hdr[14] = 0x10;
    expect_err_at(hdr, 16, 16);
    /* TLV framing: a value running past the block, a 1- or 2-byte leftover */
    memcpy(body, ip4, sizeof(ip4));
    memcpy(body + 12, "\x01\x00\x05smtp", 7);
    n = v2_build(hdr, 0x21, 0x11, body, 19);
    expect_err_at(hdr, n, 16 + 15);
    memcpy(body + 12, "\x04", 1);
    n = v2_build(hdr, 0x21, 0x11, body, 13);
    expect_err_at(hdr, n, 16);
    memcpy(body + 12, "\x04\x00\x00\x04\x00", 5);
    n = v2_build(hdr, 0x21, 0x11, body, 17);
    expect_err_at(hdr, n, 16 + 15);
}

int main(void)
{
    test_v1_valid();
    test_v1_invalid();
    test_v1_err_early();
    test_v2_valid();
    test_v2_local();
    test_v2_invalid();
    return CHECK_DONE();
}
