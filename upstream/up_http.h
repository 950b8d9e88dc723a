/* up_http: one HTTPS request (HTTP/1.1, RFC 9112, Connection: close) to
 * https://host:port/path: resolve and connect (up_dial), TLS with the
 * certificate verified against the given trust anchors (SNI and host name check),
 * the request, then the response read to its end (Content-Length, chunked or
 * close) into one bounded buffer. Knows nothing of what it carries (OAuth2 token
 * requests, Graph calls). No timeout of its own: the caller bounds the whole
 * exchange with its timer and up_http_cancel(). Memory: the request, resp_max
 * bytes and a tio (~53 KiB with TLS) while it runs. */
#ifndef RELAY25_UP_HTTP_H
#define RELAY25_UP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct up_http;
struct tls_ca;

struct up_http_req {
    const char *method;  /* "POST", "GET" */
    const char *host;    /* connect, SNI and certificate name; IPv6 without brackets */
    uint16_t port;       /* Host: carries it unless 443 */
    const char *path;    /* origin-form: "/oauth2/v2.0/token?x=y" */
    const char *headers; /* more header lines, each ended by CRLF, or NULL */
    const char *body;    /* sent with Content-Length, or NULL for none */
    size_t body_len;
    const struct tls_ca *ca; /* trust anchors; must outlive the request */
    size_t resp_max;         /* the whole response (head + body); 0: 64 KiB */
};

/* A complete response. All of it is valid only during the callback. */
struct up_http_resp {
    int status;       /* 100..599 */
    const char *head; /* the header lines after the status line, CRLF-separated */
    size_t head_len;
    const char *body; /* decoded (chunked transfer coding removed) */
    size_t body_len;
};

/* Once: with r (err NULL), or with r NULL and err, a one-line reason starting
 * with "host:port: " (or "host: " when the name did not resolve), without secrets. */
typedef void up_http_cb(void *arg, const struct up_http_resp *r, const char *err);

/* Starts the request; the request and headers are copied (and wiped once sent:
 * they may hold credentials). Returns 0 and *out: cb follows exactly once, always
 * from the loop, unless up_http_cancel() comes first; after cb, *out is gone.
 * Or returns a libuv error (UV_ENOMEM, a resolver error): nothing follows. */
int up_http_request(uv_loop_t *loop, const struct up_http_req *req, up_http_cb *cb, void *arg,
                    struct up_http **out);
/* cb will not run; h frees itself once its handles are closed. Not from inside cb. */
void up_http_cancel(struct up_http *h);
/* Where h is: "resolve", "connect", "tls" or "http" (for a caller's timeout message). */
const char *up_http_stage(const struct up_http *h);

/* The value of header field name (the first one, case-insensitive, blanks
 * trimmed) into out; its length, or -1 when absent or longer than cap - 1. */
long up_http_header(const struct up_http_resp *r, const char *name, char *out, size_t cap);

/* Appends name=value to an application/x-www-form-urlencoded body out (cap
 * bytes, NUL-terminated) at *len, '&' between pairs; 0, or -1 when full. */
int up_http_form_add(char *out, size_t cap, size_t *len, const char *name, const char *value);

/* Inside the module (and tests/unit/test_up_http.c): the response received so far
 * in buf (len bytes and room for a NUL after them; a chunked body is decoded in
 * place). 1: complete, *r set; 0: more is needed; -1: malformed. eof: the server
 * closed, so a body without a length ends here. max bounds a chunk's size. */
int up__http_parse(char *buf, size_t len, size_t max, int eof, struct up_http_resp *r);

#endif
