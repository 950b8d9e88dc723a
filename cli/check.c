/* check: validates the configuration and prints the device -> credentials ->
 * upstream map with each device's effective policy, rates, mode, failover list and
 * routes, what provider presets filled, and the config warnings; with --upstream it
 * also logs in to every upstream of every device's failover list with the device's
 * credentials (verified TLS; TLS version, cipher and SASL mechanism shown), and with
 * --rcpt tries MAIL FROM / RCPT TO, then RSET, so nothing is sent. */
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
    const struct conf_upstream *up_conf; /* the upstream of dev's failover list probed */
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

static void check_print_rate(const char *name, const struct conf_rate *r)
{
    const char *per = r->per_seconds == 1      ? "second"
                      : r->per_seconds == 60   ? "minute"
                      : r->per_seconds == 3600 ? "hour"
                                               : "day";

    if (r->count == 0) {
        printf("%s unlimited", name);
    } else {
        printf("%s %u/%s", name, r->count, per);
    }
}

static void check_print_patterns(const char *name, const struct conf_patterns *pl)
{
    printf("%s ", name);
    if (pl->n == 0) {
        printf("any");
    }
    for (size_t i = 0; i < pl->n; i++) {
        printf("%s%s", i ? ", " : "", pl->items[i]);
    }
}

/* What a device really gets once [relay] defaults and presets are applied: the
 * first config a user writes is checked against this, not against the file. */
static void check_print_effective(const struct conf *c, const struct conf_device *d)
{
    static const char *const mechs[] = {"", "XOAUTH2", "OAUTHBEARER", "CRAM-MD5", "PLAIN", "LOGIN"};

    printf("  failover:");
    for (size_t j = 0; j < d->nups; j++) {
        printf("%s %s (%s:%u)", j ? "," : "", d->ups[j]->name, d->ups[j]->host,
               (unsigned)d->ups[j]->port);
    }
    printf("\n  mode %s, on_upstream_failure %s",
           d->mode == CONF_MODE_SPOOL ? "spool" : "passthrough",
           d->on_failure == CONF_ON_FAILURE_QUEUE ? "queue" : "reject");
    if (d->mode == CONF_MODE_SPOOL || d->on_failure == CONF_ON_FAILURE_QUEUE) {
        printf(", spool_dir %s", c->spool_dir);
    }
    printf("\n  policy: ");
    check_print_patterns("allowed_senders", &d->allowed_senders);
    printf("; ");
    check_print_patterns("allowed_recipients", &d->allowed_recipients);
    if (d->rewrite_sender) {
        printf("; rewrite_sender %s%s", d->rewrite_sender,
               d->rewrite_from_header ? " (From: too)" : "");
    }
    printf("\n  rates: ");
    check_print_rate("message_rate", &d->message_rate);
    printf(", ");
    check_print_rate("recipient_rate", &d->recipient_rate);
    printf(" per %s\n", d->rate_by == CONF_RATE_BY_DEVICE ? "device" : "client address");
    if (d->auth == CONF_AUTH_PASSWORD) {
        printf("  auth_mechanisms ");
        if (d->auth_mechanisms[0] == CONF_MECH_END) {
            printf("default (strongest offered)");
        }
        for (size_t k = 0; k < CONF_MAX_MECHS && d->auth_mechanisms[k] != CONF_MECH_END; k++) {
            printf("%s%s", k ? ", " : "",
                   d->auth_mechanisms[k] < sizeof(mechs) / sizeof(mechs[0])
                       ? mechs[d->auth_mechanisms[k]]
                       : "?");
        }
        printf("\n");
    }
    if (d->preset_filled) {
        printf("  from provider %s: %s\n", d->up->provider ? d->up->provider : "?",
               d->preset_filled);
    }
    for (size_t r = 0; r < c->nroutes; r++) {
        const struct conf_route *rt = &c->routes[r];
        int applies = rt->ndevices == 0;

        for (size_t k = 0; k < rt->ndevices && !applies; k++) {
            applies = strcmp(rt->devices[k], d->name) == 0;
        }
        if (!applies) {
            continue;
        }
        printf("  route %s: ", rt->cred.name);
        check_print_patterns("senders", &rt->senders);
        printf(" -> user %s -> upstream", rt->cred.user);
        for (size_t j = 0; j < rt->cred.nups; j++) {
            printf("%s %s", j ? "," : "", rt->cred.ups[j]->name);
        }
        printf("\n");
    }
}

static void check_print(const struct conf *c)
{
    printf("config %s: ok\n", c->path ? c->path : "(environment)");
    for (size_t i = 0; i < c->nwarnings; i++) {
        if (c->warnings[i].line > 0) {
            printf("warning: %s:%d: %s\n", c->path, c->warnings[i].line, c->warnings[i].text);
        } else {
            printf("warning: %s\n", c->warnings[i].text);
        }
    }
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
        printf("  max_connections %u\n", u->max_connections);
        if (u->provider) {
            printf("  provider %s set: %s\n", u->provider,
                   u->preset_filled ? u->preset_filled : "nothing (every key given)");
        }
        char w[200];
        if (conf_upstream_warning(u, w, sizeof(w))) {
            printf("warning: %s\n", w);
        }
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
        check_print_effective(c, d);
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
        char tls[96], text[200];

        snprintf(text, sizeof(text), "authenticated (%s, AUTH %s)",
                 up_tls_desc(s, tls, sizeof(tls)), up_mech_name(s));
        check_set(p, 1, text);
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

/* Every upstream of every device's failover list, each with the device's
 * credentials: a failover target that would refuse the login is found now, not on
 * the day the first upstream is down. */
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
    g.up = p->up_conf;
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
    struct check_probe *probes;
    struct up_oauth_set *oauth;
    struct up_pool *pool;
    size_t n = 0, k = 0;
    int failed = 0;

    for (size_t i = 0; i < c->ndevices; i++) {
        n += c->devices[i].nups;
    }
    probes = calloc(n ? n : 1, sizeof(*probes));
    if (!probes) {
        return EX_OSERR;
    }
    uv_loop_init(&loop);
    oauth = up_oauth_set_new(&loop);
    /* the same slots as the daemon's: max_connections probes at a time per upstream */
    pool = up_pool_new(&loop, CHECK_POOL_IDLE);
    for (size_t i = 0; i < c->ndevices; i++) {
        for (size_t j = 0; j < c->devices[i].nups; j++) {
            struct check_probe *p = &probes[k++];
            struct up_acquire *q = &p->acq;

            p->dev = &c->devices[i];
            p->up_conf = p->dev->ups[j];
            p->rcpt = rcpt;
            memset(q, 0, sizeof(*q));
            q->dev = p->dev;
            q->ups = &p->dev->ups[j]; /* one upstream of the list: no failover in a check */
            q->nups = 1;
            q->conf = c;
            q->oauth = up_oauth_set_find(oauth, p->dev); /* fetches a token: checks the grant */
            q->sid = log_new_id();
            q->wait_seconds = c->command_timeout;
            q->cbs = &check_cbs;
            q->arg = p;
            q->on_done = check_on_acquired;
            snprintf(p->result, sizeof(p->result), "FAILED: no result");
            if (p->up_conf->type == CONF_UP_GRAPH) {
                check_graph(p, &loop, c, q->oauth);
            } else if (!pool || up_pool_acquire(pool, q) < 0) {
                snprintf(p->result, sizeof(p->result), "FAILED: out of memory");
            }
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    up_oauth_set_free(oauth);
    if (pool) {
        up_pool_close(pool);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (size_t i = 0; i < n; i++) {
        const struct check_probe *p = &probes[i];
        printf("device %s: user %s at upstream %s (%s:%u): %s\n", p->dev->name, p->dev->user,
               p->up_conf->name, p->up_conf->host, (unsigned)p->up_conf->port, p->result);
        failed |= !p->ok;
    }
    free(probes);
    return failed ? 1 : 0;
}

static int check_usage_error(int rc)
{
    fprintf(stderr, "usage: " CLI_USAGE_CHECK "\n");
    return rc;
}

int cli_check(int argc, char **argv)
{
    const char *path = NULL, *rcpt = NULL;
    int upstream = 0, rc = 0;
    struct conf *c;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: " CLI_USAGE_CHECK "\n"
                   "Validates the configuration and prints which credentials and upstream each\n"
                   "device uses. --upstream also logs in to the upstreams; --rcpt ADDRESS then\n"
                   "tries MAIL FROM and RCPT TO ADDRESS (and RSET: nothing is sent).\n"
                   "Exit: 0 valid (and every login worked), 1 a login or RCPT failed,\n"
                   "64 usage, 78 configuration error.\n" CLI_USAGE_CONFIG);
            return 0;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                return check_usage_error(cli_missing("check", "-c", "a file"));
            }
            path = argv[++i];
        } else if (strcmp(argv[i], "--upstream") == 0) {
            upstream = 1;
        } else if (strcmp(argv[i], "--rcpt") == 0) {
            /* an option name is no address: `--rcpt --upstream` forgot the address */
            if (i + 1 >= argc || argv[i + 1][0] == '-' || argv[i + 1][0] == '\0') {
                return check_usage_error(cli_missing("check", "--rcpt", "an address"));
            }
            rcpt = argv[++i];
            upstream = 1;
        } else {
            fprintf(stderr, "relay25 check: unknown argument '%s'\n", argv[i]);
            return check_usage_error(EX_USAGE);
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
