/* metrics_req: the HTTP/1.x request head of a metrics scrape (RFC 9112 §2-§5),
 * parsed into the answer it calls for. Pure: no I/O, no allocation; the caller
 * keeps the bytes received so far (at most METRICS_REQ_MAX) and calls again
 * after each read. */
#ifndef RELAY25_METRICS_REQ_H
#define RELAY25_METRICS_REQ_H

#include <stddef.h>

/* A request head (request line, fields, empty line) must end within this many
 * bytes; scrapers send a few hundred. Longer gets 431. */
#define METRICS_REQ_MAX 4096

enum metrics_req_status {
    METRICS_REQ_MORE = 0, /* incomplete and valid so far: read more (out untouched) */
    METRICS_REQ_DONE = 1, /* answer now with out->code, whatever follows */
};

struct metrics_req {
    /* 200 (GET or HEAD of /metrics or /), 400 (malformed), 404 (other path),
     * 405 (other method on a known path), 431 (head too long), 505 (not HTTP/1.x) */
    int code;
    int head_only; /* HEAD: the same header, no body (RFC 9110 §9.3.2) */
};

/* Parse data[0..len). Only the first METRICS_REQ_MAX bytes are looked at, so the
 * verdict for a prefix stays the verdict for any longer input. A malformed
 * request line or field line is answered when its line ends; a valid request
 * when its head ends (the empty line; bare LF is accepted as a line end, RFC
 * 9112 §2.2). Never reads data[len] or beyond. */
int metrics_req_parse(const char *data, size_t len, struct metrics_req *out);

#endif
