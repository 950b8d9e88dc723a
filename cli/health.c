/* health: a liveness probe for a running relay25 (the Docker HEALTHCHECK):
 * connect, expect the 220 greeting, EHLO, QUIT, in plain SMTP through
 * up_session's local_plain mode on a private uv loop (RFC 5321 §3.1, §4.1.1.1);
 * with --proxy behind a PROXY protocol v2 LOCAL header, as a load balancer's own
 * check. Exit 0 when healthy, 1 otherwise with the reason on stderr. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_session.h"

#define HEALTH_DEFAULT "127.0.0.1:25"
#define HEALTH_TIMEOUT 5

struct health {
    struct up_session *up;
    const char *where;
    int ok;
    char result[900];
};

int cli__hostport(const char *s, uint16_t defport, char *host, size_t hostcap, uint16_t *port)
{
    const char *h = s, *colon;
    size_t hlen;
    unsigned long p = defport;

    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end) {
            return -1;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end[1] == ':' ? end + 1 : NULL;
        if (!colon && end[1] != '\0') {
            return -1;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) {
            struct in6_addr a6;
            if (inet_pton(AF_INET6, s, &a6) != 1) {
                return -1; /* several colons: only a bare IPv6 literal (no port) */
            }
            colon = NULL;
        }
        hlen = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (colon) {
        char *end;
        p = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || p == 0 || p > 65535) {
            return -1;
        }
    }
    if (hlen == 0 || hlen >= hostcap) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}

/* A listener on every address is probed on loopback. */
static void health_from_listen(const struct conf_listen *l, char *out, size_t cap)
{
    if (l->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY)) {
            snprintf(out, cap, "127.0.0.1:%u", (unsigned)ntohs(a->sin_port));
            return;
        }
    } else if (l->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
        if (memcmp(&a->sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0) {
            snprintf(out, cap, "[::1]:%u", (unsigned)ntohs(a->sin6_port));
            return;
        }
    }
    snprintf(out, cap, "%s", l->text);
}

/* Where to probe without HOST:PORT: the first listen address of the config
 * (-c FILE, $RELAY25_CONFIG, the default file, or the RELAY25_* environment);
 * if that does not load (a container's secrets may be the entrypoint's alone),
 * the first address of $RELAY25_LISTEN; else 127.0.0.1:25. */
static int health_target(const char *path, char *out, size_t cap)
{
    char err[1024];
    const char *e = getenv("RELAY25_CONFIG");
    struct conf *c = NULL;

    if (path) {
        c = conf_load(path, CONF_LOAD_STRICT, err, sizeof(err));
        if (!c) {
            fprintf(stderr, "relay25 health: %s\n", err);
            return EX_CONFIG;
        }
    } else if (e && *e) {
        c = conf_load(e, CONF_LOAD_STRICT, err, sizeof(err));
    } else if (access(RELAY25_DEFAULT_CONFIG, F_OK) == 0) {
        c = conf_load(RELAY25_DEFAULT_CONFIG, CONF_LOAD_STRICT, err, sizeof(err));
    } else if (getenv("RELAY25_UPSTREAM")) {
        c = conf_load(NULL, CONF_LOAD_STRICT, err, sizeof(err));
    }
    if (c && c->nlisten > 0) {
        health_from_listen(&c->listen[0], out, cap);
        conf_free(c);
        return 0;
    }
    conf_free(c);
    e = getenv("RELAY25_LISTEN");
    if (e && *e) {
        size_t n;
        char first[300], host[256];
        uint16_t port;

        e += strspn(e, " \t,");
        n = strcspn(e, " \t,");
        snprintf(first, sizeof(first), "%.*s", (int)n, e);
        if (cli__hostport(first, 25, host, sizeof(host), &port) == 0) {
            if (strcmp(host, "0.0.0.0") == 0) {
                snprintf(out, cap, "127.0.0.1:%u", (unsigned)port);
            } else if (strcmp(host, "::") == 0) {
                snprintf(out, cap, "[::1]:%u", (unsigned)port);
            } else {
                snprintf(out, cap, "%s", first);
            }
            return 0;
        }
    }
    snprintf(out, cap, "%s", HEALTH_DEFAULT);
    return 0;
}

static void health_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    struct health *h = arg;

    if (err != 0) {
        reply_upstream_reason(h->result, sizeof(h->result), err, h->where, detail);
        return;
    }
    h->ok = 1;
    snprintf(h->result, sizeof(h->result), "%s ok: greeting 220, EHLO %d", h->where, r->code);
    up_quit(h->up);
}

static void health_on_reply(void *arg, const struct up_reply *r)
{
    (void)arg;
    (void)r;
}

static void health_on_fail(void *arg, int err, const char *detail, int pending)
{
    (void)arg;
    (void)err;
    (void)detail;
    (void)pending; /* after EHLO only QUIT is left: the relay answered, it is healthy */
}

static void health_on_close(void *arg)
{
    struct health *h = arg;
    h->up = NULL;
}

static const struct up_cbs health_cbs = {
    .on_ready = health_on_ready,
    .on_reply = health_on_reply,
    .on_fail = health_on_fail,
    .on_drain = NULL,
    .on_close = health_on_close,
};

static int health_usage_error(int rc)
{
    fprintf(stderr, "usage: " CLI_USAGE_HEALTH "\n");
    return rc;
}

int cli_health(int argc, char **argv)
{
    const char *path = NULL, *target = NULL;
    unsigned timeout = HEALTH_TIMEOUT;
    int proxy = 0;
    char where[300], host[256];
    struct conf_upstream u;
    struct up_params p;
    struct health h;
    uv_loop_t loop;
    uint16_t port;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: " CLI_USAGE_HEALTH "\n"
                   "Connects to a running relay25, expects the 220 greeting, sends EHLO and\n"
                   "QUIT. Without HOST:PORT: the first listen address of the configuration\n"
                   "(a wildcard is probed on loopback), else $RELAY25_LISTEN, else %s.\n"
                   "--proxy sends a PROXY protocol v2 LOCAL header first, as a load balancer's\n"
                   "health check does (for proxy_protocol = yes; the probe's address must be\n"
                   "in proxy_from). --timeout: seconds per step (default %u).\n"
                   "Exit: 0 healthy, 1 unhealthy (the reason on stderr), 64 usage,\n"
                   "78 configuration error (with -c).\n",
                   HEALTH_DEFAULT, HEALTH_TIMEOUT);
            return 0;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                return health_usage_error(cli_missing("health", "-c", "a file"));
            }
            path = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0) {
            char *end;
            unsigned long t;
            if (i + 1 >= argc) {
                return health_usage_error(
                    cli_missing("health", "--timeout", "a number of seconds"));
            }
            t = strtoul(argv[++i], &end, 10);
            if (*end || t == 0 || t > 3600) {
                fprintf(stderr, "relay25 health: bad --timeout '%s' (seconds)\n", argv[i]);
                return EX_USAGE;
            }
            timeout = (unsigned)t;
        } else if (strcmp(argv[i], "--proxy") == 0) {
            proxy = 1;
        } else if (argv[i][0] != '-' && !target) {
            target = argv[i];
        } else {
            fprintf(stderr, "relay25 health: unknown argument '%s'\n", argv[i]);
            return health_usage_error(EX_USAGE);
        }
    }
    if (!target) {
        if ((rc = health_target(path, where, sizeof(where))) != 0) {
            return rc;
        }
        target = where;
    }
    if (cli__hostport(target, 25, host, sizeof(host), &port) != 0) {
        fprintf(stderr, "relay25 health: bad address '%s' (want HOST:PORT)\n", target);
        return EX_USAGE;
    }
    log_set_level(LOG_ERR);
    signal(SIGPIPE, SIG_IGN);

    memset(&u, 0, sizeof(u));
    u.name = "health";
    u.host = host;
    u.port = port;
    u.tls = CONF_TLS_STARTTLS; /* unused with local_plain */
    u.server_name = host;
    u.tls_verify = 1;
    memset(&p, 0, sizeof(p));
    p.up = &u;
    p.helo = "relay25-health";
    p.sid = log_new_id();
    p.connect_timeout = p.command_timeout = p.data_timeout = timeout;
    p.local_plain = 1;
    p.proxy_local = proxy;
    memset(&h, 0, sizeof(h));
    up_where_of(&u, where, sizeof(where));
    h.where = where;
    snprintf(h.result, sizeof(h.result), "%s: no answer", where);

    uv_loop_init(&loop);
    h.up = up_session_new(&loop, &p, &health_cbs, &h);
    if (h.up && up_session_start(h.up) < 0) { /* no callback comes */
        up_close(h.up);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (h.ok) {
        printf("relay25 health: %s\n", h.result);
        return 0;
    }
    fprintf(stderr, "relay25 health: unhealthy: %s\n", h.result);
    return 1;
}
