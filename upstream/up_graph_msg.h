/* up_graph_msg: the pure parts of a Graph delivery (upstream/up_graph.c), with
 * no I/O and a fuzz target (tests/fuzz/fuzz_graph.c): Graph's JSON answers
 * (errors-and-throttling error bodies) and the Bcc field that makes the MIME
 * headers carry every envelope recipient (RFC 5322 §3.6.3). */
#ifndef RELAY25_UP_GRAPH_MSG_H
#define RELAY25_UP_GRAPH_MSG_H

#include <stddef.h>

/* Graph's JSON error body
 * ({"error": {"code", "message", "innerError": {"request-id"}}}) into code,
 * message and request_id (each NUL-terminated, cut to its cap, control characters
 * replaced by blanks). 0, or -1 when it is no such body (outputs are then ""). */
int up__graph_parse_error(const char *body, size_t len, char *code, size_t ccap, char *message,
                          size_t mcap, char *request_id, size_t rcap);
/* The Bcc field for the recipients of rcpt that appear in none of the To, Cc and
 * Bcc fields of the header section h[0, hlen): "Bcc: a,\r\n b\r\n" into out (cap
 * bytes, NUL-terminated). Its length (0: none missing), or -1 when out is too small. */
long up__graph_bcc(const char *h, size_t hlen, const char *const *rcpt, size_t nrcpt, char *out,
                   size_t cap);

#endif
