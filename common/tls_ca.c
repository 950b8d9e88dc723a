/* tls_ca: reads a PEM bundle into BearSSL trust anchors (DN + public key) at
 * startup. Certificates that are not CAs become "direct trust" anchors, which
 * lets a user pin a self-signed upstream certificate. */
#include "common/tls_ca.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_CA_FILE_MAX (16u << 20) /* a CA bundle is ~200 KB; refuse absurd files */

void tls__bytes_append(void *ctx, const void *data, size_t len)
{
    struct tls_bytes *b = ctx;

    if (b->oom) {
        return;
    }
    if (b->len + len > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 1024;
        while (ncap < b->len + len) {
            ncap *= 2;
        }
        unsigned char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

unsigned char *tls__dup(const unsigned char *p, size_t len)
{
    unsigned char *d = malloc(len ? len : 1);
    if (d && p && len) {
        memcpy(d, p, len);
    }
    return d;
}

/* Decodes one DER certificate into a trust anchor; 0 or -1. */
static int tls_ca_anchor(const unsigned char *der, size_t len, br_x509_trust_anchor *ta)
{
    br_x509_decoder_context dc;
    struct tls_bytes dn = {0};
    const br_x509_pkey *pk;

    memset(ta, 0, sizeof(*ta));
    br_x509_decoder_init(&dc, tls__bytes_append, &dn);
    br_x509_decoder_push(&dc, der, len);
    pk = br_x509_decoder_get_pkey(&dc);
    if (!pk || dn.oom) {
        free(dn.p);
        return -1;
    }
    ta->dn.data = dn.p;
    ta->dn.len = dn.len;
    ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
    switch (pk->key_type) {
    case BR_KEYTYPE_RSA:
        ta->pkey.key_type = BR_KEYTYPE_RSA;
        ta->pkey.key.rsa.n = tls__dup(pk->key.rsa.n, pk->key.rsa.nlen);
        ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
        ta->pkey.key.rsa.e = tls__dup(pk->key.rsa.e, pk->key.rsa.elen);
        ta->pkey.key.rsa.elen = pk->key.rsa.elen;
        if (!ta->pkey.key.rsa.n || !ta->pkey.key.rsa.e) {
            goto fail;
        }
        return 0;
    case BR_KEYTYPE_EC:
        ta->pkey.key_type = BR_KEYTYPE_EC;
        ta->pkey.key.ec.curve = pk->key.ec.curve;
        ta->pkey.key.ec.q = tls__dup(pk->key.ec.q, pk->key.ec.qlen);
        ta->pkey.key.ec.qlen = pk->key.ec.qlen;
        if (!ta->pkey.key.ec.q) {
            goto fail;
        }
        return 0;
    default:
        break;
    }
fail:
    free(ta->dn.data);
    if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
        free(ta->pkey.key.rsa.n);
        free(ta->pkey.key.rsa.e);
    } else if (ta->pkey.key_type == BR_KEYTYPE_EC) {
        free(ta->pkey.key.ec.q);
    }
    memset(ta, 0, sizeof(*ta));
    return -1;
}

static int tls_ca_add(struct tls_ca *ca, size_t *cap, const br_x509_trust_anchor *ta)
{
    if (ca->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        br_x509_trust_anchor *na = realloc(ca->anchors, ncap * sizeof(*na));
        if (!na) {
            return -1;
        }
        ca->anchors = na;
        *cap = ncap;
    }
    ca->anchors[ca->n++] = *ta;
    return 0;
}

static unsigned char *tls_ca_read(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;

    if (!f) {
        snprintf(err, errlen, "cannot read CA file %s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            unsigned char *nb;
            cap = cap ? cap * 2 : 65536;
            if (cap > TLS_CA_FILE_MAX || !(nb = realloc(buf, cap))) {
                snprintf(err, errlen, "CA file %s is too large", path);
                goto fail;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read CA file %s: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    *len = n;
    return buf;
fail:
    fclose(f);
    free(buf);
    return NULL;
}

struct tls_ca *tls_ca_load(const char *path, char *err, size_t errlen)
{
    br_pem_decoder_context pc;
    struct tls_bytes der = {0};
    struct tls_ca *ca = NULL;
    size_t len = 0, off = 0, cap = 0;
    int inobj = 0, iscert = 0;
    unsigned char *buf = tls_ca_read(path, &len, err, errlen);

    if (!buf) {
        return NULL;
    }
    ca = calloc(1, sizeof(*ca));
    if (!ca) {
        snprintf(err, errlen, "out of memory reading %s", path);
        goto fail;
    }
    {
        br_sha256_context h;
        br_sha256_init(&h);
        br_sha256_update(&h, buf, len);
        br_sha256_out(&h, ca->digest);
    }
    br_pem_decoder_init(&pc);
    while (off < len) {
        off += br_pem_decoder_push(&pc, buf + off, len - off);
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            inobj = 1;
            iscert = strcmp(br_pem_decoder_name(&pc), "CERTIFICATE") == 0 ||
                     strcmp(br_pem_decoder_name(&pc), "X509 CERTIFICATE") == 0 ||
                     strcmp(br_pem_decoder_name(&pc), "TRUSTED CERTIFICATE") == 0;
            der.len = 0;
            br_pem_decoder_setdest(&pc, iscert ? tls__bytes_append : NULL, &der);
            break;
        case BR_PEM_END_OBJ:
            if (inobj && iscert && !der.oom) {
                br_x509_trust_anchor ta;
                /* a certificate BearSSL cannot decode is skipped, as other TLS stacks do */
                if (tls_ca_anchor(der.p, der.len, &ta) == 0 && tls_ca_add(ca, &cap, &ta) != 0) {
                    snprintf(err, errlen, "out of memory reading %s", path);
                    goto fail;
                }
            }
            inobj = 0;
            break;
        case BR_PEM_ERROR:
            snprintf(err, errlen, "CA file %s is not valid PEM", path);
            goto fail;
        default:
            break;
        }
    }
    if (ca->n == 0) {
        snprintf(err, errlen, "no usable certificate in CA file %s", path);
        goto fail;
    }
    free(der.p);
    free(buf);
    return ca;
fail:
    free(der.p);
    free(buf);
    tls_ca_free(ca);
    return NULL;
}

void tls_ca_free(struct tls_ca *ca)
{
    if (!ca) {
        return;
    }
    for (size_t i = 0; i < ca->n; i++) {
        br_x509_trust_anchor *ta = &ca->anchors[i];
        free(ta->dn.data);
        if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
            free(ta->pkey.key.rsa.n);
            free(ta->pkey.key.rsa.e);
        } else {
            free(ta->pkey.key.ec.q);
        }
    }
    free(ca->anchors);
    free(ca);
}
