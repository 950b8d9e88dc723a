/* test_conf: configuration loading (conf/) from INI files written to a fresh
 * temp dir and from RELAY25_* variables; every error's "file:line:" prefix,
 * limits, rates and address policy (with [device] inheritance), the spool keys and
 * upstream failover lists, password sources, auth = xoauth2 and source-IP mapping
 * (auth/auth_map.c). */
#include "conf/conf.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth_map.h"
#include "common/log.h"
#include "common/tls_ca.h"
#include "tests/check.h"

#define CONF "relay25.conf"
#define UP "[upstream gmail]\nhost = smtp.gmail.com\n"
#define DEV "[device default]\nuser = office@example.com\npassword = hunter2\n"

static char tmpdir[256];

static void write_file(const char *name, const char *text, size_t len)
{
    FILE *f = fopen(name, "wb");

    ASSERT_TRUE(f != NULL);
    if (!f) {
        return;
    }
    ASSERT_EQ(fwrite(text, 1, len, f), len);
    fclose(f);
}

static struct conf *load_text(const char *text, char *err, size_t errlen)
{
    write_file(CONF, text, strlen(text));
    return conf_load(CONF, 0, err, errlen);
}

/* The load fails, err starts with prefix (e.g. "relay25.conf:12: ") and contains part. */
static void expect_err_at(int line, const char *text, const char *prefix, const char *part)
{
    char err[512];
    struct conf *c = load_text(text, err, sizeof(err));
    int ok = c == NULL && strncmp(err, prefix, strlen(prefix)) == 0 && strstr(err, part) != NULL;

    ASSERT_TRUE(ok);
    if (!ok) {
        fprintf(stderr, "  test line %d: want \"%s...%s...\", got \"%s\" (conf %p)\n", line, prefix,
                part, c ? "(loaded)" : err, (void *)c);
    }
    conf_free(c);
}
#define EXPECT_ERR(text, prefix, part) expect_err_at(__LINE__, text, prefix, part)

static struct sockaddr_storage sa4(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage sa6(const char *ip)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    sin6->sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

static const char *lookup4(const struct conf *c, const char *ip)
{
    struct sockaddr_storage ss = sa4(ip);
    const struct conf_device *d = auth_map_lookup(c, (struct sockaddr *)&ss);

    return d ? d->name : "(none)";
}

static const char *lookup6(const struct conf *c, const char *ip)
{
    struct sockaddr_storage ss = sa6(ip);
    const struct conf_device *d = auth_map_lookup(c, (struct sockaddr *)&ss);

    return d ? d->name : "(none)";
}

static int allowed(const struct conf *c, const char *ip)
{
    struct sockaddr_storage ss = strchr(ip, ':') ? sa6(ip) : sa4(ip);

    return auth_map_allowed(c, (struct sockaddr *)&ss);
}

static const char *fmt_cidr(const struct cidr *n)
{
    static char buf[64];

    return cidr_format(n, buf, sizeof(buf));
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void env_clear(void)
{
    static const char *const vars[] = {
        "RELAY25_LISTEN",
        "RELAY25_ALLOW",
        "RELAY25_HOSTNAME",
        "RELAY25_UPSTREAM",
        "RELAY25_TLS",
        "RELAY25_SERVER_NAME",
        "RELAY25_CA_FILE",
        "RELAY25_TLS_VERIFY",
        "RELAY25_USER",
        "RELAY25_PASSWORD",
        "RELAY25_PASSWORD_FILE",
        "RELAY25_MAX_MESSAGE_SIZE",
        "RELAY25_LOG_LEVEL",
        "RELAY25_LOG",
        "RELAY25_LOG_FORMAT",
        "RELAY25_METRICS_LISTEN",
        "RELAY25_RUN_AS",
        "RELAY25_MAX_CONNECTIONS",
        "RELAY25_MAX_CONNECTIONS_PER_IP",
        "RELAY25_MAX_CONNECTIONS_PER_IP_EXEMPT",
        "RELAY25_MESSAGE_RATE",
        "RELAY25_RECIPIENT_RATE",
        "RELAY25_ALLOWED_SENDERS",
        "RELAY25_ALLOWED_RECIPIENTS",
        "RELAY25_SUBMIT",
        "RELAY25_ORIGIN",
        "RELAY25_REFUSED_TIMEOUT",
        "RELAY25_DATA_MIN_RATE",
        "RELAY25_DATA_RATE_WINDOW",
        "RELAY25_RATE_LIMIT_BY",
        "RELAY25_AUTH_FAIL_LIMIT",
        "RELAY25_AUTH_LOCKOUT",
        "RELAY25_AUTH_FAIL_DELAY",
        "RELAY25_MODE",
        "RELAY25_ON_UPSTREAM_FAILURE",
        "RELAY25_SPOOL_DIR",
        "RELAY25_MAX_SPOOL_SIZE",
        "RELAY25_MAX_QUEUE_AGE",
        "RELAY25_BOUNCE",
    };

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        unsetenv(vars[i]);
    }
}

static const char full_text[] = "; relay25 test configuration\n"                     /* 1 */
                                "[relay]\n"                                          /* 2 */
                                "listen = 0.0.0.0:2525, [::]:2525   ; both stacks\n" /* 3 */
                                "allow  = 127.0.0.0/8, ::1/128 192.168.1.0/24\n"     /* 4 */
                                "allow = 10.0.0.0/8\n"                               /* 5 */
                                "  fd00::/8 ; continuation with a comment\n"         /* 6 */
                                "hostname = relay.home.arpa\n"                       /* 7 */
                                "max_message_size = 10M\n"                           /* 8 */
                                "idle_timeout = 301\n"                               /* 9 */
                                "connect_timeout = 31\n"                             /* 10 */
                                "command_timeout = 302\n"                            /* 11 */
                                "data_timeout = 601\n"                               /* 12 */
                                "shutdown_timeout = 5\n"                             /* 13 */
                                "received_header = no\n"                             /* 14 */
                                "bare_lf = reject\n"                                 /* 15 */
                                "log_level = debug\n"                                /* 16 */
                                "\n"                                                 /* 17 */
                                "[upstream gmail]\n"                                 /* 18 */
                                "host = smtp.gmail.com\n"                            /* 19 */
                                "port = 587\n"                                       /* 20 */
                                "tls  = starttls\n"                                  /* 21 */
                                "ca_file = /etc/ssl/certs/ca-certificates.crt\n"     /* 22 */
                                "server_name = smtp.gmail.com\n"                     /* 23 */
                                "tls_verify = yes\n"                                 /* 24 */
                                "\n"                                                 /* 25 */
                                "[upstream backup]   ; implicit TLS, own CA\n"       /* 26 */
                                "host = 192.0.2.10\n"                                /* 27 */
                                "tls = implicit\n"                                   /* 28 */
                                "server_name = mail.example.net\n"                   /* 29 */
                                "tls_verify = off\n"                                 /* 30 */
                                "ca_file = ./backup-ca.pem\n"                        /* 31 */
                                "\n"                                                 /* 32 */
                                "[device default]\n"                                 /* 33 */
                                "upstream = gmail\n"                                 /* 34 */
                                "user = office@example.com\n"                        /* 35 */
                                "password_file = office.pass\n"                      /* 36 */
                                "\n"                                                 /* 37 */
                                "[device scanner]\n"                                 /* 38 */
                                "upstream = backup\n"                                /* 39 */
                                "match = 192.168.1.50, 192.168.1.64/28\n"            /* 40 */
                                "  fd00::50\n"                                       /* 41 */
                                "user = scanner@example.com\n"                       /* 42 */
                                "password_env = RELAY25_TEST_SCANNER_PW\n"           /* 43 */
                                "\n"                                                 /* 44 */
                                "[device printer]\n"                                 /* 45 */
                                "upstream = gmail\n"                                 /* 46 */
                                "match = 192.168.1.0/24\n"                           /* 47 */
                                "match = fd00::/64\n"                                /* 48 */
                                "user = printer@example.com\n"                       /* 49 */
                                "password = inline-secret\n"                         /* 50 */
                                "\n"                                                 /* 51 */
                                "[device tie]\n"                                     /* 52 */
                                "upstream = gmail\n"                                 /* 53 */
                                "match = 192.168.1.0/24\n"                           /* 54 */
                                "user = tie@example.com\n"                           /* 55 */
                                "password = tie-secret\n";                           /* 56 */

static void test_full(void)
{
    char err[512] = "";
    struct conf *c;

    write_file("office.pass", "office-secret\n", 14);
    setenv("RELAY25_TEST_SCANNER_PW", "scanner-secret", 1);
    c = load_text(full_text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(err, "");
    if (!c) {
        fprintf(stderr, "  full: %s\n", err);
        return;
    }
    ASSERT_STREQ(c->path, CONF);

    ASSERT_EQ(c->nlisten, 2);
    ASSERT_STREQ(c->listen[0].text, "0.0.0.0:2525");
    ASSERT_EQ(c->listen[0].addr.ss_family, AF_INET);
    ASSERT_EQ(c->listen[0].addrlen, sizeof(struct sockaddr_in));
    ASSERT_EQ(port_of(&c->listen[0].addr), 2525);
    ASSERT_STREQ(c->listen[1].text, "[::]:2525");
    ASSERT_EQ(c->listen[1].addr.ss_family, AF_INET6);
    ASSERT_EQ(c->listen[1].addrlen, sizeof(struct sockaddr_in6));
    ASSERT_EQ(port_of(&c->listen[1].addr), 2525);

    ASSERT_EQ(c->nallow, 5);
    if (c->nallow == 5) {
        ASSERT_STREQ(fmt_cidr(&c->allow[0]), "127.0.0.0/8");
        ASSERT_STREQ(fmt_cidr(&c->allow[1]), "::1/128");
        ASSERT_STREQ(fmt_cidr(&c->allow[2]), "192.168.1.0/24");
        ASSERT_STREQ(fmt_cidr(&c->allow[3]), "10.0.0.0/8");
        ASSERT_STREQ(fmt_cidr(&c->allow[4]), "fd00::/8");
    }
    ASSERT_STREQ(c->hostname, "relay.home.arpa");
    ASSERT_EQ(c->max_message_size, 10 * 1024 * 1024);
    ASSERT_EQ(c->idle_timeout, 301);
    ASSERT_EQ(c->connect_timeout, 31);
    ASSERT_EQ(c->command_timeout, 302);
    ASSERT_EQ(c->data_timeout, 601);
    ASSERT_EQ(c->shutdown_timeout, 5);
    ASSERT_EQ(c->received_header, 0);
    ASSERT_EQ(c->bare_lf, CONF_BARE_LF_REJECT);
    ASSERT_EQ(c->log_level, LOG_DEBUG);

    ASSERT_EQ(c->nupstreams, 2);
    ASSERT_STREQ(c->upstreams[0].name, "gmail");
    ASSERT_STREQ(c->upstreams[0].host, "smtp.gmail.com");
    ASSERT_EQ(c->upstreams[0].port, 587);
    ASSERT_EQ(c->upstreams[0].tls, CONF_TLS_STARTTLS);
    ASSERT_STREQ(c->upstreams[0].ca_file, "/etc/ssl/certs/ca-certificates.crt");
    ASSERT_STREQ(c->upstreams[0].server_name, "smtp.gmail.com");
    ASSERT_EQ(c->upstreams[0].tls_verify, 1);
    ASSERT_TRUE(c->upstreams[0].ca == NULL);
    ASSERT_EQ(c->upstreams[0].line, 18);
    ASSERT_STREQ(c->upstreams[1].name, "backup");
    ASSERT_STREQ(c->upstreams[1].host, "192.0.2.10");
    ASSERT_EQ(c->upstreams[1].port, 465);
    ASSERT_EQ(c->upstreams[1].tls, CONF_TLS_IMPLICIT);
    ASSERT_STREQ(c->upstreams[1].ca_file, "./backup-ca.pem");
    ASSERT_STREQ(c->upstreams[1].server_name, "mail.example.net");
    ASSERT_EQ(c->upstreams[1].tls_verify, 0);
    ASSERT_EQ(c->upstreams[1].line, 26);

    ASSERT_EQ(c->ndevices, 4);
    if (c->ndevices == 4) {
        const struct conf_device *d = c->devices;

        ASSERT_STREQ(d[0].name, "default");
        ASSERT_EQ(d[0].is_default, 1);
        ASSERT_EQ(d[0].nmatch, 0);
        ASSERT_TRUE(d[0].up == &c->upstreams[0]);
        ASSERT_STREQ(d[0].user, "office@example.com");
        ASSERT_STREQ(d[0].password, "office-secret");
        ASSERT_STREQ(d[0].password_source, "file office.pass");
        ASSERT_EQ(d[0].line, 33);

        ASSERT_STREQ(d[1].name, "scanner");
        ASSERT_EQ(d[1].is_default, 0);
        ASSERT_EQ(d[1].nmatch, 3);
        if (d[1].nmatch == 3) {
            ASSERT_STREQ(fmt_cidr(&d[1].match[0]), "192.168.1.50/32");
            ASSERT_STREQ(fmt_cidr(&d[1].match[1]), "192.168.1.64/28");
            ASSERT_STREQ(fmt_cidr(&d[1].match[2]), "fd00::50/128");
        }
        ASSERT_TRUE(d[1].up == &c->upstreams[1]);
        ASSERT_EQ(d[1].nups, 1);
        ASSERT_TRUE(d[1].ups != NULL && d[1].ups[0] == &c->upstreams[1]);
        ASSERT_STREQ(d[1].user, "scanner@example.com");
        ASSERT_STREQ(d[1].password, "scanner-secret");
        ASSERT_STREQ(d[1].password_source, "env RELAY25_TEST_SCANNER_PW");
        ASSERT_EQ(d[1].line, 38);

        ASSERT_STREQ(d[2].name, "printer");
        ASSERT_EQ(d[2].nmatch, 2);
        ASSERT_TRUE(d[2].up == &c->upstreams[0]);
        ASSERT_STREQ(d[2].user, "printer@example.com");
        ASSERT_STREQ(d[2].password, "inline-secret");
        ASSERT_STREQ(d[2].password_source, "inline");
        ASSERT_EQ(d[2].line, 45);
        ASSERT_STREQ(d[3].name, "tie");
    }

    /* most specific wins, IPv4 */
    ASSERT_STREQ(lookup4(c, "192.168.1.50"), "scanner"); /* /32 over /24 */
    ASSERT_STREQ(lookup4(c, "192.168.1.70"), "scanner"); /* /28 over /24 */
    ASSERT_STREQ(lookup4(c, "192.168.1.10"), "printer"); /* tie with [device tie]: first */
    ASSERT_STREQ(lookup4(c, "10.1.2.3"), "default");     /* no match: default */
    /* IPv6 */
    ASSERT_STREQ(lookup6(c, "fd00::50"), "scanner"); /* /128 over /64 */
    ASSERT_STREQ(lookup6(c, "fd00::51"), "printer");
    ASSERT_STREQ(lookup6(c, "fd00:1::1"), "default");
    /* IPv4-mapped IPv6 peers match IPv4 networks */
    ASSERT_STREQ(lookup6(c, "::ffff:192.168.1.50"), "scanner");
    ASSERT_STREQ(lookup6(c, "::ffff:192.168.1.66"), "scanner");
    ASSERT_STREQ(lookup6(c, "::ffff:192.168.1.10"), "printer");
    ASSERT_STREQ(lookup6(c, "::ffff:172.16.0.1"), "default");

    ASSERT_EQ(allowed(c, "127.0.0.1"), 1);
    ASSERT_EQ(allowed(c, "192.168.1.200"), 1);
    ASSERT_EQ(allowed(c, "10.9.9.9"), 1);
    ASSERT_EQ(allowed(c, "8.8.8.8"), 0);
    ASSERT_EQ(allowed(c, "::1"), 1);
    ASSERT_EQ(allowed(c, "::ffff:127.0.0.1"), 1);
    ASSERT_EQ(allowed(c, "fd12::1"), 1);
    ASSERT_EQ(allowed(c, "2001:db8::1"), 0);
    conf_free(c);
    unsetenv("RELAY25_TEST_SCANNER_PW");
}

static void test_defaults(void)
{
    char err[512] = "";
    char host[256];
    struct conf *c = load_text(UP DEV, err, sizeof(err));

    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  defaults: %s\n", err);
        return;
    }
    ASSERT_EQ(c->nlisten, 1);
    ASSERT_STREQ(c->listen[0].text, "127.0.0.1:25");
    ASSERT_EQ(c->listen[0].addr.ss_family, AF_INET);
    ASSERT_EQ(port_of(&c->listen[0].addr), 25);
    ASSERT_EQ(c->nallow, 2);
    if (c->nallow == 2) {
        ASSERT_STREQ(fmt_cidr(&c->allow[0]), "127.0.0.0/8");
        ASSERT_STREQ(fmt_cidr(&c->allow[1]), "::1/128");
    }
    if (gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        ASSERT_STREQ(c->hostname, host);
    }
    ASSERT_EQ(c->max_message_size, 36700160);
    ASSERT_EQ(c->received_header, 1);
    ASSERT_EQ(c->bare_lf, CONF_BARE_LF_NORMALIZE);
    ASSERT_EQ(c->log_level, LOG_INFO);
    ASSERT_EQ(c->idle_timeout, 300);
    ASSERT_EQ(c->connect_timeout, 30);
    ASSERT_EQ(c->command_timeout, 300);
    ASSERT_EQ(c->data_timeout, 600);
    ASSERT_EQ(c->shutdown_timeout, 30);
    ASSERT_EQ(c->max_connections, 200);
    ASSERT_EQ(c->max_connections_per_ip, 50); /* issue 15: Postfix's default */
    ASSERT_EQ(c->max_recipients, 1000);
    ASSERT_EQ(c->max_header_size, 1024 * 1024);
    ASSERT_EQ(c->max_errors, 20);
    ASSERT_EQ(c->max_commands_before_mail, 100);
    ASSERT_EQ(c->max_messages_per_session, 1000);
    ASSERT_EQ(c->session_timeout, 3600);
    ASSERT_EQ(c->refused_timeout, 5);
    ASSERT_EQ(c->message_rate.count, 0);
    ASSERT_EQ(c->recipient_rate.count, 0);
    ASSERT_EQ(c->rate_by, CONF_RATE_BY_ADDRESS);
    ASSERT_EQ(c->data_min_rate, 1024);
    ASSERT_EQ(c->data_rate_window, 30);
    ASSERT_EQ(c->allowed_senders.n, 0);
    ASSERT_EQ(c->allowed_recipients.n, 0);
    ASSERT_EQ(c->proxy_protocol, 0);
    ASSERT_EQ(c->nproxy_from, 0);
    ASSERT_TRUE(c->user == NULL);
    ASSERT_EQ(c->log_syslog, 0);
    ASSERT_EQ(c->log_json, 0);
    ASSERT_EQ(c->log_timestamps, 0); /* auto */
    ASSERT_EQ(c->metrics_enabled, 0);
    ASSERT_TRUE(c->submit == NULL);
    ASSERT_EQ(c->devices[0].message_rate.count, 0);
    ASSERT_EQ(c->devices[0].recipient_rate.count, 0);
    ASSERT_EQ(c->devices[0].rate_by, CONF_RATE_BY_ADDRESS);
    ASSERT_EQ(c->devices[0].allowed_senders.n, 0);
    ASSERT_TRUE(c->devices[0].allowed_senders.items == NULL);
    ASSERT_EQ(c->devices[0].allowed_recipients.n, 0);
    ASSERT_EQ(conf_patterns_match(&c->devices[0].allowed_senders, ""), 1);
    ASSERT_EQ(conf_patterns_match(&c->devices[0].allowed_recipients, "a@b.example"), 1);
    ASSERT_EQ(c->nupstreams, 1);
    ASSERT_EQ(c->upstreams[0].port, 587);
    ASSERT_EQ(c->upstreams[0].tls, CONF_TLS_STARTTLS);
    ASSERT_STREQ(c->upstreams[0].ca_file, "/etc/ssl/certs/ca-certificates.crt");
    ASSERT_STREQ(c->upstreams[0].server_name, "smtp.gmail.com");
    ASSERT_EQ(c->upstreams[0].tls_verify, 1);
    ASSERT_EQ(c->ndevices, 1);
    ASSERT_TRUE(c->devices[0].up == &c->upstreams[0]); /* single upstream: implied */
    ASSERT_EQ(c->devices[0].nups, 1);
    ASSERT_TRUE(c->devices[0].ups != NULL && c->devices[0].ups[0] == &c->upstreams[0]);
    ASSERT_EQ(c->upstreams[0].max_connections, 4);
    ASSERT_EQ(c->mode, CONF_MODE_PASSTHROUGH);
    ASSERT_EQ(c->on_failure, CONF_ON_FAILURE_REJECT);
    ASSERT_STREQ(c->spool_dir, "/var/spool/relay25");
    ASSERT_EQ(c->max_spool_size, 0);
    ASSERT_EQ(c->max_queue_age, 259200);
    ASSERT_EQ(c->retry_min, 60);
    ASSERT_EQ(c->retry_max, 3600);
    ASSERT_EQ(c->bounce, CONF_BOUNCE_DSN);
    ASSERT_EQ(c->devices[0].mode, CONF_MODE_PASSTHROUGH);
    ASSERT_EQ(c->devices[0].on_failure, CONF_ON_FAILURE_REJECT);
    ASSERT_STREQ(c->devices[0].password, "hunter2");
    ASSERT_STREQ(c->devices[0].password_source, "inline");
    ASSERT_STREQ(lookup4(c, "127.0.0.1"), "default");
    ASSERT_EQ(allowed(c, "127.0.0.1"), 1);
    ASSERT_EQ(allowed(c, "192.168.1.1"), 0);
    conf_free(c);

    /* port 465 implies implicit TLS, implicit TLS implies port 465 */
    c = load_text("[upstream a]\nhost = a.example\nport = 465\n"
                  "[upstream b]\nhost = b.example\ntls = implicit\n"
                  "[upstream c]\nhost = 2001:db8::1\nport = 2525\n"
                  "[device default]\nupstream = c\nuser = u\npassword = p\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->upstreams[0].tls, CONF_TLS_IMPLICIT);
        ASSERT_EQ(c->upstreams[1].port, 465);
        ASSERT_EQ(c->upstreams[2].tls, CONF_TLS_STARTTLS);
        ASSERT_EQ(c->upstreams[2].port, 2525);
        ASSERT_STREQ(c->upstreams[2].server_name, "2001:db8::1");
        ASSERT_TRUE(c->devices[0].up == &c->upstreams[2]);
        ASSERT_EQ(c->devices[0].nups, 1);
        ASSERT_TRUE(c->devices[0].ups[0] == &c->upstreams[2]);
        ASSERT_EQ(c->upstreams[1].max_connections, 4);
    }
    conf_free(c);

    /* no default device: an unmatched client maps to nothing */
    c = load_text(UP "[device cam]\nmatch = 10.0.0.0/8\nuser = u\npassword = p\n", err,
                  sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(lookup4(c, "10.1.1.1"), "cam");
        ASSERT_STREQ(lookup4(c, "11.1.1.1"), "(none)");
        ASSERT_STREQ(lookup6(c, "::1"), "(none)");
    }
    conf_free(c);

    /* CRLF line ends and a UTF-8 BOM are accepted */
    c = load_text("\xEF\xBB\xBF[upstream gmail]\r\nhost = smtp.gmail.com\r\n[device default]\r\n"
                  "user = u\r\npassword = p\r\n[relay]\r\nallow = 10.0.0.0/8,\r\n"
                  "   192.168.0.0/16\r\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->upstreams[0].host, "smtp.gmail.com");
        ASSERT_STREQ(c->devices[0].password, "p");
        ASSERT_EQ(c->nallow, 2);
    }
    conf_free(c);
}

static void test_errors(void)
{
    char err[512];
    char line[400];
    struct conf *c;

    /* the exact message users see */
    c = load_text("[upstream gmail]\nhots = smtp.gmail.com\n", err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:2: unknown key 'hots' in [upstream gmail]");
    conf_free(c);

    c = conf_load("does-not-exist.conf", 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    snprintf(line, sizeof(line), "cannot open does-not-exist.conf: %s", strerror(ENOENT));
    ASSERT_STREQ(err, line);

    EXPECT_ERR("[relay]\n[upsteam gmail]\n", "relay25.conf:2: ", "unknown section type 'upsteam'");
    EXPECT_ERR(UP "[relay]\nlog_level = info\nfoo = 1\n",
               "relay25.conf:5: ", "unknown key 'foo' in [relay]");
    EXPECT_ERR(UP DEV "[device default]\n",
               "relay25.conf:6: ", "duplicate section [device default] (first on line 3)");
    EXPECT_ERR(UP DEV "[upstream gmail]\nhost = x\n",
               "relay25.conf:6: ", "duplicate section [upstream gmail] (first on line 1)");
    EXPECT_ERR("[relay]\n" UP "[relay]\n", "relay25.conf:4: ", "duplicate section [relay]");
    EXPECT_ERR("[relay foo]\n", "relay25.conf:1: ", "[relay] takes no name");
    EXPECT_ERR("[upstream]\n", "relay25.conf:1: ", "needs a name");
    EXPECT_ERR("[upstream a b]\n", "relay25.conf:1: ", "bad section header");
    /* provider = (conf_preset.c; the table is in test_conf_preset.c) */
    EXPECT_ERR("[upstream a]\nprovider = smtp.gmail.com\n" DEV,
               "relay25.conf:2: provider: ", "unknown provider 'smtp.gmail.com' (known: gmail, ");
    EXPECT_ERR("[upstream a]\nprovider = ses\n" DEV,
               "relay25.conf:2: provider: ", "'ses' needs the region: ses:eu-west-1");
    EXPECT_ERR("[upstream a]\nprovider = gmail\nprovider = m365\n" DEV,
               "relay25.conf:3: ", "duplicate key 'provider' in [upstream a] (first on line 2)");
    EXPECT_ERR("[device default]\nprovider = gmail\n",
               "relay25.conf:2: ", "unknown key 'provider' in [device default]");
    EXPECT_ERR("[upstream a/b]\n", "relay25.conf:1: ", "bad name 'a/b'");
    EXPECT_ERR("host = x\n", "relay25.conf:1: ", "outside any section");

    /* addresses and networks: the bad item is quoted */
    EXPECT_ERR("[relay]\nlisten = 127.0.0.1:25, 1.2.3:25\n",
               "relay25.conf:2: listen: ", "bad address '1.2.3:25'");
    EXPECT_ERR("[relay]\nlisten = [::1]:99999\n",
               "relay25.conf:2: listen: ", "bad address '[::1]:99999'");
    EXPECT_ERR("[relay]\nlisten = 127.0.0.1:25\n  127.0.0.1:25\n",
               "relay25.conf:3: listen: ", "'127.0.0.1:25' is listed twice");
    EXPECT_ERR("[relay]\nallow = 127.0.0.0/8\nallow = 10.0.0.0/99\n",
               "relay25.conf:3: allow: ", "bad network '10.0.0.0/99'");
    EXPECT_ERR("[relay]\nallow = 127.0.0.0/8,\n  ::1/129\n",
               "relay25.conf:3: allow: ", "bad network '::1/129'");
    EXPECT_ERR(UP "[device cam]\nmatch = 192.168.1.300\n",
               "relay25.conf:4: match: ", "bad network '192.168.1.300'");
    EXPECT_ERR("[relay]\nallow =\n" UP DEV, "relay25.conf:2: allow: ", "empty list");

    /* numbers, sizes, booleans, enums */
    EXPECT_ERR("[relay]\nidle_timeout = 5m\n", "relay25.conf:2: idle_timeout: ", "bad number '5m'");
    EXPECT_ERR("[relay]\ndata_timeout = -1\n", "relay25.conf:2: data_timeout: ", "bad number");
    EXPECT_ERR("[relay]\nconnect_timeout = 0\n",
               "relay25.conf:2: connect_timeout: ", "bad number '0'");
    EXPECT_ERR("[relay]\nmax_message_size = 35X\n",
               "relay25.conf:2: max_message_size: ", "bad size '35X'");
    EXPECT_ERR("[relay]\nmax_message_size = 99999999999999G\n",
               "relay25.conf:2: max_message_size: ", "bad size");
    EXPECT_ERR(UP "port = 70000\n", "relay25.conf:3: port: ", "bad port '70000'");
    EXPECT_ERR(UP "port = 0x19\n", "relay25.conf:3: port: ", "bad port '0x19'");
    EXPECT_ERR("[relay]\nreceived_header = maybe\n",
               "relay25.conf:2: received_header: ", "bad boolean 'maybe'");
    EXPECT_ERR(UP "tls_verify = perhaps\n", "relay25.conf:3: tls_verify: ", "bad boolean");
    EXPECT_ERR("[relay]\nbare_lf = fix\n", "relay25.conf:2: bare_lf: ", "bad value 'fix'");
    EXPECT_ERR("[relay]\nlog_level = loud\n", "relay25.conf:2: log_level: ", "bad level 'loud'");
    EXPECT_ERR(UP "tls = ssl\n", "relay25.conf:3: tls: ", "bad value 'ssl'");
    EXPECT_ERR(UP "tls = none\n", "relay25.conf:3: tls: ", "no plain mode");
    EXPECT_ERR(UP "tls = plain\n", "relay25.conf:3: tls: ", "no plain mode");
    EXPECT_ERR("[relay]\nhostname = relay home\n",
               "relay25.conf:2: hostname: ", "bad host name 'relay home'");
    EXPECT_ERR("[relay]\nhostname = a\x01"
               "b\n",
               "relay25.conf:2: hostname: ", "bad host name");
    EXPECT_ERR("[upstream gmail]\nhost = smtp.gmail.com:587\n", "relay25.conf:2: host: ", "port =");
    EXPECT_ERR("[relay]\nhostname =\n", "relay25.conf:2: hostname: ", "empty value");

    /* limits */
    EXPECT_ERR("[relay]\nmax_connections = 0\n",
               "relay25.conf:2: max_connections: ", "bad number '0' (1 to 1000000)");
    EXPECT_ERR("[relay]\nmax_connections_per_ip = many\n",
               "relay25.conf:2: max_connections_per_ip: ",
               "bad number 'many' (0 for unlimited, or 1 to 1000000)");
    EXPECT_ERR("[relay]\nmax_recipients = 1000001\n",
               "relay25.conf:2: max_recipients: ", "bad number '1000001'");
    EXPECT_ERR("[relay]\nmax_errors = -1\n", "relay25.conf:2: max_errors: ", "bad number '-1'");
    EXPECT_ERR("[relay]\nmax_errors = 0\n", "relay25.conf:2: max_errors: ", "bad number '0'");
    EXPECT_ERR("[relay]\nmax_commands_before_mail = 1e3\n",
               "relay25.conf:2: max_commands_before_mail: ",
               "bad number '1e3' (0 for unlimited, or 1 to 1000000)");
    EXPECT_ERR("[relay]\nmax_messages_per_session = 10x\n",
               "relay25.conf:2: max_messages_per_session: ", "bad number '10x'");
    EXPECT_ERR("[relay]\nmax_header_size = 0\n",
               "relay25.conf:2: max_header_size: ", "bad size '0'");
    EXPECT_ERR("[relay]\nmax_header_size = 1T\n",
               "relay25.conf:2: max_header_size: ", "bad size '1T'");
    EXPECT_ERR("[relay]\nsession_timeout = 0\n",
               "relay25.conf:2: session_timeout: ", "bad number '0' (seconds, 1 to 86400)");
    EXPECT_ERR("[relay]\nsession_timeout = 1h\n", "relay25.conf:2: session_timeout: ", "'1h'");

    /* rates */
    EXPECT_ERR("[relay]\nmessage_rate = 30/min\n",
               "relay25.conf:2: message_rate: ", "bad rate '30/min' (N/second, N/minute");
    EXPECT_ERR("[relay]\nrecipient_rate = 0/hour\n",
               "relay25.conf:2: recipient_rate: ", "bad rate '0/hour'");
    EXPECT_ERR("[relay]\nmessage_rate = 30/minute\nmessage_rate = 1/second\n",
               "relay25.conf:3: ", "duplicate key 'message_rate' in [relay] (first on line 2)");
    EXPECT_ERR("[relay]\nmessage_rate = 30/minute\n  1/second\n",
               "relay25.conf:3: ", "'message_rate' takes one value");
    EXPECT_ERR(UP DEV "message_rate = 5/week\n",
               "relay25.conf:6: message_rate: ", "bad rate '5/week'");
    EXPECT_ERR(UP DEV "recipient_rate =\n", "relay25.conf:6: recipient_rate: ", "empty value");
    EXPECT_ERR("[relay]\nrate_limit_by = ip\n",
               "relay25.conf:2: rate_limit_by: ", "bad value 'ip' (address or device)");
    EXPECT_ERR(UP DEV "rate_limit_by = Device\n",
               "relay25.conf:6: rate_limit_by: ", "bad value 'Device'");
    EXPECT_ERR("[relay]\ndata_min_rate = 1K\n",
               "relay25.conf:2: data_min_rate: ", "bad number '1K' (0 for unlimited");
    EXPECT_ERR("[relay]\ndata_min_rate = -1\n", "relay25.conf:2: data_min_rate: ", "'-1'");
    EXPECT_ERR("[relay]\ndata_rate_window = 0\n", "relay25.conf:2: data_rate_window: ",
               "bad duration '0' (seconds, or a number with s, m or h; 1s to 1h)");
    EXPECT_ERR("[relay]\ndata_rate_window = 2h\n",
               "relay25.conf:2: data_rate_window: ", "bad duration '2h'");
    EXPECT_ERR("[relay]\ndata_rate_window = 30x\n",
               "relay25.conf:2: data_rate_window: ", "bad duration '30x'");
    EXPECT_ERR(UP DEV "data_min_rate = 10\n", "relay25.conf:6: ", "data_min_rate");

    /* address patterns: the bad item is quoted, with the reason */
    EXPECT_ERR("[relay]\nallowed_senders = a@b.example, x@y@z.example\n",
               "relay25.conf:2: allowed_senders: ", "bad address 'x@y@z.example' (more than one");
    EXPECT_ERR("[relay]\nallowed_senders = a@@b.example\n",
               "relay25.conf:2: allowed_senders: ", "bad address 'a@@b.example'");
    EXPECT_ERR("[relay]\nallowed_senders = <a@b.example>\n",
               "relay25.conf:2: allowed_senders: ", "without angle brackets");
    EXPECT_ERR("[relay]\nallowed_senders = a@\n",
               "relay25.conf:2: allowed_senders: ", "bad address 'a@' (no domain after '@')");
    EXPECT_ERR("[relay]\nallowed_senders = @\n", "relay25.conf:2: allowed_senders: ", "no domain");
    EXPECT_ERR("[relay]\nallowed_recipients = @.example.com\n",
               "relay25.conf:2: allowed_recipients: ", "bad address '@.example.com' (bad domain)");
    EXPECT_ERR("[relay]\nallowed_recipients = example..com\n",
               "relay25.conf:2: allowed_recipients: ", "(bad domain)");
    EXPECT_ERR("[relay]\nallowed_recipients = a@example.com.\n",
               "relay25.conf:2: allowed_recipients: ", "(bad domain)");
    EXPECT_ERR("[relay]\nallowed_senders = a\x01"
               "b@example.com\n",
               "relay25.conf:2: allowed_senders: ", "(control character)");
    EXPECT_ERR("[relay]\nallowed_recipients = <>\n", "relay25.conf:2: allowed_recipients: ",
               "bad address '<>' (the null sender <> belongs in allowed_senders)");
    EXPECT_ERR("[relay]\nallowed_senders = a@b.example,\n  <>, c@@d\n",
               "relay25.conf:3: allowed_senders: ", "bad address 'c@@d'");
    EXPECT_ERR(UP DEV "allowed_recipients = a@b@c\n",
               "relay25.conf:6: allowed_recipients: ", "more than one '@'");
    {
        char text[256];
        int n = snprintf(text, sizeof(text), "[relay]\nallowed_senders = ");

        memset(text + n, 'a', 130);
        memcpy(text + n + 130, "@b\n", 4);
        EXPECT_ERR(text, "relay25.conf:2: allowed_senders: ", "item too long");
    }

    /* PROXY protocol */
    EXPECT_ERR("[relay]\nproxy_protocol = sometimes\n",
               "relay25.conf:2: proxy_protocol: ", "bad boolean 'sometimes'");
    c = load_text(UP DEV "[relay]\nlog = stderr\nproxy_protocol = yes\n", err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:8: proxy_protocol = yes needs proxy_from = the load "
                      "balancer's addresses");
    EXPECT_ERR(UP DEV "[relay]\nproxy_protocol = on\nproxy_from =\n",
               "relay25.conf:7: ", "proxy_protocol = yes needs proxy_from");
    EXPECT_ERR("[relay]\nproxy_from = 10.0.0.0/33\n",
               "relay25.conf:2: proxy_from: ", "bad network '10.0.0.0/33'");
    EXPECT_ERR("[relay]\nproxy_from = 10.0.0.1\n  lb.example\n",
               "relay25.conf:3: proxy_from: ", "bad network 'lb.example'");

    /* host integration */
    EXPECT_ERR("[relay]\nuser = root\n",
               "relay25.conf:2: user: ", "relay25 does not keep root privileges");
    EXPECT_ERR("[relay]\nuser = relay 25\n",
               "relay25.conf:2: user: ", "bad user name 'relay 25' (letters, digits");
    EXPECT_ERR("[relay]\nuser = -relay\n", "relay25.conf:2: user: ", "bad user name '-relay'");
    EXPECT_ERR("[relay]\nuser = a234567890123456789012345678901234\n",
               "relay25.conf:2: user: ", "bad user name");
    EXPECT_ERR("[relay]\nuser = r/x\n", "relay25.conf:2: user: ", "bad user name 'r/x'");
    EXPECT_ERR("[relay]\nuser =\n", "relay25.conf:2: user: ", "empty value");
    EXPECT_ERR("[relay]\nlog = file\n",
               "relay25.conf:2: log: ", "bad value 'file' (stderr or syslog)");
    EXPECT_ERR("[relay]\nlog = Syslog\n", "relay25.conf:2: log: ", "bad value 'Syslog'");
    EXPECT_ERR("[relay]\nlog_format = xml\n",
               "relay25.conf:2: log_format: ", "bad value 'xml' (text or json)");
    EXPECT_ERR("[relay]\nlog_timestamps = on\n",
               "relay25.conf:2: log_timestamps: ", "bad value 'on' (auto, yes or no)");
    EXPECT_ERR("[relay]\nmetrics_listen = localhost:9325\n",
               "relay25.conf:2: metrics_listen: ", "bad address 'localhost:9325'");
    EXPECT_ERR("[relay]\nmetrics_listen = 127.0.0.1:70000\n",
               "relay25.conf:2: metrics_listen: ", "bad address '127.0.0.1:70000'");
    EXPECT_ERR("[relay]\nmetrics_listen = 127.0.0.1:1, [::1]:2\n",
               "relay25.conf:2: metrics_listen: ", "bad address");

    /* [sendmail] */
    EXPECT_ERR("[sendmail]\nsubmit = 127.0.0.1\n", "relay25.conf:2: submit: ",
               "bad address '127.0.0.1' (expected host:port of a relay25 listener");
    EXPECT_ERR("[sendmail]\nsubmit = 127.0.0.1:0\n",
               "relay25.conf:2: submit: ", "bad address '127.0.0.1:0'");
    EXPECT_ERR("[sendmail]\nsubmit = relay.example:25\n",
               "relay25.conf:2: submit: ", "bad address 'relay.example:25'");
    EXPECT_ERR("[sendmail]\nsubmit = ::1\n", "relay25.conf:2: submit: ", "bad address '::1'");
    EXPECT_ERR("[sendmail]\nsubmit =\n", "relay25.conf:2: submit: ", "empty value");
    EXPECT_ERR("[sendmail]\nhost = x\n", "relay25.conf:2: ", "unknown key 'host' in [sendmail]");
    EXPECT_ERR("[sendmail]\n[relay]\n[sendmail]\n",
               "relay25.conf:3: ", "duplicate section [sendmail] (first on line 1)");
    EXPECT_ERR("[sendmail local]\n", "relay25.conf:1: ", "[sendmail] takes no name");
    EXPECT_ERR("[relay]\nsubmit = 127.0.0.1:25\n",
               "relay25.conf:2: ", "unknown key 'submit' in [relay]");
    EXPECT_ERR(UP DEV "max_connections = 5\n",
               "relay25.conf:6: ", "unknown key 'max_connections' in [device default]");
    EXPECT_ERR(UP DEV "proxy_from = 10.0.0.1\n",
               "relay25.conf:6: ", "unknown key 'proxy_from' in [device default]");

    /* repeated and continued keys */
    EXPECT_ERR(UP "host = other\n",
               "relay25.conf:3: ", "duplicate key 'host' in [upstream gmail] (first on line 2)");
    EXPECT_ERR(UP "  more.example\n", "relay25.conf:3: ", "'host' takes one value");

    /* devices */
    EXPECT_ERR(UP "[device default]\npassword = p\n",
               "relay25.conf:3: ", "[device default] has no user");
    EXPECT_ERR(UP "[device default]\nuser = u\n",
               "relay25.conf:3: ", "needs exactly one of password_file, password_env, password");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\npassword_env = X\n",
               "relay25.conf:6: password_env: ", "already has password (line 5)");
    EXPECT_ERR(UP DEV "[device scanner]\nuser = s\npassword_env = SCANNER\n",
               "relay25.conf:6: ", "[device scanner] has no match");
    EXPECT_ERR(UP "[device default]\nmatch = 10.0.0.1\n",
               "relay25.conf:4: match: ", "[device default] takes no match");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nupstream = gmial\n",
               "relay25.conf:6: upstream: ", "no [upstream gmial] for [device default]");
    EXPECT_ERR(UP "[upstream other]\nhost = o\n" DEV,
               "relay25.conf:5: ", "[device default] needs upstream = NAME");
    EXPECT_ERR(DEV "[relay]\nbare_lf = reject\n", "relay25.conf:5: ", "no [upstream NAME]");
    EXPECT_ERR(UP, "relay25.conf:2: ", "no [device NAME]");
    EXPECT_ERR("[upstream gmail]\nport = 25\n" DEV,
               "relay25.conf:1: ", "[upstream gmail] has no host");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword_env = 9LIVES\n",
               "relay25.conf:5: password_env: ", "bad variable name");

    /* password sources that cannot be read */
    unsetenv("RELAY25_TEST_UNSET");
    EXPECT_ERR(
        UP "[device default]\nuser = u\npassword_env = RELAY25_TEST_UNSET\n",
        "relay25.conf:5: password_env: ", "environment variable RELAY25_TEST_UNSET is not set");
    snprintf(line, sizeof(line), "cannot read ./missing.pass: %s", strerror(ENOENT));
    EXPECT_ERR(UP "[device default]\nuser = u\npassword_file = ./missing.pass\n",
               "relay25.conf:5: password_file: ", line);
    write_file("empty.pass", "", 0);
    EXPECT_ERR(UP "[device default]\nuser = u\npassword_file = empty.pass\n",
               "relay25.conf:5: password_file: ", "password file empty.pass is empty");
    write_file("newline.pass", "\n", 1);
    EXPECT_ERR(UP "[device default]\nuser = u\npassword_file = newline.pass\n",
               "relay25.conf:5: password_file: ", "is empty");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword_file = .\n",
               "relay25.conf:5: password_file: ", "not a regular file");

    /* syntax errors inih itself rejects, and the first error wins */
    EXPECT_ERR("[relay\n", "relay25.conf:1: ", "missing ']'");
    EXPECT_ERR("[relay]\njust some words\n", "relay25.conf:2: ", "syntax error");
    EXPECT_ERR("[relay]\nlog_level = info\njunk\nfoo = 1\n", "relay25.conf:3: ", "syntax error");
    EXPECT_ERR("[relay]\nfoo = 1\njunk\n", "relay25.conf:2: ", "unknown key 'foo'");
    EXPECT_ERR("[relay]\nfoo = 1\n[bogus]\n", "relay25.conf:2: ", "unknown key 'foo'");
    EXPECT_ERR("[relay]\n[bogus]\nfoo = 1\n", "relay25.conf:2: ", "unknown section type");
    EXPECT_ERR("[relay]\nbare_lf = x\n[upstream\n", "relay25.conf:2: ", "bad value 'x'");
    write_file(CONF, "[relay]\nlog_level = info\x00\n", 26);
    c = conf_load(CONF, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "relay25.conf:2: NUL byte", 24) == 0);

    /* inih reads 199 bytes per line: 198 characters and the newline */
    {
        char text[1024];
        int n = snprintf(text, sizeof(text), UP DEV "[relay]\nhostname = ");
        size_t pad = 198 - strlen("hostname = ");

        memset(text + n, 'h', pad);
        memcpy(text + n + pad, "\n", 2);
        c = load_text(text, err, sizeof(err));
        ASSERT_TRUE(c != NULL);
        ASSERT_EQ(c ? strlen(c->hostname) : 0, pad);
        conf_free(c);

        memset(text + n, 'h', pad + 1);
        memcpy(text + n + pad + 1, "\nfoo = 1\n", 10);
        EXPECT_ERR(text, "relay25.conf:7: ", "line longer than 198 characters");

        /* an over-long comment would be split by inih, so it is refused as well */
        n = snprintf(text, sizeof(text), "[relay]\n;");
        memset(text + n, 'c', 250);
        memcpy(text + n + 250, "\n", 2);
        EXPECT_ERR(text, "relay25.conf:2: ", "line longer than 198 characters");
    }
}

/* Every spool and failover error, with its "file:line:" prefix. */
static void test_spool_errors(void)
{
    char err[512];
    struct conf *c;

    /* enums, in [relay] and [device] */
    EXPECT_ERR("[relay]\nmode = store\n",
               "relay25.conf:2: mode: ", "bad value 'store' (passthrough or spool)");
    EXPECT_ERR("[relay]\nmode = Spool\n", "relay25.conf:2: mode: ", "bad value 'Spool'");
    EXPECT_ERR(UP DEV "mode = queue\n", "relay25.conf:6: mode: ", "bad value 'queue'");
    EXPECT_ERR("[relay]\non_upstream_failure = spool\n",
               "relay25.conf:2: on_upstream_failure: ", "bad value 'spool' (reject or queue)");
    EXPECT_ERR(UP DEV "on_upstream_failure = retry\n",
               "relay25.conf:6: on_upstream_failure: ", "bad value 'retry' (reject or queue)");
    EXPECT_ERR("[relay]\nbounce = yes\n",
               "relay25.conf:2: bounce: ", "bad value 'yes' (dsn, keep or drop)");
    EXPECT_ERR("[relay]\nmode =\n", "relay25.conf:2: mode: ", "empty value");
    EXPECT_ERR(UP DEV "on_upstream_failure =\n",
               "relay25.conf:6: on_upstream_failure: ", "empty value");
    EXPECT_ERR("[relay]\nmode = spool\nmode = passthrough\n",
               "relay25.conf:3: ", "duplicate key 'mode' in [relay] (first on line 2)");
    EXPECT_ERR(UP DEV "mode = spool\n  passthrough\n",
               "relay25.conf:7: ", "'mode' takes one value");

    /* keys in the wrong section */
    EXPECT_ERR(UP DEV "spool_dir = /srv\n",
               "relay25.conf:6: ", "unknown key 'spool_dir' in [device default]");
    EXPECT_ERR(UP DEV "bounce = drop\n",
               "relay25.conf:6: ", "unknown key 'bounce' in [device default]");
    EXPECT_ERR(UP "mode = spool\n", "relay25.conf:3: ", "unknown key 'mode' in [upstream gmail]");
    EXPECT_ERR("[relay]\nupstream = gmail\n",
               "relay25.conf:2: ", "unknown key 'upstream' in [relay]");

    /* spool_dir */
    EXPECT_ERR("[relay]\nspool_dir = spool\n",
               "relay25.conf:2: spool_dir: ", "'spool' is not an absolute path");
    EXPECT_ERR("[relay]\nspool_dir = ./spool\n",
               "relay25.conf:2: spool_dir: ", "'./spool' is not an absolute path");
    EXPECT_ERR("[relay]\nspool_dir = ~/spool\n",
               "relay25.conf:2: spool_dir: ", "not an absolute path (start it with '/')");
    EXPECT_ERR("[relay]\nspool_dir = /var/a\x01"
               "b\n",
               "relay25.conf:2: spool_dir: ", "control character");
    EXPECT_ERR("[relay]\nspool_dir =\n", "relay25.conf:2: spool_dir: ", "empty value");

    /* max_spool_size */
    EXPECT_ERR("[relay]\nmax_spool_size = 1T\n", "relay25.conf:2: max_spool_size: ",
               "bad size '1T' (0 for unlimited, or bytes, or a number with K, M or G)");
    EXPECT_ERR("[relay]\nmax_spool_size = -1\n", "relay25.conf:2: max_spool_size: ", "bad size");
    EXPECT_ERR("[relay]\nmax_spool_size = unlimited\n",
               "relay25.conf:2: max_spool_size: ", "bad size 'unlimited'");

    /* durations */
    {
        static const char *const bad[] = {
            "0",       "0s",       "0d",        "366d", "8761h",
            "525601m", "31536001", "31536001s", "1w",   "1D",
            "1H",      "1.5h",     "h",         "-1",   "+1",
            "1 h",     "1hh",      "1h30m",     "0x10", "99999999999999999999d",
            "3days",
        };
        char text[256], want[128];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(text, sizeof(text), "[relay]\nmax_queue_age = %s\n", bad[i]);
            snprintf(want, sizeof(want),
                     "bad duration '%s' (seconds, or a number with s, m, h or "
                     "d; 1s to 365d)",
                     bad[i]);
            EXPECT_ERR(text, "relay25.conf:2: max_queue_age: ", want);
        }
    }
    EXPECT_ERR("[relay]\nretry_min = 0\n", "relay25.conf:2: retry_min: ", "bad duration '0'");
    EXPECT_ERR("[relay]\nretry_max = 1y\n", "relay25.conf:2: retry_max: ", "bad duration '1y'");

    /* retry_max < retry_min: at the later of the two keys */
    c = load_text(UP DEV "[relay]\nretry_min = 2h\n", err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:7: retry_min: retry_max (3600s) is less than retry_min "
                      "(7200s)");
    conf_free(c);
    c = load_text(UP DEV "[relay]\nretry_max = 30s\n", err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:7: retry_max: retry_max (30s) is less than retry_min (60s)");
    conf_free(c);
    EXPECT_ERR("[relay]\nretry_min = 10m\nbounce = dsn\nretry_max = 5m\n" UP DEV,
               "relay25.conf:4: retry_max: ", "retry_max (300s) is less than retry_min (600s)");
    EXPECT_ERR("[relay]\nretry_max = 5m\nretry_min = 10m\n" UP DEV,
               "relay25.conf:3: retry_min: ", "retry_max (300s) is less than retry_min (600s)");
    /* the first error in the file wins over the cross-key check */
    EXPECT_ERR("[relay]\nretry_max = 5m\nretry_min = 10m\nbounce = x\n" UP DEV,
               "relay25.conf:4: bounce: ", "bad value 'x'");

    /* [upstream] max_connections */
    EXPECT_ERR(UP "max_connections = 0\n",
               "relay25.conf:3: max_connections: ", "bad number '0' (1 to 1000)");
    EXPECT_ERR(UP "max_connections = 1001\n",
               "relay25.conf:3: max_connections: ", "bad number '1001' (1 to 1000)");
    EXPECT_ERR(UP "max_connections = four\n",
               "relay25.conf:3: max_connections: ", "bad number 'four'");
    EXPECT_ERR(UP "max_connections = -4\n", "relay25.conf:3: max_connections: ", "bad number");
    EXPECT_ERR(UP "max_connections = 4\nmax_connections = 5\n", "relay25.conf:4: ",
               "duplicate key 'max_connections' in [upstream gmail] (first on line 3)");

    /* upstream lists: the missing or repeated name, at its own line */
    c = load_text(UP "[device default]\nuser = u\npassword = p\nupstream = gmail, sendgrid\n", err,
                  sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:6: upstream: no [upstream sendgrid] for [device default]");
    conf_free(c);
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nupstream = gmail,\n  nope\n",
               "relay25.conf:7: upstream: ", "no [upstream nope] for [device default]");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nupstream = gmail\nupstream = nope\n",
               "relay25.conf:7: upstream: ", "no [upstream nope] for [device default]");
    EXPECT_ERR(UP "[device default]\nupstream = gmail, gmail\n",
               "relay25.conf:4: upstream: ", "upstream 'gmail' is listed twice");
    EXPECT_ERR(UP "[upstream b]\nhost = b\n[device default]\nupstream = gmail b\n  b\n",
               "relay25.conf:7: upstream: ", "upstream 'b' is listed twice");
    EXPECT_ERR(UP "[device default]\nupstream = gmail\nupstream = gmail\n",
               "relay25.conf:5: upstream: ", "upstream 'gmail' is listed twice");
    EXPECT_ERR(UP "[device default]\nupstream = gmail, a/b\n",
               "relay25.conf:4: upstream: ", "bad upstream name 'a/b'");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nupstream =\n",
               "relay25.conf:6: upstream: ", "empty list");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nupstream = ,\n",
               "relay25.conf:6: upstream: ", "empty list");
    /* a missing name is reported even with several upstreams and a valid first one */
    EXPECT_ERR(UP "[upstream b]\nhost = b\n" DEV "upstream = b, gmail, c\n",
               "relay25.conf:8: upstream: ", "no [upstream c] for [device default]");
}

/* password_credential: systemd's LoadCredential= files in $CREDENTIALS_DIRECTORY. */
static void test_credentials(void)
{
    char err[512], cwd[512];
    struct conf *c;
    static const char text[] =
        UP "[device default]\nuser = office@example.com\npassword_credential = office.pass\n";

    mkdir("creds", 0700);
    write_file("creds/office.pass", "cred-secret\n", 12);
    unsetenv("CREDENTIALS_DIRECTORY");
    expect_err_at(__LINE__, text, CONF ":5: ", "CREDENTIALS_DIRECTORY");
    ASSERT_TRUE(getcwd(cwd, sizeof(cwd) - 8) != NULL);
    strcat(cwd, "/creds");
    setenv("CREDENTIALS_DIRECTORY", cwd, 1);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->devices[0].password, "cred-secret");
        ASSERT_STREQ(c->devices[0].password_source, "systemd credential office.pass");
        conf_free(c);
    }
    expect_err_at(__LINE__, UP "[device default]\nuser = u\npassword_credential = ../x\n",
                  CONF ":5: ", "bad credential name");
    expect_err_at(__LINE__,
                  UP "[device default]\nuser = u\npassword = a\npassword_credential = b\n",
                  CONF ":6: ", "exactly one");
    unsetenv("CREDENTIALS_DIRECTORY");
}

/* An inline password in a file others can read is flagged with its line; a
 * file closed to others, or one with no inline password, is not. */
static void test_exposed(void)
{
    char err[512];
    struct conf *c;

    write_file(CONF, UP DEV, strlen(UP DEV));
    ASSERT_EQ(chmod(CONF, 0644), 0);
    c = conf_load(CONF, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->exposed_line, 5);
        conf_free(c);
    }
    ASSERT_EQ(chmod(CONF, 0640), 0);
    c = conf_load(CONF, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->exposed_line, 0);
        conf_free(c);
    }
    write_file("pw.txt", "hunter2\n", 8);
    write_file(CONF, UP "[device default]\nuser = u@example.com\npassword_file = pw.txt\n",
               strlen(UP "[device default]\nuser = u@example.com\npassword_file = pw.txt\n"));
    ASSERT_EQ(chmod(CONF, 0644), 0);
    c = conf_load(CONF, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->exposed_line, 0);
        conf_free(c);
    }
}

static void test_secrets(void)
{
    char err[512];
    struct conf *c;

    write_file("nl.pass", "with-newline\n", 13);
    write_file("nonl.pass", "without-newline", 15);

    c = load_text(UP "[device default]\nuser = u\npassword_file = nonl.pass\n", err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(c ? c->devices[0].password : NULL, "without-newline");
    conf_free(c);
    c = load_text(UP "[device default]\nuser = u\npassword_file = nl.pass\n", err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(c ? c->devices[0].password : NULL, "with-newline");
    conf_free(c);

    /* no error message ever shows a secret */
    write_file("leak.pass", "file-s3cret\n", 12);
    setenv("RELAY25_TEST_LEAK", "env-s3cret", 1);
    {
        static const char *const texts[] = {
            UP "[device default]\nuser = u\npassword = inline-s3cret\nupstream = nope\n",
            UP "[device default]\nuser = u\npassword_file = leak.pass\nupstream = nope\n",
            UP "[device default]\nuser = u\npassword_env = RELAY25_TEST_LEAK\nupstream = nope\n",
            UP "[device default]\nuser = u\npassword = inline-s3cret\npassword = inline-s3cret\n",
            UP "[device default]\nuser = u\npassword = inline-s3cret\n  inline-s3cret\n",
            UP "[device default]\nuser = u\npassword_file = leak.pass\npassword = inline-s3cret\n",
            UP "[device default]\nuser = u\ninline-s3cret\n",
            UP "[device default]\nuser = u\npasword = inline-s3cret\n",
            "password = inline-s3cret\n",
        };

        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
            c = load_text(texts[i], err, sizeof(err));
            ASSERT_TRUE(c == NULL);
            ASSERT_TRUE(strncmp(err, "relay25.conf:", 13) == 0);
            ASSERT_TRUE(strstr(err, "s3cret") == NULL);
            if (strstr(err, "s3cret")) {
                fprintf(stderr, "  leaked: %s\n", err);
            }
            conf_free(c);
        }
    }
    {
        char text[512];
        int n = snprintf(text, sizeof(text), UP "[device default]\nuser = u\npassword = ");

        memset(text + n, 'x', 200);
        memcpy(text + n + 200, "s3cret\n", 8);
        c = load_text(text, err, sizeof(err));
        ASSERT_TRUE(c == NULL);
        ASSERT_TRUE(strstr(err, "xxxx") == NULL && strstr(err, "s3cret") == NULL);
    }
    env_clear();
    setenv("RELAY25_UPSTREAM", "smtp.example.com:587", 1);
    setenv("RELAY25_USER", "u", 1);
    setenv("RELAY25_PASSWORD", "env-s3cret", 1);
    setenv("RELAY25_PASSWORD_FILE", "leak.pass", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strstr(err, "RELAY25_PASSWORD") != NULL && strstr(err, "s3cret") == NULL);
    env_clear();
    unsetenv("RELAY25_TEST_LEAK");
}

static void test_env(void)
{
    char err[512] = "";
    struct conf *c;

    env_clear();
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "no configuration: give -c FILE or set RELAY25_UPSTREAM");

    setenv("RELAY25_UPSTREAM", "smtp.gmail.com:587", 1);
    setenv("RELAY25_USER", "office@example.com", 1);
    setenv("RELAY25_PASSWORD", "env-password", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_TRUE(c->path == NULL);
        ASSERT_EQ(c->nlisten, 1);
        ASSERT_STREQ(c->listen[0].text, "127.0.0.1:25");
        ASSERT_EQ(c->nallow, 2);
        ASSERT_EQ(c->max_message_size, 36700160);
        ASSERT_EQ(c->log_level, LOG_INFO);
        ASSERT_EQ(c->nupstreams, 1);
        ASSERT_STREQ(c->upstreams[0].name, "default");
        ASSERT_STREQ(c->upstreams[0].host, "smtp.gmail.com");
        ASSERT_EQ(c->upstreams[0].port, 587);
        ASSERT_EQ(c->upstreams[0].tls, CONF_TLS_STARTTLS);
        ASSERT_STREQ(c->upstreams[0].server_name, "smtp.gmail.com");
        ASSERT_STREQ(c->upstreams[0].ca_file, "/etc/ssl/certs/ca-certificates.crt");
        ASSERT_EQ(c->upstreams[0].tls_verify, 1);
        ASSERT_EQ(c->ndevices, 1);
        ASSERT_STREQ(c->devices[0].name, "default");
        ASSERT_EQ(c->devices[0].is_default, 1);
        ASSERT_TRUE(c->devices[0].up == &c->upstreams[0]);
        ASSERT_STREQ(c->devices[0].user, "office@example.com");
        ASSERT_STREQ(c->devices[0].password, "env-password");
        ASSERT_STREQ(c->devices[0].password_source, "env RELAY25_PASSWORD");
        ASSERT_STREQ(lookup4(c, "127.0.0.1"), "default");
    }
    conf_free(c);

    /* everything set; port 465 implies implicit TLS */
    write_file("env.pass", "file-password\n", 14);
    unsetenv("RELAY25_PASSWORD");
    setenv("RELAY25_PASSWORD_FILE", "env.pass", 1);
    setenv("RELAY25_UPSTREAM", "[2001:db8::25]:465", 1);
    setenv("RELAY25_LISTEN", "0.0.0.0:2525 [::]:2525", 1);
    setenv("RELAY25_ALLOW", "10.0.0.0/8,192.168.0.0/16", 1);
    setenv("RELAY25_HOSTNAME", "relay.example", 1);
    setenv("RELAY25_SERVER_NAME", "mx.example", 1);
    setenv("RELAY25_CA_FILE", "/tmp/ca.pem", 1);
    setenv("RELAY25_TLS_VERIFY", "no", 1);
    setenv("RELAY25_MAX_MESSAGE_SIZE", "512K", 1);
    setenv("RELAY25_LOG_LEVEL", "warn", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->nlisten, 2);
        ASSERT_EQ(port_of(&c->listen[1].addr), 2525);
        ASSERT_EQ(c->nallow, 2);
        ASSERT_EQ(allowed(c, "127.0.0.1"), 0);
        ASSERT_EQ(allowed(c, "10.0.0.1"), 1);
        ASSERT_STREQ(c->hostname, "relay.example");
        ASSERT_STREQ(c->upstreams[0].host, "2001:db8::25");
        ASSERT_EQ(c->upstreams[0].port, 465);
        ASSERT_EQ(c->upstreams[0].tls, CONF_TLS_IMPLICIT);
        ASSERT_STREQ(c->upstreams[0].server_name, "mx.example");
        ASSERT_STREQ(c->upstreams[0].ca_file, "/tmp/ca.pem");
        ASSERT_EQ(c->upstreams[0].tls_verify, 0);
        ASSERT_EQ(c->max_message_size, 512 * 1024);
        ASSERT_EQ(c->log_level, LOG_WARN);
        ASSERT_STREQ(c->devices[0].password, "file-password");
        ASSERT_STREQ(c->devices[0].password_source, "file env.pass");
    }
    conf_free(c);

    /* RELAY25_TLS overrides; no port means 587 for starttls, 465 for implicit */
    setenv("RELAY25_UPSTREAM", "smtp.example.com", 1);
    setenv("RELAY25_TLS", "implicit", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_EQ(c ? c->upstreams[0].port : 0, 465);
    conf_free(c);

    /* errors name the variable */
    setenv("RELAY25_ALLOW", "10.0.0.0/99", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "RELAY25_ALLOW: bad network '10.0.0.0/99'");
    setenv("RELAY25_ALLOW", "10.0.0.0/8", 1);

    setenv("RELAY25_TLS", "none", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "RELAY25_TLS: ", 13) == 0 && strstr(err, "no plain mode"));
    setenv("RELAY25_TLS", "starttls", 1);

    setenv("RELAY25_UPSTREAM", "smtp.example.com:0", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "RELAY25_UPSTREAM: bad port '0' (1 to 65535)");
    setenv("RELAY25_UPSTREAM", "[::1", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "RELAY25_UPSTREAM: bad upstream", 30) == 0);
    setenv("RELAY25_UPSTREAM", "smtp.example.com:587", 1);

    setenv("RELAY25_MAX_MESSAGE_SIZE", "lots", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "RELAY25_MAX_MESSAGE_SIZE: bad size 'lots' (bytes, or a number with K, M "
                      "or G)");
    unsetenv("RELAY25_MAX_MESSAGE_SIZE");

    setenv("RELAY25_PASSWORD_FILE", "./missing.pass", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "RELAY25_PASSWORD_FILE: cannot read ./missing.pass: ", 51) == 0);

    unsetenv("RELAY25_PASSWORD_FILE");
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "set RELAY25_PASSWORD or RELAY25_PASSWORD_FILE");

    setenv("RELAY25_PASSWORD", "p", 1);
    unsetenv("RELAY25_USER");
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "RELAY25_USER: ", 14) == 0);
    /* limits, policy and host integration; RELAY25_USER stays the upstream login */
    env_clear();
    setenv("RELAY25_UPSTREAM", "smtp.example.com:587", 1);
    setenv("RELAY25_USER", "office@example.com", 1);
    setenv("RELAY25_PASSWORD", "p", 1);
    setenv("RELAY25_RUN_AS", "mail", 1);
    setenv("RELAY25_LOG", "syslog", 1);
    setenv("RELAY25_LOG_FORMAT", "json", 1);
    setenv("RELAY25_METRICS_LISTEN", "0.0.0.0:9325", 1);
    setenv("RELAY25_MAX_CONNECTIONS", "10", 1);
    setenv("RELAY25_MAX_CONNECTIONS_PER_IP", "2", 1);
    setenv("RELAY25_MESSAGE_RATE", "60/hour", 1);
    setenv("RELAY25_RECIPIENT_RATE", "1000/day", 1);
    setenv("RELAY25_ALLOWED_SENDERS", "@Example.com,<>", 1);
    setenv("RELAY25_ALLOWED_RECIPIENTS", "a@example.org b@example.org", 1);
    setenv("RELAY25_SUBMIT", "127.0.0.1:2525", 1);
    setenv("RELAY25_ORIGIN", "example.org", 1);
    setenv("RELAY25_REFUSED_TIMEOUT", "7", 1);
    setenv("RELAY25_DATA_MIN_RATE", "2048", 1);
    setenv("RELAY25_DATA_RATE_WINDOW", "60", 1);
    setenv("RELAY25_RATE_LIMIT_BY", "device", 1);
    setenv("RELAY25_AUTH_FAIL_LIMIT", "3", 1);
    setenv("RELAY25_AUTH_LOCKOUT", "10m", 1);
    setenv("RELAY25_AUTH_FAIL_DELAY", "0", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->user, "mail");
        ASSERT_STREQ(c->devices[0].user, "office@example.com");
        ASSERT_EQ(c->log_syslog, 1);
        ASSERT_EQ(c->log_json, 1);
        ASSERT_EQ(c->metrics_enabled, 1);
        ASSERT_STREQ(c->metrics_listen.text, "0.0.0.0:9325");
        ASSERT_EQ(c->max_connections, 10);
        ASSERT_EQ(c->max_connections_per_ip, 2);
        ASSERT_EQ(c->max_recipients, 1000);
        ASSERT_EQ(c->message_rate.count, 60);
        ASSERT_EQ(c->message_rate.per_seconds, 3600);
        ASSERT_EQ(c->devices[0].message_rate.count, 60);
        ASSERT_EQ(c->devices[0].recipient_rate.count, 1000);
        ASSERT_EQ(c->devices[0].recipient_rate.per_seconds, 86400);
        ASSERT_EQ(c->allowed_senders.n, 2);
        ASSERT_EQ(c->devices[0].allowed_senders.n, 2);
        ASSERT_STREQ(c->devices[0].allowed_senders.n ? c->devices[0].allowed_senders.items[0]
                                                     : NULL,
                     "@example.com");
        ASSERT_EQ(conf_patterns_match(&c->devices[0].allowed_senders, ""), 1);
        ASSERT_EQ(c->devices[0].allowed_recipients.n, 2);
        ASSERT_STREQ(c->submit, "127.0.0.1:2525");
        ASSERT_STREQ(c->origin, "example.org");
        ASSERT_EQ(c->refused_timeout, 7);
        ASSERT_EQ(c->data_min_rate, 2048);
        ASSERT_EQ(c->data_rate_window, 60);
        ASSERT_EQ(c->rate_by, CONF_RATE_BY_DEVICE);
        ASSERT_EQ(c->auth_fail_limit, 3);
        ASSERT_EQ(c->auth_lockout, 600);
        ASSERT_EQ(c->auth_fail_delay, 0);
    }
    conf_free(c);

    /* the spool variables; the single device inherits mode and on_upstream_failure and
     * fails over to nothing but the one upstream */
    setenv("RELAY25_MODE", "spool", 1);
    setenv("RELAY25_ON_UPSTREAM_FAILURE", "queue", 1);
    setenv("RELAY25_SPOOL_DIR", "/data/spool", 1);
    setenv("RELAY25_MAX_SPOOL_SIZE", "10G", 1);
    setenv("RELAY25_MAX_QUEUE_AGE", "2d", 1);
    setenv("RELAY25_BOUNCE", "drop", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->mode, CONF_MODE_SPOOL);
        ASSERT_EQ(c->on_failure, CONF_ON_FAILURE_QUEUE);
        ASSERT_STREQ(c->spool_dir, "/data/spool");
        ASSERT_EQ(c->max_spool_size, 10ull << 30);
        ASSERT_EQ(c->max_queue_age, 172800);
        ASSERT_EQ(c->retry_min, 60);
        ASSERT_EQ(c->retry_max, 3600);
        ASSERT_EQ(c->bounce, CONF_BOUNCE_DROP);
        ASSERT_EQ(c->devices[0].mode, CONF_MODE_SPOOL);
        ASSERT_EQ(c->devices[0].on_failure, CONF_ON_FAILURE_QUEUE);
        ASSERT_EQ(c->devices[0].nups, 1);
        ASSERT_TRUE(c->devices[0].ups != NULL && c->devices[0].ups[0] == &c->upstreams[0]);
        ASSERT_TRUE(c->devices[0].up == &c->upstreams[0]);
        ASSERT_EQ(c->upstreams[0].max_connections, 4);
    }
    conf_free(c);
    unsetenv("RELAY25_MODE");
    unsetenv("RELAY25_ON_UPSTREAM_FAILURE");
    unsetenv("RELAY25_SPOOL_DIR");
    unsetenv("RELAY25_MAX_SPOOL_SIZE");
    unsetenv("RELAY25_MAX_QUEUE_AGE");
    unsetenv("RELAY25_BOUNCE");
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->mode, CONF_MODE_PASSTHROUGH);
        ASSERT_STREQ(c->spool_dir, "/var/spool/relay25");
        ASSERT_EQ(c->max_spool_size, 0);
        ASSERT_EQ(c->max_queue_age, 259200);
        ASSERT_EQ(c->devices[0].mode, CONF_MODE_PASSTHROUGH);
        ASSERT_EQ(c->devices[0].nups, 1);
    }
    conf_free(c);

    /* an empty variable counts as unset: RELAY25_RUN_AS= keeps the default */
    setenv("RELAY25_RUN_AS", "", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_TRUE(c && c->user == NULL);
    conf_free(c);

    {
        static const struct {
            const char *var, *val, *want;
        } bad[] = {
            {"RELAY25_RUN_AS", "root", "RELAY25_RUN_AS: relay25 does not keep root privileges"},
            {"RELAY25_LOG", "journal", "RELAY25_LOG: bad value 'journal' (stderr or syslog)"},
            {"RELAY25_LOG_FORMAT", "yaml", "RELAY25_LOG_FORMAT: bad value 'yaml' (text or json)"},
            {"RELAY25_METRICS_LISTEN", "metrics:9325", "RELAY25_METRICS_LISTEN: bad address"},
            {"RELAY25_MAX_CONNECTIONS", "0", "RELAY25_MAX_CONNECTIONS: bad number '0' (1 to"},
            {"RELAY25_MAX_CONNECTIONS_PER_IP", "x", "RELAY25_MAX_CONNECTIONS_PER_IP: bad number"},
            {"RELAY25_MESSAGE_RATE", "30/min", "RELAY25_MESSAGE_RATE: bad rate '30/min'"},
            {"RELAY25_RECIPIENT_RATE", "5", "RELAY25_RECIPIENT_RATE: bad rate '5'"},
            {"RELAY25_ALLOWED_SENDERS", "a@b@c", "RELAY25_ALLOWED_SENDERS: bad address 'a@b@c'"},
            {"RELAY25_ALLOWED_RECIPIENTS", "<>", "RELAY25_ALLOWED_RECIPIENTS: bad address '<>'"},
            {"RELAY25_SUBMIT", "127.0.0.1", "RELAY25_SUBMIT: bad address '127.0.0.1'"},
            {"RELAY25_ORIGIN", "a@b", "RELAY25_ORIGIN: bad origin 'a@b'"},
            {"RELAY25_RATE_LIMIT_BY", "ip", "RELAY25_RATE_LIMIT_BY: bad value 'ip'"},
            {"RELAY25_MODE", "store", "RELAY25_MODE: bad value 'store' (passthrough or spool)"},
            {"RELAY25_ON_UPSTREAM_FAILURE", "spool",
             "RELAY25_ON_UPSTREAM_FAILURE: bad value 'spool' (reject or queue)"},
            {"RELAY25_SPOOL_DIR", "spool", "RELAY25_SPOOL_DIR: 'spool' is not an absolute path"},
            {"RELAY25_MAX_SPOOL_SIZE", "1T", "RELAY25_MAX_SPOOL_SIZE: bad size '1T'"},
            {"RELAY25_MAX_QUEUE_AGE", "1w", "RELAY25_MAX_QUEUE_AGE: bad duration '1w'"},
            {"RELAY25_MAX_QUEUE_AGE", "366d", "RELAY25_MAX_QUEUE_AGE: bad duration '366d'"},
            {"RELAY25_BOUNCE", "none", "RELAY25_BOUNCE: bad value 'none' (dsn, keep or drop)"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            const char *old = getenv(bad[i].var);
            char keep[128] = "";

            if (old) {
                snprintf(keep, sizeof(keep), "%s", old);
            }
            setenv(bad[i].var, bad[i].val, 1);
            c = conf_load(NULL, 0, err, sizeof(err));
            ASSERT_TRUE(c == NULL);
            ASSERT_TRUE(strncmp(err, bad[i].want, strlen(bad[i].want)) == 0);
            if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0) {
                fprintf(stderr, "  want \"%s...\", got \"%s\"\n", bad[i].want, err);
            }
            conf_free(c);
            setenv(bad[i].var, keep, 1);
        }
    }
    env_clear();
}

static void test_parsers(void)
{
    uint64_t v = 0;
    struct sockaddr_storage ss;
    socklen_t len = 0;

    ASSERT_EQ(conf_parse_size("35M", &v), 0);
    ASSERT_EQ(v, 36700160);
    ASSERT_EQ(conf_parse_size("512K", &v), 0);
    ASSERT_EQ(v, 524288);
    ASSERT_EQ(conf_parse_size("1G", &v), 0);
    ASSERT_EQ(v, 1073741824);
    ASSERT_EQ(conf_parse_size("1000", &v), 0);
    ASSERT_EQ(v, 1000);
    ASSERT_EQ(conf_parse_size("2m", &v), 0);
    ASSERT_EQ(v, 2097152);
    ASSERT_EQ(conf_parse_size("18446744073709551615", &v), 0);
    ASSERT_EQ(conf_parse_size("18446744073709551616", &v), -1);
    ASSERT_EQ(conf_parse_size("17179869184G", &v), -1);
    ASSERT_EQ(conf_parse_size("", &v), -1);
    ASSERT_EQ(conf_parse_size("M", &v), -1);
    ASSERT_EQ(conf_parse_size("-1", &v), -1);
    ASSERT_EQ(conf_parse_size("1 M", &v), -1);
    ASSERT_EQ(conf_parse_size("1MB", &v), -1);

    ASSERT_EQ(conf_parse_hostport("0.0.0.0:25", 1, &ss, &len), 0);
    ASSERT_EQ(ss.ss_family, AF_INET);
    ASSERT_EQ(len, sizeof(struct sockaddr_in));
    ASSERT_EQ(port_of(&ss), 25);
    ASSERT_EQ(conf_parse_hostport("[::]:25", 1, &ss, &len), 0);
    ASSERT_EQ(ss.ss_family, AF_INET6);
    ASSERT_EQ(len, sizeof(struct sockaddr_in6));
    ASSERT_EQ(port_of(&ss), 25);
    ASSERT_EQ(conf_parse_hostport("127.0.0.1", 2525, &ss, &len), 0);
    ASSERT_EQ(port_of(&ss), 2525);
    ASSERT_EQ(conf_parse_hostport("[::1]", 2525, &ss, &len), 0);
    ASSERT_EQ(port_of(&ss), 2525);
    ASSERT_EQ(conf_parse_hostport("::1", 2525, &ss, &len), 0);
    ASSERT_EQ(ss.ss_family, AF_INET6);
    ASSERT_EQ(conf_parse_hostport("127.0.0.1:0", 25, &ss, &len), 0);
    ASSERT_EQ(port_of(&ss), 0);
    ASSERT_EQ(conf_parse_hostport("localhost:25", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("127.0.0.1:", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("127.0.0.1:65536", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("[::1]25", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("[127.0.0.1]:25", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("[::1", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport("", 25, &ss, &len), -1);
    ASSERT_EQ(conf_parse_hostport(":25", 25, &ss, &len), -1);
}

/* max_connections_per_ip: 0 is unlimited (as documented), and the per-address limit
 * skips loopback unless max_connections_per_ip_exempt says otherwise (issue 15). */
static void test_per_ip(void)
{
    char err[512];
    struct conf *c = load_text(UP DEV, err, sizeof(err));
    struct sockaddr_storage a;

    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->nper_ip_exempt, 2);
        if (c->nper_ip_exempt == 2) {
            a = sa4("127.0.0.9");
            ASSERT_TRUE(cidr_match(&c->per_ip_exempt[0], (struct sockaddr *)&a));
            a = sa4("128.0.0.1");
            ASSERT_TRUE(!cidr_match(&c->per_ip_exempt[0], (struct sockaddr *)&a));
            a = sa6("::1");
            ASSERT_TRUE(cidr_match(&c->per_ip_exempt[1], (struct sockaddr *)&a));
        }
        conf_free(c);
    }
    c = load_text(UP DEV "[relay]\nmax_connections_per_ip = 0\nmax_connections_per_ip_exempt =\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->max_connections_per_ip, 0);
        ASSERT_EQ(c->nper_ip_exempt, 0);
        conf_free(c);
    }
    c = load_text(UP DEV "[relay]\nmax_connections_per_ip_exempt = None\n", err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->max_connections_per_ip, 50);
        ASSERT_EQ(c->nper_ip_exempt, 0);
        conf_free(c);
    }
    c = load_text(UP DEV "[relay]\nmax_connections_per_ip_exempt = 10.0.0.0/8, fd00::/8\n"
                         "  192.168.1.7\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->nper_ip_exempt, 3);
        a = sa4("127.0.0.1");
        for (size_t i = 0; i < c->nper_ip_exempt; i++) {
            ASSERT_TRUE(!cidr_match(&c->per_ip_exempt[i], (struct sockaddr *)&a));
        }
        conf_free(c);
    }
    EXPECT_ERR("[relay]\nrefused_timeout = 0\n",
               "relay25.conf:2: refused_timeout: ", "bad number '0' (seconds, 1 to 86400)");
    EXPECT_ERR("[relay]\nrefused_timeout = 5s\n",
               "relay25.conf:2: refused_timeout: ", "bad number '5s'");
    c = load_text(UP DEV "[relay]\nrefused_timeout = 60\n", err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->refused_timeout, 60);
        conf_free(c);
    }
    EXPECT_ERR("[relay]\nmax_connections_per_ip_exempt = 10.0.0.0/33\n",
               "relay25.conf:2: max_connections_per_ip_exempt: ", "bad network '10.0.0.0/33'");
    EXPECT_ERR("[relay]\nmax_connections_per_ip_exempt = localhost\n",
               "relay25.conf:2: max_connections_per_ip_exempt: ", "bad network 'localhost'");
    EXPECT_ERR("[relay]\nmax_connections_per_ip = -1\n",
               "relay25.conf:2: max_connections_per_ip: ", "bad number '-1' (0 for unlimited");
    EXPECT_ERR("[relay]\nmax_connections_per_ip = 1000001\n",
               "relay25.conf:2: max_connections_per_ip: ", "bad number '1000001'");
    EXPECT_ERR(UP DEV "max_connections_per_ip_exempt = 10.0.0.1\n", "relay25.conf:6: ",
               "unknown key 'max_connections_per_ip_exempt' in [device default]");

    /* the environment cannot pass an empty list: "none" */
    env_clear();
    setenv("RELAY25_UPSTREAM", "smtp.example.com:587", 1);
    setenv("RELAY25_USER", "office@example.com", 1);
    setenv("RELAY25_PASSWORD", "p", 1);
    setenv("RELAY25_MAX_CONNECTIONS_PER_IP", "0", 1);
    setenv("RELAY25_MAX_CONNECTIONS_PER_IP_EXEMPT", "none", 1);
    c = conf_load(NULL, 0, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->max_connections_per_ip, 0);
        ASSERT_EQ(c->nper_ip_exempt, 0);
        conf_free(c);
    }
    env_clear();
}

static const char policy_text[] = "[relay]\n"                                          /* 1 */
                                  "max_connections = 50\n"                             /* 2 */
                                  "max_connections_per_ip = 5\n"                       /* 3 */
                                  "max_recipients = 100\n"                             /* 4 */
                                  "max_header_size = 64K\n"                            /* 5 */
                                  "max_errors = 3\n"                                   /* 6 */
                                  "max_commands_before_mail = 0\n"                     /* 7 */
                                  "max_messages_per_session = 0\n"                     /* 8 */
                                  "session_timeout = 600\n"                            /* 9 */
                                  "message_rate = 30/minute\n"                         /* 10 */
                                  "recipient_rate = 500/hour\n"                        /* 11 */
                                  "allowed_senders = @Example.COM, Boss@Example.org\n" /* 12 */
                                  "  <>  example.net ; bounces too\n"                  /* 13 */
                                  "allowed_recipients = example.org\n"                 /* 14 */
                                  "proxy_protocol = yes\n"                             /* 15 */
                                  "proxy_from = 10.0.0.1, 10.0.1.0/24\n"               /* 16 */
                                  "  fd00::1\n"                                        /* 17 */
                                  "user = _relay25\n"                                  /* 18 */
                                  "log = syslog\n"                                     /* 19 */
                                  "log_format = json\n"                                /* 20 */
                                  "metrics_listen = [::1]:9100\n"                      /* 21 */
                                  "[sendmail]\n"                                       /* 22 */
                                  "submit = [::1]:2525\n"                              /* 23 */
                                  "[upstream gmail]\n"                                 /* 24 */
                                  "host = smtp.gmail.com\n"                            /* 25 */
                                  "[device default]\n"                                 /* 26 */
                                  "user = office@example.com\n"                        /* 27 */
                                  "password = hunter2\n"                               /* 28 */
                                  "[device scanner]\n"                                 /* 29 */
                                  "match = 192.168.1.50\n"                             /* 30 */
                                  "user = s\n"                                         /* 31 */
                                  "password = p\n"                                     /* 32 */
                                  "message_rate = unlimited\n"                         /* 33 */
                                  "recipient_rate = 10/second\n"                       /* 34 */
                                  "allowed_senders = Scanner@Example.com\n"            /* 35 */
                                  "allowed_recipients =\n"                             /* 36 */
                                  "[device cam]\n"                                     /* 37 */
                                  "match = 192.168.1.60\n"                             /* 38 */
                                  "user = c\n"                                         /* 39 */
                                  "password = p\n"                                     /* 40 */
                                  "recipient_rate = 1/day\n";                          /* 41 */

/* Limits, rates, address policy, PROXY, host integration, [sendmail]; devices inherit
 * the [relay] policy unless they set their own. */
static void test_policy(void)
{
    char err[512] = "";
    struct conf *c = load_text(policy_text, err, sizeof(err));
    const struct conf_device *d;

    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(err, "");
    if (!c) {
        fprintf(stderr, "  policy: %s\n", err);
        return;
    }
    ASSERT_EQ(c->max_connections, 50);
    ASSERT_EQ(c->max_connections_per_ip, 5);
    ASSERT_EQ(c->max_recipients, 100);
    ASSERT_EQ(c->max_header_size, 64 * 1024);
    ASSERT_EQ(c->max_errors, 3);
    ASSERT_EQ(c->max_commands_before_mail, 0);
    ASSERT_EQ(c->max_messages_per_session, 0);
    ASSERT_EQ(c->session_timeout, 600);
    ASSERT_EQ(c->max_message_size, 36700160); /* set_size writes only its own field */
    ASSERT_EQ(c->message_rate.count, 30);
    ASSERT_EQ(c->message_rate.per_seconds, 60);
    ASSERT_EQ(c->recipient_rate.count, 500);
    ASSERT_EQ(c->recipient_rate.per_seconds, 3600);
    ASSERT_EQ(c->allowed_senders.n, 4);
    if (c->allowed_senders.n == 4) {
        ASSERT_STREQ(c->allowed_senders.items[0], "@example.com"); /* lower-cased */
        ASSERT_STREQ(c->allowed_senders.items[1], "boss@example.org");
        ASSERT_STREQ(c->allowed_senders.items[2], "<>");
        ASSERT_STREQ(c->allowed_senders.items[3], "example.net");
    }
    ASSERT_EQ(c->allowed_recipients.n, 1);
    ASSERT_STREQ(c->allowed_recipients.n ? c->allowed_recipients.items[0] : NULL, "example.org");
    ASSERT_EQ(c->proxy_protocol, 1);
    ASSERT_EQ(c->nproxy_from, 3);
    if (c->nproxy_from == 3) {
        ASSERT_STREQ(fmt_cidr(&c->proxy_from[0]), "10.0.0.1/32");
        ASSERT_STREQ(fmt_cidr(&c->proxy_from[1]), "10.0.1.0/24");
        ASSERT_STREQ(fmt_cidr(&c->proxy_from[2]), "fd00::1/128");
    }
    ASSERT_STREQ(c->user, "_relay25");
    ASSERT_EQ(c->log_syslog, 1);
    ASSERT_EQ(c->log_json, 1);
    ASSERT_EQ(c->metrics_enabled, 1);
    ASSERT_STREQ(c->metrics_listen.text, "[::1]:9100");
    ASSERT_EQ(c->metrics_listen.addr.ss_family, AF_INET6);
    ASSERT_EQ(c->metrics_listen.addrlen, sizeof(struct sockaddr_in6));
    ASSERT_EQ(port_of(&c->metrics_listen.addr), 9100);
    ASSERT_STREQ(c->submit, "[::1]:2525");

    ASSERT_EQ(c->ndevices, 3);
    if (c->ndevices != 3) {
        conf_free(c);
        return;
    }
    /* [device default] sets nothing: everything from [relay], lists deep-copied */
    d = &c->devices[0];
    ASSERT_EQ(d->message_rate.count, 30);
    ASSERT_EQ(d->message_rate.per_seconds, 60);
    ASSERT_EQ(d->recipient_rate.count, 500);
    ASSERT_EQ(d->recipient_rate.per_seconds, 3600);
    ASSERT_EQ(d->allowed_senders.n, 4);
    ASSERT_TRUE(d->allowed_senders.items != c->allowed_senders.items);
    if (d->allowed_senders.n == 4) {
        for (size_t i = 0; i < 4; i++) {
            ASSERT_STREQ(d->allowed_senders.items[i], c->allowed_senders.items[i]);
            ASSERT_TRUE(d->allowed_senders.items[i] != c->allowed_senders.items[i]);
        }
    }
    ASSERT_EQ(d->allowed_recipients.n, 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "Anyone@EXAMPLE.com"), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "boss@example.ORG"), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "staff@example.org"), 0);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "x@example.net"), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, ""), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_recipients, "x@example.org"), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_recipients, "x@example.com"), 0);

    /* [device scanner] overrides all four; an explicit unlimited and an empty list
     * lift the [relay] values */
    d = &c->devices[1];
    ASSERT_STREQ(d->name, "scanner");
    ASSERT_EQ(d->message_rate.count, 0);
    ASSERT_EQ(d->recipient_rate.count, 10);
    ASSERT_EQ(d->recipient_rate.per_seconds, 1);
    ASSERT_EQ(d->allowed_senders.n, 1);
    ASSERT_STREQ(d->allowed_senders.n ? d->allowed_senders.items[0] : NULL, "scanner@example.com");
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "SCANNER@example.com"), 1);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, "boss@example.org"), 0);
    ASSERT_EQ(conf_patterns_match(&d->allowed_senders, ""), 0); /* no "<>": bounces refused */
    ASSERT_EQ(d->allowed_recipients.n, 0);
    ASSERT_EQ(conf_patterns_match(&d->allowed_recipients, "x@example.com"), 1);

    /* [device cam] overrides one key, inherits the rest */
    d = &c->devices[2];
    ASSERT_STREQ(d->name, "cam");
    ASSERT_EQ(d->message_rate.count, 30);
    ASSERT_EQ(d->recipient_rate.count, 1);
    ASSERT_EQ(d->recipient_rate.per_seconds, 86400);
    ASSERT_EQ(d->allowed_senders.n, 4);
    ASSERT_EQ(d->allowed_recipients.n, 1);
    ASSERT_TRUE(d->allowed_recipients.items != c->devices[0].allowed_recipients.items);
    conf_free(c);

    /* the remaining spellings */
    c = load_text(UP DEV "[relay]\nproxy_protocol = no\nlog = stderr\nlog_format = text\n"
                         "log_timestamps = no\n"
                         "metrics_listen = 127.0.0.1\nmessage_rate = 0\n"
                         "max_commands_before_mail = 1000000\nallowed_senders =\n"
                         "[sendmail]\nsubmit = 127.0.0.1:25\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->proxy_protocol, 0);
        ASSERT_EQ(c->log_syslog, 0);
        ASSERT_EQ(c->log_json, 0);
        ASSERT_EQ(c->log_timestamps, 2); /* no */
        ASSERT_EQ(c->metrics_enabled, 1);
        ASSERT_STREQ(c->metrics_listen.text, "127.0.0.1");
        ASSERT_EQ(port_of(&c->metrics_listen.addr), 9325);
        ASSERT_EQ(c->message_rate.count, 0);
        ASSERT_EQ(c->max_commands_before_mail, 1000000);
        ASSERT_EQ(c->allowed_senders.n, 0);
        ASSERT_EQ(c->devices[0].allowed_senders.n, 0);
        ASSERT_STREQ(c->submit, "127.0.0.1:25");
    }
    conf_free(c);
}

static const char spool_text[] = "[device default]\n"               /* 1 */
                                 "upstream = m365, sendgrid\n"      /* 2 */
                                 "user = office@example.com\n"      /* 3 */
                                 "password = p\n"                   /* 4 */
                                 "[device scanner]\n"               /* 5 */
                                 "match = 192.168.1.50\n"           /* 6 */
                                 "user = s\n"                       /* 7 */
                                 "password = p\n"                   /* 8 */
                                 "upstream = sendgrid,\n"           /* 9 */
                                 "  backup m365 ; last resort\n"    /* 10 */
                                 "mode = passthrough\n"             /* 11 */
                                 "on_upstream_failure = reject\n"   /* 12 */
                                 "[device cam]\n"                   /* 13 */
                                 "match = 192.168.1.60\n"           /* 14 */
                                 "user = c\n"                       /* 15 */
                                 "password = p\n"                   /* 16 */
                                 "upstream = backup\n"              /* 17 */
                                 "mode = passthrough\n"             /* 18 */
                                 "[relay]\n"                        /* 19 */
                                 "mode = spool\n"                   /* 20 */
                                 "on_upstream_failure = queue\n"    /* 21 */
                                 "spool_dir = /srv/relay25/spool\n" /* 22 */
                                 "max_spool_size = 2G\n"            /* 23 */
                                 "max_queue_age = 12h\n"            /* 24 */
                                 "retry_min = 5m\n"                 /* 25 */
                                 "retry_max = 2h\n"                 /* 26 */
                                 "bounce = keep\n"                  /* 27 */
                                 "[upstream m365]\n"                /* 28 */
                                 "host = smtp.office365.com\n"      /* 29 */
                                 "max_connections = 10\n"           /* 30 */
                                 "[upstream sendgrid]\n"            /* 31 */
                                 "host = smtp.sendgrid.net\n"       /* 32 */
                                 "max_connections = 1000\n"         /* 33 */
                                 "[upstream backup]\n"              /* 34 */
                                 "host = 192.0.2.25\n"              /* 35 */
                                 "max_connections = 1\n";           /* 36 */

/* The spool keys, per-upstream concurrency, failover lists; [device] mode and
 * on_upstream_failure come from [relay] even when [relay] is written after them. */
static void test_spool(void)
{
    char err[512] = "";
    struct conf *c = load_text(spool_text, err, sizeof(err));
    const struct conf_device *d;

    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(err, "");
    if (!c) {
        fprintf(stderr, "  spool: %s\n", err);
        return;
    }
    ASSERT_EQ(c->mode, CONF_MODE_SPOOL);
    ASSERT_EQ(c->on_failure, CONF_ON_FAILURE_QUEUE);
    ASSERT_STREQ(c->spool_dir, "/srv/relay25/spool");
    ASSERT_EQ(c->max_spool_size, 2ull << 30);
    ASSERT_EQ(c->max_queue_age, 12 * 3600);
    ASSERT_EQ(c->retry_min, 300);
    ASSERT_EQ(c->retry_max, 7200);
    ASSERT_EQ(c->bounce, CONF_BOUNCE_KEEP);
    ASSERT_EQ(c->nupstreams, 3);
    ASSERT_EQ(c->ndevices, 3);
    if (c->nupstreams != 3 || c->ndevices != 3) {
        conf_free(c);
        return;
    }
    ASSERT_EQ(c->upstreams[0].max_connections, 10);
    ASSERT_EQ(c->upstreams[1].max_connections, 1000);
    ASSERT_EQ(c->upstreams[2].max_connections, 1);

    /* the failover order is the order written */
    d = &c->devices[0];
    ASSERT_EQ(d->nups, 2);
    if (d->nups == 2) {
        ASSERT_TRUE(d->ups[0] == &c->upstreams[0]);
        ASSERT_TRUE(d->ups[1] == &c->upstreams[1]);
    }
    ASSERT_TRUE(d->up == &c->upstreams[0]);
    ASSERT_EQ(d->mode, CONF_MODE_SPOOL);
    ASSERT_EQ(d->on_failure, CONF_ON_FAILURE_QUEUE);

    /* continued on an indented line, with a comment */
    d = &c->devices[1];
    ASSERT_EQ(d->nups, 3);
    if (d->nups == 3) {
        ASSERT_STREQ(d->ups[0]->name, "sendgrid");
        ASSERT_STREQ(d->ups[1]->name, "backup");
        ASSERT_STREQ(d->ups[2]->name, "m365");
    }
    ASSERT_TRUE(d->up == &c->upstreams[1]);
    ASSERT_EQ(d->mode, CONF_MODE_PASSTHROUGH);
    ASSERT_EQ(d->on_failure, CONF_ON_FAILURE_REJECT);

    /* one key set, the other inherited */
    d = &c->devices[2];
    ASSERT_EQ(d->nups, 1);
    ASSERT_TRUE(d->nups == 1 && d->ups[0] == &c->upstreams[2]);
    ASSERT_TRUE(d->up == &c->upstreams[2]);
    ASSERT_EQ(d->mode, CONF_MODE_PASSTHROUGH);
    ASSERT_EQ(d->on_failure, CONF_ON_FAILURE_QUEUE);
    conf_free(c);

    /* the other spellings; `upstream` repeats like the other lists; equal retry
     * bounds are fine */
    c = load_text("[upstream a]\nhost = a.example\n[upstream b]\nhost = b.example\n"
                  "[device default]\nuser = u\npassword = p\nupstream = b\nupstream = a\n"
                  "mode = spool\non_upstream_failure = queue\n"
                  "[relay]\nbounce = drop\nmax_spool_size = 0\nmax_queue_age = 1\n"
                  "retry_min = 90s\nretry_max = 90\nspool_dir = /\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->bounce, CONF_BOUNCE_DROP);
        ASSERT_EQ(c->max_spool_size, 0);
        ASSERT_EQ(c->max_queue_age, 1);
        ASSERT_EQ(c->retry_min, 90);
        ASSERT_EQ(c->retry_max, 90);
        ASSERT_STREQ(c->spool_dir, "/");
        ASSERT_EQ(c->mode, CONF_MODE_PASSTHROUGH);
        ASSERT_EQ(c->on_failure, CONF_ON_FAILURE_REJECT);
        ASSERT_EQ(c->devices[0].mode, CONF_MODE_SPOOL);
        ASSERT_EQ(c->devices[0].on_failure, CONF_ON_FAILURE_QUEUE);
        ASSERT_EQ(c->devices[0].nups, 2);
        ASSERT_TRUE(c->devices[0].up == &c->upstreams[1]);
        ASSERT_TRUE(c->devices[0].nups == 2 && c->devices[0].ups[1] == &c->upstreams[0]);
    }
    conf_free(c);
    if (!c) {
        fprintf(stderr, "  spool spellings: %s\n", err);
    }

    /* durations: every suffix, and both ends of 1s .. 365d */
    {
        static const struct {
            const char *text;
            unsigned want;
        } ok[] = {
            {"1", 1},
            {"1s", 1},
            {"59s", 59},
            {"90m", 5400},
            {"12h", 43200},
            {"3d", 259200},
            {"365d", 31536000},
            {"8760h", 31536000},
            {"525600m", 31536000},
            {"31536000", 31536000},
            {"31536000s", 31536000},
            {"007m", 420},
        };
        char text[256];

        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
            snprintf(text, sizeof(text), UP DEV "[relay]\nmax_queue_age = %s\n", ok[i].text);
            c = load_text(text, err, sizeof(err));
            ASSERT_TRUE(c != NULL);
            ASSERT_EQ(c ? c->max_queue_age : 0, ok[i].want);
            if (!c || c->max_queue_age != ok[i].want) {
                fprintf(stderr, "  duration '%s': %s\n", ok[i].text, c ? "wrong value" : err);
            }
            conf_free(c);
        }
    }
}

/* rate_limit_by: [relay] sets the devices' default, a device its own; the DATA
 * rate keys with units and 0 for off. */
static void test_rate_by(void)
{
    char err[512] = "";
    struct conf *c = load_text("[relay]\n"
                               "rate_limit_by = device\n"
                               "data_min_rate = 0\n"
                               "data_rate_window = 2m\n" UP DEV "[device scanner]\n"
                               "match = 192.168.1.50\n"
                               "user = s\n"
                               "password = p\n"
                               "rate_limit_by = address\n",
                               err, sizeof(err));

    ASSERT_TRUE(c != NULL);
    ASSERT_STREQ(err, "");
    if (!c) {
        return;
    }
    ASSERT_EQ(c->rate_by, CONF_RATE_BY_DEVICE);
    ASSERT_EQ(c->data_min_rate, 0);
    ASSERT_EQ(c->data_rate_window, 120);
    ASSERT_EQ(c->ndevices, 2);
    if (c->ndevices == 2) {
        ASSERT_EQ(c->devices[0].rate_by, CONF_RATE_BY_DEVICE);
        ASSERT_EQ(c->devices[1].rate_by, CONF_RATE_BY_ADDRESS);
    }
    conf_free(c);
    c = load_text("[relay]\ndata_min_rate = 500\ndata_rate_window = 45\n" UP DEV, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->data_min_rate, 500);
        ASSERT_EQ(c->data_rate_window, 45);
        ASSERT_EQ(c->devices[0].rate_by, CONF_RATE_BY_ADDRESS);
    }
    conf_free(c);
}

static void test_rate_and_patterns(void)
{
    struct conf_rate r = {7, 7};
    char *items[] = {"@example.com", "boss@example.org", "example.net", "<>"};
    struct conf_patterns p = {items, 4};
    struct conf_patterns none = {NULL, 0};

    ASSERT_EQ(conf_parse_rate("30/minute", &r), 0);
    ASSERT_EQ(r.count, 30);
    ASSERT_EQ(r.per_seconds, 60);
    ASSERT_EQ(conf_parse_rate("1/second", &r), 0);
    ASSERT_EQ(r.count, 1);
    ASSERT_EQ(r.per_seconds, 1);
    ASSERT_EQ(conf_parse_rate("500/hour", &r), 0);
    ASSERT_EQ(r.per_seconds, 3600);
    ASSERT_EQ(conf_parse_rate("1000000/day", &r), 0);
    ASSERT_EQ(r.count, 1000000);
    ASSERT_EQ(r.per_seconds, 86400);
    ASSERT_EQ(conf_parse_rate("0", &r), 0);
    ASSERT_EQ(r.count, 0);
    ASSERT_EQ(r.per_seconds, 0);
    r.count = 9;
    ASSERT_EQ(conf_parse_rate("unlimited", &r), 0);
    ASSERT_EQ(r.count, 0);

    r.count = 7;
    r.per_seconds = 7;
    {
        static const char *const bad[] = {
            "",           "30",          "30/",
            "/minute",    "0/minute",    "-1/minute",
            "+1/minute",  "x/minute",    "30/min",
            "30/sec",     "30/h",        "30/d",
            "30/Minute",  "30/minutes",  "30 /minute",
            "30/ minute", "30/minute/",  "Unlimited",
            "00",         "1000001/day", "99999999999999999999/day",
            "30/week",    "0x10/hour",   "3.5/hour",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            ASSERT_EQ(conf_parse_rate(bad[i], &r), -1);
            if (r.count != 7 || r.per_seconds != 7) {
                fprintf(stderr, "  rate '%s' changed the output\n", bad[i]);
            }
        }
        ASSERT_EQ(r.count, 7);
        ASSERT_EQ(r.per_seconds, 7);
    }

    /* "@domain" and "domain": that exact domain, any case */
    ASSERT_EQ(conf_patterns_match(&p, "x@example.com"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "x@EXAMPLE.com"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "X@Example.Com"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "y@example.net"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "y@Example.NET"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "x@sub.example.com"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "x@badexample.com"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "x@example.com.evil"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "x@example.com."), 0);
    ASSERT_EQ(conf_patterns_match(&p, "x@sub.example.net"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "example.com"), 0); /* no '@': not at the domain */
    ASSERT_EQ(conf_patterns_match(&p, "example.com@other.example"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "\"a@b\"@example.com"), 1); /* domain after the last @ */
    /* exact addresses compare whole */
    ASSERT_EQ(conf_patterns_match(&p, "boss@example.org"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "BOSS@Example.ORG"), 1);
    ASSERT_EQ(conf_patterns_match(&p, "xboss@example.org"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "boss@example.org.uk"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "staff@example.org"), 0);
    ASSERT_EQ(conf_patterns_match(&p, "boss@sub.example.org"), 0);
    /* the null sender matches only "<>" (or an empty list) */
    ASSERT_EQ(conf_patterns_match(&p, ""), 1);
    p.n = 3;
    ASSERT_EQ(conf_patterns_match(&p, ""), 0);
    ASSERT_EQ(conf_patterns_match(&p, "<>"), 0);
    ASSERT_EQ(conf_patterns_match(&none, ""), 1);
    ASSERT_EQ(conf_patterns_match(&none, "anyone@anywhere.example"), 1);
    ASSERT_EQ(conf_patterns_match(NULL, "anyone@anywhere.example"), 1);
    items[0] = "<>";
    p.n = 1;
    ASSERT_EQ(conf_patterns_match(&p, ""), 1);
    ASSERT_EQ(conf_patterns_match(&p, "x@example.com"), 0);
}

/* Trust anchors: loaded once per distinct ca_file, shared, errors at the upstream's line. */
static void test_ca(void)
{
    char err[512];
    struct conf *c;

    c = load_text("[device default]\nuser = u\npassword = p\nupstream = a\n"
                  "[upstream a]\nhost = a.example\nca_file = ./no-such-ca.pem\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL); /* load_ca = 0: not read */
    conf_free(c);
    c = conf_load(CONF, 1, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "relay25.conf:5: [upstream a]: ", 30) == 0);
    ASSERT_TRUE(strstr(err, "./no-such-ca.pem") != NULL);

    if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
        c = load_text("[upstream a]\nhost = a.example\n[upstream b]\nhost = b.example\n"
                      "[device default]\nupstream = a\nuser = u\npassword = p\n",
                      err, sizeof(err));
        conf_free(c);
        c = conf_load(CONF, 1, err, sizeof(err));
        ASSERT_TRUE(c != NULL);
        if (c) {
            ASSERT_TRUE(c->upstreams[0].ca != NULL);
            ASSERT_TRUE(c->upstreams[0].ca == c->upstreams[1].ca);
        }
        conf_free(c);
    }
}

/* auth = xoauth2: the token sources, their keys' checks and secrets. Paths are
 * absolute (the refresh token file must be), under the test's temp dir. */
static void test_oauth(void)
{
    char err[512], text[2048], rt[400], cs[400];
    const char *dev = "[device default]\nuser = scanner@contoso.com\nauth = xoauth2\n";
    struct conf *c;

    snprintf(rt, sizeof(rt), "%s/refresh.token", tmpdir);
    snprintf(cs, sizeof(cs), "%s/client.secret", tmpdir);
    write_file(rt, "rt-s3cret-0\n", 12);
    write_file(cs, "cs-s3cret\n", 10);

    /* refresh_token grant (the default), client secret from a file */
    snprintf(text, sizeof(text),
             UP "%soauth_token_url = https://login.microsoftonline.com/contoso/oauth2/v2.0/token\n"
                "oauth_client_id = 1234-abcd\noauth_client_secret_file = %s\n"
                "oauth_scope = https://outlook.office.com/SMTP.Send offline_access\n"
                "oauth_refresh_token_file = %s\n",
             dev, cs, rt);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        const struct conf_device *d = &c->devices[0];
        ASSERT_EQ(d->auth, CONF_AUTH_XOAUTH2);
        ASSERT_EQ(d->oauth.grant, CONF_OAUTH_REFRESH_TOKEN);
        ASSERT_TRUE(d->password == NULL);
        ASSERT_STREQ(d->oauth.host, "login.microsoftonline.com");
        ASSERT_EQ(d->oauth.port, 443);
        ASSERT_STREQ(d->oauth.path, "/contoso/oauth2/v2.0/token");
        ASSERT_STREQ(d->oauth.client_id, "1234-abcd");
        ASSERT_STREQ(d->oauth.client_secret, "cs-s3cret");
        ASSERT_TRUE(strncmp(d->oauth.client_secret_source, "file /", 6) == 0);
        ASSERT_STREQ(d->oauth.scope, "https://outlook.office.com/SMTP.Send offline_access");
        ASSERT_STREQ(d->oauth.refresh_token_file, rt);
        ASSERT_STREQ(d->oauth.refresh_token, "rt-s3cret-0");
        ASSERT_TRUE(d->oauth.argv == NULL);
    }
    conf_free(c);

    /* public client (no secret), URL with port, query, fragment; IPv6 literal */
    snprintf(text, sizeof(text),
             UP "%soauth_token_url = https://idp.example:8443/t?tenant=a#frag\n"
                "oauth_client_id = c\noauth_refresh_token_file = %s\n",
             dev, rt);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->devices[0].oauth.port, 8443);
        ASSERT_STREQ(c->devices[0].oauth.path, "/t?tenant=a");
        ASSERT_TRUE(c->devices[0].oauth.client_secret == NULL);
        ASSERT_TRUE(c->devices[0].oauth.scope == NULL);
    }
    conf_free(c);
    snprintf(text, sizeof(text),
             UP "%soauth_token_url = https://[::1]:9443\noauth_client_id = c\n"
                "oauth_refresh_token_file = %s\n",
             dev, rt);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->devices[0].oauth.host, "::1");
        ASSERT_STREQ(c->devices[0].oauth.path, "/");
    }
    conf_free(c);

    /* client_credentials (Microsoft 365 app-only), secret from the environment */
    setenv("RELAY25_TEST_OAUTH_SECRET", "env-s3cret", 1);
    c = load_text(UP "[device default]\nuser = u@contoso.com\nauth = xoauth2\n"
                     "oauth_grant = client_credentials\n"
                     "oauth_token_url = https://login.example/t\noauth_client_id = c\n"
                     "oauth_client_secret_env = RELAY25_TEST_OAUTH_SECRET\n"
                     "oauth_scope = https://outlook.office365.com/.default\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->devices[0].oauth.grant, CONF_OAUTH_CLIENT_CREDENTIALS);
        ASSERT_STREQ(c->devices[0].oauth.client_secret, "env-s3cret");
        ASSERT_STREQ(c->devices[0].oauth.client_secret_source, "env RELAY25_TEST_OAUTH_SECRET");
        ASSERT_TRUE(c->devices[0].oauth.refresh_token == NULL);
    }
    conf_free(c);

    /* a token command: words, quotes and backslashes, no shell */
    c = load_text(UP "[device default]\nuser = u\nauth = xoauth2\n"
                     "oauth_token_command = /usr/bin/get-token --user \"a b\" 'c \"d' e\\ f\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        char **v = c->devices[0].oauth.argv;
        ASSERT_EQ(c->devices[0].oauth.grant, CONF_OAUTH_COMMAND);
        ASSERT_STREQ(v[0], "/usr/bin/get-token");
        ASSERT_STREQ(v[1], "--user");
        ASSERT_STREQ(v[2], "a b");
        ASSERT_STREQ(v[3], "c \"d");
        ASSERT_STREQ(v[4], "e f");
        ASSERT_TRUE(v[5] == NULL);
    }
    conf_free(c);

    /* errors name the line and the key */
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = oauth\n",
               CONF ":5: auth: ", "bad value 'oauth' (password, xoauth2 or oauthbearer)");
    /* auth_mechanisms: names in any case, in order; [relay] is the default */
    c = load_text("[relay]\nauth_mechanisms = login\n" UP "[device default]\nuser = u\n"
                  "password = p\n[device a]\nmatch = 10.0.0.1\nuser = u\npassword = p\n"
                  "auth_mechanisms = cram-md5, PLAIN\n",
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    ASSERT_EQ(c->devices[0].auth_mechanisms[0], CONF_MECH_LOGIN);
    ASSERT_EQ(c->devices[0].auth_mechanisms[1], CONF_MECH_END);
    ASSERT_EQ(c->devices[1].auth_mechanisms[0], CONF_MECH_CRAM_MD5);
    ASSERT_EQ(c->devices[1].auth_mechanisms[1], CONF_MECH_PLAIN);
    ASSERT_EQ(c->devices[1].auth_mechanisms[2], CONF_MECH_END);
    conf_free(c);
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nauth_mechanisms = PLAIN DIGEST-MD5\n",
               CONF ":6: auth_mechanisms: ", "unknown SASL mechanism 'DIGEST-MD5'");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\noauth_device_url = https://h/d\n",
               CONF ":6: oauth_device_url: ", "only used with auth = xoauth2");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = oauthbearer\n"
                  "oauth_device_url = http://h/d\n",
               CONF ":6: oauth_device_url: ", "use https://");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\nauth_mechanisms = PLAIN, plain\n",
               CONF ":6: auth_mechanisms: ", "listed twice");
    EXPECT_ERR(UP "[device default]\nuser = u\npassword = p\noauth_client_id = c\n",
               CONF ":6: oauth_client_id: ", "only used with auth = xoauth2");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\npassword = p\n",
               CONF ":6: password: ", "not used with auth = xoauth2");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n",
               CONF ":5: auth: ", "needs oauth_token_url and oauth_client_id");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_client_id = c\n"
                  "oauth_token_url = https://h/t\n",
               CONF ":5: auth: ", "needs oauth_refresh_token_file");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_client_id = c\n"
                  "oauth_token_url = https://h/t\noauth_grant = client_credentials\n",
               CONF ":8: oauth_grant: ", "needs oauth_client_secret_file or");
    EXPECT_ERR(
        UP "[device default]\nuser = u\nauth = xoauth2\noauth_grant = password\n",
        CONF ":6: oauth_grant: ", "bad value 'password' (refresh_token or client_credentials)");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_url = http://h/t\n",
               CONF ":6: oauth_token_url: ", "plain http would expose the secrets");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_url = https:///t\n",
               CONF ":6: oauth_token_url: ", "no host");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_url = https://h:0/\n",
               CONF ":6: oauth_token_url: ", "bad port");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_token_url = https://me:pw@h/t\n",
               CONF ":6: oauth_token_url: ", "no user@");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_token_url = https://[zz]/t\n",
               CONF ":6: oauth_token_url: ", "bad IPv6 address");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_refresh_token_file = refresh.token\n",
               CONF ":6: oauth_refresh_token_file: ", "not an absolute path");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_command = get-token\n",
               CONF ":6: oauth_token_command: ", "give the program's absolute path");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_token_command = /bin/x 'open\n",
               CONF ":6: oauth_token_command: ", "unterminated quote");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_token_command = /bin/x\noauth_client_id = c\n",
               CONF ":7: oauth_client_id: ", "not used with oauth_token_command");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\n"
                  "oauth_client_secret_env = A\noauth_client_secret_file = /x\n",
               CONF ":7: oauth_client_secret_file: ", "give one of");
    EXPECT_ERR(UP "[device default]\nuser = u\nauth = xoauth2\noauth_client_secret_env = 1A\n",
               CONF ":6: oauth_client_secret_env: ", "bad variable name");
    snprintf(text, sizeof(text),
             UP "%soauth_grant = client_credentials\noauth_token_url = https://h/t\n"
                "oauth_client_id = c\noauth_client_secret_file = %s\n"
                "oauth_refresh_token_file = %s\n",
             dev, cs, rt);
    expect_err_at(__LINE__, text, CONF ":10: oauth_refresh_token_file: ",
                  "not used with oauth_grant = client_credentials");
    /* unreadable secrets: at their key's line */
    expect_err_at(__LINE__,
                  UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_url = https://h/t\n"
                     "oauth_client_id = c\noauth_refresh_token_file = /nonexistent/rt\n",
                  CONF ":8: oauth_refresh_token_file: ", "/nonexistent/rt");
    unsetenv("RELAY25_TEST_OAUTH_SECRET");
    expect_err_at(__LINE__,
                  UP "[device default]\nuser = u\nauth = xoauth2\noauth_token_url = https://h/t\n"
                     "oauth_client_id = c\noauth_grant = client_credentials\n"
                     "oauth_client_secret_env = RELAY25_TEST_OAUTH_SECRET\n",
                  CONF ":9: oauth_client_secret_env: ", "RELAY25_TEST_OAUTH_SECRET");

    /* no message shows the client secret or the refresh token */
    snprintf(text, sizeof(text),
             UP "%soauth_token_url = https://h/t\noauth_client_id = c\n"
                "oauth_client_secret_file = %s\noauth_refresh_token_file = %s\nupstream = nope\n",
             dev, cs, rt);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strstr(err, "no [upstream nope]") != NULL);
    ASSERT_TRUE(strstr(err, "s3cret") == NULL);
    conf_free(c);
    unlink(rt);
    unlink(cs);
}

/* [device] lf_line_ends (issue 13): off by default, yes/no only. */
static void test_lf_line_ends(void)
{
    char err[512];
    struct conf *c;
    static const char text[] = "[upstream main]\nhost = mx.example\n"    /* 1-2 */
                               "[device default]\nupstream = main\n"     /* 3-4 */
                               "user = o@example.com\npassword = p\n"    /* 5-6 */
                               "[device old]\nmatch = 10.0.0.9\n"        /* 7-8 */
                               "upstream = main\nuser = a@example.com\n" /* 9-10 */
                               "password = p\nlf_line_ends = yes\n";     /* 11-12 */

    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    ASSERT_EQ(c->devices[0].lf_line_ends, 0);
    ASSERT_EQ(c->devices[1].lf_line_ends, 1);
    conf_free(c);
    EXPECT_ERR("[upstream main]\nhost = mx.example\n[device default]\nupstream = main\n"
               "user = o@example.com\npassword = p\nlf_line_ends = lf\n",
               "relay25.conf:7: lf_line_ends: ", "expected yes or no, not 'lf'");
    EXPECT_ERR("[relay]\nlf_line_ends = yes\n", "relay25.conf:2: ", "lf_line_ends");
}

/* [device] rewrite_sender / rewrite_from_header and [route NAME]. */
static void test_rewrite_route(void)
{
    char err[512];
    struct conf *c;
    const struct conf_route *r;
    static const char text[] = "[upstream main]\nhost = mx.example\n"                   /* 1-2 */
                               "[upstream alt]\nhost = alt.example\n"                   /* 3-4 */
                               "[device default]\nupstream = main\n"                    /* 5-6 */
                               "user = office@example.com\npassword = pw0\n"            /* 7-8 */
                               "[device scanner]\nmatch = 10.0.0.2\n"                   /* 9-10 */
                               "upstream = main\nuser = s@example.com\n"                /* 11-12 */
                               "password = pw1\nrewrite_sender = Office@Example.com\n"  /* 13-14 */
                               "rewrite_from_header = yes\n"                            /* 15 */
                               "[route a]\nsenders = @a.example, Boss@B.example\n"      /* 16-17 */
                               "upstream = alt\nuser = route@a.example\n"               /* 18-19 */
                               "password_env = RELAY25_TEST_ROUTE_PW\n"                 /* 20 */
                               "[route b]\nsenders = @b.example\ndevices = scanner\n"   /* 21-23 */
                               "upstream = alt\nuser = rb@b.example\npassword = pwb\n"; /* 24-26 */

    setenv("RELAY25_TEST_ROUTE_PW", "route-secret", 1);
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    ASSERT_TRUE(c->devices[0].rewrite_sender == NULL);
    ASSERT_EQ(c->devices[0].rewrite_from_header, 0);
    ASSERT_STREQ(c->devices[1].rewrite_sender, "Office@Example.com"); /* as written */
    ASSERT_EQ(c->devices[1].rewrite_from_header, 1);
    ASSERT_EQ(c->nroutes, 2);
    ASSERT_STREQ(c->routes[0].cred.name, "a");
    ASSERT_STREQ(c->routes[0].cred.user, "route@a.example");
    ASSERT_STREQ(c->routes[0].cred.password, "route-secret");
    ASSERT_STREQ(c->routes[0].cred.password_source, "env RELAY25_TEST_ROUTE_PW");
    ASSERT_STREQ(c->routes[0].cred.up->name, "alt");
    ASSERT_EQ(c->routes[0].cred.nups, 1);
    ASSERT_EQ(c->routes[0].ndevices, 0);
    ASSERT_EQ(c->routes[1].ndevices, 1);
    ASSERT_STREQ(c->routes[1].cred.password, "pwb");
    /* first match in file order; devices restricts; the null sender is no domain */
    r = conf_route_for(c, &c->devices[0], "x@A.example");
    ASSERT_TRUE(r == &c->routes[0]);
    ASSERT_TRUE(conf_route_for(c, &c->devices[0], "boss@b.example") == &c->routes[0]);
    ASSERT_TRUE(conf_route_for(c, &c->devices[0], "other@b.example") == NULL);
    ASSERT_TRUE(conf_route_for(c, &c->devices[1], "other@b.example") == &c->routes[1]);
    ASSERT_TRUE(conf_route_for(c, &c->devices[1], "x@example.org") == NULL);
    ASSERT_TRUE(conf_route_for(c, &c->devices[1], "") == NULL);
    ASSERT_TRUE(conf_route_find(c, "b") == &c->routes[1]);
    ASSERT_TRUE(conf_route_find(c, "zz") == NULL);
    conf_free(c);
    unsetenv("RELAY25_TEST_ROUTE_PW");

#define RUP "[upstream main]\nhost = mx.example\n[upstream alt]\nhost = alt.example\n" /* 1-4 */
#define RDEV "[device default]\nupstream = main\nuser = o@example.com\npassword = p\n" /* 5-8 */
    /* routes */
    EXPECT_ERR(RUP RDEV
               "[route a]\nsenders = @a.example\nupstream = nope\nuser = u\npassword = p\n",
               "relay25.conf:11: ", "no [upstream nope] for [route a]");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\nupstream = alt\npassword = p\n",
               "relay25.conf:9: ", "[route a] has no user");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\nupstream = alt\nuser = u\n",
               "relay25.conf:9: ", "[route a] needs exactly one of password_file");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\nupstream = alt\nuser = u\npassword = p\n"
                        "password_env = X\n",
               "relay25.conf:14: ", "[route a] already has password (line 13)");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\nupstream = alt\nuser = u\n"
                        "password_file = /nonexistent/relay25-route.pw\n",
               "relay25.conf:13: ", "/nonexistent/relay25-route.pw");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = x@y@a.example\n",
               "relay25.conf:10: senders: ", "bad address 'x@y@a.example' (more than one");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = <a@a.example>\n",
               "relay25.conf:10: senders: ", "without angle brackets");
    EXPECT_ERR(RUP RDEV "[route a]\nupstream = alt\nuser = u\npassword = p\n",
               "relay25.conf:9: ", "[route a] needs senders");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\nuser = u\npassword = p\n",
               "relay25.conf:9: ", "[route a] needs upstream = NAME");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\ndevices = printer\nupstream = alt\n"
                        "user = u\npassword = p\n",
               "relay25.conf:9: ", "no [device printer] for [route a]");
    EXPECT_ERR(RUP RDEV "[route a]\nmatch = 10.0.0.1\n",
               "relay25.conf:10: ", "unknown key 'match' in [route a]");
    EXPECT_ERR(RUP RDEV "[route a]\nsenders = @a.example\n[route a]\n",
               "relay25.conf:11: ", "duplicate section [route a] (first on line 9)");
    EXPECT_ERR(RUP RDEV "[route]\n", "relay25.conf:9: ", "[route] needs a name");
    /* rewrite_sender */
    EXPECT_ERR(RUP RDEV "rewrite_sender = <o@example.com>\n",
               "relay25.conf:9: rewrite_sender: ", "bad address '<o@example.com>'");
    EXPECT_ERR(RUP RDEV "rewrite_sender = office\n",
               "relay25.conf:9: rewrite_sender: ", "bad address 'office' (expected local@domain)");
    EXPECT_ERR(RUP RDEV "rewrite_sender = a@b@example.com\n",
               "relay25.conf:9: rewrite_sender: ", "expected local@domain");
    EXPECT_ERR(RUP RDEV "rewrite_sender = \"a b\"@example.com\n",
               "relay25.conf:9: rewrite_sender: ", "without brackets or blanks");
    EXPECT_ERR(RUP RDEV "rewrite_sender = a@example.com.\n",
               "relay25.conf:9: rewrite_sender: ", "expected local@domain");
    EXPECT_ERR(RUP RDEV "rewrite_from_header = maybe\n",
               "relay25.conf:9: rewrite_from_header: ", "expected yes or no");
    EXPECT_ERR(RUP RDEV "rewrite_from_header = yes\n", "relay25.conf:5: ",
               "[device default] has rewrite_from_header but no rewrite_sender");
#undef RUP
#undef RDEV
}

/* inbound TLS and AUTH keys (certificates themselves: test_passwd) */
static void test_inbound(void)
{
    static const char base[] = "[relay]\n"               /* 1 */
                               "hostname = relay.test\n" /* 2 */
                               "%s"                      /* 3.. */
                               "[upstream u]\nhost = 127.0.0.1\n"
                               "[device default]\nuser = u\npassword = p\n"
                               "[device alice]\nlogin = alice\nuser = a\npassword = p\n";
    static const char users[] = "# comment\n\nalice:$y$j9T$abc$def\nbob:$6$salt$hash\n";
    char text[1024], err[512];
    struct conf *c;

    write_file("users", users, strlen(users));
    snprintf(text, sizeof(text), base,
             "tls_cert_file = /x/cert.pem\ntls_key_file = /x/key.pem\ntls_listen = 127.0.0.1:465, "
             "[::1]\ntls_min_version = 1.1\nusers_file = users\n");
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->tls_cert_file, "/x/cert.pem");
        ASSERT_EQ(c->tls_min_version, BR_TLS11);
        ASSERT_EQ(c->ntls_listen, 2);
        ASSERT_EQ(port_of(&c->tls_listen[1].addr), 465);
        ASSERT_TRUE(c->tls_cert == NULL); /* load_ca = 0 */
        ASSERT_EQ(c->nusers, 2);
        ASSERT_STREQ(c->users[0].login, "alice");
        ASSERT_STREQ(c->users[1].hash, "$6$salt$hash");
        ASSERT_EQ(c->allow_plaintext_auth, 0);
        ASSERT_STREQ(c->devices[1].login, "alice");
        ASSERT_EQ(c->devices[1].nmatch, 0);
        conf_free(c);
    }
    /* defaults: all off */
    snprintf(text, sizeof(text), base, "allow_plaintext_auth = yes\nusers_file = users\n");
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_TRUE(c->tls_cert_file == NULL);
        ASSERT_EQ(c->tls_min_version, BR_TLS12);
        ASSERT_EQ(c->allow_plaintext_auth, 1);
        ASSERT_EQ(c->auth_fail_limit, 10);
        ASSERT_EQ(c->auth_lockout, 300);
        ASSERT_EQ(c->auth_fail_delay, 1);
        conf_free(c);
    }
    /* AUTH failures per address */
    snprintf(text, sizeof(text), base,
             "allow_plaintext_auth = yes\nusers_file = users\nauth_fail_limit = 0\n"
             "auth_lockout = 1h\nauth_fail_delay = 0\n");
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->auth_fail_limit, 0);
        ASSERT_EQ(c->auth_lockout, 3600);
        ASSERT_EQ(c->auth_fail_delay, 0);
        conf_free(c);
    }
    snprintf(text, sizeof(text), base,
             "allow_plaintext_auth = yes\nusers_file = users\nauth_fail_limit = 3\n"
             "auth_lockout = 90\nauth_fail_delay = 10s\n");
    c = load_text(text, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->auth_fail_limit, 3);
        ASSERT_EQ(c->auth_lockout, 90);
        ASSERT_EQ(c->auth_fail_delay, 10);
        conf_free(c);
    }
    snprintf(text, sizeof(text), base, "auth_fail_limit = -1\n");
    EXPECT_ERR(text, CONF ":3: auth_fail_limit: ", "bad number '-1' (0 for unlimited");
    snprintf(text, sizeof(text), base, "auth_fail_limit = ten\n");
    EXPECT_ERR(text, CONF ":3: auth_fail_limit: ", "bad number 'ten'");
    snprintf(text, sizeof(text), base, "auth_lockout = 0\n");
    EXPECT_ERR(text, CONF ":3: auth_lockout: ", "bad duration '0'");
    snprintf(text, sizeof(text), base, "auth_lockout = 5w\n");
    EXPECT_ERR(text, CONF ":3: auth_lockout: ", "bad duration '5w'");
    snprintf(text, sizeof(text), base, "auth_fail_delay = 11s\n");
    EXPECT_ERR(text, CONF ":3: auth_fail_delay: ", "bad duration '11s' (0 for none, or 1s to 10s)");
    snprintf(text, sizeof(text), base, "auth_fail_delay = 0s\n");
    EXPECT_ERR(text, CONF ":3: auth_fail_delay: ", "bad duration '0s'");
    snprintf(text, sizeof(text), base, "auth_fail_delay = 1m\n");
    EXPECT_ERR(text, CONF ":3: auth_fail_delay: ", "bad duration '1m'");
    snprintf(text, sizeof(text), base, "tls_cert_file = /x/cert.pem\nusers_file = users\n");
    EXPECT_ERR(text, CONF ":3: ", "tls_cert_file and tls_key_file go together");
    snprintf(text, sizeof(text), base, "tls_listen = 127.0.0.1:465\nusers_file = users\n");
    EXPECT_ERR(text, CONF ":3: ", "tls_listen needs tls_cert_file");
    snprintf(text, sizeof(text), base, "users_file = users\n");
    EXPECT_ERR(text, CONF ":3: ", "allow_plaintext_auth = yes");
    snprintf(text, sizeof(text), base, "tls_min_version = 1.3\n");
    EXPECT_ERR(text, CONF ":3: ", "bad value '1.3'");
    snprintf(text, sizeof(text), base, "allow_plaintext_auth = yes\nusers_file = missing\n");
    EXPECT_ERR(text, CONF ":4: ", "cannot read users_file missing");
    /* alice has no users_file at all */
    snprintf(text, sizeof(text), base, "");
    EXPECT_ERR(text, CONF ":8: ", "login 'alice' is not in users_file");
    write_file("users", "alice:nohash\n", 13);
    snprintf(text, sizeof(text), base, "allow_plaintext_auth = yes\nusers_file = users\n");
    EXPECT_ERR(text, CONF ":4: ", "users:1: expected login:$hash");
    write_file("users", "alice:$y$a\nalice:$y$b\n", 22);
    EXPECT_ERR(text, CONF ":4: ", "login 'alice' is listed twice");
    EXPECT_ERR("[relay]\n[upstream u]\nhost = h\n[device d]\nlogin = a:b\nuser = u\npassword = p\n",
               CONF ":5: ", "bad login 'a:b'");
}

static void cleanup(void)
{
    DIR *d = opendir(".");
    struct dirent *e;

    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            unlink(e->d_name);
        }
    }
    if (d) {
        closedir(d);
    }
    if (chdir("/") == 0) {
        rmdir(tmpdir);
    }
}

/* conf_load hands out one holder (the loader); each conf_hold adds one and the
 * release that drops the last frees (LeakSanitizer in the Sanitize build). */
static void test_refs(void)
{
    char err[512];
    struct conf *c = load_text(UP DEV, err, sizeof(err));

    ASSERT_TRUE(c != NULL);
    if (!c) {
        return;
    }
    ASSERT_EQ(c->refs, 1);
    ASSERT_TRUE(conf_hold(c) == c);
    ASSERT_EQ(c->refs, 2);
    conf_release(c);
    ASSERT_EQ(c->refs, 1);
    conf_release(c);
    conf_release(NULL);
}

/* CONF_LOAD_STRICT (every CLI load): all errors at once, each "file:line:", with
 * "did you mean" and "belongs in" hints; duplicate match is an error. */
static void test_all_errors(void)
{
    char err[4096], big[4096];
    struct conf *c;
    size_t n = 0;

    static const char many[] = "[relay]\n"                        /* 1 */
                               "listen = 127.0.0.1:2525\n"        /* 2 */
                               "[upstream gmail]\n"               /* 3 */
                               "host = smtp.gmail.com\n"          /* 4 */
                               "port = 0\n"                       /* 5 */
                               "[device default]\n"               /* 6 */
                               "user = a@example.com\n"           /* 7 */
                               "pasword_file = /etc/relay25/pw\n" /* 8 */
                               "ca_file = /etc/ssl/ca.pem\n"      /* 9 */
                               "[devices printer]\n"              /* 10 */
                               "match = 10.0.0.1\n"               /* 11: skipped */
                               "[device scanner\n"                /* 12 */
                               "user = b@example.com\n";          /* 13: skipped */

    write_file(CONF, many, strlen(many));
    c = conf_load(CONF, CONF_LOAD_STRICT, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:5: port: bad port '0' (1 to 65535)\n"
                      "relay25.conf:8: unknown key 'pasword_file' in [device default] (did you "
                      "mean 'password_file'?)\n"
                      "relay25.conf:9: unknown key 'ca_file' in [device default] ('ca_file' "
                      "belongs in [upstream NAME])\n"
                      "relay25.conf:10: unknown section type 'devices' (expected [relay], "
                      "[upstream NAME], [device NAME], [route NAME] or [sendmail]); did you mean "
                      "[device NAME]?\n"
                      "relay25.conf:12: missing ']' in section header");
    conf_free(c);

    /* without the flag: the first error alone, as before */
    c = conf_load(CONF, 0, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    ASSERT_STREQ(err, "relay25.conf:5: port: bad port '0' (1 to 65535)");
    conf_free(c);

    /* a key valid in several other sections names them all */
    EXPECT_ERR("[upstream gmail]\nhost = x\nmessage_rate = 1/minute\n" DEV,
               "relay25.conf:3: ", "unknown key 'message_rate' in [upstream gmail]");
    c = load_text("[upstream gmail]\nhost = x\nmessage_rate = 1/minute\n" DEV, err, sizeof(err));
    conf_free(c);
    write_file(CONF, "[upstream gmail]\nhost = x\nmessage_rate = 1/minute\n" DEV,
               strlen("[upstream gmail]\nhost = x\nmessage_rate = 1/minute\n" DEV));
    c = conf_load(CONF, CONF_LOAD_STRICT, err, sizeof(err));
    ASSERT_STREQ(err, "relay25.conf:3: unknown key 'message_rate' in [upstream gmail] "
                      "('message_rate' belongs in [relay] or [device NAME])");
    conf_free(c);

    /* cross-checks: each device's problem, and a duplicate match */
    {
        static const char text[] = UP "[device a]\nmatch = 10.0.0.1\npassword = x\n"
                                      "[device b]\nmatch = 10.0.0.2\nuser = b@b.c\n"
                                      "[device c]\nmatch = 10.0.0.0/24, 10.0.0.9\nuser = c@b.c\n"
                                      "password = x\n"
                                      "[device d]\nmatch = 10.0.0.9\nuser = d@b.c\npassword = x\n";

        write_file(CONF, text, strlen(text));
        c = conf_load(CONF, CONF_LOAD_STRICT, err, sizeof(err));
        ASSERT_TRUE(c == NULL);
        ASSERT_STREQ(err, "relay25.conf:3: [device a] has no user\n"
                          "relay25.conf:6: [device b] needs exactly one of password_file, "
                          "password_env, password\n"
                          "relay25.conf:14: match: 10.0.0.9/32 is also the match of [device c] "
                          "(line 9): the first device would always win; give each client to one "
                          "device");
        conf_free(c);
    }

    /* no endless list: CONF_MAX_ERRORS, then one line */
    n = (size_t)snprintf(big, sizeof(big), "[relay]\n");
    for (int i = 0; i < 30; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "bogus%d = 1\n", i);
    }
    write_file(CONF, big, n);
    c = conf_load(CONF, CONF_LOAD_STRICT, err, sizeof(err));
    ASSERT_TRUE(c == NULL);
    {
        size_t lines = 1;

        for (const char *q = err; *q; q++) {
            lines += *q == '\n';
        }
        ASSERT_EQ(lines, 21);
        ASSERT_TRUE(strstr(err, "relay25.conf:21: unknown key 'bogus19' in [relay]\n(more errors "
                                "not shown)") != NULL);
    }
    conf_free(c);

    /* a small buffer still gets the first error whole */
    write_file(CONF, big, n);
    c = conf_load(CONF, CONF_LOAD_STRICT, err, 60);
    ASSERT_TRUE(c == NULL);
    ASSERT_TRUE(strncmp(err, "relay25.conf:2: unknown key 'bogus0' in [relay]", 47) == 0);
    conf_free(c);
}

/* type = graph (issue 16): graph_url into host, port and path prefix; the keys
 * that do not go with it; the device it needs. */
static void test_graph(void)
{
    char err[512];
    struct conf *c;
#define GDEV                                                                                       \
    "[device default]\nuser = scanner@contoso.com\nauth = xoauth2\n"                               \
    "oauth_grant = client_credentials\n"                                                           \
    "oauth_token_url = https://login.example/t\noauth_client_id = c\n"                             \
    "oauth_client_secret_env = RELAY25_TEST_OAUTH_SECRET\n"                                        \
    "oauth_scope = https://graph.microsoft.com/.default\n"

    setenv("RELAY25_TEST_OAUTH_SECRET", "env-s3cret", 1);
    c = load_text("[upstream m365]\ntype = graph\n" GDEV, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->upstreams[0].type, CONF_UP_GRAPH);
        ASSERT_STREQ(c->upstreams[0].graph_url, "https://graph.microsoft.com");
        ASSERT_STREQ(c->upstreams[0].host, "graph.microsoft.com");
        ASSERT_EQ(c->upstreams[0].port, 443);
        ASSERT_STREQ(c->upstreams[0].graph_path, "");
        ASSERT_STREQ(c->upstreams[0].server_name, "graph.microsoft.com");
        ASSERT_EQ(conf_spool_used(c), 1); /* passthrough keeps the body in tmp/ */
    }
    conf_free(c);
    c = load_text("[upstream m365]\ntype = graph\ngraph_url = https://localhost:8443/usgov/\n" GDEV,
                  err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_STREQ(c->upstreams[0].host, "localhost");
        ASSERT_EQ(c->upstreams[0].port, 8443);
        ASSERT_STREQ(c->upstreams[0].graph_path, "/usgov");
    }
    conf_free(c);
    c = load_text(UP DEV, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (c) {
        ASSERT_EQ(c->upstreams[0].type, CONF_UP_SMTP);
    }
    conf_free(c);

    EXPECT_ERR("[upstream m365]\ntype = ews\n" GDEV,
               "relay25.conf:2: type: ", "bad value 'ews' (smtp or graph)");
    EXPECT_ERR("[upstream m365]\ntype = graph\ngraph_url = http://graph.microsoft.com\n" GDEV,
               "relay25.conf:3: graph_url: ", "plain http would expose the secrets");
    EXPECT_ERR("[upstream m365]\ntype = graph\ngraph_url = https://g.example/?x=1\n" GDEV,
               "relay25.conf:3: graph_url: ", "no query allowed");
    EXPECT_ERR("[upstream m365]\ntype = graph\nhost = graph.microsoft.com\n" GDEV,
               "relay25.conf:1: ", "host, port and tls are not used with type = graph");
    EXPECT_ERR("[upstream m365]\ntype = graph\nport = 443\n" GDEV,
               "relay25.conf:1: ", "host, port and tls are not used with type = graph");
    EXPECT_ERR(UP "graph_url = https://graph.microsoft.com\n" DEV,
               "relay25.conf:3: graph_url: ", "only used with type = graph");
    EXPECT_ERR("[upstream m365]\ntype = graph\n" DEV,
               "relay25.conf:3: ", "set auth = xoauth2 with oauth_grant = client_credentials");
    EXPECT_ERR("[upstream m365]\ntype = graph\n" UP GDEV "upstream = m365, gmail\n",
               "relay25.conf:5: ", "cannot be in a failover list");
    EXPECT_ERR("[upstream m365]\ntype = graph\n" GDEV "on_upstream_failure = queue\n",
               "relay25.conf:3: ", "on_upstream_failure = queue is not used with type = graph");
    EXPECT_ERR("[upstream m365]\ntype = graph\n" UP GDEV "upstream = gmail\n"
               "[route r]\nsenders = @contoso.com\nupstream = m365\nuser = x\npassword = y\n",
               "relay25.conf:", "a route's password cannot log in there");
#undef GDEV
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    int n = snprintf(tmpdir, sizeof(tmpdir), "%s/relay25-conf-XXXXXX", t && *t ? t : "/tmp");

    if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir) || chdir(tmpdir) != 0) {
        perror("test_conf: temp dir");
        return 1;
    }
    env_clear();
    test_parsers();
    test_rate_by();
    test_rate_and_patterns();
    test_defaults();
    test_full();
    test_policy();
    test_per_ip();
    test_spool();
    test_errors();
    test_spool_errors();
    test_secrets();
    test_exposed();
    test_credentials();
    test_env();
    test_ca();
    test_oauth();
    test_graph();
    test_rewrite_route();
    test_lf_line_ends();
    test_inbound();
    test_refs();
    test_all_errors();
    cleanup();
    return CHECK_DONE();
}
