/* fuzz_data: the DATA decoder (common/data.h) fed in chunks and with output
 * rooms chosen by the input's first 4 bytes (the rest is the wire); the first
 * byte's low bit also turns on lf_eol (LF-only devices). Checks the header's
 * contract and the smuggling rules of RFC 5321 §4.1.1.4 / §2.3.8: the end is
 * exactly the first CRLF "." CRLF (with lf_eol: the first "." line ended by LF
 * after any LF), split-independent output without bare CR/LF, a lone dot never
 * lost, and a data_enc round trip (RFC 5321 §4.5.2). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/data.h"
#include "tests/fuzz/fuzz.h"

#define ROOM_MAX 300 /* largest output room tried per call in the chunked run */

static int lf_eol; /* this input's mode */

struct decoded {
    char *out;
    size_t outlen;
    size_t consumed;
    int done;
    int bare;
    uint64_t size;
};

/* One call with all the input and room for all of it (outcap >= 2*inlen + 1). */
static void decode_oneshot(const char *in, size_t len, struct decoded *r)
{
    struct data_dec d;
    size_t cap = 2 * len + 1;

    data_dec_init(&d);
    d.lf_eol = lf_eol;
    r->out = malloc(cap);
    FUZZ_CHECK(r->out != NULL);
    r->consumed = data_dec_feed(&d, in, len, r->out, cap, &r->outlen, &r->done);
    FUZZ_CHECK(r->outlen <= cap);
    FUZZ_CHECK(r->consumed <= len);
    /* The header: with this much room all input goes unless the end came first. */
    FUZZ_CHECK(r->done || r->consumed == len);
    r->bare = d.bare_seen;
    r->size = d.size;
}

static size_t pick_room(struct fuzz_rng *rng, size_t chunk)
{
    switch (fuzz_rng_upto(rng, 7)) {
    case 0:
        return fuzz_rng_upto(rng, 1); /* may stall, must not misbehave */
    case 1:
    case 2:
        return 2 + fuzz_rng_upto(rng, 3);
    case 3:
        return 2 * chunk + 1 < ROOM_MAX ? 2 * chunk + 1 : ROOM_MAX;
    default:
        return fuzz_rng_upto(rng, ROOM_MAX);
    }
}

/* The same input in random chunks with random output rooms; the output room is
 * the end of a ROOM_MAX heap block so that any write past outcap hits ASan. */
static void decode_chunked(struct fuzz_rng *rng, const char *in, size_t len, struct decoded *r)
{
    struct data_dec d;
    char *room = malloc(ROOM_MAX);
    size_t pos = 0, cap = 2 * len + 1;
    int stalls = 0;

    FUZZ_CHECK(room != NULL);
    r->out = malloc(cap);
    FUZZ_CHECK(r->out != NULL);
    r->outlen = 0;
    r->done = 0;
    data_dec_init(&d);
    d.lf_eol = lf_eol;
    while (!r->done) {
        size_t chunk = fuzz_rng_chunk(rng, len - pos);
        size_t outcap = pick_room(rng, chunk);
        size_t n, outlen = (size_t)-1;
        int done = -1;

        /* Guarantee termination: after a few idle calls give plenty of room. */
        if (stalls > 4) {
            chunk = len - pos < 8 ? len - pos : 8;
            outcap = 2 * chunk + 1;
        }
        if (pos == len && chunk == 0 && stalls > 4)
            break;
        n = data_dec_feed(&d, in + pos, chunk, room + ROOM_MAX - outcap, outcap, &outlen, &done);
        FUZZ_CHECK(n <= chunk);
        FUZZ_CHECK(outlen <= outcap);
        FUZZ_CHECK(done == 0 || done == 1);
        /* The header: outcap >= 2 always makes progress (until the end). */
        if (outcap >= 2 && chunk > 0 && !done)
            FUZZ_CHECK(n > 0 || outlen > 0);
        if (chunk == 0)
            FUZZ_CHECK(n == 0 && outlen == 0);
        FUZZ_CHECK(r->outlen + outlen <= cap);
        memcpy(r->out + r->outlen, room + ROOM_MAX - outcap, outlen);
        r->outlen += outlen;
        pos += n;
        r->done = done;
        stalls = n == 0 && outlen == 0 ? stalls + 1 : 0;
    }
    r->consumed = pos;
    r->bare = d.bare_seen;
    r->size = d.size;

    /* Nothing after the end is consumed, however often the caller asks. */
    if (r->done) {
        size_t outlen = (size_t)-1;
        int done = 0;
        size_t n = data_dec_feed(&d, in + pos, len - pos, room, ROOM_MAX, &outlen, &done);

        FUZZ_CHECK(n == 0 && outlen == 0 && done == 1);
    }
    free(room);
}

/* RFC 5321 §4.1.1.4: the message ends at the first CRLF "." CRLF, where the body
 * starts just after a CRLF (the DATA command's). lf_eol: at the first "." that
 * starts the body or follows any LF, itself followed by LF or CRLF. Returns the
 * offset just past it in in[], or (size_t)-1. */
static size_t reference_end(const char *in, size_t len)
{
    static const char term[] = "\r\n.\r\n";

    if (lf_eol) {
        for (size_t i = 0; i + 2 <= len; i++) {
            if (in[i] != '.' || (i > 0 && in[i - 1] != '\n'))
                continue;
            if (in[i + 1] == '\n')
                return i + 2;
            if (i + 3 <= len && in[i + 1] == '\r' && in[i + 2] == '\n')
                return i + 3;
        }
        return (size_t)-1;
    }
    if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
        return 3;
    for (size_t i = 0; i + 5 <= len; i++)
        if (memcmp(in + i, term, 5) == 0)
            return i + 5;
    return (size_t)-1;
}

/* Whether the consumed wire bytes hold a CR not followed by LF or an LF not
 * preceded by CR. A CR that is the last consumed byte is still undecided. */
static int reference_bare(const char *in, size_t consumed)
{
    for (size_t i = 0; i < consumed; i++) {
        if (in[i] == '\r' && i + 1 < consumed && in[i + 1] != '\n')
            return 1;
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r') && !lf_eol)
            return 1;
    }
    return 0;
}

/* A line of the input that is a lone "." (between line ends of any kind, the
 * message's end excepted) is a line "." of the content: dot-stuffing never makes
 * a lone dot, so it is never dropped. Counted on both sides. */
static size_t count_lone_dots(const char *p, size_t n, int wire)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        int sol = i == 0 ? wire : (p[i - 1] == '\n' || p[i - 1] == '\r');
        if (sol && p[i] == '.' && i + 1 < n && (p[i + 1] == '\r' || p[i + 1] == '\n'))
            k++;
    }
    return k;
}

/* Content has CRLF line ends only; a final CR may await its LF when not done. */
static void check_no_bare(const struct decoded *r)
{
    for (size_t i = 0; i < r->outlen; i++) {
        if (r->out[i] == '\r')
            FUZZ_CHECK((i + 1 < r->outlen && r->out[i + 1] == '\n') ||
                       (i + 1 == r->outlen && !r->done));
        if (r->out[i] == '\n')
            FUZZ_CHECK(i > 0 && r->out[i - 1] == '\r');
    }
    /* A finished message's content is empty or ends with its last CRLF. */
    if (r->done && r->outlen > 0)
        FUZZ_CHECK(r->outlen >= 2 && r->out[r->outlen - 1] == '\n');
}

/* Content -> data_enc (in chunks, each into an exact 2*n heap block) -> decoder. */
static void check_roundtrip(struct fuzz_rng *rng, const char *content, size_t len)
{
    struct data_enc e;
    size_t cap = 2 * len + 5, wlen = 0, pos = 0;
    char *wire = malloc(cap);
    char *fin = malloc(5);
    struct decoded r2;
    int ends_line = len == 0 || content[len - 1] == '\n';

    FUZZ_CHECK(wire != NULL && fin != NULL);
    data_enc_init(&e);
    while (pos < len) {
        size_t n = fuzz_rng_chunk(rng, len - pos);
        char *tmp = malloc(2 * n + 1);
        size_t w;

        FUZZ_CHECK(tmp != NULL);
        w = data_enc_feed(&e, content + pos, n, tmp);
        FUZZ_CHECK(w >= n && w <= 2 * n);
        memcpy(wire + wlen, tmp, w);
        wlen += w;
        pos += n;
        free(tmp);
    }
    {
        size_t w = data_enc_finish(&e, fin);

        FUZZ_CHECK(w == (ends_line ? 3u : 5u));
        memcpy(wire + wlen, fin, w);
        wlen += w;
    }

    decode_oneshot(wire, wlen, &r2);
    FUZZ_CHECK(r2.done && r2.consumed == wlen);
    FUZZ_CHECK(!r2.bare);
    if (ends_line) {
        FUZZ_CHECK(r2.outlen == len && memcmp(r2.out, content, len) == 0);
    } else {
        FUZZ_CHECK(r2.outlen == len + 2 && memcmp(r2.out, content, len) == 0 &&
                   memcmp(r2.out + len, "\r\n", 2) == 0);
    }
    free(r2.out);
    free(wire);
    free(fin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_rng rng;
    size_t skip = fuzz_rng_init(&rng, data, size);
    size_t len = size - skip;
    char *in = malloc(len ? len : 1); /* an exact copy: reads past it hit ASan */
    struct decoded one, chk;
    size_t end, clen;

    FUZZ_CHECK(in != NULL);
    if (len > 0)
        memcpy(in, data + skip, len);
    lf_eol = size > 0 && (data[0] & 1);

    decode_oneshot(in, len, &one);
    decode_chunked(&rng, in, len, &chk);

    /* Split-independence: output, end position, flags. */
    FUZZ_CHECK(one.done == chk.done);
    FUZZ_CHECK(one.consumed == chk.consumed);
    FUZZ_CHECK(one.outlen == chk.outlen && memcmp(one.out, chk.out, one.outlen) == 0);
    FUZZ_CHECK(one.bare == chk.bare);
    FUZZ_CHECK(one.size == one.outlen && chk.size == chk.outlen);

    /* The end is where RFC 5321 puts it, nothing earlier or later. */
    end = reference_end(in, len);
    FUZZ_CHECK(one.done == (end != (size_t)-1));
    if (one.done)
        FUZZ_CHECK(one.consumed == end);
    FUZZ_CHECK(one.bare == reference_bare(in, one.consumed));

    check_no_bare(&one);
    /* Lone dots: each consumed one that was not the terminator reaches the
     * content (there, after a CRLF and followed by CR). The wire count looks
     * only at dots with their line end consumed, minus the terminator. */
    {
        size_t upto = one.consumed, wire_dots, content_dots;

        while (!one.done && upto > 0 && (in[upto - 1] == '.' || in[upto - 1] == '\r'))
            upto--; /* a held "." or "." CR is not decided yet */
        wire_dots = count_lone_dots(in, upto, 1) - (one.done ? 1 : 0);
        content_dots = count_lone_dots(one.out, one.outlen, 1);
        FUZZ_CHECK(content_dots >= wire_dots);
    }

    /* Round trip of the content; an unfinished CR at the end is not content yet. */
    clen = one.outlen;
    if (!one.done && clen > 0 && one.out[clen - 1] == '\r')
        clen--;
    check_roundtrip(&rng, one.out, clen);

    free(one.out);
    free(chk.out);
    free(in);
    return 0;
}
