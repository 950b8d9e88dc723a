/* serve: runs the relay in the foreground on one libuv loop. After binding it
 * drops root privileges, then tells systemd it is ready (NOTIFY_SOCKET, no
 * libsystemd). SIGHUP reloads the configuration for new sessions (an invalid one
 * is refused and the old one stays); SIGTERM/SIGINT drain and exit 0. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/metrics.h"
#include "conf/conf.h"
#include "proxy/prx_listener.h"
#include "spool/spool.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_queue.h"

#define SERVE_DEFAULT_USER "relay25"
#define SERVE_POOL_IDLE 30 /* seconds an authenticated upstream session waits for reuse */

struct serve {
    uv_loop_t *loop;
    struct prx_server *srv;
    struct metrics_server *ms;
    struct metrics metrics;
    uv_signal_t sigterm, sigint, sighup, sigusr1;
    struct up_queue *queue;
    struct up_pool *pool;
    struct up_oauth_set *oauth; /* token providers, kept across reloads */
    char pidfile[4200];
    char *path; /* what to reload: the file in use, or NULL for the environment */
    int stopping;
};

/* sd_notify(3) protocol: one datagram to $NOTIFY_SOCKET; best effort. */
static void serve_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t len;
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@') ||
        (len = strlen(path)) >= sizeof(sa.sun_path)) {
        return;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0'; /* abstract namespace */
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return;
    }
    if (sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
        log_warn(0, "relay25", "event=notify_failed error=\"%s\"", strerror(errno));
    }
    close(fd);
}

/* Descriptors a configuration may hold at once: per inbound session its socket
 * and its upstream's (plus a spool file when spooling), the background
 * deliveries' upstream sessions, the metrics scrapes, and a margin for
 * listeners, the loop, the log and the CA files. */
static unsigned long long serve_nofile_need(const struct conf *c)
{
    unsigned long long need = 64, per = conf_spool_used(c) ? 3 : 2;

    need += per * c->max_connections;
    for (size_t i = 0; i < c->nupstreams; i++) {
        need += c->upstreams[i].max_connections;
    }
    if (c->metrics_enabled) {
        need += METRICS_MAX_CONNS;
    }
    return need;
}

static void serve_check_nofile(const struct conf *c)
{
    struct rlimit rl;
    unsigned long long need = serve_nofile_need(c);

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (unsigned long long)rl.rlim_cur >= need) {
        return;
    }
    log_warn(0, "relay25",
             "event=limits nofile=%llu need=%llu warning=\"open files limit below what "
             "max_connections = %u needs: raise LimitNOFILE (or ulimit -n)\"",
             (unsigned long long)rl.rlim_cur, need, c->max_connections);
}

/* An inline password in a file others can read: say so at each load (the
 * value is never shown). */
static void serve_check_exposed(const struct conf *c)
{
    if (c->exposed_line) {
        log_warn(0, "relay25",
                 "event=config file=%s line=%d warning=\"readable by others and holds a "
                 "password: chmod o-r it, or use password_file\"",
                 c->path, c->exposed_line);
    }
    /* conf_warn.c: likely mistakes that still load, one line each */
    for (size_t i = 0; i < c->nwarnings; i++) {
        const struct conf_warning *w = &c->warnings[i];
        char text[640];
        size_t n = 0;

        for (const char *s = w->text; *s && n + 1 < sizeof(text); s++) {
            text[n++] = *s == '"' ? '\'' : *s; /* the value is quoted in the log line */
        }
        text[n] = '\0';
        if (w->line > 0) {
            log_warn(0, "relay25", "event=config file=%s line=%d warning=\"%s\"", c->path, w->line,
                     text);
        } else {
            log_warn(0, "relay25", "event=config warning=\"%s\"", text);
        }
    }
}

/* The soft limit is often 1024 (systemd's default, a shell's): up to the hard
 * limit, which needs no privilege, so a burst of clients cannot run relay25 out
 * of descriptors for its upstream connections and spool files. */
static void serve_raise_nofile(const struct conf *c)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
        unsigned long long was = (unsigned long long)rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
            log_info(0, "relay25", "event=limits nofile=%llu was=%llu",
                     (unsigned long long)rl.rlim_cur, was);
        } else {
            log_warn(0, "relay25", "event=limits nofile=%llu error=\"cannot raise: %s\"", was,
                     strerror(errno));
        }
    }
    serve_check_nofile(c);
}

/* Root only binds; clients are served as `user` (default relay25). */
static int serve_drop_privileges(const struct conf *c)
{
    const char *name = c->user ? c->user : SERVE_DEFAULT_USER;
    struct passwd *pw;

    if (geteuid() != 0) {
        return 0;
    }
    errno = 0;
    pw = getpwnam(name);
    if (!pw) {
        if (!c->user) {
            log_warn(0, "relay25",
                     "event=privileges user=root warning=\"no user %s: create it or set user = "
                     "in [relay]; serving clients as root\"",
                     name);
            return 0;
        }
        fprintf(stderr, "relay25: user = %s: no such user\n", name);
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "relay25: cannot switch to user %s: %s\n", name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        fprintf(stderr, "relay25: dropping privileges to %s failed (could regain root)\n", name);
        return -1;
    }
    log_info(0, "relay25", "event=privileges user=%s uid=%u gid=%u", name, (unsigned)pw->pw_uid,
             (unsigned)pw->pw_gid);
    return 0;
}

static void serve_apply_log(const struct conf *c)
{
    log_set_level(c->log_level);
    /* conf's auto | yes | no are enum log_ts's values */
    log_set_timestamps((enum log_ts)c->log_timestamps);
    /* no syslog daemon: stderr rather than nothing; conf_warn.c warned about the
     * configuration, log_set_output says where the lines go now (event=log_fallback) */
    log_set_output(c->log_syslog, c->log_json);
}

static void serve_closed(void *arg)
{
    struct serve *sv = arg;
    if (sv->pool) {
        up_pool_close(sv->pool);
        sv->pool = NULL;
    }
    up_oauth_set_free(sv->oauth);
    sv->oauth = NULL;
    uv_close((uv_handle_t *)&sv->sigterm, NULL);
    uv_close((uv_handle_t *)&sv->sigint, NULL);
    uv_close((uv_handle_t *)&sv->sighup, NULL);
    uv_close((uv_handle_t *)&sv->sigusr1, NULL);
    if (sv->pidfile[0]) {
        unlink(sv->pidfile);
    }
    if (sv->ms) {
        metrics_server_close(sv->ms);
        sv->ms = NULL;
    }
    log_info(0, "relay25", "event=stopped");
}

/* Sessions are gone (their messages are upstream or spooled): stop the queue. */
static void serve_done(void *arg)
{
    struct serve *sv = arg;
    if (sv->queue) {
        struct up_queue *q = sv->queue;
        sv->queue = NULL;
        sv->metrics.queue_stats = NULL;
        up_queue_close(q, serve_closed, sv);
        return;
    }
    serve_closed(sv);
}

static void serve_on_usr1(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;
    (void)signum;
    if (sv->queue && !sv->stopping) {
        up_queue_flush(sv->queue);
    }
}

/* After the privilege drop, so the spool belongs to the serving user. */
static int serve_start_spool(struct serve *sv, struct conf *c)
{
    char err[600];
    int fd;

    if (!conf_spool_used(c)) {
        return 0;
    }
    if (spool_prepare(c->spool_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "relay25: spool_dir = %s: %s\n", c->spool_dir, err);
        return -1;
    }
    snprintf(sv->pidfile, sizeof(sv->pidfile), "%s/relay25.pid", c->spool_dir);
    /* 0644 whatever the umask: `relay25 queue` and scripts of other users read it */
    fd = open(sv->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || fchmod(fd, 0644) != 0 || dprintf(fd, "%d\n", (int)getpid()) < 0) {
        fprintf(stderr, "relay25: %s: %s\n", sv->pidfile, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    sv->queue = up_queue_new(sv->loop, c, &sv->metrics);
    if (!sv->queue) {
        fprintf(stderr, "relay25: out of memory\n");
        return -1;
    }
    prx_server_set_queue(sv->srv, sv->queue);
    sv->metrics.queue_stats = up_queue_stats;
    sv->metrics.queue_arg = sv->queue;
    up_queue_set_pool(sv->queue, sv->pool);
    up_queue_set_oauth(sv->queue, sv->oauth);
    log_info(0, "relay25", "event=spool dir=%s", c->spool_dir);
    return 0;
}

static void serve_on_signal(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;

    if (sv->stopping) {
        return;
    }
    sv->stopping = 1;
    serve_notify("STOPPING=1");
    log_info(0, "relay25", "event=stopping signal=%s", signum == SIGTERM ? "TERM" : "INT");
    prx_server_shutdown(sv->srv, serve_done, sv);
}

static void serve_on_hup(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;
    char err[4096];
    struct conf *c;

    (void)signum;
    if (sv->stopping) {
        return;
    }
    {
        /* systemd >= 253 (Type=notify-reload) wants the time of the reload */
        char msg[64];
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)ts.tv_sec * 1000000ull +
                     (unsigned long long)ts.tv_nsec / 1000u);
        serve_notify(msg);
    }
    /* the file is read again as the unprivileged user: it must stay readable */
    c = conf_load(sv->path, 1 | CONF_LOAD_STRICT, err, sizeof(err));
    if (!c) {
        /* every error on its own line in err: one log line, "; " between them */
        for (char *nl = strchr(err, '\n'); nl; nl = strchr(nl, '\n')) {
            *nl = ';';
        }
        log_err(0, "relay25", "event=reload status=refused error=\"%s\"", err);
        serve_notify("READY=1");
        return;
    }
    serve_apply_log(c);
    serve_check_nofile(c);
    serve_check_exposed(c);
    log_info(0, "relay25", "event=reload status=ok upstreams=%zu devices=%zu", c->nupstreams,
             c->ndevices);
    if (!sv->queue && conf_spool_used(c)) {
        log_warn(0, "relay25",
                 "event=reload warning=\"the spool was off at start: restart to use it\"");
    }
    prx_server_reload(sv->srv, c);
    if (sv->queue) {
        up_queue_reload(sv->queue, c);
    }
    serve_notify("READY=1");
}

static int serve_usage_error(int rc)
{
    fprintf(stderr, "usage: " CLI_USAGE_SERVE "\n");
    return rc;
}

int cli_serve(int argc, char **argv)
{
    const char *path = NULL;
    struct serve sv;
    struct conf *c;
    char err[512];
    int rc;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: " CLI_USAGE_SERVE "\n"
                   "Runs the relay in the foreground. SIGHUP reloads the configuration,\n"
                   "SIGTERM drains the sessions and exits 0, SIGUSR1 retries the spool now.\n"
                   "Exit: 0 after SIGTERM, 64 usage, 71 cannot listen, 77 cannot drop\n"
                   "privileges or prepare the spool, 78 configuration error.\n" CLI_USAGE_CONFIG);
            return 0;
        } else if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                return serve_usage_error(cli_missing("serve", "-c", "a file"));
            }
            path = argv[++i];
        } else {
            fprintf(stderr, "relay25 serve: unknown argument '%s'\n", argv[i]);
            return serve_usage_error(EX_USAGE);
        }
    }
    c = cli_load_conf(path, 1);
    if (!c) {
        return EX_CONFIG;
    }
    serve_apply_log(c);
    serve_check_exposed(c);
    signal(SIGPIPE, SIG_IGN);
    /* until the loop's handlers are in place (the pid file exists before them):
     * a flush or reload request during startup is moot, it must not kill us */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    memset(&sv, 0, sizeof(sv));
    if (c->path && !(sv.path = strdup(c->path))) {
        conf_free(c);
        return EX_OSERR;
    }
    serve_raise_nofile(c);
    sv.loop = uv_default_loop();
    sv.metrics.start_time = (uint64_t)time(NULL);
    if (c->metrics_enabled) {
        sv.ms = metrics_server_new(sv.loop, (struct sockaddr *)&c->metrics_listen.addr, &sv.metrics,
                                   err, sizeof(err));
        if (!sv.ms) {
            fprintf(stderr, "relay25: metrics_listen = %s: %s\n", c->metrics_listen.text, err);
            uv_run(sv.loop, UV_RUN_DEFAULT);
            conf_free(c);
            free(sv.path);
            return EX_OSERR;
        }
    }
    sv.srv = prx_server_new(sv.loop, c, &sv.metrics, err, sizeof(err));
    if (!sv.srv) {
        fprintf(stderr, "relay25: %s\n", err);
        if (sv.ms) {
            metrics_server_close(sv.ms);
        }
        uv_run(sv.loop, UV_RUN_DEFAULT);
        uv_loop_close(sv.loop);
        conf_free(c);
        free(sv.path);
        return EX_OSERR;
    }
    /* c now belongs to the server */
    sv.pool = up_pool_new(sv.loop, SERVE_POOL_IDLE);
    if (sv.pool) {
        up_pool_set_metrics(sv.pool, &sv.metrics);
    }
    prx_server_set_pool(sv.srv, sv.pool);
    sv.oauth = up_oauth_set_new(sv.loop);
    prx_server_set_oauth(sv.srv, sv.oauth);
    if (serve_drop_privileges(c) != 0 || serve_start_spool(&sv, c) != 0) {
        sv.stopping = 1;
        if (sv.queue) {
            up_queue_close(sv.queue, NULL, NULL);
            sv.queue = NULL;
        }
        prx_server_shutdown(sv.srv, NULL, NULL);
        if (sv.ms) {
            metrics_server_close(sv.ms);
        }
        if (sv.pool) {
            up_pool_close(sv.pool);
        }
        up_oauth_set_free(sv.oauth);
        uv_run(sv.loop, UV_RUN_DEFAULT);
        uv_loop_close(sv.loop);
        free(sv.path);
        return EX_NOPERM;
    }
    uv_signal_init(sv.loop, &sv.sigterm);
    uv_signal_init(sv.loop, &sv.sigint);
    uv_signal_init(sv.loop, &sv.sighup);
    uv_signal_init(sv.loop, &sv.sigusr1);
    sv.sigterm.data = sv.sigint.data = sv.sighup.data = sv.sigusr1.data = &sv;
    uv_signal_start(&sv.sigusr1, serve_on_usr1, SIGUSR1);
    uv_signal_start(&sv.sigterm, serve_on_signal, SIGTERM);
    uv_signal_start(&sv.sigint, serve_on_signal, SIGINT);
    uv_signal_start(&sv.sighup, serve_on_hup, SIGHUP);
    log_info(0, "relay25", "event=started version=%s config=%s upstreams=%zu devices=%zu pid=%d",
             RELAY25_VERSION, c->path ? c->path : "environment", c->nupstreams, c->ndevices,
             (int)getpid());
    serve_notify("READY=1");
    uv_run(sv.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(sv.loop);
    if (rc != 0) {
        log_warn(0, "relay25", "event=loop_close error=\"%s\"", uv_strerror(rc));
    }
    free(sv.path);
    return 0;
}
