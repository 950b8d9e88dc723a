/* prx_proxy: parser for the PROXY protocol header a load balancer sends before
 * the first SMTP byte, text v1 and binary v2 (haproxy doc/proxy-protocol.txt
 * §2.1, §2.2). Pure: no I/O, no allocation; the caller keeps the bytes received
 * so far (at most PRX_PROXY_MAX) and calls again after each read. */
#ifndef RELAY25_PRX_PROXY_H
#define RELAY25_PRX_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

/* §2.1: longest v1 line, CRLF included ("PROXY UNKNOWN" + two IPv6 + two ports) */
#define PRX_PROXY_V1_MAX 107
/* Largest header accepted, v1 or v2 (16-byte preamble + addresses + TLVs). 536 is
 * the default TCP MSS (RFC 879): §2.2 expects the header in a single segment. A
 * caller buffer of this size always holds a whole header. */
#define PRX_PROXY_MAX 536

enum prx_proxy_status {
    PRX_PROXY_MORE = 0, /* incomplete, and every byte so far can still start a header */
    PRX_PROXY_DONE = 1, /* a complete valid header: *consumed and *out are set */
    PRX_PROXY_ERR = -1, /* no continuation can make this a valid header: drop the connection */
};

struct prx_proxy_result {
    /* 1 for v2 LOCAL or v1 UNKNOWN: keep the socket's own addresses (those of the
     * proxy, not of the client); src and dst are then zeroed, family AF_UNSPEC. */
    int local;
    struct sockaddr_storage src; /* client: sockaddr_in or sockaddr_in6, port in network order */
    struct sockaddr_storage dst; /* address the client connected to, same family as src */
};

/* Parse the start of a connection's byte stream, data[0..len). Returns MORE while
 * the header is incomplete, ERR as soon as the bytes cannot be a valid header
 * (garbage, a v2 header above PRX_PROXY_MAX, a v1 line without CRLF within
 * PRX_PROXY_V1_MAX, a v2 PROXY command for other than TCP over IPv4/IPv6), or DONE
 * with *consumed = header length; bytes after it belong to SMTP. consumed and out
 * are written only on DONE. Never reads data[len] or beyond. */
int prx_proxy_parse(const char *data, size_t len, size_t *consumed, struct prx_proxy_result *out);

#endif
