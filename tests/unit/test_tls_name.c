/* test_tls_name: subjectAltName extraction (common/tls_name.c) on a hand-built
 * certificate skeleton (DER with dNSName, iPAddress v4/v6 and an rfc822Name), every
 * truncation of it, and IP literal parsing. */
#include "common/tls_name.h"

#include <string.h>

#include "tests/check.h"

/* Certificate { TBS { [0] v3, serial, 5 empty SEQUENCEs, [3] { basicConstraints,
 * subjectAltName (critical) { DNS:mx.example, DNS:*.example.net, IP:192.0.2.10,
 * IP:::1, email a@b } } }, sigalg, sig } */
static const unsigned char cert[] = {
    0x30, 0x6e, 0x30, 0x67, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00,
    0x30, 0x00, 0x30, 0x00, 0x30, 0x00, 0xa3, 0x53, 0x30, 0x51, 0x30, 0x09, 0x06, 0x03, 0x55, 0x1d,
    0x13, 0x04, 0x02, 0x30, 0x00, 0x30, 0x44, 0x06, 0x03, 0x55, 0x1d, 0x11, 0x01, 0x01, 0xff, 0x04,
    0x3a, 0x30, 0x38, 0x82, 0x0a, 0x6d, 0x78, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x82,
    0x0d, 0x2a, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6e, 0x65, 0x74, 0x87, 0x04,
    0xc0, 0x00, 0x02, 0x0a, 0x87, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x03, 0x61, 0x40, 0x62, 0x30, 0x00, 0x03, 0x01, 0x00};

static void test_list(void)
{
    char out[200];

    tls_name_list(cert, sizeof(cert), out, sizeof(out));
    ASSERT_STREQ(out, "DNS:mx.example, DNS:*.example.net, IP:192.0.2.10, IP:::1");
    tls_name_list(cert, sizeof(cert), out, 30); /* does not fit: cut at an entry */
    ASSERT_STREQ(out, "DNS:mx.example...");
    tls_name_list(cert, sizeof(cert), out, 1);
    ASSERT_STREQ(out, "");
}

static void test_ip_match(void)
{
    static const unsigned char v4[4] = {192, 0, 2, 10}, other[4] = {192, 0, 2, 11};
    unsigned char v6[16] = {0};

    v6[15] = 1;
    ASSERT_EQ(tls_name_ip_match(cert, sizeof(cert), v4, 4), 1);
    ASSERT_EQ(tls_name_ip_match(cert, sizeof(cert), other, 4), 0);
    ASSERT_EQ(tls_name_ip_match(cert, sizeof(cert), v6, 16), 1);
    ASSERT_EQ(tls_name_ip_match(cert, sizeof(cert), v6, 4), 0); /* length counts */
}

static int count(void *arg, int type, const unsigned char *v, size_t len)
{
    (void)type, (void)v, (void)len;
    ++*(int *)arg;
    return 0;
}

static void test_truncated(void)
{
    int n = 0;

    ASSERT_EQ(tls_name_san(cert, sizeof(cert), count, &n), 0);
    ASSERT_EQ(n, 4);
    for (size_t len = 0; len < sizeof(cert); len++) {
        unsigned char copy[sizeof(cert)];
        memcpy(copy, cert, len);
        ASSERT_EQ(tls_name_san(copy, len, count, &n), -1);
    }
}

static void test_parse_ip(void)
{
    unsigned char ip[16];

    ASSERT_EQ(tls_name_parse_ip("192.0.2.10", ip), 4);
    ASSERT_EQ(ip[0], 192);
    ASSERT_EQ(tls_name_parse_ip("2001:db8::1", ip), 16);
    ASSERT_EQ(tls_name_parse_ip("[::1]", ip), 16);
    ASSERT_EQ(ip[15], 1);
    ASSERT_EQ(tls_name_parse_ip("smtp.example.com", ip), 0);
    ASSERT_EQ(tls_name_parse_ip("192.0.2", ip), 0);
    ASSERT_EQ(tls_name_parse_ip("[]", ip), 0);
    ASSERT_EQ(tls_name_parse_ip("", ip), 0);
}

int main(void)
{
    test_list();
    test_ip_match();
    test_truncated();
    test_parse_ip();
    return CHECK_DONE();
}
