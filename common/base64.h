/* base64: RFC 4648 §4 alphabet, padded; strict decoding (RFC 4648 §3.2, §3.3,
 * §3.5). Used by SASL (RFC 4954) on both sides and by the OAuth2 client. */
#ifndef RELAY25_BASE64_H
#define RELAY25_BASE64_H

#include <stddef.h>

/* Encodes len bytes; writes a NUL-terminated string. Returns its length, or
 * (size_t)-1 if outcap is too small (need 4*ceil(len/3)+1). */
size_t b64_encode(const void *in, size_t len, char *out, size_t outcap);
/* Decodes strict base64 (padding required, no blanks). Returns bytes written, or
 * (size_t)-1 on bad input or overflow. */
size_t b64_decode(const char *in, size_t len, void *out, size_t outcap);

/* Streaming encoder so that PLAIN and CRAM-MD5 responses are encoded straight from
 * their parts, without a cleartext copy of the whole message. */
struct b64_stream {
    unsigned char tail[3];
    size_t ntail;
    char *out;
    size_t cap; /* bytes of out usable for text (the NUL is reserved) */
    size_t len;
    int overflow;
    int hasroom; /* out can hold at least the NUL */
};

void b64_stream_init(struct b64_stream *s, char *out, size_t outcap);
void b64_stream_write(struct b64_stream *s, const void *in, size_t len);
/* Returns the text length, or (size_t)-1 on overflow; then the partial text
 * (which may encode a secret) is wiped and out holds "" if it has room. */
size_t b64_stream_finish(struct b64_stream *s);

#endif
