/* tls_name: subjectAltName dNSName / iPAddress entries from a certificate's DER
 * (RFC 5280 §4.1 Certificate, §4.2.1.6 GeneralName). A minimal DER walk: only the
 * path Certificate -> tbsCertificate -> [3] extensions -> subjectAltName is read;
 * everything else is skipped by its length. Bounds are checked on every element. */
#include "common/tls_name.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

struct tls_der {
    const unsigned char *p;
    size_t len;
};

/* One TLV off the front of d: its tag and contents. -1 when it overruns d or
 * uses a form no certificate field on our path uses (high tag number, an
 * indefinite or over-long length). */
static int tls_der_next(struct tls_der *d, unsigned *tag, struct tls_der *val)
{
    size_t n, hdr = 2;

    if (d->len < 2 || (d->p[0] & 0x1f) == 0x1f) {
        return -1;
    }
    *tag = d->p[0];
    n = d->p[1];
    if (n & 0x80) {
        size_t k = n & 0x7f;
        if (k == 0 || k > 4 || d->len - 2 < k) {
            return -1;
        }
        n = 0;
        for (size_t i = 0; i < k; i++) {
            n = (n << 8) | d->p[2 + i];
        }
        hdr += k;
    }
    if (n > d->len - hdr) {
        return -1;
    }
    val->p = d->p + hdr;
    val->len = n;
    d->p += hdr + n;
    d->len -= hdr + n;
    return 0;
}

/* GeneralNames ::= SEQUENCE OF GeneralName; dNSName [2] and iPAddress [7] are
 * primitive context tags 0x82 and 0x87. */
static int tls_name_general(struct tls_der *v, tls_name_cb *cb, void *arg)
{
    struct tls_der names, gn;
    unsigned tag;

    if (tls_der_next(v, &tag, &names) < 0 || tag != 0x30) {
        return -1;
    }
    while (names.len > 0) {
        if (tls_der_next(&names, &tag, &gn) < 0) {
            return -1;
        }
        if ((tag == 0x82 || tag == 0x87) && cb(arg, (int)(tag & 0x1f), gn.p, gn.len)) {
            return 1;
        }
    }
    return 0;
}

/* Extensions ::= SEQUENCE OF Extension { extnID, critical BOOLEAN DEFAULT FALSE,
 * extnValue OCTET STRING }; subjectAltName is 2.5.29.17 (55 1d 11). */
static int tls_name_exts(struct tls_der *el, tls_name_cb *cb, void *arg)
{
    static const unsigned char san_oid[] = {0x55, 0x1d, 0x11};
    struct tls_der exts, ext, oid, v;
    unsigned tag;

    if (tls_der_next(el, &tag, &exts) < 0 || tag != 0x30) {
        return -1;
    }
    while (exts.len > 0) {
        if (tls_der_next(&exts, &tag, &ext) < 0 || tag != 0x30 ||
            tls_der_next(&ext, &tag, &oid) < 0 || tag != 0x06) {
            return -1;
        }
        if (oid.len != sizeof(san_oid) || memcmp(oid.p, san_oid, sizeof(san_oid)) != 0) {
            continue;
        }
        do {
            if (tls_der_next(&ext, &tag, &v) < 0) {
                return -1;
            }
        } while (tag == 0x01); /* critical */
        return tag == 0x04 ? tls_name_general(&v, cb, arg) : -1;
    }
    return 0;
}

int tls_name_san(const unsigned char *der, size_t len, tls_name_cb *cb, void *arg)
{
    struct tls_der d = {der, len}, cert, tbs, el;
    unsigned tag;

    if (tls_der_next(&d, &tag, &cert) < 0 || tag != 0x30 || tls_der_next(&cert, &tag, &tbs) < 0 ||
        tag != 0x30) {
        return -1;
    }
    while (tbs.len > 0) {
        if (tls_der_next(&tbs, &tag, &el) < 0) {
            return -1;
        }
        if (tag == 0xa3) { /* extensions [3] EXPLICIT, last in TBSCertificate */
            return tls_name_exts(&el, cb, arg);
        }
    }
    return 0;
}

struct tls_name_ip {
    const unsigned char *ip;
    size_t len;
};

static int tls_name_ip_cb(void *arg, int type, const unsigned char *v, size_t len)
{
    const struct tls_name_ip *want = arg;
    return type == TLS_NAME_IP && len == want->len && memcmp(v, want->ip, len) == 0;
}

int tls_name_ip_match(const unsigned char *der, size_t len, const unsigned char *ip, size_t iplen)
{
    struct tls_name_ip want = {ip, iplen};
    return tls_name_san(der, len, tls_name_ip_cb, &want) == 1;
}

struct tls_name_out {
    char *out;
    size_t cap, o;
    int full;
};

static int tls_name_list_cb(void *arg, int type, const unsigned char *v, size_t len)
{
    struct tls_name_out *l = arg;
    char e[300];
    size_t n;

    if (type == TLS_NAME_IP && (len == 4 || len == 16)) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(len == 4 ? AF_INET : AF_INET6, v, a, sizeof(a));
        snprintf(e, sizeof(e), "%sIP:%s", l->o ? ", " : "", a);
    } else if (type == TLS_NAME_IP) {
        snprintf(e, sizeof(e), "%sIP:?", l->o ? ", " : "");
    } else {
        n = (size_t)snprintf(e, sizeof(e), "%sDNS:", l->o ? ", " : "");
        for (size_t i = 0; i < len && n + 1 < sizeof(e); i++) {
            e[n++] = v[i] > 0x20 && v[i] < 0x7f ? (char)v[i] : '?'; /* logs and replies */
        }
        e[n] = '\0';
    }
    n = strlen(e);
    if (l->o + n + 4 >= l->cap) { /* keep room for "..." */
        if (l->o + 4 <= l->cap) {
            memcpy(l->out + l->o, "...", 4);
        }
        l->full = 1;
        return 1;
    }
    memcpy(l->out + l->o, e, n + 1);
    l->o += n;
    return 0;
}

void tls_name_list(const unsigned char *der, size_t len, char *out, size_t cap)
{
    struct tls_name_out l = {out, cap, 0, 0};

    if (cap == 0) {
        return;
    }
    out[0] = '\0';
    tls_name_san(der, len, tls_name_list_cb, &l);
}

size_t tls_name_parse_ip(const char *s, unsigned char out[16])
{
    char b[64];
    size_t n = strlen(s);

    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(b)) {
        return 0;
    }
    memcpy(b, s, n);
    b[n] = '\0';
    if (inet_pton(AF_INET, b, out) == 1) {
        return 4;
    }
    return inet_pton(AF_INET6, b, out) == 1 ? 16 : 0;
}
