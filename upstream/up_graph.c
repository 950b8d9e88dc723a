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
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
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
/* createUploadSession: chunks below 4 MiB in multiples of 320 KiB (Graph's
 * rule); 9 * 320 KiB is also a multiple of 3, so a chunk ends on whole base64
 * quantums of the part */
#define UP_GRAPH_CHUNK (9u * 320u * 1024u)
#define UP_GRAPH_PART_MIN (256u * 1024u) /* base64 parts from this size are uploaded */
#define UP_GRAPH_MAX_PARTS 64u
#define UP_GRAPH_LINE 1024u /* bytes of a line kept for the MIME scan */
#define UP_GRAPH_PHDR_MAX (16u * 1024u)

enum up_graph_step {
    UG_SENDMAIL, /* POST /users/{u}/sendMail: the whole message */
    UG_DRAFT,    /* POST /users/{u}/messages: the draft without its large parts */
    UG_SESSION,  /* POST .../messages/{id}/attachments/createUploadSession */
    UG_PUT,      /* PUT <uploadUrl>: one chunk with Content-Range */
    UG_SEND,     /* POST .../messages/{id}/send */
    UG_CHECK,    /* GET .../mailFolders/sentitems: `check --upstream`, nothing is sent */
};

/* A body part too large for the draft: uploaded as a file attachment. */
struct up_graph_part {
    uint64_t start, end; /* its span in the file: boundary line to the next one */
    uint64_t body;       /* its base64 text starts here */
    uint64_t size;       /* decoded bytes */
    char name[256];
    char ctype[128];
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
    char *body; /* base64 MIME */
    size_t body_len;
    size_t mime_len;
    int file_err;  /* from the work */
    int too_large; /* from the work */
    size_t nbcc;   /* recipients added as Bcc */
    enum up_graph_step step;
    /* a message larger than one request: a draft without its large attachments,
     * each of those through an upload session, then the draft is sent */
    int large;
    struct up_graph_part *parts;
    size_t nparts, cur;
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
    free(g->body);
    free(g->parts);
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

/* ---- the request body (thread pool) ------------------------------------------------------ */

/* Reads len bytes at off; 0 or a negative errno. Plain POSIX: a pool thread. */
static int up_graph_pread(int fd, uint64_t off, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : UV_EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Reads the file line by line for the MIME scan (thread pool). */
struct up_graph_lr {
    int fd;
    uint64_t off; /* file offset of buf[pos] */
    size_t pos, len;
    char buf[64 * 1024];
};

static int up_graph_b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* The next line: its start offset, its first cap - 1 bytes in line (NUL after
 * them), its whole length in *full, and the base64 characters and '=' in it.
 * 1, 0 at the end of the file, or a negative errno. */
static int up_graph_line(struct up_graph_lr *r, uint64_t *start, char *line, size_t cap,
                         size_t *full, uint64_t *nb64, uint64_t *npad)
{
    size_t o = 0;

    *start = r->off;
    *full = 0;
    *nb64 = *npad = 0;
    for (;;) {
        if (r->pos == r->len) {
            ssize_t n;
            do {
                n = read(r->fd, r->buf, sizeof(r->buf));
            } while (n < 0 && errno == EINTR);
            if (n < 0) {
                return -errno;
            }
            r->pos = 0;
            r->len = (size_t)n;
            if (n == 0) {
                line[o] = '\0';
                return *full > 0;
            }
        }
        char c = r->buf[r->pos++];
        r->off++;
        (*full)++;
        if (o + 1 < cap) {
            line[o++] = c;
        }
        if (up_graph_b64val((unsigned char)c) >= 0) {
            (*nb64)++;
        } else if (c == '=') {
            (*npad)++;
        }
        if (c == '\n') {
            line[o] = '\0';
            return 1;
        }
    }
}

/* A top-level part ends at start: a large base64 one joins the upload list. */
static void up_graph_part_end(struct up_graph *g, struct up_graph_part *p, uint64_t start, int b64,
                              uint64_t nb64, uint64_t npad)
{
    uint64_t q = nb64 + npad;

    p->end = start;
    if (b64 && p->body && start - p->body >= UP_GRAPH_PART_MIN && q % 4 == 0 && npad <= 2 &&
        g->nparts < UP_GRAPH_MAX_PARTS) {
        p->size = q / 4 * 3 - npad;
        if (!p->name[0]) {
            snprintf(p->name, sizeof(p->name), "attachment-%zu.bin", g->nparts + 1);
        }
        g->parts[g->nparts++] = *p;
    }
}

/* RFC 2046 §5.1: the top-level parts of a multipart message, the large base64
 * ones noted for upload sessions. 0, or a negative errno. */
static int up_graph_scan(struct up_graph *g, int fd, const char *boundary)
{
    struct up_graph_lr *r = malloc(sizeof(*r));
    char line[UP_GRAPH_LINE], *phdr = malloc(UP_GRAPH_PHDR_MAX);
    size_t bl = strlen(boundary), full, phlen = 0;
    uint64_t start, nb64, npad, tb64 = 0, tpad = 0;
    struct up_graph_part cur;
    int st = 0, b64 = 0, rc; /* 0 header, 1 preamble, 2 part header, 3 part body, 4 epilogue */

    g->parts = calloc(UP_GRAPH_MAX_PARTS, sizeof(*g->parts));
    if (!r || !phdr || !g->parts) {
        free(r);
        free(phdr);
        return UV_ENOMEM;
    }
    memset(&cur, 0, sizeof(cur));
    r->fd = fd;
    r->off = 0;
    r->pos = r->len = 0;
    while ((rc = up_graph_line(r, &start, line, sizeof(line), &full, &nb64, &npad)) > 0) {
        int empty = strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0;
        int delim = st > 0 && st < 4 && full >= 2 + bl && line[0] == '-' && line[1] == '-' &&
                    strncmp(line + 2, boundary, bl) == 0;

        if (st == 0) {
            st = empty ? 1 : 0;
            continue;
        }
        if (delim) {
            if (st == 3) {
                up_graph_part_end(g, &cur, start, b64, tb64, tpad);
            }
            if (line[2 + bl] == '-' && line[3 + bl] == '-') {
                st = 4;
                continue;
            }
            memset(&cur, 0, sizeof(cur));
            cur.start = start;
            st = 2;
            phlen = 0;
            continue;
        }
        if (st == 2) {
            size_t k = strlen(line);
            if (phlen + k <= UP_GRAPH_PHDR_MAX) {
                memcpy(phdr + phlen, line, k);
                phlen += k;
            }
            if (empty) {
                up__graph_part(phdr, phlen, &b64, cur.name, sizeof(cur.name), cur.ctype,
                               sizeof(cur.ctype));
                cur.body = start + full;
                tb64 = tpad = 0;
                st = 3;
            }
        } else if (st == 3) {
            tb64 += nb64;
            tpad += npad;
        }
    }
    free(r);
    free(phdr);
    return rc < 0 ? rc : 0;
}

/* The draft: the message (Bcc in front) without the spans of its large parts. */
static int up_graph_draft(struct up_graph *g, int fd, uint64_t size, const char *bcc, size_t blen)
{
    uint64_t removed = 0, pos = 0;
    size_t o = blen;
    char *raw;
    int r = 0;

    for (size_t i = 0; i < g->nparts; i++) {
        removed += g->parts[i].end - g->parts[i].start;
    }
    if (g->nparts == 0 || size - removed + blen > UP_GRAPH_MIME_MAX) {
        g->too_large = 1;
        return 0;
    }
    g->mime_len = (size_t)(size - removed) + blen;
    if (!(raw = malloc(g->mime_len + 1))) {
        return UV_ENOMEM;
    }
    memcpy(raw, bcc, blen);
    for (size_t i = 0; i <= g->nparts && r == 0; i++) {
        uint64_t to = i < g->nparts ? g->parts[i].start : size;
        r = up_graph_pread(fd, pos, raw + o, (size_t)(to - pos));
        o += (size_t)(to - pos);
        pos = i < g->nparts ? g->parts[i].end : size;
    }
    if (r == 0 && (g->body = malloc(4 * ((g->mime_len + 2) / 3) + 1))) {
        g->body_len = b64_encode(raw, g->mime_len, g->body, 4 * ((g->mime_len + 2) / 3) + 1);
    } else if (r == 0) {
        r = UV_ENOMEM;
    }
    free(raw);
    return r;
}

/* Reads the message, puts the Bcc field in front and base64-encodes it (Graph
 * wants the MIME message as one base64 text); a message larger than one request
 * becomes a draft without its large parts. Plain POSIX: a pool thread. */
static void up_graph_prepare_work(uv_work_t *w)
{
    struct up_graph *g = w->data;
    struct stat st;
    char *raw = NULL, *bcc = NULL, *h = NULL, boundary[80];
    size_t hlen, hread, total;
    long blen;
    int fd;

    if (g->check) {
        return; /* no message: the work only makes the start asynchronous */
    }
    bcc = malloc(UP_GRAPH_BCC_MAX);
    fd = open(g->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0) {
        g->file_err = -errno;
        goto out;
    }
    hread = (uint64_t)st.st_size < UP_GRAPH_HDR_MAX ? (size_t)st.st_size : UP_GRAPH_HDR_MAX;
    if (!bcc || !(h = malloc(hread + 1))) {
        g->file_err = UV_ENOMEM;
        goto out;
    }
    if ((g->file_err = up_graph_pread(fd, 0, h, hread)) != 0) {
        goto out;
    }
    {
        const char *e = memmem(h, hread, "\r\n\r\n", 4);
        hlen = e ? (size_t)(e - h) + 2 : hread;
        if (hread >= 2 && h[0] == '\r' && h[1] == '\n') {
            hlen = 0; /* no header section at all */
        }
    }
    blen = up__graph_bcc(h, hlen, g->rcpt, g->nrcpt, bcc, UP_GRAPH_BCC_MAX);
    if (blen < 0) {
        g->file_err = UV_E2BIG;
        goto out;
    }
    for (size_t i = 0; i < (size_t)blen; i++) {
        g->nbcc += bcc[i] == '@';
    }
    if ((uint64_t)st.st_size + (uint64_t)blen > UP_GRAPH_MIME_MAX) {
        g->mime_len = (size_t)st.st_size;
        if (!up__graph_boundary(h, hlen, boundary, sizeof(boundary))) {
            g->too_large = 1;
            goto out;
        }
        g->large = 1;
        if ((g->file_err = up_graph_scan(g, fd, boundary)) == 0) {
            g->file_err = up_graph_draft(g, fd, (uint64_t)st.st_size, bcc, (size_t)blen);
        }
        goto out;
    }
    total = (size_t)st.st_size + (size_t)blen;
    if (!(raw = malloc(total + 1))) {
        g->file_err = UV_ENOMEM;
        goto out;
    }
    memcpy(raw, bcc, (size_t)blen);
    if ((g->file_err = up_graph_pread(fd, 0, raw + blen, (size_t)st.st_size)) != 0) {
        goto out;
    }
    g->mime_len = total;
    g->body = malloc(4 * ((total + 2) / 3) + 1);
    if (!g->body) {
        g->file_err = UV_ENOMEM;
        goto out;
    }
    g->body_len = b64_encode(raw, total, g->body, 4 * ((total + 2) / 3) + 1);
out:
    if (fd >= 0) {
        close(fd);
    }
    free(raw);
    free(h);
    free(bcc);
}

/* The next chunk of the current part, decoded from its base64 text (thread pool). */
static void up_graph_chunk_work(uv_work_t *w)
{
    struct up_graph *g = w->data;
    const struct up_graph_part *p = &g->parts[g->cur];
    uint64_t want = p->size - g->up_off, pos = g->raw_pos;
    unsigned char q[4];
    size_t nq = 0, npad = 0;
    char buf[64 * 1024];
    int fd;

    if (want > UP_GRAPH_CHUNK) {
        want = UP_GRAPH_CHUNK;
    }
    g->chunk_len = 0;
    if (!g->chunk && !(g->chunk = malloc(UP_GRAPH_CHUNK))) {
        g->file_err = UV_ENOMEM;
        return;
    }
    if ((fd = open(g->path, O_RDONLY | O_CLOEXEC)) < 0) {
        g->file_err = -errno;
        return;
    }
    while (g->chunk_len < want && pos < p->end) {
        size_t n = p->end - pos < sizeof(buf) ? (size_t)(p->end - pos) : sizeof(buf);
        if ((g->file_err = up_graph_pread(fd, pos, buf, n)) != 0) {
            break;
        }
        for (size_t i = 0; i < n && g->chunk_len < want; i++) {
            int v = up_graph_b64val((unsigned char)buf[i]);
            if (v < 0 && buf[i] != '=') {
                continue; /* line ends and other blanks (RFC 2045 §6.8) */
            }
            npad += buf[i] == '=';
            q[nq++] = (unsigned char)(v < 0 ? 0 : v);
            if (nq == 4) {
                unsigned char b[3] = {(unsigned char)(q[0] << 2 | q[1] >> 4),
                                      (unsigned char)(q[1] << 4 | q[2] >> 2),
                                      (unsigned char)(q[2] << 6 | q[3])};
                size_t k = npad > 2 ? 0 : 3 - npad;
                if (k > want - g->chunk_len) {
                    k = (size_t)(want - g->chunk_len);
                }
                memcpy(g->chunk + g->chunk_len, b, k);
                g->chunk_len += k;
                nq = npad = 0;
                if (g->chunk_len == want) {
                    pos += i + 1;
                    goto done;
                }
            }
        }
        pos += n;
    }
done:
    g->raw_pos = pos;
    close(fd);
    if (!g->file_err && g->chunk_len != want) {
        g->file_err = UV_EIO; /* the text ended early: the scan counted otherwise */
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
        const struct up_graph_part *p = &g->parts[g->cur];
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
            const struct up_graph_part *p = &g->parts[g->cur];
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
            rq.body = g->body;
            rq.body_len = g->body_len;
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
        g->raw_pos = g->parts[g->cur].body;
        up_graph_next_chunk(g);
        return;
    case UG_PUT:
        g->up_off += g->chunk_len;
        if (g->up_off < g->parts[g->cur].size) {
            up_graph_next_chunk(g);
            return;
        }
        log_info(g->qid, "graph",
                 "qid=%016" PRIx64 " relay=graph:%s event=uploaded attachment=%zu size=%" PRIu64
                 " request_id=%s",
                 g->qid, g->up->name, g->cur + 1, g->parts[g->cur].size, rid[0] ? rid : "-");
        g->step = ++g->cur < g->nparts ? UG_SESSION : UG_SEND;
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
    if (g->too_large) {
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
    g->step = g->check ? UG_CHECK : g->large ? UG_DRAFT : UG_SENDMAIL;
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
