/* conf_secret: what conf_load reads besides the configuration itself: device and
 * route passwords (file, variable or systemd credential), OAuth2 client secrets and
 * refresh tokens, the users_file, the inbound certificate and key, and the
 * upstreams' trust anchors. Secrets are wiped in conf_free and never logged. */
#include "conf/conf_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "common/tls_ca.h"
#include "common/tls_cert.h"

/* The client secret and the refresh token of an auth = xoauth2 device. */
static int conf_load_oauth_secrets(struct parse *p, size_t i)
{
    struct conf_oauth *o = &p->c->devices[i].oauth;
    const struct dev_extra *x = &p->dx[i];
    char msg[512];

    if (x->oauth_secret != PW_NONE) {
        o->client_secret = x->oauth_secret == PW_FILE
                               ? secret_file(x->oauth_secret_arg, msg, sizeof(msg))
                               : secret_env(x->oauth_secret_arg, msg, sizeof(msg));
        if (!o->client_secret) {
            conf__fail_at(p, x->oauth_secret_at, "%s", msg);
            return -1;
        }
    }
    if (o->grant == CONF_OAUTH_REFRESH_TOKEN && p->login &&
        access(o->refresh_token_file, F_OK) != 0 && errno == ENOENT) {
        return 0; /* relay25 oauth login is about to write it */
    }
    if (o->grant == CONF_OAUTH_REFRESH_TOKEN) {
        o->refresh_token = secret_file(o->refresh_token_file, msg, sizeof(msg));
        if (!o->refresh_token) {
            conf__fail_at(p, x->oauth_at[OK_REFRESH_TOKEN_FILE], "%s", msg);
            return -1;
        }
    }
    return 0;
}

/* The password of a device or a route from its file, variable or credential. */
static int conf_load_password(struct parse *p, struct conf_device *d, const struct dev_extra *x)
{
    char msg[512];

    if (x->pw == PW_CRED) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char path[4096];
        if (!dir || !*dir) {
            conf__fail_at(p, x->pw_at,
                          "password_credential needs $CREDENTIALS_DIRECTORY (systemd "
                          "LoadCredential=)");
            return -1;
        }
        if (snprintf(path, sizeof(path), "%s/%s", dir, x->pw_arg) >= (int)sizeof(path)) {
            conf__fail_at(p, x->pw_at, "credential path too long");
            return -1;
        }
        d->password = secret_file(path, msg, sizeof(msg));
    } else if (x->pw == PW_FILE || x->pw == PW_ENV) {
        d->password = x->pw == PW_FILE ? secret_file(x->pw_arg, msg, sizeof(msg))
                                       : secret_env(x->pw_arg, msg, sizeof(msg));
    } else {
        return 0;
    }
    if (!d->password) {
        conf__fail_at(p, x->pw_at, "%s", msg);
        return -1;
    }
    return 0;
}

/* Secrets are read now, at load time, so a missing one stops startup or reload. */
int conf__load_secrets(struct parse *p)
{
    for (size_t i = 0; i < p->c->ndevices; i++) {
        struct conf_device *d = &p->c->devices[i];

        if (d->auth != CONF_AUTH_PASSWORD) {
            if (conf_load_oauth_secrets(p, i) != 0) {
                return -1;
            }
            continue;
        }
        if (conf_load_password(p, d, &p->dx[i]) != 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < p->c->nroutes; i++) {
        if (conf_load_password(p, &p->c->routes[i].cred, &p->rx[i]) != 0) {
            return -1;
        }
    }
    return 0;
}

/* users_file: "login:hash" lines (crypt(3) strings), blank lines and # comments. */
int conf__load_users(struct parse *p)
{
    struct conf *c = p->c;
    struct where w = conf__line(p, conf__relay_seen(p, "users_file"));
    FILE *f = fopen(c->users_file, "r");
    char line[1024];
    int n = 0;

    if (!f) {
        conf__fail_at(p, w, "cannot read users_file %s: %s", c->users_file, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        size_t l = strlen(line);
        char *colon;
        struct conf_user *a;

        n++;
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ')) {
            line[--l] = '\0';
        }
        if (l == 0 || line[0] == '#') {
            continue;
        }
        colon = strchr(line, ':');
        if (!colon || colon == line || colon[1] != '$' || strchr(colon + 1, ' ')) {
            conf__fail_at(p, w, "users_file %s:%d: expected login:$hash (relay25 passwd LOGIN)",
                          c->users_file, n);
            goto fail;
        }
        *colon = '\0';
        for (size_t i = 0; i < c->nusers; i++) {
            if (strcmp(c->users[i].login, line) == 0) {
                conf__fail_at(p, w, "users_file %s:%d: login '%s' is listed twice", c->users_file,
                              n, line);
                goto fail;
            }
        }
        if (!(a = conf__grow(c->users, c->nusers, sizeof(*a)))) {
            conf__oom(p);
            goto fail;
        }
        c->users = a;
        a[c->nusers].login = conf__strdup(p, line);
        a[c->nusers].hash = conf__strdup(p, colon + 1);
        c->nusers++;
        if (!a[c->nusers - 1].login || !a[c->nusers - 1].hash) {
            goto fail;
        }
    }
    explicit_bzero(line, sizeof(line));
    fclose(f);
    return 0;
fail:
    explicit_bzero(line, sizeof(line));
    fclose(f);
    return -1;
}

/* The inbound certificate chain and key (tls_cert_file, tls_key_file). */
int conf__load_tls_cert(struct parse *p)
{
    struct conf *c = p->c;
    char msg[512];

    c->tls_cert = tls_cert_load(c->tls_cert_file, c->tls_key_file, msg, sizeof(msg));
    if (!c->tls_cert) {
        conf__fail_at(p, conf__line(p, conf__relay_seen(p, "tls_cert_file")), "%s", msg);
        return -1;
    }
    return 0;
}

int conf__load_cas(struct parse *p)
{
    struct conf *c = p->c;

    for (size_t i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        char msg[512];

        for (size_t j = 0; j < i && !u->ca; j++) {
            if (strcmp(c->upstreams[j].ca_file, u->ca_file) == 0) {
                u->ca = c->upstreams[j].ca;
            }
        }
        if (u->ca) {
            continue;
        }
        u->ca = tls_ca_load(u->ca_file, msg, sizeof(msg));
        if (!u->ca) {
            struct where w = {u->line, p->file ? NULL : "RELAY25_CA_FILE", NULL};
            conf__fail_at(p, w, "[upstream %s]: %s", u->name, msg);
            return -1;
        }
    }
    return 0;
}
