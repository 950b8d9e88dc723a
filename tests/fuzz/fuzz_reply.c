/* fuzz_reply: the upstream reply parser (upstream/up_reply.h) on a byte stream
 * (after 4 bytes that pick the chunking), fed in one piece and in random chunks:
 * the same replies at the same offsets, each well formed (RFC 5321 §4.2, §4.2.1),
 * then up_reply_ehlo, up_reply_oneline, up_reply_lastline and common/reply's
 * reply_pass (enhanced status codes added, issue 13) on each of them with
 * exact-size output buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/reply.h"
#include "tests/fuzz/fuzz.h"
#include "upstream/up_reply.h"

#define MAX_EVENTS 64

/* What a run produced: each complete reply's end offset and a digest of it, and
 * the final status. */
struct run {
    size_t nev;
    size_t end[MAX_EVENTS];
    int code[MAX_EVENTS];
    int nlines[MAX_EVENTS];
    size_t len[MAX_EVENTS];
    uint64_t hash[MAX_EVENTS];
    int status; /* last non-DONE status: MORE or an error */
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static void check_text_out(const char *out, size_t cap)
{
    size_t n;

    FUZZ_CHECK(memchr(out, '\0', cap) != NULL);
    n = strlen(out);
    FUZZ_CHECK(n < cap);
    /* Safe to log or to put in a reply of our own. */
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
}

static void check_pass(const struct up_reply *r, size_t cap);

/* The reply's text and the helpers on it; complete says the reply is finished. */
static void check_reply(const struct up_reply *r, int complete, size_t cap)
{
    struct up_ehlo e;
    char *buf;
    int lines = 0;

    FUZZ_CHECK(r->len < UP_REPLY_MAX && r->text[r->len] == '\0');
    FUZZ_CHECK(strlen(r->text) == r->len);
    for (size_t i = 0; i < r->len;) {
        const char *nl = memchr(r->text + i, '\n', r->len - i);
        size_t n;

        FUZZ_CHECK(nl != NULL);
        n = (size_t)(nl - (r->text + i));
        FUZZ_CHECK(n >= 4 && nl[-1] == '\r'); /* "ddd" CR at least */
        FUZZ_CHECK(memchr(r->text + i, '\r', n - 1) == NULL);
        FUZZ_CHECK(r->text[i] >= '2' && r->text[i] <= '5');
        FUZZ_CHECK((r->text[i] - '0') * 100 + (r->text[i + 1] - '0') * 10 +
                       (r->text[i + 2] - '0') ==
                   r->code);
        /* Only the last line of a complete reply is a final one. */
        if (i + n + 1 < r->len || !complete)
            FUZZ_CHECK(n >= 5 && r->text[i + 3] == '-');
        else
            FUZZ_CHECK(n == 4 || r->text[i + 3] == ' ');
        lines++;
        i += n + 1;
    }
    FUZZ_CHECK(lines == r->nlines);
    if (complete) {
        FUZZ_CHECK(r->nlines >= 1 && r->code >= 200 && r->code <= 599);
        check_pass(r, cap);
    }

    up_reply_ehlo(r, &e);
    /* only the capability bits the header defines */
    FUZZ_CHECK((e.ext & ~0xffu) == 0 &&
               (e.auth & ~(UP_AUTH_PLAIN | UP_AUTH_LOGIN | UP_AUTH_CRAM_MD5 | UP_AUTH_XOAUTH2 |
                           UP_AUTH_OAUTHBEARER)) == 0);
    if (r->code != 250)
        FUZZ_CHECK(e.ext == 0 && e.auth == 0 && e.size == 0);
    if (e.auth)
        FUZZ_CHECK(e.ext & UP_EXT_AUTH);
    if (e.size)
        FUZZ_CHECK(e.ext & UP_EXT_SIZE);

    buf = malloc(cap ? cap : 1); /* exact size: overruns hit ASan */
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(up_reply_oneline(r, buf, cap) == buf);
    if (cap > 0)
        check_text_out(buf, cap);
    FUZZ_CHECK(up_reply_lastline(r, buf, cap) == buf);
    if (cap > 0)
        check_text_out(buf, cap);
    free(buf);
}

/* reply_pass: with REPLY_PASS_CAP room every line is kept, in order, with its
 * code, a '-' on all but the last, and for 2xx/4xx/5xx an enhanced code of the
 * reply's class first in its text; with the fuzzer's room nothing overruns and
 * the output is still whole lines ending in a final one. */
static void check_pass(const struct up_reply *r, size_t cap)
{
    size_t full = REPLY_PASS_CAP(r->len), n, lines = 0;
    char *out = malloc(full);
    int esc = r->code / 100 != 3;

    FUZZ_CHECK(out != NULL);
    n = reply_pass(out, full, r->text, r->len, (enum reply_cmd)(r->len % 5));
    FUZZ_CHECK(n < full && out[n] == '\0' && n >= 2 && out[n - 1] == '\n');
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(out + i, '\n', n - i);
        size_t e, t;

        FUZZ_CHECK(nl != NULL && nl > out + i && nl[-1] == '\r');
        e = (size_t)(nl - out) - 1;
        FUZZ_CHECK(e - i >= 4 && memcmp(out + i, r->text, 3) == 0);
        FUZZ_CHECK(out[i + 3] == (nl + 1 == out + n ? ' ' : '-'));
        t = i + 4;
        while (t < e && out[t] == ' ')
            t++;
        if (esc) {
            FUZZ_CHECK(t + 5 <= e && out[t] == r->text[0] && out[t + 1] == '.');
        }
        lines++;
        i = (size_t)(nl - out) + 1;
    }
    FUZZ_CHECK(lines == (size_t)r->nlines);
    free(out);

    out = malloc(cap ? cap : 1);
    FUZZ_CHECK(out != NULL);
    n = reply_pass(out, cap, r->text, r->len, REPLY_CMD_RCPT);
    if (cap < 16) {
        FUZZ_CHECK(n == 0);
    } else {
        FUZZ_CHECK(n < cap && out[n] == '\0');
        FUZZ_CHECK(n == 0 || (n >= 6 && out[n - 1] == '\n'));
    }
    free(out);
}

static void record(struct run *run, const struct up_reply_parser *p, size_t end)
{
    if (run->nev == MAX_EVENTS)
        return;
    run->end[run->nev] = end;
    run->code[run->nev] = p->r.code;
    run->nlines[run->nev] = p->r.nlines;
    run->len[run->nev] = p->r.len;
    run->hash[run->nev] = fnv1a(p->r.text, p->r.len);
    run->nev++;
}

/* Feeds in[] in chunks (all of it at once when rng is NULL). */
static void parse(struct fuzz_rng *rng, const char *in, size_t len, struct run *run)
{
    struct up_reply_parser *p = malloc(sizeof(*p));
    size_t pos = 0;

    FUZZ_CHECK(p != NULL);
    memset(run, 0, sizeof(*run));
    up_reply_init(p);
    run->status = UP_REPLY_MORE;
    while (pos < len) {
        size_t chunk = rng ? fuzz_rng_chunk(rng, len - pos) : len - pos;
        size_t off = 0;

        /* A chunk may hold several replies: the caller loops on what is left. An
         * empty chunk (a zero-length feed) must change nothing. */
        do {
            size_t used = (size_t)-1;
            int rc = up_reply_feed(p, in + pos + off, chunk - off, &used);

            FUZZ_CHECK(used <= chunk - off);
            off += used;
            if (rc == UP_REPLY_DONE) {
                /* Stops right after the LF that completes the reply. */
                FUZZ_CHECK(used > 0 && in[pos + off - 1] == '\n');
                check_reply(&p->r, 1, rng ? fuzz_rng_upto(rng, 80) : UP_REPLY_MAX);
                record(run, p, pos + off);
                continue;
            }
            if (rc == UP_REPLY_MORE) {
                FUZZ_CHECK(off == chunk);
                break;
            }
            FUZZ_CHECK(rc == UP_REPLY_ERR_SYNTAX || rc == UP_REPLY_ERR_TOO_LONG);
            run->status = rc;
            /* Sticky: the caller closes; further feeds change nothing. */
            FUZZ_CHECK(up_reply_feed(p, in + pos + off, chunk - off, &used) == rc && used == 0);
            /* What was collected so far is still a valid (incomplete) reply. */
            check_reply(&p->r, 0, rng ? fuzz_rng_upto(rng, 80) : 200);
            goto out;
        } while (off < chunk);
        pos += chunk;
    }
out:
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_rng rng;
    size_t skip = fuzz_rng_init(&rng, data, size);
    size_t len = size - skip;
    char *in = malloc(len ? len : 1);
    static struct run one, chk;

    FUZZ_CHECK(in != NULL);
    if (len > 0)
        memcpy(in, data + skip, len);
    parse(NULL, in, len, &one);
    parse(&rng, in, len, &chk);

    /* Split-independence: same replies at the same offsets, same verdict. */
    FUZZ_CHECK(one.nev == chk.nev);
    for (size_t i = 0; i < one.nev; i++) {
        FUZZ_CHECK(one.end[i] == chk.end[i] && one.code[i] == chk.code[i]);
        FUZZ_CHECK(one.nlines[i] == chk.nlines[i] && one.len[i] == chk.len[i]);
        FUZZ_CHECK(one.hash[i] == chk.hash[i]);
    }
    FUZZ_CHECK(one.status == chk.status);
    free(in);
    return 0;
}
