/* up_http: the HTTPS client. A struct up_http owns the dial (up_dial), the tio
 * (TLS always verified), the request and the response buffer; it frees itself
 * once the owner's reference (dropped by the callback or up_http_cancel), the
 * dial and the tio are gone, so an ended request never touches its caller again.
 * Response framing per RFC 9112 §6.3: chunked (§7.1), Content-Length, or close. */
#include "upstream/up_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "common/tio.h"
#include "common/tls_ca.h"
#include "upstream/up_dial.h"

#define UP_HTTP_RESP_MAX (64u * 1024u) /* default bound of a response */
#define UP_HTTP_ERR_MAX 300

enum up_http_stage {
    UP_HTTP_RESOLVE,
    UP_HTTP_CONNECT,
    UP_HTTP_TLS,  /* handshake: verified chain, SNI and name check */
    UP_HTTP_SEND, /* request sent, reading the response */
};

struct up_http {
    uv_loop_t *loop;
    int refs; /* the owner's (until cb or cancel) + dial + tio */
    enum up_http_stage stage;
    up_http_cb *cb; /* NULL once ended: the handles' callbacks only clean up */
    void *arg;
    struct up_dial dial;
    struct tio *tio;
    const struct tls_ca *ca;
    char *host;
    uint16_t port;
    char *req; /* may hold secrets: wiped once written */
    size_t reqlen;
    char *resp;
    size_t rlen, rmax;
};

static const struct tio_cbs up_http_tio_cbs;

const char *up_http_stage(const struct up_http *h)
{
    switch (h->stage) {
    case UP_HTTP_RESOLVE:
        return "resolve";
    case UP_HTTP_CONNECT:
        return "connect";
    case UP_HTTP_TLS:
        return "tls";
    case UP_HTTP_SEND:
        return "http";
    }
    abort();
}

static void up_http_unref(struct up_http *h)
{
    if (--h->refs > 0) {
        return;
    }
    up_dial_free(&h->dial);
    if (h->req) {
        explicit_bzero(h->req, h->reqlen);
        free(h->req);
    }
    if (h->resp) {
        explicit_bzero(h->resp, h->rmax + 1); /* may hold tokens */
        free(h->resp);
    }
    free(h->host);
    free(h);
}

/* Stops what h still does; its handles' callbacks then only release it. */
static void up_http_end(struct up_http *h)
{
    h->cb = NULL;
    if (h->tio) {
        tio_close(h->tio); /* its on_close releases h */
        h->tio = NULL;
    }
    up_http_unref(h); /* the owner's reference */
}

void up_http_cancel(struct up_http *h)
{
    if (h && h->cb) {
        up_http_end(h);
    }
}

static void up_http_done(struct up_http *h, const struct up_http_resp *r, const char *err)
{
    up_http_cb *cb = h->cb;

    h->refs++; /* r points into h->resp */
    up_http_end(h);
    cb(h->arg, r, err);
    up_http_unref(h);
}

static void up_http_failf(struct up_http *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* err: "host:port: " and the reason. */
static void up_http_failf(struct up_http *h, const char *fmt, ...)
{
    char err[UP_HTTP_ERR_MAX];
    va_list ap;
    int n = snprintf(err, sizeof(err), "%s:%u: ", h->host, (unsigned)h->port);

    if (n < 0 || (size_t)n >= sizeof(err)) {
        n = 0;
    }
    va_start(ap, fmt);
    vsnprintf(err + n, sizeof(err) - (size_t)n, fmt, ap);
    va_end(ap);
    up_http_done(h, NULL, err);
}

/* ---- the request --------------------------------------------------------------------- */

int up_http_form_add(char *out, size_t cap, size_t *len, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = *len;
    int r = snprintf(out + n, cap - n, "%s%s=", n ? "&" : "", name);

    if (r < 0 || (size_t)r >= cap - n) {
        return -1;
    }
    n += (size_t)r;
    /* HTML form encoding: unreserved bytes as they are, everything else %XX */
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (n + 4 > cap) {
            return -1;
        }
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    *len = n;
    return 0;
}

static int up_http_build(struct up_http *h, const struct up_http_req *rq)
{
    const char *extra = rq->headers ? rq->headers : "";
    char host[300], clen[48] = "";
    size_t cap;
    int n;

    /* RFC 9110 §7.2: the port only when it is not the default */
    n = snprintf(host, sizeof(host), strchr(rq->host, ':') ? "[%s]" : "%s", rq->host);
    if (n < 0 || (size_t)n >= sizeof(host)) {
        return -1;
    }
    if (rq->port != 443) {
        snprintf(host + n, sizeof(host) - (size_t)n, ":%u", (unsigned)rq->port);
    }
    if (rq->body) {
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", rq->body_len);
    }
    cap = strlen(rq->method) + strlen(rq->path) + strlen(host) + strlen(extra) + rq->body_len + 200;
    h->req = malloc(cap);
    if (!h->req) {
        return -1;
    }
    n = snprintf(h->req, cap,
                 "%s %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: relay25/" RELAY25_VERSION "\r\n"
                 "%s%s"
                 "Connection: close\r\n"
                 "\r\n",
                 rq->method, rq->path, host, extra, clen);
    if (n < 0 || (size_t)n + rq->body_len >= cap) {
        return -1;
    }
    if (rq->body_len) {
        memcpy(h->req + n, rq->body, rq->body_len);
    }
    h->reqlen = (size_t)n + rq->body_len;
    return 0;
}

/* ---- the response -------------------------------------------------------------------- */

/* A chunked body (RFC 9112 §7.1) at in: 1 when complete (decoded in place when
 * decode, *outlen set), 0 when more is needed, -1 when malformed. */
static int up_http_dechunk(char *in, size_t len, size_t max, int decode, size_t *outlen)
{
    size_t r = 0, w = 0;

    for (;;) {
        size_t size = 0, digits = 0;
        const char *eol;

        while (r < len && ((in[r] >= '0' && in[r] <= '9') ||
                           ((in[r] | 0x20) >= 'a' && (in[r] | 0x20) <= 'f'))) {
            int v = in[r] <= '9' ? in[r] - '0' : (in[r] | 0x20) - 'a' + 10;
            if (size > (max >> 4)) {
                return -1;
            }
            size = size * 16 + (size_t)v;
            r++;
            digits++;
        }
        eol = memchr(in + r, '\n', len - r);
        if (!eol) {
            return 0;
        }
        if (digits == 0) {
            return -1;
        }
        r = (size_t)(eol - in) + 1; /* chunk extensions are ignored */
        if (size == 0) {
            *outlen = w;
            return 1; /* trailers, if any, do not matter */
        }
        if (len - r < size + 2) {
            return 0;
        }
        if (decode) {
            memmove(in + w, in + r, size);
        }
        w += size;
        r += size;
        if (in[r] == '\r') {
            r++;
        }
        if (in[r] != '\n') {
            return -1;
        }
        r++;
    }
}

/* The response so far in buf (len bytes, room for a NUL after them): 1 complete
 * (*r set), 0 need more, -1 bad. eof: the server closed the connection, so a body
 * without length ends here. */
int up__http_parse(char *buf, size_t len, size_t max, int eof, struct up_http_resp *r)
{
    char *end, *line, *b;
    long long clen = -1;
    int chunked = 0, c;

    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
    if (!end) {
        return eof ? -1 : 0;
    }
    if (strncmp(buf, "HTTP/1.", 7) != 0 || len < 12 || buf[8] != ' ' || buf[9] < '1' ||
        buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9') {
        return -1;
    }
    r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    b = end + 4;
    r->head = strstr(buf, "\r\n") + 2;
    r->head_len = r->head <= end ? (size_t)(end + 2 - r->head) : 0;
    for (line = strstr(buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            clen = strtoll(line + 15, NULL, 10);
        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            const char *v = line + 18, *e = strstr(line, "\r\n");
            for (; v + 7 <= e; v++) {
                if (strncasecmp(v, "chunked", 7) == 0) {
                    chunked = 1;
                }
            }
        }
    }
    if (chunked) {
        size_t n;
        c = up_http_dechunk(b, len - (size_t)(b - buf), max, 0, &n);
        if (c == 1) {
            up_http_dechunk(b, len - (size_t)(b - buf), max, 1, &n);
            r->body = b;
            r->body_len = n;
        }
        return c == 0 && eof ? -1 : c;
    }
    if (clen >= 0) {
        if ((long long)(len - (size_t)(b - buf)) < clen) {
            return eof ? -1 : 0;
        }
        r->body = b;
        r->body_len = (size_t)clen;
        return 1;
    }
    if (!eof) {
        return 0;
    }
    r->body = b;
    r->body_len = len - (size_t)(b - buf);
    return 1;
}

long up_http_header(const struct up_http_resp *r, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = r->head, *end = r->head + r->head_len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;

        if ((size_t)(le - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t')) {
                v++;
            }
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) {
                ve--;
            }
            if ((size_t)(ve - v) >= cap) {
                return -1;
            }
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return (long)(ve - v);
        }
        p = le + 1;
    }
    return -1;
}

/* Feeds the response; ends h once it is complete (or broken). */
static void up_http_check(struct up_http *h, int eof)
{
    struct up_http_resp r = {0};
    int c = up__http_parse(h->resp, h->rlen, h->rmax, eof, &r);

    if (c == 0) {
        return;
    }
    if (c < 0) {
        up_http_failf(h, "%s", h->rlen ? "malformed HTTP response" : "closed without an answer");
        return;
    }
    up_http_done(h, &r, NULL);
}

/* ---- the connection ------------------------------------------------------------------ */

static size_t up_http_tio_read(void *arg, const char *data, size_t len)
{
    struct up_http *h = arg;

    if (!h->cb) {
        return len;
    }
    if (h->stage != UP_HTTP_SEND || len > h->rmax - h->rlen) {
        if (h->stage != UP_HTTP_SEND) {
            up_http_failf(h, "data before the request");
        } else {
            up_http_failf(h, "response larger than %zu KiB", h->rmax / 1024u);
        }
        return len;
    }
    memcpy(h->resp + h->rlen, data, len);
    h->rlen += len;
    up_http_check(h, 0);
    return len;
}

static void up_http_tio_handshake(void *arg)
{
    struct up_http *h = arg;
    int r;

    if (!h->cb) {
        return;
    }
    h->stage = UP_HTTP_SEND;
    r = tio_write(h->tio, h->req, h->reqlen);
    explicit_bzero(h->req, h->reqlen);
    if (r == 0) {
        r = tio_flush(h->tio);
    }
    if (r < 0) {
        char e[128];
        up_http_failf(h, "%s", tio_strerror(r, e, sizeof(e)));
    }
}

static void up_http_tio_error(void *arg, int err)
{
    struct up_http *h = arg;
    char e[160];

    if (!h->cb) {
        return;
    }
    if (h->stage == UP_HTTP_SEND && err == UV_EOF) {
        up_http_check(h, 1);
        return;
    }
    up_http_failf(h, "%s%s", TIO_IS_TLS_ERR(err) ? "TLS: " : "", tio_strerror(err, e, sizeof(e)));
}

static void up_http_tio_close(void *arg)
{
    up_http_unref(arg);
}

static const struct tio_cbs up_http_tio_cbs = {
    .on_read = up_http_tio_read,
    .on_handshake = up_http_tio_handshake,
    .on_drain = NULL,
    .on_error = up_http_tio_error,
    .on_close = up_http_tio_close,
};

/* A handle for the next address. */
static uv_tcp_t *up_http_dial_socket(void *arg, int prev)
{
    struct up_http *h = arg;

    if (!h->cb) {
        return NULL;
    }
    if (prev < 0) {
        tio_close(h->tio);
        h->tio = NULL;
    } else {
        h->stage = UP_HTTP_CONNECT;
    }
    if (!(h->tio = tio_new(h->loop, &up_http_tio_cbs, h))) {
        return NULL;
    }
    h->refs++;
    return tio_tcp(h->tio);
}

static void up_http_dial_done(void *arg, int status, enum up_dial_stage stage)
{
    struct up_http *h = arg;
    char e[128];
    int r;

    if (!h->cb) {
        up_http_unref(h); /* cancelled meanwhile: the dial's reference may be the last */
        return;
    }
    /* The dial's reference: the owner's keeps h alive until its callback, and
     * nothing below touches h after that. */
    h->refs--;
    if (status == UV_ENOMEM) {
        up_http_failf(h, "out of memory");
    } else if (status < 0 && stage == UP_DIAL_RESOLVE) {
        char err[UP_HTTP_ERR_MAX];
        snprintf(err, sizeof(err), "%s: %s", h->host, uv_strerror(status));
        up_http_done(h, NULL, err);
    } else if (status < 0) {
        up_http_failf(h, "%s", uv_strerror(status));
    } else {
        h->stage = UP_HTTP_TLS;
        /* Always verified: requests carry credentials. */
        r = tio_starttls_client(h->tio, h->ca, h->host, 1, NULL);
        if (r < 0) {
            up_http_failf(h, "TLS: %s", tio_strerror(r, e, sizeof(e)));
        } else {
            tio_start(h->tio); /* on failure on_error has run */
        }
    }
}

static const struct up_dial_cbs up_http_dial_cbs = {
    .on_socket = up_http_dial_socket,
    .on_done = up_http_dial_done,
};

int up_http_request(uv_loop_t *loop, const struct up_http_req *req, up_http_cb *cb, void *arg,
                    struct up_http **out)
{
    struct up_http *h = calloc(1, sizeof(*h));
    int r = UV_ENOMEM;

    if (!h) {
        return UV_ENOMEM;
    }
    h->loop = loop;
    h->refs = 1;
    h->cb = cb;
    h->arg = arg;
    h->ca = req->ca;
    h->port = req->port;
    h->rmax = req->resp_max ? req->resp_max : UP_HTTP_RESP_MAX;
    h->stage = UP_HTTP_RESOLVE;
    if (!(h->host = strdup(req->host)) || !(h->resp = malloc(h->rmax + 1)) ||
        up_http_build(h, req) != 0) {
        goto fail;
    }
    r = up_dial_start(&h->dial, loop, h->host, h->port, &up_http_dial_cbs, h);
    if (r < 0) {
        goto fail;
    }
    h->refs++; /* the dial's, until its on_done */
    *out = h;
    return 0;
fail:
    h->cb = NULL;
    up_http_unref(h);
    return r;
}
