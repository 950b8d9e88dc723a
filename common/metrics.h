/* metrics: counters and histograms of one relay25 process, and the Prometheus
 * text exposition served over HTTP on metrics_listen (same loop). The counters
 * live in one struct owned by `serve` and handed to the sessions; nothing here
 * is global. */
#ifndef RELAY25_METRICS_H
#define RELAY25_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define METRICS_NBUCKETS 10
#define METRICS_NERR 15 /* enum relay_err 0..-14 */
/* Scrape connections open at once; more are closed as soon as they are accepted. */
#define METRICS_MAX_CONNS 16

struct metrics_hist {
    uint64_t buckets[METRICS_NBUCKETS]; /* cumulative counts are computed on output */
    uint64_t count;
    double sum;
};

struct metrics {
    uint64_t sessions_total;
    uint64_t sessions_active;
    uint64_t refused_total;        /* not in allow / no device / PROXY not trusted */
    uint64_t limited_total;        /* connection limits (421) */
    uint64_t rate_limited_total;   /* message_rate / recipient_rate (450) */
    uint64_t policy_refused_total; /* allowed_senders / allowed_recipients (550) */
    uint64_t auth_failures_total;  /* inbound AUTH with a wrong login or password */
    uint64_t auth_lockouts_total;  /* addresses locked out by auth_fail_limit */
    uint64_t messages_sent;
    uint64_t messages_deferred;
    uint64_t messages_bounced;
    uint64_t messages_aborted;
    uint64_t bytes_total;                   /* message bytes accepted by upstream */
    uint64_t recipients_total;              /* recipients of sent messages */
    uint64_t upstream_errors[METRICS_NERR]; /* by -enum relay_err */
    struct metrics_hist upstream_setup;     /* connect + TLS + AUTH, seconds */
    struct metrics_hist upstream_delivery;  /* end of DATA -> upstream's reply, seconds */
    uint64_t start_time;                    /* unix seconds */
    uint64_t upstream_connections;          /* upstream sessions opened (not reused) */
    uint64_t upstream_reused;               /* transactions on a pooled session */
    /* When spooling: the queue's size and its oldest message (set by serve). */
    void (*queue_stats)(void *arg, uint64_t *messages, uint64_t *bytes, uint64_t *oldest_unix);
    void *queue_arg;
};

void metrics_observe(struct metrics_hist *h, double seconds);
void metrics_upstream_error(struct metrics *m, int relay_err);
/* Prometheus text format 0.0.4 into buf; returns the length (truncated to cap-1). */
size_t metrics_format(const struct metrics *m, char *buf, size_t cap);

struct metrics_server;
/* Serves GET or HEAD of /metrics (and /) on addr; other paths get 404, other
 * methods 405. NULL with err on bind failure. */
struct metrics_server *metrics_server_new(uv_loop_t *loop, const struct sockaddr *addr,
                                          const struct metrics *m, char *err, size_t errlen);
/* Closes the listener and open connections; frees itself when closed. */
void metrics_server_close(struct metrics_server *ms);

#endif
