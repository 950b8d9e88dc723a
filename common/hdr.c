/* hdr: RFC 5322 header-field walker (§2.2 fields, §2.2.3 folding, §2.1 the
 * empty line that ends the section). Lines end in LF or CRLF; a line starting
 * with a blank continues the field before it. */
#include "common/hdr.h"

#include <string.h>
#include <strings.h>

int hdr_next(const char *h, size_t len, size_t *off, struct hdr_field *f)
{
    size_t i = *off, eol;
    const char *nl, *colon;

    if (i >= len || h[i] == '\n' || (h[i] == '\r' && i + 1 < len && h[i + 1] == '\n')) {
        return 0;
    }
    f->start = i;
    while (i < len && h[i] != ':' && h[i] != ' ' && h[i] != '\t' && h[i] != '\r' && h[i] != '\n') {
        i++;
    }
    f->name_len = i - f->start;
    while (i < len && (h[i] == ' ' || h[i] == '\t')) {
        i++;
    }
    f->colon = i < len && h[i] == ':';
    nl = memchr(h + i, '\n', len - i);
    eol = nl ? (size_t)(nl - h) : len;
    colon = memchr(h + f->start, ':', eol - f->start);
    /* continuation lines start with a blank */
    for (;;) {
        nl = memchr(h + i, '\n', len - i);
        i = nl ? (size_t)(nl - h) + 1 : len;
        if (i >= len || (h[i] != ' ' && h[i] != '\t')) {
            break;
        }
    }
    f->end = i;
    f->value = colon ? (size_t)(colon - h) + 1 : i;
    *off = i;
    return 1;
}

int hdr_is(const char *h, const struct hdr_field *f, const char *name)
{
    size_t n = strlen(name);

    return f->name_len == n && strncasecmp(h + f->start, name, n) == 0;
}
