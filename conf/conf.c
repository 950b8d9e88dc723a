/* conf: builds the immutable struct conf from one INI file (inih, fed by our own
 * line-counting reader so every message names file and line) or from RELAY25_*
 * environment variables. Owns the snapshot's strings, lists, secrets (wiped in
 * conf_free) and trust anchors. Timeout defaults follow RFC 5321 §4.5.3.2. Devices
 * inherit the [relay] rate limits, address policy, mode and on_upstream_failure
 * unless their section sets their own (lists are deep-copied, so each one has
 * exactly one owner); a device's failover list points into c->upstreams. */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "common/secret.h"
#include "common/log.h"
#include "common/tls_ca.h"
#include "common/tls_cert.h"

#define CONF_DEFAULT_LISTEN "127.0.0.1:25"
#define CONF_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define CONF_DEFAULT_PORT 587
#define CONF_IMPLICIT_PORT 465
#define CONF_MAX_TIMEOUT 86400u
#define CONF_MAX_COUNT 1000000u /* limits and rate counts; larger values are typos */
#define CONF_METRICS_PORT 9325
#define CONF_NAME_MAX 255 /* host names, server_name, hostname (RFC 1035 §2.3.4 plus slack) */
#define CONF_ITEM_MAX 128 /* one list item: an address or network */
/* inih copies section and key names into 50-byte buffers (MAX_SECTION, MAX_NAME). */
#define INI_NAME_MAX 49
#define CONF_MAX_KEYS 128 /* dev_extra.keys is a bit mask of key indexes */
#define CONF_USER_MAX 32  /* login names (useradd's limit) */
#define CONF_DEFAULT_SPOOL_DIR "/var/spool/relay25"
#define CONF_MAX_DURATION (365u * 86400u) /* max_queue_age, retry_min, retry_max */
#define CONF_MAX_UP_CONNECTIONS 1000u     /* [upstream] max_connections */
#define CONF_HTTPS_PORT 443
#define CONF_MAX_ARGS 64 /* words of oauth_token_command */

enum sect { SECT_NONE, SECT_RELAY, SECT_UPSTREAM, SECT_DEVICE, SECT_SENDMAIL, SECT_ROUTE };

/* How inih will treat the line the reader just returned (mirrors ini_parse_stream). */
enum line_kind {
    LINE_BLANK,   /* empty or comment */
    LINE_SECTION, /* "[...]" */
    LINE_KEY,     /* name = value, name: value */
    LINE_CONT,    /* indented line after a key: more of its value (INI_ALLOW_MULTILINE) */
};

enum pw_kind { PW_NONE, PW_FILE, PW_ENV, PW_INLINE, PW_CRED };

/* The [device] oauth_* keys, for checks that need their lines after the file is read. */
enum oauth_key {
    OK_TOKEN_URL,
    OK_CLIENT_ID,
    OK_CLIENT_SECRET_FILE,
    OK_CLIENT_SECRET_ENV,
    OK_SCOPE,
    OK_REFRESH_TOKEN_FILE,
    OK_GRANT,
    OK_TOKEN_COMMAND,
    OK_DEVICE_URL, /* after OK_TOKEN_COMMAND: not a token source key */
    CONF_OAUTH_NKEYS
};
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

/* Where a value came from, for messages: a file line (and key) or a variable. */
struct where {
    int line;
    const char *var;
    const char *key;
};

struct up_extra {
    int port_given;
    int tls_given;
};

/* One name from `upstream = a, b`, resolved in conf_finish_devices(). */
struct dev_up {
    char *name;
    struct where at; /* its own line: the list may continue on indented lines */
};

struct dev_extra {
    struct dev_up *ups; /* failover order as written */
    size_t nups;
    int upstream_given;
    struct where upstream_at; /* first `upstream =` line */
    enum pw_kind pw;
    char *pw_arg; /* password_file path or password_env name */
    struct where pw_at;
    int match_given;
    struct where match_at;
    uint64_t keys[CONF_MAX_KEYS / 64]; /* bit i: conf_keys[i] was set in this section */
    struct where auth_at;              /* auth = xoauth2 */
    enum pw_kind oauth_secret;         /* oauth_client_secret_file (PW_FILE) or _env (PW_ENV) */
    char *oauth_secret_arg;
    struct where oauth_secret_at;
    struct where oauth_at[CONF_OAUTH_NKEYS]; /* line of each oauth_* key, 0 when not set */
};

struct parse;
typedef int conf_set_fn(struct parse *p, const char *val, size_t len);

struct key_def {
    enum sect sect;
    const char *name;
    int list; /* may repeat and continue on indented lines; values accumulate */
    conf_set_fn *set;
    size_t off; /* the field in struct conf, or in struct conf_device for [device] keys */
};

struct parse {
    struct conf *c;
    const char *file; /* path for messages; NULL for the environment */
    const char *var;  /* environment variable being applied */
    char *err;
    size_t errlen;
    int failed;
    int fail_line; /* file line of the recorded error, 0 if none */
    int login;     /* CONF_LOAD_LOGIN: a missing refresh-token file is no error */

    FILE *fp;
    int lineno; /* lines handed to inih so far: the current line while it runs */
    enum line_kind kind;
    int have_prev_name; /* inih's prev_name is non-empty: indented lines continue it */
    char section_raw[INI_NAME_MAX + 1];

    enum sect sect;
    size_t cur; /* index of the current upstream or device */
    const struct key_def *kd;
    int seen[CONF_MAX_KEYS]; /* line where each key of the current section was first set */
    int relay_line;
    int sendmail_line;
    int relay_seen[CONF_MAX_KEYS]; /* p->seen of [relay], kept for checks across keys */

    int listen_given, allow_given;
    struct where listen_at, allow_at;
    struct where proxy_at; /* proxy_protocol = yes */

    struct up_extra *ux;  /* parallel to c->upstreams */
    struct dev_extra *dx; /* parallel to c->devices */
    struct dev_extra *rx; /* parallel to c->routes: a route's upstream and password keys */
};

static conf_set_fn set_listen, set_allow, set_hostname, set_size, set_timeout, set_received,
    set_bare_lf, set_log_level, set_count, set_limit, set_rate, set_patterns, set_proxy_protocol,
    set_proxy_from, set_run_as, set_log, set_log_format, set_metrics_listen, set_mode,
    set_on_failure, set_spool_dir, set_size_limit, set_duration, set_bounce, set_host, set_port,
    set_tls, set_ca_file, set_server_name, set_tls_verify, set_up_connections, set_upstream,
    set_user, set_password_file, set_password_env, set_password, set_password_credential, set_match,
    set_submit, set_auth, set_oauth_url, set_oauth_text, set_oauth_secret_file,
    set_oauth_secret_env, set_oauth_refresh_file, set_oauth_grant, set_oauth_command;
static conf_set_fn set_oauth_device_url;
static conf_set_fn set_rewrite_sender, set_rewrite_from_header, set_route_devices,
    set_auth_mechanisms;

static conf_set_fn set_tls_file, set_tls_min_version, set_tls_listen, set_plaintext_auth,
    set_login; /* inbound TLS and AUTH */

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
    {SECT_DEVICE, "login", 0, set_login, 0},
    {SECT_RELAY, "log_level", 0, set_log_level, 0},
    {SECT_RELAY, "max_connections", 0, set_count, offsetof(struct conf, max_connections)},
    {SECT_RELAY, "max_connections_per_ip", 0, set_count,
     offsetof(struct conf, max_connections_per_ip)},
    {SECT_RELAY, "max_recipients", 0, set_count, offsetof(struct conf, max_recipients)},
    {SECT_RELAY, "max_header_size", 0, set_size, offsetof(struct conf, max_header_size)},
    {SECT_RELAY, "max_errors", 0, set_count, offsetof(struct conf, max_errors)},
    {SECT_RELAY, "max_commands_before_mail", 0, set_limit,
     offsetof(struct conf, max_commands_before_mail)},
    {SECT_RELAY, "max_messages_per_session", 0, set_limit,
     offsetof(struct conf, max_messages_per_session)},
    {SECT_RELAY, "session_timeout", 0, set_timeout, offsetof(struct conf, session_timeout)},
    {SECT_RELAY, "message_rate", 0, set_rate, offsetof(struct conf, message_rate)},
    {SECT_RELAY, "recipient_rate", 0, set_rate, offsetof(struct conf, recipient_rate)},
    {SECT_RELAY, "allowed_senders", 1, set_patterns, offsetof(struct conf, allowed_senders)},
    {SECT_RELAY, "allowed_recipients", 1, set_patterns, offsetof(struct conf, allowed_recipients)},
    {SECT_RELAY, "proxy_protocol", 0, set_proxy_protocol, 0},
    {SECT_RELAY, "proxy_from", 1, set_proxy_from, 0},
    {SECT_RELAY, "user", 0, set_run_as, 0},
    {SECT_RELAY, "log", 0, set_log, 0},
    {SECT_RELAY, "log_format", 0, set_log_format, 0},
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
    {SECT_DEVICE, "oauth_token_url", 0, set_oauth_url, 0},
    {SECT_DEVICE, "oauth_device_url", 0, set_oauth_device_url, 0},
    {SECT_DEVICE, "oauth_client_id", 0, set_oauth_text,
     offsetof(struct conf_device, oauth.client_id)},
    {SECT_DEVICE, "oauth_client_secret_file", 0, set_oauth_secret_file, 0},
    {SECT_DEVICE, "oauth_client_secret_env", 0, set_oauth_secret_env, 0},
    {SECT_DEVICE, "oauth_scope", 0, set_oauth_text, offsetof(struct conf_device, oauth.scope)},
    {SECT_DEVICE, "oauth_refresh_token_file", 0, set_oauth_refresh_file, 0},
    {SECT_DEVICE, "oauth_grant", 0, set_oauth_grant, 0},
    {SECT_DEVICE, "oauth_token_command", 0, set_oauth_command, 0},
    {SECT_SENDMAIL, "submit", 0, set_submit, 0},
};
#define CONF_NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))
_Static_assert(CONF_NKEYS <= CONF_MAX_KEYS, "raise CONF_MAX_KEYS");
_Static_assert(CONF_MAX_KEYS % 64 == 0, "dev_extra.keys is an array of uint64_t");

/* ---- errors ---------------------------------------------------------------------------- */

static void conf_failv(struct parse *p, const struct where *w, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Records the first error only; later ones are consequences or come after it. A
 * truncated message is still the right message, so snprintf truncation is accepted. */
static void conf_failv(struct parse *p, const struct where *w, const char *fmt, va_list ap)
{
    size_t n = 0;
    int r = 0;

    if (p->failed) {
        return;
    }
    p->failed = 1;
    p->fail_line = w && p->file ? w->line : 0;
    if (!p->err || p->errlen == 0) {
        return;
    }
    p->err[0] = '\0';
    if (w && p->file) {
        if (w->line > 0) {
            r = snprintf(p->err, p->errlen, "%s:%d: %s%s", p->file, w->line, w->key ? w->key : "",
                         w->key ? ": " : "");
        } else {
            r = snprintf(p->err, p->errlen, "%s: ", p->file);
        }
    } else if (w && w->var) {
        r = snprintf(p->err, p->errlen, "%s: ", w->var);
    }
    if (r > 0) {
        n = (size_t)r;
    }
    if (n < p->errlen) {
        vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    }
}

static void conf_fail_raw(struct parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conf_fail_raw(struct parse *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_failv(p, NULL, fmt, ap);
    va_end(ap);
}

static void conf_fail_at(struct parse *p, struct where w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conf_fail_at(struct parse *p, struct where w, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_failv(p, &w, fmt, ap);
    va_end(ap);
}

/* The key being set: "file:line: key: ..." or "VAR: ...". */
static struct where conf_here(const struct parse *p)
{
    struct where w = {p->lineno, p->var, p->kd ? p->kd->name : NULL};

    return w;
}

/* A whole line or section: "file:line: ..." or "VAR: ...". */
static struct where conf_line(const struct parse *p, int line)
{
    struct where w = {line, p->var, NULL};

    return w;
}

static int conf_oom(struct parse *p)
{
    conf_fail_raw(p, "out of memory");
    return -1;
}

/* ---- small helpers --------------------------------------------------------------------- */

/* Room for one more element at index n, zeroed; NULL (arr untouched) on overflow or OOM. */
static void *conf_grow(void *arr, size_t n, size_t elem)
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

/* Decimal digits only, no sign or blanks, at most max. */
static int conf_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s) {
        return -1;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        if (v > (max - (uint64_t)(*s - '0')) / 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Durations: "90" or "90s", "15m", "12h", "3d" (lower case, no blanks), 1 to max seconds. */
static int conf_parse_duration(const char *s, unsigned max, unsigned *out)
{
    static const struct {
        char suffix;
        unsigned seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    char digits[16];
    size_t n = strlen(s);
    unsigned mult = 1;
    uint64_t v;

    if (n > 0 && !isdigit((unsigned char)s[n - 1])) {
        mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (s[n - 1] == units[i].suffix) {
                mult = units[i].seconds;
            }
        }
        if (mult == 0) {
            return -1;
        }
        n--;
    }
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (conf_parse_uint(digits, max / mult, &v) != 0 || v == 0) {
        return -1;
    }
    *out = (unsigned)v * mult;
    return 0;
}

static int conf_parse_bool(const char *s)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            return 1;
        }
        if (strcasecmp(s, no[i]) == 0) {
            return 0;
        }
    }
    return -1;
}

/* Host names, hostname, server_name: printable, no blanks (they go into SMTP lines). */
static int conf_valid_name(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > CONF_NAME_MAX) {
        return 0;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int conf_valid_section_name(const char *s, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-') {
            return 0;
        }
    }
    return 1;
}

static int conf_valid_env_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s)) {
        return 0;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_') {
            return 0;
        }
    }
    return 1;
}

static char *conf_strdup(struct parse *p, const char *s)
{
    char *d = strdup(s);

    if (!d) {
        conf_oom(p);
    }
    return d;
}

/* "[upstream gmail]" for the section being parsed. */
static const char *conf_label(const struct parse *p, char *buf, size_t cap)
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
static void *conf_field(const struct parse *p)
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
            conf_fail_at(p, conf_here(p), "item too long: '%.*s'", (int)(sizeof(item) - 1),
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

static int conf_add_listen(struct parse *p, const char *item)
{
    struct conf *c = p->c;
    struct conf_listen l;
    struct conf_listen *a;

    memset(&l, 0, sizeof(l));
    if (strlen(item) >= sizeof(l.text) || conf_parse_hostport(item, 25, &l.addr, &l.addrlen)) {
        conf_fail_at(p, conf_here(p), "bad address '%s' (expected 0.0.0.0:25, [::]:25, ...)", item);
        return -1;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        if (c->listen[i].addrlen == l.addrlen &&
            memcmp(&c->listen[i].addr, &l.addr, l.addrlen) == 0) {
            conf_fail_at(p, conf_here(p), "address '%s' is listed twice", item);
            return -1;
        }
    }
    memcpy(l.text, item, strlen(item) + 1);
    a = conf_grow(c->listen, c->nlisten, sizeof(*a));
    if (!a) {
        return conf_oom(p);
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
        conf_fail_at(p, conf_here(p), "bad network '%s'", item);
        return -1;
    }
    a = conf_grow(*arr, *n, sizeof(*a));
    if (!a) {
        return conf_oom(p);
    }
    *arr = a;
    a[(*n)++] = net;
    return 0;
}

static int conf_add_allow(struct parse *p, const char *item)
{
    return conf_add_cidr(p, item, &p->c->allow, &p->c->nallow);
}

static int set_listen(struct parse *p, const char *val, size_t len)
{
    if (!p->listen_given) {
        p->listen_given = 1;
        p->listen_at = conf_here(p);
    }
    return conf_each_item(p, val, len, conf_add_listen);
}

static int set_allow(struct parse *p, const char *val, size_t len)
{
    if (!p->allow_given) {
        p->allow_given = 1;
        p->allow_at = conf_here(p);
    }
    return conf_each_item(p, val, len, conf_add_allow);
}

static int set_hostname(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (!conf_valid_name(val)) {
        conf_fail_at(p, conf_here(p), "bad host name '%s' (no blanks or control characters)", val);
        return -1;
    }
    p->c->hostname = conf_strdup(p, val);
    return p->c->hostname ? 0 : -1;
}

static int set_size(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_size(val, &v) != 0 || v == 0) {
        conf_fail_at(p, conf_here(p), "bad size '%s' (bytes, or a number with K, M or G)", val);
        return -1;
    }
    *(uint64_t *)conf_field(p) = v;
    return 0;
}

static int set_timeout(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_uint(val, CONF_MAX_TIMEOUT, &v) != 0 || v == 0) {
        conf_fail_at(p, conf_here(p), "bad number '%s' (seconds, 1 to %u)", val, CONF_MAX_TIMEOUT);
        return -1;
    }
    *(unsigned *)conf_field(p) = (unsigned)v;
    return 0;
}

/* A yes/no value into *out, or -1 after the error naming the accepted words. */
static int conf_bool(struct parse *p, const char *val, int *out)
{
    int b = conf_parse_bool(val);

    if (b < 0) {
        conf_fail_at(p, conf_here(p), "bad boolean '%s' (yes, no, true, false, on, off, 1, 0)",
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
static int conf_keyword(struct parse *p, const char *val, const char *const *words, size_t n)
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
    conf_fail_at(p, conf_here(p), "bad value '%s' (%s)", val, list);
    return -1;
}

static int set_bare_lf(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"normalize", "reject"};
    int k = conf_keyword(p, val, words, 2);

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
    char **f = conf_field(p);

    (void)len;
    free(*f);
    *f = conf_strdup(p, val);
    return *f ? 0 : -1;
}

static int set_tls_min_version(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"1.0", "1.1", "1.2"};
    int k = conf_keyword(p, val, words, 3);

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
        conf_fail_at(p, conf_here(p), "bad address '%s' (expected 127.0.0.1:465, [::]:465, ...)",
                     item);
        return -1;
    }
    memcpy(l.text, item, strlen(item) + 1);
    a = conf_grow(c->tls_listen, c->ntls_listen, sizeof(*a));
    if (!a) {
        return conf_oom(p);
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
    if (!*val || strchr(val, ':') || !conf_valid_name(val)) {
        conf_fail_at(p, conf_here(p), "bad login '%s' (no blanks, ':' or control characters)", val);
        return -1;
    }
    free(d->login);
    d->login = conf_strdup(p, val);
    return d->login ? 0 : -1;
}

static int set_log_level(struct parse *p, const char *val, size_t len)
{
    int l = log_level_parse(val);

    (void)len;
    if (l < 0) {
        conf_fail_at(p, conf_here(p), "bad level '%s' (debug, info, warn or error)", val);
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
    if (conf_parse_uint(val, CONF_MAX_COUNT, &v) != 0 || v == 0) {
        conf_fail_at(p, conf_here(p), "bad number '%s' (1 to %u)", val, CONF_MAX_COUNT);
        return -1;
    }
    *(unsigned *)conf_field(p) = (unsigned)v;
    return 0;
}

/* Limits where 0 means unlimited. */
static int set_limit(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_uint(val, CONF_MAX_COUNT, &v) != 0) {
        conf_fail_at(p, conf_here(p), "bad number '%s' (0 for unlimited, or 1 to %u)", val,
                     CONF_MAX_COUNT);
        return -1;
    }
    *(unsigned *)conf_field(p) = (unsigned)v;
    return 0;
}

static int set_rate(struct parse *p, const char *val, size_t len)
{
    (void)len;
    if (conf_parse_rate(val, conf_field(p)) != 0) {
        conf_fail_at(p, conf_here(p),
                     "bad rate '%s' (N/second, N/minute, N/hour or N/day with N from 1 to %u; "
                     "0 or unlimited for no limit)",
                     val, CONF_MAX_COUNT);
        return -1;
    }
    return 0;
}

/* Why item is not a valid policy pattern, or NULL. Only the forms conf_patterns_match
 * understands are accepted, so a typo cannot become a pattern that never matches.
 * Quoted local parts containing '@' or blanks (RFC 5321 §4.1.2) are not supported. */
static const char *conf_bad_pattern(const char *item, int senders)
{
    const char *at = strchr(item, '@');
    const char *dom = at ? at + 1 : item;

    if (strcmp(item, "<>") == 0) {
        return senders ? NULL : "the null sender <> belongs in allowed_senders";
    }
    for (const char *s = item; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch < ' ' || ch == 0x7f) {
            return "control character";
        }
        if (ch == '<' || ch == '>') {
            return "write a@b without angle brackets; <> alone is the null sender";
        }
    }
    if (at && strchr(at + 1, '@')) {
        return "more than one '@'";
    }
    if (!*dom) {
        return "no domain after '@'";
    }
    if (*dom == '.' || dom[strlen(dom) - 1] == '.' || strstr(dom, "..")) {
        return "bad domain";
    }
    return NULL;
}

static int conf_add_pattern(struct parse *p, const char *item)
{
    struct conf_patterns *pl = conf_field(p);
    const char *why = conf_bad_pattern(item, strstr(p->kd->name, "senders") != NULL);
    char **a;
    char *d;

    if (why) {
        conf_fail_at(p, conf_here(p), "bad address '%s' (%s)", item, why);
        return -1;
    }
    d = conf_strdup(p, item);
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
    a = conf_grow(pl->items, pl->n, sizeof(*a));
    if (!a) {
        free(d);
        return conf_oom(p);
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
    p->proxy_at = conf_line(p, p->lineno);
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
        conf_fail_at(p, conf_here(p),
                     "bad user name '%s' (letters, digits, '.', '_', '-', at most %d)", val,
                     CONF_USER_MAX);
        return -1;
    }
    if (strcmp(val, "root") == 0) {
        conf_fail_at(p, conf_here(p),
                     "relay25 does not keep root privileges; name an "
                     "unprivileged account (default relay25)");
        return -1;
    }
    p->c->user = conf_strdup(p, val);
    return p->c->user ? 0 : -1;
}

static int set_log(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"stderr", "syslog"};
    int k = conf_keyword(p, val, words, 2);

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
    int k = conf_keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->log_json = k;
    return 0;
}

static int set_metrics_listen(struct parse *p, const char *val, size_t len)
{
    struct conf_listen *l = &p->c->metrics_listen;

    len = strlen(val);
    if (len >= sizeof(l->text) ||
        conf_parse_hostport(val, CONF_METRICS_PORT, &l->addr, &l->addrlen) != 0) {
        conf_fail_at(p, conf_here(p), "bad address '%s' (expected 127.0.0.1:%d, [::1]:%d, ...)",
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
    enum conf_mode *m = conf_field(p);
    int k = conf_keyword(p, val, words, 2);

    (void)len;
    if (k < 0) {
        return -1;
    }
    *m = k == 0 ? CONF_MODE_PASSTHROUGH : CONF_MODE_SPOOL;
    return 0;
}

/* on_upstream_failure = reject | queue, in [relay] and [device]. */
static int set_on_failure(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"reject", "queue"};
    enum conf_on_failure *f = conf_field(p);
    int k = conf_keyword(p, val, words, 2);

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
        conf_fail_at(p, conf_here(p), "'%s' is not an absolute path (start it with '/')", val);
        return -1;
    }
    for (const char *s = val; *s; s++) {
        if ((unsigned char)*s < ' ' || *s == 0x7f) {
            conf_fail_at(p, conf_here(p), "control character in path");
            return -1;
        }
    }
    p->c->spool_dir = conf_strdup(p, val);
    return p->c->spool_dir ? 0 : -1;
}

/* Sizes where 0 means unlimited. */
static int set_size_limit(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_size(val, &v) != 0) {
        conf_fail_at(p, conf_here(p),
                     "bad size '%s' (0 for unlimited, or bytes, or a number with K, M or G)", val);
        return -1;
    }
    *(uint64_t *)conf_field(p) = v;
    return 0;
}

static int set_duration(struct parse *p, const char *val, size_t len)
{
    unsigned v;

    (void)len;
    if (conf_parse_duration(val, CONF_MAX_DURATION, &v) != 0) {
        conf_fail_at(p, conf_here(p),
                     "bad duration '%s' (seconds, or a number with s, m, h or d; 1s to 365d)", val);
        return -1;
    }
    *(unsigned *)conf_field(p) = v;
    return 0;
}

static int set_bounce(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"dsn", "keep", "drop"};
    static const enum conf_bounce values[] = {CONF_BOUNCE_DSN, CONF_BOUNCE_KEEP, CONF_BOUNCE_DROP};
    int k = conf_keyword(p, val, words, 3);

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
    if (!conf_valid_name(val)) {
        conf_fail_at(p, conf_here(p), "bad host '%s'", val);
        return -1;
    }
    if (strchr(val, ':') && inet_pton(AF_INET6, val, &a6) != 1) {
        conf_fail_at(p, conf_here(p), "bad host '%s' (give the port with port =)", val);
        return -1;
    }
    u->host = conf_strdup(p, val);
    return u->host ? 0 : -1;
}

static int set_port(struct parse *p, const char *val, size_t len)
{
    uint64_t v;

    (void)len;
    if (conf_parse_uint(val, 65535, &v) != 0 || v == 0) {
        conf_fail_at(p, conf_here(p), "bad port '%s' (1 to 65535)", val);
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
        conf_fail_at(p, conf_here(p),
                     "'%s': relay25 has no plain mode (upstream TLS is mandatory); use starttls "
                     "or implicit",
                     val);
        return -1;
    } else {
        conf_fail_at(p, conf_here(p), "bad value '%s' (starttls or implicit)", val);
        return -1;
    }
    p->ux[p->cur].tls_given = 1;
    return 0;
}

static int set_ca_file(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    u->ca_file = conf_strdup(p, val);
    return u->ca_file ? 0 : -1;
}

static int set_server_name(struct parse *p, const char *val, size_t len)
{
    struct conf_upstream *u = &p->c->upstreams[p->cur];

    (void)len;
    if (!conf_valid_name(val)) {
        conf_fail_at(p, conf_here(p), "bad name '%s'", val);
        return -1;
    }
    u->server_name = conf_strdup(p, val);
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
    if (conf_parse_uint(val, CONF_MAX_UP_CONNECTIONS, &v) != 0 || v == 0) {
        conf_fail_at(p, conf_here(p), "bad number '%s' (1 to %u)", val, CONF_MAX_UP_CONNECTIONS);
        return -1;
    }
    p->c->upstreams[p->cur].max_connections = (unsigned)v;
    return 0;
}

/* ---- [device NAME] --------------------------------------------------------------------- */

/* One name of `upstream = a, b`; names are resolved once all sections are read. */
static int conf_add_upstream_name(struct parse *p, const char *item)
{
    struct dev_extra *x = conf_cur_dx(p);
    struct dev_up *a;
    char *name;

    if (!conf_valid_section_name(item, strlen(item))) {
        conf_fail_at(p, conf_here(p), "bad upstream name '%s'", item);
        return -1;
    }
    for (size_t i = 0; i < x->nups; i++) {
        if (strcmp(x->ups[i].name, item) == 0) {
            conf_fail_at(p, conf_here(p), "upstream '%s' is listed twice", item);
            return -1;
        }
    }
    name = conf_strdup(p, item);
    if (!name) {
        return -1;
    }
    a = conf_grow(x->ups, x->nups, sizeof(*a));
    if (!a) {
        free(name);
        return conf_oom(p);
    }
    x->ups = a;
    a[x->nups].name = name;
    a[x->nups].at = conf_here(p);
    x->nups++;
    return 0;
}

static int set_upstream(struct parse *p, const char *val, size_t len)
{
    struct dev_extra *x = conf_cur_dx(p);

    if (!x->upstream_given) {
        x->upstream_given = 1;
        x->upstream_at = conf_here(p);
    }
    return conf_each_item(p, val, len, conf_add_upstream_name);
}

static int set_user(struct parse *p, const char *val, size_t len)
{
    struct conf_device *d = conf_cur_dev(p);

    (void)len;
    d->user = conf_strdup(p, val);
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
            conf_fail_at(p, conf_here(p),
                         "%s already has %s (line %d): give exactly one of password_file, "
                         "password_env, password",
                         conf_label(p, label, sizeof(label)), conf_pw_keys[x->pw], x->pw_at.line);
        } else {
            conf_fail_at(p, conf_here(p), "give exactly one of %s and %s", x->pw_at.var,
                         p->var ? p->var : "");
        }
        return -1;
    }
    x->pw = kind;
    x->pw_at = conf_here(p);
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
        return conf_oom(p);
    }
    r = snprintf(d->password_source, n, "%s%s", prefix, arg);
    if (r < 0 || (size_t)r >= n) {
        return conf_oom(p);
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
    x->pw_arg = conf_strdup(p, val);
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
    if (!conf_valid_env_name(val)) {
        conf_fail_at(p, conf_here(p), "bad variable name '%s'", val);
        return -1;
    }
    x->pw_arg = conf_strdup(p, val);
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
        conf_fail_at(p, conf_here(p), "bad credential name '%s'", val);
        return -1;
    }
    x->pw_arg = conf_strdup(p, val);
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
    d->password = conf_strdup(p, val);
    if (!d->password) {
        return -1;
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
        conf_fail_at(p, conf_here(p),
                     "[device default] takes no match: it serves allowed clients that match no "
                     "other device");
        return -1;
    }
    if (!x->match_given) {
        x->match_given = 1;
        x->match_at = conf_here(p);
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
            conf_fail_at(p, conf_here(p),
                         "bad address '%s' (write local@domain, without brackets or blanks)", val);
            return -1;
        }
    }
    if (!at || at == val || strchr(at + 1, '@') || !at[1] || at[1] == '.' || val[len - 1] == '.' ||
        strstr(at, "..") || len >= 256) {
        conf_fail_at(p, conf_here(p), "bad address '%s' (expected local@domain)", val);
        return -1;
    }
    d->rewrite_sender = conf_strdup(p, val);
    return d->rewrite_sender ? 0 : -1;
}

static int set_rewrite_from_header(struct parse *p, const char *val, size_t len)
{
    int b = conf_parse_bool(val);

    (void)len;
    if (b < 0) {
        conf_fail_at(p, conf_here(p), "expected yes or no, not '%s'", val);
        return -1;
    }
    p->c->devices[p->cur].rewrite_from_header = b;
    return 0;
}

/* One name of `devices = a, b`; checked against the [device] sections at the end. */
static int conf_add_route_device(struct parse *p, const char *item)
{
    struct conf_route *r = &p->c->routes[p->cur];
    char **a;
    char *name;

    if (!conf_valid_section_name(item, strlen(item))) {
        conf_fail_at(p, conf_here(p), "bad device name '%s'", item);
        return -1;
    }
    name = conf_strdup(p, item);
    if (!name) {
        return -1;
    }
    a = conf_grow(r->devices, r->ndevices, sizeof(*a));
    if (!a) {
        free(name);
        return conf_oom(p);
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
    int k = conf_keyword(p, val, words, 3);

    (void)len;
    if (k < 0) {
        return -1;
    }
    p->c->devices[p->cur].auth = k == 0   ? CONF_AUTH_PASSWORD
                                 : k == 1 ? CONF_AUTH_XOAUTH2
                                          : CONF_AUTH_OAUTHBEARER;
    p->dx[p->cur].auth_at = conf_here(p);
    return 0;
}

/* auth_mechanisms = CRAM-MD5, PLAIN: SASL names (any case), each at most once. */
static int conf_add_mech(struct parse *p, const char *item)
{
    static const char *const names[] = {"", "XOAUTH2", "OAUTHBEARER", "CRAM-MD5", "PLAIN", "LOGIN"};
    unsigned char *m = conf_field(p);
    size_t n = 0, k;

    for (k = 1; k < sizeof(names) / sizeof(names[0]); k++) {
        if (strcasecmp(item, names[k]) == 0) {
            break;
        }
    }
    if (k == sizeof(names) / sizeof(names[0])) {
        conf_fail_at(p, conf_here(p),
                     "unknown SASL mechanism '%s' (XOAUTH2, OAUTHBEARER, CRAM-MD5, PLAIN or LOGIN)",
                     item);
        return -1;
    }
    while (n < CONF_MAX_MECHS - 1 && m[n] != CONF_MECH_END) {
        if (m[n] == k) {
            conf_fail_at(p, conf_here(p), "mechanism '%s' listed twice", item);
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
    unsigned char *m = conf_field(p);

    memset(m, 0, CONF_MAX_MECHS);
    if (conf_each_item(p, val, len, conf_add_mech) != 0) {
        return -1;
    }
    if (m[0] == CONF_MECH_END) {
        conf_fail_at(p, conf_here(p), "empty list (XOAUTH2, OAUTHBEARER, CRAM-MD5, PLAIN, LOGIN)");
        return -1;
    }
    return 0;
}

/* Remembers where an oauth_* key was set, for conf_check_oauth(). */
static void conf_oauth_seen(struct parse *p)
{
    for (size_t k = 0; k < CONF_OAUTH_NKEYS; k++) {
        if (strcmp(p->kd->name, conf_oauth_keys[k]) == 0) {
            p->dx[p->cur].oauth_at[k] = conf_here(p);
        }
    }
}

/* No control characters: values end up in an HTTP request. */
static int conf_valid_text(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < ' ' || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* "https://host[:port][/path][?query]" (RFC 3986 §3) into o->host, o->port and
 * o->path. Returns NULL, or why the URL is refused. */
static const char *conf_parse_url(const char *url, struct conf_oauth *o)
{
    const char *a, *e, *h, *he, *port = NULL, *q;
    uint64_t v = CONF_HTTPS_PORT;
    size_t plen;

    if (strncasecmp(url, "https://", 8) != 0) {
        return strncasecmp(url, "http://", 7) == 0
                   ? "plain http would expose the secrets; use https://"
                   : "expected https://host/path";
    }
    if (!conf_valid_text(url) || strpbrk(url, " \t")) {
        return "blank or control character";
    }
    a = url + 8;
    e = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(e - a))) {
        return "no user@ before the host";
    }
    if (*a == '[') {
        struct in6_addr a6;
        char v6[INET6_ADDRSTRLEN];

        h = a + 1;
        he = memchr(h, ']', (size_t)(e - h));
        if (!he || (size_t)(he - h) >= sizeof(v6)) {
            return "bad IPv6 address";
        }
        memcpy(v6, h, (size_t)(he - h));
        v6[he - h] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1) {
            return "bad IPv6 address";
        }
        if (he + 1 < e) {
            if (he[1] != ':') {
                return "bad host";
            }
            port = he + 2;
        }
    } else {
        h = a;
        he = memchr(a, ':', (size_t)(e - a));
        if (he) {
            port = he + 1;
        } else {
            he = e;
        }
    }
    if (he == h || (size_t)(he - h) > CONF_NAME_MAX) {
        return "no host";
    }
    if (port) {
        char digits[8];
        size_t n = (size_t)(e - port);

        if (n == 0 || n >= sizeof(digits)) {
            return "bad port";
        }
        memcpy(digits, port, n);
        digits[n] = '\0';
        if (conf_parse_uint(digits, 65535, &v) != 0 || v == 0) {
            return "bad port";
        }
    }
    q = e + strcspn(e, "#"); /* the fragment is not sent (RFC 3986 §3.5) */
    plen = (size_t)(q - e);
    o->host = strndup(h, (size_t)(he - h));
    o->path = malloc(plen + 2);
    if (!o->host || !o->path) {
        return NULL; /* the caller sees the missing copy */
    }
    o->port = (uint16_t)v;
    snprintf(o->path, plen + 2, "%s%.*s", *e == '/' ? "" : "/", (int)plen, e);
    return NULL;
}

static int set_oauth_url(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    why = conf_parse_url(val, o);
    if (why) {
        conf_fail_at(p, conf_here(p), "bad URL '%s' (%s)", val, why);
        return -1;
    }
    if (!o->host || !o->path) {
        return conf_oom(p);
    }
    o->token_url = conf_strdup(p, val);
    return o->token_url ? 0 : -1;
}

/* oauth_device_url = https://login.microsoftonline.com/TENANT/oauth2/v2.0/devicecode */
static int set_oauth_device_url(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    struct conf_oauth u;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    memset(&u, 0, sizeof(u));
    why = conf_parse_url(val, &u);
    if (why) {
        free(u.host);
        free(u.path);
        conf_fail_at(p, conf_here(p), "bad URL '%s' (%s)", val, why);
        return -1;
    }
    free(o->device_host);
    free(o->device_path);
    free(o->device_url);
    o->device_host = u.host;
    o->device_path = u.path;
    o->device_port = u.port;
    if (!o->device_host || !o->device_path) {
        return conf_oom(p);
    }
    o->device_url = conf_strdup(p, val);
    return o->device_url ? 0 : -1;
}

/* oauth_client_id, oauth_scope: kept as written (form-encoded when sent). */
static int set_oauth_text(struct parse *p, const char *val, size_t len)
{
    char **field = conf_field(p);

    (void)len;
    conf_oauth_seen(p);
    if (!conf_valid_text(val)) {
        conf_fail_at(p, conf_here(p), "control character in value");
        return -1;
    }
    *field = conf_strdup(p, val);
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
        conf_fail_at(p, conf_here(p),
                     "give one of oauth_client_secret_file and oauth_client_secret_env");
        return -1;
    }
    if (kind == PW_ENV && !conf_valid_env_name(val)) {
        conf_fail_at(p, conf_here(p), "bad variable name '%s'", val);
        return -1;
    }
    x->oauth_secret = kind;
    x->oauth_secret_at = conf_here(p);
    x->oauth_secret_arg = conf_strdup(p, val);
    o->client_secret_source = malloc(n);
    if (!x->oauth_secret_arg || !o->client_secret_source) {
        return conf_oom(p);
    }
    snprintf(o->client_secret_source, n, "%s %s", kind == PW_FILE ? "file" : "env", val);
    return 0;
}

static int set_oauth_secret_file(struct parse *p, const char *val, size_t len)
{
    (void)len;
    return conf_oauth_secret(p, PW_FILE, val);
}

static int set_oauth_secret_env(struct parse *p, const char *val, size_t len)
{
    (void)len;
    return conf_oauth_secret(p, PW_ENV, val);
}

/* Absolute: rotated refresh tokens are written back (temp file + rename in its
 * directory) long after startup, whatever the working directory is then. */
static int set_oauth_refresh_file(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;

    (void)len;
    conf_oauth_seen(p);
    if (val[0] != '/' || !conf_valid_text(val)) {
        conf_fail_at(p, conf_here(p), "'%s' is not an absolute path (start it with '/')", val);
        return -1;
    }
    o->refresh_token_file = conf_strdup(p, val);
    return o->refresh_token_file ? 0 : -1;
}

static int set_oauth_grant(struct parse *p, const char *val, size_t len)
{
    static const char *const words[] = {"refresh_token", "client_credentials"};
    int k;

    (void)len;
    conf_oauth_seen(p);
    k = conf_keyword(p, val, words, 2);
    if (k < 0) {
        return -1;
    }
    p->c->devices[p->cur].oauth.grant =
        k == 0 ? CONF_OAUTH_REFRESH_TOKEN : CONF_OAUTH_CLIENT_CREDENTIALS;
    return 0;
}

static void conf_free_argv(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++) {
        free(argv[i]);
    }
    free(argv);
}

/* Words of a command line: blanks separate, '...' and "..." quote, a backslash
 * escapes the next character (not inside '...'). No shell: no variables, globs or
 * pipes. Returns NULL with *out set, or why the line is refused. */
static const char *conf_split_words(const char *s, char ***out)
{
    char **argv = calloc(CONF_MAX_ARGS + 1, sizeof(*argv));
    size_t n = 0, cap = strlen(s) + 1;
    const char *why = NULL;

    *out = NULL;
    if (!argv) {
        return "out of memory";
    }
    while (!why) {
        char *w, quote = 0;
        size_t wl = 0;

        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (!*s) {
            break;
        }
        if (n == CONF_MAX_ARGS) {
            why = "too many words";
            break;
        }
        if (!(w = malloc(cap))) {
            why = "out of memory";
            break;
        }
        argv[n++] = w;
        for (; *s && (quote || (*s != ' ' && *s != '\t')); s++) {
            if (quote && *s == quote) {
                quote = 0;
            } else if (!quote && (*s == '\'' || *s == '"')) {
                quote = *s;
            } else if (*s == '\\' && quote != '\'') {
                if (!s[1]) {
                    why = "backslash at the end";
                    break;
                }
                w[wl++] = *++s;
            } else {
                w[wl++] = *s;
            }
        }
        w[wl] = '\0';
        if (quote && !why) {
            why = "unterminated quote";
        }
    }
    if (!why && n == 0) {
        why = "empty command";
    }
    if (!why && argv[0][0] != '/') {
        why = "give the program's absolute path";
    }
    if (why) {
        conf_free_argv(argv);
        return why;
    }
    *out = argv;
    return NULL;
}

static int set_oauth_command(struct parse *p, const char *val, size_t len)
{
    struct conf_oauth *o = &p->c->devices[p->cur].oauth;
    const char *why;

    (void)len;
    conf_oauth_seen(p);
    if (!conf_valid_text(val)) {
        conf_fail_at(p, conf_here(p), "control character in value");
        return -1;
    }
    why = conf_split_words(val, &o->argv);
    if (why) {
        conf_fail_at(p, conf_here(p), "bad command (%s)", why);
        return -1;
    }
    o->command = conf_strdup(p, val);
    return o->command ? 0 : -1;
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
        conf_fail_at(p, conf_here(p),
                     "bad address '%s' (expected host:port of a relay25 listener, e.g. "
                     "127.0.0.1:25 or [::1]:25)",
                     val);
        return -1;
    }
    p->c->submit = conf_strdup(p, val);
    return p->c->submit ? 0 : -1;
}

/* ---- sections -------------------------------------------------------------------------- */

static int conf_new_upstream(struct parse *p, const char *name, size_t len, int line)
{
    struct conf *c = p->c;
    struct conf_upstream *u;
    struct up_extra *x;

    x = conf_grow(p->ux, c->nupstreams, sizeof(*x));
    if (!x) {
        return conf_oom(p);
    }
    p->ux = x;
    u = conf_grow(c->upstreams, c->nupstreams, sizeof(*u));
    if (!u) {
        return conf_oom(p);
    }
    c->upstreams = u;
    u = &c->upstreams[c->nupstreams++];
    u->tls_verify = 1;
    u->max_connections = 4;
    u->line = line;
    u->name = strndup(name, len);
    if (!u->name) {
        return conf_oom(p);
    }
    p->sect = SECT_UPSTREAM;
    p->cur = c->nupstreams - 1;
    return 0;
}

static int conf_new_device(struct parse *p, const char *name, size_t len, int line)
{
    struct conf *c = p->c;
    struct conf_device *d;
    struct dev_extra *x;

    x = conf_grow(p->dx, c->ndevices, sizeof(*x));
    if (!x) {
        return conf_oom(p);
    }
    p->dx = x;
    d = conf_grow(c->devices, c->ndevices, sizeof(*d));
    if (!d) {
        return conf_oom(p);
    }
    c->devices = d;
    d = &c->devices[c->ndevices++];
    d->line = line;
    d->name = strndup(name, len);
    if (!d->name) {
        return conf_oom(p);
    }
    d->is_default = strcmp(d->name, "default") == 0;
    p->sect = SECT_DEVICE;
    p->cur = c->ndevices - 1;
    return 0;
}

/* A "[...]" line (text between the brackets): "relay", "sendmail", "upstream NAME",
 * "device NAME". */
static int conf_section(struct parse *p, const char *text, size_t len)
{
    struct conf *c = p->c;
    const char *type, *name, *rest, *end = text + len;
    size_t tlen, nlen;

    memset(p->seen, 0, sizeof(p->seen));
    p->sect = SECT_NONE;
    if (len > INI_NAME_MAX) {
        conf_fail_at(p, conf_line(p, p->lineno),
                     "section header too long (inih keeps %d characters)", INI_NAME_MAX);
        return -1;
    }
    memcpy(p->section_raw, text, len);
    p->section_raw[len] = '\0';

    for (type = text; type < end && isspace((unsigned char)*type); type++) {
    }
    for (name = type; name < end && !isspace((unsigned char)*name); name++) {
    }
    tlen = (size_t)(name - type);
    for (; name < end && isspace((unsigned char)*name); name++) {
    }
    for (rest = name; rest < end && !isspace((unsigned char)*rest); rest++) {
    }
    nlen = (size_t)(rest - name);
    for (; rest < end && isspace((unsigned char)*rest); rest++) {
    }
    if (rest != end) {
        conf_fail_at(p, conf_line(p, p->lineno),
                     "bad section header '[%.*s]' (expected [relay], [upstream NAME], "
                     "[device NAME] or [sendmail])",
                     (int)len, text);
        return -1;
    }

    if ((tlen == 5 && memcmp(type, "relay", 5) == 0) ||
        (tlen == 8 && memcmp(type, "sendmail", 8) == 0)) {
        int is_relay = tlen == 5;
        int *first = is_relay ? &p->relay_line : &p->sendmail_line;

        if (nlen) {
            conf_fail_at(p, conf_line(p, p->lineno), "[%.*s] takes no name", (int)tlen, type);
            return -1;
        }
        if (*first) {
            conf_fail_at(p, conf_line(p, p->lineno), "duplicate section [%.*s] (first on line %d)",
                         (int)tlen, type, *first);
            return -1;
        }
        *first = p->lineno;
        p->sect = is_relay ? SECT_RELAY : SECT_SENDMAIL;
        return 0;
    }
    if ((tlen == 8 && memcmp(type, "upstream", 8) == 0) ||
        (tlen == 6 && memcmp(type, "device", 6) == 0)) {
        int is_up = tlen == 8;

        if (!nlen) {
            conf_fail_at(p, conf_line(p, p->lineno), "[%.*s] needs a name: [%.*s NAME]", (int)tlen,
                         type, (int)tlen, type);
            return -1;
        }
        if (!conf_valid_section_name(name, nlen)) {
            conf_fail_at(p, conf_line(p, p->lineno),
                         "bad name '%.*s' in [%.*s] (letters, digits, '.', '_', '-')", (int)nlen,
                         name, (int)tlen, type);
            return -1;
        }
        for (size_t i = 0; i < (is_up ? c->nupstreams : c->ndevices); i++) {
            const char *other = is_up ? c->upstreams[i].name : c->devices[i].name;
            int line = is_up ? c->upstreams[i].line : c->devices[i].line;

            if (strlen(other) == nlen && memcmp(other, name, nlen) == 0) {
                conf_fail_at(p, conf_line(p, p->lineno),
                             "duplicate section [%.*s %.*s] (first on line %d)", (int)tlen, type,
                             (int)nlen, name, line);
                return -1;
            }
        }
        return is_up ? conf_new_upstream(p, name, nlen, p->lineno)
                     : conf_new_device(p, name, nlen, p->lineno);
    }
    if (tlen == 5 && memcmp(type, "route", 5) == 0) {
        struct conf_route *r;
        struct dev_extra *x;

        if (!nlen || !conf_valid_section_name(name, nlen)) {
            conf_fail_at(p, conf_line(p, p->lineno),
                         "[route] needs a name: [route NAME] (letters, digits, '.', '_', '-')");
            return -1;
        }
        for (size_t i = 0; i < c->nroutes; i++) {
            if (strlen(c->routes[i].cred.name) == nlen &&
                memcmp(c->routes[i].cred.name, name, nlen) == 0) {
                conf_fail_at(p, conf_line(p, p->lineno),
                             "duplicate section [route %.*s] (first on line %d)", (int)nlen, name,
                             c->routes[i].line);
                return -1;
            }
        }
        x = conf_grow(p->rx, c->nroutes, sizeof(*x));
        if (!x) {
            return conf_oom(p);
        }
        p->rx = x;
        r = conf_grow(c->routes, c->nroutes, sizeof(*r));
        if (!r) {
            return conf_oom(p);
        }
        c->routes = r;
        r = &c->routes[c->nroutes++];
        r->line = p->lineno;
        r->cred.line = p->lineno;
        r->cred.name = strndup(name, nlen);
        if (!r->cred.name) {
            return conf_oom(p);
        }
        p->sect = SECT_ROUTE;
        p->cur = c->nroutes - 1;
        return 0;
    }
    conf_fail_at(p, conf_line(p, p->lineno),
                 "unknown section type '%.*s' (expected [relay], [upstream NAME], [device NAME] "
                 "or [sendmail])",
                 (int)tlen, type);
    return -1;
}

static const struct key_def *conf_find_key(enum sect s, const char *name)
{
    for (size_t i = 0; i < CONF_NKEYS; i++) {
        if (conf_keys[i].sect == s && strcmp(conf_keys[i].name, name) == 0) {
            return &conf_keys[i];
        }
    }
    return NULL;
}

/* Applies one key; line > 0 in a file, the variable in p->var otherwise. */
static int conf_apply(struct parse *p, const struct key_def *kd, const char *val, size_t len)
{
    size_t idx = (size_t)(kd - conf_keys);
    int r;

    if (!kd->list) {
        if (p->seen[idx]) {
            char label[96];
            conf_fail_at(p, conf_line(p, p->lineno), "duplicate key '%s' in %s (first on line %d)",
                         kd->name, conf_label(p, label, sizeof(label)), p->seen[idx]);
            return -1;
        }
        if (!*val) {
            p->kd = kd;
            conf_fail_at(p, conf_here(p), "empty value");
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

/* ---- the file: reader and handler for inih ----------------------------------------------- */

/* inih's ini_find_chars_or_comment(): first char of chars, or a ';' after a blank. */
static const char *conf_find_chars_or_comment(const char *s, const char *end, const char *chars)
{
    int was_space = 0;

    while (s < end && !strchr(chars, *s) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* Decides what inih will make of the line, with inih's own rules (ini_parse_stream),
 * so the handler knows its section and line. Returns -1 with an error for lines
 * inih would reject, so the first error is the one reported. */
static int conf_classify(struct parse *p, const char *line, size_t len)
{
    const char *s = line, *end = line + len, *q;

    if (p->lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3; /* UTF-8 BOM (INI_ALLOW_BOM) */
    }
    while (end > s && isspace((unsigned char)end[-1])) {
        end--;
    }
    while (s < end && isspace((unsigned char)*s)) {
        s++;
    }
    if (s == end || *s == ';' || *s == '#') {
        p->kind = LINE_BLANK;
        return 0;
    }
    if (p->have_prev_name && s > line) {
        p->kind = LINE_CONT;
        return 0;
    }
    if (*s == '[') {
        q = conf_find_chars_or_comment(s + 1, end, "]");
        if (q == end || *q != ']') {
            conf_fail_at(p, conf_line(p, p->lineno), "missing ']' in section header");
            return -1;
        }
        p->kind = LINE_SECTION;
        p->have_prev_name = 0;
        return conf_section(p, s + 1, (size_t)(q - (s + 1)));
    }
    q = conf_find_chars_or_comment(s, end, "=:");
    if (q == end || (*q != '=' && *q != ':')) {
        /* The line is not quoted: it might be a stray password. */
        conf_fail_at(p, conf_line(p, p->lineno),
                     "syntax error: expected 'key = value', [section] or a ; comment");
        return -1;
    }
    while (q > s && isspace((unsigned char)q[-1])) {
        q--;
    }
    p->kind = LINE_KEY;
    p->have_prev_name = q > s;
    return 0;
}

/* ini_reader over p->fp: hands inih one whole physical line at a time, counts
 * lines, and refuses lines inih would silently split (longer than num - 2 bytes
 * before the newline) or truncate (NUL bytes). Returns NULL to stop at an error. */
static char *conf_reader(char *str, int num, void *stream)
{
    struct parse *p = stream;
    size_t max, n = 0;
    int ch = EOF;

    if (p->failed || num < 3) {
        return NULL;
    }
    max = (size_t)num - 2;
    while ((ch = getc(p->fp)) != EOF && ch != '\n') {
        if (ch == '\0') {
            explicit_bzero(str, n);
            conf_fail_at(p, conf_line(p, p->lineno + 1), "NUL byte in line");
            return NULL;
        }
        if (n == max) {
            explicit_bzero(str, n);
            conf_fail_at(p, conf_line(p, p->lineno + 1),
                         "line longer than %zu characters (inih reads at most %d bytes per "
                         "line, newline included)",
                         max, num - 1);
            return NULL;
        }
        str[n++] = (char)ch;
    }
    if (ch == EOF) {
        if (ferror(p->fp)) {
            conf_fail_raw(p, "cannot read %s: %s", p->file, strerror(errno));
            return NULL;
        }
        if (n == 0) {
            return NULL;
        }
    } else {
        str[n++] = '\n';
    }
    str[n] = '\0';
    p->lineno++;
    if (conf_classify(p, str, n) != 0) {
        return NULL;
    }
    return str;
}

static int conf_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    const struct key_def *kd;
    size_t len = strlen(value);
    char label[96];

    if (p->failed) {
        return 0;
    }
    if ((p->kind != LINE_KEY && p->kind != LINE_CONT) || strcmp(section, p->section_raw) != 0) {
        conf_fail_at(p, conf_line(p, p->lineno),
                     "internal error: relay25 and inih disagree about this line");
        return 0;
    }
    if (p->sect == SECT_NONE) {
        conf_fail_at(p, conf_line(p, p->lineno),
                     "key '%s' outside any section (start with [relay], [upstream NAME] or "
                     "[device NAME])",
                     name);
        return 0;
    }
    kd = conf_find_key(p->sect, name);
    if (!kd) {
        conf_fail_at(p, conf_line(p, p->lineno), "unknown key '%s' in %s", name,
                     conf_label(p, label, sizeof(label)));
        return 0;
    }
    if (p->kind == LINE_CONT) {
        if (!kd->list) {
            conf_fail_at(p, conf_line(p, p->lineno),
                         "'%s' takes one value; only lists (listen, allow, match, upstream, "
                         "proxy_from, allowed_senders, allowed_recipients) continue on indented "
                         "lines",
                         name);
            return 0;
        }
        /* inih 55 leaves inline comments in continuation lines; cut them as it does
         * on key lines (a ';' after a blank). */
        len = (size_t)(conf_find_chars_or_comment(value, value + len, "") - value);
    }
    return conf_apply(p, kd, value, len) == 0;
}

static int conf_load_file(struct parse *p, const char *path)
{
    /* Our own stdio buffer, so inline passwords read through it can be wiped. */
    char iobuf[4096];
    FILE *fp;
    int r;

    fp = fopen(path, "re");
    if (!fp) {
        conf_fail_raw(p, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
    p->fp = fp;
    r = ini_parse_stream(conf_reader, p, conf_on_key, p);
    p->fp = NULL;
    fclose(fp);
    explicit_bzero(iobuf, sizeof(iobuf));
    if (r == -2) {
        return conf_oom(p);
    }
    if (r > 0 && (!p->failed || (p->fail_line > 0 && r < p->fail_line))) {
        /* The reader reports every line inih rejects, so this is a safety net. */
        p->failed = 0;
        conf_fail_at(p, conf_line(p, r), "syntax error");
    }
    return p->failed ? -1 : 0;
}

/* ---- the environment ------------------------------------------------------------------- */

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
    r = conf_apply(p, conf_find_key(s, key), v, strlen(v));
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

static int conf_load_env(struct parse *p)
{
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
        {"RELAY25_METRICS_LISTEN", SECT_RELAY, "metrics_listen"},
        /* RELAY25_USER is the upstream login, so the account to run as has its own name */
        {"RELAY25_RUN_AS", SECT_RELAY, "user"},
        {"RELAY25_MAX_CONNECTIONS", SECT_RELAY, "max_connections"},
        {"RELAY25_MAX_CONNECTIONS_PER_IP", SECT_RELAY, "max_connections_per_ip"},
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
        {"RELAY25_SUBMIT", SECT_SENDMAIL, "submit"},
        {"RELAY25_TLS", SECT_UPSTREAM, "tls"},
        {"RELAY25_SERVER_NAME", SECT_UPSTREAM, "server_name"},
        {"RELAY25_CA_FILE", SECT_UPSTREAM, "ca_file"},
        {"RELAY25_TLS_VERIFY", SECT_UPSTREAM, "tls_verify"},
        {"RELAY25_USER", SECT_DEVICE, "user"},
        {"RELAY25_PASSWORD_FILE", SECT_DEVICE, "password_file"},
    };
    const char *up = conf_getenv("RELAY25_UPSTREAM");
    const char *port;
    char host[CONF_NAME_MAX + 1];

    if (!up) {
        conf_fail_raw(p, "no configuration: give -c FILE or set RELAY25_UPSTREAM");
        return -1;
    }
    if (conf_new_upstream(p, "default", 7, 0) != 0 || conf_new_device(p, "default", 7, 0) != 0) {
        return -1;
    }
    p->var = "RELAY25_UPSTREAM";
    if (conf_split_upstream(up, host, sizeof(host), &port) != 0) {
        conf_fail_at(p, conf_line(p, 0), "bad upstream '%s' (expected host:port)", up);
        return -1;
    }
    p->sect = SECT_UPSTREAM;
    p->cur = 0;
    if (conf_apply(p, conf_find_key(SECT_UPSTREAM, "host"), host, strlen(host)) != 0 ||
        (port && conf_apply(p, conf_find_key(SECT_UPSTREAM, "port"), port, strlen(port)) != 0)) {
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
        if (conf_apply(p, conf_find_key(SECT_DEVICE, "password_env"), "RELAY25_PASSWORD", 16)) {
            return -1;
        }
        p->var = NULL;
    }
    if (!p->c->devices[0].user) {
        p->var = "RELAY25_USER";
        conf_fail_at(p, conf_line(p, 0), "not set (the login for RELAY25_UPSTREAM)");
        return -1;
    }
    if (p->dx[0].pw == PW_NONE) {
        conf_fail_raw(p, "set RELAY25_PASSWORD or RELAY25_PASSWORD_FILE");
        return -1;
    }
    p->sect = SECT_NONE;
    return 0;
}

/* ---- checks that need the whole file, defaults, secrets, trust anchors ------------------ */

static int conf_default_hostname(struct parse *p)
{
    char buf[CONF_NAME_MAX + 1];

    if (gethostname(buf, sizeof(buf)) != 0) {
        buf[0] = '\0';
    }
    buf[sizeof(buf) - 1] = '\0';
    p->c->hostname = conf_strdup(p, conf_valid_name(buf) ? buf : "localhost");
    return p->c->hostname ? 0 : -1;
}

/* Line of [relay] key `name`, 0 when it was not set. */
static int conf_relay_seen(const struct parse *p, const char *name)
{
    return p->relay_seen[conf_find_key(SECT_RELAY, name) - conf_keys];
}

/* retry_max < retry_min is reported at whichever of the two keys comes later (the
 * one that made the pair wrong), or at [relay]. */
static struct where conf_retry_where(const struct parse *p)
{
    int lmin = conf_relay_seen(p, "retry_min");
    int lmax = conf_relay_seen(p, "retry_max");
    struct where w = {p->relay_line, NULL, NULL};

    if (lmin > 0 || lmax > 0) {
        w.line = lmax > lmin ? lmax : lmin;
        w.key = lmax > lmin ? "retry_max" : "retry_min";
    }
    return w;
}

static int conf_finish_relay(struct parse *p)
{
    struct conf *c = p->c;

    if (p->listen_given && c->nlisten == 0) {
        conf_fail_at(p, p->listen_at, "empty list");
        return -1;
    }
    if (p->allow_given && c->nallow == 0) {
        conf_fail_at(p, p->allow_at, "empty list");
        return -1;
    }
    if (!p->listen_given && conf_add_listen(p, CONF_DEFAULT_LISTEN) != 0) {
        return -1;
    }
    if (!p->allow_given &&
        (conf_add_allow(p, "127.0.0.0/8") != 0 || conf_add_allow(p, "::1/128") != 0)) {
        return -1;
    }
    if (c->proxy_protocol && c->nproxy_from == 0) {
        conf_fail_at(p, p->proxy_at,
                     "proxy_protocol = yes needs proxy_from = the load balancer's addresses");
        return -1;
    }
    if (c->retry_max < c->retry_min) {
        conf_fail_at(p, conf_retry_where(p), "retry_max (%us) is less than retry_min (%us)",
                     c->retry_max, c->retry_min);
        return -1;
    }
    if (!c->spool_dir && !(c->spool_dir = conf_strdup(p, CONF_DEFAULT_SPOOL_DIR))) {
        return -1;
    }
    if (!c->hostname) {
        return conf_default_hostname(p);
    }
    return 0;
}

static int conf_finish_upstreams(struct parse *p)
{
    struct conf *c = p->c;

    if (c->nupstreams == 0) {
        conf_fail_at(p, conf_line(p, p->lineno > 0 ? p->lineno : 1),
                     "no [upstream NAME] section: relay25 needs one to send mail through");
        return -1;
    }
    for (size_t i = 0; i < c->nupstreams; i++) {
        struct conf_upstream *u = &c->upstreams[i];
        struct up_extra *x = &p->ux[i];

        if (!u->host) {
            conf_fail_at(p, conf_line(p, u->line), "[upstream %s] has no host", u->name);
            return -1;
        }
        /* Port 465 is implicit TLS (RFC 8314 §3.3); 587 is submission with STARTTLS. */
        if (!x->tls_given) {
            u->tls = x->port_given && u->port == CONF_IMPLICIT_PORT ? CONF_TLS_IMPLICIT
                                                                    : CONF_TLS_STARTTLS;
        }
        if (!x->port_given) {
            u->port = u->tls == CONF_TLS_IMPLICIT ? CONF_IMPLICIT_PORT : CONF_DEFAULT_PORT;
        }
        if (!u->server_name && !(u->server_name = conf_strdup(p, u->host))) {
            return -1;
        }
        if (!u->ca_file && !(u->ca_file = conf_strdup(p, CONF_DEFAULT_CA))) {
            return -1;
        }
    }
    return 0;
}

static int conf_copy_patterns(struct parse *p, struct conf_patterns *dst,
                              const struct conf_patterns *src)
{
    if (src->n == 0) {
        return 0;
    }
    dst->items = calloc(src->n, sizeof(*dst->items));
    if (!dst->items) {
        return conf_oom(p);
    }
    for (; dst->n < src->n; dst->n++) {
        dst->items[dst->n] = conf_strdup(p, src->items[dst->n]);
        if (!dst->items[dst->n]) {
            return -1;
        }
    }
    return 0;
}

/* Whether [device] key `name` was set in device i's section. */
static int conf_dev_given(const struct parse *p, size_t i, const char *name)
{
    size_t idx = (size_t)(conf_find_key(SECT_DEVICE, name) - conf_keys);

    return (int)((p->dx[i].keys[idx / 64] >> (idx % 64)) & 1u);
}

/* A device that does not set a policy or delivery key gets the [relay] value. */
static int conf_inherit_policy(struct parse *p, size_t i)
{
    const struct conf *c = p->c;
    struct conf_device *d = &c->devices[i];

    if (!conf_dev_given(p, i, "mode")) {
        d->mode = c->mode;
    }
    if (!conf_dev_given(p, i, "on_upstream_failure")) {
        d->on_failure = c->on_failure;
    }
    if (!conf_dev_given(p, i, "auth_mechanisms")) {
        memcpy(d->auth_mechanisms, c->auth_mechanisms, sizeof(d->auth_mechanisms));
    }
    if (!conf_dev_given(p, i, "message_rate")) {
        d->message_rate = c->message_rate;
    }
    if (!conf_dev_given(p, i, "recipient_rate")) {
        d->recipient_rate = c->recipient_rate;
    }
    if (!conf_dev_given(p, i, "allowed_senders") &&
        conf_copy_patterns(p, &d->allowed_senders, &c->allowed_senders) != 0) {
        return -1;
    }
    if (!conf_dev_given(p, i, "allowed_recipients") &&
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
        conf_fail_at(p, x->upstream_at, "empty list");
        return -1;
    }
    if (!x->upstream_given && c->nupstreams != 1) {
        conf_fail_at(p, conf_line(p, d->line),
                     "[%s %s] needs upstream = NAME (there are %zu upstreams)", sect, d->name,
                     c->nupstreams);
        return -1;
    }
    d->ups = calloc(n, sizeof(*d->ups));
    if (!d->ups) {
        return conf_oom(p);
    }
    if (!x->upstream_given) {
        d->ups[d->nups++] = &c->upstreams[0];
    }
    for (size_t j = 0; j < x->nups; j++) {
        const struct conf_upstream *u = conf_find_upstream(c, x->ups[j].name);

        if (!u) {
            conf_fail_at(p, x->ups[j].at, "no [upstream %s] for [%s %s]", x->ups[j].name, sect,
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
                conf_fail_at(p, at[k],
                             "only used with auth = xoauth2 or oauthbearer (in [device %s])",
                             d->name);
                return -1;
            }
        }
        return 0;
    }
    if (x->pw != PW_NONE) {
        conf_fail_at(p, x->pw_at, "not used with auth = xoauth2 (an OAuth2 token replaces it)");
        return -1;
    }
    if (at[OK_TOKEN_COMMAND].key) {
        for (size_t k = 0; k < OK_TOKEN_COMMAND; k++) {
            if (at[k].key) {
                conf_fail_at(p, at[k],
                             "not used with oauth_token_command (the command gets "
                             "the token)");
                return -1;
            }
        }
        o->grant = CONF_OAUTH_COMMAND;
        return 0;
    }
    if (!at[OK_TOKEN_URL].key || !at[OK_CLIENT_ID].key) {
        conf_fail_at(p, x->auth_at,
                     "[device %s] needs oauth_token_url and oauth_client_id (or "
                     "oauth_token_command)",
                     d->name);
        return -1;
    }
    if (o->grant == CONF_OAUTH_CLIENT_CREDENTIALS) {
        if (at[OK_REFRESH_TOKEN_FILE].key) {
            conf_fail_at(p, at[OK_REFRESH_TOKEN_FILE],
                         "not used with oauth_grant = client_credentials");
            return -1;
        }
        if (x->oauth_secret == PW_NONE) {
            conf_fail_at(p, at[OK_GRANT],
                         "client_credentials needs oauth_client_secret_file or "
                         "oauth_client_secret_env");
            return -1;
        }
    } else if (!at[OK_REFRESH_TOKEN_FILE].key) {
        conf_fail_at(p, at[OK_GRANT].key ? at[OK_GRANT] : x->auth_at,
                     "[device %s] needs oauth_refresh_token_file (or oauth_grant = "
                     "client_credentials, or oauth_token_command)",
                     d->name);
        return -1;
    }
    return 0;
}

static int conf_finish_devices(struct parse *p)
{
    struct conf *c = p->c;

    if (c->ndevices == 0) {
        conf_fail_at(p, conf_line(p, p->lineno > 0 ? p->lineno : 1),
                     "no [device NAME] section: add [device default] with user and "
                     "password_file");
        return -1;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        struct conf_device *d = &c->devices[i];
        struct dev_extra *x = &p->dx[i];
        struct where sec = conf_line(p, d->line);

        if (!d->user) {
            conf_fail_at(p, sec, "[device %s] has no user", d->name);
            return -1;
        }
        if (conf_check_oauth(p, i) != 0) {
            return -1;
        }
        if (x->pw == PW_NONE && d->auth == CONF_AUTH_PASSWORD) {
            conf_fail_at(p, sec,
                         "[device %s] needs exactly one of password_file, password_env, "
                         "password",
                         d->name);
            return -1;
        }
        if (!d->is_default && d->nmatch == 0 && !d->login) {
            conf_fail_at(p, x->match_given ? x->match_at : sec,
                         "[device %s] has no match (only [device default] or a device with "
                         "login may omit it)",
                         d->name);
            return -1;
        }
        if (conf_resolve_upstreams(p, d, x, "device") != 0 || conf_inherit_policy(p, i) != 0) {
            return -1;
        }
        if (d->rewrite_from_header && !d->rewrite_sender) {
            conf_fail_at(p, sec, "[device %s] has rewrite_from_header but no rewrite_sender",
                         d->name);
            return -1;
        }
    }
    return 0;
}

static int conf_finish_routes(struct parse *p)
{
    struct conf *c = p->c;

    for (size_t i = 0; i < c->nroutes; i++) {
        struct conf_route *r = &c->routes[i];
        struct dev_extra *x = &p->rx[i];
        struct where sec = conf_line(p, r->line);

        if (r->senders.n == 0) {
            conf_fail_at(p, sec, "[route %s] needs senders = PATTERN, ...", r->cred.name);
            return -1;
        }
        if (!x->upstream_given) {
            conf_fail_at(p, sec, "[route %s] needs upstream = NAME", r->cred.name);
            return -1;
        }
        if (!r->cred.user) {
            conf_fail_at(p, sec, "[route %s] has no user", r->cred.name);
            return -1;
        }
        if (x->pw == PW_NONE) {
            conf_fail_at(p, sec,
                         "[route %s] needs exactly one of password_file, password_env, password",
                         r->cred.name);
            return -1;
        }
        if (conf_resolve_upstreams(p, &r->cred, x, "route") != 0) {
            return -1;
        }
        for (size_t j = 0; j < r->ndevices; j++) {
            size_t k = 0;

            while (k < c->ndevices && strcmp(c->devices[k].name, r->devices[j]) != 0) {
                k++;
            }
            if (k == c->ndevices) {
                conf_fail_at(p, sec, "no [device %s] for [route %s]", r->devices[j], r->cred.name);
                return -1;
            }
        }
    }
    return 0;
}

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
            conf_fail_at(p, x->oauth_secret_at, "%s", msg);
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
            conf_fail_at(p, x->oauth_at[OK_REFRESH_TOKEN_FILE], "%s", msg);
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
            conf_fail_at(p, x->pw_at,
                         "password_credential needs $CREDENTIALS_DIRECTORY (systemd "
                         "LoadCredential=)");
            return -1;
        }
        if (snprintf(path, sizeof(path), "%s/%s", dir, x->pw_arg) >= (int)sizeof(path)) {
            conf_fail_at(p, x->pw_at, "credential path too long");
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
        conf_fail_at(p, x->pw_at, "%s", msg);
        return -1;
    }
    return 0;
}

/* Secrets are read now, at load time, so a missing one stops startup or reload. */
static int conf_load_secrets(struct parse *p)
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
static int conf_load_users(struct parse *p, struct where w)
{
    struct conf *c = p->c;
    FILE *f = fopen(c->users_file, "r");
    char line[1024];
    int n = 0;

    if (!f) {
        conf_fail_at(p, w, "cannot read users_file %s: %s", c->users_file, strerror(errno));
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
            conf_fail_at(p, w, "users_file %s:%d: expected login:$hash (relay25 passwd LOGIN)",
                         c->users_file, n);
            goto fail;
        }
        *colon = '\0';
        for (size_t i = 0; i < c->nusers; i++) {
            if (strcmp(c->users[i].login, line) == 0) {
                conf_fail_at(p, w, "users_file %s:%d: login '%s' is listed twice", c->users_file, n,
                             line);
                goto fail;
            }
        }
        if (!(a = conf_grow(c->users, c->nusers, sizeof(*a)))) {
            conf_oom(p);
            goto fail;
        }
        c->users = a;
        a[c->nusers].login = conf_strdup(p, line);
        a[c->nusers].hash = conf_strdup(p, colon + 1);
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

/* Inbound TLS and AUTH: keys that only make sense together, the users file,
 * and (load_ca) the certificate and key. */
static int conf_finish_inbound(struct parse *p, int load_ca)
{
    struct conf *c = p->c;
    int lcert = p->relay_seen[conf_find_key(SECT_RELAY, "tls_cert_file") - conf_keys];
    int lkey = p->relay_seen[conf_find_key(SECT_RELAY, "tls_key_file") - conf_keys];
    int llisten = p->relay_seen[conf_find_key(SECT_RELAY, "tls_listen") - conf_keys];
    int lusers = p->relay_seen[conf_find_key(SECT_RELAY, "users_file") - conf_keys];

    if (c->tls_min_version == 0) {
        c->tls_min_version = BR_TLS12;
    }
    if (!c->tls_cert_file != !c->tls_key_file) {
        conf_fail_at(p, conf_line(p, lcert ? lcert : lkey),
                     "tls_cert_file and tls_key_file go together");
        return -1;
    }
    if (c->ntls_listen > 0 && !c->tls_cert_file) {
        conf_fail_at(p, conf_line(p, llisten), "tls_listen needs tls_cert_file and tls_key_file");
        return -1;
    }
    if (c->ntls_listen > 0 && c->proxy_protocol) {
        conf_fail_at(p, conf_line(p, llisten), "tls_listen does not take PROXY protocol headers");
        return -1;
    }
    if (c->users_file) {
        if (!c->tls_cert_file && !c->allow_plaintext_auth) {
            conf_fail_at(p, conf_line(p, lusers),
                         "users_file needs tls_cert_file/tls_key_file (AUTH is offered over TLS) "
                         "or allow_plaintext_auth = yes");
            return -1;
        }
        if (conf_load_users(p, conf_line(p, lusers)) != 0) {
            return -1;
        }
    }
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
            conf_fail_at(p, conf_line(p, d->line), "[device %s]: login '%s' is not in users_file",
                         d->name, d->login);
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (c->devices[k].login && strcmp(c->devices[k].login, d->login) == 0) {
                conf_fail_at(p, conf_line(p, d->line),
                             "[device %s]: login '%s' is already used by [device %s]", d->name,
                             d->login, c->devices[k].name);
                return -1;
            }
        }
    }
    if (load_ca && c->tls_cert_file) {
        char msg[512];
        c->tls_cert = tls_cert_load(c->tls_cert_file, c->tls_key_file, msg, sizeof(msg));
        if (!c->tls_cert) {
            conf_fail_at(p, conf_line(p, lcert), "%s", msg);
            return -1;
        }
    }
    return 0;
}

static int conf_load_cas(struct parse *p)
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
            conf_fail_at(p, w, "[upstream %s]: %s", u->name, msg);
            return -1;
        }
    }
    return 0;
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

/* ---- public ---------------------------------------------------------------------------- */

struct conf *conf_load(const char *path, int load_ca, char *err, size_t errlen)
{
    struct parse p;
    struct conf *c;

    memset(&p, 0, sizeof(p));
    p.err = err;
    p.errlen = errlen;
    p.login = (load_ca & CONF_LOAD_LOGIN) != 0;
    load_ca &= ~CONF_LOAD_LOGIN;
    if (err && errlen) {
        err[0] = '\0';
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        conf_oom(&p);
        return NULL;
    }
    p.c = c;
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
    c->max_connections_per_ip = 20;
    c->max_recipients = 1000;
    c->max_header_size = 1ull << 20;
    c->max_errors = 20;
    c->max_commands_before_mail = 100;
    c->max_messages_per_session = 1000;
    c->session_timeout = 3600;
    c->mode = CONF_MODE_PASSTHROUGH;
    c->on_failure = CONF_ON_FAILURE_REJECT;
    c->max_spool_size = 0; /* unlimited */
    c->max_queue_age = 3u * 86400u;
    c->retry_min = 60;
    c->retry_max = 3600;
    c->bounce = CONF_BOUNCE_DSN;
    /* rates unlimited ({0, 0}), lists empty, user NULL, log to stderr as text: calloc */

    if (path) {
        c->path = conf_strdup(&p, path);
        if (!c->path) {
            goto fail;
        }
        p.file = c->path;
        if (conf_load_file(&p, path) != 0) {
            goto fail;
        }
    } else if (conf_load_env(&p) != 0) {
        goto fail;
    }
    if (conf_finish_relay(&p) != 0 || conf_finish_upstreams(&p) != 0 ||
        conf_finish_devices(&p) != 0 || conf_finish_routes(&p) != 0 || conf_load_secrets(&p) != 0) {
        goto fail;
    }
    if (conf_finish_inbound(&p, load_ca) != 0) {
        goto fail;
    }
    if (load_ca && conf_load_cas(&p) != 0) {
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
    conf_free_argv(o->argv);
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
        free(u->ca_file);
        free(u->server_name);
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
    conf_free_patterns(&c->allowed_senders);
    conf_free_patterns(&c->allowed_recipients);
    free(c->user);
    free(c->submit);
    free(c->spool_dir);
    free(c->path);
    free(c);
}

int conf_parse_rate(const char *s, struct conf_rate *out)
{
    static const struct {
        const char *unit;
        unsigned seconds;
    } units[] = {{"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400}};
    const char *slash = strchr(s, '/');
    char digits[16];
    uint64_t v;
    size_t n;

    if (strcmp(s, "0") == 0 || strcmp(s, "unlimited") == 0) {
        out->count = 0;
        out->per_seconds = 0;
        return 0;
    }
    if (!slash) {
        return -1;
    }
    n = (size_t)(slash - s);
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    /* "0/minute" would read as "never"; a count of 0 is spelled "0" or "unlimited" */
    if (conf_parse_uint(digits, CONF_MAX_COUNT, &v) != 0 || v == 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(slash + 1, units[i].unit) == 0) {
            out->count = (unsigned)v;
            out->per_seconds = units[i].seconds;
            return 0;
        }
    }
    return -1;
}

/* Patterns are "<>" (the null sender), "local@domain" (whole address), "@domain" or
 * "domain" (any local part at exactly that domain: not its subdomains). The null
 * sender "" (MAIL FROM:<>, RFC 5321 §4.5.5 bounces) matches only "<>", so a
 * non-empty allowed_senders refuses bounces unless it lists "<>". The domain is
 * taken after the last '@'. ASCII case-insensitive throughout. */
int conf_patterns_match(const struct conf_patterns *p, const char *addr)
{
    const char *at = strrchr(addr, '@');

    if (!p || p->n == 0) {
        return 1;
    }
    for (size_t i = 0; i < p->n; i++) {
        const char *item = p->items[i];
        const char *iat = strchr(item, '@');

        if (strcmp(item, "<>") == 0) {
            if (!*addr) {
                return 1;
            }
        } else if (!*addr) {
            continue;
        } else if (!iat || iat == item) {
            if (at && strcasecmp(at + 1, iat ? item + 1 : item) == 0) {
                return 1;
            }
        } else if (strcasecmp(item, addr) == 0) {
            return 1;
        }
    }
    return 0;
}

const struct conf_route *conf_route_for(const struct conf *c, const struct conf_device *d,
                                        const char *sender)
{
    for (size_t i = 0; c && d && i < c->nroutes; i++) {
        const struct conf_route *r = &c->routes[i];
        size_t j = 0;

        while (j < r->ndevices && strcmp(r->devices[j], d->name) != 0) {
            j++;
        }
        if ((r->ndevices == 0 || j < r->ndevices) && conf_patterns_match(&r->senders, sender)) {
            return r;
        }
    }
    return NULL;
}

const struct conf_route *conf_route_find(const struct conf *c, const char *name)
{
    for (size_t i = 0; c && i < c->nroutes; i++) {
        if (strcmp(c->routes[i].cred.name, name) == 0) {
            return &c->routes[i];
        }
    }
    return NULL;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    char digits[24];
    size_t n = strlen(s);
    unsigned shift = 0;
    uint64_t v;

    if (n > 0) {
        switch (s[n - 1]) {
        case 'K':
        case 'k':
            shift = 10;
            break;
        case 'M':
        case 'm':
            shift = 20;
            break;
        case 'G':
        case 'g':
            shift = 30;
            break;
        default:
            break;
        }
    }
    if (shift) {
        n--;
    }
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (conf_parse_uint(digits, UINT64_MAX >> shift, &v) != 0) {
        return -1;
    }
    *out = v << shift;
    return 0;
}

int conf_parse_hostport(const char *s, uint16_t defport, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    char addr[INET6_ADDRSTRLEN];
    const char *a = s, *e, *port = NULL;
    int v6;
    uint64_t pv = defport;

    if (*s == '[') {
        a = s + 1;
        e = strchr(a, ']');
        if (!e || (e[1] && e[1] != ':')) {
            return -1;
        }
        if (e[1] == ':') {
            port = e + 2;
        }
        v6 = 1;
    } else {
        const char *colon = strchr(s, ':');

        if (colon && strchr(colon + 1, ':')) {
            e = s + strlen(s); /* bare IPv6 address, default port */
            v6 = 1;
        } else {
            e = colon ? colon : s + strlen(s);
            port = colon ? colon + 1 : NULL;
            v6 = 0;
        }
    }
    if (e == a || (size_t)(e - a) >= sizeof(addr)) {
        return -1;
    }
    memcpy(addr, a, (size_t)(e - a));
    addr[e - a] = '\0';
    if (port && conf_parse_uint(port, 65535, &pv) != 0) {
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1) {
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pv);
        *len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
            return -1;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pv);
        *len = sizeof(*sin);
    }
    return 0;
}
