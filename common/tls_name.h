/* tls_name: the names an upstream's certificate is issued for, read from its DER
 * (RFC 5280 §4.1, §4.2.1.6 subjectAltName): dNSName and iPAddress entries. BearSSL's
 * minimal X.509 engine matches only DNS names, so tio matches iPAddress itself with
 * this, and lists the names when a certificate does not match. Pure, no I/O. */
#ifndef RELAY25_TLS_NAME_H
#define RELAY25_TLS_NAME_H

#include <stddef.h>

/* GeneralName tags (RFC 5280 §4.2.1.6) */
#define TLS_NAME_DNS 2
#define TLS_NAME_IP 7

/* Called for each dNSName / iPAddress of the subjectAltName, raw value (not
 * NUL-terminated); returning non-zero stops the walk. */
typedef int tls_name_cb(void *arg, int type, const unsigned char *v, size_t len);

/* Walks the subjectAltName of the certificate der. Returns 1 when a callback
 * stopped it, 0 at the end (also with no SAN), -1 for malformed DER. */
int tls_name_san(const unsigned char *der, size_t len, tls_name_cb *cb, void *arg);
/* 1 when an iPAddress of der is ip (4 or 16 octets), else 0. */
int tls_name_ip_match(const unsigned char *der, size_t len, const unsigned char *ip, size_t iplen);
/* "DNS:mx.example, IP:192.0.2.10" into out (always terminated; "" with none);
 * unprintable octets become '?', a list that does not fit ends in "...". */
void tls_name_list(const unsigned char *der, size_t len, char *out, size_t cap);
/* An IP literal ("192.0.2.10", "2001:db8::1", "[2001:db8::1]") as 4 or 16
 * octets: returns that length, or 0 for a host name. */
size_t tls_name_parse_ip(const char *s, unsigned char out[16]);

#endif
