/* up_oauth: access tokens for XOAUTH2. A provider owns its timer, its cached
 * token and the refresh token; each fetch is a struct up_oauth_fetch that owns
 * the HTTPS request (up_http) or the command's run (up_exec), and frees itself
 * when the last of them is gone, so a finished or aborted fetch never touches the
 * provider again. Token requests are RFC 6749 §4.4 / §6 forms, token responses
 * RFC 6749 §5.1 / §5.2 JSON. */
#include "upstream/up_oauth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>
#include <uv.h>

#include "common/afile.h"
#include "common/log.h"
#include "common/tls_ca.h"
#include "conf/conf.h"
#include "upstream/up_exec.h"
#include "upstream/up_http.h"

#ifndef UP_OAUTH_TIMEOUT_MS        /* tests may shorten it */
#define UP_OAUTH_TIMEOUT_MS 30000u /* a whole fetch: DNS, TLS, HTTP or the command */
#endif
#define UP_OAUTH_RESP_MAX (64u * 1024u)  /* response or command output */
#define UP_OAUTH_TOKEN_MAX 16384u        /* Microsoft's JWTs are a few KiB */
#define UP_OAUTH_DEFAULT_TTL 3600u       /* expires_in is only RECOMMENDED (§5.1) */
#define UP_OAUTH_COMMAND_TTL 300u        /* a bare token from the command */
#define UP_OAUTH_MAX_TTL (366u * 86400u) /* larger values are treated as this */
#define UP_OAUTH_EARLY_MS 60000u         /* refresh at most this long before expiry */
#define UP_OAUTH_MIN_LEFT_MS 10000u      /* a stale token this fresh is used during a refresh */
#define UP_OAUTH_RETRY_MS 30000u         /* after a failed refresh, keep the cached token */
#define UP_OAUTH_ERR_MAX 300

enum up_oauth_state {
    UP_OAUTH_IDLE,
    UP_OAUTH_CA,      /* reading ca_file in the thread pool (once per provider) */
    UP_OAUTH_HTTP,    /* the token request (up_http: resolve, connect, tls, http) */
    UP_OAUTH_COMMAND, /* oauth_token_command running */
};

struct up_oauth_wait {
    struct up_oauth_wait *next;
    up_oauth_cb *cb;
    void *arg;
};

struct up_oauth_fetch {
    struct up_oauth *o;   /* NULL once the fetch ended: callbacks only clean up */
    int refs;             /* the provider's + CA work */
    struct up_http *http; /* the token request while it runs */
    struct up_exec *exec; /* oauth_token_command while it runs */
    uv_work_t ca_work;
    char *ca_path;
    struct tls_ca *ca;
    char ca_err[UP_OAUTH_ERR_MAX];
};

/* Refresh-token write-back, done in the thread pool (common/afile). */
struct up_oauth_write {
    uv_work_t work;
    struct up_oauth *o;
    char *path, *token;
    const char *failed; /* the step that failed, or NULL */
    int err;            /* its errno */
};

struct up_oauth {
    struct up_oauth *next; /* in its set */
    uv_loop_t *loop;
    enum up_oauth_state state;
    int refs; /* owner + timer + fetch + write in flight */
    unsigned closing : 1, writing : 1, write_again : 1;
    uv_timer_t timer;
    struct up_oauth_fetch *fetch;
    struct up_oauth_wait *waiters;

    /* identity, copied from the first device that uses it */
    char *device; /* for logs */
    enum conf_oauth_grant grant;
    char *token_url, *host, *path, *client_id, *scope, *refresh_file, *command, *ca_file;
    char **argv;
    uint16_t port;
    /* secrets */
    char *client_secret;
    char *refresh_token; /* the current one (rotations included) */
    char *refresh_conf;  /* the value a configuration last read from the file */
    struct tls_ca *ca;   /* read from ca_file on the first fetch */

    char *token; /* the cached access token */
    /* up_oauth_post: the body to send instead of a token request, and its cb */
    char *post_body;
    up_oauth_post_cb *post_cb;
    void *post_arg;
    uint64_t refresh_at, expires_at, fetch_start; /* uv_now() ms */
};

struct up_oauth_set {
    uv_loop_t *loop;
    struct up_oauth *head;
};

static void up_oauth_finish(struct up_oauth *o, const char *token, unsigned ttl, const char *err);

static const char *up_oauth_strstate(enum up_oauth_state st)
{
    switch (st) {
    case UP_OAUTH_IDLE:
        return "idle";
    case UP_OAUTH_CA:
        return "ca";
    case UP_OAUTH_HTTP:
        return "http";
    case UP_OAUTH_COMMAND:
        return "command";
    }
    abort();
}

static void up_oauth_enter_state(struct up_oauth *o, enum up_oauth_state st)
{
    log_debug(0, "oauth", "device=%s state=%s->%s", o->device, up_oauth_strstate(o->state),
              up_oauth_strstate(st));
    o->state = st;
}

static const char *up_oauth_grant_name(enum conf_oauth_grant g)
{
    switch (g) {
    case CONF_OAUTH_REFRESH_TOKEN:
        return "refresh_token";
    case CONF_OAUTH_CLIENT_CREDENTIALS:
        return "client_credentials";
    case CONF_OAUTH_COMMAND:
        return "command";
    }
    abort();
}

static void up_oauth_wipe(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

/* ---- lifetime ------------------------------------------------------------------------- */

static void up_oauth_unref(struct up_oauth *o)
{
    if (--o->refs > 0) {
        return;
    }
    up_oauth_wipe(&o->client_secret);
    up_oauth_wipe(&o->refresh_token);
    up_oauth_wipe(&o->refresh_conf);
    up_oauth_wipe(&o->token);
    up_oauth_wipe(&o->post_body);
    if (o->ca) {
        tls_ca_free(o->ca);
    }
    for (size_t i = 0; o->argv && o->argv[i]; i++) {
        free(o->argv[i]);
    }
    free(o->argv);
    free(o->device);
    free(o->token_url);
    free(o->host);
    free(o->path);
    free(o->client_id);
    free(o->scope);
    free(o->refresh_file);
    free(o->command);
    free(o->ca_file);
    free(o);
}

static void up_oauth_fetch_unref(struct up_oauth_fetch *f)
{
    if (--f->refs > 0) {
        return;
    }
    if (f->ca) {
        tls_ca_free(f->ca);
    }
    free(f->ca_path);
    free(f);
}

static void up_oauth_timer_close_cb(uv_handle_t *h)
{
    up_oauth_unref(h->data);
}

/* Detaches the fetch from its provider and stops what it still does; its
 * callbacks then only release it. */
static void up_oauth_fetch_end(struct up_oauth_fetch *f)
{
    f->o = NULL;
    if (f->http) {
        up_http_cancel(f->http);
        f->http = NULL;
    }
    if (f->exec) {
        up_exec_cancel(f->exec); /* kills the command's process group */
        f->exec = NULL;
    }
    up_oauth_fetch_unref(f); /* the provider's reference */
}

/* ---- tokens and waiters ---------------------------------------------------------------- */

/* Token characters: printable ASCII without blanks (RFC 6750 §2.1 b64token and
 * JWTs); anything else could not go into the SASL message safely. */
static int up_oauth_valid_token(const char *t, size_t len)
{
    if (len == 0 || len > UP_OAUTH_TOKEN_MAX) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (t[i] <= ' ' || t[i] >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Refresh at 80% of the lifetime, but no earlier than 60 s before expiry. */
static void up_oauth_store(struct up_oauth *o, const char *token, unsigned ttl)
{
    uint64_t now = uv_now(o->loop), life = (uint64_t)ttl * 1000u;
    uint64_t early = life / 5 < UP_OAUTH_EARLY_MS ? life / 5 : UP_OAUTH_EARLY_MS;
    char *copy = strdup(token);

    up_oauth_wipe(&o->token);
    if (!copy) {
        return;
    }
    o->token = copy;
    o->expires_at = now + life;
    o->refresh_at = now + life - early;
}

/* Calls every request that waited for this fetch. A callback may ask again
 * (a retry after upstream refused the token): that request is new and waits for
 * the next fetch or gets the cached token at once. */
static void up_oauth_notify(struct up_oauth *o, const char *token, const char *err)
{
    struct up_oauth_wait *list = o->waiters;

    o->waiters = NULL;
    o->refs++; /* a callback may free the set */
    while (list) {
        struct up_oauth_wait *w = list;
        list = w->next;
        w->cb(w->arg, token, err);
        free(w);
    }
    up_oauth_unref(o);
}

/* The fetch is over: with a token (ttl seconds), or with err. A refresh that
 * failed while the cached token is still valid hands out the cached one. */
static void up_oauth_finish(struct up_oauth *o, const char *token, unsigned ttl, const char *err)
{
    uint64_t ms = uv_now(o->loop) - o->fetch_start;
    struct up_oauth_fetch *f = o->fetch;
    char q[UP_OAUTH_ERR_MAX + 40];

    if (o->post_cb) { /* up_oauth_post failed: no token is involved */
        up_oauth_post_cb *cb = o->post_cb;

        o->post_cb = NULL;
        o->fetch = NULL;
        uv_timer_stop(&o->timer);
        up_oauth_enter_state(o, UP_OAUTH_IDLE);
        up_oauth_wipe(&o->post_body);
        if (f) {
            up_oauth_fetch_end(f);
        }
        cb(o->post_arg, 0, NULL, 0, err ? err : "no answer");
        return;
    }
    o->fetch = NULL;
    uv_timer_stop(&o->timer);
    up_oauth_enter_state(o, UP_OAUTH_IDLE);
    if (token) {
        up_oauth_store(o, token, ttl); /* token may point into the fetch's buffer */
    }
    if (f) {
        up_oauth_fetch_end(f);
    }
    if (token) {
        log_info(0, "oauth", "device=%s event=token grant=%s expires_in=%u ms=%llu", o->device,
                 up_oauth_grant_name(o->grant), ttl, (unsigned long long)ms);
        up_oauth_notify(o, o->token, o->token ? NULL : "out of memory");
        return;
    }
    if (o->token && uv_now(o->loop) < o->expires_at) {
        uint64_t retry = uv_now(o->loop) + UP_OAUTH_RETRY_MS;
        o->refresh_at = retry < o->expires_at ? retry : o->expires_at;
        log_warn(0, "oauth", "device=%s event=refresh_failed error=\"%s\" using=cached_token",
                 o->device, log_quote(err, strlen(err), q, sizeof(q)));
        up_oauth_notify(o, o->token, NULL);
        return;
    }
    log_debug(0, "oauth", "device=%s event=token_failed error=\"%s\" ms=%llu", o->device,
              log_quote(err, strlen(err), q, sizeof(q)), (unsigned long long)ms);
    up_oauth_notify(o, NULL, err);
}

static void up_oauth_failf(struct up_oauth *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void up_oauth_failf(struct up_oauth *o, const char *fmt, ...)
{
    char err[UP_OAUTH_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, sizeof(err), fmt, ap);
    va_end(ap);
    up_oauth_finish(o, NULL, 0, err);
}

static void up_oauth_timeout_cb(uv_timer_t *t)
{
    struct up_oauth *o = t->data;

    if (o->grant == CONF_OAUTH_COMMAND) {
        up_oauth_failf(o, "oauth_token_command gave no token within %u s",
                       UP_OAUTH_TIMEOUT_MS / 1000u);
    } else {
        const struct up_oauth_fetch *f = o->fetch;

        up_oauth_failf(o, "token endpoint %s:%u: no answer within %u s (state %s)", o->host,
                       (unsigned)o->port, UP_OAUTH_TIMEOUT_MS / 1000u,
                       f && f->http ? up_http_stage(f->http) : up_oauth_strstate(o->state));
    }
}

/* ---- refresh-token write-back ---------------------------------------------------------- */

/* In the thread pool: common/afile's atomic rewrite (a temporary file next to the
 * old one, mode 0600, synced, renamed over it, directory synced). */
static void up_oauth_write_work(uv_work_t *req)
{
    struct up_oauth_write *w = req->data;
    struct iovec v[2] = {{.iov_base = w->token, .iov_len = strlen(w->token)},
                         {.iov_base = "\n", .iov_len = 1}};

    w->err = afile_writev(w->path, v, 2, 0600, NULL, &w->failed);
}

static void up_oauth_write(struct up_oauth *o);

static void up_oauth_write_done(uv_work_t *req, int status)
{
    struct up_oauth_write *w = req->data;
    struct up_oauth *o = w->o;

    if (status < 0 && !w->failed) {
        w->failed = "schedule";
        w->err = -status;
    }
    if (w->failed) {
        log_err(0, "oauth",
                "device=%s event=refresh_token_not_saved file=%s step=\"%s\" error=\"%s\"",
                o->device, w->path, w->failed, strerror(w->err));
    } else {
        log_info(0, "oauth", "device=%s event=refresh_token_saved file=%s", o->device, w->path);
    }
    explicit_bzero(w->token, strlen(w->token));
    free(w->token);
    free(w->path);
    free(w);
    o->writing = 0;
    if (o->write_again) { /* rotated again meanwhile: the newest one must land last */
        o->write_again = 0;
        up_oauth_write(o);
    }
    up_oauth_unref(o);
}

static void up_oauth_write(struct up_oauth *o)
{
    struct up_oauth_write *w;

    if (o->writing) {
        o->write_again = 1;
        return;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->path = strdup(o->refresh_file)) || !(w->token = strdup(o->refresh_token))) {
        if (w) {
            free(w->path);
            free(w);
        }
        log_err(0, "oauth", "device=%s event=refresh_token_not_saved error=\"out of memory\"",
                o->device);
        return;
    }
    w->o = o;
    w->work.data = w;
    if (uv_queue_work(o->loop, &w->work, up_oauth_write_work, up_oauth_write_done) != 0) {
        explicit_bzero(w->token, strlen(w->token));
        free(w->token);
        free(w->path);
        free(w);
        log_err(0, "oauth", "device=%s event=refresh_token_not_saved error=\"cannot schedule\"",
                o->device);
        return;
    }
    o->writing = 1;
    o->refs++;
}

/* RFC 6749 §6: the server may issue a new refresh token; the old one may stop
 * working at once, so the new one is kept in memory and saved before anything else. */
static void up_oauth_rotate(struct up_oauth *o, const char *rt)
{
    char *copy;

    if (o->grant != CONF_OAUTH_REFRESH_TOKEN || !o->refresh_file ||
        strcmp(rt, o->refresh_token) == 0) {
        return;
    }
    copy = strdup(rt);
    if (!copy) {
        log_err(0, "oauth", "device=%s event=refresh_token_not_saved error=\"out of memory\"",
                o->device);
        return;
    }
    up_oauth_wipe(&o->refresh_token);
    o->refresh_token = copy;
    log_info(0, "oauth", "device=%s event=refresh_token_rotated file=%s", o->device,
             o->refresh_file);
    up_oauth_write(o);
}

/* ---- token responses ------------------------------------------------------------------- */

/* A value from the server, for an error message: printable ASCII only, short. */
static void up_oauth_clean(const char *in, char *out, size_t cap)
{
    size_t o = 0;

    for (; in && *in && o + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = c >= ' ' && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    out[o] = '\0';
}

/* An error description must not echo a secret back into the log. */
static int up_oauth_mentions_secret(const struct up_oauth *o, const char *s)
{
    const char *secrets[] = {o->client_secret, o->refresh_token, o->token};

    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (secrets[i] && strlen(secrets[i]) >= 8 && strstr(s, secrets[i])) {
            return 1;
        }
    }
    return 0;
}

static void up_oauth_json_wipe(cJSON *item)
{
    if (cJSON_IsString(item) && item->valuestring) {
        explicit_bzero(item->valuestring, strlen(item->valuestring));
    }
}

/* RFC 6749 §5.1 (200, access_token, token_type Bearer, expires_in, refresh_token)
 * or §5.2 (400/401 with error and error_description). defttl: when expires_in is
 * missing. what: "token endpoint host:port" or "oauth_token_command". */
static void up_oauth_response(struct up_oauth *o, int status, const char *body, size_t len,
                              unsigned defttl, const char *what)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    cJSON *at, *tt, *ei, *rt;
    double ttl = defttl;

    if (status != 200) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "error_description");
        char ec[64], dc[160];

        up_oauth_clean(cJSON_IsString(e) ? e->valuestring : NULL, ec, sizeof(ec));
        up_oauth_clean(cJSON_IsString(d) ? d->valuestring : NULL, dc, sizeof(dc));
        if (cJSON_IsString(d) && up_oauth_mentions_secret(o, d->valuestring)) {
            dc[0] = '\0';
        }
        cJSON_Delete(j);
        up_oauth_failf(o, "%s answered HTTP %d%s%s%s%s%s", what, status, ec[0] ? " " : "", ec,
                       dc[0] ? " (" : "", dc, dc[0] ? ")" : "");
        return;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        up_oauth_failf(o, "%s: the token response is not a JSON object", what);
        return;
    }
    at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    tt = cJSON_GetObjectItemCaseSensitive(j, "token_type");
    ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
    rt = cJSON_GetObjectItemCaseSensitive(j, "refresh_token");
    if (!cJSON_IsString(at) || !up_oauth_valid_token(at->valuestring, strlen(at->valuestring))) {
        up_oauth_json_wipe(at);
        up_oauth_json_wipe(rt);
        cJSON_Delete(j);
        up_oauth_failf(o, "%s: no usable access_token in the response", what);
        return;
    }
    if (tt && (!cJSON_IsString(tt) || strcasecmp(tt->valuestring, "Bearer") != 0)) {
        char tc[40];
        up_oauth_clean(cJSON_IsString(tt) ? tt->valuestring : "?", tc, sizeof(tc));
        up_oauth_json_wipe(at);
        up_oauth_json_wipe(rt);
        cJSON_Delete(j);
        up_oauth_failf(o, "%s: token_type %s, not Bearer", what, tc);
        return;
    }
    if (cJSON_IsNumber(ei)) {
        ttl = ei->valuedouble;
    } else if (cJSON_IsString(ei)) { /* some servers quote it */
        ttl = strtod(ei->valuestring, NULL);
    }
    if (!(ttl >= 1)) {
        ttl = 1;
    } else if (ttl > UP_OAUTH_MAX_TTL) {
        ttl = UP_OAUTH_MAX_TTL;
    }
    if (cJSON_IsString(rt) && rt->valuestring[0]) {
        up_oauth_rotate(o, rt->valuestring);
    }
    up_oauth_finish(o, at->valuestring, (unsigned)ttl, NULL);
    up_oauth_json_wipe(at);
    up_oauth_json_wipe(rt);
    cJSON_Delete(j);
}

/* ---- the token request ----------------------------------------------------------------- */

/* The form, client authentication in the body (RFC 6749 §2.3.1); or
 * up_oauth_post's. NULL when out of memory; *len set. Holds secrets. */
static char *up_oauth_form(const struct up_oauth *o, size_t *len)
{
    size_t cap = 3 * (strlen(o->client_id) + (o->client_secret ? strlen(o->client_secret) : 0) +
                      (o->scope ? strlen(o->scope) : 0) +
                      (o->refresh_token ? strlen(o->refresh_token) : 0)) +
                 200;
    size_t blen = 0;
    char *body;
    int ok;

    if (o->post_body) { /* up_oauth_post */
        *len = strlen(o->post_body);
        return strdup(o->post_body);
    }
    if (!(body = malloc(cap))) {
        return NULL;
    }
    ok = up_http_form_add(body, cap, &blen, "grant_type", up_oauth_grant_name(o->grant)) == 0;
    if (ok && o->grant == CONF_OAUTH_REFRESH_TOKEN) {
        ok = up_http_form_add(body, cap, &blen, "refresh_token", o->refresh_token) == 0;
    }
    ok = ok && up_http_form_add(body, cap, &blen, "client_id", o->client_id) == 0;
    if (ok && o->client_secret) {
        ok = up_http_form_add(body, cap, &blen, "client_secret", o->client_secret) == 0;
    }
    if (ok && o->scope) {
        ok = up_http_form_add(body, cap, &blen, "scope", o->scope) == 0;
    }
    if (!ok) {
        explicit_bzero(body, cap);
        free(body);
        return NULL;
    }
    *len = blen;
    return body;
}

/* The token endpoint's answer, or why there is none (err: "host:port: ..."). */
static void up_oauth_on_http(void *arg, const struct up_http_resp *r, const char *err)
{
    struct up_oauth_fetch *f = arg;
    struct up_oauth *o = f->o; /* set: an ended fetch cancelled its request */
    char what[300];

    f->http = NULL; /* gone after this call */
    if (!r) {
        up_oauth_failf(o, "token endpoint %s", err);
        return;
    }
    if (o->post_cb) { /* up_oauth_post: the caller reads the answer */
        up_oauth_post_cb *cb = o->post_cb;

        o->post_cb = NULL;
        o->fetch = NULL;
        uv_timer_stop(&o->timer);
        up_oauth_enter_state(o, UP_OAUTH_IDLE);
        up_oauth_wipe(&o->post_body);
        cb(o->post_arg, r->status, r->body, r->body_len, NULL); /* body is up_http's */
        up_oauth_fetch_end(f);
        return;
    }
    snprintf(what, sizeof(what), "token endpoint %s:%u", o->host, (unsigned)o->port);
    up_oauth_response(o, r->status, r->body, r->body_len, UP_OAUTH_DEFAULT_TTL, what);
}

static void up_oauth_request(struct up_oauth *o, struct up_oauth_fetch *f)
{
    struct up_http_req rq = {
        .method = "POST",
        .host = o->host,
        .port = o->port,
        .path = o->path,
        .headers = "Accept: application/json\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\n",
        .ca = o->ca,
        .resp_max = UP_OAUTH_RESP_MAX,
    };
    char *body = up_oauth_form(o, &rq.body_len);
    int r;

    if (!body) {
        up_oauth_failf(o, "out of memory");
        return;
    }
    rq.body = body;
    up_oauth_enter_state(o, UP_OAUTH_HTTP);
    r = up_http_request(o->loop, &rq, up_oauth_on_http, f, &f->http);
    explicit_bzero(body, rq.body_len);
    free(body);
    if (r == UV_ENOMEM) {
        up_oauth_failf(o, "out of memory");
    } else if (r < 0) {
        up_oauth_failf(o, "token endpoint %s: %s", o->host, uv_strerror(r));
    }
}

/* The trust anchors are read once, off the loop (a system bundle is ~200 KiB of PEM). */
static void up_oauth_ca_work(uv_work_t *req)
{
    struct up_oauth_fetch *f = req->data;
    f->ca = tls_ca_load(f->ca_path, f->ca_err, sizeof(f->ca_err));
}

static void up_oauth_ca_done(uv_work_t *req, int status)
{
    struct up_oauth_fetch *f = req->data;
    struct up_oauth *o = f->o;

    if (o && status == 0 && f->ca) {
        o->ca = f->ca;
        f->ca = NULL;
        up_oauth_request(o, f);
    } else if (o) {
        up_oauth_failf(o, "ca_file: %s", status < 0 ? uv_strerror(status) : f->ca_err);
    }
    up_oauth_fetch_unref(f);
}

/* ---- oauth_token_command --------------------------------------------------------------- */

/* The command's output: a bare token, or a token response (JSON). */
static void up_oauth_on_exec(void *arg, int64_t status, int signal, char *out, size_t len,
                             const char *err)
{
    struct up_oauth_fetch *f = arg;
    struct up_oauth *o = f->o; /* set: an ended fetch cancelled the command */
    char *s = out, *e = out + len;

    f->exec = NULL; /* gone after this call */
    if (err) {
        up_oauth_failf(o, "oauth_token_command %s", err);
        return;
    }
    if (signal) {
        up_oauth_failf(o, "oauth_token_command killed by signal %d", signal);
        return;
    }
    if (status != 0) {
        up_oauth_failf(o, "oauth_token_command exited with status %lld", (long long)status);
        return;
    }
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
        s++;
    }
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) {
        e--;
    }
    *e = '\0';
    if (s < e && *s == '{') { /* a token response, for commands that know the lifetime */
        up_oauth_response(o, 200, s, (size_t)(e - s), UP_OAUTH_COMMAND_TTL, "oauth_token_command");
    } else if (!up_oauth_valid_token(s, (size_t)(e - s))) {
        up_oauth_failf(o, "oauth_token_command printed %s", s == e ? "nothing" : "no usable token");
    } else {
        up_oauth_finish(o, s, UP_OAUTH_COMMAND_TTL, NULL);
    }
}

static void up_oauth_spawn(struct up_oauth *o, struct up_oauth_fetch *f)
{
    int r;

    up_oauth_enter_state(o, UP_OAUTH_COMMAND);
    r = up_exec_start(o->loop, o->argv, UP_OAUTH_RESP_MAX, up_oauth_on_exec, f, &f->exec);
    if (r < 0) {
        up_oauth_failf(o, "cannot run oauth_token_command %s: %s", o->argv[0], uv_strerror(r));
    }
}

/* ---- fetching -------------------------------------------------------------------------- */

static void up_oauth_fetch(struct up_oauth *o);

int up_oauth_post(struct up_oauth *o, const char *form, up_oauth_post_cb *cb, void *arg)
{
    if (o->closing || o->fetch || o->grant == CONF_OAUTH_COMMAND) {
        return -1;
    }
    o->post_body = strdup(form);
    if (!o->post_body) {
        return -1;
    }
    o->post_cb = cb;
    o->post_arg = arg;
    up_oauth_fetch(o);
    return 0;
}

static void up_oauth_fetch(struct up_oauth *o)
{
    struct up_oauth_fetch *f = calloc(1, sizeof(*f));

    if (!f) {
        up_oauth_finish(o, NULL, 0, "out of memory");
        return;
    }
    f->o = o;
    f->refs = 1;
    o->fetch = f;
    o->fetch_start = uv_now(o->loop);
    uv_timer_start(&o->timer, up_oauth_timeout_cb, UP_OAUTH_TIMEOUT_MS, 0);
    if (o->grant == CONF_OAUTH_COMMAND) {
        up_oauth_spawn(o, f);
        return;
    }
    if (o->ca) {
        up_oauth_request(o, f);
        return;
    }
    up_oauth_enter_state(o, UP_OAUTH_CA);
    f->ca_path = strdup(o->ca_file); /* the work item must not touch o */
    f->ca_work.data = f;
    if (!f->ca_path) {
        up_oauth_failf(o, "out of memory");
        return;
    }
    if (uv_queue_work(o->loop, &f->ca_work, up_oauth_ca_work, up_oauth_ca_done) != 0) {
        up_oauth_failf(o, "cannot schedule reading ca_file");
        return;
    }
    f->refs++;
}

int up_oauth_get(struct up_oauth *o, up_oauth_cb *cb, void *arg)
{
    struct up_oauth_wait *w, **tail;

    uint64_t now = uv_now(o->loop);
    int fresh = o->token && now < o->refresh_at;
    int usable = o->token && now + UP_OAUTH_MIN_LEFT_MS < o->expires_at;

    if (o->closing) {
        return -1;
    }
    if (!fresh && usable && o->state == UP_OAUTH_IDLE) {
        up_oauth_fetch(o); /* in the background: the cached token is still good for a while */
    }
    if (o->token && (fresh || usable)) {
        cb(arg, o->token, NULL);
        return 0;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        return -1;
    }
    w->cb = cb;
    w->arg = arg;
    for (tail = &o->waiters; *tail; tail = &(*tail)->next) {
    }
    *tail = w;
    if (o->state == UP_OAUTH_IDLE) {
        up_oauth_fetch(o);
    }
    return 0;
}

void up_oauth_cancel(struct up_oauth *o, void *arg)
{
    for (struct up_oauth_wait **p = &o->waiters; *p;) {
        struct up_oauth_wait *w = *p;
        if (w->arg == arg) {
            *p = w->next;
            free(w);
        } else {
            p = &w->next;
        }
    }
}

void up_oauth_invalidate(struct up_oauth *o, const char *token)
{
    if (o->token && token && strcmp(o->token, token) == 0) {
        up_oauth_wipe(&o->token);
        o->refresh_at = o->expires_at = 0;
    }
}

/* ---- construction ---------------------------------------------------------------------- */

static int up_oauth_dup(char **dst, const char *src)
{
    if (!src) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

struct up_oauth *up_oauth_new(uv_loop_t *loop, const struct conf_device *d)
{
    const struct conf_oauth *c = &d->oauth;
    struct up_oauth *o;
    size_t n = 0;

    if (d->auth == CONF_AUTH_PASSWORD) {
        return NULL;
    }
    o = calloc(1, sizeof(*o));
    if (!o) {
        return NULL;
    }
    o->loop = loop;
    o->grant = c->grant;
    o->port = c->port;
    if (up_oauth_dup(&o->device, d->name) || up_oauth_dup(&o->token_url, c->token_url) ||
        up_oauth_dup(&o->host, c->host) || up_oauth_dup(&o->path, c->path) ||
        up_oauth_dup(&o->client_id, c->client_id) || up_oauth_dup(&o->scope, c->scope) ||
        up_oauth_dup(&o->refresh_file, c->refresh_token_file) ||
        up_oauth_dup(&o->command, c->command) ||
        up_oauth_dup(&o->ca_file, d->up ? d->up->ca_file : NULL) ||
        up_oauth_dup(&o->client_secret, c->client_secret) ||
        up_oauth_dup(&o->refresh_token, c->refresh_token) ||
        up_oauth_dup(&o->refresh_conf, c->refresh_token)) {
        goto fail;
    }
    if (c->argv) {
        while (c->argv[n]) {
            n++;
        }
        o->argv = calloc(n + 1, sizeof(*o->argv));
        for (size_t i = 0; o->argv && i < n; i++) {
            if (up_oauth_dup(&o->argv[i], c->argv[i])) {
                goto fail;
            }
        }
        if (!o->argv) {
            goto fail;
        }
    }
    if (o->grant != CONF_OAUTH_COMMAND && (!o->host || !o->path || !o->client_id || !o->ca_file)) {
        goto fail;
    }
    if (o->grant == CONF_OAUTH_COMMAND && !o->argv) {
        goto fail;
    }
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    o->refs = 2; /* owner + timer */
    return o;
fail:
    o->refs = 1;
    up_oauth_unref(o);
    return NULL;
}

void up_oauth_free(struct up_oauth *o)
{
    if (!o || o->closing) {
        return;
    }
    o->closing = 1;
    if (o->fetch) {
        up_oauth_finish(o, NULL, 0, "relay25 is shutting down");
    }
    uv_close((uv_handle_t *)&o->timer, up_oauth_timer_close_cb);
    up_oauth_unref(o);
}

/* ---- the set --------------------------------------------------------------------------- */

static int up_oauth_streq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Same token source: endpoint, client, grant, refresh-token file or command, CA. */
static int up_oauth_same(const struct up_oauth *o, const struct conf_device *d)
{
    const struct conf_oauth *c = &d->oauth;

    return o->grant == c->grant && up_oauth_streq(o->token_url, c->token_url) &&
           up_oauth_streq(o->client_id, c->client_id) && up_oauth_streq(o->scope, c->scope) &&
           up_oauth_streq(o->refresh_file, c->refresh_token_file) &&
           up_oauth_streq(o->command, c->command) &&
           up_oauth_streq(o->ca_file, d->up ? d->up->ca_file : NULL);
}

/* A reload read the secrets again: a new client secret is taken as it is; a
 * refresh token is taken only when the file changed behind relay25's back (it
 * also reads back what the provider itself wrote after a rotation). */
static void up_oauth_update(struct up_oauth *o, const struct conf_device *d)
{
    const struct conf_oauth *c = &d->oauth;
    char *copy;

    if (c->client_secret && !up_oauth_streq(o->client_secret, c->client_secret) &&
        (copy = strdup(c->client_secret))) {
        up_oauth_wipe(&o->client_secret);
        o->client_secret = copy;
    }
    if (c->refresh_token && !up_oauth_streq(o->refresh_conf, c->refresh_token) &&
        (copy = strdup(c->refresh_token))) {
        up_oauth_wipe(&o->refresh_conf);
        o->refresh_conf = copy;
        if (!o->writing && !up_oauth_streq(o->refresh_token, copy) &&
            (copy = strdup(c->refresh_token))) {
            up_oauth_wipe(&o->refresh_token);
            o->refresh_token = copy;
            log_info(0, "oauth", "device=%s event=refresh_token_reloaded file=%s", o->device,
                     o->refresh_file);
        }
    }
}

struct up_oauth_set *up_oauth_set_new(uv_loop_t *loop)
{
    struct up_oauth_set *set = calloc(1, sizeof(*set));

    if (set) {
        set->loop = loop;
    }
    return set;
}

struct up_oauth *up_oauth_set_find(struct up_oauth_set *set, const struct conf_device *d)
{
    struct up_oauth *o;

    if (!set || d->auth == CONF_AUTH_PASSWORD) {
        return NULL;
    }
    for (o = set->head; o; o = o->next) {
        if (up_oauth_same(o, d)) {
            up_oauth_update(o, d);
            return o;
        }
    }
    o = up_oauth_new(set->loop, d);
    if (o) {
        o->next = set->head;
        set->head = o;
    }
    return o;
}

void up_oauth_set_free(struct up_oauth_set *set)
{
    if (!set) {
        return;
    }
    while (set->head) {
        struct up_oauth *o = set->head;
        set->head = o->next;
        up_oauth_free(o);
    }
    free(set);
}
