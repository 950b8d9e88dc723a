/* up_graph: a Graph delivery owns its prepared request body (read and encoded
 * in the thread pool: the loop never reads the file), its timer, the token
 * request and the HTTPS request; it frees itself once the owner's reference, the
 * work and the timer are gone. Requests as Microsoft Graph documents them:
 * user-sendmail (MIME, "Content-Type: text/plain", base64 body, 202 Accepted) and
 * its JSON error responses (errors-and-throttling, Retry-After on 429/503). */
#include "upstream/up_graph.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "common/base64.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_graph_msg.h"
#include "upstream/up_http.h"
#include "upstream/up_oauth.h"

#define UP_GRAPH_BCC_MAX (64u * 1024u)   /* the Bcc field we add */
#define UP_GRAPH_HDR_MAX (1024u * 1024u) /* header section searched for recipients */
#define UP_GRAPH_RESP_MAX (64u * 1024u)
#define UP_GRAPH_TOKEN_MAX 16384u
#define UP_GRAPH_REPLY_MAX 1200u
#define UP_GRAPH_RETRY_MAX 3600u /* a larger Retry-After is taken as an hour */

struct up_graph {
    uv_loop_t *loop;
    int refs;        /* owner (until cb or cancel) + work + timer */
    up_graph_cb *cb; /* NULL once ended */
    void *arg;
    const struct conf_upstream *up;
    char *user;
    char *path;
    const char *const *rcpt;
    size_t nrcpt;
    uint64_t qid;
    unsigned timeout;
    struct up_oauth *oauth;
    int token_wait; /* up_oauth_get is pending */
    int refreshed;  /* the one retry after a 401 is used */
    char *token;    /* the token of the request, for up_oauth_invalidate; wiped */
    uv_work_t work;
    uv_timer_t timer;
    struct up_http *http;
    char *body; /* base64 MIME */
    size_t body_len;
    size_t mime_len;
    int file_err;  /* from the work */
    int too_large; /* from the work */
    size_t nbcc;   /* recipients added as Bcc */
};

static void up_graph_unref(struct up_graph *g)
{
    if (--g->refs > 0) {
        return;
    }
    if (g->token) {
        explicit_bzero(g->token, strlen(g->token));
        free(g->token);
    }
    free(g->body);
    free(g->user);
    free(g->path);
    free(g);
}

static void up_graph_timer_closed(uv_handle_t *h)
{
    up_graph_unref(h->data);
}

/* Stops what g still does; the owner's reference goes. */
static void up_graph_end(struct up_graph *g)
{
    g->cb = NULL;
    if (g->token_wait) {
        up_oauth_cancel(g->oauth, g);
        g->token_wait = 0;
    }
    if (g->http) {
        up_http_cancel(g->http);
        g->http = NULL;
    }
    uv_timer_stop(&g->timer);
    if (!uv_is_closing((uv_handle_t *)&g->timer)) {
        uv_close((uv_handle_t *)&g->timer, up_graph_timer_closed);
    }
    up_graph_unref(g);
}

void up_graph_cancel(struct up_graph *g)
{
    if (g && g->cb) {
        up_graph_end(g);
    }
}

/* The one line per delivery, then the owner's callback. */
static void up_graph_finish(struct up_graph *g, const char *reply, size_t len, int http,
                            const char *request_id, unsigned retry_after)
{
    struct up_graph_result r;
    up_graph_cb *cb = g->cb;
    char text[UP_GRAPH_REPLY_MAX], q[UP_GRAPH_REPLY_MAX + 100];
    int code = len >= 3 ? atoi(reply) : 451;

    snprintf(text, sizeof(text), "%.*s", (int)len, reply);
    text[strcspn(text, "\r\n")] = '\0';
    log_info(g->qid, "graph",
             "qid=%016" PRIx64 " relay=graph:%s mailbox=%s size=%zu bcc=%zu http=%d "
             "request_id=%s status=%s reply=\"%s\"",
             g->qid, g->up->name, g->user, g->mime_len, g->nbcc, http,
             request_id && *request_id ? request_id : "-",
             code < 300   ? "sent"
             : code < 500 ? "deferred"
                          : "bounced",
             log_quote(text, strlen(text), q, sizeof(q)));
    memset(&r, 0, sizeof(r));
    r.code = code;
    r.reply = text;
    r.retry_after = retry_after;
    r.file_err = g->file_err;
    g->refs++;
    up_graph_end(g);
    cb(g->arg, &r);
    up_graph_unref(g);
}

static void up_graph_fail(struct up_graph *g, int err, const char *where, const char *detail)
{
    char out[UP_GRAPH_REPLY_MAX];
    size_t n = reply_upstream(out, sizeof(out), err, where, detail);

    up_graph_finish(g, out, n, 0, NULL, 0);
}

/* ---- the request body (thread pool) ------------------------------------------------------ */

/* Reads the message whole, puts the Bcc field in front, and base64-encodes it
 * (Graph wants the MIME message as one base64 text). Plain POSIX: a pool thread. */
static void up_graph_prepare_work(uv_work_t *w)
{
    struct up_graph *g = w->data;
    struct stat st;
    char *raw = NULL, bcc[UP_GRAPH_BCC_MAX];
    size_t hlen, got = 0, total;
    long blen;
    int fd = open(g->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0) {
        g->file_err = -errno;
        goto out;
    }
    if ((uint64_t)st.st_size > UP_GRAPH_MIME_MAX) {
        g->too_large = 1;
        g->mime_len = (size_t)st.st_size;
        goto out;
    }
    if (!(raw = malloc((size_t)st.st_size + UP_GRAPH_BCC_MAX + 1))) {
        g->file_err = UV_ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, raw + UP_GRAPH_BCC_MAX + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g->file_err = n < 0 ? -errno : UV_EIO;
            goto out;
        }
        got += (size_t)n;
    }
    {
        const char *m = raw + UP_GRAPH_BCC_MAX;
        const char *e = memmem(m, got < UP_GRAPH_HDR_MAX ? got : UP_GRAPH_HDR_MAX, "\r\n\r\n", 4);
        hlen = e ? (size_t)(e - m) + 2 : (got < UP_GRAPH_HDR_MAX ? got : UP_GRAPH_HDR_MAX);
        if (got >= 2 && m[0] == '\r' && m[1] == '\n') {
            hlen = 0; /* no header section at all */
        }
        blen = up__graph_bcc(m, hlen, g->rcpt, g->nrcpt, bcc, sizeof(bcc));
    }
    if (blen < 0) {
        g->file_err = UV_E2BIG;
        goto out;
    }
    for (size_t i = 0; i < (size_t)blen; i++) {
        g->nbcc += bcc[i] == '@';
    }
    /* the field right in front of the message, in the room kept for it */
    memcpy(raw + UP_GRAPH_BCC_MAX - (size_t)blen, bcc, (size_t)blen);
    total = got + (size_t)blen;
    g->mime_len = total;
    g->body = malloc(4 * ((total + 2) / 3) + 1);
    if (!g->body) {
        g->file_err = UV_ENOMEM;
        goto out;
    }
    g->body_len = b64_encode(raw + UP_GRAPH_BCC_MAX - (size_t)blen, total, g->body,
                             4 * ((total + 2) / 3) + 1);
out:
    if (fd >= 0) {
        close(fd);
    }
    if (raw) {
        free(raw);
    }
}

/* ---- the request ------------------------------------------------------------------------ */

static void up_graph_token(void *arg, const char *token, const char *err);

static void up_graph_timeout(uv_timer_t *t)
{
    struct up_graph *g = t->data;
    char where[300];

    if (!g->cb) {
        return;
    }
    snprintf(where, sizeof(where), "graph:%s %s:%u", g->up->name, g->up->host,
             (unsigned)g->up->port);
    if (g->http) {
        char why[80];
        snprintf(why, sizeof(why), "no answer (%s) within %u s", up_http_stage(g->http),
                 g->timeout);
        up_http_cancel(g->http);
        g->http = NULL;
        up_graph_fail(g, RELAY_E_TIMEOUT, where, why);
        return;
    }
    up_graph_fail(g, RELAY_E_TIMEOUT, where, "no access token in time");
}

/* Retry-After (RFC 9110 §10.2.3) in seconds; the HTTP-date form is taken as a
 * minute (Graph sends seconds). */
static unsigned up_graph_retry_after(const struct up_http_resp *r)
{
    char v[64];
    char *end;
    unsigned long s;

    if (up_http_header(r, "Retry-After", v, sizeof(v)) <= 0) {
        return 0;
    }
    s = strtoul(v, &end, 10);
    if (end == v || *end) {
        return 60;
    }
    return s > UP_GRAPH_RETRY_MAX ? UP_GRAPH_RETRY_MAX : (unsigned)s;
}

static void up_graph_http_done(void *arg, const struct up_http_resp *r, const char *err)
{
    struct up_graph *g = arg;
    char code[80], msg[512], rid[80], hrid[80];
    char out[UP_GRAPH_REPLY_MAX];
    unsigned wait = 0;
    size_t n;

    g->http = NULL;
    uv_timer_stop(&g->timer);
    if (!r) {
        char where[300];
        snprintf(where, sizeof(where), "graph:%s", g->up->name);
        up_graph_fail(g, RELAY_E_CONNECT, where, err);
        return;
    }
    up__graph_parse_error(r->body, r->body_len, code, sizeof(code), msg, sizeof(msg), rid,
                          sizeof(rid));
    if (up_http_header(r, "request-id", hrid, sizeof(hrid)) > 0) {
        memcpy(rid, hrid, sizeof(rid));
    }
    if (r->status == 401 && !g->refreshed) {
        /* the token expired or was revoked early: one fresh one, one retry */
        log_info(g->qid, "graph",
                 "qid=%016" PRIx64 " relay=graph:%s event=token_refused request_id=%s "
                 "action=refresh",
                 g->qid, g->up->name, rid[0] ? rid : "-");
        g->refreshed = 1;
        up_oauth_invalidate(g->oauth, g->token);
        g->token_wait = 1;
        uv_timer_start(&g->timer, up_graph_timeout, (uint64_t)g->timeout * 1000u, 0);
        if (up_oauth_get(g->oauth, up_graph_token, g) != 0) {
            g->token_wait = 0;
            up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
        }
        return;
    }
    if (r->status == 429 || r->status == 503 || r->status == 504) {
        wait = up_graph_retry_after(r);
    }
    n = reply_graph(out, sizeof(out), r->status, code, msg, rid, wait);
    up_graph_finish(g, out, n, r->status, rid, wait);
}

/* origin-form path: <graph_path>/v1.0/users/<mailbox, percent-encoded>/sendMail */
static int up_graph_url(const struct up_graph *g, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    int n = snprintf(out, cap, "%s/v1.0/users/", g->up->graph_path ? g->up->graph_path : "");
    size_t o;

    if (n < 0 || (size_t)n >= cap) {
        return -1;
    }
    o = (size_t)n;
    for (const unsigned char *p = (const unsigned char *)g->user; *p; p++) {
        if (o + 4 >= cap) {
            return -1;
        }
        /* RFC 3986 §3.3 pchar: unreserved, '@' and a few sub-delims stay */
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~@!$&'()*+,;=", *p)) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    n = snprintf(out + o, cap - o, "/sendMail");
    return n < 0 || (size_t)n >= cap - o ? -1 : 0;
}

static void up_graph_token(void *arg, const char *token, const char *err)
{
    struct up_graph *g = arg;
    struct up_http_req rq;
    char path[1200], *hdr;
    size_t hcap;
    int r;

    g->token_wait = 0;
    if (!g->cb) {
        return;
    }
    if (!token) {
        char out[UP_GRAPH_REPLY_MAX];
        size_t n = reply_graph(out, sizeof(out), 0, NULL, err ? err : "no token", "", 0);
        uv_timer_stop(&g->timer);
        up_graph_finish(g, out, n, 0, NULL, 0);
        return;
    }
    if (strlen(token) > UP_GRAPH_TOKEN_MAX || up_graph_url(g, path, sizeof(path)) != 0) {
        up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "token or mailbox too long");
        return;
    }
    if (g->token) {
        explicit_bzero(g->token, strlen(g->token));
        free(g->token);
    }
    hcap = strlen(token) + 100;
    if (!(g->token = strdup(token)) || !(hdr = malloc(hcap))) {
        up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
        return;
    }
    snprintf(hdr, hcap, "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n", token);
    memset(&rq, 0, sizeof(rq));
    rq.method = "POST";
    rq.host = g->up->host;
    rq.port = g->up->port;
    rq.path = path;
    rq.headers = hdr;
    rq.body = g->body;
    rq.body_len = g->body_len;
    rq.ca = g->up->ca;
    rq.resp_max = UP_GRAPH_RESP_MAX;
    r = up_http_request(g->loop, &rq, up_graph_http_done, g, &g->http);
    explicit_bzero(hdr, hcap);
    free(hdr);
    if (r < 0) {
        char where[300];
        snprintf(where, sizeof(where), "graph:%s", g->up->name);
        g->http = NULL;
        up_graph_fail(g, r == UV_ENOMEM ? RELAY_E_NOMEM : RELAY_E_RESOLVE, where, uv_strerror(r));
        return;
    }
    uv_timer_start(&g->timer, up_graph_timeout, (uint64_t)g->timeout * 1000u, 0);
}

static void up_graph_prepare_done(uv_work_t *w, int status)
{
    struct up_graph *g = w->data;
    char out[UP_GRAPH_REPLY_MAX];
    size_t n;

    (void)status;
    if (!g->cb) {
        up_graph_unref(g); /* cancelled meanwhile */
        return;
    }
    g->refs--; /* the work's; the owner's keeps g alive */
    if (g->too_large) {
        n = reply_graph(out, sizeof(out), 413, "MessageTooLarge",
                        "larger than one sendMail request takes (about 3 MB before base64)", "", 0);
        up_graph_finish(g, out, n, 0, NULL, 0);
        return;
    }
    if (g->file_err) {
        char why[200];
        snprintf(why, sizeof(why), "cannot read the spooled message: %s", uv_strerror(g->file_err));
        up_graph_fail(g, RELAY_E_NOMEM, "graph", why);
        return;
    }
    g->token_wait = 1;
    uv_timer_start(&g->timer, up_graph_timeout, (uint64_t)g->timeout * 1000u, 0);
    if (up_oauth_get(g->oauth, up_graph_token, g) != 0) {
        g->token_wait = 0;
        up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
    }
}

struct up_graph *up_graph_send(const struct up_graph_req *req, up_graph_cb *cb, void *arg)
{
    struct up_graph *g = calloc(1, sizeof(*g));

    if (!g) {
        return NULL;
    }
    g->loop = req->loop;
    g->cb = cb;
    g->arg = arg;
    g->up = req->up;
    g->oauth = req->oauth;
    g->rcpt = req->rcpt;
    g->nrcpt = req->nrcpt;
    g->qid = req->qid;
    g->timeout = req->timeout ? req->timeout : 600;
    if (!g->oauth || !(g->user = strdup(req->user ? req->user : "")) ||
        !(g->path = strdup(req->path))) {
        free(g->user);
        free(g);
        return NULL;
    }
    uv_timer_init(g->loop, &g->timer);
    g->timer.data = g;
    g->work.data = g;
    g->refs = 3; /* owner, work, timer */
    if (uv_queue_work(g->loop, &g->work, up_graph_prepare_work, up_graph_prepare_done) != 0) {
        g->cb = NULL;
        g->refs--; /* no work */
        up_graph_end(g);
        return NULL;
    }
    return g;
}
