/* conf_int: what the parts of conf/ share and nothing else includes: the parse
 * state conf_load() threads through the file reader, the environment loader, the
 * key setters, the cross-checks and the secret loaders, and their entry points.
 * Shared helpers carry the conf__ prefix (STYLE.md §3). */
#ifndef RELAY25_CONF_INT_H
#define RELAY25_CONF_INT_H

#include <stdint.h>
#include <stdio.h>

#include "conf/conf.h"

#define CONF_MAX_COUNT 1000000u /* limits and rate counts; larger values are typos */
#define CONF_NAME_MAX 255 /* host names, server_name, hostname (RFC 1035 §2.3.4 plus slack) */
/* inih copies section and key names into 50-byte buffers (MAX_SECTION, MAX_NAME). */
#define INI_NAME_MAX 49
#define CONF_MAX_KEYS 128 /* dev_extra.keys is a bit mask of key indexes */

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

/* Where a value came from, for messages: a file line (and key) or a variable. */
struct where {
    int line;
    const char *var;
    const char *key;
};

struct conf_preset;

struct up_extra {
    int port_given;
    int tls_given;
    int conn_given;                   /* max_connections */
    const struct conf_preset *preset; /* provider = NAME, NULL if not set */
    char preset_arg[64];              /* "eu-west-1" of ses:eu-west-1, "" if none */
    struct where provider_at;
    int host_given;        /* host =, port =, tls =: not with type = graph */
    struct where graph_at; /* graph_url = */
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
    int failed;       /* errors recorded so far (all are reported, up to CONF_MAX_ERRORS) */
    int fatal;        /* the file cannot be read further (NUL byte, overlong line, I/O) */
    int skip_section; /* the section header was refused: its keys are skipped silently */
    size_t errused;   /* bytes of err in use */
    int fail_line;    /* file line of the first recorded error, 0 if none */
    int login;        /* CONF_LOAD_LOGIN: a missing refresh-token file is no error */
    int strict;       /* CONF_LOAD_STRICT: hints; duplicate match is an error */
    int others_read;  /* the file is readable by others (S_IROTH) */
    int inline_line;  /* first file line with an inline password, 0 if none */

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

    int listen_given, allow_given, exempt_given;
    struct where listen_at, allow_at;
    struct where proxy_at; /* proxy_protocol = yes */

    struct up_extra *ux;  /* parallel to c->upstreams */
    struct dev_extra *dx; /* parallel to c->devices */
    struct dev_extra *rx; /* parallel to c->routes: a route's upstream and password keys */
};

/* ---- conf.c: errors (each on its own line, the first first) and allocation ---- */

#define CONF_MAX_ERRORS 20 /* after that, one line says more were left out */

void conf__fail_raw(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void conf__fail_at(struct parse *p, struct where w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The key being set: "file:line: key: ..." or "VAR: ...". */
struct where conf__here(const struct parse *p);
/* A whole line or section: "file:line: ..." or "VAR: ...". */
struct where conf__line(const struct parse *p, int line);
int conf__oom(struct parse *p);
/* Room for one more element at index n, zeroed; NULL (arr untouched) on overflow or OOM. */
void *conf__grow(void *arr, size_t n, size_t elem);
char *conf__strdup(struct parse *p, const char *s);

/* ---- conf_value.c: pure value parsers ---- */

/* Decimal digits only, no sign or blanks, at most max. */
int conf__parse_uint(const char *s, uint64_t max, uint64_t *out);
/* Durations: "90" or "90s", "15m", "12h", "3d" (lower case, no blanks), 1 to max seconds. */
int conf__parse_duration(const char *s, unsigned max, unsigned *out);
int conf__parse_bool(const char *s);
/* Host names, hostname, server_name: printable, no blanks (they go into SMTP lines). */
int conf__valid_name(const char *s);
int conf__valid_section_name(const char *s, size_t len);
int conf__valid_env_name(const char *s);
/* Why item is not a valid policy pattern, or NULL. Only the forms conf_patterns_match
 * understands are accepted, so a typo cannot become a pattern that never matches.
 * Quoted local parts containing '@' or blanks (RFC 5321 §4.1.2) are not supported. */
const char *conf__bad_pattern(const char *item, int senders);
/* No control characters: values end up in an HTTP request. */
int conf__valid_text(const char *s);
/* "https://host[:port][/path][?query]" (RFC 3986 §3) into o->host, o->port and
 * o->path. Returns NULL, or why the URL is refused. */
const char *conf__parse_url(const char *url, struct conf_oauth *o);
/* type = graph: graph_url (default Graph's global endpoint) into u's host, port
 * and graph_path. 0, or -1 with the error reported (conf_keys_oauth.c). */
int conf__graph_endpoint(struct parse *p, struct conf_upstream *u);

/* ---- key setters shared by conf_keys.c's table and the files that hold them ---- */
/* The field the current key sets (kd->off into its device, route or struct conf). */
void *conf__field(const struct parse *p);
/* A keyword value: val's index in words (n of them), or -1 after an error listing them. */
int conf__keyword(struct parse *p, const char *val, const char *const *words, size_t n);
/* conf_keys_oauth.c: the oauth_* keys of [device], type and graph_url of [upstream] */
conf_set_fn conf__set_oauth_url, conf__set_oauth_device_url, conf__set_oauth_text,
    conf__set_oauth_secret_file, conf__set_oauth_secret_env, conf__set_oauth_refresh_file,
    conf__set_oauth_grant, conf__set_oauth_command, conf__set_up_type, conf__set_graph_url;
/* Frees a NULL-terminated word list from conf__split_words (NULL is fine). */
void conf__free_argv(char **argv);
/* Words of a command line: blanks separate, '...' and "..." quote, a backslash
 * escapes the next character (not inside '...'). No shell: no variables, globs or
 * pipes. Returns NULL with *out set, or why the line is refused. */
const char *conf__split_words(const char *s, char ***out);

/* ---- conf_keys.c: sections, the key table and its setters ---- */

/* "[upstream gmail]" for the section being parsed. */
const char *conf__label(const struct parse *p, char *buf, size_t cap);
int conf__add_listen(struct parse *p, const char *item);
int conf__add_allow(struct parse *p, const char *item);
int conf__add_exempt(struct parse *p, const char *item); /* max_connections_per_ip_exempt */
int conf__new_upstream(struct parse *p, const char *name, size_t len, int line);
int conf__new_device(struct parse *p, const char *name, size_t len, int line);
/* A "[...]" line (text between the brackets): "relay", "sendmail", "upstream NAME",
 * "device NAME". */
int conf__section(struct parse *p, const char *text, size_t len);
const struct key_def *conf__find_key(enum sect s, const char *name);
/* Applies one key; line > 0 in a file, the variable in p->var otherwise. */
int conf__apply(struct parse *p, const struct key_def *kd, const char *val, size_t len);
/* Line of [relay] key `name`, 0 when it was not set. */
int conf__relay_seen(const struct parse *p, const char *name);
/* Whether [device] key `name` was set in device i's section. */
int conf__dev_given(const struct parse *p, size_t i, const char *name);

/* Levenshtein distance between a and b, capped at 9 (for "did you mean"). */
unsigned conf__distance(const char *a, const char *b);
/* "did you mean 'password_file'?" or "'ca_file' belongs in [upstream NAME]" for an
 * unknown key in section s, into buf ("" when nothing is close). */
void conf__key_hint(enum sect s, const char *name, char *buf, size_t cap);

/* ---- conf_preset.c: provider = NAME in [upstream NAME] ---- */

/* The preset for "gmail", "ses:eu-west-1", "m365:contoso.onmicrosoft.com" (the part after
 * ':' copied into arg), or NULL with why in msg. */
const struct conf_preset *conf__preset_find(const char *value, char *arg, size_t cap, char *msg,
                                            size_t msgcap);
/* 1 for a preset of a type = graph upstream (m365-graph), else 0 (pr may be NULL). */
int conf__preset_is_graph(const struct conf_preset *pr);
/* Upstream i's host, port, tls and max_connections from its preset, where not set. */
int conf__preset_upstream(struct parse *p, size_t i);
/* Device i's auth_mechanisms (password logins) and OAuth2 endpoints and scope (auth =
 * xoauth2/oauthbearer) from its first upstream's preset, where not set. Before
 * conf_check_oauth, so a preset endpoint satisfies it. */
int conf__preset_device(struct parse *p, size_t i);
/* The device's auth_mechanisms after [relay]'s were inherited. */
int conf__preset_mechs(struct parse *p, size_t i);
/* Names of all presets, ", "-separated, into buf, for messages. */
const char *conf__preset_names(char *buf, size_t cap);

/* ---- conf_warn.c: likely mistakes that still load ---- */

/* Adds a warning to the snapshot; line 0: no line. */
int conf__warn(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* All the checks of conf_warn.c; and log = syslog without a syslog socket falls back
 * to stderr here, so the decision is made (and shown by `check`) where config is read. */
int conf__warnings(struct parse *p);

/* ---- conf_ini.c: the INI file ---- */

/* Reads path through inih, applying each key as it comes; the first error wins. */
int conf__load_file(struct parse *p, const char *path);

/* ---- conf_env.c: the RELAY25_* environment ---- */

/* Builds [upstream default] and [device default] from RELAY25_UPSTREAM and friends. */
int conf__load_env(struct parse *p);
/* The i-th RELAY25_* variable relay25 reads, NULL after the last. */
const char *conf__env_var(size_t i);

/* ---- conf_check.c: checks across keys and sections, defaults that depend on them ---- */

int conf__finish_relay(struct parse *p);
int conf__finish_upstreams(struct parse *p);
int conf__finish_devices(struct parse *p);
int conf__finish_routes(struct parse *p);
/* Inbound TLS and AUTH: keys that only make sense together. */
int conf__check_inbound(struct parse *p);
/* Device logins against the loaded users_file. */
int conf__check_logins(struct parse *p);

/* ---- conf_secret.c: secrets, users, certificate and trust anchors read at load time ---- */

/* Secrets are read now, at load time, so a missing one stops startup or reload. */
int conf__load_secrets(struct parse *p);
/* users_file: "login:hash" lines (crypt(3) strings), blank lines and # comments. */
int conf__load_users(struct parse *p);
/* The inbound certificate and key, when tls_cert_file is set. */
int conf__load_tls_cert(struct parse *p);
/* Each upstream's ca_file, read once per distinct path. */
int conf__load_cas(struct parse *p);

#endif
