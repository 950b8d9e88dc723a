/* fuzz_tls_name: subjectAltName extraction from certificate DER (common/tls_name.h).
 * Any input is walked without reading outside it; the name list is always
 * terminated within its buffer, at any buffer size; an iPAddress that matches was
 * listed; and an IP literal parses to 4 or 16 octets that print back to itself. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls_name.h"
#include "tests/fuzz/fuzz.h"

static int count_cb(void *arg, int type, const unsigned char *v, size_t len)
{
    size_t *n = arg;
    (void)v;
    (void)len;
    FUZZ_CHECK(type == TLS_NAME_DNS || type == TLS_NAME_IP);
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *der = malloc(size ? size : 1); /* exact: an overread hits ASan */
    size_t n = 0, cap = size > 0 ? data[0] % 300 : 0;
    char *list = malloc(cap ? cap : 1);
    char text[64];
    unsigned char ip[16];
    int r;

    FUZZ_CHECK(der && list);
    memcpy(der, data, size);
    r = tls_name_san(der, size, count_cb, &n);
    FUZZ_CHECK(r == 0 || r == -1);
    if (cap > 0) {
        tls_name_list(der, size, list, cap);
        FUZZ_CHECK(memchr(list, '\0', cap) != NULL);
        FUZZ_CHECK(n > 0 || list[0] == '\0' || r < 0);
    }
    /* the first 4 or 16 bytes as an address: a match implies an IP name exists */
    if (size >= 16) {
        size_t iplen = data[1] & 1 ? 16 : 4;
        if (tls_name_ip_match(der, size, data + size - iplen, iplen)) {
            FUZZ_CHECK(n > 0);
        }
    }
    /* IP literals: what parses prints back to something that parses the same */
    if (size < sizeof(text)) {
        memcpy(text, data, size);
        text[size] = '\0';
        size_t l = tls_name_parse_ip(text, ip);
        FUZZ_CHECK(l == 0 || l == 4 || l == 16);
        if (l) {
            char back[64];
            unsigned char ip2[16];
            FUZZ_CHECK(inet_ntop(l == 4 ? AF_INET : AF_INET6, ip, back, sizeof(back)) != NULL);
            FUZZ_CHECK(tls_name_parse_ip(back, ip2) == l && memcmp(ip, ip2, l) == 0);
        }
    }
    free(list);
    free(der);
    return 0;
}
