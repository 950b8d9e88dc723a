/* conf_check: checks that need the whole file (keys that go together, names that
 * refer to other sections) and the defaults that depend on them. Ports follow the
 * TLS mode (RFC 8314 §3.3). Devices inherit the [relay] rate limits, address
 * policy, mode and on_upstream_failure unless their section sets their own (lists
 * are deep-copied, so each one has exactly one owner); a device's failover list
 * points into c->upstreams. */
#include "conf/conf_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bearssl.h>

#define CONF_DEFAULT_LISTEN "127.0.0.1:25"
#define CONF_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define CONF_DEFAULT_PORT 587
#define CONF_IMPLICIT_PORT 465
#define CONF_DEFAULT_SPOOL_DIR "/var/spool/relay25"

static int conf_default_hostname(struct parse *p)
{
    char buf[CONF_NAME_MAX + 1];

    if (gethostname(buf, sizeof(buf)) != 0) {
        buf[0] = '\0';
    }
    buf[sizeof(buf) - 1] = '\0';
    p->c->hostname = conf__strdup(p, conf__valid_name(buf) ? buf : "localhost");
    return p->c->hostname ? 0 : -1;
}

/* retry_max < retry_min is reported at whichever of the two keys comes later (the
 * one that made the pair wrong), or at [relay]. */
static struct where conf_retry_where(const struct parse *p)
{
    int lmin = conf__relay_seen(p, "retry_min");
    int lmax = conf__relay_seen(p, "retry_max");
    struct where w = {p->relay_line, NULL, NULL};

    if (lmin > 0 || lmax > 0) {
        w.line = lmax > lmin ? lmax : lmin;
        w.key = lmax > lmin ? "retry_max" : "retry_min";
    }
    return w;
}

int conf__finish_relay(struct parse *p)
{
    struct conf *c = p->c;

    if (p->listen_given && c->nlisten == 0) {
        conf__fail_at(p, p->listen_at, "empty list");
        return -1;
    }
    if (p->allow_given && c->nallow == 0) {
        conf__fail_at(p, p->allow_at, "empty list");
        return -1;
    }
    if (!p->listen_given && conf__add_listen(p, CONF_DEFAULT_LISTEN) != 0) {
        return -1;
    }
    if (!p->allow_given &&
        (conf__add_allow(p, "127.0.0.0/8") != 0 || conf__add_allow(p, "::1/128") != 0)) {
        return -1;
    }
    /* the relay's own users (applications, sendmail under a burst of cron jobs) are
     * not limited per address, as Postfix exempts mynetworks */
    if (!p->exempt_given &&
        (conf__add_exempt(p, "127.0.0.0/8") != 0 || conf__add_exempt(p, "::1/128") != 0)) {
        return -1;
    }
    if (c->proxy_protocol && c->nproxy_from == 0) {
        conf__fail_at(p, p->proxy_at,
                      "proxy_protocol = yes needs proxy_from = the load balancer's addresses");
        return -1;
    }
    if (c->retry_max < c->retry_min) {
        conf__fail_at(p, conf_retry_where(p), "retry_max (%us) is less than retry_min (%us)",
                      c->retry_max, c->retry_min);
        return -1;
    }
    if (!c->spool_dir && !(c->spool_dir = conf__strdup(p, CONF_DEFAULT_SPOOL_DIR))) {
        return -1;
    }
    if (!c->hostname) {
        return conf_default_hostname(p);
    }
    return 0;
}

int conf__finish_upstreams(struct parse *p)
{
    struct conf *c = p->c;
    int bad = 0;

    if (c->nupstreams == 0) {
        conf__fail_at(p, conf__line(p, p->lineno > 0 ? p->lineno : 1),
                      "no [upstream NAME] section: relay25 needs one to send mail through");
        return -1;
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        struct up_extra *x = &p->ux[i];

        if (u->type == CONF_UP_GRAPH) {
            if (x->host_given || x->port_given || x->tls_given) {
                conf__fail_at(p, conf__line(p, u->line),
                              "[upstream %s]: host, port and tls are not used with type = graph "
                              "(graph_url says where Graph is)",
                              u->name);
                bad = 1;
                continue;
            }
            if (conf__graph_endpoint(p, u) != 0 || !(u->server_name = conf__strdup(p, u->host)) ||
                (!u->ca_file && !(u->ca_file = conf__strdup(p, CONF_DEFAULT_CA)))) {
                bad = 1;
                continue;
            }
            if (x->preset && !u->preset_filled &&
                !(u->preset_filled = conf__strdup(p, "type graph (token and scope: the device)"))) {
                return -1;
            }
            continue;
        } else if (u->graph_url) {
            conf__fail_at(p, x->graph_at, "only used with type = graph (in [upstream %s])",
                          u->name);
            bad = 1;
            continue;
        }
        /* each upstream's errors are its own: report them all */
        if (conf__preset_upstream(p, i) != 0) {
            bad = 1;
            continue;
        }
        if (!u->host) {
            conf__fail_at(p, conf__line(p, u->line),
                          "[upstream %s] has no host (set host = "
                          "or provider =)",
                          u->name);
            bad = 1;
            continue;
        }
        /* Port 465 is implicit TLS (RFC 8314 §3.3); 587 is submission with STARTTLS. */
        if (!x->tls_given) {
            u->tls = x->port_given && u->port == CONF_IMPLICIT_PORT ? CONF_TLS_IMPLICIT
                                                                    : CONF_TLS_STARTTLS;
        }
        if (!x->port_given) {
            u->port = u->tls == CONF_TLS_IMPLICIT ? CONF_IMPLICIT_PORT : CONF_DEFAULT_PORT;
        }
        if (!u->server_name && !(u->server_name = conf__strdup(p, u->host))) {
            return -1;
        }
        if (!u->ca_file && !(u->ca_file = conf__strdup(p, CONF_DEFAULT_CA))) {
            return -1;
        }
    }
    return bad ? -1 : 0;
}

static int conf_copy_patterns(struct parse *p, struct conf_patterns *dst,
                              const struct conf_patterns *src)
{
    if (src->n == 0) {
        return 0;
    }
    dst->items = calloc(src->n, sizeof(*dst->items));
    if (!dst->items) {
        return conf__oom(p);
    }
    for (; dst->n < src->n; dst->n++) {
        dst->items[dst->n] = conf__strdup(p, src->items[dst->n]);
        if (!dst->items[dst->n]) {
            return -1;
        }
    }
    return 0;
}

/* A device that does not set a policy or delivery key gets the [relay] value. */
static int conf_inherit_policy(struct parse *p, size_t i)
{
    const struct conf *c = p->c;
    struct conf_device *d = &c->devices[i];

    if (!conf__dev_given(p, i, "mode")) {
        d->mode = c->mode;
    }
    if (!conf__dev_given(p, i, "on_upstream_failure")) {
        d->on_failure = c->on_failure;
    }
    if (!conf__dev_given(p, i, "auth_mechanisms")) {
        memcpy(d->auth_mechanisms, c->auth_mechanisms, sizeof(d->auth_mechanisms));
    }
    if (!conf__dev_given(p, i, "message_rate")) {
        d->message_rate = c->message_rate;
    }
    if (!conf__dev_given(p, i, "recipient_rate")) {
        d->recipient_rate = c->recipient_rate;
    }
    if (!conf__dev_given(p, i, "rate_limit_by")) {
        d->rate_by = c->rate_by;
    }
    if (!conf__dev_given(p, i, "allowed_senders") &&
        conf_copy_patterns(p, &d->allowed_senders, &c->allowed_senders) != 0) {
        return -1;
    }
    if (!conf__dev_given(p, i, "allowed_recipients") &&
        conf_copy_patterns(p, &d->allowed_recipients, &c->allowed_recipients) != 0) {
        return -1;
    }
    return 0;
}

static const struct conf_upstream *conf_find_upstream(const struct conf *c, const char *name)
{
    for (size_t i = 0; i < c->nupstreams; i++) {
        if (strcmp(c->upstreams[i].name, name) == 0) {
            return &c->upstreams[i];
        }
    }
    return NULL;
}

/* `upstream = a, b` -> ups = {a, b}, up = a; without the key the only upstream. The
 * upstreams array is complete here, so the pointers stay valid. */
static int conf_resolve_upstreams(struct parse *p, struct conf_device *d, const struct dev_extra *x,
                                  const char *sect)
{
    const struct conf *c = p->c;
    size_t n = x->upstream_given ? x->nups : 1;

    if (x->upstream_given && x->nups == 0) {
        conf__fail_at(p, x->upstream_at, "empty list");
        return -1;
    }
    if (!x->upstream_given && c->nupstreams != 1) {
        conf__fail_at(p, conf__line(p, d->line),
                      "[%s %s] needs upstream = NAME (there are %zu upstreams)", sect, d->name,
                      c->nupstreams);
        return -1;
    }
    d->ups = calloc(n, sizeof(*d->ups));
    if (!d->ups) {
        return conf__oom(p);
    }
    if (!x->upstream_given) {
        d->ups[d->nups++] = &c->upstreams[0];
    }
    for (size_t j = 0; j < x->nups; j++) {
        const struct conf_upstream *u = conf_find_upstream(c, x->ups[j].name);

        if (!u) {
            conf__fail_at(p, x->ups[j].at, "no [upstream %s] for [%s %s]", x->ups[j].name, sect,
                          d->name);
            return -1;
        }
        d->ups[d->nups++] = u;
    }
    d->up = d->ups[0];
    return 0;
}

/* auth = xoauth2 takes exactly one token source; keys of another source, or oauth_*
 * keys without auth = xoauth2, are mistakes worth a message. */
static int conf_check_oauth(struct parse *p, size_t i)
{
    struct conf_device *d = &p->c->devices[i];
    const struct dev_extra *x = &p->dx[i];
    const struct where *at = x->oauth_at;
    struct conf_oauth *o = &d->oauth;

    if (d->auth == CONF_AUTH_PASSWORD) {
        for (size_t k = 0; k < CONF_OAUTH_NKEYS; k++) {
            if (at[k].key) {
                conf__fail_at(p, at[k],
                              "only used with auth = xoauth2 or oauthbearer (in [device %s])",
                              d->name);
                return -1;
            }
        }
        return 0;
    }
    if (x->pw != PW_NONE) {
        conf__fail_at(p, x->pw_at, "not used with auth = xoauth2 (an OAuth2 token replaces it)");
        return -1;
    }
    if (at[OK_TOKEN_COMMAND].key) {
        for (size_t k = 0; k < OK_TOKEN_COMMAND; k++) {
            if (at[k].key) {
                conf__fail_at(p, at[k],
                              "not used with oauth_token_command (the command gets "
                              "the token)");
                return -1;
            }
        }
        o->grant = CONF_OAUTH_COMMAND;
        return 0;
    }
    if (!at[OK_TOKEN_URL].key || !at[OK_CLIENT_ID].key) {
        conf__fail_at(p, x->auth_at,
                      "[device %s] needs oauth_token_url and oauth_client_id (or "
                      "oauth_token_command)",
                      d->name);
        return -1;
    }
    if (o->grant == CONF_OAUTH_CLIENT_CREDENTIALS) {
        if (at[OK_REFRESH_TOKEN_FILE].key) {
            conf__fail_at(p, at[OK_REFRESH_TOKEN_FILE],
                          "not used with oauth_grant = client_credentials");
            return -1;
        }
        if (x->oauth_secret == PW_NONE) {
            conf__fail_at(p, at[OK_GRANT],
                          "client_credentials needs oauth_client_secret_file or "
                          "oauth_client_secret_env");
            return -1;
        }
    } else if (!at[OK_REFRESH_TOKEN_FILE].key) {
        conf__fail_at(p, at[OK_GRANT].key ? at[OK_GRANT] : x->auth_at,
                      "[device %s] needs oauth_refresh_token_file (or oauth_grant = "
                      "client_credentials, or oauth_token_command)",
                      d->name);
        return -1;
    }
    return 0;
}

/* type = graph (issue 16): app-only OAuth2 tokens, user = the mailbox sent as,
 * one upstream (the Graph path is not the SMTP pool's failover); passthrough
 * answers with Graph's verdict, so there is no queue fallback of the SMTP kind. */
static int conf_check_graph(struct parse *p, const struct conf_device *d, struct where sec)
{
    const struct conf_upstream *g = NULL;

    for (size_t j = 0; j < d->nups; j++) {
        if (d->ups[j]->type == CONF_UP_GRAPH) {
            g = d->ups[j];
        }
    }
    if (!g) {
        return 0;
    }
    if (d->nups != 1) {
        conf__fail_at(p, sec,
                      "[device %s]: [upstream %s] is type = graph and cannot be in a failover "
                      "list",
                      d->name, g->name);
        return -1;
    }
    if (d->auth == CONF_AUTH_PASSWORD) {
        conf__fail_at(p, sec,
                      "[device %s]: [upstream %s] is type = graph: set auth = xoauth2 with "
                      "oauth_grant = client_credentials (an Entra app with Mail.Send)",
                      d->name, g->name);
        return -1;
    }
    if (d->mode != CONF_MODE_SPOOL && d->on_failure == CONF_ON_FAILURE_QUEUE) {
        conf__fail_at(p, sec,
                      "[device %s]: on_upstream_failure = queue is not used with type = graph "
                      "[upstream %s] (set mode = spool for background delivery)",
                      d->name, g->name);
        return -1;
    }
    return 0;
}

/* Two devices with one match entry: the first in the file would always win and the
 * second would never be used, which is never what was meant. */
static int conf_check_duplicate_match(struct parse *p)
{
    const struct conf *c = p->c;
    int bad = 0;

    for (size_t i = 1; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];

        for (size_t m = 0; m < d->nmatch; m++) {
            const struct cidr *a = &d->match[m];
            int found = 0;

            for (size_t k = 0; k < i && !found; k++) {
                const struct conf_device *o = &c->devices[k];

                for (size_t n = 0; n < o->nmatch && !found; n++) {
                    const struct cidr *b = &o->match[n];
                    char buf[64];

                    if (a->family != b->family || a->prefix != b->prefix ||
                        memcmp(a->addr, b->addr, sizeof(a->addr)) != 0) {
                        continue;
                    }
                    found = 1;
                    conf__fail_at(p,
                                  p->dx[i].match_given ? p->dx[i].match_at : conf__line(p, d->line),
                                  "%s is also the match of [device %s] (line %d): the first "
                                  "device would always win; give each client to one device",
                                  cidr_format(a, buf, sizeof(buf)), o->name, o->line);
                    bad = 1;
                }
            }
        }
    }
    return bad ? -1 : 0;
}

/* One device's checks; the caller goes on with the next device after an error. */
static int conf_finish_device(struct parse *p, size_t i)
{
    struct conf_device *d = &p->c->devices[i];
    struct dev_extra *x = &p->dx[i];
    struct where sec = conf__line(p, d->line);

    if (!d->user) {
        conf__fail_at(p, sec, "[device %s] has no user", d->name);
        return -1;
    }
    if (conf__preset_device(p, i) != 0 || conf_check_oauth(p, i) != 0) {
        return -1;
    }
    if (x->pw == PW_NONE && d->auth == CONF_AUTH_PASSWORD) {
        conf__fail_at(p, sec,
                      "[device %s] needs exactly one of password_file, password_env, "
                      "password",
                      d->name);
        return -1;
    }
    if (!d->is_default && d->nmatch == 0 && !d->login) {
        conf__fail_at(p, x->match_given ? x->match_at : sec,
                      "[device %s] has no match (only [device default] or a device with "
                      "login may omit it)",
                      d->name);
        return -1;
    }
    if (conf_resolve_upstreams(p, d, x, "device") != 0 || conf_inherit_policy(p, i) != 0 ||
        conf__preset_mechs(p, i) != 0 || conf_check_graph(p, d, sec) != 0) {
        return -1;
    }
    if (d->rewrite_from_header && !d->rewrite_sender) {
        conf__fail_at(p, sec, "[device %s] has rewrite_from_header but no rewrite_sender", d->name);
        return -1;
    }
    return 0;
}

int conf__finish_devices(struct parse *p)
{
    struct conf *c = p->c;
    int bad = 0;

    if (c->ndevices == 0) {
        conf__fail_at(p, conf__line(p, p->lineno > 0 ? p->lineno : 1),
                      "no [device NAME] section: add [device default] with user and "
                      "password_file");
        return -1;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        if (conf_finish_device(p, i) != 0) {
            bad = 1;
        }
    }
    if (p->strict && conf_check_duplicate_match(p) != 0) {
        bad = 1;
    }
    return bad ? -1 : 0;
}

int conf__finish_routes(struct parse *p)
{
    struct conf *c = p->c;

    for (size_t i = 0; i < c->nroutes; i++) {
        struct conf_route *r = &c->routes[i];
        struct dev_extra *x = &p->rx[i];
        struct where sec = conf__line(p, r->line);

        if (r->senders.n == 0) {
            conf__fail_at(p, sec, "[route %s] needs senders = PATTERN, ...", r->cred.name);
            return -1;
        }
        if (!x->upstream_given) {
            conf__fail_at(p, sec, "[route %s] needs upstream = NAME", r->cred.name);
            return -1;
        }
        if (!r->cred.user) {
            conf__fail_at(p, sec, "[route %s] has no user", r->cred.name);
            return -1;
        }
        if (x->pw == PW_NONE) {
            conf__fail_at(p, sec,
                          "[route %s] needs exactly one of password_file, password_env, password",
                          r->cred.name);
            return -1;
        }
        if (conf_resolve_upstreams(p, &r->cred, x, "route") != 0) {
            return -1;
        }
        for (size_t j = 0; j < r->cred.nups; j++) {
            if (r->cred.ups[j]->type == CONF_UP_GRAPH) {
                conf__fail_at(p, x->upstream_at,
                              "[upstream %s] is type = graph: a route's password cannot log in "
                              "there (give the device its own OAuth2 app instead)",
                              r->cred.ups[j]->name);
                return -1;
            }
        }
        for (size_t j = 0; j < r->ndevices; j++) {
            size_t k = 0;

            while (k < c->ndevices && strcmp(c->devices[k].name, r->devices[j]) != 0) {
                k++;
            }
            if (k == c->ndevices) {
                conf__fail_at(p, sec, "no [device %s] for [route %s]", r->devices[j], r->cred.name);
                return -1;
            }
        }
    }
    return 0;
}

/* Inbound TLS and AUTH: keys that only make sense together. The users file and
 * the certificate are read afterwards (conf_secret.c). */
int conf__check_inbound(struct parse *p)
{
    struct conf *c = p->c;
    int lcert = conf__relay_seen(p, "tls_cert_file");
    int lkey = conf__relay_seen(p, "tls_key_file");
    int llisten = conf__relay_seen(p, "tls_listen");
    int lusers = conf__relay_seen(p, "users_file");

    if (c->tls_min_version == 0) {
        c->tls_min_version = BR_TLS12;
    }
    if (!c->tls_cert_file != !c->tls_key_file) {
        conf__fail_at(p, conf__line(p, lcert ? lcert : lkey),
                      "tls_cert_file and tls_key_file go together");
        return -1;
    }
    if (c->ntls_listen > 0 && !c->tls_cert_file) {
        conf__fail_at(p, conf__line(p, llisten), "tls_listen needs tls_cert_file and tls_key_file");
        return -1;
    }
    if (c->ntls_listen > 0 && c->proxy_protocol) {
        conf__fail_at(p, conf__line(p, llisten), "tls_listen does not take PROXY protocol headers");
        return -1;
    }
    if (c->users_file && !c->tls_cert_file && !c->allow_plaintext_auth) {
        conf__fail_at(p, conf__line(p, lusers),
                      "users_file needs tls_cert_file/tls_key_file (AUTH is offered over TLS) "
                      "or allow_plaintext_auth = yes");
        return -1;
    }
    return 0;
}

/* Each device login names a users_file entry (loaded by now), and no two devices
 * share one. */
int conf__check_logins(struct parse *p)
{
    struct conf *c = p->c;

    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];
        int found = 0;

        if (!d->login) {
            continue;
        }
        for (size_t k = 0; k < c->nusers && !found; k++) {
            found = strcmp(c->users[k].login, d->login) == 0;
        }
        if (!found) {
            conf__fail_at(p, conf__line(p, d->line), "[device %s]: login '%s' is not in users_file",
                          d->name, d->login);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (c->devices[k].login && strcmp(c->devices[k].login, d->login) == 0) {
                conf__fail_at(p, conf__line(p, d->line),
                              "[device %s]: login '%s' is already used by [device %s]", d->name,
                              d->login, c->devices[k].name);
                return -1;
            }
        }
    }
    return 0;
}

/* RFC 8314 §3.3: 465 speaks TLS from the first byte; 587 (RFC 6409) and 2525
 * (587's customary stand-in) greet in clear and offer STARTTLS. Only a warning:
 * a provider may run either on any port. */
int conf_upstream_warning(const struct conf_upstream *u, char *buf, size_t cap)
{
    if (u->port == CONF_IMPLICIT_PORT && u->tls == CONF_TLS_STARTTLS) {
        snprintf(buf, cap, "[upstream %s] port 465 usually expects TLS at once: use tls = implicit",
                 u->name);
        return 1;
    }
    if ((u->port == CONF_DEFAULT_PORT || u->port == 2525) && u->tls == CONF_TLS_IMPLICIT) {
        snprintf(
            buf, cap,
            "[upstream %s] port %u usually speaks plain SMTP with STARTTLS: use tls = starttls",
            u->name, (unsigned)u->port);
        return 1;
    }
    return 0;
}
