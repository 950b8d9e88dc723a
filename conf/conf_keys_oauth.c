/* conf_keys_oauth: the setters of the keys that say how a device gets an OAuth2
 * token (auth = xoauth2 | oauthbearer: oauth_*; RFC 6749, RFC 8628) and of the
 * Microsoft Graph upstream (type = graph, graph_url), which logs in only that
 * way. Rows in conf_keys.c's table point here; checks across keys are
 * conf_check.c's. */
#include "conf/conf_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key names of enum oauth_key (conf_int.h), in its order. */
static const char *const conf_oauth_keys[CONF_OAUTH_NKEYS] = {
    "oauth_token_url",
    "oauth_client_id",
    "oauth_client_secret_file",
    "oauth_client_secret_env",
    "oauth_scope",
    "oauth_refresh_token_file",
    "oauth_grant",
    "oauth_token_command",
    "oauth_device_url",
};

/* Remembers where an oauth_* key was set, for conf_check_oauth(). */
static void conf_oauth_seen(struct parse *p)
{
    for (size_t k = 0; k < CONF_OAUTH_NKEYS; k++) {
        if (strcmp(p->kd->name, conf_oauth_keys[k]) == 0) {
            p->dx[p->cur].oauth_at[k] = conf__here(p);
        }
    }
}

int conf__set_oauth_url(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    why = conf__parse_url(val, o);
    if (why) {
        conf__fail_at(p, conf__here(p), "bad URL '%s' (%s)", val, why);
        return -1;
    }
    if (!o->host || !o->path) {
        return conf__oom(p);
    }
    o->token_url = conf__strdup(p, val);
    return o->token_url ? 0 : -1;
}

/* oauth_device_url = https://login.microsoftonline.com/TENANT/oauth2/v2.0/devicecode */
int conf__set_oauth_device_url(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    struct conf_oauth u;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    memset(&u, 0, sizeof(u));
    why = conf__parse_url(val, &u);
    if (why) {
        free(u.host);
        free(u.path);
        conf__fail_at(p, conf__here(p), "bad URL '%s' (%s)", val, why);
        return -1;
    }
    free(o->device_host);
    free(o->device_path);
    free(o->device_url);
    o->device_host = u.host;
    o->device_path = u.path;
    o->device_port = u.port;
    if (!o->device_host || !o->device_path) {
        return conf__oom(p);
    }
    o->device_url = conf__strdup(p, val);
    return o->device_url ? 0 : -1;
}

/* oauth_client_id, oauth_scope: kept as written (form-encoded when sent). */
int conf__set_oauth_text(struct parse *p, const char *val, size_t len)
{
    char **field = conf__field(p);

    (void)len;
    conf_oauth_seen(p);
    if (!conf__valid_text(val)) {
        conf__fail_at(p, conf__here(p), "control character in value");
        return -1;
    }
    *field = conf__strdup(p, val);
    return *field ? 0 : -1;
}

/* The client secret is read with the other secrets, once the file is parsed. */
static int conf_oauth_secret(struct parse *p, enum pw_kind kind, const char *val)
{
    struct dev_extra *x = &p->dx[p->cur];
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    size_t n = strlen(val) + 6;

    conf_oauth_seen(p);
    if (x->oauth_secret != PW_NONE) {
        conf__fail_at(p, conf__here(p),
                      "give one of oauth_client_secret_file and oauth_client_secret_env");
        return -1;
    }
    if (kind == PW_ENV && !conf__valid_env_name(val)) {
        conf__fail_at(p, conf__here(p), "bad variable name '%s'", val);
        return -1;
    }
    x->oauth_secret = kind;
    x->oauth_secret_at = conf__here(p);
    x->oauth_secret_arg = conf__strdup(p, val);
    o->client_secret_source = malloc(n);
    if (!x->oauth_secret_arg || !o->client_secret_source) {
        return conf__oom(p);
    }
    snprintf(o->client_secret_source, n, "%s %s", kind == PW_FILE ? "file" : "env", val);
    return 0;
}

int conf__set_oauth_secret_file(struct parse *p, const char *val, size_t len)
{
    (void)len;
    return conf_oauth_secret(p, PW_FILE, val);
}

int conf__set_oauth_secret_env(struct parse *p, const char *val, size_t len)
{
    (void)len;
    return conf_oauth_secret(p, PW_ENV, val);
}

/* Absolute: rotated refresh tokens are written back (temp file + rename in its
 * directory) long after startup, whatever the working directory is then. */
int conf__set_oauth_refresh_file(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;

    (void)len;
    conf_oauth_seen(p);
    if (val[0] != '/' || !conf__valid_text(val)) {
        conf__fail_at(p, conf__here(p), "'%s' is not an absolute path (start it with '/')", val);
        return -1;
    }
    o->refresh_token_file = conf__strdup(p, val);
    return o->refresh_token_file ? 0 : -1;
}

int conf__set_oauth_grant(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"refresh_token", "client_credentials"};
    int k;

    (void)len;
    conf_oauth_seen(p);
    k = conf__keyword(p, val, words, 2);
    if (k < 0) {
        return -1;
    }
    p->c->devices[p->cur].oauth.grant =
        k == 0 ? CONF_OAUTH_REFRESH_TOKEN : CONF_OAUTH_CLIENT_CREDENTIALS;
    return 0;
}

int conf__set_oauth_command(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    if (!conf__valid_text(val)) {
        conf__fail_at(p, conf__here(p), "control character in value");
        return -1;
    }
    why = conf__split_words(val, &o->argv);
    if (why) {
        conf__fail_at(p, conf__here(p), "bad command (%s)", why);
        return -1;
    }
    o->command = conf__strdup(p, val);
    return o->command ? 0 : -1;
}

/* type = smtp | graph */
int conf__set_up_type(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (strcmp(val, "smtp") == 0) {
        p->c->upstreams[p->cur].type = CONF_UP_SMTP;
    } else if (strcmp(val, "graph") == 0) {
        p->c->upstreams[p->cur].type = CONF_UP_GRAPH;
    } else {
        conf__fail_at(p, conf__here(p), "bad value '%s' (smtp or graph)", val);
        return -1;
    }
    return 0;
}

#define CONF_GRAPH_URL "https://graph.microsoft.com" /* type = graph: the global service */

/* graph_url = https://graph.microsoft.us (national clouds, tests): the
 * connection goes there (host = is not used); the path is a prefix of the calls. */
int conf__graph_endpoint(struct parse *p, struct conf_upstream *u)
{
    struct conf_oauth o;
    const char *bad;
    size_t n;

    if (!u->graph_url && !(u->graph_url = conf__strdup(p, CONF_GRAPH_URL))) {
        return -1;
    }
    memset(&o, 0, sizeof(o));
    bad = conf__parse_url(u->graph_url, &o);
    if (!bad && (!o.host || !o.path)) {
        free(o.host);
        free(o.path);
        return conf__oom(p);
    }
    if (!bad && strchr(o.path, '?')) {
        bad = "no query allowed";
    }
    if (bad) {
        free(o.host);
        free(o.path);
        conf__fail_at(p, p->ux[u - p->c->upstreams].graph_at, "bad graph_url '%s': %s",
                      u->graph_url, bad);
        return -1;
    }
    n = strlen(o.path);
    while (n > 0 && o.path[n - 1] == '/') {
        o.path[--n] = '\0';
    }
    free(u->host);
    u->host = o.host;
    u->graph_path = o.path;
    u->port = o.port;
    return 0;
}

int conf__set_graph_url(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    free(u->graph_url);
    u->graph_url = conf__strdup(p, val);
    p->ux[p->cur].graph_at = conf__here(p);
    return u->graph_url ? 0 : -1;
}
