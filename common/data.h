/* data: the DATA phase codec shared by inbound (decode) and outbound (encode).
 * Decoder: wire bytes from the client -> message content. Removes dot-stuffing
 * (RFC 5321 §4.5.2), detects the end only at CRLF "." CRLF (a "." line after a
 * bare LF or bare CR does not end the message, so nothing can be smuggled past
 * the relay), and turns bare LF / bare CR into CRLF while recording that it did.
 * Encoder: content -> wire bytes, dot-stuffing lines that start with ".".
 * Both are streaming state machines with no allocation. */
#ifndef RELAY25_DATA_H
#define RELAY25_DATA_H

#include <stddef.h>
#include <stdint.h>

struct data_dec {
    int state;     /* internal */
    int bare_seen; /* a bare LF or bare CR was normalised */
    /* Set after data_dec_init for an LF-only client: a bare LF ends a line like
     * CRLF (still written as CRLF, not counted in bare_seen), so <LF>.<LF> also
     * ends the message. Off by default: RFC 5321 §2.3.8 lines end in CRLF only. */
    int lf_eol;
    uint64_t size; /* content bytes produced so far */
};

/* Start of the body (just after the DATA command's CRLF); lf_eol off. */
void data_dec_init(struct data_dec *d);
/* Decode up to inlen bytes into out, never writing more than outcap bytes; input
 * whose output does not fit is left unconsumed, so loop on the rest. A bare LF or
 * CR doubles, so outcap >= 2*inlen + 2 consumes all input unless the end is
 * reached (the +2: a "." CR held from the previous call that turns out not to be
 * the end becomes ".\r\n", and the byte that decided it writes at most 1);
 * outcap >= 2 always makes progress (input consumed or output written). Returns
 * the number of input bytes consumed; *outlen receives the bytes written. *done
 * is set to 1 when the terminating CRLF.CRLF (with lf_eol also a "." line ended
 * by LF) has been consumed; bytes after it are left unconsumed. */
size_t data_dec_feed(struct data_dec *d, const char *in, size_t inlen, char *out, size_t outcap,
                     size_t *outlen, int *done);

struct data_enc {
    int sol; /* at start of line */
};

void data_enc_init(struct data_enc *e);
/* Encode content; out needs 2*inlen bytes at most (always enough). Returns bytes written. */
size_t data_enc_feed(struct data_enc *e, const char *in, size_t inlen, char *out);
/* Terminator: "\r\n.\r\n" when the content did not end with a line end, else
 * ".\r\n". Writes at most 5 bytes; returns bytes written. */
size_t data_enc_finish(struct data_enc *e, char *out);

#endif
