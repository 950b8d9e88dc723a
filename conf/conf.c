/* conf: loads the immutable struct conf (defaults first, then one INI file or the
 * RELAY25_* environment, then the cross-checks and the secrets), frees it, and
 * counts its holders. Owns the parse state and its error text (every error on its
 * own line, "file:line: ...", the first first). Timeout defaults follow RFC 5321
 * §4.5.3.2. */
#include "conf/conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/tls_ca.h"
#include "common/tls_cert.h"
#include "conf/conf_int.h"

static void conf_failv(struct parse *p, const struct where *w, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Records every error (CONF_LOAD_STRICT; else only the first), one per line in err,
 * the first first: a user fixes them all in one round instead of one per run. After
 * CONF_MAX_ERRORS one line says more were left out. A truncated message is still the
 * right message, so snprintf truncation is accepted. */
static void conf_failv(struct parse *p, const struct where *w, const char *fmt, va_list ap)
{
    char *e;
    size_t cap, n = 0;
    int r = 0;

    if (!p->failed) {
        p->fail_line = w && p->file ? w->line : 0;
    } else if (!p->strict) {
        p->failed++;
        return; /* callers without CONF_LOAD_STRICT get the first error alone */
    }
    p->failed++;
    /* a later error needs room for its newline and some text */
    if (!p->err || p->errlen == 0 || p->failed > CONF_MAX_ERRORS + 1 ||
        (p->errused > 0 && p->errused + 2 >= p->errlen)) {
        return;
    }
    e = p->err + p->errused;
    cap = p->errlen - p->errused;
    if (p->errused > 0) {
        *e++ = '\n';
        cap--;
    }
    e[0] = '\0';
    if (p->failed == CONF_MAX_ERRORS + 1) {
        snprintf(e, cap, "(more errors not shown)");
        p->errused += strlen(p->err + p->errused);
        return;
    }
    if (w && p->file) {
        if (w->line > 0) {
            r = snprintf(e, cap, "%s:%d: %s%s", p->file, w->line, w->key ? w->key : "",
                         w->key ? ": " : "");
        } else {
            r = snprintf(e, cap, "%s: ", p->file);
        }
    } else if (w && w->var) {
        r = snprintf(e, cap, "%s: ", w->var);
    }
    if (r > 0) {
        n = (size_t)r < cap ? (size_t)r : cap - 1;
    }
    if (n < cap) {
        vsnprintf(e + n, cap - n, fmt, ap);
    }
    p->errused += strlen(p->err + p->errused);
}

void conf__fail_raw(struct parse *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_failv(p, NULL, fmt, ap);
    va_end(ap);
}

void conf__fail_at(struct parse *p, struct where w, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_failv(p, &w, fmt, ap);
    va_end(ap);
}

/* The key being set: "file:line: key: ..." or "VAR: ...". */
struct where conf__here(const struct parse *p)
{
    struct where w = {p->lineno, p->var, p->kd ? p->kd->name : NULL};

    return w;
}

/* A whole line or section: "file:line: ..." or "VAR: ...". */
struct where conf__line(const struct parse *p, int line)
{
    struct where w = {line, p->var, NULL};

    return w;
}

int conf__oom(struct parse *p)
{
    conf__fail_raw(p, "out of memory");
    return -1;
}

/* Room for one more element at index n, zeroed; NULL (arr untouched) on overflow or OOM. */
void *conf__grow(void *arr, size_t n, size_t elem)
{
    char *a;

    if (n >= SIZE_MAX / elem - 1) {
        return NULL;
    }
    a = realloc(arr, (n + 1) * elem);
    if (!a) {
        return NULL;
    }
    memset(a + n * elem, 0, elem);
    return a;
}

char *conf__strdup(struct parse *p, const char *s)
{
    char *d = strdup(s);

    if (!d) {
        conf__oom(p);
    }
    return d;
}

static void conf_free_extra(struct dev_extra *x, size_t n)
{
    for (size_t i = 0; x && i < n; i++) {
        for (size_t j = 0; j < x[i].nups; j++) {
            free(x[i].ups[j].name);
        }
        free(x[i].ups);
        free(x[i].pw_arg);
        free(x[i].oauth_secret_arg);
    }
    free(x);
}

static void conf_parse_free(struct parse *p)
{
    conf_free_extra(p->dx, p->c->ndevices);
    conf_free_extra(p->rx, p->c->nroutes);
    free(p->ux);
}

struct conf *conf_load(const char *path, int load_ca, char *err, size_t errlen)
{
    struct parse p;
    struct conf *c;

    memset(&p, 0, sizeof(p));
    p.err = err;
    p.errlen = errlen;
    p.login = (load_ca & CONF_LOAD_LOGIN) != 0;
    p.strict = (load_ca & CONF_LOAD_STRICT) != 0;
    load_ca &= ~(CONF_LOAD_LOGIN | CONF_LOAD_STRICT);
    if (err && errlen) {
        err[0] = '\0';
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        conf__oom(&p);
        return NULL;
    }
    p.c = c;
    c->refs = 1; /* the loader's */
    c->max_message_size = 35ull << 20;
    c->received_header = 1;
    c->bare_lf = CONF_BARE_LF_NORMALIZE;
    c->log_level = LOG_INFO;
    c->idle_timeout = 300;
    c->connect_timeout = 30;
    c->command_timeout = 300;
    c->data_timeout = 600;
    c->shutdown_timeout = 30;
    c->max_connections = 200;
    c->max_connections_per_ip = 50; /* Postfix's smtpd_client_connection_count_limit */
    c->max_recipients = 1000;
    c->max_header_size = 1ull << 20;
    c->max_errors = 20;
    c->auth_fail_limit = 10;
    c->auth_lockout = 300;
    c->auth_fail_delay = 1;
    c->max_commands_before_mail = 100;
    c->max_messages_per_session = 1000;
    c->session_timeout = 3600;
    c->refused_timeout = 5;
    c->data_min_rate = 1024;
    c->data_rate_window = 30;
    c->mode = CONF_MODE_PASSTHROUGH;
    c->on_failure = CONF_ON_FAILURE_REJECT;
    c->max_spool_size = 0; /* unlimited */
    c->max_queue_age = 3u * 86400u;
    c->retry_min = 60;
    c->retry_max = 3600;
    c->bounce = CONF_BOUNCE_DSN;
    /* rates unlimited ({0, 0}), lists empty, user NULL, log to stderr as text: calloc */

    if (path) {
        c->path = conf__strdup(&p, path);
        if (!c->path) {
            goto fail;
        }
        p.file = c->path;
        if (conf__load_file(&p, path) != 0) {
            goto fail;
        }
    } else if (conf__load_env(&p) != 0) {
        goto fail;
    }
    {
        /* [relay] and the upstreams do not depend on each other: both are reported */
        int bad = conf__finish_relay(&p) != 0;

        if (conf__finish_upstreams(&p) != 0) {
            goto fail;
        }
        if (conf__finish_devices(&p) != 0 || bad || conf__finish_routes(&p) != 0 ||
            conf__load_secrets(&p) != 0) {
            goto fail;
        }
    }
    /* users_file is read before the logins that name its entries are checked */
    if (conf__check_inbound(&p) != 0 || (c->users_file && conf__load_users(&p) != 0) ||
        conf__check_logins(&p) != 0 ||
        (load_ca && c->tls_cert_file && conf__load_tls_cert(&p) != 0)) {
        goto fail;
    }
    if (load_ca && conf__load_cas(&p) != 0) {
        goto fail;
    }
    if (p.others_read) {
        c->exposed_line = p.inline_line;
    }
    if (conf__warnings(&p) != 0) {
        goto fail;
    }
    conf_parse_free(&p);
    return c;
fail:
    conf_parse_free(&p);
    conf_free(c);
    return NULL;
}

static void conf_free_patterns(struct conf_patterns *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        free(pl->items[i]);
    }
    free(pl->items);
}

static void conf_wipe(char *secret)
{
    if (secret) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
}

static void conf_free_oauth(struct conf_oauth *o)
{
    conf_wipe(o->client_secret);
    conf_wipe(o->refresh_token);
    free(o->token_url);
    free(o->host);
    free(o->path);
    free(o->client_id);
    free(o->client_secret_source);
    free(o->scope);
    free(o->refresh_token_file);
    free(o->command);
    conf__free_argv(o->argv);
    free(o->device_url);
    free(o->device_host);
    free(o->device_path);
}

void conf_free(struct conf *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        struct conf_device *d = &c->devices[i];

        if (d->password) {
            explicit_bzero(d->password, strlen(d->password));
            free(d->password);
        }
        free(d->name);
        free(d->match);
        free(d->ups); /* the upstreams themselves belong to c->upstreams */
        free(d->user);
        free(d->password_source);
        free(d->login);
        conf_free_oauth(&d->oauth);
        conf_free_patterns(&d->allowed_senders);
        conf_free_patterns(&d->allowed_recipients);
        free(d->rewrite_sender);
        free(d->preset_filled);
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        struct conf_route *r = &c->routes[i];

        conf_wipe(r->cred.password);
        free(r->cred.name);
        free(r->cred.ups);
        free(r->cred.user);
        free(r->cred.password_source);
        conf_free_patterns(&r->senders);
        for (size_t j = 0; j < r->ndevices; j++) {
            free(r->devices[j]);
        }
        free(r->devices);
    }
    free(c->routes);
    for (size_t i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        int shared = 0;

        for (size_t j = 0; j < i && !shared; j++) {
            shared = c->upstreams[j].ca == u->ca;
        }
        if (u->ca && !shared) {
            /* const for readers; the snapshot owns it. */
            tls_ca_free((struct tls_ca *)u->ca);
        }
        free(u->name);
        free(u->host);
        free(u->graph_url);
        free(u->graph_path);
        free(u->ca_file);
        free(u->server_name);
        free(u->provider);
        free(u->preset_filled);
    }
    free(c->devices);
    free(c->upstreams);
    free(c->listen);
    free(c->allow);
    free(c->hostname);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_listen);
    free(c->users_file);
    for (size_t i = 0; i < c->nusers; i++) {
        free(c->users[i].login);
        conf_wipe(c->users[i].hash);
    }
    free(c->users);
    tls_cert_free((struct tls_cert *)c->tls_cert); /* const for readers; the snapshot owns it */
    free(c->proxy_from);
    free(c->per_ip_exempt);
    conf_free_patterns(&c->allowed_senders);
    conf_free_patterns(&c->allowed_recipients);
    free(c->user);
    free(c->submit);
    free(c->origin);
    free(c->spool_dir);
    free(c->path);
    for (size_t i = 0; i < c->nwarnings; i++) {
        free(c->warnings[i].text);
    }
    free(c->warnings);
    free(c);
}

/* One convention for every counted object in relay25 (prx_conf, up_session, the
 * OAuth2 providers): refs counts all holders, the creator's included, and the
 * release that takes it to zero frees. */
struct conf *conf_hold(struct conf *c)
{
    c->refs++;
    return c;
}

void conf_release(struct conf *c)
{
    if (c && --c->refs == 0) {
        conf_free(c);
    }
}
