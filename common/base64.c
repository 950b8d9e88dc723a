/* base64: RFC 4648 §4 encoding and strict decoding, with a streaming encoder so
 * a message made of parts (SASL PLAIN, CRAM-MD5) is encoded without a cleartext
 * copy of the whole. Pure functions; the stream wipes what it held. */
#include "common/base64.h"

#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void b64_stream_init(struct b64_stream *s, char *out, size_t outcap)
{
    memset(s, 0, sizeof(*s));
    s->out = out;
    s->cap = outcap ? outcap - 1 : 0;
    s->overflow = outcap == 0;
    s->hasroom = outcap > 0;
}

static void b64_quad(struct b64_stream *s, const unsigned char *b, size_t n)
{
    unsigned long v = (unsigned long)b[0] << 16 | (unsigned long)(n > 1 ? b[1] : 0) << 8 |
                      (unsigned long)(n > 2 ? b[2] : 0);

    if (s->overflow || s->cap - s->len < 4) {
        s->overflow = 1;
        return;
    }
    s->out[s->len++] = b64_alphabet[(v >> 18) & 63];
    s->out[s->len++] = b64_alphabet[(v >> 12) & 63];
    s->out[s->len++] = b64_alphabet[(v >> 6) & 63];
    s->out[s->len++] = b64_alphabet[v & 63];
    /* RFC 4648 §4: pad a final group of 1 or 2 bytes with "==" or "=". */
    if (n < 3)
        s->out[s->len - 1] = '=';
    if (n < 2)
        s->out[s->len - 2] = '=';
}

void b64_stream_write(struct b64_stream *s, const void *in, size_t len)
{
    const unsigned char *p = in;

    while (len > 0) {
        s->tail[s->ntail++] = *p++;
        len--;
        if (s->ntail == 3) {
            b64_quad(s, s->tail, 3);
            s->ntail = 0;
        }
    }
}

/* Returns the text length, or (size_t)-1 on overflow; then the partial text
 * (which may encode a secret) is wiped and out holds "" if it has room. */
size_t b64_stream_finish(struct b64_stream *s)
{
    if (s->ntail > 0)
        b64_quad(s, s->tail, s->ntail);
    explicit_bzero(s->tail, sizeof(s->tail));
    if (s->overflow) {
        if (s->len > 0)
            explicit_bzero(s->out, s->len);
        if (s->hasroom)
            s->out[0] = '\0';
        return (size_t)-1;
    }
    s->out[s->len] = '\0';
    return s->len;
}

size_t b64_encode(const void *in, size_t len, char *out, size_t outcap)
{
    struct b64_stream s;

    /* RFC 4648 §4: 4 characters per started group of 3 bytes, plus the NUL. */
    if (len / 3 >= ((size_t)-1 - 5) / 4 || outcap < (len + 2) / 3 * 4 + 1)
        return (size_t)-1;
    b64_stream_init(&s, out, outcap);
    b64_stream_write(&s, in, len);
    return b64_stream_finish(&s);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

size_t b64_decode(const char *in, size_t len, void *out, size_t outcap)
{
    unsigned char *o = out;
    size_t n = 0;

    /* RFC 4648 §3.2/§3.3: padding is required and nothing else may appear. */
    if (len % 4 != 0)
        return (size_t)-1;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)in + i;
        int v0 = b64_value(q[0]), v1 = b64_value(q[1]), v2, v3;
        size_t bytes = 3;
        unsigned long v;

        if (v0 < 0 || v1 < 0)
            return (size_t)-1;
        if (q[2] == '=') {
            /* "xx==" only in the last group, and (§3.5) the unused bits are zero. */
            if (q[3] != '=' || i + 4 != len || (v1 & 0x0f) != 0)
                return (size_t)-1;
            v2 = v3 = 0;
            bytes = 1;
        } else if (q[3] == '=') {
            v2 = b64_value(q[2]);
            if (v2 < 0 || i + 4 != len || (v2 & 0x03) != 0)
                return (size_t)-1;
            v3 = 0;
            bytes = 2;
        } else {
            v2 = b64_value(q[2]);
            v3 = b64_value(q[3]);
            if (v2 < 0 || v3 < 0)
                return (size_t)-1;
        }
        if (outcap - n < bytes)
            return (size_t)-1;
        v = (unsigned long)v0 << 18 | (unsigned long)v1 << 12 | (unsigned long)v2 << 6 |
            (unsigned long)v3;
        o[n++] = (unsigned char)(v >> 16);
        if (bytes > 1)
            o[n++] = (unsigned char)(v >> 8);
        if (bytes > 2)
            o[n++] = (unsigned char)v;
    }
    return n;
}
