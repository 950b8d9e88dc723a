/* conf_keys: the configuration schema: the keys of each section ([relay], [upstream NAME],
 * [device NAME], [route NAME], [sendmail]), one offsetof table of keys, and a
 * setter per key that validates its value and fills struct conf. The INI reader
 * and the environment loader both apply keys here, so they give the same messages. */
#include "conf/conf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <bearssl.h>

#include "common/log.h"

#define CONF_MAX_TIMEOUT 86400u
#define CONF_METRICS_PORT 9325
#define CONF_ITEM_MAX 128                 /* one list item: an address or network */
#define CONF_USER_MAX 32                  /* login names (useradd's limit) */
#define CONF_MAX_DURATION (365u * 86400u) /* max_queue_age, retry_min, retry_max */
#define CONF_MAX_UP_CONNECTIONS 1000u     /* [upstream] max_connections */
#define CONF_MAX_FAIL_DELAY 10u           /* auth_fail_delay, seconds */

/* Key names of enum oauth_key (conf_int.h), in its order. */

static conf_set_fn set_listen, set_allow, set_hostname, set_size, set_timeout, set_received,
    set_bare_lf, set_log_level, set_count, set_limit, set_rate, set_patterns, set_proxy_protocol,
    set_proxy_from, set_run_as, set_log, set_log_format, set_metrics_listen, set_mode,
    set_on_failure, set_spool_dir, set_size_limit, set_duration, set_bounce, set_host, set_port,
    set_tls, set_ca_file, set_server_name, set_tls_verify, set_up_connections, set_upstream,
    set_user, set_password_file, set_password_env, set_password, set_password_credential, set_match,
    set_submit, set_origin, set_auth;
static conf_set_fn set_per_ip_exempt, set_provider;
static conf_set_fn set_rate_by, set_rate_window;
static conf_set_fn set_log_timestamps;
static conf_set_fn set_rewrite_sender, set_rewrite_from_header, set_route_devices,
    set_auth_mechanisms;
static conf_set_fn set_lf_line_ends;

static conf_set_fn set_tls_file, set_tls_min_version, set_tls_listen, set_plaintext_auth, set_login,
    set_fail_delay; /* inbound TLS and AUTH */

static const struct key_def conf_keys[] = {
    {SECT_RELAY, "listen", 1, set_listen, 0},
    {SECT_RELAY, "allow", 1, set_allow, 0},
    {SECT_RELAY, "hostname", 0, set_hostname, 0},
    {SECT_RELAY, "max_message_size", 0, set_size, offsetof(struct conf, max_message_size)},
    {SECT_RELAY, "idle_timeout", 0, set_timeout, offsetof(struct conf, idle_timeout)},
    {SECT_RELAY, "connect_timeout", 0, set_timeout, offsetof(struct conf, connect_timeout)},
    {SECT_RELAY, "command_timeout", 0, set_timeout, offsetof(struct conf, command_timeout)},
    {SECT_RELAY, "data_timeout", 0, set_timeout, offsetof(struct conf, data_timeout)},
    {SECT_RELAY, "shutdown_timeout", 0, set_timeout, offsetof(struct conf, shutdown_timeout)},
    {SECT_RELAY, "received_header", 0, set_received, 0},
    {SECT_RELAY, "bare_lf", 0, set_bare_lf, 0},
    {SECT_RELAY, "tls_cert_file", 0, set_tls_file, offsetof(struct conf, tls_cert_file)},
    {SECT_RELAY, "tls_key_file", 0, set_tls_file, offsetof(struct conf, tls_key_file)},
    {SECT_RELAY, "tls_min_version", 0, set_tls_min_version, 0},
    {SECT_RELAY, "tls_listen", 1, set_tls_listen, 0},
    {SECT_RELAY, "users_file", 0, set_tls_file, offsetof(struct conf, users_file)},
    {SECT_RELAY, "allow_plaintext_auth", 0, set_plaintext_auth, 0},
    {SECT_RELAY, "auth_fail_limit", 0, set_limit, offsetof(struct conf, auth_fail_limit)},
    {SECT_RELAY, "auth_lockout", 0, set_duration, offsetof(struct conf, auth_lockout)},
    {SECT_RELAY, "auth_fail_delay", 0, set_fail_delay, offsetof(struct conf, auth_fail_delay)},
    {SECT_DEVICE, "login", 0, set_login, 0},
    {SECT_RELAY, "log_level", 0, set_log_level, 0},
    {SECT_RELAY, "max_connections", 0, set_count, offsetof(struct conf, max_connections)},
    {SECT_RELAY, "max_connections_per_ip", 0, set_limit,
     offsetof(struct conf, max_connections_per_ip)},
    {SECT_RELAY, "max_connections_per_ip_exempt", 1, set_per_ip_exempt, 0},
    {SECT_RELAY, "max_recipients", 0, set_count, offsetof(struct conf, max_recipients)},
    {SECT_RELAY, "max_header_size", 0, set_size, offsetof(struct conf, max_header_size)},
    {SECT_RELAY, "max_errors", 0, set_count, offsetof(struct conf, max_errors)},
    {SECT_RELAY, "max_commands_before_mail", 0, set_limit,
     offsetof(struct conf, max_commands_before_mail)},
    {SECT_RELAY, "max_messages_per_session", 0, set_limit,
     offsetof(struct conf, max_messages_per_session)},
    {SECT_RELAY, "session_timeout", 0, set_timeout, offsetof(struct conf, session_timeout)},
    {SECT_RELAY, "refused_timeout", 0, set_timeout, offsetof(struct conf, refused_timeout)},
    {SECT_RELAY, "message_rate", 0, set_rate, offsetof(struct conf, message_rate)},
    {SECT_RELAY, "recipient_rate", 0, set_rate, offsetof(struct conf, recipient_rate)},
    {SECT_RELAY, "rate_limit_by", 0, set_rate_by, offsetof(struct conf, rate_by)},
    {SECT_RELAY, "data_min_rate", 0, set_limit, offsetof(struct conf, data_min_rate)},
    {SECT_RELAY, "data_rate_window", 0, set_rate_window, offsetof(struct conf, data_rate_window)},
    {SECT_RELAY, "allowed_senders", 1, set_patterns, offsetof(struct conf, allowed_senders)},
    {SECT_RELAY, "allowed_recipients", 1, set_patterns, offsetof(struct conf, allowed_recipients)},
    {SECT_RELAY, "proxy_protocol", 0, set_proxy_protocol, 0},
    {SECT_RELAY, "proxy_from", 1, set_proxy_from, 0},
    {SECT_RELAY, "user", 0, set_run_as, 0},
    {SECT_RELAY, "log", 0, set_log, 0},
    {SECT_RELAY, "log_format", 0, set_log_format, 0},
    {SECT_RELAY, "log_timestamps", 0, set_log_timestamps, 0},
    {SECT_RELAY, "metrics_listen", 0, set_metrics_listen, 0},
    {SECT_RELAY, "mode", 0, set_mode, offsetof(struct conf, mode)},
    {SECT_RELAY, "on_upstream_failure", 0, set_on_failure, offsetof(struct conf, on_failure)},
    {SECT_RELAY, "spool_dir", 0, set_spool_dir, 0},
    {SECT_RELAY, "max_spool_size", 0, set_size_limit, offsetof(struct conf, max_spool_size)},
    {SECT_RELAY, "max_queue_age", 0, set_duration, offsetof(struct conf, max_queue_age)},
    {SECT_RELAY, "retry_min", 0, set_duration, offsetof(struct conf, retry_min)},
    {SECT_RELAY, "retry_max", 0, set_duration, offsetof(struct conf, retry_max)},
    {SECT_RELAY, "bounce", 0, set_bounce, 0},
    {SECT_RELAY, "auth_mechanisms", 0, set_auth_mechanisms, offsetof(struct conf, auth_mechanisms)},
    {SECT_UPSTREAM, "host", 0, set_host, 0},
    {SECT_UPSTREAM, "port", 0, set_port, 0},
    {SECT_UPSTREAM, "tls", 0, set_tls, 0},
    {SECT_UPSTREAM, "ca_file", 0, set_ca_file, 0},
    {SECT_UPSTREAM, "server_name", 0, set_server_name, 0},
    {SECT_UPSTREAM, "tls_verify", 0, set_tls_verify, 0},
    {SECT_UPSTREAM, "max_connections", 0, set_up_connections, 0},
    {SECT_UPSTREAM, "provider", 0, set_provider, 0},
    {SECT_UPSTREAM, "type", 0, conf__set_up_type, 0},
    {SECT_UPSTREAM, "graph_url", 0, conf__set_graph_url, 0},
    {SECT_DEVICE, "upstream", 1, set_upstream, 0},
    {SECT_DEVICE, "user", 0, set_user, 0},
    {SECT_DEVICE, "password_file", 0, set_password_file, 0},
    {SECT_DEVICE, "password_credential", 0, set_password_credential, 0},
    {SECT_DEVICE, "password_env", 0, set_password_env, 0},
    {SECT_DEVICE, "password", 0, set_password, 0},
    {SECT_DEVICE, "match", 1, set_match, 0},
    {SECT_DEVICE, "rewrite_sender", 0, set_rewrite_sender, 0},
    {SECT_DEVICE, "rewrite_from_header", 0, set_rewrite_from_header, 0},
    {SECT_ROUTE, "senders", 1, set_patterns, offsetof(struct conf_route, senders)},
    {SECT_ROUTE, "devices", 1, set_route_devices, 0},
    {SECT_ROUTE, "upstream", 1, set_upstream, 0},
    {SECT_ROUTE, "user", 0, set_user, 0},
    {SECT_ROUTE, "password_file", 0, set_password_file, 0},
    {SECT_ROUTE, "password_credential", 0, set_password_credential, 0},
    {SECT_ROUTE, "password_env", 0, set_password_env, 0},
    {SECT_ROUTE, "password", 0, set_password, 0},
    {SECT_DEVICE, "message_rate", 0, set_rate, offsetof(struct conf_device, message_rate)},
    {SECT_DEVICE, "recipient_rate", 0, set_rate, offsetof(struct conf_device, recipient_rate)},
    {SECT_DEVICE, "rate_limit_by", 0, set_rate_by, offsetof(struct conf_device, rate_by)},
    {SECT_DEVICE, "allowed_senders", 1, set_patterns,
     offsetof(struct conf_device, allowed_senders)},
    {SECT_DEVICE, "allowed_recipients", 1, set_patterns,
     offsetof(struct conf_device, allowed_recipients)},
    {SECT_DEVICE, "mode", 0, set_mode, offsetof(struct conf_device, mode)},
    {SECT_DEVICE, "on_upstream_failure", 0, set_on_failure,
     offsetof(struct conf_device, on_failure)},
    {SECT_DEVICE, "auth", 0, set_auth, 0},
    {SECT_DEVICE, "auth_mechanisms", 0, set_auth_mechanisms,
     offsetof(struct conf_device, auth_mechanisms)},
    {SECT_DEVICE, "oauth_token_url", 0, conf__set_oauth_url, 0},
    {SECT_DEVICE, "oauth_device_url", 0, conf__set_oauth_device_url, 0},
    {SECT_DEVICE, "oauth_client_id", 0, conf__set_oauth_text,
     offsetof(struct conf_device, oauth.client_id)},
    {SECT_DEVICE, "oauth_client_secret_file", 0, conf__set_oauth_secret_file, 0},
    {SECT_DEVICE, "oauth_client_secret_env", 0, conf__set_oauth_secret_env, 0},
    {SECT_DEVICE, "oauth_scope", 0, conf__set_oauth_text,
     offsetof(struct conf_device, oauth.scope)},
    {SECT_DEVICE, "oauth_refresh_token_file", 0, conf__set_oauth_refresh_file, 0},
    {SECT_DEVICE, "oauth_grant", 0, conf__set_oauth_grant, 0},
    {SECT_DEVICE, "oauth_token_command", 0, conf__set_oauth_command, 0},
    {SECT_DEVICE, "lf_line_ends", 0, set_lf_line_ends, 0},
    {SECT_SENDMAIL, "submit", 0, set_submit, 0},
    {SECT_SENDMAIL, "origin", 0, set_origin, 0},
};
#define CONF_NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))
_Static_assert(CONF_NKEYS <= CONF_MAX_KEYS, "raise CONF_MAX_KEYS");
_Static_assert(CONF_MAX_KEYS % 64 == 0, "dev_extra.keys is an array of uint64_t");

/* "[upstream gmail]" for the section being parsed. */
const char *conf__label(const struct parse *p, char *buf, size_t cap)
{
    switch (p->sect) {
    case SECT_RELAY:
        snprintf(buf, cap, "[relay]");
        break;
    case SECT_UPSTREAM:
        snprintf(buf, cap, "[upstream %s]", p->c->upstreams[p->cur].name);
        break;
    case SECT_DEVICE:
        snprintf(buf, cap, "[device %s]", p->c->devices[p->cur].name);
        break;
    case SECT_SENDMAIL:
        snprintf(buf, cap, "[sendmail]");
        break;
    case SECT_ROUTE:
        snprintf(buf, cap, "[route %s]", p->c->routes[p->cur].cred.name);
        break;
    case SECT_NONE:
        snprintf(buf, cap, "(no section)");
        break;
    default:
        abort();
    }
    return buf;
}

/* The field the current key sets: kd->off into the current device for [device]
 * keys, into struct conf otherwise. */
void *conf__field(const struct parse *p)
{
    char *base = p->sect == SECT_DEVICE ? (char *)&p->c->devices[p->cur] : (char *)p->c;

    if (p->sect == SECT_ROUTE) {
        base = (char *)&p->c->routes[p->cur];
    }
    return base + p->kd->off;
}

/* The device record the upstream and password keys fill: the device, or a route's
 * credentials (struct conf_route), so both sections share one set of setters. */
static struct conf_device *conf_cur_dev(const struct parse *p)
{
    return p->sect == SECT_ROUTE ? &p->c->routes[p->cur].cred : &p->c->devices[p->cur];
}

static struct dev_extra *conf_cur_dx(const struct parse *p)
{
    return p->sect == SECT_ROUTE ? &p->rx[p->cur] : &p->dx[p->cur];
}

/* Calls fn on each item of a list separated by commas and/or blanks. */
static int conf_each_item(struct parse *p, const char *val, size_t len,
                          int (*fn)(struct parse *p, const char *item))
{
    size_t i = 0;

    while (i < len) {
        char item[CONF_ITEM_MAX];
        size_t start;

        while (i < len && (val[i] == ',' || isspace((unsigned char)val[i]))) {
            i++;
        }
        start = i;
        while (i < len && val[i] != ',' && !isspace((unsigned char)val[i])) {
            i++;
        }
        if (i == start) {
            break;
        }
        if (i - start >= sizeof(item)) {
            conf__fail_at(p, conf__here(p), "item too long: '%.*s'", (int)(sizeof(item) - 1),
                          val + start);
            return -1;
        }
        memcpy(item, val + start, i - start);
        item[i - start] = '\0';
        if (fn(p, item) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- [relay] --------------------------------------------------------------------------- */

int conf__add_listen(struct parse *p, const char *item)
{
    struct conf *c = p->c;
    struct conf_listen l;
    struct conf_listen *a;

    memset(&l, 0, sizeof(l));
    if (strlen(item) >= sizeof(l.text) || conf_parse_hostport(item, 25, &l.addr, &l.addrlen)) {
        conf__fail_at(p, conf__here(p), "bad address '%s' (expected 0.0.0.0:25, [::]:25, ...)",
                      item);
        return -1;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        if (c->listen[i].addrlen == l.addrlen &&
            memcmp(&c->listen[i].addr, &l.addr, l.addrlen) == 0) {
            conf__fail_at(p, conf__here(p), "address '%s' is listed twice", item);
            return -1;
        }
    }
    memcpy(l.text, item, strlen(item) + 1);
    a = conf__grow(c->listen, c->nlisten, sizeof(*a));
    if (!a) {
        return conf__oom(p);
    }
    c->listen = a;
    a[c->nlisten++] = l;
    return 0;
}

/* One network of a CIDR list (allow, proxy_from, match) appended to *arr. */
static int conf_add_cidr(struct parse *p, const char *item, struct cidr **arr, size_t *n)
{
    struct cidr net;
    struct cidr *a;

    if (cidr_parse(item, &net) != 0) {
        conf__fail_at(p, conf__here(p), "bad network '%s'", item);
        return -1;
    }
    a = conf__grow(*arr, *n, sizeof(*a));
    if (!a) {
        return conf__oom(p);
    }
    *arr = a;
    a[(*n)++] = net;
    return 0;
}

int conf__add_allow(struct parse *p, const char *item)
{
    return conf_add_cidr(p, item, &p->c->allow, &p->c->nallow);
}

static int set_listen(struct parse *p, const char *val, size_t len)
{
    if (!p->listen_given) {
        p->listen_given = 1;
        p->listen_at = conf__here(p);
    }
    return conf_each_item(p, val, len, conf__add_listen);
}

static int set_allow(struct parse *p, const char *val, size_t len)
{
    if (!p->allow_given) {
        p->allow_given = 1;
        p->allow_at = conf__here(p);
    }
    return conf_each_item(p, val, len, conf__add_allow);
}

static int set_hostname(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (!conf__valid_name(val)) {
        conf__fail_at(p, conf__here(p), "bad host name '%s' (no blanks or control characters)",
                      val);
        return -1;
    }
    p->c->hostname = conf__strdup(p, val);
    return p->c->hostname ? 0 : -1;
}

static int set_size(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_size(val, &v) != 0 || v == 0) {
        conf__fail_at(p, conf__here(p), "bad size '%s' (bytes, or a number with K, M or G)", val);
        return -1;
    }
    *(uint64_t *)conf__field(p) = v;
    return 0;
}

static int set_timeout(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf__parse_uint(val, CONF_MAX_TIMEOUT, &v) != 0 || v == 0) {
        conf__fail_at(p, conf__here(p), "bad number '%s' (seconds, 1 to %u)", val,
                      CONF_MAX_TIMEOUT);
        return -1;
    }
    *(unsigned *)conf__field(p) = (unsigned)v;
    return 0;
}

/* A yes/no value into *out, or -1 after the error naming the accepted words. */
static int conf_bool(struct parse *p, const char *val, int *out)
{
    int b = conf__parse_bool(val);

    if (b < 0) {
        conf__fail_at(p, conf__here(p), "bad boolean '%s' (yes, no, true, false, on, off, 1, 0)",
                      val);
        return -1;
    }
    *out = b;
    return 0;
}

static int set_received(struct parse *p, const char *val, size_t len)
{
    int b;

    (void)len;
    if (conf_bool(p, val, &b) != 0) {
        return -1;
    }
    p->c->received_header = b;
    return 0;
}

/* A keyword value: the index of val in words (count n), or -1 after an error
 * listing them ("bad value 'x' (a, b or c)"). */
int conf__keyword(struct parse *p, const char *val, const char *const *words, size_t n)
{
    char list[160];
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(val, words[i]) == 0) {
            return (int)i;
        }
    }
    list[0] = '\0';
    for (size_t i = 0; i < n && o < sizeof(list); i++) {
        int r = snprintf(list + o, sizeof(list) - o, "%s%s", words[i],
                         i + 2 < n    ? ", "
                         : i + 2 == n ? " or "
                                      : "");
        o += r > 0 ? (size_t)r : 0;
    }
    conf__fail_at(p, conf__here(p), "bad value '%s' (%s)", val, list);
    return -1;
}

static int set_bare_lf(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"normalize", "reject"};
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->bare_lf = k == 0 ? CONF_BARE_LF_NORMALIZE : CONF_BARE_LF_REJECT;
    return 0;
}

/* ---- inbound TLS and AUTH ---- */

static int set_tls_file(struct parse *p, const char *val, size_t len)
{
    char **f = conf__field(p);

    (void)len;
    free(*f);
    *f = conf__strdup(p, val);
    return *f ? 0 : -1;
}

static int set_tls_min_version(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"1.0", "1.1", "1.2"};
    int k = conf__keyword(p, val, words, 3);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->tls_min_version = BR_TLS10 + k;
    return 0;
}

static int conf_add_tls_listen(struct parse *p, const char *item)
{
    struct conf *c = p->c;
    struct conf_listen l;
    struct conf_listen *a;

    memset(&l, 0, sizeof(l));
    if (strlen(item) >= sizeof(l.text) || conf_parse_hostport(item, 465, &l.addr, &l.addrlen)) {
        conf__fail_at(p, conf__here(p), "bad address '%s' (expected 127.0.0.1:465, [::]:465, ...)",
                      item);
        return -1;
    }
    memcpy(l.text, item, strlen(item) + 1);
    a = conf__grow(c->tls_listen, c->ntls_listen, sizeof(*a));
    if (!a) {
        return conf__oom(p);
    }
    c->tls_listen = a;
    a[c->ntls_listen++] = l;
    return 0;
}

static int set_tls_listen(struct parse *p, const char *val, size_t len)
{
    return conf_each_item(p, val, len, conf_add_tls_listen);
}

static int set_plaintext_auth(struct parse *p, const char *val, size_t len)
{
    int b;

    (void)len;
    if (conf_bool(p, val, &b) != 0) {
        return -1;
    }
    p->c->allow_plaintext_auth = b;
    return 0;
}

static int set_login(struct parse *p, const char *val, size_t len)
{
    struct conf_device *d = &p->c->devices[p->cur];

    (void)len;
    if (!*val || strchr(val, ':') || !conf__valid_name(val)) {
        conf__fail_at(p, conf__here(p), "bad login '%s' (no blanks, ':' or control characters)",
                      val);
        return -1;
    }
    free(d->login);
    d->login = conf__strdup(p, val);
    return d->login ? 0 : -1;
}

static int set_log_level(struct parse *p, const char *val, size_t len)
{
    int l = log_level_parse(val);

    (void)len;
    if (l < 0) {
        conf__fail_at(p, conf__here(p), "bad level '%s' (debug, info, warn or error)", val);
        return -1;
    }
    p->c->log_level = l;
    return 0;
}

/* Limits that must allow at least one (a session, a recipient, an error). */
static int set_count(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf__parse_uint(val, CONF_MAX_COUNT, &v) != 0 || v == 0) {
        conf__fail_at(p, conf__here(p), "bad number '%s' (1 to %u)", val, CONF_MAX_COUNT);
        return -1;
    }
    *(unsigned *)conf__field(p) = (unsigned)v;
    return 0;
}

/* Limits where 0 means unlimited. */
static int set_limit(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf__parse_uint(val, CONF_MAX_COUNT, &v) != 0) {
        conf__fail_at(p, conf__here(p), "bad number '%s' (0 for unlimited, or 1 to %u)", val,
                      CONF_MAX_COUNT);
        return -1;
    }
    *(unsigned *)conf__field(p) = (unsigned)v;
    return 0;
}

static int set_rate(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (conf_parse_rate(val, conf__field(p)) != 0) {
        conf__fail_at(p, conf__here(p),
                      "bad rate '%s' (N/second, N/minute, N/hour or N/day with N from 1 to %u; "
                      "0 or unlimited for no limit)",
                      val, CONF_MAX_COUNT);
        return -1;
    }
    return 0;
}

static int conf_add_pattern(struct parse *p, const char *item)
{
    struct conf_patterns *pl = conf__field(p);
    const char *why = conf__bad_pattern(item, strstr(p->kd->name, "senders") != NULL);
    char **a;
    char *d;

    if (why) {
        conf__fail_at(p, conf__here(p), "bad address '%s' (%s)", item, why);
        return -1;
    }
    d = conf__strdup(p, item);
    if (!d) {
        return -1;
    }
    /* Stored lower-cased so `check` shows what is compared (ASCII only: RFC 5321
     * §2.4 domains; local parts are compared case-insensitively by policy). */
    for (char *s = d; *s; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
    a = conf__grow(pl->items, pl->n, sizeof(*a));
    if (!a) {
        free(d);
        return conf__oom(p);
    }
    pl->items = a;
    a[pl->n++] = d;
    return 0;
}

/* An empty value is allowed and means every address (struct conf_patterns); in a
 * [device] section it lifts the [relay] list for that device. */
static int set_patterns(struct parse *p, const char *val, size_t len)
{
    return conf_each_item(p, val, len, conf_add_pattern);
}

static int set_proxy_protocol(struct parse *p, const char *val, size_t len)
{
    int b;

    (void)len;
    if (conf_bool(p, val, &b) != 0) {
        return -1;
    }
    p->c->proxy_protocol = b;
    p->proxy_at = conf__line(p, p->lineno);
    return 0;
}

static int conf_add_proxy_from(struct parse *p, const char *item)
{
    return conf_add_cidr(p, item, &p->c->proxy_from, &p->c->nproxy_from);
}

static int set_proxy_from(struct parse *p, const char *val, size_t len)
{
    return conf_each_item(p, val, len, conf_add_proxy_from);
}

int conf__add_exempt(struct parse *p, const char *item)
{
    return conf_add_cidr(p, item, &p->c->per_ip_exempt, &p->c->nper_ip_exempt);
}

/* Empty or "none": no address is exempt (the environment cannot pass an empty value). */
static int set_per_ip_exempt(struct parse *p, const char *val, size_t len)
{
    p->exempt_given = 1;
    if (strcasecmp(val, "none") == 0) {
        return 0;
    }
    return conf_each_item(p, val, len, conf__add_exempt);
}

/* The account to drop to after binding. Portable user names (POSIX.1 §3.437, with
 * useradd's length limit); root would defeat the point, so it is refused here where
 * the message can name the line. */
static int set_run_as(struct parse *p, const char *val, size_t len)
{
    int ok = len <= CONF_USER_MAX && val[0] != '-';

    for (const char *s = val; ok && *s; s++) {
        ok = isalnum((unsigned char)*s) || *s == '.' || *s == '_' || *s == '-';
    }
    if (!ok) {
        conf__fail_at(p, conf__here(p),
                      "bad user name '%s' (letters, digits, '.', '_', '-', at most %d)", val,
                      CONF_USER_MAX);
        return -1;
    }
    if (strcmp(val, "root") == 0) {
        conf__fail_at(p, conf__here(p),
                      "relay25 does not keep root privileges; name an "
                      "unprivileged account (default relay25)");
        return -1;
    }
    p->c->user = conf__strdup(p, val);
    return p->c->user ? 0 : -1;
}

static int set_log(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"stderr", "syslog"};
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->log_syslog = k;
    return 0;
}

static int set_log_format(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"text", "json"};
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->log_json = k;
    return 0;
}

static int set_log_timestamps(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"auto", "yes", "no"};
    int k = conf__keyword(p, val, words, 3);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->log_timestamps = k;
    return 0;
}

static int set_metrics_listen(struct parse *p, const char *val, size_t len)
{
    struct conf_listen *l = &p->c->metrics_listen;

    len = strlen(val);
    if (len >= sizeof(l->text) ||
        conf_parse_hostport(val, CONF_METRICS_PORT, &l->addr, &l->addrlen) != 0) {
        conf__fail_at(p, conf__here(p), "bad address '%s' (expected 127.0.0.1:%d, [::1]:%d, ...)",
                      val, CONF_METRICS_PORT, CONF_METRICS_PORT);
        return -1;
    }
    memcpy(l->text, val, len + 1);
    p->c->metrics_enabled = 1;
    return 0;
}

/* mode = passthrough | spool, in [relay] and [device]. */
static int set_mode(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"passthrough", "spool"};
    enum conf_mode *m = conf__field(p);
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    *m = k == 0 ? CONF_MODE_PASSTHROUGH : CONF_MODE_SPOOL;
    return 0;
}

/* rate_limit_by = address | device, in [relay] and [device]. */
static int set_rate_by(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"address", "device"};
    enum conf_rate_by *b = conf__field(p);
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    *b = k == 0 ? CONF_RATE_BY_ADDRESS : CONF_RATE_BY_DEVICE;
    return 0;
}

/* data_rate_window: a duration up to an hour; longer would not catch a slow
 * client before session_timeout's default. */
static int set_rate_window(struct parse *p, const char *val, size_t len)
{
    unsigned v;

    (void)len;
    if (conf__parse_duration(val, 3600, &v) != 0) {
        conf__fail_at(p, conf__here(p),
                      "bad duration '%s' (seconds, or a number with s, m or h; 1s to 1h)", val);
        return -1;
    }
    *(unsigned *)conf__field(p) = v;
    return 0;
}

/* on_upstream_failure = reject | queue, in [relay] and [device]. */
static int set_on_failure(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"reject", "queue"};
    enum conf_on_failure *f = conf__field(p);
    int k = conf__keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    *f = k == 0 ? CONF_ON_FAILURE_REJECT : CONF_ON_FAILURE_QUEUE;
    return 0;
}

/* Absolute, so the spool does not move with the working directory (the daemon may
 * chdir, and a reload must find the same queue). */
static int set_spool_dir(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (val[0] != '/') {
        conf__fail_at(p, conf__here(p), "'%s' is not an absolute path (start it with '/')", val);
        return -1;
    }
    for (const char *s = val; *s; s++) {
        if ((unsigned char)*s < ' ' || *s == 0x7f) {
            conf__fail_at(p, conf__here(p), "control character in path");
            return -1;
        }
    }
    p->c->spool_dir = conf__strdup(p, val);
    return p->c->spool_dir ? 0 : -1;
}

/* Sizes where 0 means unlimited. */
static int set_size_limit(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_size(val, &v) != 0) {
        conf__fail_at(p, conf__here(p),
                      "bad size '%s' (0 for unlimited, or bytes, or a number with K, M or G)", val);
        return -1;
    }
    *(uint64_t *)conf__field(p) = v;
    return 0;
}

static int set_duration(struct parse *p, const char *val, size_t len)
{
    unsigned v;

    (void)len;
    if (conf__parse_duration(val, CONF_MAX_DURATION, &v) != 0) {
        conf__fail_at(p, conf__here(p),
                      "bad duration '%s' (seconds, or a number with s, m, h or d; 1s to 365d)",
                      val);
        return -1;
    }
    *(unsigned *)conf__field(p) = v;
    return 0;
}

/* auth_fail_delay: 0 (no delay) or a short duration; it doubles up to 16 times,
 * so 10 s keeps the longest hold under three minutes. */
static int set_fail_delay(struct parse *p, const char *val, size_t len)
{
    unsigned v = 0;

    (void)len;
    if (strcmp(val, "0") != 0 &&
        (conf__parse_duration(val, CONF_MAX_FAIL_DELAY, &v) != 0 || v > CONF_MAX_FAIL_DELAY)) {
        conf__fail_at(p, conf__here(p), "bad duration '%s' (0 for none, or 1s to %us)", val,
                      CONF_MAX_FAIL_DELAY);
        return -1;
    }
    *(unsigned *)conf__field(p) = v;
    return 0;
}

static int set_bounce(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"dsn", "keep", "drop"};
    static const enum conf_bounce values[] = {CONF_BOUNCE_DSN, CONF_BOUNCE_KEEP, CONF_BOUNCE_DROP};
    int k = conf__keyword(p, val, words, 3);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->bounce = values[k];
    return 0;
}

/* ---- [upstream NAME] ------------------------------------------------------------------- */

static int set_host(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];
    struct in6_addr a6;

    (void)len;
    if (!conf__valid_name(val)) {
        conf__fail_at(p, conf__here(p), "bad host '%s'", val);
        return -1;
    }
    if (strchr(val, ':') && inet_pton(AF_INET6, val, &a6) != 1) {
        conf__fail_at(p, conf__here(p), "bad host '%s' (give the port with port =)", val);
        return -1;
    }
    u->host = conf__strdup(p, val);
    p->ux[p->cur].host_given = 1;
    return u->host ? 0 : -1;
}

static int set_port(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf__parse_uint(val, 65535, &v) != 0 || v == 0) {
        conf__fail_at(p, conf__here(p), "bad port '%s' (1 to 65535)", val);
        return -1;
    }
    p->c->upstreams[p->cur].port = (uint16_t)v;
    p->ux[p->cur].port_given = 1;
    return 0;
}

static int set_tls(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    if (strcmp(val, "starttls") == 0) {
        u->tls = CONF_TLS_STARTTLS;
    } else if (strcmp(val, "implicit") == 0) {
        u->tls = CONF_TLS_IMPLICIT;
    } else if (strcasecmp(val, "none") == 0 || strcasecmp(val, "plain") == 0 ||
               strcasecmp(val, "no") == 0 || strcasecmp(val, "off") == 0) {
        /* Credentials are sent upstream, so a cleartext mode is deliberately absent. */
        conf__fail_at(p, conf__here(p),
                      "'%s': relay25 has no plain mode (upstream TLS is mandatory); use starttls "
                      "or implicit",
                      val);
        return -1;
    } else {
        conf__fail_at(p, conf__here(p), "bad value '%s' (starttls or implicit)", val);
        return -1;
    }
    p->ux[p->cur].tls_given = 1;
    return 0;
}

static int set_ca_file(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    u->ca_file = conf__strdup(p, val);
    return u->ca_file ? 0 : -1;
}

static int set_server_name(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    if (!conf__valid_name(val)) {
        conf__fail_at(p, conf__here(p), "bad name '%s'", val);
        return -1;
    }
    u->server_name = conf__strdup(p, val);
    return u->server_name ? 0 : -1;
}

static int set_tls_verify(struct parse *p, const char *val, size_t len)
{
    int b;

    (void)len;
    if (conf_bool(p, val, &b) != 0) {
        return -1;
    }
    p->c->upstreams[p->cur].tls_verify = b;
    return 0;
}

static int set_up_connections(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf__parse_uint(val, CONF_MAX_UP_CONNECTIONS, &v) != 0 || v == 0) {
        conf__fail_at(p, conf__here(p), "bad number '%s' (1 to %u)", val, CONF_MAX_UP_CONNECTIONS);
        return -1;
    }
    p->c->upstreams[p->cur].max_connections = (unsigned)v;
    p->ux[p->cur].conn_given = 1;
    return 0;
}

/* provider = gmail: applied after the whole section is read (conf_preset.c), so an
 * explicit key wins wherever it stands. */
static int set_provider(struct parse *p, const char *val, size_t len)
{
    struct up_extra *x = &p->ux[p->cur];
    char why[400];

    (void)len;
    x->preset = conf__preset_find(val, x->preset_arg, sizeof(x->preset_arg), why, sizeof(why));
    if (!x->preset) {
        conf__fail_at(p, conf__here(p), "%s", why);
        return -1;
    }
    x->provider_at = conf__here(p);
    if (conf__preset_is_graph(x->preset)) {
        p->c->upstreams[p->cur].type = CONF_UP_GRAPH; /* `type = smtp` later would win */
    }
    p->c->upstreams[p->cur].provider = conf__strdup(p, val);
    return p->c->upstreams[p->cur].provider ? 0 : -1;
}

/* ---- [device NAME] --------------------------------------------------------------------- */

/* One name of `upstream = a, b`; names are resolved once all sections are read. */
static int conf_add_upstream_name(struct parse *p, const char *item)
{
    struct dev_extra *x = conf_cur_dx(p);
    struct dev_up *a;
    char *name;

    if (!conf__valid_section_name(item, strlen(item))) {
        conf__fail_at(p, conf__here(p), "bad upstream name '%s'", item);
        return -1;
    }
    for (size_t i = 0; i < x->nups; i++) {
        if (strcmp(x->ups[i].name, item) == 0) {
            conf__fail_at(p, conf__here(p), "upstream '%s' is listed twice", item);
            return -1;
        }
    }
    name = conf__strdup(p, item);
    if (!name) {
        return -1;
    }
    a = conf__grow(x->ups, x->nups, sizeof(*a));
    if (!a) {
        free(name);
        return conf__oom(p);
    }
    x->ups = a;
    a[x->nups].name = name;
    a[x->nups].at = conf__here(p);
    x->nups++;
    return 0;
}

static int set_upstream(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = conf_cur_dx(p);

    if (!x->upstream_given) {
        x->upstream_given = 1;
        x->upstream_at = conf__here(p);
    }
    return conf_each_item(p, val, len, conf_add_upstream_name);
}

static int set_user(struct parse *p, const char *val, size_t len)
{
    struct conf_device *d = conf_cur_dev(p);

    (void)len;
    d->user = conf__strdup(p, val);
    return d->user ? 0 : -1;
}

static const char *const conf_pw_keys[] = {"", "password_file", "password_env", "password",
                                           "password_credential"};

/* Exactly one password source per device; the message never shows a value. */
static int conf_pw_source(struct parse *p, enum pw_kind kind)
{
    struct dev_extra *x = conf_cur_dx(p);
    char label[96];

    if (x->pw != PW_NONE) {
        if (x->pw_at.line > 0) {
            conf__fail_at(p, conf__here(p),
                          "%s already has %s (line %d): give exactly one of password_file, "
                          "password_env, password",
                          conf__label(p, label, sizeof(label)), conf_pw_keys[x->pw], x->pw_at.line);
        } else {
            conf__fail_at(p, conf__here(p), "give exactly one of %s and %s", x->pw_at.var,
                          p->var ? p->var : "");
        }
        return -1;
    }
    x->pw = kind;
    x->pw_at = conf__here(p);
    return 0;
}

/* password_source for `check` output: "file /path", "env NAME", "inline". */
static int conf_set_source(struct parse *p, const char *prefix, const char *arg)
{
    struct conf_device *d = conf_cur_dev(p);
    size_t n = strlen(prefix) + strlen(arg) + 1;
    int r;

    d->password_source = malloc(n);
    if (!d->password_source) {
        return conf__oom(p);
    }
    r = snprintf(d->password_source, n, "%s%s", prefix, arg);
    if (r < 0 || (size_t)r >= n) {
        return conf__oom(p);
    }
    return 0;
}

static int set_password_file(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = conf_cur_dx(p);

    (void)len;
    if (conf_pw_source(p, PW_FILE) != 0) {
        return -1;
    }
    x->pw_arg = conf__strdup(p, val);
    if (!x->pw_arg) {
        return -1;
    }
    return conf_set_source(p, "file ", val);
}

static int set_password_env(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = conf_cur_dx(p);

    (void)len;
    if (conf_pw_source(p, PW_ENV) != 0) {
        return -1;
    }
    if (!conf__valid_env_name(val)) {
        conf__fail_at(p, conf__here(p), "bad variable name '%s'", val);
        return -1;
    }
    x->pw_arg = conf__strdup(p, val);
    if (!x->pw_arg) {
        return -1;
    }
    return conf_set_source(p, "env ", val);
}

/* systemd credentials (LoadCredential=): a file named val in $CREDENTIALS_DIRECTORY. */
static int set_password_credential(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = conf_cur_dx(p);

    (void)len;
    if (conf_pw_source(p, PW_CRED) != 0) {
        return -1;
    }
    if (!val[0] || strchr(val, '/') || strcmp(val, ".") == 0 || strcmp(val, "..") == 0) {
        conf__fail_at(p, conf__here(p), "bad credential name '%s'", val);
        return -1;
    }
    x->pw_arg = conf__strdup(p, val);
    if (!x->pw_arg) {
        return -1;
    }
    return conf_set_source(p, "systemd credential ", val);
}

static int set_password(struct parse *p, const char *val, size_t len)
{
    struct conf_device *d = conf_cur_dev(p);

    (void)len;
    if (conf_pw_source(p, PW_INLINE) != 0) {
        return -1;
    }
    d->password = conf__strdup(p, val);
    if (!d->password) {
        return -1;
    }
    if (p->file && !p->inline_line) {
        p->inline_line = p->lineno;
    }
    return conf_set_source(p, "inline", "");
}

static int conf_add_match(struct parse *p, const char *item)
{
    struct conf_device *d = &p->c->devices[p->cur];
    return conf_add_cidr(p, item, &d->match, &d->nmatch);
}

static int set_match(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = &p->dx[p->cur];

    if (p->c->devices[p->cur].is_default) {
        conf__fail_at(p, conf__here(p),
                      "[device default] takes no match: it serves allowed clients that match no "
                      "other device");
        return -1;
    }
    if (!x->match_given) {
        x->match_given = 1;
        x->match_at = conf__here(p);
    }
    return conf_each_item(p, val, len, conf_add_match);
}

/* ---- [device NAME]: sender rewriting, [route NAME] ------------------------------------- */

/* rewrite_sender takes one plain address: local@domain, no brackets, no blanks,
 * nothing the MAIL command or a From: header could not carry as written. */
static int set_rewrite_sender(struct parse *p, const char *val, size_t len)
{
    struct conf_device *d = &p->c->devices[p->cur];
    const char *at = strchr(val, '@');

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)val[i];

        if (ch <= ' ' || ch >= 0x7f || ch == '<' || ch == '>' || ch == '"' || ch == ',' ||
            ch == '(' || ch == ')' || ch == ';' || ch == ':' || ch == '\\') {
            conf__fail_at(p, conf__here(p),
                          "bad address '%s' (write local@domain, without brackets or blanks)", val);
            return -1;
        }
    }
    if (!at || at == val || strchr(at + 1, '@') || !at[1] || at[1] == '.' || val[len - 1] == '.' ||
        strstr(at, "..") || len >= 256) {
        conf__fail_at(p, conf__here(p), "bad address '%s' (expected local@domain)", val);
        return -1;
    }
    d->rewrite_sender = conf__strdup(p, val);
    return d->rewrite_sender ? 0 : -1;
}

static int set_rewrite_from_header(struct parse *p, const char *val, size_t len)
{
    int b = conf__parse_bool(val);

    (void)len;
    if (b < 0) {
        conf__fail_at(p, conf__here(p), "expected yes or no, not '%s'", val);
        return -1;
    }
    p->c->devices[p->cur].rewrite_from_header = b;
    return 0;
}

/* lf_line_ends = yes: an LF-only device (issue 13); off by default because a body
 * line that is a lone "." then ends that device's message early. */
static int set_lf_line_ends(struct parse *p, const char *val, size_t len)
{
    int b = conf__parse_bool(val);

    (void)len;
    if (b < 0) {
        conf__fail_at(p, conf__here(p), "expected yes or no, not '%s'", val);
        return -1;
    }
    p->c->devices[p->cur].lf_line_ends = b;
    return 0;
}

/* One name of `devices = a, b`; checked against the [device] sections at the end. */
static int conf_add_route_device(struct parse *p, const char *item)
{
    struct conf_route *r = &p->c->routes[p->cur];
    char **a;
    char *name;

    if (!conf__valid_section_name(item, strlen(item))) {
        conf__fail_at(p, conf__here(p), "bad device name '%s'", item);
        return -1;
    }
    name = conf__strdup(p, item);
    if (!name) {
        return -1;
    }
    a = conf__grow(r->devices, r->ndevices, sizeof(*a));
    if (!a) {
        free(name);
        return conf__oom(p);
    }
    r->devices = a;
    a[r->ndevices++] = name;
    return 0;
}

static int set_route_devices(struct parse *p, const char *val, size_t len)
{
    return conf_each_item(p, val, len, conf_add_route_device);
}

/* ---- [device NAME]: auth = xoauth2 ------------------------------------------------------ */

static int set_auth(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"password", "xoauth2", "oauthbearer"};
    int k = conf__keyword(p, val, words, 3);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->devices[p->cur].auth = k == 0   ? CONF_AUTH_PASSWORD
                                 : k == 1 ? CONF_AUTH_XOAUTH2
                                          : CONF_AUTH_OAUTHBEARER;
    p->dx[p->cur].auth_at = conf__here(p);
    return 0;
}

/* auth_mechanisms = CRAM-MD5, PLAIN: SASL names (any case), each at most once. */
static int conf_add_mech(struct parse *p, const char *item)
{
    static const char *const names[] = {"", "XOAUTH2", "OAUTHBEARER", "CRAM-MD5", "PLAIN", "LOGIN"};
    unsigned char *m = conf__field(p);
    size_t n = 0, k;

    for (k = 1; k < sizeof(names) / sizeof(names[0]); k++) {
        if (strcasecmp(item, names[k]) == 0) {
            break;
        }
    }
    if (k == sizeof(names) / sizeof(names[0])) {
        conf__fail_at(
            p, conf__here(p),
            "unknown SASL mechanism '%s' (XOAUTH2, OAUTHBEARER, CRAM-MD5, PLAIN or LOGIN)", item);
        return -1;
    }
    while (n < CONF_MAX_MECHS - 1 && m[n] != CONF_MECH_END) {
        if (m[n] == k) {
            conf__fail_at(p, conf__here(p), "mechanism '%s' listed twice", item);
            return -1;
        }
        n++;
    }
    m[n] = (unsigned char)k;
    m[n + 1] = CONF_MECH_END;
    return 0;
}

static int set_auth_mechanisms(struct parse *p, const char *val, size_t len)
{
    unsigned char *m = conf__field(p);

    memset(m, 0, CONF_MAX_MECHS);
    if (conf_each_item(p, val, len, conf_add_mech) != 0) {
        return -1;
    }
    if (m[0] == CONF_MECH_END) {
        conf__fail_at(p, conf__here(p),
                      "empty list (XOAUTH2, OAUTHBEARER, CRAM-MD5, PLAIN, LOGIN)");
        return -1;
    }
    return 0;
}

/* ---- [sendmail] ----------------------------------------------------------------------- */

/* Where the sendmail command submits: a relay25 daemon's listener. The port is
 * required (a connect target has no sensible default) and kept as written. */
static int set_submit(struct parse *p, const char *val, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    uint16_t port;

    (void)len;
    if (conf_parse_hostport(val, 0, &ss, &sslen) != 0) {
        port = 0;
    } else if (ss.ss_family == AF_INET) {
        port = ntohs(((const struct sockaddr_in *)&ss)->sin_port);
    } else {
        port = ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (port == 0) {
        conf__fail_at(p, conf__here(p),
                      "bad address '%s' (expected host:port of a relay25 listener, e.g. "
                      "127.0.0.1:25 or [::1]:25)",
                      val);
        return -1;
    }
    p->c->submit = conf__strdup(p, val);
    return p->c->submit ? 0 : -1;
}

/* The domain sendmail appends to an unqualified sender or recipient ("root" ->
 * root@origin), as Postfix's myorigin; default the host name. */
static int set_origin(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (!conf__valid_name(val) || strchr(val, '@')) {
        conf__fail_at(p, conf__here(p), "bad origin '%s' (a domain, e.g. example.com)", val);
        return -1;
    }
    free(p->c->origin);
    p->c->origin = conf__strdup(p, val);
    return p->c->origin ? 0 : -1;
}

static const char *conf_sect_label(enum sect s)
{
    switch (s) {
    case SECT_RELAY:
        return "[relay]";
    case SECT_UPSTREAM:
        return "[upstream NAME]";
    case SECT_DEVICE:
        return "[device NAME]";
    case SECT_ROUTE:
        return "[route NAME]";
    case SECT_SENDMAIL:
        return "[sendmail]";
    case SECT_NONE:
        return "(no section)";
    }
    abort();
}

/* An unknown key is most often a typo of a key of its section, or a right key in the
 * wrong section: say which. */
void conf__key_hint(enum sect s, const char *name, char *buf, size_t cap)
{
    const struct key_def *best = NULL, *other_best = NULL;
    unsigned bd = 3, od = 3;
    size_t n = 0;

    buf[0] = '\0';
    /* the exact key in other sections: "'ca_file' belongs in [upstream NAME]" */
    for (size_t i = 0; i < CONF_NKEYS; i++) {
        int dup = 0;

        if (conf_keys[i].sect == s || strcmp(conf_keys[i].name, name) != 0) {
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            dup |= conf_keys[j].sect == conf_keys[i].sect && strcmp(conf_keys[j].name, name) == 0;
        }
        if (dup) {
            continue;
        }
        if (n == 0) {
            n = (size_t)snprintf(buf, cap, " ('%s' belongs in %s", name,
                                 conf_sect_label(conf_keys[i].sect));
        } else if (n < cap) {
            n += (size_t)snprintf(buf + n, cap - n, " or %s", conf_sect_label(conf_keys[i].sect));
        }
    }
    if (n > 0) {
        if (n < cap) {
            snprintf(buf + n, cap - n, ")");
        }
        return;
    }
    /* a near miss: within 2 edits, and fewer edits than half the name */
    for (size_t i = 0; i < CONF_NKEYS; i++) {
        unsigned d = conf__distance(name, conf_keys[i].name);

        if (d == 0 || d * 2 > strlen(name)) {
            continue;
        }
        if (conf_keys[i].sect == s && d < bd) {
            bd = d;
            best = &conf_keys[i];
        } else if (conf_keys[i].sect != s && d < od) {
            od = d;
            other_best = &conf_keys[i];
        }
    }
    if (best) {
        snprintf(buf, cap, " (did you mean '%s'?)", best->name);
    } else if (other_best) {
        snprintf(buf, cap, " (did you mean '%s'? it belongs in %s)", other_best->name,
                 conf_sect_label(other_best->sect));
    }
}

const struct key_def *conf__find_key(enum sect s, const char *name)
{
    for (size_t i = 0; i < CONF_NKEYS; i++) {
        if (conf_keys[i].sect == s && strcmp(conf_keys[i].name, name) == 0) {
            return &conf_keys[i];
        }
    }
    return NULL;
}

/* Applies one key; line > 0 in a file, the variable in p->var otherwise. */
int conf__apply(struct parse *p, const struct key_def *kd, const char *val, size_t len)
{
    size_t idx = (size_t)(kd - conf_keys);
    int r;

    if (!kd->list) {
        if (p->seen[idx]) {
            char label[96];
            conf__fail_at(p, conf__line(p, p->lineno),
                          "duplicate key '%s' in %s (first on line %d)", kd->name,
                          conf__label(p, label, sizeof(label)), p->seen[idx]);
            return -1;
        }
        if (!*val) {
            p->kd = kd;
            conf__fail_at(p, conf__here(p), "empty value");
            p->kd = NULL;
            return -1;
        }
    }
    if (!p->seen[idx]) {
        p->seen[idx] = p->lineno > 0 ? p->lineno : 1;
    }
    if (p->sect == SECT_DEVICE) {
        p->dx[p->cur].keys[idx / 64] |= UINT64_C(1) << (idx % 64);
    }
    if (p->sect == SECT_RELAY && !p->relay_seen[idx]) {
        p->relay_seen[idx] = p->seen[idx];
    }
    p->kd = kd;
    r = kd->set(p, val, len);
    p->kd = NULL;
    return r;
}

/* Line of [relay] key `name`, 0 when it was not set. */
int conf__relay_seen(const struct parse *p, const char *name)
{
    return p->relay_seen[conf__find_key(SECT_RELAY, name) - conf_keys];
}

/* Whether [device] key `name` was set in device i's section. */
int conf__dev_given(const struct parse *p, size_t i, const char *name)
{
    size_t idx = (size_t)(conf__find_key(SECT_DEVICE, name) - conf_keys);

    return (int)((p->dx[i].keys[idx / 64] >> (idx % 64)) & 1u);
}
