/* up_session: the outbound SMTP client. One session = one TCP connection to an
 * upstream: resolve, connect, (implicit TLS | EHLO, STARTTLS), EHLO, AUTH; then
 * transactions driven by the caller, one command at a time (RFC 5321, RFC 3207,
 * RFC 4954). Credentials are never sent unless TLS is up and verified (or the
 * user relaxed verification). Memory: ~6 KiB + tio (16 KiB + ~37 KiB TLS). */
#ifndef RELAY25_UP_SESSION_H
#define RELAY25_UP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "upstream/up_reply.h"

struct up_session;
struct up_tlscache;
struct up_oauth;
struct conf;
struct conf_device;
struct conf_upstream;

struct up_params {
    const struct conf_upstream *up;
    const char *user;     /* copied: a session may outlive the conf it came from */
    const char *password; /* copied, wiped at the end; never logged */
    const char *helo;     /* our EHLO name */
    uint64_t sid;         /* log id of the session this serves */
    unsigned connect_timeout, command_timeout, data_timeout; /* seconds */
    /* Hand-off to a relay25 daemon (sendmail's `submit`): plain SMTP, no TLS and
     * no AUTH; user and password are unused. Never for a provider. */
    int local_plain;
    /* With local_plain: a PROXY protocol v2 LOCAL header before anything else, as a
     * load balancer's health check sends it (`relay25 health --proxy`). */
    int proxy_local;
    /* TLS session resumption cache (may be NULL). */
    struct up_tlscache *tls_cache;
    /* Called once when the session is freed, with its up_where(): how up_pool
     * gets back the connection slot the session held. NULL: nothing to do. */
    void (*on_free)(void *free_arg, const char *where);
    void *free_arg;
    /* auth = xoauth2 (oauthbearer): AUTH XOAUTH2 (OAUTHBEARER) with tokens from here; it
     * must outlive the session. NULL: PLAIN, LOGIN or CRAM-MD5 with password. */
    struct up_oauth *oauth;
    /* auth_mechanisms: enum conf_mech in preference order, ended by 0 (copied);
     * all 0: the default order, strongest first. */
    unsigned char mechs[8];
    /* auth = oauthbearer: AUTH OAUTHBEARER (RFC 7628) instead of XOAUTH2 */
    int oauthbearer;
};

struct up_cbs {
    /* Authenticated and ready for MAIL (err == 0), or failed on the way there
     * (err is enum relay_err; r is upstream's reply when one caused it, else NULL;
     * detail is a one-line reason). The session closes itself after a failure. */
    void (*on_ready)(void *arg, int err, const struct up_reply *r, const char *detail);
    /* Upstream's reply to the last MAIL, RCPT, DATA, end of data or RSET. r is
     * valid only during the call. */
    void (*on_reply)(void *arg, const struct up_reply *r);
    /* The connection failed after on_ready (lost, timed out, protocol error);
     * cmd_pending says whether a command was waiting for a reply. The session closes. */
    void (*on_fail)(void *arg, int err, const char *detail, int cmd_pending);
    /* Body output fell below the low-water mark: more up_body() is welcome. */
    void (*on_drain)(void *arg);
    /* Gone; the session is freed right after. */
    void (*on_close)(void *arg);
};

/* The calling contract (libuv's): up_session_start, up_mail, up_rcpt, up_data,
 * up_body, up_data_end, up_rset and up_uncork either
 *  - return < 0: the call had no effect (wrong state, or the session already
 *    failed or closes) and no callback comes because of it; or
 *  - return 0: the outcome comes later through on_ready, on_reply or on_fail,
 *    always from the loop, never from inside the call. A failure met during
 *    the call (a write error, a line too long) is one of these outcomes.
 * up_quit and up_close never fail; after them only on_close comes (a failure
 * not yet reported is dropped). on_close always comes, from the loop. */
/* The parameters for device d's identity at its first upstream, from c
 * (hostname, timeouts); the rest (oauth, tls_cache, on_free) zero. */
void up_params_for(struct up_params *p, const struct conf_device *d, const struct conf *c,
                   uint64_t sid);
struct up_session *up_session_new(uv_loop_t *loop, const struct up_params *p,
                                  const struct up_cbs *cbs, void *arg);
/* Resolve, connect, TLS, EHLO, AUTH: on_ready follows. */
int up_session_start(struct up_session *s);

/* "host:port" for logs and replies. */
const char *up_where(const struct up_session *s);
/* The name of its [upstream NAME] section, for logs. */
const char *up_name(const struct up_session *s);
/* The same text for a configured upstream, before any session exists. */
void up_where_of(const struct conf_upstream *up, char *buf, size_t cap);
/* EHLO capabilities after TLS (UP_EXT_*), valid once ready. */
unsigned up_ext(const struct up_session *s);
/* The whole EHLO after TLS (capabilities, AUTH mechanisms, SIZE), valid once ready. */
void up_session_ehlo(const struct up_session *s, struct up_ehlo *out);
const struct up_ehlo *up_ehlo(const struct up_session *s);
/* For `check --upstream`: TLS version and cipher ("TLSv1.2:ECDHE-RSA-AES128-GCM-SHA256")
 * and the SASL mechanism AUTH used ("PLAIN"), valid once ready. */
const char *up_tls_desc(const struct up_session *s, char *buf, size_t len);
const char *up_mech_name(const struct up_session *s);
/* 1 when ready and no command is outstanding. */
int up_idle(const struct up_session *s);

/* Each sends one command and arms the reply timeout; the reply comes through
 * on_reply. params may be NULL or "" (ESMTP parameters, already vetted). */
int up_mail(struct up_session *s, const char *from, const char *params);
int up_rcpt(struct up_session *s, const char *to, const char *params);
int up_data(struct up_session *s);
/* PIPELINING (RFC 2920), when up_ext() has UP_EXT_PIPELINING: up_rcpt and
 * up_data may also be called while MAIL or RCPT replies are outstanding (DATA
 * last); on_reply then comes once per command, in order. Between up_cork and
 * up_uncork commands are written but not flushed, so the group leaves in one
 * write. up_uncork returns < 0 only when the session had already failed. */
void up_cork(struct up_session *s);
int up_uncork(struct up_session *s);
/* After a 354: queue wire-format body bytes (already dot-stuffed). */
int up_body(struct up_session *s, const char *data, size_t len);
/* Bytes queued towards upstream and not yet written (backpressure). */
size_t up_pending(const struct up_session *s);
/* The terminator was queued with up_body: flush and await the final reply. */
int up_data_end(struct up_session *s);
int up_rset(struct up_session *s);
/* QUIT politely when idle, then close; otherwise close at once. */
void up_quit(struct up_session *s);
/* Abort: close without QUIT (e.g. inside DATA, so upstream discards the message). */
void up_close(struct up_session *s);

/* Reuse (up_pool): 1 when s authenticated at up's address and server name
 * with these credentials. */
int up_session_same(const struct up_session *s, const struct conf_upstream *up, const char *user,
                    const char *password);
/* Hand a session to a new owner (callbacks and log id). */
void up_session_rebind(struct up_session *s, const struct up_cbs *cbs, void *arg, uint64_t sid);

#endif
