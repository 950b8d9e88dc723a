/* up_graph: a Graph delivery owns its request body (up_graph_body, made in the
 * thread pool: the loop never reads the file), its timer, the token request and
 * the HTTPS request of the current step; it frees itself once the owner's
 * reference, the work and the timer are gone. Calls as Microsoft Graph documents
 * them: user-sendmail (MIME, "Content-Type: text/plain", base64, 202); for a large
 * message user-post-messages (a MIME draft, 201), attachment-createuploadsession
 * (201, then PUT chunks with Content-Range to the pre-authenticated uploadUrl) and
 * message-send (202); JSON errors (errors-and-throttling, Retry-After). */
#include "upstream/up_graph.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <uv.h>

#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_graph_body.h"
#include "upstream/up_graph_msg.h"
#include "upstream/up_http.h"
#include "upstream/up_oauth.h"

#define UP_GRAPH_RESP_MAX (64u * 1024u)
#define UP_GRAPH_TOKEN_MAX 16384u
#define UP_GRAPH_REPLY_MAX 1200u
#define UP_GRAPH_RETRY_MAX 3600u /* a larger Retry-After is taken as an hour */

enum up_graph_step {
    UG_SENDMAIL, /* POST /users/{u}/sendMail: the whole message */
    UG_DRAFT,    /* POST /users/{u}/messages: the draft without its large parts */
    UG_SESSION,  /* POST .../messages/{id}/attachments/createUploadSession */
    UG_PUT,      /* PUT <uploadUrl>: one chunk with Content-Range */
    UG_SEND,     /* POST .../messages/{id}/send */
    UG_CHECK,    /* GET .../mailFolders/sentitems: `check --upstream`, nothing is sent */
};

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
    struct up_graph_body b; /* the request body (the work fills it) */
    int file_err;           /* from the work */
    enum up_graph_step step;
    /* a message larger than one request: a draft without its large attachments,
     * each of those through an upload session, then the draft is sent */
    size_t cur;
    char msgid[512];       /* the draft's id */
    char upload_url[8192]; /* the current upload session */
    uint64_t up_off;       /* decoded bytes of the current part uploaded */
    uint64_t raw_pos;      /* file offset of the next chunk's base64 text */
    char *chunk;           /* the next chunk, decoded (the work fills it) */
    size_t chunk_len;
    uint64_t start_ms;
    int check;     /* up_graph_send without a message: a token and a read */
    int mail_send; /* check: the token's roles (up__graph_jwt_roles) */
    char roles[256];
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
    up_graph_body_free(&g->b);
    free(g->chunk);
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
static void up_graph_finish_err(struct up_graph *g, const char *reply, size_t len, int http,
                                const char *request_id, unsigned retry_after, int err)
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
             g->qid, g->up->name, g->user, g->b.mime_len, g->b.nbcc, http,
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
    r.err = err;
    r.ms = uv_now(g->loop) - g->start_ms;
    g->refs++;
    up_graph_end(g);
    cb(g->arg, &r);
    up_graph_unref(g);
}

static void up_graph_finish(struct up_graph *g, const char *reply, size_t len, int http,
                            const char *request_id, unsigned retry_after)
{
    up_graph_finish_err(g, reply, len, http, request_id, retry_after, 0);
}

static void up_graph_fail(struct up_graph *g, int err, const char *where, const char *detail)
{
    char out[UP_GRAPH_REPLY_MAX];
    size_t n = reply_upstream(out, sizeof(out), err, where, detail);

    up_graph_finish_err(g, out, n, 0, NULL, 0, err);
}

/* ---- the request body (thread pool: up_graph_body) ---------------------------------------- */

static void up_graph_prepare_work(uv_work_t *w)
{
    struct up_graph *g = w->data;

    if (g->check) {
        return; /* no message: the work only makes the start asynchronous */
    }
    g->file_err = up_graph_body_read(g->path, g->rcpt, g->nrcpt, &g->b);
}

static void up_graph_chunk_work(uv_work_t *w)
{
    struct up_graph *g = w->data;

    if (!g->chunk && !(g->chunk = malloc(UP_GRAPH_CHUNK))) {
        g->file_err = UV_ENOMEM;
        return;
    }
    g->file_err = up_graph_body_chunk(g->path, &g->b.parts[g->cur], &g->raw_pos,
                                      g->b.parts[g->cur].size - g->up_off, g->chunk, &g->chunk_len);
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

/* Appends s percent-encoded as one path segment (RFC 3986 §3.3 pchar). */
static int up_graph_seg(char *out, size_t cap, size_t *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*o + 4 >= cap) {
            return -1;
        }
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~@!$&'()*+,;=", *p)) {
            out[(*o)++] = (char)*p;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[*p >> 4];
            out[(*o)++] = hex[*p & 15];
        }
    }
    out[*o] = '\0';
    return 0;
}

/* The origin-form path of the step's Graph call. */
static int up_graph_path(const struct up_graph *g, char *out, size_t cap)
{
    static const char *const tail[] = {
        [UG_SENDMAIL] = "/sendMail",
        [UG_DRAFT] = "/messages",
        [UG_SESSION] = "/attachments/createUploadSession",
        [UG_SEND] = "/send",
        /* a read of the mailbox: Mail.ReadBasic.All allows it, Mail.Send alone
         * does not (403): check says which it was */
        [UG_CHECK] = "/mailFolders/sentitems?%24select=id",
    };
    int n = snprintf(out, cap, "%s/v1.0/users/", g->up->graph_path ? g->up->graph_path : "");
    size_t o;

    if (n < 0 || (size_t)n >= cap) {
        return -1;
    }
    o = (size_t)n;
    if (up_graph_seg(out, cap, &o, g->user) != 0) {
        return -1;
    }
    if (g->step == UG_SESSION || g->step == UG_SEND) {
        n = snprintf(out + o, cap - o, "/messages/");
        if (n < 0 || (size_t)n >= cap - o) {
            return -1;
        }
        o += (size_t)n;
        if (up_graph_seg(out, cap, &o, g->msgid) != 0) {
            return -1;
        }
    }
    n = snprintf(out + o, cap - o, "%s", tail[g->step]);
    return n < 0 || (size_t)n >= cap - o ? -1 : 0;
}

/* https://host[:port]/path of an upload session into its parts. 0 or -1. */
static int up_graph_split_url(const char *url, char *host, size_t hcap, uint16_t *port,
                              const char **path)
{
    const char *h, *he, *pe;
    unsigned long v = 443;

    if (strncasecmp(url, "https://", 8) != 0) {
        return -1; /* an upload URL carries its own credentials: never in clear */
    }
    h = url + 8;
    pe = h + strcspn(h, "/?#");
    if (*h == '[') {
        he = memchr(h, ']', (size_t)(pe - h));
        if (!he) {
            return -1;
        }
        h++;
    } else {
        he = memchr(h, ':', (size_t)(pe - h));
        he = he ? he : pe;
    }
    if (he == h || (size_t)(he - h) >= hcap) {
        return -1;
    }
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    if (*he == ']') {
        he++;
    }
    if (*he == ':') {
        char *end;
        v = strtoul(he + 1, &end, 10);
        if (end != pe || v == 0 || v > 65535) {
            return -1;
        }
    }
    *port = (uint16_t)v;
    *path = *pe == '/' ? pe : "/";
    return *pe == '/' ? 0 : -1;
}

static void up_graph_http_done(void *arg, const struct up_http_resp *r, const char *err);
static void up_graph_chunk_done(uv_work_t *w, int status);
static void up_graph_check_end(struct up_graph *g, int status, const char *code, const char *msg,
                               const char *rid);

/* Sends the current step's request. */
static void up_graph_request(struct up_graph *g)
{
    struct up_http_req rq;
    char path[8192], host[256], *hdr = NULL, *json = NULL;
    size_t hcap = (g->token ? strlen(g->token) : 0) + 200;
    char where[300];
    int r;

    memset(&rq, 0, sizeof(rq));
    rq.host = g->up->host;
    rq.port = g->up->port;
    rq.path = path;
    rq.ca = g->up->ca;
    rq.resp_max = UP_GRAPH_RESP_MAX;
    rq.method = g->step == UG_PUT ? "PUT" : g->step == UG_CHECK ? "GET" : "POST";
    if (!(hdr = malloc(hcap))) {
        up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
        return;
    }
    if (g->step == UG_PUT) {
        const struct up_graph_part *p = &g->b.parts[g->cur];
        const char *up;
        /* the upload URL is pre-authenticated: no Authorization header (Graph's
         * createUploadSession documentation) */
        if (up_graph_split_url(g->upload_url, host, sizeof(host), &rq.port, &up) != 0 ||
            strlen(up) >= sizeof(path)) {
            free(hdr);
            up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "unusable uploadUrl");
            return;
        }
        memcpy(path, up, strlen(up) + 1);
        rq.host = host;
        snprintf(hdr, hcap,
                 "Content-Type: application/octet-stream\r\nContent-Range: bytes "
                 "%" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n",
                 g->up_off, g->up_off + g->chunk_len - 1, p->size);
        rq.body = g->chunk;
        rq.body_len = g->chunk_len;
    } else {
        if (up_graph_path(g, path, sizeof(path)) != 0) {
            free(hdr);
            up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "mailbox or message id too long");
            return;
        }
        if (g->step == UG_SESSION) {
            const struct up_graph_part *p = &g->b.parts[g->cur];
            json = up__graph_upload_body(p->name, p->ctype, (unsigned long long)p->size);
            if (!json) {
                free(hdr);
                up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
                return;
            }
            rq.body = json;
            rq.body_len = strlen(json);
        } else if (g->step == UG_SEND) {
            rq.body = ""; /* Content-Length: 0 */
        } else if (g->step == UG_CHECK) {
            rq.body = NULL;
        } else {
            rq.body = g->b.mime64;
            rq.body_len = g->b.mime64_len;
        }
        snprintf(hdr, hcap, "Authorization: Bearer %s\r\n%s%s%s", g->token,
                 g->step == UG_CHECK ? "" : "Content-Type: ",
                 g->step == UG_CHECK     ? ""
                 : g->step == UG_SESSION ? "application/json"
                                         : "text/plain",
                 g->step == UG_CHECK ? "" : "\r\n");
    }
    rq.headers = hdr;
    r = up_http_request(g->loop, &rq, up_graph_http_done, g, &g->http);
    explicit_bzero(hdr, hcap);
    free(hdr);
    cJSON_free(json);
    if (r < 0) {
        snprintf(where, sizeof(where), "graph:%s", g->up->name);
        g->http = NULL;
        up_graph_fail(g, r == UV_ENOMEM ? RELAY_E_NOMEM : RELAY_E_RESOLVE, where, uv_strerror(r));
        return;
    }
    uv_timer_start(&g->timer, up_graph_timeout, (uint64_t)g->timeout * 1000u, 0);
}

/* The next chunk is read and decoded in the thread pool, then PUT. */
static void up_graph_next_chunk(struct up_graph *g)
{
    g->refs++; /* the work's */
    g->work.data = g;
    if (uv_queue_work(g->loop, &g->work, up_graph_chunk_work, up_graph_chunk_done) != 0) {
        g->refs--;
        up_graph_fail(g, RELAY_E_NOMEM, "graph", "cannot queue work");
    }
}

static void up_graph_chunk_done(uv_work_t *w, int status)
{
    struct up_graph *g = w->data;

    (void)status;
    if (!g->cb) {
        up_graph_unref(g); /* cancelled meanwhile */
        return;
    }
    g->refs--;
    if (g->file_err) {
        char why[200];
        snprintf(why, sizeof(why), "cannot read the spooled message: %s", uv_strerror(g->file_err));
        up_graph_fail(g, RELAY_E_NOMEM, "graph", why);
        return;
    }
    g->step = UG_PUT;
    up_graph_request(g);
}

/* check --upstream's verdict: the token's roles and what the read said. */
static void up_graph_check_end(struct up_graph *g, int status, const char *code, const char *msg,
                               const char *rid)
{
    char out[UP_GRAPH_REPLY_MAX];
    int n, ok = g->mail_send != 0 && (status == 200 || status == 403);
    const char *roles = g->mail_send < 0 ? "none readable in the token" : g->roles;

    if (status == 200) {
        n = snprintf(out, sizeof(out),
                     "%s token roles %s; mailbox %s found (GET mailFolders/sentitems: 200)",
                     ok ? "250" : "550", roles, g->user);
    } else if (status == 403) {
        n = snprintf(out, sizeof(out),
                     "%s token roles %s; mailbox %s not verified: reading it is not allowed "
                     "(403 %s: %s), as expected with Mail.Send alone (Mail.ReadBasic.All lets "
                     "check see it)",
                     ok ? "250" : "550", roles, g->user, code, msg);
    } else if (status == 404) {
        n = snprintf(out, sizeof(out), "550 no mailbox %s (404 %s: %s)", g->user, code, msg);
    } else {
        n = (int)reply_graph(out, sizeof(out), status, code, msg, rid, 0);
    }
    if (ok == 0 && status == 200 && g->mail_send == 0) {
        n = snprintf(out, sizeof(out), "550 token roles %s: no Mail.Send application permission",
                     roles);
    }
    up_graph_finish(g, out, n < 0 ? 0 : (size_t)n, status, rid, 0);
}

/* The step succeeded: the next one, or the end. */
static void up_graph_advance(struct up_graph *g, const struct up_http_resp *r, const char *rid)
{
    char out[UP_GRAPH_REPLY_MAX];
    size_t n;

    switch (g->step) {
    case UG_DRAFT:
        if (up__graph_json_str(r->body, r->body_len, "id", g->msgid, sizeof(g->msgid)) != 0) {
            up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "the draft came back without an id");
            return;
        }
        g->cur = 0;
        g->step = UG_SESSION;
        up_graph_request(g);
        return;
    case UG_SESSION:
        if (up__graph_json_str(r->body, r->body_len, "uploadUrl", g->upload_url,
                               sizeof(g->upload_url)) != 0) {
            up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "the upload session has no uploadUrl");
            return;
        }
        g->up_off = 0;
        g->raw_pos = g->b.parts[g->cur].body;
        up_graph_next_chunk(g);
        return;
    case UG_PUT:
        g->up_off += g->chunk_len;
        if (g->up_off < g->b.parts[g->cur].size) {
            up_graph_next_chunk(g);
            return;
        }
        log_info(g->qid, "graph",
                 "qid=%016" PRIx64 " relay=graph:%s event=uploaded attachment=%zu size=%" PRIu64
                 " request_id=%s",
                 g->qid, g->up->name, g->cur + 1, g->b.parts[g->cur].size, rid[0] ? rid : "-");
        g->step = ++g->cur < g->b.nparts ? UG_SESSION : UG_SEND;
        up_graph_request(g);
        return;
    case UG_SENDMAIL:
    case UG_SEND:
        n = reply_graph(out, sizeof(out), r->status, "", "", rid, 0);
        up_graph_finish(g, out, n, r->status, rid, 0);
        return;
    case UG_CHECK:
        up_graph_check_end(g, r->status, "", "", rid);
        return;
    }
    abort();
}

static void up_graph_http_done(void *arg, const struct up_http_resp *r, const char *err)
{
    struct up_graph *g = arg;
    char code[80], msg[512], rid[80], hrid[80];
    char out[UP_GRAPH_REPLY_MAX];
    unsigned wait = 0;
    size_t n;
    int ok;

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
    switch (g->step) {
    case UG_SENDMAIL:
    case UG_SEND:
        ok = r->status == 202;
        break;
    case UG_CHECK:
        ok = r->status != 401 || g->refreshed;
        if (ok) {
            up_graph_check_end(g, r->status, code, msg, rid);
            return;
        }
        break;
    case UG_DRAFT:
    case UG_SESSION:
        ok = r->status == 201 || r->status == 200;
        break;
    case UG_PUT:
    default:
        ok = r->status == 200 || r->status == 201;
        break;
    }
    if (ok) {
        up_graph_advance(g, r, rid);
        return;
    }
    if (r->status == 401 && !g->refreshed && g->step != UG_PUT) {
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
    n = reply_graph(out, sizeof(out), r->status >= 200 && r->status < 300 ? 502 : r->status, code,
                    msg, rid, wait);
    up_graph_finish(g, out, n, r->status, rid, wait);
}

static void up_graph_token(void *arg, const char *token, const char *err)
{
    struct up_graph *g = arg;

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
    if (strlen(token) > UP_GRAPH_TOKEN_MAX) {
        up_graph_fail(g, RELAY_E_PROTOCOL, "graph", "access token too long");
        return;
    }
    if (g->token) {
        explicit_bzero(g->token, strlen(g->token));
        free(g->token);
    }
    if (!(g->token = strdup(token))) {
        up_graph_fail(g, RELAY_E_NOMEM, "graph", "out of memory");
        return;
    }
    if (g->check) {
        g->mail_send = up__graph_jwt_roles(token, g->roles, sizeof(g->roles));
    }
    uv_timer_stop(&g->timer);
    up_graph_request(g);
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
    if (g->b.too_large) {
        n = reply_graph(out, sizeof(out), 413, "MessageTooLarge",
                        "larger than one sendMail request takes (about 3 MB before base64) and "
                        "not a multipart message whose large base64 parts make up the rest",
                        "", 0);
        up_graph_finish(g, out, n, 0, NULL, 0);
        return;
    }
    if (g->file_err) {
        char why[200];
        snprintf(why, sizeof(why), "cannot read the spooled message: %s", uv_strerror(g->file_err));
        up_graph_fail(g, RELAY_E_NOMEM, "graph", why);
        return;
    }
    g->step = g->check ? UG_CHECK : g->b.large ? UG_DRAFT : UG_SENDMAIL;
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
    g->check = req->path == NULL;
    g->start_ms = uv_now(req->loop);
    if (!g->oauth || !(g->user = strdup(req->user ? req->user : "")) ||
        !(g->path = strdup(req->path ? req->path : ""))) {
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
