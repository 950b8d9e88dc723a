/* conf_env: the configuration from RELAY25_* environment variables (containers):
 * one [upstream default] and one [device default], each variable applied through
 * the setter of the INI key it stands for. */
#include "conf/conf_int.h"

#include <stdlib.h>
#include <string.h>

/* Each variable and the INI key it stands for. */
static const struct {
    const char *var;
    enum sect sect;
    const char *key;
} vars[] = {
    {"RELAY25_LISTEN", SECT_RELAY, "listen"},
    {"RELAY25_ALLOW", SECT_RELAY, "allow"},
    {"RELAY25_HOSTNAME", SECT_RELAY, "hostname"},
    {"RELAY25_MAX_MESSAGE_SIZE", SECT_RELAY, "max_message_size"},
    {"RELAY25_LOG_LEVEL", SECT_RELAY, "log_level"},
    {"RELAY25_LOG", SECT_RELAY, "log"},
    {"RELAY25_LOG_FORMAT", SECT_RELAY, "log_format"},
    {"RELAY25_LOG_TIMESTAMPS", SECT_RELAY, "log_timestamps"},
    {"RELAY25_METRICS_LISTEN", SECT_RELAY, "metrics_listen"},
    /* RELAY25_USER is the upstream login, so the account to run as has its own name */
    {"RELAY25_RUN_AS", SECT_RELAY, "user"},
    {"RELAY25_MAX_CONNECTIONS", SECT_RELAY, "max_connections"},
    {"RELAY25_MAX_CONNECTIONS_PER_IP", SECT_RELAY, "max_connections_per_ip"},
    {"RELAY25_MAX_CONNECTIONS_PER_IP_EXEMPT", SECT_RELAY, "max_connections_per_ip_exempt"},
    {"RELAY25_MESSAGE_RATE", SECT_RELAY, "message_rate"},
    {"RELAY25_RECIPIENT_RATE", SECT_RELAY, "recipient_rate"},
    {"RELAY25_ALLOWED_SENDERS", SECT_RELAY, "allowed_senders"},
    {"RELAY25_ALLOWED_RECIPIENTS", SECT_RELAY, "allowed_recipients"},
    {"RELAY25_MODE", SECT_RELAY, "mode"},
    {"RELAY25_ON_UPSTREAM_FAILURE", SECT_RELAY, "on_upstream_failure"},
    {"RELAY25_SPOOL_DIR", SECT_RELAY, "spool_dir"},
    {"RELAY25_MAX_SPOOL_SIZE", SECT_RELAY, "max_spool_size"},
    {"RELAY25_MAX_QUEUE_AGE", SECT_RELAY, "max_queue_age"},
    {"RELAY25_BOUNCE", SECT_RELAY, "bounce"},
    {"RELAY25_REFUSED_TIMEOUT", SECT_RELAY, "refused_timeout"},
    {"RELAY25_DATA_MIN_RATE", SECT_RELAY, "data_min_rate"},
    {"RELAY25_DATA_RATE_WINDOW", SECT_RELAY, "data_rate_window"},
    {"RELAY25_RATE_LIMIT_BY", SECT_RELAY, "rate_limit_by"},
    {"RELAY25_AUTH_FAIL_LIMIT", SECT_RELAY, "auth_fail_limit"},
    {"RELAY25_AUTH_LOCKOUT", SECT_RELAY, "auth_lockout"},
    {"RELAY25_AUTH_FAIL_DELAY", SECT_RELAY, "auth_fail_delay"},
    {"RELAY25_SUBMIT", SECT_SENDMAIL, "submit"},
    {"RELAY25_ORIGIN", SECT_SENDMAIL, "origin"},
    {"RELAY25_TLS", SECT_UPSTREAM, "tls"},
    {"RELAY25_SERVER_NAME", SECT_UPSTREAM, "server_name"},
    {"RELAY25_CA_FILE", SECT_UPSTREAM, "ca_file"},
    {"RELAY25_TLS_VERIFY", SECT_UPSTREAM, "tls_verify"},
    {"RELAY25_USER", SECT_DEVICE, "user"},
    {"RELAY25_PASSWORD_FILE", SECT_DEVICE, "password_file"},
};

/* Read by relay25 besides the table: RELAY25_UPSTREAM and RELAY25_PASSWORD here,
 * RELAY25_CONFIG (cli/main.c), RELAY25_FROM and RELAY25_HELD_DIR (sendmail). */
static const char *const conf_env_other[] = {"RELAY25_UPSTREAM", "RELAY25_PASSWORD",
                                             "RELAY25_CONFIG", "RELAY25_FROM", "RELAY25_HELD_DIR"};

const char *conf__env_var(size_t i)
{
    size_t n = sizeof(vars) / sizeof(vars[0]);

    if (i < n) {
        return vars[i].var;
    }
    i -= n;
    return i < sizeof(conf_env_other) / sizeof(conf_env_other[0]) ? conf_env_other[i] : NULL;
}

static const char *conf_getenv(const char *name)
{
    const char *v = getenv(name);

    /* An empty variable counts as unset (compose files often pass VAR= ). */
    return v && *v ? v : NULL;
}

static int conf_env_key(struct parse *p, const char *var, enum sect s, const char *key)
{
    const char *v = conf_getenv(var);
    int r;

    if (!v) {
        return 0;
    }
    p->var = var;
    p->sect = s;
    p->cur = 0;
    memset(p->seen, 0, sizeof(p->seen));
    r = conf__apply(p, conf__find_key(s, key), v, strlen(v));
    p->var = NULL;
    return r;
}

/* "host", "host:port", "[v6]", "[v6]:port", "v6" (more than one ':'). */
static int conf_split_upstream(const char *s, char *host, size_t cap, const char **port)
{
    const char *h = s, *e, *colon;

    *port = NULL;
    if (*s == '[') {
        h = s + 1;
        e = strchr(h, ']');
        if (!e || (e[1] && e[1] != ':')) {
            return -1;
        }
        if (e[1] == ':') {
            *port = e + 2;
        }
    } else {
        colon = strchr(s, ':');
        /* one ':' is host:port; more is a bare IPv6 address */
        if (colon && !strchr(colon + 1, ':')) {
            e = colon;
            *port = colon + 1;
        } else {
            e = s + strlen(s);
        }
    }
    if (e == h || (size_t)(e - h) >= cap || (*port && !**port)) {
        return -1;
    }
    memcpy(host, h, (size_t)(e - h));
    host[e - h] = '\0';
    return 0;
}

int conf__load_env(struct parse *p)
{
    const char *up = conf_getenv("RELAY25_UPSTREAM");
    const char *port;
    char host[CONF_NAME_MAX + 1];

    if (!up) {
        conf__fail_raw(p, "no configuration: give -c FILE or set RELAY25_UPSTREAM");
        return -1;
    }
    if (conf__new_upstream(p, "default", 7, 0) != 0 || conf__new_device(p, "default", 7, 0) != 0) {
        return -1;
    }
    p->var = "RELAY25_UPSTREAM";
    if (conf_split_upstream(up, host, sizeof(host), &port) != 0) {
        conf__fail_at(p, conf__line(p, 0), "bad upstream '%s' (expected host:port)", up);
        return -1;
    }
    p->sect = SECT_UPSTREAM;
    p->cur = 0;
    if (conf__apply(p, conf__find_key(SECT_UPSTREAM, "host"), host, strlen(host)) != 0 ||
        (port && conf__apply(p, conf__find_key(SECT_UPSTREAM, "port"), port, strlen(port)) != 0)) {
        return -1;
    }
    p->var = NULL;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        if (conf_env_key(p, vars[i].var, vars[i].sect, vars[i].key) != 0) {
            return -1;
        }
    }
    if (conf_getenv("RELAY25_PASSWORD")) {
        /* Looked up like password_env, so the secret is never copied into the snapshot
         * twice and password_source reads "env RELAY25_PASSWORD". */
        p->var = "RELAY25_PASSWORD";
        p->sect = SECT_DEVICE;
        p->cur = 0;
        memset(p->seen, 0, sizeof(p->seen));
        if (conf__apply(p, conf__find_key(SECT_DEVICE, "password_env"), "RELAY25_PASSWORD", 16)) {
            return -1;
        }
        p->var = NULL;
    }
    if (!p->c->devices[0].user) {
        p->var = "RELAY25_USER";
        conf__fail_at(p, conf__line(p, 0), "not set (the login for RELAY25_UPSTREAM)");
        return -1;
    }
    if (p->dx[0].pw == PW_NONE) {
        conf__fail_raw(p, "set RELAY25_PASSWORD or RELAY25_PASSWORD_FILE");
        return -1;
    }
    p->sect = SECT_NONE;
    return 0;
}
