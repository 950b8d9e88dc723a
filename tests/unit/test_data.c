/* test_data: DATA decoder/encoder (common/data.c). Fixed vectors for dot-stuffing,
 * termination and bare CR/LF normalisation (the SMTP smuggling cases), every
 * vector re-fed one byte at a time, in all 2-way splits and with tiny output
 * buffers, and a random encode/decode round trip. RFC 5321 §4.5.2, §2.3.8. */
#include "common/data.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

#define BUFMAX 8192

struct result {
    char out[BUFMAX];
    size_t outlen;
    size_t consumed; /* input bytes consumed in total */
    int done;
    int bare;
    uint64_t size;
};

/* Feeds in as the chunks given by cuts[] (ncuts split points), each chunk with
 * an output room of at most room bytes (0 = 2*chunk+1), looping until the chunk is
 * consumed or the message ends. */
static int lf_mode; /* decode_split sets lf_eol (LF-only device option) */

static void decode_split(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t room,
                         struct result *r)
{
    struct data_dec d;
    size_t start = 0;

    memset(r, 0, sizeof(*r));
    data_dec_init(&d);
    d.lf_eol = lf_mode;
    for (size_t k = 0; k <= ncuts && !r->done; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t pos = start;

        while (pos < end && !r->done) {
            size_t cap = room ? room : 2 * (end - pos) + 1;
            size_t outlen = 0, n;
            int done = 0;

            if (cap > BUFMAX - r->outlen)
                cap = BUFMAX - r->outlen;
            n = data_dec_feed(&d, in + pos, end - pos, r->out + r->outlen, cap, &outlen, &done);
            if (n == 0 && outlen == 0 && !done) {
                r->outlen = (size_t)-1; /* no progress: flag it */
                return;
            }
            pos += n;
            r->outlen += outlen;
            r->done = done;
        }
        r->consumed = pos;
        start = end;
    }
    r->bare = d.bare_seen;
    r->size = d.size;
}

static void decode_once(const char *in, size_t len, struct result *r)
{
    decode_split(in, len, NULL, 0, 0, r);
}

static int same(const struct result *a, const struct result *b)
{
    return a->outlen == b->outlen && a->consumed == b->consumed && a->done == b->done &&
           a->bare == b->bare && a->size == b->size && memcmp(a->out, b->out, a->outlen) == 0;
}

struct vec {
    const char *in;
    const char *out;
    int done;
    int bare;
    size_t left; /* input bytes left unconsumed after the end */
};

static const struct vec vecs[] = {
    /* Plain termination; the CRLF before "." belongs to the content. */
    {"a\r\n.\r\n", "a\r\n", 1, 0, 0},
    {".\r\n", "", 1, 0, 0},
    {"\r\n.\r\n", "\r\n", 1, 0, 0},
    {"Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", 1, 0, 0},
    /* Dot-stuffing removed. */
    {"..\r\n.\r\n", ".\r\n", 1, 0, 0},
    {"...\r\n.\r\n", "..\r\n", 1, 0, 0},
    {".x\r\n.\r\n", "x\r\n", 1, 0, 0},
    {"a\r\n..\r\n.\r\n", "a\r\n.\r\n", 1, 0, 0},
    {"a.b\r\n.\r\n", "a.b\r\n", 1, 0, 0},
    {"a\r\n. \r\n.\r\n", "a\r\n \r\n", 1, 0, 0},
    /* Bytes after the terminator stay unconsumed. */
    {"a\r\n.\r\nMAIL FROM:<x>\r\n", "a\r\n", 1, 0, 15},
    {".\r\n.\r\n", "", 1, 0, 3},
    /* Smuggling: none of these end the message. */
    /* (issue 13: a lone dot that does not end the message is content, the dot kept) */
    {"a\n.\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\r\n.\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\n.\r\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\r.\r\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\r\n.\rb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\r\n.\r.\r\n", "a\r\n.\r\n.\r\n", 0, 1, 0},
    {".\n", ".\r\n", 0, 1, 0},
    {".\r", "", 0, 0, 0},
    {".", "", 0, 0, 0},
    {"\n.\n", "\r\n.\r\n", 0, 1, 0},
    {"\r.\r", "\r\n.\r", 0, 1, 0},
    /* ... but a real CRLF "." CRLF after them does. */
    {"a\n.\r\n.\r\n", "a\r\n.\r\n", 1, 1, 0},
    {"a\r.\r\nb\r\n.\r\nX", "a\r\n.\r\nb\r\n", 1, 1, 1},
    {"a\r\n.\r\r\n.\r\n", "a\r\n.\r\n\r\n", 1, 1, 0},
    /* A dot followed by more text after a bare line end is still unstuffed. */
    {"a\n.x\r\n", "a\r\nx\r\n", 0, 1, 0},
    /* Bare LF / bare CR normalised. */
    {"a\nb\n", "a\r\nb\r\n", 0, 1, 0},
    {"a\rb\r", "a\r\nb\r", 0, 1, 0},
    {"a\r\r\nb", "a\r\n\r\nb", 0, 1, 0},
    {"\n\n\n", "\r\n\r\n\r\n", 0, 1, 0},
    {"\r\r\r", "\r\n\r\n\r", 0, 1, 0},
    {"\r\n\r\n", "\r\n\r\n", 0, 0, 0},
    {"..\n", ".\r\n", 0, 1, 0},
    {"a\n..\r\n", "a\r\n.\r\n", 0, 1, 0},
    /* 8-bit and NUL pass through. */
    {"\xc3\xa9\x80\xff\r\n.\r\n", "\xc3\xa9\x80\xff\r\n", 1, 0, 0},
    {"", "", 0, 0, 0},
};

static void test_vectors(void)
{
    for (size_t k = 0; k < sizeof(vecs) / sizeof(vecs[0]); k++) {
        const struct vec *v = &vecs[k];
        size_t len = strlen(v->in), outlen = strlen(v->out);
        size_t consumed = len - v->left;
        struct result r, s;

        decode_once(v->in, len, &r);
        if (r.outlen != outlen || memcmp(r.out, v->out, outlen) != 0)
            fprintf(stderr, "vector %zu\n", k);
        ASSERT_MEMEQ(r.out, r.outlen, v->out, outlen);
        ASSERT_EQ(r.done, v->done);
        ASSERT_EQ(r.bare, v->bare);
        ASSERT_EQ(r.consumed, consumed);
        ASSERT_EQ(r.size, outlen);

        /* One byte at a time. */
        {
            size_t cuts[64];
            size_t n = 0;

            for (size_t c = 1; c < len && n < 64; c++)
                cuts[n++] = c;
            decode_split(v->in, len, cuts, n, 0, &s);
            ASSERT_TRUE(same(&r, &s));
        }
        /* All 2-way splits. */
        for (size_t c = 0; c <= len; c++) {
            decode_split(v->in, len, &c, 1, 0, &s);
            ASSERT_TRUE(same(&r, &s));
        }
        /* Output room of 2 and 3 bytes per call: still progresses, same result. */
        decode_split(v->in, len, NULL, 0, 2, &s);
        ASSERT_TRUE(same(&r, &s));
        decode_split(v->in, len, NULL, 0, 3, &s);
        ASSERT_TRUE(same(&r, &s));
    }
}

/* The header's guarantee: outcap >= 2*inlen + 2 consumes everything, whatever state
 * the previous call left behind (the worst is a pending "." CR at start of line,
 * which becomes ".\r\n" when the next byte shows it was not the end). */
static void test_room(void)
{
    struct data_dec d;
    char out[16];
    size_t outlen;
    int done;

    data_dec_init(&d);
    ASSERT_EQ(data_dec_feed(&d, ".\r", 2, out, 5, &outlen, &done), 2);
    ASSERT_EQ(outlen, 0);
    ASSERT_EQ(data_dec_feed(&d, "x", 1, out, 4, &outlen, &done), 1);
    ASSERT_MEMEQ(out, outlen, ".\r\nx", 4);
    ASSERT_EQ(d.bare_seen, 1);

    /* Room for 1 byte: a bare LF cannot be written, nothing consumed. */
    data_dec_init(&d);
    ASSERT_EQ(data_dec_feed(&d, "\n", 1, out, 1, &outlen, &done), 0);
    ASSERT_EQ(outlen, 0);
    ASSERT_EQ(data_dec_feed(&d, "\n", 1, out, 2, &outlen, &done), 1);
    ASSERT_MEMEQ(out, outlen, "\r\n", 2);

    /* After the end, nothing more is consumed. */
    data_dec_init(&d);
    ASSERT_EQ(data_dec_feed(&d, ".\r\n", 3, out, 16, &outlen, &done), 3);
    ASSERT_EQ(done, 1);
    ASSERT_EQ(data_dec_feed(&d, "abc", 3, out, 16, &outlen, &done), 0);
    ASSERT_EQ(done, 1);
    ASSERT_EQ(outlen, 0);
}

/* lf_eol (an LF-only device, issue 13): a bare LF is a line end, so "." LF ends
 * the message too; the content still comes out in CRLF, and bare LF is not
 * counted as bare (bare CR still is). Split-independent like the default. */
static const struct vec lf_vecs[] = {
    {"a\n.\n", "a\r\n", 1, 0, 0},
    {"Subject: x\n\nbody\n.\nQUIT\n", "Subject: x\r\n\r\nbody\r\n", 1, 0, 5},
    {".\n", "", 1, 0, 0},
    {"a\r\n.\n", "a\r\n", 1, 0, 0},
    {"a\n.\r\n", "a\r\n", 1, 0, 0},
    {"a\r\n.\r\n", "a\r\n", 1, 0, 0},
    /* dot-stuffing after LF is removed as after CRLF */
    {"a\n..\n.\n", "a\r\n.\r\n", 1, 0, 0},
    {"a\n.x\n", "a\r\nx\r\n", 0, 0, 0},
    /* a bare CR is still no line start: no end there, the lone dot kept */
    {"a\r.\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\r.\r\nb", "a\r\n.\r\nb", 0, 1, 0},
    {"a\nb\n", "a\r\nb\r\n", 0, 0, 0},
};

static void test_lf_eol(void)
{
    lf_mode = 1;
    for (size_t k = 0; k < sizeof(lf_vecs) / sizeof(lf_vecs[0]); k++) {
        const struct vec *v = &lf_vecs[k];
        size_t len = strlen(v->in), outlen = strlen(v->out);
        struct result r, s;

        decode_once(v->in, len, &r);
        if (r.outlen != outlen || memcmp(r.out, v->out, outlen) != 0)
            fprintf(stderr, "lf vector %zu\n", k);
        ASSERT_MEMEQ(r.out, r.outlen, v->out, outlen);
        ASSERT_EQ(r.done, v->done);
        ASSERT_EQ(r.bare, v->bare);
        ASSERT_EQ(r.consumed, len - v->left);
        for (size_t c = 0; c <= len; c++) {
            decode_split(v->in, len, &c, 1, 0, &s);
            ASSERT_TRUE(same(&r, &s));
        }
        decode_split(v->in, len, NULL, 0, 2, &s);
        ASSERT_TRUE(same(&r, &s));
    }
    lf_mode = 0;
    /* Off (the default), the same bytes do not end the message. */
    {
        struct result r;
        decode_once("a\n.\nQUIT\n", 9, &r);
        ASSERT_EQ(r.done, 0);
        ASSERT_MEMEQ(r.out, r.outlen, "a\r\n.\r\nQUIT\r\n", 12);
    }
}

static void test_encoder(void)
{
    struct data_enc e;
    char out[64];
    size_t n;

    data_enc_init(&e);
    n = data_enc_finish(&e, out);
    ASSERT_MEMEQ(out, n, ".\r\n", 3);

    data_enc_init(&e);
    n = data_enc_feed(&e, "a\r\n", 3, out);
    n += data_enc_finish(&e, out + n);
    ASSERT_MEMEQ(out, n, "a\r\n.\r\n", 6);

    data_enc_init(&e);
    n = data_enc_feed(&e, "a", 1, out);
    n += data_enc_finish(&e, out + n);
    ASSERT_MEMEQ(out, n, "a\r\n.\r\n", 6);

    data_enc_init(&e);
    n = data_enc_feed(&e, ".\r\n..\r\n.x\r\na.b\r\n.", 17, out);
    ASSERT_MEMEQ(out, n, "..\r\n...\r\n..x\r\na.b\r\n..", 21);
    n += data_enc_finish(&e, out + n);
    ASSERT_MEMEQ(out, n, "..\r\n...\r\n..x\r\na.b\r\n..\r\n.\r\n", 26);

    /* The dot after a chunk boundary at start of line is still doubled. */
    data_enc_init(&e);
    n = data_enc_feed(&e, "a\r\n", 3, out);
    n += data_enc_feed(&e, ".", 1, out + n);
    ASSERT_MEMEQ(out, n, "a\r\n..", 5);
}

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
    /* xorshift32: deterministic, no libc rand() state. */
    rnd_state ^= (rnd_state & 0x7ffffu) << 13; /* masked: no bits shifted out */
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= (rnd_state & 0x7ffffffu) << 5;
    return rnd_state;
}

/* Random content made of CRLF lines (what the decoder produces): ".", "..", ".x",
 * empty lines, 8-bit bytes and NUL; possibly without a final CRLF. */
static size_t random_content(char *buf, size_t cap)
{
    static const char *const pieces[] = {".",   "..",  ".x", "",   "a",  "\xff\x80",
                                         "x.y", "...", " .", "\t", "\0", "z"};
    size_t n = 0, lines = rnd() % 12;

    for (size_t l = 0; l < lines; l++) {
        size_t parts = rnd() % 4;

        for (size_t p = 0; p < parts; p++) {
            const char *s = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t sl = s[0] ? strlen(s) : (rnd() & 1);

            if (n + sl + 2 > cap)
                return n;
            memcpy(buf + n, s, sl);
            n += sl;
        }
        if (l + 1 < lines || (rnd() & 1)) {
            buf[n++] = '\r';
            buf[n++] = '\n';
        }
    }
    return n;
}

static void test_roundtrip(void)
{
    int bad = 0;

    for (int iter = 0; iter < 5000; iter++) {
        char content[512], wire[1100], trailer[] = "NEXT";
        size_t clen = random_content(content, sizeof(content));
        struct data_enc e;
        size_t wlen = 0, cuts[8], ncuts = rnd() % 8;
        struct result r;

        /* Encode in random pieces. */
        data_enc_init(&e);
        for (size_t pos = 0; pos < clen;) {
            size_t k = 1 + rnd() % 7;

            if (k > clen - pos)
                k = clen - pos;
            wlen += data_enc_feed(&e, content + pos, k, wire + wlen);
            pos += k;
        }
        wlen += data_enc_finish(&e, wire + wlen);
        memcpy(wire + wlen, trailer, 4);

        /* Decode in random pieces (sorted cut points), trailer left unconsumed. */
        for (size_t k = 0; k < ncuts; k++)
            cuts[k] = rnd() % (wlen + 5);
        for (size_t a = 0; a < ncuts; a++)
            for (size_t b = a + 1; b < ncuts; b++)
                if (cuts[b] < cuts[a]) {
                    size_t t = cuts[a];
                    cuts[a] = cuts[b];
                    cuts[b] = t;
                }
        decode_split(wire, wlen + 4, cuts, ncuts, 0, &r);

        /* The expected content: CRLF-terminated (finish adds one if missing). */
        {
            char expect[520];
            size_t elen = clen;

            memcpy(expect, content, clen);
            if (clen && !(clen >= 2 && content[clen - 2] == '\r' && content[clen - 1] == '\n')) {
                expect[elen++] = '\r';
                expect[elen++] = '\n';
            }
            if (!r.done || r.bare || r.consumed != wlen || r.outlen != elen ||
                memcmp(r.out, expect, elen) != 0 || r.size != elen)
                bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

/* Random wire bytes (CR, LF, dots, letters): splitting never changes the result,
 * and the message never ends except at a real CRLF "." CRLF. */
static void test_random_splits(void)
{
    static const char alphabet[] = "\r\n.a";
    int bad = 0;

    for (int iter = 0; iter < 3000; iter++) {
        char in[40];
        size_t len = 1 + rnd() % sizeof(in);
        struct result r, s;

        for (size_t k = 0; k < len; k++)
            in[k] = alphabet[rnd() % 4];
        decode_once(in, len, &r);
        for (size_t c = 0; c <= len; c++) {
            decode_split(in, len, &c, 1, 0, &s);
            if (!same(&r, &s))
                bad++;
        }
        decode_split(in, len, NULL, 0, 2, &s);
        if (!same(&r, &s))
            bad++;
        if (r.done) {
            /* Must end in "\r\n.\r\n" or be ".\r\n" at the very start. */
            size_t e = r.consumed;
            int ok = (e == 3 && memcmp(in, ".\r\n", 3) == 0) ||
                     (e >= 5 && memcmp(in + e - 5, "\r\n.\r\n", 5) == 0);
            if (!ok)
                bad++;
        }
        /* Output is always CRLF-clean: every CR followed by LF and vice versa,
         * except a CR still pending at the end of input. */
        for (size_t k = 0; k < r.outlen; k++) {
            if (r.out[k] == '\n' && (k == 0 || r.out[k - 1] != '\r'))
                bad++;
            if (r.out[k] == '\r' && k + 1 < r.outlen && r.out[k + 1] != '\n')
                bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

int main(void)
{
    test_vectors();
    test_room();
    test_lf_eol();
    test_encoder();
    test_roundtrip();
    test_random_splits();
    return CHECK_DONE();
}
