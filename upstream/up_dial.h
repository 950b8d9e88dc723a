/* up_dial: resolve a host name and connect to its addresses in turn until one
 * answers, for the SMTP client (up_session) and the OAuth2 token client
 * (up_oauth). Owns the getaddrinfo request, the address list and the connect
 * request; the caller owns each TCP handle (one per address, inside a tio). */
#ifndef RELAY25_UP_DIAL_H
#define RELAY25_UP_DIAL_H

#include <stdint.h>

#include <uv.h>

enum up_dial_stage {
    UP_DIAL_RESOLVE, /* the name did not resolve */
    UP_DIAL_CONNECT, /* no address accepted the connection */
};

struct up_dial_cbs {
    /* A fresh TCP handle for the next address. prev is 0 for the first one,
     * else the previous address's error (its handle is the caller's to close).
     * NULL stops the dial (out of memory, or the caller is closing). */
    uv_tcp_t *(*on_socket)(void *arg, int prev);
    /* Exactly once after up_dial_start returned 0, always from the loop:
     * status 0 (connected on the last handle given) or a libuv error, at
     * stage; UV_ENOMEM when on_socket gave NULL. */
    void (*on_done)(void *arg, int status, enum up_dial_stage stage);
};

/* Embedded in its owner, which must outlive on_done. */
struct up_dial {
    uv_loop_t *loop;
    uv_getaddrinfo_t gai;
    uv_connect_t conn;
    struct addrinfo *ai, *next;
    const struct up_dial_cbs *cbs;
    void *arg;
};

/* 0: on_socket and on_done follow; < 0 (a libuv error): nothing follows. */
int up_dial_start(struct up_dial *d, uv_loop_t *loop, const char *host, uint16_t port,
                  const struct up_dial_cbs *cbs, void *arg);
/* Frees the address list; when the owner is freed (after on_done). */
void up_dial_free(struct up_dial *d);

#endif
