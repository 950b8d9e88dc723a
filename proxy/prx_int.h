/* prx_int: what the parts of the inbound session (prx_session, prx_txn,
 * prx_relay, prx_spool, prx_data, prx_auth) share, and nothing outside proxy/
 * includes: the session and transaction structs, the states, the delivery sink
 * interface, and each part's entry points. */
#ifndef RELAY25_PRX_INT_H
#define RELAY25_PRX_INT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "auth/auth_passwd.h"
#include "common/data.h"
#include "common/reply.h"
#include "proxy/prx_cmd.h"
#include "proxy/prx_proxy.h"
#include "proxy/prx_session.h"
#include "upstream/up_pool.h"

#define PRX_BODY_STEP 4096u         /* input bytes decoded per step */
#define PRX_HIWAT (256u * 1024u)    /* upstream backlog that pauses the client */
#define PRX_OUT_HIWAT (64u * 1024u) /* replies the client has not read yet */
#define PRX_INBUF (PRX_PROXY_MAX > PRX_LINE_MAX ? PRX_PROXY_MAX : PRX_LINE_MAX)
#define PRX_PARAMS_MAX 256u
/* cli/health.c's EHLO name: such a session is a liveness probe, logged at debug */
#define PRX_HEALTH_HELO "relay25-health"

enum prx_state {
    PRX_STATE_PROXY,     /* awaiting the PROXY protocol header from the load balancer */
    PRX_STATE_REFUSED,   /* greeted with 554: only QUIT (RFC 5321 §3.1) */
    PRX_STATE_IDLE,      /* no transaction */
    PRX_STATE_CONNECT,   /* MAIL received, upstream session being set up */
    PRX_STATE_MAIL_WAIT, /* MAIL sent upstream */
    PRX_STATE_TXN,       /* MAIL accepted: RCPT / DATA */
    PRX_STATE_RCPT_WAIT,
    PRX_STATE_DATA_WAIT,
    PRX_STATE_BODY,       /* streaming the message */
    PRX_STATE_DOT_WAIT,   /* end of data sent upstream, awaiting its verdict */
    PRX_STATE_RSET_WAIT,  /* our own RSET sent upstream */
    PRX_STATE_SPOOL_WAIT, /* the message is being committed to the spool */
    PRX_STATE_CLOSING,    /* last reply queued; close once written */
    PRX_STATE_TLS,        /* TLS handshake (STARTTLS, RFC 3207, or an implicit-TLS listener) */
    PRX_STATE_AUTH,       /* AUTH sent 334: awaiting the client's response line (RFC 4954) */
    PRX_STATE_AUTH_WAIT,  /* password being checked in the thread pool */
};

#define PRX_M(st) (1u << (st))
#define PRX_M_CMD (PRX_M(PRX_STATE_REFUSED) | PRX_M(PRX_STATE_IDLE) | PRX_M(PRX_STATE_TXN))

enum prx_body_err {
    PRX_BODY_OK = 0,
    PRX_BODY_TOO_BIG,
    PRX_BODY_BARE_LF,
    PRX_BODY_HEADER_TOO_BIG,
    PRX_BODY_UPSTREAM, /* upstream failed during the body: reply is in s->txn->upfail */
    PRX_BODY_SPOOL,    /* the spool could not take it (disk full, max_spool_size, I/O) */
};

struct prx_session;

/* Where a transaction's message goes, chosen once at MAIL (prx_txn_begin):
 * relayed now, spooled, or relayed with the spool taking over on a temporary
 * upstream failure. The protocol code calls these and never tests the mode. */
struct prx_sink {
    const char *name;
    int relays;                          /* the body goes upstream */
    void (*mail)(struct prx_session *s); /* the vetted MAIL: 250, or open upstream */
    void (*rcpt)(struct prx_session *s); /* the vetted RCPT in s->txn->rcpt */
    void (*data)(struct prx_session *s); /* DATA with at least one recipient */
    /* 1 when a temporary upstream failure turns the transaction into a spooled
     * one (prx_go_local; the body then also keeps a spool copy); need_room:
     * only while the spool has room */
    int (*can_queue)(const struct prx_session *s, int need_room);
    void (*body_done)(struct prx_session *s); /* the body is complete and valid */
};

/* One mail transaction (RFC 5321 §3.3), from MAIL to its final reply; created
 * by prx_txn_begin, freed only by prx_txn_end. */
struct prx_txn {
    const struct prx_sink *sink;
    uint64_t qid;
    uint64_t dot_ms; /* end of data sent upstream */
    char from[PRX_PATH_MAX];
    char mail_params[PRX_PARAMS_MAX];
    char rcpt[PRX_PATH_MAX];    /* the RCPT being handled */
    char rparams[PRX_LINE_MAX]; /* its vetted parameters (NOTIFY=, ORCPT=; RFC 3461) or "" */
    unsigned smtputf8 : 1,      /* MAIL SMTPUTF8 (RFC 6531) */
        dsn_mail : 1;           /* MAIL RET= or ENVID= (RFC 3461) */
    unsigned nrcpt;             /* accepted (upstream or spool) */
    int txn_lost;               /* upstream dropped the transaction: upfail at the next command */
    char upfail[700];           /* the 4xx to give when upstream failed mid-transaction */
    struct data_dec dec;
    struct data_enc enc;
    uint64_t size_limit; /* prx_size_limit at DATA: a longer body gets 552 5.3.4 */
    enum prx_body_err body_err;
    int hdr_done;      /* the header section ended (first empty line) */
    int hdr_eol;       /* 0..3: progress through CR LF CR LF while scanning headers */
    uint64_t hdr_size; /* header section bytes seen so far */
    char *bodybuf;     /* 3 * PRX_BODY_STEP during DATA: decoded, then encoded */
    /* sender rewriting and routing (rewrite_sender, rewrite_from_header, [route]) */
    const struct conf_route *route; /* chosen at MAIL for this transaction, or NULL */
    char orig_from[PRX_PATH_MAX];   /* MAIL FROM as sent, when rewritten */
    char *hbuf;                     /* header section held for the From: rewrite */
    size_t hlen, hcap;
    unsigned rw_from : 1,       /* MAIL FROM rewritten */
        hdr_hold : 1,           /* holding the header section in hbuf */
        bp_spool : 1,           /* paused until the spool writer drains */
        reply_after_commit : 1, /* the client's DATA reply waits for the commit */
        rate_paused : 1;        /* we stopped reading in this rate window */
    /* data_min_rate: the current window's start and the input bytes taken in it */
    uint64_t rate_ms, rate_bytes;
    /* the spool copy (spool sink, or the tee of relay-then-queue) */
    struct spool_writer *spw;
    struct prx_graph *gw;        /* type = graph: the body's temp file, then the delivery */
    int spool_err;               /* the writer failed (uv error) */
    char (*rcpts)[PRX_PATH_MAX]; /* accepted recipients of this transaction */
    unsigned char *rq;           /* per recipient: 1 = for the spool, 0 = upstream took it */
    char **rpar;                 /* per recipient: its vetted DSN parameters (malloc'd) or NULL */
    size_t nrcpts, rcap;
};

struct prx_session {
    struct prx_env *env;
    struct prx_session *prev, *next;
    struct prx_conf *pc; /* the snapshot this session lives on */
    const struct conf *conf;
    size_t devidx;     /* index of dev in conf->devices, for its rate buckets */
    uint64_t start_ms; /* accept time, for session_timeout */
    uint64_t wait_ms;  /* since when we wait for the client: idle_timeout counts from it */
    unsigned ncmds;    /* commands since the last MAIL (max_commands_before_mail) */
    const struct conf_device *dev;
    uint64_t sid;
    enum prx_state state;
    struct tio *tio;
    uv_timer_t timer;
    struct up_session *up;
    struct up_acquire upq; /* asking the pool for an upstream session (PRX_STATE_CONNECT) */
    int refs;              /* timer + tio + live up sessions */
    unsigned closing : 1, client_gone : 1, in_read : 1, bp : 1, draining : 1, line_overflow : 1,
        esmtp : 1, rset_silent : 1;
    unsigned offer; /* REPLY_EHLO_DSN / _SMTPUTF8: offered in the last EHLO reply */
    unsigned errors;
    unsigned nmsg;
    /* the connect line waits for the first command (prx_log_connect); probe: it
     * was `relay25 health`'s EHLO PRX_HEALTH_HELO, logged at debug */
    unsigned connect_pending : 1, probe : 1;

    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    char helo[256];
    /* inbound TLS and AUTH */
    struct sockaddr_storage peer; /* implicit TLS: greeted after the handshake */
    unsigned tls_implicit : 1, authed : 1, need_helo : 1, auth_login_mech : 1;
    unsigned refused : 1;            /* counted in env->nrefused (prx_refuse) */
    char login[AUTH_PASSWD_MAX + 1]; /* AUTH user (LOGIN: while awaiting the password) */

    struct prx_txn *txn;              /* between MAIL and the transaction's end, else NULL */
    const struct conf_device *up_dev; /* whose upstream and credentials s->up carries */
    unsigned up_reused : 1,           /* s->up came from the pool: retry afresh if it is dead */
        up_txn : 1,                   /* a transaction is open upstream (MAIL accepted) */
        bp_out : 1;                   /* paused until the client reads its replies */

    size_t linelen;
    char line[PRX_INBUF + 1];
};

/* The three delivery paths (prx_relay.c, prx_spool.c). */
extern const struct prx_sink prx_sink_relay, prx_sink_relay_queue, prx_sink_spool;
/* The Graph sink (prx_graph.c): the body to a temp file, then Graph's verdict. */
extern const struct prx_sink prx_sink_graph;
struct prx_graph;
/* Content for the temp file: 1 pause until it drains (bp_spool), 0 go on, < 0 failed. */
int prx_graph_write(struct prx_graph *g, const char *data, size_t len);
/* No callback comes; the file is removed. The caller gives the session's hold back. */
void prx_graph_abort(struct prx_graph *g);

/* prx_session.c: state, replies, teardown. prx_enter_state is the only way
 * s->state changes; prx_continue resumes reading after a wait. */
void prx_enter_state(struct prx_session *s, enum prx_state st);
void prx_send(struct prx_session *s, const char *text, size_t len);
void prx_reply(struct prx_session *s, enum reply_id id);
void prx_unref_env(struct prx_session *s);
void prx_continue(struct prx_session *s);
const char *prx_with(const struct prx_session *s);

/* prx_txn.c: the transaction. prx_txn_end frees it and enters IDLE;
 * prx_go_local hands it from a relay sink to the spool sink. */
void prx_log_message(struct prx_session *s, const char *status, const char *reply, size_t rlen);
void prx_txn_end(struct prx_session *s);
void prx_txn_abort(struct prx_session *s, enum reply_id id);
int prx_rcpt_add(struct prx_session *s, const char *addr, int queued);
unsigned prx_offer(const struct prx_session *s);
size_t prx_count_queued(const struct prx_session *s, int queued);
void prx_go_local(struct prx_session *s, const char *why);
unsigned long long prx_param_size(const char *params);
void prx_txn_begin(struct prx_session *s, const char *from, const char *params);
int prx_no_queue(const struct prx_session *s, int need_room);

/* prx_relay.c: the upstream side */
uint64_t prx_size_limit(const struct prx_session *s, const char *sender);
void prx_up_release(struct prx_session *s);
void prx_drop_up(struct prx_session *s);
void prx_up_check(struct prx_session *s, int r);

/* prx_spool.c: the spool copy */
int prx_spool_room(const struct prx_session *s, uint64_t more);
void prx_rcpt_queue(struct prx_session *s, enum reply_id reply);
int prx_spool_open(struct prx_session *s);
void prx_spool_commit(struct prx_session *s, int only_queued, int reply_after);

/* prx_data.c: the body pump */
void prx_body_start(struct prx_session *s);
void prx_body_refuse(struct prx_session *s);
size_t prx_body(struct prx_session *s, const char *data, size_t len);
uint64_t prx_body_rate_due(const struct prx_session *s);
int prx_body_rate_ok(struct prx_session *s, uint64_t now_ms);

/* prx_auth.c: inbound AUTH */
int prx_auth_offered(const struct prx_session *s);
void prx_auth_end(struct prx_session *s);
void prx_auth_line(struct prx_session *s, const char *line, size_t len);
void prx_cmd_auth(struct prx_session *s, const struct prx_cmd *c);

#endif
