/* metrics: Prometheus text exposition (format 0.0.4) over a minimal HTTP/1.0
 * responder: read the request head (bounded in size and time), answer, close.
 * At most METRICS_MAX_CONNS scrapes at once (about 4.5 KB each, 16 KB more while
 * answering); more are closed at once. The head is judged by metrics_req. */
#include "common/metrics.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics_req.h"
#include "common/reply.h"

#define METRICS_OUT_MAX 16384 /* answer buffer, allocated once a head is complete */
/* a scrape must send its head within this time, and take its answer within the next */
#define METRICS_READ_TIMEOUT_MS 5000
#define METRICS_WRITE_TIMEOUT_MS 10000

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
    unsigned nconns;
    int closing, listener_closed;
    int full_logged; /* the cap was hit; logged once until the load drops */
    int stalled;     /* out of memory left a connection unaccepted: libuv polls no more */
};

static void metrics_on_conn(uv_stream_t *l, int status);

/* One scrape: its socket and timer (freed when both are closed), the request
 * head so far, and the answer, allocated only once the head is complete. */
struct metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    struct metrics_server *ms;
    struct metrics_conn *prev, *next;
    size_t len;
    int handles; /* open uv handles: free at 0 */
    int answered, written, eof;
    char *out;
    char req[METRICS_REQ_MAX];
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

    if (--c->handles > 0) {
        return;
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        ms->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    ms->nconns--;
    if (ms->nconns <= METRICS_MAX_CONNS / 2) {
        ms->full_logged = 0;
    }
    free(c->out);
    free(c);
    if (ms->stalled && !ms->closing) {
        ms->stalled = 0; /* uv_accept on the waiting connection resumes the listener */
        metrics_on_conn((uv_stream_t *)&ms->tcp, 0);
    }
    metrics_server_maybe_free(ms);
}

static void metrics_conn_close(struct metrics_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, metrics_conn_closed);
        uv_close((uv_handle_t *)&c->timer, metrics_conn_closed);
    }
}

static void metrics_on_timeout(uv_timer_t *t)
{
    metrics_conn_close(t->data);
}

static void metrics_on_shutdown(uv_shutdown_t *sd, int status)
{
    if (status < 0) {
        metrics_conn_close(sd->data);
    }
}

/* The answer is out: send FIN and read (discarding) until the client closes, so
 * bytes it still sends (a request body) cannot turn our close into a reset that
 * destroys the answer; the timer bounds the wait. */
static void metrics_on_written(uv_write_t *w, int status)
{
    struct metrics_conn *c = w->data;

    c->written = 1;
    if (status < 0 || c->eof || uv_is_closing((uv_handle_t *)&c->tcp)) {
        metrics_conn_close(c);
        return;
    }
    c->sd.data = c;
    if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, metrics_on_shutdown) != 0) {
        metrics_conn_close(c);
    }
}

static void metrics_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *b)
{
    struct metrics_conn *c = h->data;
    (void)sugg;
    if (c->answered) {
        c->len = 0; /* after the head: read only to discard */
    }
    b->base = c->req + c->len;
    b->len = METRICS_REQ_MAX - c->len;
}

static const char *metrics_reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "HTTP Version Not Supported";
    }
}

/* The answer to a complete head: the exposition for 200, a one-line text body
 * otherwise; RFC 9110 §15.5.6: a 405 names the allowed methods. */
static int metrics_answer(struct metrics_conn *c, const struct metrics_req *r)
{
    size_t blen, hcap = 256;
    int hl;
    uv_buf_t out;
    char hdr[256];

    c->out = malloc(METRICS_OUT_MAX);
    if (!c->out) {
        return -1;
    }
    if (r->code == 200) {
        blen = metrics_format(c->ms->m, c->out + hcap, METRICS_OUT_MAX - hcap);
    } else {
        int n = snprintf(c->out + hcap, METRICS_OUT_MAX - hcap, "%d %s\n", r->code,
                         metrics_reason(r->code));
        blen = n > 0 ? (size_t)n : 0;
    }
    hl = snprintf(hdr, sizeof(hdr),
                  "HTTP/1.0 %d %s\r\nContent-Type: text/plain; %s\r\n%sContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n",
                  r->code, metrics_reason(r->code),
                  r->code == 200 ? "version=0.0.4" : "charset=utf-8",
                  r->code == 405 ? "Allow: GET, HEAD\r\n" : "", blen);
    if (hl < 0 || (size_t)hl >= hcap) {
        return -1;
    }
    memcpy(c->out + hcap - (size_t)hl, hdr, (size_t)hl);
    out =
        uv_buf_init(c->out + hcap - (size_t)hl, (unsigned)((size_t)hl + (r->head_only ? 0 : blen)));
    c->wr.data = c;
    return uv_write(&c->wr, (uv_stream_t *)&c->tcp, &out, 1, metrics_on_written);
}

static void metrics_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct metrics_conn *c = s->data;
    struct metrics_req r;

    (void)b;
    if (n < 0) {
        /* EOF before the answer is written: finish writing, then close */
        if (n == UV_EOF && c->answered && !c->written) {
            c->eof = 1;
            uv_read_stop(s);
            return;
        }
        metrics_conn_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->answered || metrics_req_parse(c->req, c->len, &r) == METRICS_REQ_MORE) {
        return;
    }
    c->answered = 1;
    /* the rest (write, then waiting for the client's FIN) gets its own bound */
    uv_timer_start(&c->timer, metrics_on_timeout, METRICS_WRITE_TIMEOUT_MS, 0);
    if (metrics_answer(c, &r) != 0) {
        metrics_conn_close(c);
    }
}

/* Over the cap, a scraper is accepted and closed at once: descriptors and
 * memory stay bounded whatever connects, and the listener keeps accepting. */
static void metrics_reject_closed(uv_handle_t *h)
{
    free(h);
}

static void metrics_reject(struct metrics_server *ms, uv_stream_t *l)
{
    uv_tcp_t *t = malloc(sizeof(*t));

    if (!t) {
        ms->stalled = 1;
        return;
    }
    uv_tcp_init(l->loop, t);
    (void)uv_accept(l, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, metrics_reject_closed);
    if (!ms->full_logged) {
        ms->full_logged = 1;
        log_warn(0, "metrics",
                 "event=full connections=%u warning=\"metrics connections over "
                 "the limit are closed at once\"",
                 ms->nconns);
    }
}

static void metrics_on_conn(uv_stream_t *l, int status)
{
    struct metrics_server *ms = l->data;
    struct metrics_conn *c;

    if (status < 0) {
        return;
    }
    if (ms->closing || ms->nconns >= METRICS_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
        metrics_reject(ms, l);
        return;
    }
    c->ms = ms;
    uv_tcp_init(l->loop, &c->tcp);
    uv_timer_init(l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    c->next = ms->conns;
    if (ms->conns) {
        ms->conns->prev = c;
    }
    ms->conns = c;
    ms->nconns++;
    uv_timer_start(&c->timer, metrics_on_timeout, METRICS_READ_TIMEOUT_MS, 0);
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
