/* up_graph: one message delivered through Microsoft Graph (upstream type =
 * graph): the spooled MIME file, with envelope recipients missing from To/Cc/Bcc
 * added as Bcc, base64-encoded and POSTed to /v1.0/users/{user}/sendMail (or, when
 * larger than one request, a draft, upload sessions and a send) with an app-only
 * OAuth2 token (up_oauth), over up_http; Graph's answer becomes an SMTP verdict
 * (common/reply). Also `check --upstream`'s probe. Memory: up_graph_body.h plus
 * up_http's copy of the request body. */
#ifndef RELAY25_UP_GRAPH_H
#define RELAY25_UP_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct up_graph;
struct up_oauth;
struct conf_upstream;

struct up_graph_req {
    uv_loop_t *loop;
    const struct conf_upstream *up; /* type = graph: host, port, graph_path, ca */
    const char *user;               /* the mailbox sent as (the device's user) */
    struct up_oauth *oauth;         /* the device's token provider */
    /* the message file (CRLF lines, as spooled); NULL: `check --upstream`: a token
     * (its roles read) and a read of the mailbox, nothing sent; the result's code
     * is 250 when the mailbox may be sent as, as far as can be seen */
    const char *path;
    const char *const *rcpt; /* envelope recipients to deliver to */
    size_t nrcpt;
    uint64_t qid;     /* for logs */
    unsigned timeout; /* seconds for each HTTP request */
};

/* How the delivery ended; valid during the callback only. */
struct up_graph_result {
    int code;             /* SMTP reply code: 250, 4xx (try again later), 5xx (bounce) */
    const char *reply;    /* one line, "250 2.0.0 ..." */
    unsigned retry_after; /* seconds Graph asked to wait (Retry-After), 0: none */
    int file_err;         /* uv error reading the message (code is 451 then) */
    int err;              /* enum relay_err when Graph could not be reached or timed out, else 0 */
    uint64_t ms;          /* from the message read to Graph's last answer */
};

typedef void up_graph_cb(void *arg, const struct up_graph_result *r);

/* Starts the delivery; every pointer in req must stay valid until cb. Returns
 * NULL (out of memory: nothing follows) or the delivery: cb runs exactly once,
 * always from the loop, unless up_graph_cancel() comes first. */
struct up_graph *up_graph_send(const struct up_graph_req *req, up_graph_cb *cb, void *arg);
/* cb will not run; g frees itself once its work is over. Not from inside cb. */
void up_graph_cancel(struct up_graph *g);

#endif
