/* check: validates the configuration and prints the device -> credentials ->
 * upstream map; with --upstream it also logs in to every upstream with every
 * credential (verified TLS), and with --rcpt tries MAIL FROM / RCPT TO, then
 * RSET, so nothing is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <uv.h>

#include <bearssl.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_graph.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_session.h"

enum check_step { CHECK_AUTH, CHECK_MAIL, CHECK_RCPT, CHECK_RSET, CHECK_DONE };

#define CHECK_POOL_IDLE 1 /* seconds; probes QUIT their sessions, none is given back */

struct check_probe {
    const struct conf_device *dev;
    struct up_acquire acq;
    struct up_session *up;
    const char *rcpt;
    enum check_step step;
    int ok;
    char result[1024];
};

static void check_print_list(const char *label, const struct cidr *v, size_t n)
{
    char b[64];
    printf("%s", label);
    for (size_t i = 0; i < n; i++) {
        printf("%s%s", i ? ", " : " ", cidr_format(&v[i], b, sizeof(b)));
    }
    printf("\n");
}

/* Where the device's XOAUTH2 tokens come from; never a secret. */
static void check_print_oauth(const struct conf_device *d)
{
    const struct conf_oauth *o = &d->oauth;

    printf(" -> user %s (XOAUTH2, ", d->user);
    if (o->grant == CONF_OAUTH_COMMAND) {
        printf("token from command %s", o->command);
    } else {
        printf("%s grant at %s, client %s",
               o->grant == CONF_OAUTH_CLIENT_CREDENTIALS ? "client_credentials" : "refresh_token",
               o->token_url, o->client_id);
        if (o->client_secret_source) {
            printf(", secret from %s", o->client_secret_source);
        }
        if (o->refresh_token_file) {
            printf(", refresh token in %s", o->refresh_token_file);
        }
        if (o->scope) {
            printf(", scope %s", o->scope);
        }
    }
    printf(") -> upstream %s\n", d->up->name);
}

static void check_print(const struct conf *c)
{
    printf("config %s: ok\n", c->path ? c->path : "(environment)");
    if (c->exposed_line) {
        printf("warning: %s is readable by others and holds a password (line %d): chmod o-r "
               "it, or use password_file\n",
               c->path, c->exposed_line);
    }
    printf("listen");
    for (size_t i = 0; i < c->nlisten; i++) {
        printf("%s%s", i ? ", " : " ", c->listen[i].text);
    }
    printf("\n");
    check_print_list("allow", c->allow, c->nallow);
    if (c->tls_cert_file) {
        printf("inbound tls: cert %s key %s min_version %s%s", c->tls_cert_file, c->tls_key_file,
               c->tls_min_version == BR_TLS10   ? "1.0"
               : c->tls_min_version == BR_TLS11 ? "1.1"
                                                : "1.2",
               c->ntls_listen ? ", implicit on" : "");
        for (size_t i = 0; i < c->ntls_listen; i++) {
            printf("%s%s", i ? ", " : " ", c->tls_listen[i].text);
        }
        printf("\n");
        if (c->tls_min_version < BR_TLS12) {
            printf("warning: tls_min_version = %s allows TLS versions with known weaknesses; use "
                   "1.2 unless old devices need it\n",
                   c->tls_min_version == BR_TLS10 ? "1.0" : "1.1");
        }
    }
    if (c->users_file) {
        printf("inbound auth: %zu users from %s, %s\n", c->nusers, c->users_file,
               c->allow_plaintext_auth ? "also without TLS (allow_plaintext_auth = yes)"
                                       : "over TLS only");
    }
    printf("hostname %s, max_message_size %llu\n", c->hostname,
           (unsigned long long)c->max_message_size);
    for (size_t i = 0; i < c->nupstreams; i++) {
        const struct conf_upstream *u = &c->upstreams[i];
        if (u->type == CONF_UP_GRAPH) {
            printf("upstream %s: type=graph graph_url=%s verify=%s ca_file=%s\n", u->name,
                   u->graph_url, u->tls_verify ? "yes" : "NO", u->ca_file);
            continue;
        }
        printf("upstream %s: %s:%u tls=%s server_name=%s verify=%s ca_file=%s\n", u->name, u->host,
               (unsigned)u->port, u->tls == CONF_TLS_IMPLICIT ? "implicit" : "starttls",
               u->server_name, u->tls_verify ? "yes" : "NO", u->ca_file);
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];
        char b[64];
        printf("device %s:", d->name);
        if (d->is_default) {
            printf(" any other allowed client");
        }
        for (size_t j = 0; j < d->nmatch; j++) {
            printf("%s%s", j ? ", " : " ", cidr_format(&d->match[j], b, sizeof(b)));
        }
        if (d->auth != CONF_AUTH_PASSWORD) {
            check_print_oauth(d);
        } else {
            printf(" -> user %s (password from %s) -> upstream %s\n", d->user, d->password_source,
                   d->up->name);
        }
    }
}

static void check_set(struct check_probe *p, int ok, const char *text)
{
    p->ok = ok;
    p->step = CHECK_DONE;
    snprintf(p->result, sizeof(p->result), "%s%s", ok ? "ok: " : "FAILED: ", text);
}

/* r from an up_* call: < 0 means it had no effect and nothing will answer it
 * (up_session.h). */
static void check_sent(struct check_probe *p, int r)
{
    if (r < 0) {
        check_set(p, 0, "upstream session not ready for the command");
        up_close(p->up);
    }
}

/* Sessions come ready from the pool (check_on_acquired): never called. */
static void check_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    (void)arg, (void)err, (void)r, (void)detail;
}

static void check_on_acquired(struct up_acquire *req, struct up_session *s, int err,
                              const struct up_reply *r, const char *detail)
{
    struct check_probe *p = req->arg;
    (void)r;
    p->up = s;
    if (!s) {
        char buf[800];
        reply_upstream(buf, sizeof(buf), err, req->where, detail);
        buf[strcspn(buf, "\r\n")] = '\0';
        check_set(p, 0, buf);
        return;
    }
    if (!p->rcpt) {
        check_set(p, 1, "authenticated");
        up_quit(p->up);
        return;
    }
    p->step = CHECK_MAIL;
    check_sent(p, up_mail(p->up, p->dev->user, NULL));
}

static void check_on_reply(void *arg, const struct up_reply *r)
{
    struct check_probe *p = arg;
    char line[600];

    up_reply_oneline(r, line, sizeof(line));
    switch (p->step) {
    case CHECK_MAIL:
        if (r->code != 250) {
            snprintf(p->result, sizeof(p->result), "FAILED: MAIL FROM:<%s> refused: %d %s",
                     p->dev->user, r->code, line);
            p->step = CHECK_DONE;
            up_quit(p->up);
            return;
        }
        p->step = CHECK_RCPT;
        check_sent(p, up_rcpt(p->up, p->rcpt, NULL));
        return;
    case CHECK_RCPT:
        p->ok = r->code >= 200 && r->code < 300;
        snprintf(p->result, sizeof(p->result), "%s: authenticated; RCPT TO:<%s> got %d %s",
                 p->ok ? "ok" : "FAILED", p->rcpt, r->code, line);
        p->step = CHECK_RSET;
        check_sent(p, up_rset(p->up));
        return;
    case CHECK_RSET:
        p->step = CHECK_DONE;
        up_quit(p->up);
        return;
    case CHECK_AUTH:
    case CHECK_DONE:
        return;
    }
}

static void check_on_fail(void *arg, int err, const char *detail, int pending)
{
    struct check_probe *p = arg;
    char buf[800];
    (void)pending;
    if (p->step == CHECK_DONE) {
        return;
    }
    reply_upstream(buf, sizeof(buf), err, up_where(p->up), detail);
    buf[strcspn(buf, "\r\n")] = '\0';
    check_set(p, 0, buf);
}

static void check_on_close(void *arg)
{
    struct check_probe *p = arg;
    p->up = NULL;
}

static const struct up_cbs check_cbs = {
    .on_ready = check_on_ready,
    .on_reply = check_on_reply,
    .on_fail = check_on_fail,
    .on_drain = NULL,
    .on_close = check_on_close,
};

/* type = graph: a token and a read of the mailbox (up_graph), nothing sent. */
static void check_on_graph(void *arg, const struct up_graph_result *r)
{
    struct check_probe *p = arg;

    check_set(p, r->code < 300, r->code < 300 && strlen(r->reply) > 4 ? r->reply + 4 : r->reply);
}

static void check_graph(struct check_probe *p, uv_loop_t *loop, const struct conf *c,
                        struct up_oauth *oauth)
{
    struct up_graph_req g;

    memset(&g, 0, sizeof(g));
    g.loop = loop;
    g.up = p->dev->up;
    g.user = p->dev->user;
    g.oauth = oauth;
    g.timeout = c->command_timeout;
    if (!up_graph_send(&g, check_on_graph, p)) {
        check_set(p, 0, oauth ? "out of memory" : "no OAuth2 token provider");
    }
}

static int check_upstreams(const struct conf *c, const char *rcpt)
{
    uv_loop_t loop;
    struct check_probe *probes = calloc(c->ndevices, sizeof(*probes));
    struct up_oauth_set *oauth;
    struct up_pool *pool;
    int failed = 0;

    if (!probes) {
        return EX_OSERR;
    }
    uv_loop_init(&loop);
    oauth = up_oauth_set_new(&loop);
    /* the same slots as the daemon's: max_connections probes at a time per upstream */
    pool = up_pool_new(&loop, CHECK_POOL_IDLE);
    for (size_t i = 0; i < c->ndevices; i++) {
        struct check_probe *p = &probes[i];
        struct up_acquire *q = &p->acq;

        p->dev = &c->devices[i];
        p->rcpt = rcpt;
        memset(q, 0, sizeof(*q));
        q->dev = p->dev;
        q->ups = &p->dev->up; /* this device's own upstream: no failover in a check */
        q->nups = 1;
        q->conf = c;
        q->oauth = up_oauth_set_find(oauth, p->dev); /* fetches a token: checks the grant */
        q->sid = log_new_id();
        q->wait_seconds = c->command_timeout;
        q->cbs = &check_cbs;
        q->arg = p;
        q->on_done = check_on_acquired;
        snprintf(p->result, sizeof(p->result), "FAILED: no result");
        if (p->dev->up->type == CONF_UP_GRAPH) {
            check_graph(p, &loop, c, q->oauth);
        } else if (!pool || up_pool_acquire(pool, q) < 0) {
            snprintf(p->result, sizeof(p->result), "FAILED: out of memory");
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    up_oauth_set_free(oauth);
    if (pool) {
        up_pool_close(pool);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct check_probe *p = &probes[i];
        printf("device %s: user %s at upstream %s (%s:%u): %s\n", p->dev->name, p->dev->user,
               p->dev->up->name, p->dev->up->host, (unsigned)p->dev->up->port, p->result);
        failed |= !p->ok;
    }
    free(probes);
    return failed ? 1 : 0;
}

int cli_check(int argc, char **argv)
{
    const char *path = NULL, *rcpt = NULL;
    int upstream = 0, rc = 0;
    struct conf *c;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--upstream") == 0) {
            upstream = 1;
        } else if (strcmp(argv[i], "--rcpt") == 0 && i + 1 < argc) {
            rcpt = argv[++i];
            upstream = 1;
        } else {
            fprintf(stderr, "relay25: check: unknown argument '%s'\n", argv[i]);
            return EX_USAGE;
        }
    }
    c = cli_load_conf(path, 1);
    if (!c) {
        return EX_CONFIG;
    }
    log_set_level(upstream ? LOG_WARN : LOG_ERR);
    check_print(c);
    fflush(stdout);
    if (upstream) {
        rc = check_upstreams(c, rcpt);
    }
    conf_free(c);
    return rc;
}
