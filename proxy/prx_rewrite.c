/* prx_rewrite: rewrite_from_header (RFC 5322 §3.6.2 From:/Reply-To:) over a
 * header section held in memory. Fields are found with the common/hdr walker;
 * the From: value is unfolded (§2.2.3) and split at the first angle address
 * outside a quoted string (§3.4). */
#include "proxy/prx_rewrite.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hdr.h"
#include "proxy/prx_cmd.h"

/* Appends to the output; -1 when it would not fit. */
static int prx_hput(char *out, size_t cap, size_t *o, const char *p, size_t n)
{
    if (n > cap - *o) {
        return -1;
    }
    memcpy(out + *o, p, n);
    *o += n;
    return 0;
}

/* The new From: field into out; orig gets the address it named ("" if none). */
static int prx_put_from(char *out, size_t cap, size_t *o, const char *v, const char *vend,
                        const char *sender, char *orig, size_t origcap)
{
    /* unfold (RFC 5322 §2.2.3) the value into val, then split at the '<' of
     * the first angle address outside quotes */
    char val[1000 + PRX_PATH_MAX];
    size_t vl = 0;
    const char *lt = NULL, *gt = NULL;
    int inq = 0;

    for (; v < vend && vl < sizeof(val) - 1; v++) {
        if (*v != '\r' && *v != '\n') {
            val[vl++] = *v == '\t' ? ' ' : *v;
        }
    }
    val[vl] = '\0';
    for (size_t i = 0; i < vl; i++) {
        if (val[i] == '\\' && inq && i + 1 < vl) {
            i++;
        } else if (val[i] == '"') {
            inq = !inq;
        } else if (val[i] == '<' && !inq && !lt) {
            lt = val + i;
        } else if (val[i] == '>' && lt && !gt) {
            gt = val + i;
        }
    }
    if (lt && gt) {
        const char *a = val, *b = lt;
        while (a < b && *a == ' ') {
            a++;
        }
        while (b > a && b[-1] == ' ') {
            b--;
        }
        snprintf(orig, origcap, "%.*s", (int)(gt - lt - 1), lt + 1);
        return prx_hput(out, cap, o, "From: ", 6) < 0 ||
                       prx_hput(out, cap, o, a, (size_t)(b - a)) < 0 ||
                       (b > a && prx_hput(out, cap, o, " ", 1) < 0) ||
                       prx_hput(out, cap, o, "<", 1) < 0 ||
                       prx_hput(out, cap, o, sender, strlen(sender)) < 0 ||
                       prx_hput(out, cap, o, ">\r\n", 3) < 0
                   ? -1
                   : 0;
    }
    /* addr-spec alone, possibly with a trailing comment: the address is the
     * first word */
    {
        const char *a = val;
        while (*a == ' ') {
            a++;
        }
        snprintf(orig, origcap, "%.*s", (int)strcspn(a, " ,("), a);
    }
    return prx_hput(out, cap, o, "From: ", 6) < 0 ||
                   prx_hput(out, cap, o, sender, strlen(sender)) < 0 ||
                   prx_hput(out, cap, o, "\r\n", 2) < 0
               ? -1
               : 0;
}

char *prx_rewrite_from(const char *h, size_t len, const char *sender, const char *orig_from,
                       size_t *outlen)
{
    struct hdr_field f, from = {0};
    size_t off = 0, cap = len + 2 * PRX_PATH_MAX + 64, o = 0;
    int has_from = 0, has_reply_to = 0;
    char orig[PRX_PATH_MAX];
    char *out;

    while (hdr_next(h, len, &off, &f)) {
        if (!has_from && f.colon && hdr_is(h, &f, "From")) {
            from = f;
            has_from = 1;
        } else if (f.colon && hdr_is(h, &f, "Reply-To")) {
            has_reply_to = 1;
        }
    }
    if (!has_from || !(out = malloc(cap))) {
        return NULL;
    }
    if (prx_hput(out, cap, &o, h, from.start) < 0 ||
        prx_put_from(out, cap, &o, h + from.value, h + from.end, sender, orig, sizeof(orig)) < 0) {
        o = SIZE_MAX;
    }
    if (o != SIZE_MAX && !orig[0]) {
        /* From: without an address: the envelope sender is the one to answer */
        snprintf(orig, sizeof(orig), "%s", orig_from);
    }
    if (o != SIZE_MAX && !has_reply_to && orig[0] &&
        (prx_hput(out, cap, &o, "Reply-To: <", 11) < 0 ||
         prx_hput(out, cap, &o, orig, strlen(orig)) < 0 ||
         prx_hput(out, cap, &o, ">\r\n", 3) < 0)) {
        o = SIZE_MAX;
    }
    if (o != SIZE_MAX && prx_hput(out, cap, &o, h + from.end, len - from.end) < 0) {
        o = SIZE_MAX;
    }
    if (o == SIZE_MAX) {
        free(out);
        return NULL;
    }
    *outlen = o;
    return out;
}
