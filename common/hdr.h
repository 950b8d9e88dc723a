/* hdr: walks the fields of an RFC 5322 header section (§2.2: a name, a colon,
 * a body that goes on over lines starting with a blank, §2.2.3 folding). Pure:
 * no I/O, no allocation. Shared by the From: rewrite (proxy/prx_rewrite) and
 * sendmail's -t and Bcc handling. */
#ifndef RELAY25_HDR_H
#define RELAY25_HDR_H

#include <stddef.h>

/* One field, as offsets into the section. */
struct hdr_field {
    size_t start, end; /* the whole field: continuation lines and line end included */
    size_t name_len;   /* the name at start, up to ':' or a blank */
    size_t value;      /* just after the first ':' of the first line (end when none) */
    int colon;         /* only blanks between the name and the ':' (RFC 5322 §4.5.8) */
};

/* The field at *off in h[0, len) into *f and *off moved past it; 0 at the end
 * of h or at the empty line that ends the section (RFC 5322 §2.1). */
int hdr_next(const char *h, size_t len, size_t *off, struct hdr_field *f);

/* 1 when f's name is name, compared without case (RFC 5322 §1.2.2). */
int hdr_is(const char *h, const struct hdr_field *f, const char *name);

#endif
