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

/* The boundary of a multipart message whose header section is h[0, hlen) into
 * out. 1, or 0 when it is not multipart (or the boundary is malformed). */
int up__graph_boundary(const char *h, size_t hlen, char *out, size_t cap);
/* A body part's header section: *b64 when its Content-Transfer-Encoding is
 * base64, the file name (Content-Disposition filename, else Content-Type name;
 * "" when none) and the media type ("" when none). */
void up__graph_part(const char *h, size_t hlen, int *b64, char *name, size_t ncap, char *ctype,
                    size_t ccap);
/* A string member of a JSON object (a draft's "id", an upload session's
 * "uploadUrl") into out. 0, or -1 when absent, not a string, too long or not JSON. */
int up__graph_json_str(const char *body, size_t len, const char *member, char *out, size_t cap);
/* createUploadSession's request body for one file attachment (malloc'd JSON), or NULL. */
char *up__graph_upload_body(const char *name, const char *ctype, unsigned long long size);

/* The "roles" claim of an app-only access token (a JWT, RFC 7519; read, not
 * verified: Graph verifies it) into out, comma-separated. 1 when Mail.Send is
 * among them, 0 when not, -1 when the token carries no readable roles. */
int up__graph_jwt_roles(const char *jwt, char *out, size_t cap);

#endif
