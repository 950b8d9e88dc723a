/* test_cidr: network parsing (host bits cleared, bad prefixes rejected), matching
 * of IPv4, IPv6 and IPv4-mapped IPv6 peers, and formatting (common/cidr.c). */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "tests/check.h"

static struct sockaddr_storage peer(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
            fprintf(stderr, "bad test address %s\n", ip);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
            fprintf(stderr, "bad test address %s\n", ip);
    }
    return ss;
}

static int match(const char *net, const char *ip)
{
    struct cidr c;
    struct sockaddr_storage ss = peer(ip);

    if (cidr_parse(net, &c) != 0)
        return -1;
    return cidr_match(&c, (const struct sockaddr *)&ss);
}

static const char *roundtrip(const char *net, char *buf, size_t len)
{
    struct cidr c;

    if (cidr_parse(net, &c) != 0)
        return "(error)";
    return cidr_format(&c, buf, len);
}

static void test_parse(void)
{
    static const char *const bad[] = {
        "10.0.0.0/33", "1.2.3.4/",    "/8",          "1.2.3.4/a",    "",
        "1.2.3",       " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0 /8",  "10.0.0.0/ 8",
        "10.0.0.0/-1", "10.0.0.0/+8", "fd00::/129",  "fd00::/1280",  "::1/",
        "1.2.3.4/8/8", "256.0.0.0",   "1.2.3.4.5",   "fe80::1%eth0", "10.0.0.0/4294967304",
        "abc",         "1:2:3",       "::1::2",      "10.0.0.0/8x",
    };
    struct cidr c;

    ASSERT_EQ(cidr_parse("10.0.0.0/8", &c), 0);
    ASSERT_EQ(c.family, AF_INET);
    ASSERT_EQ(c.prefix, 8);
    ASSERT_MEMEQ(c.addr, 4, "\x0a\x00\x00\x00", 4);

    ASSERT_EQ(cidr_parse("192.168.1.5", &c), 0);
    ASSERT_EQ(c.family, AF_INET);
    ASSERT_EQ(c.prefix, 32);
    ASSERT_MEMEQ(c.addr, 4, "\xc0\xa8\x01\x05", 4);

    ASSERT_EQ(cidr_parse("::1", &c), 0);
    ASSERT_EQ(c.family, AF_INET6);
    ASSERT_EQ(c.prefix, 128);
    ASSERT_MEMEQ(c.addr, 16, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);

    ASSERT_EQ(cidr_parse("fd00::/8", &c), 0);
    ASSERT_EQ(c.family, AF_INET6);
    ASSERT_EQ(c.prefix, 8);
    ASSERT_EQ(c.addr[0], 0xfd);

    /* Host bits cleared. */
    ASSERT_EQ(cidr_parse("10.1.2.3/8", &c), 0);
    ASSERT_MEMEQ(c.addr, 4, "\x0a\x00\x00\x00", 4);
    ASSERT_EQ(cidr_parse("192.168.1.255/25", &c), 0);
    ASSERT_MEMEQ(c.addr, 4, "\xc0\xa8\x01\x80", 4);
    ASSERT_EQ(cidr_parse("fd12:3456:789a::1/20", &c), 0);
    ASSERT_MEMEQ(c.addr, 16, "\xfd\x12\x30\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    ASSERT_EQ(cidr_parse("1.2.3.4/0", &c), 0);
    ASSERT_EQ(c.prefix, 0);
    ASSERT_MEMEQ(c.addr, 4, "\0\0\0\0", 4);

    /* Limits. */
    ASSERT_EQ(cidr_parse("10.0.0.0/32", &c), 0);
    ASSERT_EQ(cidr_parse("::/0", &c), 0);
    ASSERT_EQ(cidr_parse("::/128", &c), 0);
    ASSERT_EQ(cidr_parse("::ffff:10.0.0.0/104", &c), 0);
    ASSERT_EQ(c.family, AF_INET6);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = cidr_parse(bad[i], &c);

        if (rc != -1)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        ASSERT_EQ(rc, -1);
    }
    /* Longer than any address. */
    ASSERT_EQ(cidr_parse("0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/8", &c), -1);
}

static void test_match(void)
{
    ASSERT_EQ(match("10.0.0.0/8", "10.200.3.4"), 1);
    ASSERT_EQ(match("10.0.0.0/8", "11.0.0.0"), 0);
    ASSERT_EQ(match("10.0.0.0/8", "9.255.255.255"), 0);
    ASSERT_EQ(match("192.168.1.0/25", "192.168.1.127"), 1);
    ASSERT_EQ(match("192.168.1.0/25", "192.168.1.128"), 0);
    ASSERT_EQ(match("192.168.1.5", "192.168.1.5"), 1);
    ASSERT_EQ(match("192.168.1.5", "192.168.1.4"), 0);
    ASSERT_EQ(match("0.0.0.0/0", "1.2.3.4"), 1);
    ASSERT_EQ(match("0.0.0.0/0", "255.255.255.255"), 1);
    ASSERT_EQ(match("10.0.0.1/31", "10.0.0.0"), 1);

    ASSERT_EQ(match("fd00::/8", "fd12::1"), 1);
    ASSERT_EQ(match("fd00::/8", "fe80::1"), 0);
    ASSERT_EQ(match("::1", "::1"), 1);
    ASSERT_EQ(match("::1", "::2"), 0);
    ASSERT_EQ(match("::/0", "2001:db8::1"), 1);
    ASSERT_EQ(match("2001:db8::/33", "2001:db8:7fff::1"), 1);
    ASSERT_EQ(match("2001:db8::/33", "2001:db8:8000::1"), 0);

    /* IPv4-mapped peers against IPv4 networks. */
    ASSERT_EQ(match("10.0.0.0/8", "::ffff:10.1.2.3"), 1);
    ASSERT_EQ(match("10.0.0.0/8", "::ffff:11.1.2.3"), 0);
    ASSERT_EQ(match("127.0.0.1", "::ffff:127.0.0.1"), 1);
    ASSERT_EQ(match("0.0.0.0/0", "::ffff:8.8.8.8"), 1);
    /* ... but not other IPv6 addresses that happen to end in the same bytes. */
    ASSERT_EQ(match("0.0.0.0/0", "::1"), 0);
    ASSERT_EQ(match("10.0.0.0/8", "::10.1.2.3"), 0);
    ASSERT_EQ(match("10.0.0.0/8", "fd00::ffff:10.1.2.3"), 0);

    /* Families do not mix otherwise; /0 matches its own family only. */
    ASSERT_EQ(match("::/0", "1.2.3.4"), 0);
    ASSERT_EQ(match("::ffff:10.0.0.0/104", "10.1.2.3"), 0);
    ASSERT_EQ(match("::ffff:10.0.0.0/104", "::ffff:10.1.2.3"), 1);

    /* Unknown family. */
    {
        struct cidr c;
        struct sockaddr sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_family = AF_UNIX;
        ASSERT_EQ(cidr_parse("0.0.0.0/0", &c), 0);
        ASSERT_EQ(cidr_match(&c, &sa), 0);
    }
}

static void test_format(void)
{
    char buf[64];
    struct cidr c;

    ASSERT_STREQ(roundtrip("10.1.2.3/8", buf, sizeof(buf)), "10.0.0.0/8");
    ASSERT_STREQ(roundtrip("192.168.1.5", buf, sizeof(buf)), "192.168.1.5/32");
    ASSERT_STREQ(roundtrip("::1", buf, sizeof(buf)), "::1/128");
    ASSERT_STREQ(roundtrip("FD00::1/8", buf, sizeof(buf)), "fd00::/8");
    ASSERT_STREQ(roundtrip("0.0.0.0/0", buf, sizeof(buf)), "0.0.0.0/0");
    /* Too small: empty, never a truncated network. */
    ASSERT_STREQ(roundtrip("10.0.0.0/8", buf, 10), "");
    ASSERT_STREQ(roundtrip("10.0.0.0/8", buf, 11), "10.0.0.0/8");
    ASSERT_TRUE(roundtrip("10.0.0.0/8", buf, 0) == buf);
    memset(&c, 0, sizeof(c));
    ASSERT_STREQ(cidr_format(&c, buf, sizeof(buf)), "");
}

int main(void)
{
    test_parse();
    test_match();
    test_format();
    return CHECK_DONE();
}
