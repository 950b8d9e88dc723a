/* metrics: Prometheus text exposition (format 0.0.4) over a minimal HTTP/1.0
 * responder: read the request head (bounded), answer, close. One allocation per
 * scrape connection; scrapes are rare. */
#include "common/metrics.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/reply.h"

#define METRICS_REQ_MAX 4096
#define METRICS_OUT_MAX 16384

static const double metrics_bounds[METRICS_NBUCKETS] = {0.01, 0.05, 0.1, 0.25, 0.5,
                                                        1,    2.5,  5,   10,   30};

void metrics_observe(struct metrics_hist *h, double seconds)
{
    for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
        if (seconds <= metrics_bounds[i]) {
            h->buckets[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void metrics_upstream_error(struct metrics *m, int relay_err)
{
    int i = -relay_err;
    if (i > 0 && i < METRICS_NERR) {
        m->upstream_errors[i]++;
    }
}

struct metrics_out {
    char *buf;
    size_t cap, len;
};

static void metrics_put(struct metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_put(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->len + 1 >= o->cap) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
    }
}

static void metrics_counter(struct metrics_out *o, const char *name, const char *help, uint64_t v)
{
    metrics_put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                (unsigned long long)v);
}

static void metrics_hist_out(struct metrics_out *o, const char *name, const char *help,
                             const struct metrics_hist *h)
{
    uint64_t cum = 0;

    metrics_put(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
        cum += h->buckets[i];
        metrics_put(o, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_bounds[i],
                    (unsigned long long)cum);
    }
    metrics_put(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

size_t metrics_format(const struct metrics *m, char *buf, size_t cap)
{
    struct metrics_out o = {buf, cap, 0};

    if (cap == 0) {
        return 0;
    }
    buf[0] = '\0';
    metrics_counter(&o, "relay25_sessions_total", "Inbound SMTP sessions accepted.",
                    m->sessions_total);
    metrics_put(&o,
                "# HELP relay25_sessions_active Inbound SMTP sessions open now.\n"
                "# TYPE relay25_sessions_active gauge\nrelay25_sessions_active %llu\n",
                (unsigned long long)m->sessions_active);
    metrics_counter(&o, "relay25_refused_clients_total",
                    "Clients refused: not in allow, no device, untrusted PROXY header.",
                    m->refused_total);
    metrics_counter(&o, "relay25_limited_connections_total",
                    "Connections refused by max_connections / max_connections_per_ip.",
                    m->limited_total);
    metrics_counter(&o, "relay25_rate_limited_total",
                    "Commands refused by message_rate / recipient_rate.", m->rate_limited_total);
    metrics_counter(&o, "relay25_policy_refused_total",
                    "Senders or recipients refused by allowed_senders / allowed_recipients.",
                    m->policy_refused_total);
    metrics_counter(&o, "relay25_auth_failures_total",
                    "Inbound AUTH attempts with a wrong login or password.",
                    m->auth_failures_total);
    metrics_counter(&o, "relay25_auth_lockouts_total",
                    "Client addresses locked out after auth_fail_limit AUTH failures.",
                    m->auth_lockouts_total);
    metrics_put(&o, "# HELP relay25_messages_total Messages by final status.\n"
                    "# TYPE relay25_messages_total counter\n");
    metrics_put(&o, "relay25_messages_total{status=\"sent\"} %llu\n",
                (unsigned long long)m->messages_sent);
    metrics_put(&o, "relay25_messages_total{status=\"deferred\"} %llu\n",
                (unsigned long long)m->messages_deferred);
    metrics_put(&o, "relay25_messages_total{status=\"bounced\"} %llu\n",
                (unsigned long long)m->messages_bounced);
    metrics_put(&o, "relay25_messages_total{status=\"aborted\"} %llu\n",
                (unsigned long long)m->messages_aborted);
    metrics_counter(&o, "relay25_message_bytes_total", "Bytes of messages accepted upstream.",
                    m->bytes_total);
    metrics_counter(&o, "relay25_recipients_total", "Recipients of messages accepted upstream.",
                    m->recipients_total);
    metrics_put(&o, "# HELP relay25_upstream_errors_total Upstream failures by kind.\n"
                    "# TYPE relay25_upstream_errors_total counter\n");
    for (int i = 1; i < METRICS_NERR; i++) {
        metrics_put(&o, "relay25_upstream_errors_total{kind=\"%s\"} %llu\n", reply_err_name(-i),
                    (unsigned long long)m->upstream_errors[i]);
    }
    metrics_hist_out(&o, "relay25_upstream_setup_seconds", "Upstream connect, TLS and AUTH time.",
                     &m->upstream_setup);
    metrics_hist_out(&o, "relay25_upstream_delivery_seconds",
                     "Time from end of DATA to upstream's verdict.", &m->upstream_delivery);
    metrics_counter(&o, "relay25_upstream_connections_total",
                    "Upstream sessions opened (TCP, TLS and AUTH).", m->upstream_connections);
    metrics_counter(&o, "relay25_upstream_reused_total",
                    "Transactions sent on an already authenticated upstream session.",
                    m->upstream_reused);
    if (m->queue_stats) {
        uint64_t n = 0, bytes = 0, oldest = 0, now = (uint64_t)time(NULL);
        m->queue_stats(m->queue_arg, &n, &bytes, &oldest);
        metrics_put(&o,
                    "# HELP relay25_queue_messages Messages in the spool.\n"
                    "# TYPE relay25_queue_messages gauge\nrelay25_queue_messages %llu\n"
                    "# HELP relay25_queue_bytes Bytes of messages in the spool.\n"
                    "# TYPE relay25_queue_bytes gauge\nrelay25_queue_bytes %llu\n"
                    "# HELP relay25_queue_oldest_seconds Age of the oldest spooled message.\n"
                    "# TYPE relay25_queue_oldest_seconds gauge\nrelay25_queue_oldest_seconds "
                    "%llu\n",
                    (unsigned long long)n, (unsigned long long)bytes,
                    (unsigned long long)(oldest && oldest < now ? now - oldest : 0));
    }
    metrics_put(&o,
                "# HELP relay25_start_time_seconds Start time of the process.\n"
                "# TYPE relay25_start_time_seconds gauge\nrelay25_start_time_seconds %llu\n",
                (unsigned long long)m->start_time);
    return o.len;
}

struct metrics_conn;

struct metrics_server {
    uv_tcp_t tcp;
    const struct metrics *m;
    struct metrics_conn *conns; /* open scrapes, closed with the server */
    int closing, listener_closed;
};

struct metrics_conn {
    uv_tcp_t tcp;
    uv_write_t wr;
    struct metrics_server *ms;
    struct metrics_conn *prev, *next;
    size_t len;
    int answered;
    char req[METRICS_REQ_MAX];
    char out[METRICS_OUT_MAX];
};

static void metrics_server_maybe_free(struct metrics_server *ms)
{
    if (ms->closing && ms->listener_closed && !ms->conns) {
        free(ms);
    }
}

static void metrics_conn_closed(uv_handle_t *h)
{
    struct metrics_conn *c = h->data;
    struct metrics_server *ms = c->ms;

    if (c->prev) {
        c->prev->next = c->next;
    } else {
        ms->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    free(c);
    metrics_server_maybe_free(ms);
}

static void metrics_conn_close(struct metrics_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, metrics_conn_closed);
    }
}

static void metrics_written(uv_write_t *w, int status)
{
    (void)status;
    metrics_conn_close(w->data);
}

static void metrics_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *b)
{
    struct metrics_conn *c = h->data;
    (void)sugg;
    b->base = c->req + c->len;
    b->len = METRICS_REQ_MAX - 1 - c->len;
}

static void metrics_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct metrics_conn *c = s->data;
    size_t blen;
    int hl;
    uv_buf_t out;

    (void)b;
    if (n < 0) {
        metrics_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (c->answered || !strstr(c->req, "\r\n\r\n")) {
        if (c->len >= METRICS_REQ_MAX - 1) {
            metrics_conn_close(c);
        }
        return;
    }
    c->answered = 1;
    uv_read_stop(s);
    /* the body goes after a header of at most ~130 bytes */
    blen = metrics_format(c->ms->m, c->out + 256, sizeof(c->out) - 256);
    hl = snprintf(c->req, sizeof(c->req),
                  "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                  blen);
    memcpy(c->out + 256 - hl, c->req, (size_t)hl);
    out = uv_buf_init(c->out + 256 - hl, (unsigned)((size_t)hl + blen));
    c->wr.data = c;
    if (uv_write(&c->wr, s, &out, 1, metrics_written) != 0) {
        metrics_conn_close(c);
    }
}

static void metrics_on_conn(uv_stream_t *l, int status)
{
    struct metrics_server *ms = l->data;
    struct metrics_conn *c;

    if (status < 0 || ms->closing || !(c = calloc(1, sizeof(*c)))) {
        return;
    }
    c->ms = ms;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    c->next = ms->conns;
    if (ms->conns) {
        ms->conns->prev = c;
    }
    ms->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, metrics_alloc, metrics_read) != 0) {
        metrics_conn_close(c);
    }
}

static void metrics_listener_closed(uv_handle_t *h)
{
    struct metrics_server *ms = h->data;
    ms->listener_closed = 1;
    metrics_server_maybe_free(ms);
}

struct metrics_server *metrics_server_new(uv_loop_t *loop, const struct sockaddr *addr,
                                          const struct metrics *m, char *err, size_t errlen)
{
    struct metrics_server *ms = calloc(1, sizeof(*ms));
    struct sockaddr_storage ss;
    int sl = sizeof(ss), r;
    char ip[INET6_ADDRSTRLEN];

    if (!ms) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ms->m = m;
    uv_tcp_init(loop, &ms->tcp);
    ms->tcp.data = ms;
    r = uv_tcp_bind(&ms->tcp, addr, 0);
    if (r == 0) {
        r = uv_listen((uv_stream_t *)&ms->tcp, 64, metrics_on_conn);
    }
    if (r != 0) {
        snprintf(err, errlen, "cannot listen for metrics: %s", uv_strerror(r));
        metrics_server_close(ms);
        return NULL;
    }
    uv_tcp_getsockname(&ms->tcp, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
        log_info(0, "metrics", "event=listening service=metrics addr=[%s]:%u", ip,
                 (unsigned)ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
        log_info(0, "metrics", "event=listening service=metrics addr=%s:%u", ip,
                 (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return ms;
}

void metrics_server_close(struct metrics_server *ms)
{
    ms->closing = 1;
    for (struct metrics_conn *c = ms->conns; c; c = c->next) {
        metrics_conn_close(c);
    }
    uv_close((uv_handle_t *)&ms->tcp, metrics_listener_closed);
}
