/* up_queue: background delivery of spooled messages. It keeps one job per
 * message of <spool_dir>/q, delivers due jobs with the message's device
 * credentials through sessions from up_pool (failover along the device's
 * upstream list; max_connections per upstream shared with the devices), retries temporary failures
 * with exponential backoff and jitter up to max_queue_age, and on permanent failure sends an RFC
 * 3464 report to the sender, keeps the message in failed/, or drops it (bounce = dsn | keep |
 * drop). File work runs in libuv's thread pool. A message is removed only after upstream accepted
 * it (at-least-once). */
#ifndef RELAY25_UP_QUEUE_H
#define RELAY25_UP_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct conf;
struct metrics;
struct up_queue;

/* Scans the spool (spool_prepare must have run) and starts delivering.
 * Holds c (conf_hold). NULL on allocation failure. */
struct up_queue *up_queue_new(uv_loop_t *loop, struct conf *c, struct metrics *m);
/* New deliveries use c (held); running ones finish on theirs. */
void up_queue_reload(struct up_queue *q, struct conf *c);
/* A message was just committed to the spool: deliver it now. */
void up_queue_add(struct up_queue *q, uint64_t qid, uint64_t size);
/* Rescan the spool (messages put back by `queue retry-failed`) and retry
 * everything now. */
void up_queue_flush(struct up_queue *q);
/* Bytes of spooled messages (max_spool_size). */
uint64_t up_queue_bytes(const struct up_queue *q);
/* Stop: running deliveries are cut (their messages stay spooled); done runs
 * when every handle and work item is finished, then q is freed. */
void up_queue_close(struct up_queue *q, void (*done)(void *arg), void *arg);

struct up_pool;
/* Reuse authenticated upstream sessions from (and return them to) pool. */
void up_queue_set_pool(struct up_queue *q, struct up_pool *pool);

struct up_oauth_set;
/* OAuth2 token providers for auth = xoauth2 devices (must outlive q). */
void up_queue_set_oauth(struct up_queue *q, struct up_oauth_set *set);

/* For metrics: messages, bytes and the oldest message's unix time (arg = q). */
void up_queue_stats(void *arg, uint64_t *messages, uint64_t *bytes, uint64_t *oldest_unix);

#endif
