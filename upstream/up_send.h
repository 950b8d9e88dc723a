/* up_send: one SMTP transaction over a ready up_session: MAIL, one RCPT per
 * recipient, DATA, then the body (bytes in memory, then a file read through
 * uv_fs), dot-stuffed and paced by the session's drain. Used by the queue and by
 * sendmail's direct mode. PIPELINING (RFC 2920) when the session offers it.
 * RFC 5321 §3.3, §4.5.2. Memory: 96 KiB of read/encode buffers per transaction. */
#ifndef RELAY25_UP_SEND_H
#define RELAY25_UP_SEND_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "upstream/up_session.h"

struct up_send;

enum up_send_step {
    UP_SEND_MAIL,
    UP_SEND_RCPT,
    UP_SEND_DATA,
    UP_SEND_BODY,
    UP_SEND_DOT,
};

/* How the transaction ended. Valid during on_done only. */
struct up_send_result {
    enum up_send_step step; /* where it ended */
    /* 0: it ended on upstream's reply (reply; NULL when the recipients' replies
     * ended it: none accepted, or one refused under all_or_none). Otherwise enum
     * relay_err: the session failed or was closed (detail says why). */
    int err;
    /* a uv error code (< 0) opening or reading the body file; err is 0 then */
    int file_err;
    const struct up_reply *reply;
    const char *detail;
    const char *where;          /* up_where() of the session, "host:port" */
    size_t accepted;            /* recipients upstream accepted */
    uint64_t size;              /* content bytes sent (before dot-stuffing) */
    struct up_session *session; /* idle and bound again to the caller's callbacks: QUIT or
                                 * pool it. NULL: closed (its on_close still comes). */
};

struct up_send_cbs {
    /* Trace hook (sendmail -v): each command as it is written (i: the RCPT's
     * index; UP_SEND_DOT for the end of data). It may run inside up_send_start,
     * reports no outcome and must not call up_send_*. May be NULL. */
    void (*on_sent)(void *arg, enum up_send_step step, size_t i);
    /* Every reply, in order (i: the RCPT's index), before on_done for the last. */
    void (*on_reply)(void *arg, enum up_send_step step, size_t i, const struct up_reply *r);
    /* Once, last: the transaction is over and the up_send is freed. */
    void (*on_done)(void *arg, const struct up_send_result *res);
};

/* A transaction. The caller fills it and keeps every pointer valid until on_done. */
struct up_send_req {
    uv_loop_t *loop;
    const char *from;   /* reverse-path, "" for <> */
    const char *params; /* MAIL parameters (SIZE=, BODY=) or NULL */
    const char *const *rcpt;
    /* per recipient: its RCPT parameters (NOTIFY=, ORCPT=; RFC 3461) or NULL;
     * the array itself may be NULL */
    const char *const *rcpt_params;
    size_t nrcpt;
    /* 1: DATA only when every recipient was accepted (sendmail); 0: when any was
     * (the queue), then with PIPELINING DATA goes in the same flight as the RCPTs. */
    int all_or_none;
    /* Content sent first (e.g. a header section kept in memory), in order. */
    const uv_buf_t *head;
    size_t nhead;
    /* The rest of the content, CRLF lines, not dot-stuffed: fd when >= 0 (read
     * from offset 0, not closed), else the file at path, opened after the 354. */
    uv_file fd;
    const char *path;
    /* The file's size when known (a spooled .msg), 0 when not: the body ends
     * after size bytes of it, without the read that would only find its end,
     * and small content gets small buffers. */
    uint64_t size;
    /* Whom the session is handed back to when the transaction ends. */
    const struct up_cbs *session_cbs;
    void *session_arg;
    uint64_t sid;
    const struct up_send_cbs *cbs;
    void *arg;
};

/* The calling contract (libuv's): NULL: nothing was sent, no callback comes and
 * s is untouched (not idle, no recipient, out of memory); otherwise the outcome
 * comes through on_reply and on_done, always from the loop, never from inside
 * this call. The session is the transaction's until on_done. */
struct up_send *up_send_start(struct up_session *s, const struct up_send_req *req);
/* Cut the transaction (e.g. at shutdown): the session closes without QUIT, so
 * upstream discards a partial message; on_done follows from the loop with err
 * RELAY_E_LOST. */
void up_send_abort(struct up_send *t);

const char *up_send_strstep(enum up_send_step step);

#endif
