/* prx_listener: binds the configured addresses, accepts connections into
 * prx_sessions and runs the drain on shutdown. */
#include "proxy/prx_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_fail.h"
#include "auth/auth_passwd.h"
#include "common/log.h"
#include "conf/conf.h"
#include "proxy/prx_session.h"
#include "spool/spool_writer.h"

#define PRX_BACKLOG 1024 /* bursts of printers and cron jobs; capped by somaxconn */
/* Password checks in libuv's pool (UV_THREADPOOL_SIZE, 4 by default) at once: the
 * other workers stay free for the spool's writes and fsyncs. Beyond the queue,
 * AUTH gets 454 at once. */
#define PRX_AUTH_CHECKS 2
#define PRX_AUTH_QUEUE 32

struct prx_server {
    struct prx_env env;
    uv_tcp_t *listeners; /* listen, then tls_listen (implicit TLS) */
    size_t nlisteners;
    size_t nplain; /* listeners[nplain..] are tls_listen */
    uv_timer_t timer;
    size_t open_handles; /* listeners + timer */
    int shutting_down;
    int env_empty;
    prx_done_cb *done;
    void *done_arg;
};

static void prx_server_check_done(struct prx_server *srv)
{
    if (srv->shutting_down && srv->open_handles == 0 && srv->env_empty) {
        prx_done_cb *done = srv->done;
        void *arg = srv->done_arg;
        prx_conf_release(srv->env.cur);
        auth_passwd_sched_free(srv->env.pw);
        auth_fail_free(srv->env.auth_fails);
        spool_group_free(srv->env.spool); /* no writer is left: sessions held them */
        free(srv->listeners);
        free(srv);
        if (done) {
            done(arg);
        }
    }
}

static void prx_handle_closed(uv_handle_t *h)
{
    struct prx_server *srv = h->data;
    srv->open_handles--;
    prx_server_check_done(srv);
}

static void prx_env_empty(struct prx_env *env)
{
    struct prx_server *srv = (struct prx_server *)env;
    srv->env_empty = 1;
    if (!uv_is_closing((uv_handle_t *)&srv->timer)) {
        uv_close((uv_handle_t *)&srv->timer, prx_handle_closed);
    }
    prx_server_check_done(srv);
}

static void prx_on_connection(uv_stream_t *l, int status)
{
    struct prx_server *srv = l->data;

    if (status < 0) {
        log_warn(0, "prx", "event=accept_failed error=\"%s\"", uv_strerror(status));
        return;
    }
    if (srv->shutting_down) {
        return;
    }
    prx_session_accept(&srv->env, l, (size_t)((uv_tcp_t *)l - srv->listeners) >= srv->nplain);
}

/* Seed for the AUTH failure table's hash: unpredictable, so nobody picks
 * addresses that evict each other's entries. */
static uint64_t prx_seed(void)
{
    uint64_t v = 0;

    if (uv_random(NULL, NULL, &v, sizeof(v), 0, NULL) != 0) {
        v = (uint64_t)uv_hrtime();
    }
    return v;
}

static void prx_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    }
}

struct prx_server *prx_server_new(uv_loop_t *loop, struct conf *c, struct metrics *m, char *err,
                                  size_t errlen)
{
    struct prx_server *srv = calloc(1, sizeof(*srv));
    size_t i;

    if (!srv || !(srv->listeners = calloc(c->nlisten + c->ntls_listen, sizeof(uv_tcp_t))) ||
        !(srv->env.pw = auth_passwd_sched_new(loop, PRX_AUTH_CHECKS, PRX_AUTH_QUEUE)) ||
        !(srv->env.auth_fails = auth_fail_new(AUTH_FAIL_DEFAULT_SETS, prx_seed())) ||
        !(srv->env.spool = spool_group_new(loop)) || !(srv->env.cur = prx_conf_new(c))) {
        snprintf(err, errlen, "out of memory");
        if (srv) {
            free(srv->listeners);
            auth_passwd_sched_free(srv->env.pw);
            auth_fail_free(srv->env.auth_fails);
            spool_group_free(srv->env.spool);
        }
        free(srv);
        return NULL;
    }
    srv->env.loop = loop;
    srv->env.metrics = m;
    srv->env.on_empty = prx_env_empty;
    uv_timer_init(loop, &srv->timer);
    srv->timer.data = srv;
    srv->open_handles = 1;
    srv->nplain = c->nlisten;
    for (i = 0; i < c->nlisten + c->ntls_listen; i++) {
        uv_tcp_t *l = &srv->listeners[i];
        int tls = i >= c->nlisten;
        const struct conf_listen *cl = tls ? &c->tls_listen[i - c->nlisten] : &c->listen[i];
        const struct sockaddr *sa = (const struct sockaddr *)&cl->addr;
        struct sockaddr_storage ss;
        int sl = sizeof(ss), r;
        char text[80];

        uv_tcp_init(loop, l);
        l->data = srv;
        srv->nlisteners++;
        srv->open_handles++;
        /* [::]:25 next to 0.0.0.0:25 needs IPv6-only sockets */
        r = uv_tcp_bind(l, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
        if (r == 0) {
            r = uv_listen((uv_stream_t *)l, PRX_BACKLOG, prx_on_connection);
        }
        if (r != 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", cl->text, uv_strerror(r));
            goto fail;
        }
        uv_tcp_getsockname(l, (struct sockaddr *)&ss, &sl);
        prx_addr_text((struct sockaddr *)&ss, text, sizeof(text));
        log_info(0, "prx", "event=listening addr=%s%s", text, tls ? " tls=implicit" : "");
    }
    return srv;
fail:
    srv->env_empty = 1;
    srv->env.cur->c = NULL; /* the caller keeps c on failure */
    prx_server_shutdown(srv, NULL, NULL);
    return NULL;
}

static int prx_same_listen(const struct conf *a, const struct conf *b)
{
    if (a->nlisten != b->nlisten || a->ntls_listen != b->ntls_listen) {
        return 0;
    }
    for (size_t i = 0; i < a->ntls_listen; i++) {
        if (a->tls_listen[i].addrlen != b->tls_listen[i].addrlen ||
            memcmp(&a->tls_listen[i].addr, &b->tls_listen[i].addr, a->tls_listen[i].addrlen) != 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < a->nlisten; i++) {
        if (a->listen[i].addrlen != b->listen[i].addrlen ||
            memcmp(&a->listen[i].addr, &b->listen[i].addr, a->listen[i].addrlen) != 0) {
            return 0;
        }
    }
    return 1;
}

void prx_server_reload(struct prx_server *srv, struct conf *c)
{
    struct prx_conf *pc = prx_conf_new(c);

    if (!pc) {
        log_err(0, "relay25", "event=reload status=failed error=\"out of memory\"");
        conf_free(c);
        return;
    }
    /* rate limits carry over by device name: a reload must not reset them */
    prx_conf_carry(pc, srv->env.cur);
    if (!prx_same_listen(srv->env.cur->c, c)) {
        log_warn(0, "relay25", "event=reload warning=\"listen changed: restart to apply it\"");
    }
    prx_conf_release(srv->env.cur);
    srv->env.cur = pc;
}

static void prx_shutdown_timeout(uv_timer_t *t)
{
    struct prx_server *srv = t->data;

    log_warn(0, "prx", "event=shutdown_timeout sessions=%zu", srv->env.nsessions);
    prx_session_abort_all(&srv->env);
}

void prx_server_shutdown(struct prx_server *srv, prx_done_cb *done, void *arg)
{
    srv->shutting_down = 1;
    srv->done = done;
    srv->done_arg = arg;
    srv->env.draining = 1;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        uv_close((uv_handle_t *)&srv->listeners[i], prx_handle_closed);
    }
    if (srv->env.nsessions == 0) {
        srv->env_empty = 1;
    }
    if (srv->env_empty) {
        uv_close((uv_handle_t *)&srv->timer, prx_handle_closed);
        return;
    }
    prx_session_drain_all(&srv->env);
    uv_timer_start(&srv->timer, prx_shutdown_timeout,
                   (uint64_t)srv->env.cur->c->shutdown_timeout * 1000u, 0);
}

void prx_server_set_queue(struct prx_server *srv, struct up_queue *q)
{
    srv->env.queue = q;
}

void prx_server_set_pool(struct prx_server *srv, struct up_pool *pool)
{
    srv->env.pool = pool;
}

void prx_server_set_oauth(struct prx_server *srv, struct up_oauth_set *set)
{
    srv->env.oauth = set;
}
