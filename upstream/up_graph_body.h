/* up_graph_body: the request bodies of a Graph delivery (upstream/up_graph.c)
 * from the spooled message file, blocking, for the thread pool: the message with
 * its Bcc field (up_graph_msg) base64-encoded for sendMail, or, for a message
 * larger than one request, a draft without its large base64 parts (RFC 2046
 * §5.1, top level) and those parts decoded chunk by chunk for upload sessions.
 * Memory: the message (<= UP_GRAPH_MIME_MAX) or the draft, and one chunk. */
#ifndef RELAY25_UP_GRAPH_BODY_H
#define RELAY25_UP_GRAPH_BODY_H

#include <stddef.h>
#include <stdint.h>

/* sendMail takes at most 4 MB of request (Microsoft Graph's documented limit for
 * a MIME message); base64 makes 3 bytes 4. */
#define UP_GRAPH_MIME_MAX (3000u * 1000u)

/* createUploadSession: chunks below 4 MiB in multiples of 320 KiB (Graph's
 * rule); 9 * 320 KiB is also a multiple of 3, so a chunk ends on whole base64
 * quantums of the part */
#define UP_GRAPH_CHUNK (9u * 320u * 1024u)

/* A body part too large for the draft: uploaded as a file attachment. */
struct up_graph_part {
    uint64_t start, end; /* its span in the file: boundary line to the next one */
    uint64_t body;       /* its base64 text starts here */
    uint64_t size;       /* decoded bytes */
    char name[256];
    char ctype[128];
};

struct up_graph_body {
    char *mime64; /* base64 of the message, or of the draft when large */
    size_t mime64_len;
    size_t mime_len; /* before base64 (the file's size when too large) */
    size_t nbcc;     /* recipients added as Bcc */
    int large;       /* a draft, and parts to upload */
    int too_large;   /* larger than one request and cannot be split */
    struct up_graph_part *parts;
    size_t nparts;
};

/* Fills b from the message at path for envelope recipients rcpt. 0, or a
 * negative uv error (b may hold parts of the result: up_graph_body_free). */
int up_graph_body_read(const char *path, const char *const *rcpt, size_t nrcpt,
                       struct up_graph_body *b);
/* The next min(want, UP_GRAPH_CHUNK) decoded bytes of part p, from its base64
 * text at file offset *raw_pos (moved past what was used), into chunk
 * (UP_GRAPH_CHUNK bytes), *len set. 0, or a negative uv error. */
int up_graph_body_chunk(const char *path, const struct up_graph_part *p, uint64_t *raw_pos,
                        uint64_t want, char *chunk, size_t *len);
void up_graph_body_free(struct up_graph_body *b);

#endif
