/* up_dial: getaddrinfo, then uv_tcp_connect to each address in order (RFC 6724
 * order as the resolver sorts it) until one connects; the caller gives a fresh
 * handle per attempt, since a handle whose connect failed cannot be reused. */
#include "upstream/up_dial.h"

#include <stdio.h>
#include <string.h>

static void up_dial_next(struct up_dial *d, int prev);

static void up_dial_connect_cb(uv_connect_t *req, int status)
{
    struct up_dial *d = req->data;

    if (status < 0 && status != UV_ECANCELED && d->next) {
        up_dial_next(d, status);
        return;
    }
    d->cbs->on_done(d->arg, status, UP_DIAL_CONNECT);
}

static void up_dial_next(struct up_dial *d, int prev)
{
    struct addrinfo *ai = d->next;
    uv_tcp_t *tcp;
    int r;

    d->next = ai->ai_next;
    if (!(tcp = d->cbs->on_socket(d->arg, prev))) {
        d->cbs->on_done(d->arg, UV_ENOMEM, UP_DIAL_CONNECT);
        return;
    }
    d->conn.data = d;
    if ((r = uv_tcp_connect(&d->conn, tcp, ai->ai_addr, up_dial_connect_cb)) < 0) {
        d->cbs->on_done(d->arg, r, UP_DIAL_CONNECT);
    }
}

static void up_dial_resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct up_dial *d = req->data;

    d->ai = res;
    if (status < 0 || !res) {
        d->cbs->on_done(d->arg, status < 0 ? status : UV_EAI_NONAME, UP_DIAL_RESOLVE);
        return;
    }
    d->next = res;
    up_dial_next(d, 0);
}

int up_dial_start(struct up_dial *d, uv_loop_t *loop, const char *host, uint16_t port,
                  const struct up_dial_cbs *cbs, void *arg)
{
    struct addrinfo hints;
    char p[8];

    memset(d, 0, sizeof(*d));
    d->loop = loop;
    d->cbs = cbs;
    d->arg = arg;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(p, sizeof(p), "%u", (unsigned)port);
    d->gai.data = d;
    return uv_getaddrinfo(loop, &d->gai, up_dial_resolve_cb, host, p, &hints);
}

void up_dial_free(struct up_dial *d)
{
    if (d->ai) {
        uv_freeaddrinfo(d->ai);
        d->ai = NULL;
    }
}
