/* tio: the byte pipe between a TCP stream and an SMTP parser. In plain mode it
 * passes bytes through; after tio_starttls_client() / _server() the BearSSL engine sits in
 * the middle (ciphertext on the socket, plaintext to and from the caller), so
 * SMTP code is the same in clear and in TLS. Owns its uv_tcp_t, buffers and TLS
 * context. Memory: 4 KiB read buffer (16 KiB with TLS, 64 KiB during tio_bulk()) + queued writes
 * (bounded by the caller via tio_pending()) + while TLS is active the engine contexts and record
 * buffers: as a client BR_SSL_BUFSIZE_BIDI (32 KiB), as a server 20 KiB (small output records:
 * a server only sends replies). bench/idle.py: 8.3 KiB per idle plain inbound session, 39 KiB
 * per idle inbound TLS session. */
#ifndef RELAY25_TIO_H
#define RELAY25_TIO_H

#include <stddef.h>

#include <bearssl.h>
#include <uv.h>

struct tio;
struct tls_ca;
struct tls_cert;

/* Errors given to on_error: libuv codes (UV_EOF, UV_ECONNRESET...) or TLS
 * failures, which are TIO_ERR_TLS - <BearSSL error code>. */
#define TIO_ERR_TLS (-200000)
#define TIO_IS_TLS_ERR(e) ((e) <= TIO_ERR_TLS && (e) > TIO_ERR_TLS - 4096)
/* As a client: the server's first bytes were text (an SMTP greeting), not a TLS
 * record. Not a BearSSL code (those end below 1024). */
#define TIO_ERR_PLAINTEXT (TIO_ERR_TLS - 4000)

struct tio_cbs {
    /* Plaintext arrived. Return the bytes consumed; returning fewer than len
     * pauses input (the rest is kept) until tio_resume(). */
    size_t (*on_read)(void *arg, const char *data, size_t len);
    /* The TLS handshake completed (verified unless the caller relaxed it). */
    void (*on_handshake)(void *arg);
    /* A write completed and less than TIO_LOWAT bytes remain queued. */
    void (*on_drain)(void *arg);
    /* EOF, I/O error or TLS failure. The tio stays usable only for tio_close(). */
    void (*on_error)(void *arg, int err);
    /* The handle is closed; the tio is freed right after this returns. */
    void (*on_close)(void *arg);
};

#define TIO_LOWAT (64u * 1024u)

struct tio *tio_new(uv_loop_t *loop, const struct tio_cbs *cbs, void *arg);
/* The TCP handle, for uv_accept() / uv_tcp_connect() before tio_start(). */
uv_tcp_t *tio_tcp(struct tio *t);
uv_stream_t *tio_stream(struct tio *t);
/* Begin delivering input. */
int tio_start(struct tio *t);
/* Deliver input kept back by a short on_read, then keep reading. Must not be
 * called from inside on_read. */
void tio_resume(struct tio *t);
/* on = 1: bulk input follows (a message body): once a read fills the small
 * buffer, read in 64 KiB chunks instead of 4 KiB (16 times fewer read calls);
 * on = 0: back to the small buffer, so only sessions receiving a large body pay
 * for the large one. Takes effect after the current on_read. */
void tio_bulk(struct tio *t, int on);

/* Switch to TLS as a client: SNI and certificate check against ca for
 * server_name (verify = 0 accepts any certificate: only when the user asked).
 * Any plaintext received but not yet consumed is discarded (RFC 3207 §4.2,
 * STARTTLS command injection). Call it at a line boundary from on_read or
 * before tio_start(). on_handshake follows, or on_error. */
int tio_starttls_client(struct tio *t, const struct tls_ca *ca, const char *server_name, int verify,
                        const br_ssl_session_parameters *resume);
/* Switch to TLS as a server with cert (chain + key; EC or RSA), accepting
 * min_version (BR_TLS10..BR_TLS12) up to TLS 1.2. Queued plaintext (the 220
 * to STARTTLS) is flushed first; plaintext received but not consumed is
 * discarded (RFC 3207 §4.2). Same calling rules as tio_starttls_client(). */
int tio_starttls_server(struct tio *t, const struct tls_cert *cert, int min_version);
/* After the handshake: the session parameters to offer next time (resumption,
 * RFC 5246 §7.3, by session ID), and whether this handshake resumed one.
 * Returns 0, or -1 before the handshake. */
int tio_tls_session(const struct tio *t, br_ssl_session_parameters *out, int *resumed);
int tio_tls_active(const struct tio *t);
/* ACK what arrives at once instead of delaying it (TCP_QUICKACK, for a while):
 * a peer without TCP_NODELAY holds its second reply to pipelined commands until
 * the first is acknowledged, which delayed ACKs stretch to ~40 ms. */
void tio_quickack(struct tio *t);
/* TLS version and cipher suite for logs, e.g. "TLSv1.2:ECDHE-ECDSA-AES128-GCM". */
const char *tio_tls_desc(const struct tio *t, char *buf, size_t len);

/* Queue plaintext (copied). Nothing is sent before tio_flush() unless a full
 * buffer or TLS record is ready, so a reply or a body chunk goes out as one
 * write / one record. Returns 0 or a negative error. */
int tio_write(struct tio *t, const void *data, size_t len);
int tio_flush(struct tio *t);
/* Bytes queued for the socket and not yet written. */
size_t tio_pending(const struct tio *t);

void tio_close(struct tio *t);
const char *tio_strerror(int err, char *buf, size_t len);
/* After a TLS failure, more about it, or "": for TIO_ERR_PLAINTEXT the start of
 * the server's text; for a certificate name mismatch the names the certificate
 * carries ("DNS:mx.example, IP:192.0.2.10", or "CN:..." without subjectAltName). A
 * server_name that is an IP literal is matched against iPAddress names and not
 * sent as SNI. Valid until tio_close(). */
const char *tio_tls_detail(const struct tio *t);
/* 1 for certificate problems (untrusted, name mismatch, expired). */
int tio_err_is_cert(int err);

#endif
