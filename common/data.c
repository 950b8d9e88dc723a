/* data: streaming DATA codec. The decoder removes dot-stuffing (RFC 5321 §4.5.2),
 * ends the message only at CRLF "." CRLF (RFC 5321 §4.1.1.4) and normalises bare
 * LF / bare CR to CRLF (RFC 5321 §2.3.8), so no second message can be smuggled
 * behind a terminator that only a lenient receiver would honour. */
#include "common/data.h"

#include <stdint.h>
#include <string.h>

/* Bulk copying. Message lines are short (~80 octets) and a 1 MiB body has about
 * 13k of them, so a byte loop or a memchr + memcpy call pair per line costs more
 * than the TLS encryption of the same bytes. Instead: 8 octets at a time, tested
 * for CR / LF without branching per byte (the "haszero" bit trick: below the
 * first matching byte nothing is flagged, so on little-endian machines the
 * lowest flag is the match; elsewhere the flagged word is rescanned bytewise).
 * memcpy with a constant 8 is one load or store and keeps the accesses
 * alignment-agnostic and alias-safe. A flagged word is still stored whole: the
 * bytes past the match stay inside the room the caller gave (n counts it) and
 * are overwritten by what follows. */
#define DATA_ONES UINT64_C(0x0101010101010101)
#define DATA_HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t data_has_byte(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (DATA_ONES * c);
    return (x - DATA_ONES) & ~x & DATA_HIGHS;
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DATA_FIRST(mask) ((size_t)__builtin_ctzll(mask) >> 3)
#endif

/* Copies in[0..n) to out until the first CR or LF; returns the bytes copied. */
static size_t data_copy_line(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;

    for (; n - i >= 8; i += 8) {
        uint64_t w, m;
        memcpy(&w, in + i, 8);
        memcpy(out + i, &w, 8);
        m = data_has_byte(w, '\r') | data_has_byte(w, '\n');
        if (m) {
#ifdef DATA_FIRST
            return i + DATA_FIRST(m);
#else
            break;
#endif
        }
    }
    for (; i < n && in[i] != '\r' && in[i] != '\n'; i++) {
        out[i] = (char)in[i];
    }
    return i;
}

/* Copies in[0..n) to out through the first LF (included); returns the bytes copied. */
static size_t data_copy_to_lf(const char *in, size_t n, char *out)
{
    size_t i = 0;

    for (; n - i >= 8; i += 8) {
        uint64_t w, m;
        memcpy(&w, in + i, 8);
        memcpy(out + i, &w, 8);
        m = data_has_byte(w, '\n');
        if (m) {
#ifdef DATA_FIRST
            return i + DATA_FIRST(m) + 1;
#else
            break;
#endif
        }
    }
    while (i < n) {
        char c = in[i];
        out[i++] = c;
        if (c == '\n') {
            break;
        }
    }
    return i;
}

/* Decoder states. SOL_* are "at start of line"; REAL means the line began after a
 * genuine CRLF (or at the start of the body, or after any LF with lf_eol), BARE
 * after a normalised bare LF/CR: only a "." line at SOL_REAL, itself ended by CRLF
 * (or by LF with lf_eol), terminates the message. A lone "." line that does not
 * end it keeps its dot: dot-stuffing never produces a lone dot (RFC 5321 §4.5.2
 * removes the first of two or more), so dropping it would lose content. */
enum data_dec_state {
    DEC_SOL_REAL = 0,
    DEC_SOL_BARE,
    DEC_LINE,
    DEC_CR,          /* CR seen and already written; waiting for LF */
    DEC_DOT_REAL,    /* "." at SOL_REAL, held */
    DEC_DOT_REAL_CR, /* "." CR at SOL_REAL, nothing written: may be the terminator */
    DEC_DONE,
    DEC_DOT_BARE, /* "." at SOL_BARE, held: dropped before more text, kept before a line end */
};

void data_dec_init(struct data_dec *d)
{
    d->state = DEC_SOL_REAL;
    d->bare_seen = 0;
    d->lf_eol = 0;
    d->size = 0;
}

/*
 * One loop, one switch. Every step writes at most 2 bytes and checks the room
 * for them before touching anything, so the state only advances when its output
 * fits and a split at any byte (or any outcap) gives the same concatenated output.
 * A few steps change state without consuming the byte ("reprocess"): the byte is
 * then handled by the new state on the next iteration.
 */
size_t data_dec_feed(struct data_dec *d, const char *in, size_t inlen, char *out, size_t outcap,
                     size_t *outlen, int *done)
{
    const unsigned char *p = (const unsigned char *)in;
    int st = d->state;
    size_t i = 0, o = 0;

    *done = 0;
    while (i < inlen) {
        unsigned char c = p[i];

        switch (st) {
        case DEC_SOL_REAL:
            if (c == '.') {
                st = DEC_DOT_REAL;
                i++;
                continue;
            }
            st = DEC_LINE;
            continue;
        case DEC_SOL_BARE:
            /* This line can never end the message because it did not start
             * after a real CRLF; a leading dot waits for the next byte. */
            if (c == '.') {
                st = DEC_DOT_BARE;
                i++;
                continue;
            }
            st = DEC_LINE;
            continue;
        case DEC_DOT_BARE:
            /* RFC 5321 §4.5.2: a leading dot with more text on the line is
             * stuffing and goes; a lone dot (<LF>.<CRLF>) is content. */
            if (c == '\r' || c == '\n') {
                if (o == outcap)
                    goto out;
                out[o++] = '.';
            }
            st = DEC_LINE;
            continue;
        case DEC_LINE:
            /* Fast path: copy plain bytes until a CR/LF or the end of room; a
             * CRLF whose next line does not start with "." stays in this loop
             * (DEC_SOL_REAL would hand that byte straight back to DEC_LINE). */
            for (;;) {
                size_t run = inlen - i < outcap - o ? inlen - i : outcap - o;
                size_t k = data_copy_line(p + i, run, out + o);
                i += k;
                o += k;
                if (i == inlen || o == outcap)
                    goto out;
                if (p[i] != '\r' || inlen - i < 2 || p[i + 1] != '\n' || outcap - o < 2)
                    break;
                out[o++] = '\r';
                out[o++] = '\n';
                i += 2;
                if (i == inlen || p[i] == '.') {
                    st = DEC_SOL_REAL;
                    break;
                }
            }
            if (st == DEC_SOL_REAL)
                continue;
            c = p[i];
            if (c == '\r') {
                out[o++] = '\r';
                st = DEC_CR;
                i++;
                continue;
            }
            /* Bare LF: write CRLF; with lf_eol it is a line end like CRLF. */
            if (outcap - o < 2)
                goto out;
            out[o++] = '\r';
            out[o++] = '\n';
            if (d->lf_eol) {
                st = DEC_SOL_REAL;
            } else {
                d->bare_seen = 1;
                st = DEC_SOL_BARE;
            }
            i++;
            continue;
        case DEC_CR:
            if (o == outcap)
                goto out;
            out[o++] = '\n';
            if (c == '\n') {
                st = DEC_SOL_REAL;
                i++;
                continue;
            }
            /* Bare CR: the CRLF is complete, c starts the next line. */
            d->bare_seen = 1;
            st = DEC_SOL_BARE;
            continue;
        case DEC_DOT_REAL:
            if (c == '\r') {
                st = DEC_DOT_REAL_CR;
                i++;
                continue;
            }
            if (c == '\n' && d->lf_eol) {
                /* LF-only device: <LF>.<LF> (or CRLF "." LF) ends the message */
                st = DEC_DONE;
                i++;
                *done = 1;
                goto out;
            }
            if (c == '\n') {
                /* "." then a bare LF is a lone-dot line, not the end: the dot is
                 * written and DEC_LINE turns the LF into CRLF. */
                if (o == outcap)
                    goto out;
                out[o++] = '.';
            }
            st = DEC_LINE;
            continue;
        case DEC_DOT_REAL_CR:
            if (c == '\n') {
                /* CRLF "." CRLF: the CRLF before the dot is the content's last. */
                st = DEC_DONE;
                i++;
                *done = 1;
                goto out;
            }
            /* ".\r" then anything else: the CR was bare, a lone-dot line; DEC_CR
             * completes its CRLF and hands c to the next line. */
            if (outcap - o < 2)
                goto out;
            out[o++] = '.';
            out[o++] = '\r';
            st = DEC_CR;
            continue;
        case DEC_DONE:
            *done = 1;
            goto out;
        default:
            /* Corrupted state: refuse to guess where the message ends. */
            goto out;
        }
    }
out:
    if (st == DEC_DONE)
        *done = 1;
    d->state = st;
    d->size += o;
    *outlen = o;
    return i;
}

void data_enc_init(struct data_enc *e)
{
    e->sol = 1;
}

/* Content reaching the encoder comes from data_dec, so lines end in CRLF and
 * "start of line" means "after LF". */
size_t data_enc_feed(struct data_enc *e, const char *in, size_t inlen, char *out)
{
    int sol = e->sol;
    size_t o = 0;

    for (size_t i = 0; i < inlen;) {
        size_t k;

        /* RFC 5321 §4.5.2: double a leading dot. */
        if (sol && in[i] == '.')
            out[o++] = '.';
        k = data_copy_to_lf(in + i, inlen - i, out + o);
        i += k;
        o += k;
        sol = out[o - 1] == '\n';
    }
    e->sol = sol;
    return o;
}

size_t data_enc_finish(struct data_enc *e, char *out)
{
    size_t o = 0;

    if (!e->sol) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o++] = '.';
    out[o++] = '\r';
    out[o++] = '\n';
    e->sol = 1;
    return o;
}
