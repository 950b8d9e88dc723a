/* fuzz_rewrite: the From: rewrite (proxy/prx_rewrite.c) and the header walker
 * under it (common/hdr.c). Input: the new sender on the first line (printable
 * ASCII only, as rewrite_sender is), the envelope sender on the second, then the
 * header section. Checks that the walker covers the section in order without
 * overlap, and that a rewrite keeps every byte before and after the first From:
 * field, puts a From: naming the sender in its place, and adds at most the one
 * Reply-To: the message lacked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/hdr.h"
#include "proxy/prx_rewrite.h"
#include "tests/fuzz/fuzz.h"

#define SENDER_MAX 254

/* One line of the input into out, keeping printable ASCII only; returns the
 * bytes consumed. */
static size_t take_line(const uint8_t *d, size_t len, char *out, size_t cap)
{
    size_t i = 0, o = 0;

    for (; i < len && d[i] != '\n'; i++) {
        if (d[i] > 0x20 && d[i] < 0x7f && o + 1 < cap) {
            out[o++] = (char)d[i];
        }
    }
    out[o] = '\0';
    return i < len ? i + 1 : i;
}

static size_t count_fields(const char *h, size_t len, const char *name, struct hdr_field *first)
{
    struct hdr_field f;
    size_t off = 0, n = 0, prev_end = 0;

    while (hdr_next(h, len, &off, &f)) {
        FUZZ_CHECK(f.start == prev_end);
        FUZZ_CHECK(f.start < f.end && f.end <= len && off == f.end);
        FUZZ_CHECK(f.start + f.name_len <= f.end && f.value <= f.end);
        FUZZ_CHECK(f.value == f.end || h[f.value - 1] == ':');
        prev_end = f.end;
        if (f.colon && hdr_is(h, &f, name)) {
            if (n == 0 && first) {
                *first = f;
            }
            n++;
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sender[SENDER_MAX + 1], env[SENDER_MAX + 1];
    size_t off = 0, n = 0, len;
    struct hdr_field from, nfrom;
    char *h, *out;
    size_t nfrom_in, nreply_in, nreply_out;

    off += take_line(data + off, size - off, sender, sizeof(sender));
    off += take_line(data + off, size - off, env, sizeof(env));
    len = size - off;
    h = malloc(len ? len : 1); /* exact size: ASan sees any read past the section */
    FUZZ_CHECK(h != NULL);
    memcpy(h, data + off, len);

    nfrom_in = count_fields(h, len, "From", &from);
    nreply_in = count_fields(h, len, "Reply-To", NULL);
    out = prx_rewrite_from(h, len, sender, env, &n);
    if (nfrom_in == 0) {
        FUZZ_CHECK(out == NULL);
    }
    if (out) {
        size_t tail = len - from.end;
        size_t sl = strlen(sender);

        /* everything around the first From: field is untouched */
        FUZZ_CHECK(n >= from.start + tail);
        FUZZ_CHECK(memcmp(out, h, from.start) == 0);
        FUZZ_CHECK(memcmp(out + n - tail, h + from.end, tail) == 0);
        /* in its place: a From: field naming the sender */
        {
            size_t o = from.start;
            FUZZ_CHECK(hdr_next(out, n, &o, &nfrom));
            FUZZ_CHECK(nfrom.start == from.start && nfrom.colon && hdr_is(out, &nfrom, "From"));
            FUZZ_CHECK(nfrom.end - nfrom.value >= sl);
            FUZZ_CHECK(memmem(out + nfrom.value, nfrom.end - nfrom.value, sender, sl) != NULL ||
                       sl == 0);
        }
        nreply_out = count_fields(out, n, "Reply-To", NULL);
        FUZZ_CHECK(nreply_out == nreply_in || (nreply_in == 0 && nreply_out == 1));
        free(out);
    }
    free(h);
    return 0;
}
