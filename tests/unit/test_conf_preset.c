/* test_conf_preset: `provider = NAME` (conf/conf_preset.c): a table test of every
 * preset's expansion (host, port, TLS mode, max_connections, a password device's
 * auth_mechanisms, an OAuth2 device's endpoints and scope), explicit keys winning
 * before and after the provider line, and refused provider values. */
#include "conf/conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"

#define CONF "preset.conf"

static char tmpdir[256];

static struct conf *load(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(CONF, "w");

    ASSERT_TRUE(f != NULL);
    if (!f) {
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return conf_load(CONF, CONF_LOAD_STRICT, err, errlen);
}

/* "PLAIN, LOGIN" for a device's auth_mechanisms */
static const char *mechs(const struct conf_device *d, char *buf, size_t cap)
{
    static const char *const names[] = {"", "XOAUTH2", "OAUTHBEARER", "CRAM-MD5", "PLAIN", "LOGIN"};
    size_t n = 0;

    buf[0] = '\0';
    for (size_t k = 0; k < CONF_MAX_MECHS && d->auth_mechanisms[k] != CONF_MECH_END; k++) {
        n +=
            (size_t)snprintf(buf + n, cap - n, "%s%s", k ? ", " : "", names[d->auth_mechanisms[k]]);
    }
    return buf;
}

static const struct {
    const char *provider;
    const char *host;
    unsigned port;
    enum conf_tls tls;
    unsigned max_connections;
    const char *mechs;
} table[] = {
    {"gmail", "smtp.gmail.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"google-workspace-relay", "smtp-relay.gmail.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"m365", "smtp.office365.com", 587, CONF_TLS_STARTTLS, 3, "LOGIN"},
    {"m365:contoso.onmicrosoft.com", "smtp.office365.com", 587, CONF_TLS_STARTTLS, 3, "LOGIN"},
    {"ses:eu-west-1", "email-smtp.eu-west-1.amazonaws.com", 587, CONF_TLS_STARTTLS, 4,
     "PLAIN, LOGIN"},
    {"ses:us-east-1", "email-smtp.us-east-1.amazonaws.com", 587, CONF_TLS_STARTTLS, 4,
     "PLAIN, LOGIN"},
    {"sendgrid", "smtp.sendgrid.net", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"mailgun", "smtp.mailgun.org", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"mailgun-eu", "smtp.eu.mailgun.org", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"fastmail", "smtp.fastmail.com", 465, CONF_TLS_IMPLICIT, 4, "PLAIN"},
    {"brevo", "smtp-relay.brevo.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"postmark", "smtp.postmarkapp.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"zoho", "smtp.zoho.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"zoho-eu", "smtp.zoho.eu", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
    {"icloud", "smtp.mail.me.com", 587, CONF_TLS_STARTTLS, 4, "PLAIN, LOGIN"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char text[512], err[1024] = "", m[64];
        struct conf *c;

        snprintf(text, sizeof(text),
                 "[upstream up]\nprovider = %s\n\n[device default]\nuser = a@example.com\n"
                 "password = x\n",
                 table[i].provider);
        c = load(text, err, sizeof(err));
        ASSERT_TRUE(c != NULL);
        if (!c) {
            fprintf(stderr, "  provider %s: %s\n", table[i].provider, err);
            continue;
        }
        ASSERT_STREQ(c->upstreams[0].host, table[i].host);
        ASSERT_STREQ(c->upstreams[0].server_name, table[i].host);
        ASSERT_EQ(c->upstreams[0].port, table[i].port);
        ASSERT_EQ(c->upstreams[0].tls, table[i].tls);
        ASSERT_EQ(c->upstreams[0].max_connections, table[i].max_connections);
        ASSERT_STREQ(c->upstreams[0].provider, table[i].provider);
        ASSERT_TRUE(c->upstreams[0].preset_filled != NULL &&
                    strstr(c->upstreams[0].preset_filled, table[i].host) != NULL);
        ASSERT_STREQ(mechs(&c->devices[0], m, sizeof(m)), table[i].mechs);
        conf_free(c);
    }
}

/* Explicit keys win wherever they stand; port alone keeps relay25's port rule for tls. */
static void test_override(void)
{
    char err[1024] = "", m[64];
    struct conf *c =
        load("[relay]\nauth_mechanisms = LOGIN\n\n"
             "[upstream up]\nhost = smtp.example.net\nprovider = gmail\nmax_connections = 9\n\n"
             "[upstream up2]\nprovider = fastmail\nport = 587\n\n"
             "[upstream up3]\ntls = starttls\nprovider = fastmail\n\n"
             "[device default]\nupstream = up\nuser = a@example.com\npassword = x\n\n"
             "[device p]\nmatch = 10.0.0.1\nupstream = up2\nauth_mechanisms = CRAM-MD5\n"
             "user = b@example.com\npassword = x\n",
             err, sizeof(err));

    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  override: %s\n", err);
        return;
    }
    ASSERT_STREQ(c->upstreams[0].host, "smtp.example.net");
    ASSERT_EQ(c->upstreams[0].port, 587);
    ASSERT_EQ(c->upstreams[0].max_connections, 9);
    ASSERT_STREQ(c->upstreams[0].preset_filled, "port 587, tls starttls");
    ASSERT_STREQ(c->upstreams[1].host, "smtp.fastmail.com");
    ASSERT_EQ(c->upstreams[1].port, 587);
    ASSERT_EQ(c->upstreams[1].tls, CONF_TLS_STARTTLS);
    ASSERT_EQ(c->upstreams[2].port, 587);
    ASSERT_EQ(c->upstreams[2].tls, CONF_TLS_STARTTLS);
    /* [relay] auth_mechanisms and the device's own win over the preset's */
    ASSERT_STREQ(mechs(&c->devices[0], m, sizeof(m)), "LOGIN");
    ASSERT_STREQ(mechs(&c->devices[1], m, sizeof(m)), "CRAM-MD5");
    ASSERT_TRUE(c->devices[0].preset_filled == NULL);
    conf_free(c);
}

static void test_oauth(void)
{
    char err[1024] = "", text[2048];
    struct conf *c;

    FILE *f = fopen("rt", "w");
    ASSERT_TRUE(f != NULL);
    if (f) {
        fputs("refresh\n", f);
        fclose(f);
    }
    snprintf(text, sizeof(text),
             "[upstream g]\nprovider = gmail\n[upstream m]\nprovider = m365:contoso.example\n"
             "[device default]\nupstream = g\nuser = a@example.com\nauth = xoauth2\n"
             "oauth_client_id = id\noauth_refresh_token_file = %s/rt\n"
             "[device p]\nmatch = 10.0.0.1\nupstream = m\nuser = b@example.com\nauth = xoauth2\n"
             "oauth_client_id = id\noauth_refresh_token_file = %s/rt\n"
             "[device q]\nmatch = 10.0.0.2\nupstream = m\nuser = c@example.com\nauth = xoauth2\n"
             "oauth_client_id = id\noauth_grant = client_credentials\n"
             "oauth_client_secret_file = %s/rt\noauth_scope = custom\n",
             tmpdir, tmpdir, tmpdir);
    c = load(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  oauth: %s\n", err);
        return;
    }
    ASSERT_STREQ(c->devices[0].oauth.token_url, "https://oauth2.googleapis.com/token");
    ASSERT_STREQ(c->devices[0].oauth.host, "oauth2.googleapis.com");
    ASSERT_STREQ(c->devices[0].oauth.scope, "https://mail.google.com/");
    ASSERT_TRUE(c->devices[0].oauth.device_url == NULL); /* Google's device flow: no */
    ASSERT_EQ(c->devices[0].auth_mechanisms[0], CONF_MECH_END);
    ASSERT_STREQ(c->devices[1].oauth.token_url,
                 "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token");
    ASSERT_STREQ(c->devices[1].oauth.device_url,
                 "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/devicecode");
    ASSERT_STREQ(c->devices[1].oauth.scope, "https://outlook.office.com/SMTP.Send offline_access");
    ASSERT_STREQ(c->devices[2].oauth.token_url,
                 "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token");
    ASSERT_STREQ(c->devices[2].oauth.scope, "custom");
    ASSERT_TRUE(c->devices[2].oauth.device_url == NULL);
    conf_free(c);

    /* client credentials need the tenant, "organizations" cannot issue app tokens */
    snprintf(text, sizeof(text),
             "[upstream m]\nprovider = m365\n[device default]\nuser = a@example.com\n"
             "auth = xoauth2\noauth_client_id = id\noauth_grant = client_credentials\n"
             "oauth_client_secret_file = %s/rt\n",
             tmpdir);
    c = load(text, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strstr(err, "preset.conf:2: provider: oauth_grant = client_credentials needs the "
                            "tenant: provider = m365:TENANT") != NULL);
    conf_free(c);
}

static void expect_refused(const char *provider, const char *part)
{
    char text[256], err[1024] = "";
    struct conf *c;

    snprintf(text, sizeof(text),
             "[upstream up]\nprovider = %s\n[device default]\nuser = a@b.c\npassword = x\n",
             provider);
    c = load(text, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "preset.conf:2: provider: ", 25) == 0 && strstr(err, part) != NULL);
    if (!c && !strstr(err, part)) {
        fprintf(stderr, "  provider %s: want ...%s..., got %s\n", provider, part, err);
    }
    conf_free(c);
}

/* provider = m365-graph:TENANT (issue 16): type = graph, Graph's endpoint, and the
 * device's token URL and .default scope for the client credentials grant. */
static void test_graph(void)
{
    char err[1024] = "", text[1024];
    struct conf *c;

    snprintf(text, sizeof(text),
             "[upstream m365]\nprovider = m365-graph:contoso.example\n"
             "[device default]\nuser = scanner@contoso.example\nauth = xoauth2\n"
             "oauth_grant = client_credentials\noauth_client_id = id\n"
             "oauth_client_secret_file = %s/rt\n",
             tmpdir);
    c = load(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  graph: %s\n", err);
        return;
    }
    ASSERT_EQ(c->upstreams[0].type, CONF_UP_GRAPH);
    ASSERT_STREQ(c->upstreams[0].host, "graph.microsoft.com");
    ASSERT_EQ(c->upstreams[0].port, 443);
    ASSERT_STREQ(c->devices[0].oauth.token_url,
                 "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token");
    ASSERT_STREQ(c->devices[0].oauth.scope, "https://graph.microsoft.com/.default");
    conf_free(c);
    /* a password device cannot use Graph; the tenant is needed for app-only tokens */
    c = load("[upstream m365]\nprovider = m365-graph:contoso.example\n"
             "[device default]\nuser = a@contoso.example\npassword = x\n",
             err, sizeof(err));
    ASSERT_TRUE(c == NULL && strstr(err, "type = graph") != NULL);
    conf_free(c);
}

static void test_refused(void)
{
    expect_refused("gmial", "unknown provider 'gmial'; did you mean 'gmail'? (known: gmail, ");
    expect_refused("exchange", "unknown provider 'exchange' (known: ");
    expect_refused("ses", "'ses' needs the region: ses:eu-west-1");
    expect_refused("ses:eu_west/1", "bad region 'eu_west/1'");
    expect_refused("gmail:x", "'gmail' takes nothing after ':'");
    expect_refused("m365:", "bad tenant ''");
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    int n = snprintf(tmpdir, sizeof(tmpdir), "%s/relay25-preset-XXXXXX", t && *t ? t : "/tmp");

    if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir) || chdir(tmpdir) != 0) {
        perror("test_conf_preset: temp dir");
        return 1;
    }
    test_table();
    test_override();
    test_oauth();
    test_graph();
    test_refused();
    unlink(CONF);
    unlink("rt");
    if (chdir("/") == 0) {
        rmdir(tmpdir);
    }
    return CHECK_DONE();
}
