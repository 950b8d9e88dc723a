/* prx_session: one inbound SMTP session from a device (RFC 5321 server side),
 * relayed transaction by transaction to an up_session that authenticates with
 * the device's credentials, or written to the spool (mode = spool, or
 * on_upstream_failure = queue). Owns its tio, timer and upstream session. Memory:
 * ~2 KiB + tio (16 KiB) idle, + 24 KiB of codec buffers during DATA. */
#ifndef RELAY25_PRX_SESSION_H
#define RELAY25_PRX_SESSION_H

#include <stddef.h>

#include <uv.h>

#include "proxy/prx_conf.h"

struct conf;
struct metrics;
struct prx_session;
struct auth_fail;
struct auth_passwd_sched;
struct up_queue;
struct up_pool;
struct spool_group;
struct up_oauth_set;

/* Shared by the listener and its sessions: the session list for shutdown. */
struct prx_env {
    uv_loop_t *loop;
    struct prx_conf *cur; /* for new sessions */
    struct metrics *metrics;
    struct up_queue *queue;     /* background delivery; NULL when nothing is spooled */
    struct up_pool *pool;       /* idle authenticated upstream sessions; NULL: no reuse */
    struct up_oauth_set *oauth; /* OAuth2 token providers (auth = xoauth2); may be NULL */
    struct spool_group *spool;  /* group commit of every message spooled from here */
    struct prx_session *head;   /* live sessions */
    size_t nsessions;
    size_t nrefused; /* of nsessions: refused clients, not counted against max_connections */
    int draining;    /* SIGTERM: no new transactions */
    void (*on_empty)(struct prx_env *env); /* called when the last session went away */

    /* inbound AUTH: password checks' budget and failures per address; per process,
     * kept across reloads (they live here, not in the prx_conf snapshot) */
    struct auth_passwd_sched *pw;
    struct auth_fail *auth_fails;
};

/* Accept one connection from listener and greet it (220, or 554 when the
 * client is not allowed); implicit_tls: after a TLS handshake (tls_listen).
 * Returns NULL if the accept failed. */
struct prx_session *prx_session_accept(struct prx_env *env, uv_stream_t *listener,
                                       int implicit_tls);
/* Shutdown: idle sessions get 421 and close at once; sessions inside a
 * transaction finish it first. */
void prx_session_drain_all(struct prx_env *env);
/* Shutdown timeout: 421 and close now (an unfinished message is not delivered). */
void prx_session_abort_all(struct prx_env *env);

#endif
