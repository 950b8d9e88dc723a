/* conf: the relay's configuration snapshot, parsed from one INI file (inih) or,
 * when no file is given, from RELAY25_* environment variables. Validation
 * errors name the file and line. The snapshot is immutable after conf_load(). */
#ifndef RELAY25_CONF_H
#define RELAY25_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cidr.h"

struct tls_ca;
struct tls_cert;

/* One users_file entry (inbound AUTH). */
struct conf_user {
    char *login;
    char *hash; /* crypt(3) string, e.g. "$y$j9T$..." */
};

enum conf_tls {
    CONF_TLS_STARTTLS, /* 587 / 2525: EHLO, STARTTLS, EHLO */
    CONF_TLS_IMPLICIT, /* 465: TLS from the first byte */
};

/* What happens to a message (issue: durable spool). */
enum conf_mode {
    CONF_MODE_PASSTHROUGH, /* upstream's verdict is the client's (default) */
    CONF_MODE_SPOOL,       /* stored durably, 250 with a queue id, delivered in the background */
};

/* rate_limit_by: whose events a device's message_rate and recipient_rate count */
enum conf_rate_by {
    CONF_RATE_BY_ADDRESS, /* each client address of the device its own buckets (default) */
    CONF_RATE_BY_DEVICE,  /* one pair of buckets for all the device's clients */
};

enum conf_on_failure {
    CONF_ON_FAILURE_REJECT, /* passthrough: upstream trouble is a 4xx to the client (default) */
    CONF_ON_FAILURE_QUEUE,  /* passthrough: on connect/TLS/AUTH failure or a 4xx, spool instead */
};

enum conf_bounce {
    CONF_BOUNCE_DSN,  /* RFC 3464 report to the envelope sender (default) */
    CONF_BOUNCE_KEEP, /* move the message to the spool's failed area */
    CONF_BOUNCE_DROP, /* only log */
};

enum conf_bare_lf {
    CONF_BARE_LF_NORMALIZE, /* bare LF / CR sent upstream as CRLF */
    CONF_BARE_LF_REJECT,    /* message refused with 554 5.6.0 */
};

/* How a device logs in upstream (issue: OAuth2 for Microsoft 365). */
enum conf_auth {
    CONF_AUTH_PASSWORD,    /* PLAIN, LOGIN or CRAM-MD5 with the password (default) */
    CONF_AUTH_XOAUTH2,     /* XOAUTH2 with an OAuth2 access token (upstream/up_oauth.c) */
    CONF_AUTH_OAUTHBEARER, /* OAUTHBEARER (RFC 7628), same tokens as xoauth2 */
};

/* SASL mechanisms for `auth_mechanisms = ...` (upstream AUTH), in preference order. */
enum conf_mech {
    CONF_MECH_END, /* ends the list; an empty list is the default order */
    CONF_MECH_XOAUTH2,
    CONF_MECH_OAUTHBEARER,
    CONF_MECH_CRAM_MD5,
    CONF_MECH_PLAIN,
    CONF_MECH_LOGIN,
};
#define CONF_MAX_MECHS 8 /* room for every mechanism once, and the end mark */

/* Where a device's access tokens come from. */
enum conf_oauth_grant {
    CONF_OAUTH_REFRESH_TOKEN,      /* oauth_refresh_token_file: RFC 6749 §6 */
    CONF_OAUTH_CLIENT_CREDENTIALS, /* oauth_grant = client_credentials: RFC 6749 §4.4 */
    CONF_OAUTH_COMMAND,            /* oauth_token_command: its stdout is the token */
};

/* auth = xoauth2. Secrets are never logged and are wiped in conf_free. */
struct conf_oauth {
    enum conf_oauth_grant grant;
    char *token_url;            /* as written: https://host[:port]/path */
    char *host;                 /* from token_url (IPv6 without brackets): SNI, name check */
    uint16_t port;              /* default 443 */
    char *path;                 /* "/path?query", "/" when the URL has none */
    char *client_id;            /* oauth_client_id */
    char *client_secret;        /* secret, or NULL (public client) */
    char *client_secret_source; /* "file /path", "env NAME", or NULL: for `check` */
    char *scope;                /* oauth_scope, NULL: not sent */
    char *refresh_token_file;   /* rotated refresh tokens are written back here */
    char *refresh_token;        /* secret, read at load time */
    char *command;              /* oauth_token_command as written */
    char **argv;                /* ... split into words (NULL-terminated), argv[0] absolute */
    /* oauth_device_url (RFC 8628 device authorization endpoint), for
     * `relay25 oauth login`; NULL when not set */
    char *device_url;
    char *device_host;
    uint16_t device_port;
    char *device_path;
};

/* What an upstream speaks (issue 16). */
enum conf_up_type {
    CONF_UP_SMTP,  /* SMTP submission (default) */
    CONF_UP_GRAPH, /* Microsoft Graph sendMail over HTTPS (upstream/up_graph.c) */
};

struct conf_upstream {
    char *name;               /* section name, "default" for the environment config */
    enum conf_up_type type;   /* type = smtp (default) | graph */
    char *graph_url;          /* type = graph: graph_url as written, default Graph's global one */
    char *graph_path;         /* ... its path without a trailing '/' ("" for none) */
    char *host;               /* connect address (name or literal) */
    uint16_t port;            /* default 587, or 465 for implicit */
    enum conf_tls tls;        /* default starttls, implicit when port is 465 */
    char *ca_file;            /* default /etc/ssl/certs/ca-certificates.crt */
    char *server_name;        /* SNI and certificate name check; default: host */
    int tls_verify;           /* 1 (default): chain and name verified; 0: user relaxed it */
    const struct tls_ca *ca;  /* loaded trust anchors (shared between upstreams with one ca_file) */
    unsigned max_connections; /* sessions at once to this upstream (up_pool), default 4 */
    int line;                 /* line of the section header, for messages */
    char *provider;           /* provider = gmail, ses:eu-west-1 (conf_preset.c); NULL: none */
    char *preset_filled;      /* "host smtp.gmail.com, port 587, ...": what the preset set, for
                                 `check`; NULL when it set nothing */
};

/* A token bucket rate: `count` events per `per_seconds` (e.g. "30/minute"). */
struct conf_rate {
    unsigned count;       /* 0: unlimited */
    unsigned per_seconds; /* 1, 60, 3600 or 86400 */
};

/* Address patterns for MAIL FROM / RCPT TO policy: "user@example.com" (exact,
 * case-insensitive), "@example.com" (any address at that domain), "example.com"
 * (same as "@example.com"). An empty list allows everything. */
struct conf_patterns {
    char **items;
    size_t n;
};

struct conf_device {
    char *name;         /* section name ("default" for [device default]) */
    int is_default;     /* [device default] */
    struct cidr *match; /* empty for the default device */
    size_t nmatch;
    const struct conf_upstream *up; /* resolved upstream (the first of ups) */
    /* `upstream = m365, sendgrid`: failover order (up_pool, background delivery); ups[0] == up */
    const struct conf_upstream **ups;
    size_t nups;
    enum conf_mode mode;             /* default: [relay] mode */
    enum conf_on_failure on_failure; /* default: [relay] on_upstream_failure */
    char *user;                      /* upstream login */
    char *password;                  /* secret; never logged; wiped in conf_free */
    char *password_source;           /* "file /path", "env NAME", "inline": for `check` output */
    enum conf_auth auth;             /* auth = password (default) | xoauth2 */
    struct conf_oauth oauth;         /* auth = xoauth2 (password is then NULL) */
    /* auth_mechanisms = LOGIN, PLAIN: enum conf_mech in preference order, ended by
     * CONF_MECH_END; empty: the default (strongest first). Default: [relay]'s. */
    unsigned char auth_mechanisms[CONF_MAX_MECHS];
    char *login; /* login = alice: inbound AUTH user that gets this device */
    /* policy; when not set in the section, copied from [relay] */
    struct conf_rate message_rate;           /* message_rate = 30/minute */
    struct conf_rate recipient_rate;         /* recipient_rate = 500/hour */
    enum conf_rate_by rate_by;               /* rate_limit_by = address | device */
    struct conf_patterns allowed_senders;    /* allowed_senders = @example.com, a@b.c */
    struct conf_patterns allowed_recipients; /* allowed_recipients = example.org */
    /* sender rewriting: MAIL FROM (never the null sender) and, optionally, From: */
    char *rewrite_sender;    /* rewrite_sender = office@example.com; NULL: off (default) */
    int rewrite_from_header; /* rewrite_from_header = yes: From: too, Reply-To: added */
    /* lf_line_ends = yes: the device ends lines with a bare LF, the final "." too:
     * LF is a line end in its DATA (<LF>.<LF> ends it), sent upstream as CRLF */
    int lf_line_ends;
    int line;
    char *preset_filled; /* device keys its upstream's provider preset set, for `check` */
};

/* [route NAME]: the first route (file order) whose senders match the envelope
 * sender (after rewrite_sender) and whose devices list names the device (or is
 * empty) replaces the device's upstream and credentials for that transaction
 * (like Postfix's sender_dependent_relayhost_maps). `cred` is a device-shaped
 * record holding only the route's part: cred.name is the route name; up, ups,
 * user, password, password_source (auth is always password). */
struct conf_route {
    struct conf_device cred;
    struct conf_patterns senders; /* senders = @example.com, boss@example.org */
    char **devices;               /* devices = scanner, printer; none: every device */
    size_t ndevices;
    int line;
};

/* One warning: "file:line: text" when line > 0, else text alone. */
struct conf_warning {
    int line;
    char *text;
};

struct conf_listen {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char text[64]; /* as written, for logs: "0.0.0.0:25", "[::]:25" */
};

struct conf {
    char *path; /* file the snapshot came from, NULL for environment */
    /* the file is readable by others and holds an inline password from this line
     * (0: not both): `check` and `serve` warn, the value never shown */
    int exposed_line;

    struct conf_listen *listen; /* default 127.0.0.1:25 (file) */
    size_t nlisten;
    struct cidr *allow; /* default loopback only: 127.0.0.0/8, ::1/128 */
    size_t nallow;
    char *hostname;            /* default gethostname() */
    uint64_t max_message_size; /* bytes, default 35 MiB; "35M", "512K", "1G" accepted */
    int received_header;       /* 1 (default): prepend a Received: line */
    enum conf_bare_lf bare_lf;
    /* inbound TLS and AUTH (issue: Inbound TLS and AUTH); off unless set */
    char *tls_cert_file;             /* PEM chain, end entity first; with tls_key_file: STARTTLS */
    char *tls_key_file;              /* PEM private key (RSA or EC) */
    int tls_min_version;             /* BR_TLS10..BR_TLS12, default BR_TLS12 */
    const struct tls_cert *tls_cert; /* loaded chain and key (conf_load with load_ca) */
    struct conf_listen *tls_listen;  /* implicit-TLS listeners: tls_listen = 127.0.0.1:465 */
    size_t ntls_listen;
    char *users_file;        /* "login:hash" lines, hash from crypt(3) (relay25 passwd) */
    struct conf_user *users; /* its entries; hashes are wiped in conf_free */
    size_t nusers;
    int allow_plaintext_auth; /* AUTH also without TLS (clients in allow or loopback) */
    /* inbound AUTH failures per client address (auth/auth_fail.h) */
    unsigned auth_fail_limit; /* failures before a lockout, default 10 (0 = never locked) */
    unsigned auth_lockout;    /* seconds a lockout lasts and failures are remembered, 300 */
    unsigned auth_fail_delay; /* seconds before the first 535, doubling, default 1 (0 = none) */
    unsigned char auth_mechanisms[CONF_MAX_MECHS]; /* [relay] auth_mechanisms: devices' default */
    int log_level; /* enum log_level; default info; key log_level = debug|info|warn|error */

    /* timeouts in seconds (RFC 5321 §4.5.3.2 values are the upper bounds) */
    unsigned idle_timeout;     /* inbound: waiting for a command or DATA bytes, default 300 */
    unsigned connect_timeout;  /* upstream TCP connect + TLS handshake, default 30 */
    unsigned command_timeout;  /* upstream reply to a command, default 300 */
    unsigned data_timeout;     /* upstream reply after end of DATA, default 600 */
    unsigned shutdown_timeout; /* SIGTERM: how long open sessions may finish, default 30 */

    /* limits (issue: hardening); 0 means unlimited where noted */
    unsigned max_connections; /* total inbound sessions, default 200; excess gets 421 4.7.0 */
    unsigned max_connections_per_ip; /* default 50 (0 = unlimited) */
    struct cidr *per_ip_exempt;      /* max_connections_per_ip_exempt: addresses the per-address
                                        limit skips, default 127.0.0.0/8 and ::1 */
    size_t nper_ip_exempt;
    unsigned max_recipients;           /* per message, default 1000; excess gets 452 4.5.3 */
    uint64_t max_header_size;          /* header section bytes, default 1M; excess gets 552 5.3.4 */
    unsigned max_errors;               /* syntax errors before 421, default 20 */
    unsigned max_commands_before_mail; /* non-transaction commands before the first MAIL,
                                          default 100 (0 = unlimited) */
    unsigned max_messages_per_session; /* default 1000 (0 = unlimited) */
    unsigned session_timeout;          /* total session duration in seconds, default 3600 */
    unsigned refused_timeout;          /* seconds a refused client may stay after its 554, 5 */
    struct conf_rate message_rate;     /* [relay] defaults for devices; default unlimited */
    struct conf_rate recipient_rate;
    enum conf_rate_by rate_by; /* [relay] default for devices: per address */
    /* DATA: below data_min_rate bytes/s on average over data_rate_window seconds
     * the client gets 421 4.4.2 (0: off); defaults 1024 and 30 */
    unsigned data_min_rate;
    unsigned data_rate_window;
    struct conf_patterns allowed_senders;
    struct conf_patterns allowed_recipients;
    int proxy_protocol;      /* listeners expect a PROXY v1/v2 header */
    struct cidr *proxy_from; /* who may send one (required when proxy_protocol = yes) */
    size_t nproxy_from;

    /* spool (durable store-and-forward) */
    enum conf_mode mode;             /* mode = passthrough | spool */
    enum conf_on_failure on_failure; /* on_upstream_failure = reject | queue */
    char *spool_dir;                 /* default /var/spool/relay25 */
    uint64_t max_spool_size;         /* bytes of spooled messages, 0 = unlimited (default) */
    unsigned max_queue_age;          /* seconds, default 3 days ("3d", "12h", "90m" or seconds) */
    unsigned retry_min;              /* first retry delay in seconds, default 60 */
    unsigned retry_max;              /* longest delay between retries, default 3600 */
    enum conf_bounce bounce;         /* bounce = dsn | keep | drop */

    /* host integration */
    char *user;     /* drop privileges to this user after binding; default "relay25"
                       when started as root, ignored otherwise; "" keeps root (refused) */
    int log_syslog; /* log = stderr (0, default) | syslog (1) */
    int log_json;   /* log_format = text (0, default) | json (1) */
    /* log_timestamps = auto (0, default: on unless stderr is the journal) | yes (1) | no (2) */
    int log_timestamps;
    /* log = syslog, but nothing listened on /dev/log at load time (conf_warn.c): serve
     * logs to stderr instead, so the daemon never runs silent */
    int syslog_unavailable;
    struct conf_listen metrics_listen; /* metrics_listen = 127.0.0.1:9325 */
    int metrics_enabled;
    char *submit; /* [sendmail] submit = host:port of a relay25 daemon; NULL: direct */
    char *origin; /* [sendmail] origin: domain for unqualified addresses; default hostname */

    unsigned refs; /* holders, the loader included (conf_hold / conf_release) */

    /* Things that load but are likely mistakes (conf_warn.c): `check` prints them and
     * `serve` logs them at start and on reload. */
    struct conf_warning *warnings;
    size_t nwarnings;

    struct conf_upstream *upstreams;
    size_t nupstreams;
    struct conf_device *devices; /* the default device, if any, is among them */
    size_t ndevices;
    struct conf_route *routes; /* [route NAME] sections in file order */
    size_t nroutes;
};

/* Load a file (path != NULL) or the RELAY25_* environment (path == NULL).
 * On failure returns NULL and writes one line such as
 * "relay25.conf:12: unknown key 'hots' in [upstream gmail]" into err (with
 * CONF_LOAD_STRICT: one such line per error).
 * load_ca: also read each ca_file (0 lets tests and `check` of a file on another
 * host skip it). */
struct conf *conf_load(const char *path, int load_ca, char *err, size_t errlen);
/* load_ca may add this: a missing oauth_refresh_token_file is no error (its
 * refresh_token stays NULL), for `relay25 oauth login`, which writes it. */
#define CONF_LOAD_LOGIN 2
/* load_ca may add this for loads a user reads the errors of (the CLI, serve, reload):
 * err gets every error, one per line (the first first), unknown keys get "did you
 * mean" / "belongs in [section]" hints, and two devices with one match are an error.
 * Without it err holds the first error alone, in the older wording, as some callers
 * and tests expect. */
#define CONF_LOAD_STRICT 4
void conf_free(struct conf *c);
/* A snapshot outlives a reload while anything holds it. conf_load() returns it
 * with refs = 1, the loader's; conf_hold() adds a holder, conf_release() drops one
 * and frees the snapshot when the last is gone. conf_free() frees at once: only
 * for a snapshot that was never held (refs still 1), e.g. in a command that loads,
 * uses and exits. */
struct conf *conf_hold(struct conf *c);
void conf_release(struct conf *c);

/* "30/minute" -> {30, 60}; "/second", "/minute", "/hour", "/day". 0 or -1. */
int conf_parse_rate(const char *s, struct conf_rate *out);
/* 1 when addr (no angle brackets) matches one of the patterns, or the list is empty. */
int conf_patterns_match(const struct conf_patterns *p, const char *addr);

/* The route for a transaction of device d with envelope sender `sender` (no angle
 * brackets, "" for <>), or NULL: the device's own upstream and credentials. */
const struct conf_route *conf_route_for(const struct conf *c, const struct conf_device *d,
                                        const char *sender);
/* The route named `name`, or NULL (spooled messages record the route by name). */
const struct conf_route *conf_route_find(const struct conf *c, const char *name);

/* A port and TLS mode that do not go together (465 with starttls, 587 or 2525
 * with implicit): 1 with the warning in buf, else 0. For `check`. */
int conf_upstream_warning(const struct conf_upstream *u, char *buf, size_t cap);

/* 1 when the daemon keeps a spool: mode = spool or on_upstream_failure = queue in
 * [relay] or any device (then `serve` prepares spool_dir and runs its queue). */
int conf_spool_used(const struct conf *c);

/* "35M" -> 36700160. Returns 0 on success, -1 on syntax error or overflow. */
int conf_parse_size(const char *s, uint64_t *out);
/* "0.0.0.0:25", "[::]:25", "127.0.0.1" (port defaults to defport). 0 or -1. */
int conf_parse_hostport(const char *s, uint16_t defport, struct sockaddr_storage *ss,
                        socklen_t *len);

#endif
