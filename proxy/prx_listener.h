/* prx_listener: the inbound listeners (IPv4 and IPv6) and the set of live
 * sessions, with a graceful shutdown: stop accepting, let open transactions
 * finish within shutdown_timeout, then 421 and close the rest. */
#ifndef RELAY25_PRX_LISTENER_H
#define RELAY25_PRX_LISTENER_H

#include <stddef.h>

#include <uv.h>

struct conf;
struct metrics;
struct prx_server;

typedef void prx_done_cb(void *arg);

/* Binds and listens on every conf->listen address; logs each as
 * "event=listening addr=HOST:PORT" (the real port when 0 was asked for).
 * Takes ownership of c on success. m receives the counters. */
struct prx_server *prx_server_new(uv_loop_t *loop, struct conf *c, struct metrics *m, char *err,
                                  size_t errlen);
/* A reloaded configuration for new sessions (ownership taken); open sessions
 * finish on theirs. Listen addresses are kept: changing them needs a restart
 * (a warning is logged). */
void prx_server_reload(struct prx_server *srv, struct conf *c);
struct up_queue;
/* Where spooled messages go for background delivery. */
void prx_server_set_queue(struct prx_server *srv, struct up_queue *q);
struct up_pool;
/* Idle authenticated upstream sessions to reuse (NULL: none). */
void prx_server_set_pool(struct prx_server *srv, struct up_pool *pool);
struct up_oauth_set;
/* OAuth2 token providers for auth = xoauth2 devices (must outlive the server). */
void prx_server_set_oauth(struct prx_server *srv, struct up_oauth_set *set);
/* Starts the shutdown; done runs once every handle of the server is closed,
 * after which the server is freed. */
void prx_server_shutdown(struct prx_server *srv, prx_done_cb *done, void *arg);

#endif
