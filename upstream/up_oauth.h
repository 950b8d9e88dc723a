/* up_oauth: OAuth2 access tokens for AUTH XOAUTH2 / OAUTHBEARER, one provider per
 * device identity (token endpoint, client, grant). A provider asks the token
 * endpoint (RFC 6749 §6 refresh_token or §4.4 client_credentials grant: an
 * HTTPS POST with up_http, TLS verified against the upstream's ca_file) or runs
 * oauth_token_command, caches the token until shortly before it expires, and
 * writes rotated refresh tokens back to their file. Requests that arrive while
 * a token is being fetched wait for that fetch. Memory: ~1 KiB idle; during a
 * fetch 64 KiB of response + up_http's tio (~53 KiB with TLS). */
#ifndef RELAY25_UP_OAUTH_H
#define RELAY25_UP_OAUTH_H

#include <uv.h>

struct up_oauth;
struct up_oauth_set;
struct conf_device;

/* token: the access token, valid only during the call and never to be logged;
 * or NULL, and err is a one-line reason without secrets. */
typedef void up_oauth_cb(void *arg, const char *token, const char *err);

/* A provider for d (auth = xoauth2), with copies of what it needs from d. NULL on
 * allocation failure or when d does not use xoauth2. */
struct up_oauth *up_oauth_new(uv_loop_t *loop, const struct conf_device *d);
/* cb runs once: before this returns when a fresh token is cached, else when the
 * fetch ends. Returns 0, or -1 (out of memory or closing; cb is not called). */
int up_oauth_get(struct up_oauth *o, up_oauth_cb *cb, void *arg);
/* The pending request of arg is dropped: its cb will not run. */
void up_oauth_cancel(struct up_oauth *o, void *arg);
/* Upstream rejected token: the next up_oauth_get fetches a new one (a token that
 * has already been replaced is ignored, so concurrent sessions refresh once). */
void up_oauth_invalidate(struct up_oauth *o, const char *token);
/* Waiting requests fail; the provider is freed once its handles and any
 * refresh-token write have finished. */
void up_oauth_free(struct up_oauth *o);

/* The providers of everything that runs upstream sessions (listener, queue,
 * check), found by device identity, so a reload keeps their cached tokens. They
 * live until up_oauth_set_free(). */
struct up_oauth_set *up_oauth_set_new(uv_loop_t *loop);
/* The provider for d, made on first use. NULL when set is NULL, d->auth is not
 * xoauth2, or memory ran out. A changed secret or refresh-token file on reload
 * is taken over by the existing provider. */
struct up_oauth *up_oauth_set_find(struct up_oauth_set *set, const struct conf_device *d);
void up_oauth_set_free(struct up_oauth_set *set);

/* `relay25 oauth login`: one HTTPS POST of form (application/x-www-form-urlencoded)
 * to o's token URL, verified like a token request, outside the token cache. cb
 * runs once, later: with the HTTP status and body (valid during the call), or with
 * status 0 and err. cb must not call up_oauth_post or up_oauth_free itself.
 * Returns 0, or -1 (a fetch is running, a command grant, or out of memory). */
typedef void up_oauth_post_cb(void *arg, int status, const char *body, size_t len, const char *err);
int up_oauth_post(struct up_oauth *o, const char *form, up_oauth_post_cb *cb, void *arg);

#endif
