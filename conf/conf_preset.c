/* conf_preset: `provider = NAME` in [upstream NAME]: a table of mail providers' submission
 * settings (host, port, TLS mode, preferred SASL mechanisms, max_connections and, where
 * relay25 can log in with OAuth2 over SMTP, the token/device endpoints and scopes), each
 * entry citing the provider's own documentation. Values are applied through the key
 * setters after the file is read, only where the section did not set the key itself. */
#include "conf/conf_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum preset_arg {
    ARG_NONE,     /* "gmail" */
    ARG_REQUIRED, /* "ses:REGION" */
    ARG_OPTIONAL, /* "m365" or "m365:TENANT" */
};

struct conf_preset {
    const char *name;
    enum preset_arg arg;
    const char *arg_default; /* ARG_OPTIONAL without the argument */
    const char *host;        /* "%s": the argument */
    const char *port;
    const char *tls;
    const char *max_connections;
    const char *mechs; /* auth_mechanisms for password logins */
    /* OAuth2 (auth = xoauth2 | oauthbearer); NULL where SMTP OAuth2 is not offered */
    const char *token_url;  /* "%s": the argument (tenant) */
    const char *device_url; /* RFC 8628; NULL where the provider's device flow cannot
                               grant the SMTP scope */
    const char *scope;      /* refresh_token grant (delegated) */
    const char *cc_scope;   /* client_credentials grant (application) */
    int graph;              /* type = graph (Microsoft Graph, issue 16): no host, port, tls */
};

/* max_connections: the provider's documented limit where there is one; otherwise
 * relay25's default of 4 (a small office never needs more, and a provider that
 * throttles by connection count answers 421 rather than losing mail). */
static const struct conf_preset conf_presets[] = {
    /* https://support.google.com/a/answer/176600 (smtp.gmail.com, 587 STARTTLS or 465,
     * app password), https://developers.google.com/gmail/imap/xoauth2-protocol (XOAUTH2,
     * scope https://mail.google.com/). No device_url: Google's device flow allows only
     * a short list of scopes and mail.google.com is not among them
     * (https://developers.google.com/identity/protocols/oauth2/limited-input-device). */
    {"gmail", ARG_NONE, NULL, "smtp.gmail.com", "587", "starttls", "4", "PLAIN, LOGIN",
     "https://oauth2.googleapis.com/token", NULL, "https://mail.google.com/", NULL, 0},
    /* https://support.google.com/a/answer/2956491 (smtp-relay.gmail.com, port 587 with
     * TLS; SMTP AUTH needs TLS). OAuth2 is not documented for the relay service. */
    {"google-workspace-relay", ARG_NONE, NULL, "smtp-relay.gmail.com", "587", "starttls", "4",
     "PLAIN, LOGIN", NULL, NULL, NULL, NULL, 0},
    /* https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/how-to-set-up-a-
     * multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365
     * (smtp.office365.com, 587, STARTTLS); three concurrent connections per mailbox:
     * https://learn.microsoft.com/en-us/exchange/troubleshoot/send-emails/smtp-submission-
     * improvements; OAuth2 endpoints and scopes (SMTP.Send, offline_access, .default for
     * client credentials): https://learn.microsoft.com/en-us/exchange/client-developer/
     * legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth.
     * The tenant is "organizations" unless given: m365:contoso.onmicrosoft.com. */
    {"m365", ARG_OPTIONAL, "organizations", "smtp.office365.com", "587", "starttls", "3", "LOGIN",
     "https://login.microsoftonline.com/%s/oauth2/v2.0/token",
     "https://login.microsoftonline.com/%s/oauth2/v2.0/devicecode",
     "https://outlook.office.com/SMTP.Send offline_access",
     "https://outlook.office365.com/.default", 0},
    /* Microsoft Graph instead of SMTP AUTH: https://learn.microsoft.com/en-us/graph/api/
     * user-sendmail (POST /users/{id}/sendMail, application permission Mail.Send), token
     * from https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-
     * creds-grant-flow with scope https://graph.microsoft.com/.default; the tenant is
     * required for the client credentials grant: m365-graph:contoso.onmicrosoft.com. */
    {"m365-graph", ARG_OPTIONAL, "organizations", NULL, NULL, NULL, "4", NULL,
     "https://login.microsoftonline.com/%s/oauth2/v2.0/token", NULL, NULL,
     "https://graph.microsoft.com/.default", 1},
    /* https://docs.aws.amazon.com/ses/latest/dg/smtp-connect.html
     * (email-smtp.REGION.amazonaws.com, STARTTLS on 25, 587 or 2587). SES limits the
     * sending rate, not connections. */
    {"ses", ARG_REQUIRED, NULL, "email-smtp.%s.amazonaws.com", "587", "starttls", "4",
     "PLAIN, LOGIN", NULL, NULL, NULL, NULL, 0},
    /* https://www.twilio.com/docs/sendgrid/for-developers/sending-email/integrating-with-
     * the-smtp-api (smtp.sendgrid.net, 587 TLS, user "apikey", the API key as password) */
    {"sendgrid", ARG_NONE, NULL, "smtp.sendgrid.net", "587", "starttls", "4", "PLAIN, LOGIN", NULL,
     NULL, NULL, NULL, 0},
    /* https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages
     * (smtp.mailgun.org, or smtp.eu.mailgun.org for EU domains; 587 with STARTTLS) */
    {"mailgun", ARG_NONE, NULL, "smtp.mailgun.org", "587", "starttls", "4", "PLAIN, LOGIN", NULL,
     NULL, NULL, NULL, 0},
    {"mailgun-eu", ARG_NONE, NULL, "smtp.eu.mailgun.org", "587", "starttls", "4", "PLAIN, LOGIN",
     NULL, NULL, NULL, NULL, 0},
    /* https://www.fastmail.help/hc/en-us/articles/1500000278342-Server-names-and-ports
     * (smtp.fastmail.com, 465, SSL/TLS "but not STARTTLS", authentication PLAIN) */
    {"fastmail", ARG_NONE, NULL, "smtp.fastmail.com", "465", "implicit", "4", "PLAIN", NULL, NULL,
     NULL, NULL, 0},
    /* https://developers.brevo.com/docs/smtp-integration (smtp-relay.brevo.com, 587; an
     * SMTP key, not an API key) */
    {"brevo", ARG_NONE, NULL, "smtp-relay.brevo.com", "587", "starttls", "4", "PLAIN, LOGIN", NULL,
     NULL, NULL, NULL, 0},
    /* https://postmarkapp.com/support/article/811-what-are-the-smtp-details-api-tokens-i-
     * should-be-using (smtp.postmarkapp.com, 25, 2525 or 587, STARTTLS; the server API
     * token as user and password) */
    {"postmark", ARG_NONE, NULL, "smtp.postmarkapp.com", "587", "starttls", "4", "PLAIN, LOGIN",
     NULL, NULL, NULL, NULL, 0},
    /* https://www.zoho.com/mail/help/zoho-smtp.html (smtp.zoho.com, 465 SSL or 587 TLS);
     * accounts in the EU data centre use smtp.zoho.eu */
    {"zoho", ARG_NONE, NULL, "smtp.zoho.com", "587", "starttls", "4", "PLAIN, LOGIN", NULL, NULL,
     NULL, NULL, 0},
    {"zoho-eu", ARG_NONE, NULL, "smtp.zoho.eu", "587", "starttls", "4", "PLAIN, LOGIN", NULL, NULL,
     NULL, NULL, 0},
    /* https://support.apple.com/en-us/102525 (smtp.mail.me.com, 587, STARTTLS, an
     * app-specific password) */
    {"icloud", ARG_NONE, NULL, "smtp.mail.me.com", "587", "starttls", "4", "PLAIN, LOGIN", NULL,
     NULL, NULL, NULL, 0},
};
#define CONF_NPRESETS (sizeof(conf_presets) / sizeof(conf_presets[0]))

const char *conf__preset_names(char *buf, size_t cap)
{
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < CONF_NPRESETS && n < cap; i++) {
        const struct conf_preset *pr = &conf_presets[i];
        int r = snprintf(buf + n, cap - n, "%s%s%s", i ? ", " : "", pr->name,
                         pr->arg == ARG_REQUIRED   ? ":REGION"
                         : pr->arg == ARG_OPTIONAL ? "[:TENANT]"
                                                   : "");

        n += r > 0 ? (size_t)r : 0;
    }
    return buf;
}

/* A region or tenant goes into a host name or URL path: letters, digits, '.', '-'. */
static int conf_preset_valid_arg(const char *s)
{
    if (!*s) {
        return 0;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-')) {
            return 0;
        }
    }
    return 1;
}

const struct conf_preset *conf__preset_find(const char *value, char *arg, size_t cap, char *msg,
                                            size_t msgcap)
{
    const char *colon = strchr(value, ':');
    size_t nlen = colon ? (size_t)(colon - value) : strlen(value);

    arg[0] = '\0';
    for (size_t i = 0; i < CONF_NPRESETS; i++) {
        const struct conf_preset *pr = &conf_presets[i];

        if (strlen(pr->name) != nlen || strncmp(pr->name, value, nlen) != 0) {
            continue;
        }
        if (colon && pr->arg == ARG_NONE) {
            snprintf(msg, msgcap, "'%s' takes nothing after ':'", pr->name);
            return NULL;
        }
        if (!colon && pr->arg == ARG_REQUIRED) {
            snprintf(msg, msgcap, "'%s' needs the region: %s:eu-west-1", pr->name, pr->name);
            return NULL;
        }
        if (colon && (!conf_preset_valid_arg(colon + 1) || strlen(colon + 1) >= cap)) {
            snprintf(msg, msgcap, "bad %s '%s' (letters, digits, '.', '-')",
                     pr->arg == ARG_REQUIRED ? "region" : "tenant", colon + 1);
            return NULL;
        }
        snprintf(arg, cap, "%s", colon ? colon + 1 : pr->arg_default ? pr->arg_default : "");
        return pr;
    }
    {
        char name[64], names[256];
        const char *near = NULL;
        unsigned best = 3;

        snprintf(name, sizeof(name), "%.*s", (int)nlen, value);
        for (size_t i = 0; i < CONF_NPRESETS; i++) {
            unsigned d = conf__distance(name, conf_presets[i].name);

            if (d < best && d * 2 <= strlen(name)) {
                best = d;
                near = conf_presets[i].name;
            }
        }
        snprintf(msg, msgcap, "unknown provider '%s'%s%s%s (known: %s)", name,
                 near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "",
                 conf__preset_names(names, sizeof(names)));
    }
    return NULL;
}

/* Applies one key of section `sect` record i through its setter, as if written on the
 * provider line, and notes it in *filled ("key value, ..."). */
static int conf_preset_apply(struct parse *p, enum sect sect, size_t i, const struct where *at,
                             const char *key, const char *val, char **filled)
{
    const struct key_def *kd = conf__find_key(sect, key);
    enum sect save_sect = p->sect;
    size_t save_cur = p->cur;
    int save_line = p->lineno;
    size_t old = *filled ? strlen(*filled) : 0, add = strlen(key) + strlen(val) + 4;
    char *f;
    int r;

    p->sect = sect;
    p->cur = i;
    p->lineno = at->line;
    memset(p->seen, 0, sizeof(p->seen));
    r = conf__apply(p, kd, val, strlen(val));
    memset(p->seen, 0, sizeof(p->seen));
    p->sect = save_sect;
    p->cur = save_cur;
    p->lineno = save_line;
    if (r != 0) {
        return -1;
    }
    f = realloc(*filled, old + add);
    if (!f) {
        return conf__oom(p);
    }
    snprintf(f + old, add, "%s%s %s", old ? ", " : "", key, val);
    *filled = f;
    return 0;
}

/* fmt is one of the table's strings with at most one %s */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int conf_preset_fmt(struct parse *p, char *buf, size_t cap, const char *fmt, const char *arg)
{
    int r = snprintf(buf, cap, fmt, arg);

    if (r < 0 || (size_t)r >= cap) {
        conf__fail_raw(p, "provider argument '%s' too long", arg);
        return -1;
    }
    return 0;
}
#pragma GCC diagnostic pop

int conf__preset_is_graph(const struct conf_preset *pr)
{
    return pr && pr->graph;
}

int conf__preset_upstream(struct parse *p, size_t i)
{
    struct conf_upstream *u = &p->c->upstreams[i];
    struct up_extra *x = &p->ux[i];
    const struct conf_preset *pr = x->preset;
    char host[CONF_NAME_MAX + 1];

    if (!pr) {
        return 0;
    }
    if (!u->host && (conf_preset_fmt(p, host, sizeof(host), pr->host, x->preset_arg) != 0 ||
                     conf_preset_apply(p, SECT_UPSTREAM, i, &x->provider_at, "host", host,
                                       &u->preset_filled) != 0)) {
        return -1;
    }
    /* port and tls go together: a port set by hand keeps relay25's port rule for tls */
    if (!x->port_given && !x->tls_given &&
        (conf_preset_apply(p, SECT_UPSTREAM, i, &x->provider_at, "port", pr->port,
                           &u->preset_filled) != 0 ||
         conf_preset_apply(p, SECT_UPSTREAM, i, &x->provider_at, "tls", pr->tls,
                           &u->preset_filled) != 0)) {
        return -1;
    }
    if (!x->conn_given && conf_preset_apply(p, SECT_UPSTREAM, i, &x->provider_at, "max_connections",
                                            pr->max_connections, &u->preset_filled) != 0) {
        return -1;
    }
    return 0;
}

/* The upstream device i sends through first (the one whose preset counts). */
static const struct up_extra *conf_preset_first(const struct parse *p, size_t i)
{
    const struct conf *c = p->c;
    const struct dev_extra *dx = &p->dx[i];

    if (!dx->upstream_given) {
        return c->nupstreams == 1 ? &p->ux[0] : NULL;
    }
    if (dx->nups == 0) {
        return NULL;
    }
    for (size_t k = 0; k < c->nupstreams; k++) {
        if (strcmp(c->upstreams[k].name, dx->ups[0].name) == 0) {
            return &p->ux[k];
        }
    }
    return NULL;
}

int conf__preset_device(struct parse *p, size_t i)
{
    struct conf_device *d = &p->c->devices[i];
    const struct dev_extra *dx = &p->dx[i];
    const struct up_extra *ux = conf_preset_first(p, i);
    const struct conf_preset *pr = ux ? ux->preset : NULL;
    const struct where *at = dx->oauth_at;
    char url[512];
    int cc = d->oauth.grant == CONF_OAUTH_CLIENT_CREDENTIALS;

    if (!pr || d->auth == CONF_AUTH_PASSWORD || !pr->token_url || at[OK_TOKEN_COMMAND].key) {
        return 0;
    }
    if (!at[OK_TOKEN_URL].key) {
        if (cc && pr->arg == ARG_OPTIONAL && ux->provider_at.line > 0 &&
            strcmp(ux->preset_arg, pr->arg_default) == 0) {
            conf__fail_at(p, ux->provider_at,
                          "oauth_grant = client_credentials needs the tenant: provider = "
                          "%s:TENANT (or oauth_token_url)",
                          pr->name);
            return -1;
        }
        if (conf_preset_fmt(p, url, sizeof(url), pr->token_url, ux->preset_arg) != 0 ||
            conf_preset_apply(p, SECT_DEVICE, i, &ux->provider_at, "oauth_token_url", url,
                              &d->preset_filled) != 0) {
            return -1;
        }
    }
    if (!at[OK_SCOPE].key && (cc ? pr->cc_scope : pr->scope) &&
        conf_preset_apply(p, SECT_DEVICE, i, &ux->provider_at, "oauth_scope",
                          cc ? pr->cc_scope : pr->scope, &d->preset_filled) != 0) {
        return -1;
    }
    if (!at[OK_DEVICE_URL].key && !cc && pr->device_url &&
        (conf_preset_fmt(p, url, sizeof(url), pr->device_url, ux->preset_arg) != 0 ||
         conf_preset_apply(p, SECT_DEVICE, i, &ux->provider_at, "oauth_device_url", url,
                           &d->preset_filled) != 0)) {
        return -1;
    }
    return 0;
}

int conf__preset_mechs(struct parse *p, size_t i)
{
    struct conf_device *d = &p->c->devices[i];
    const struct up_extra *ux = conf_preset_first(p, i);

    /* an explicit auth_mechanisms, in the device or in [relay], wins */
    if (!ux || !ux->preset || !ux->preset->mechs || d->auth != CONF_AUTH_PASSWORD ||
        conf__dev_given(p, i, "auth_mechanisms") || conf__relay_seen(p, "auth_mechanisms")) {
        return 0;
    }
    return conf_preset_apply(p, SECT_DEVICE, i, &ux->provider_at, "auth_mechanisms",
                             ux->preset->mechs, &d->preset_filled);
}
