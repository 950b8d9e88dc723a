/* tls_cert: reads the relay's certificate chain (PEM "CERTIFICATE" blocks, end
 * entity first) and its private key (PKCS#8, "RSA PRIVATE KEY" or "EC PRIVATE
 * KEY") for the inbound TLS server. Key material is copied into buffers this
 * module owns and wiped when freed. */
#include "common/tls_cert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls_ca.h"

#define TLS_CERT_FILE_MAX (1u << 20) /* a chain or a key is a few KB */

static unsigned char *tls_cert_read(const char *what, const char *path, size_t *len, char *err,
                                    size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0;

    if (!f) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    if (!(buf = malloc(TLS_CERT_FILE_MAX))) {
        snprintf(err, errlen, "out of memory reading %s", path);
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, TLS_CERT_FILE_MAX, f);
    if (ferror(f) || n == TLS_CERT_FILE_MAX) {
        snprintf(err, errlen, ferror(f) ? "cannot read %s %s" : "%s %s is too large", what, path);
        fclose(f);
        explicit_bzero(buf, TLS_CERT_FILE_MAX);
        free(buf);
        return NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Calls each(ctx, name, der, len) for every PEM object; 0, or -1 on bad PEM / OOM. */
static int tls_cert_pem(const unsigned char *buf, size_t len,
                        int (*each)(void *ctx, const char *name, struct tls_bytes *der), void *ctx)
{
    br_pem_decoder_context pc;
    struct tls_bytes der = {0};
    size_t off = 0;
    char name[128] = "";
    int r = 0;

    br_pem_decoder_init(&pc);
    while (off < len && r == 0) {
        off += br_pem_decoder_push(&pc, buf + off, len - off);
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            snprintf(name, sizeof(name), "%s", br_pem_decoder_name(&pc));
            der.len = 0;
            br_pem_decoder_setdest(&pc, tls__bytes_append, &der);
            break;
        case BR_PEM_END_OBJ:
            r = der.oom ? -1 : each(ctx, name, &der);
            break;
        case BR_PEM_ERROR:
            r = -1;
            break;
        default:
            break;
        }
    }
    if (der.p) {
        explicit_bzero(der.p, der.cap);
        free(der.p);
    }
    return r;
}

struct tls_cert_load {
    struct tls_cert *tc;
    size_t cap;
    int have_key;
    int bad_key;
};

static int tls_cert_on_cert(void *ctx, const char *name, struct tls_bytes *der)
{
    struct tls_cert_load *l = ctx;
    struct tls_cert *tc = l->tc;

    if (strcmp(name, "CERTIFICATE") != 0 && strcmp(name, "X509 CERTIFICATE") != 0) {
        return 0;
    }
    if (tc->nchain == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 4;
        br_x509_certificate *nc = realloc(tc->chain, ncap * sizeof(*nc));
        if (!nc) {
            return -1;
        }
        tc->chain = nc;
        l->cap = ncap;
    }
    tc->chain[tc->nchain].data = tls__dup(der->p, der->len);
    tc->chain[tc->nchain].data_len = der->len;
    if (!tc->chain[tc->nchain].data) {
        return -1;
    }
    tc->nchain++;
    return 0;
}

static int tls_cert_on_key(void *ctx, const char *name, struct tls_bytes *der)
{
    struct tls_cert_load *l = ctx;
    struct tls_cert *tc = l->tc;
    br_skey_decoder_context kd;

    if (strstr(name, "PRIVATE KEY") == NULL || l->have_key) {
        return 0;
    }
    br_skey_decoder_init(&kd);
    br_skey_decoder_push(&kd, der->p, der->len);
    switch (br_skey_decoder_key_type(&kd)) {
    case BR_KEYTYPE_RSA: {
        const br_rsa_private_key *k = br_skey_decoder_get_rsa(&kd);
        tc->key_type = BR_KEYTYPE_RSA;
        tc->rsa.n_bitlen = k->n_bitlen;
        tc->rsa.p = tls__dup(k->p, k->plen);
        tc->rsa.plen = k->plen;
        tc->rsa.q = tls__dup(k->q, k->qlen);
        tc->rsa.qlen = k->qlen;
        tc->rsa.dp = tls__dup(k->dp, k->dplen);
        tc->rsa.dplen = k->dplen;
        tc->rsa.dq = tls__dup(k->dq, k->dqlen);
        tc->rsa.dqlen = k->dqlen;
        tc->rsa.iq = tls__dup(k->iq, k->iqlen);
        tc->rsa.iqlen = k->iqlen;
        l->have_key = 1;
        if (!tc->rsa.p || !tc->rsa.q || !tc->rsa.dp || !tc->rsa.dq || !tc->rsa.iq) {
            explicit_bzero(&kd, sizeof(kd));
            return -1;
        }
        break;
    }
    case BR_KEYTYPE_EC: {
        const br_ec_private_key *k = br_skey_decoder_get_ec(&kd);
        tc->key_type = BR_KEYTYPE_EC;
        tc->ec.curve = k->curve;
        tc->ec.x = tls__dup(k->x, k->xlen);
        tc->ec.xlen = k->xlen;
        l->have_key = 1;
        if (!tc->ec.x) {
            explicit_bzero(&kd, sizeof(kd));
            return -1;
        }
        break;
    }
    default:
        l->bad_key = 1;
        break;
    }
    explicit_bzero(&kd, sizeof(kd));
    return 0;
}

/* 1 when the private key belongs to the end-entity certificate's public key. */
static int tls_cert_match(struct tls_cert *tc)
{
    br_x509_decoder_context dc;
    const br_x509_pkey *pk;
    int ok = 0;

    br_x509_decoder_init(&dc, NULL, NULL);
    br_x509_decoder_push(&dc, tc->chain[0].data, tc->chain[0].data_len);
    pk = br_x509_decoder_get_pkey(&dc);
    if (!pk || pk->key_type != tc->key_type) {
        return 0;
    }
    tc->issuer_key_type = br_x509_decoder_get_signer_key_type(&dc);
    if (tc->issuer_key_type == 0) {
        tc->issuer_key_type = tc->key_type;
    }
    if (tc->key_type == BR_KEYTYPE_EC) {
        unsigned char q[BR_EC_KBUF_PUB_MAX_SIZE];
        br_ec_public_key pub;
        size_t ql = br_ec_compute_pub(br_ec_get_default(), &pub, q, &tc->ec);
        ok = ql > 0 && pk->key.ec.curve == tc->ec.curve && ql == pk->key.ec.qlen &&
             memcmp(q, pk->key.ec.q, ql) == 0;
    } else {
        br_rsa_compute_modulus cm = br_rsa_compute_modulus_get_default();
        size_t nl = pk->key.rsa.nlen, ml = cm(NULL, &tc->rsa);
        const unsigned char *n = pk->key.rsa.n;
        unsigned char *m;
        while (nl > 0 && *n == 0) {
            n++;
            nl--;
        }
        if (ml == nl && (m = malloc(ml)) != NULL) {
            ok = cm(m, &tc->rsa) == ml && memcmp(m, n, ml) == 0;
            free(m);
        }
    }
    return ok;
}

struct tls_cert *tls_cert_load(const char *cert_file, const char *key_file, char *err,
                               size_t errlen)
{
    struct tls_cert_load l = {0};
    unsigned char *buf = NULL;
    size_t len = 0;

    if (!(l.tc = calloc(1, sizeof(*l.tc)))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!(buf = tls_cert_read("certificate file", cert_file, &len, err, errlen))) {
        goto fail;
    }
    if (tls_cert_pem(buf, len, tls_cert_on_cert, &l) != 0) {
        snprintf(err, errlen, "certificate file %s is not valid PEM", cert_file);
        goto fail;
    }
    free(buf);
    buf = NULL;
    if (l.tc->nchain == 0) {
        snprintf(err, errlen, "no certificate found in %s", cert_file);
        goto fail;
    }
    if (!(buf = tls_cert_read("key file", key_file, &len, err, errlen))) {
        goto fail;
    }
    if (tls_cert_pem(buf, len, tls_cert_on_key, &l) != 0) {
        snprintf(err, errlen, "key file %s is not valid PEM", key_file);
        goto fail;
    }
    if (!l.have_key) {
        snprintf(err, errlen, "%s in %s", l.bad_key ? "unsupported private key" : "no private key",
                 key_file);
        goto fail;
    }
    if (!tls_cert_match(l.tc)) {
        snprintf(err, errlen, "the key in %s does not belong to the certificate in %s", key_file,
                 cert_file);
        goto fail;
    }
    explicit_bzero(buf, len);
    free(buf);
    return l.tc;
fail:
    if (buf) {
        explicit_bzero(buf, len);
        free(buf);
    }
    tls_cert_free(l.tc);
    return NULL;
}

static void tls_cert_wipe(unsigned char *p, size_t len)
{
    if (p) {
        explicit_bzero(p, len);
        free(p);
    }
}

void tls_cert_free(struct tls_cert *tc)
{
    if (!tc) {
        return;
    }
    for (size_t i = 0; i < tc->nchain; i++) {
        free(tc->chain[i].data);
    }
    free(tc->chain);
    tls_cert_wipe(tc->rsa.p, tc->rsa.plen);
    tls_cert_wipe(tc->rsa.q, tc->rsa.qlen);
    tls_cert_wipe(tc->rsa.dp, tc->rsa.dplen);
    tls_cert_wipe(tc->rsa.dq, tc->rsa.dqlen);
    tls_cert_wipe(tc->rsa.iq, tc->rsa.iqlen);
    tls_cert_wipe(tc->ec.x, tc->ec.xlen);
    free(tc);
}
