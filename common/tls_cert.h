/* tls_cert: the relay's own certificate chain and private key for inbound TLS
 * (STARTTLS, RFC 3207, and implicit-TLS listeners), read once at startup from
 * PEM files with BearSSL's PEM, X.509 and key decoders. Immutable after loading. */
#ifndef RELAY25_TLS_CERT_H
#define RELAY25_TLS_CERT_H

#include <stddef.h>

#include <bearssl.h>

struct tls_cert {
    br_x509_certificate *chain; /* end-entity first, as in the file */
    size_t nchain;
    int key_type;        /* BR_KEYTYPE_RSA or BR_KEYTYPE_EC */
    int issuer_key_type; /* key type that signed the end-entity certificate (ECDH suites) */
    br_rsa_private_key rsa;
    br_ec_private_key ec;
};

/* Returns NULL with a one-line reason in err on failure ("cannot read ...",
 * "no certificate in ...", "no private key in ..."). */
struct tls_cert *tls_cert_load(const char *cert_file, const char *key_file, char *err,
                               size_t errlen);
void tls_cert_free(struct tls_cert *tc);

#endif
