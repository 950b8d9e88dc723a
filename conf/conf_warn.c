/* conf_warn: configurations that load but will probably not do what was meant: a
 * listener other hosts can reach with a loopback-only allow, an allow reaching past the
 * private ranges (RFC 1918, RFC 6598, RFC 3927, RFC 4193), secret files others can read
 * or the user relay25 drops to cannot, RELAY25_* variables relay25 does not know, and
 * log = syslog with nothing listening on the syslog socket (then relay25 logs to stderr:
 * the decision is made here, where `check` can show it). `check` prints the warnings,
 * `serve` logs them at start and on reload. */
#include "conf/conf_int.h"

#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

#define CONF_DROP_USER "relay25" /* conf.h: the default `user` when started as root */
#define CONF_MAX_GROUPS 64
/* _PATH_LOG of glibc's <syslog.h> (whose LOG_* macros clash with ours): syslog(3)
 * sends there */
#define CONF_PATH_LOG "/dev/log"

int conf__warn(struct parse *p, int line, const char *fmt, ...)
{
    struct conf *c = p->c;
    struct conf_warning *w;
    char text[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    w = conf__grow(c->warnings, c->nwarnings, sizeof(*w));
    if (!w) {
        return conf__oom(p);
    }
    c->warnings = w;
    w[c->nwarnings].line = p->file ? line : 0;
    w[c->nwarnings].text = conf__strdup(p, text);
    if (!w[c->nwarnings].text) {
        return -1;
    }
    c->nwarnings++;
    return 0;
}

/* 1 when network n lies inside the prefix/len network given as bytes. */
static int conf_within(const struct cidr *n, int family, const uint8_t *net, unsigned len)
{
    if (n->family != family || n->prefix < len) {
        return 0;
    }
    for (unsigned b = 0; b < len; b++) {
        unsigned mask = 0x80u >> (b % 8);

        if ((n->addr[b / 8] & mask) != (net[b / 8] & mask)) {
            return 0;
        }
    }
    return 1;
}

static int conf_is_loopback_net(const struct cidr *n)
{
    static const uint8_t v4[16] = {127}, v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    return conf_within(n, AF_INET, v4, 8) || conf_within(n, AF_INET6, v6, 128);
}

/* Private, loopback, shared (CGNAT) and link-local space: addresses outside them are
 * the internet. */
static int conf_is_private_net(const struct cidr *n)
{
    static const struct {
        int family;
        uint8_t net[16];
        unsigned len;
    } ranges[] = {
        {AF_INET, {10}, 8},
        {AF_INET, {172, 16}, 12},
        {AF_INET, {192, 168}, 16},
        {AF_INET, {127}, 8},
        {AF_INET, {100, 64}, 10},
        {AF_INET, {169, 254}, 16},
        {AF_INET6, {0xfc}, 7},
        {AF_INET6, {0xfe, 0x80}, 10},
        {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
    };

    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        if (conf_within(n, ranges[i].family, ranges[i].net, ranges[i].len)) {
            return 1;
        }
    }
    return 0;
}

static int conf_is_loopback_addr(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
    }
    return 1;
}

static int conf_warn_listen(struct parse *p)
{
    const struct conf *c = p->c;
    const char *open = NULL;
    int loopback_only = 1;
    char b[64];

    for (size_t i = 0; i < c->nlisten && !open; i++) {
        open = conf_is_loopback_addr(&c->listen[i].addr) ? NULL : c->listen[i].text;
    }
    for (size_t i = 0; i < c->ntls_listen && !open; i++) {
        open = conf_is_loopback_addr(&c->tls_listen[i].addr) ? NULL : c->tls_listen[i].text;
    }
    for (size_t i = 0; i < c->nallow; i++) {
        loopback_only &= conf_is_loopback_net(&c->allow[i]);
    }
    if (open && loopback_only && !c->proxy_protocol &&
        conf__warn(p, p->listen_at.line,
                   "listen = %s takes connections from other hosts, but %s admits only this "
                   "host: every other client gets 554; add their networks (allow = "
                   "192.168.1.0/24)",
                   open, p->allow_given ? "allow" : "allow (not set: loopback only)") != 0) {
        return -1;
    }
    for (size_t i = 0; i < c->nallow; i++) {
        const struct cidr *n = &c->allow[i];

        /* an office's own public range is a /24 or smaller; wider is most likely a
         * catch-all such as 0.0.0.0/0 */
        if (conf_is_private_net(n) || n->prefix >= (n->family == AF_INET ? 24 : 48)) {
            continue;
        }
        if (conf__warn(p, p->allow_at.line,
                       "allow = %s reaches beyond the private ranges (10.0.0.0/8, "
                       "172.16.0.0/12, 192.168.0.0/16, fc00::/7): anyone who can reach the "
                       "listener may send mail with your devices' accounts",
                       cidr_format(n, b, sizeof(b))) != 0) {
            return -1;
        }
    }
    return 0;
}

/* The user relay25 drops to (root only: otherwise it keeps its own identity). */
struct drop_user {
    uid_t uid;
    gid_t gid;
    gid_t groups[CONF_MAX_GROUPS];
    int ngroups;
    const char *name;
    char group[64]; /* its primary group's name, for the chgrp hint */
};

static int conf_drop_user(const struct conf *c, struct drop_user *u)
{
    const struct passwd *pw;

    memset(u, 0, sizeof(*u));
    u->name = c->user && *c->user ? c->user : CONF_DROP_USER;
    if (geteuid() != 0 || (c->user && !*c->user) || !(pw = getpwnam(u->name)) || pw->pw_uid == 0) {
        return 0; /* no drop, or no such user (serve says so) */
    }
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    {
        const struct group *g = getgrgid(u->gid);

        snprintf(u->group, sizeof(u->group), "%s", g ? g->gr_name : u->name);
    }
    u->ngroups = CONF_MAX_GROUPS;
    if (getgrouplist(u->name, pw->pw_gid, u->groups, &u->ngroups) < 0) {
        u->groups[0] = pw->pw_gid;
        u->ngroups = 1;
    }
    return 1;
}

/* Whether u may read (want 4) or search (want 1) an object with st's owner and mode. */
static int conf_user_may(const struct drop_user *u, const struct stat *st, unsigned want)
{
    if (st->st_uid == u->uid) {
        return ((st->st_mode >> 6) & want) == want;
    }
    for (int i = 0; i < u->ngroups; i++) {
        if (u->groups[i] == st->st_gid) {
            return ((st->st_mode >> 3) & want) == want;
        }
    }
    return (st->st_mode & want) == want;
}

/* path is readable by u: the file itself and search permission on each directory. */
static int conf_user_can_read(const struct drop_user *u, const char *path)
{
    char dir[4096];
    struct stat st;
    size_t n = strlen(path);

    if (n >= sizeof(dir)) {
        return 1;
    }
    memcpy(dir, path, n + 1);
    for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (stat(dir, &st) == 0 && !conf_user_may(u, &st, 1)) {
            return 0;
        }
        *s = '/';
    }
    return stat(path, &st) != 0 || conf_user_may(u, &st, 4);
}

static int conf_warn_secret(struct parse *p, const struct drop_user *u, int drop, const char *what,
                            const char *path, int line)
{
    struct stat st;

    if (!path || stat(path, &st) != 0) {
        return 0; /* a missing file is an error elsewhere (or `oauth login` writes it) */
    }
    if ((st.st_mode & S_IROTH) &&
        conf__warn(p, line, "%s %s is readable by every user (mode %04o): chmod o-r %s", what, path,
                   (unsigned)(st.st_mode & 07777), path) != 0) {
        return -1;
    }
    /* group-readable is how the relay25 user is given a root-owned file: warn only
     * when the group is another one */
    if ((st.st_mode & S_IRGRP) && !(st.st_mode & S_IROTH) &&
        st.st_gid != (drop ? u->gid : getegid())) {
        const struct group *g = getgrgid(st.st_gid);

        if (conf__warn(p, line, "%s %s is readable by group %s (mode %04o): chmod g-r %s", what,
                       path, g ? g->gr_name : "?", (unsigned)(st.st_mode & 07777), path) != 0) {
            return -1;
        }
    }
    if (drop && !conf_user_can_read(u, path) &&
        conf__warn(p, line,
                   "%s %s is not readable by user %s, which relay25 runs as after start: the "
                   "next reload (SIGHUP) will fail; chgrp %s %s and chmod g+r %s",
                   what, path, u->name, u->group, path, path) != 0) {
        return -1;
    }
    return 0;
}

static int conf_warn_secrets(struct parse *p)
{
    const struct conf *c = p->c;
    struct drop_user u;
    int drop = conf_drop_user(c, &u);

    if (drop && p->file && !conf_user_can_read(&u, p->file) &&
        conf__warn(p, 0,
                   "%s is not readable by user %s, which relay25 runs as after start: the "
                   "next reload (SIGHUP) will fail",
                   p->file, u.name) != 0) {
        return -1;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct dev_extra *x = &p->dx[i];
        const struct conf_oauth *o = &c->devices[i].oauth;

        if ((x->pw == PW_FILE &&
             conf_warn_secret(p, &u, drop, "password_file", x->pw_arg, x->pw_at.line) != 0) ||
            (x->oauth_secret == PW_FILE &&
             conf_warn_secret(p, &u, drop, "oauth_client_secret_file", x->oauth_secret_arg,
                              x->oauth_secret_at.line) != 0) ||
            (o->refresh_token_file &&
             conf_warn_secret(p, &u, drop, "oauth_refresh_token_file", o->refresh_token_file,
                              x->oauth_at[OK_REFRESH_TOKEN_FILE].line) != 0)) {
            return -1;
        }
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        const struct dev_extra *x = &p->rx[i];

        if (x->pw == PW_FILE &&
            conf_warn_secret(p, &u, drop, "password_file", x->pw_arg, x->pw_at.line) != 0) {
            return -1;
        }
    }
    if (conf_warn_secret(p, &u, drop, "users_file", c->users_file,
                         conf__relay_seen(p, "users_file")) != 0 ||
        conf_warn_secret(p, &u, drop, "tls_key_file", c->tls_key_file,
                         conf__relay_seen(p, "tls_key_file")) != 0) {
        return -1;
    }
    return 0;
}

/* A variable the config names in password_env or oauth_client_secret_env. */
static int conf_env_named(const struct parse *p, const char *name, size_t len)
{
    const struct dev_extra *lists[2] = {p->dx, p->rx};
    size_t counts[2] = {p->c->ndevices, p->c->nroutes};

    for (size_t l = 0; l < 2; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            const struct dev_extra *x = &lists[l][i];

            if ((x->pw == PW_ENV && strlen(x->pw_arg) == len &&
                 strncmp(x->pw_arg, name, len) == 0) ||
                (x->oauth_secret == PW_ENV && strlen(x->oauth_secret_arg) == len &&
                 strncmp(x->oauth_secret_arg, name, len) == 0)) {
                return 1;
            }
        }
    }
    return 0;
}

/* A misspelt RELAY25_LISTNE is otherwise silently ignored. Known besides relay25's
 * own: the container entrypoint's RELAY25_<X>_FILE forms, RELAY25_ENTRYPOINT_CONF and
 * RELAY25_BIN, and the test suite's RELAY25_TEST_* and RELAY25_CRASH_SEED. */
static int conf_warn_env(struct parse *p)
{
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '='), *near = NULL;
        char name[128];
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e), base = len;
        unsigned best = 3;
        int known = 0;

        if (strncmp(*e, "RELAY25_", 8) != 0 || len >= sizeof(name)) {
            continue;
        }
        memcpy(name, *e, len);
        name[len] = '\0';
        if (strncmp(name, "RELAY25_TEST_", 13) == 0 || strcmp(name, "RELAY25_BIN") == 0 ||
            strcmp(name, "RELAY25_ENTRYPOINT_CONF") == 0 ||
            strcmp(name, "RELAY25_CRASH_SEED") == 0 || conf_env_named(p, name, len)) {
            continue;
        }
        if (len > 5 && strcmp(name + len - 5, "_FILE") == 0) {
            base = len - 5;
        }
        for (size_t i = 0; conf__env_var(i) && !known; i++) {
            const char *v = conf__env_var(i);
            unsigned d;

            known = strcmp(v, name) == 0 || (strlen(v) == base && strncmp(v, name, base) == 0);
            d = conf__distance(name, v);
            if (d < best) {
                best = d;
                near = v;
            }
        }
        if (!known &&
            conf__warn(p, 0, "%s is not a relay25 variable and is ignored%s%s%s", name,
                       near ? " (did you mean " : "", near ? near : "", near ? "?)" : "") != 0) {
            return -1;
        }
    }
    return 0;
}

/* Whether something listens on the syslog socket (syslog(3) uses /dev/log, a datagram
 * socket, or a stream socket when that fails). */
static int conf_syslog_listening(void)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    struct sockaddr_un sa;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", CONF_PATH_LOG);
    for (size_t i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0;

        if (fd >= 0) {
            close(fd);
        }
        if (ok) {
            return 1;
        }
    }
    return 0;
}

int conf__warnings(struct parse *p)
{
    struct conf *c = p->c;

    if (c->log_syslog && !conf_syslog_listening()) {
        /* logging nothing at all is the worst outcome: stderr reaches the journal or
         * `docker logs` */
        c->syslog_unavailable = 1;
        if (conf__warn(p, conf__relay_seen(p, "log"),
                       "log = syslog, but nothing listens on %s (no syslog daemon): relay25 "
                       "logs to stderr instead",
                       CONF_PATH_LOG) != 0) {
            return -1;
        }
    }
    if (conf_warn_listen(p) != 0 || conf_warn_secrets(p) != 0 || conf_warn_env(p) != 0) {
        return -1;
    }
    return 0;
}
