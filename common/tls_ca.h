/* tls_ca: trust anchors for verifying upstream certificates, read once at
 * startup from a PEM bundle (e.g. /etc/ssl/certs/ca-certificates.crt) with
 * BearSSL's PEM and X.509 decoders. Immutable and shared after loading. */
#ifndef RELAY25_TLS_CA_H
#define RELAY25_TLS_CA_H

#include <stddef.h>

#include <bearssl.h>

struct tls_ca {
    br_x509_trust_anchor *anchors;
    size_t n;
    /* SHA-256 of the file as read: names this set of anchors in TLS resumption
     * keys, so a reload that changes the file never resumes a session verified
     * against the old one (and one that keeps it still can) */
    unsigned char digest[32];
};

/* Shared with tls_cert.c (PEM/DER decoding at startup): a growing byte buffer
 * usable as a BearSSL decoder destination, and a copy of a key component. */
struct tls_bytes {
    unsigned char *p;
    size_t len, cap;
    int oom; /* an allocation failed: the content is incomplete */
};
void tls__bytes_append(void *ctx, const void *data, size_t len);
unsigned char *tls__dup(const unsigned char *p, size_t len);

/* Returns NULL with a one-line reason in err ("cannot read ...", "no CA
 * certificate found in ...") on failure. */
struct tls_ca *tls_ca_load(const char *path, char *err, size_t errlen);
void tls_ca_free(struct tls_ca *ca);

#endif
