/* test_up_send: the transaction driver (upstream/up_send.c) against a scripted
 * SMTP server on 127.0.0.1:0, over a plain up_session: no callback from inside
 * up_send_start, per-recipient verdicts, PIPELINING (the envelope in one flight,
 * DATA with it or after the RCPT replies under all_or_none), the body from memory
 * then a file, dot-stuffed and terminated, an unreadable body file, and every
 * handle closed at the end (uv_loop_close == 0). */
#include "upstream/up_send.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "common/log.h"
#include "conf/conf.h"
#include "tests/check.h"

/* ---- the server: one connection, one line at a time ---- */

struct srv {
    uv_tcp_t listener, conn;
    int pipelining;
    char in[1 << 20];   /* everything received */
    size_t inlen, done; /* bytes handled */
    int in_data;
    char data[1 << 20]; /* the DATA content as received, terminator included */
    size_t datalen;
    char log[4096]; /* verbs, one per line; "+" after a verb read with more behind it */
    size_t loglen;
    int conn_open;
};

static void srv_write_cb(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void srv_say(struct srv *v, const char *text)
{
    uv_write_t *w = malloc(sizeof(*w));
    char *copy = strdup(text);
    uv_buf_t b = uv_buf_init(copy, (unsigned)strlen(copy));

    w->data = copy;
    uv_write(w, (uv_stream_t *)&v->conn, &b, 1, srv_write_cb);
}

static void srv_line(struct srv *v, const char *line, size_t n, int more)
{
    char verb[8] = "";

    snprintf(verb, sizeof(verb), "%.4s", line);
    v->loglen += (size_t)snprintf(v->log + v->loglen, sizeof(v->log) - v->loglen, "%s%s\n", verb,
                                  more ? "+" : "");
    if (strcmp(verb, "EHLO") == 0) {
        srv_say(v, v->pipelining ? "250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                                 : "250-test\r\n250 8BITMIME\r\n");
    } else if (strcmp(verb, "MAIL") == 0) {
        srv_say(v, "250 2.1.0 ok\r\n");
    } else if (strcmp(verb, "RCPT") == 0) {
        srv_say(v, memmem(line, n, "bad@", 4) ? "550 5.1.1 no such user\r\n" : "250 2.1.5 ok\r\n");
    } else if (strcmp(verb, "DATA") == 0) {
        v->in_data = 1;
        srv_say(v, "354 go ahead\r\n");
    } else if (strcmp(verb, "QUIT") == 0) {
        srv_say(v, "221 bye\r\n");
    } else {
        srv_say(v, "500 what\r\n");
    }
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct srv *v = h->data;
    (void)hint;
    *b = uv_buf_init(v->in + v->inlen, (unsigned)(sizeof(v->in) - v->inlen));
}

static void srv_closed(uv_handle_t *h)
{
    struct srv *v = h->data;
    v->conn_open = 0;
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct srv *v = st->data;
    (void)b;

    if (n < 0) {
        uv_close((uv_handle_t *)st, srv_closed);
        return;
    }
    v->inlen += (size_t)n;
    for (;;) {
        const char *p = v->in + v->done;
        size_t left = v->inlen - v->done;
        const char *eol = memmem(p, left, "\r\n", 2);
        size_t len;

        if (!eol) {
            return;
        }
        len = (size_t)(eol - p) + 2;
        if (v->in_data) {
            memcpy(v->data + v->datalen, p, len);
            v->datalen += len;
            v->done += len;
            if (len == 3 && p[0] == '.') {
                v->in_data = 0;
                srv_say(v, "250 2.0.0 queued\r\n");
            }
            continue;
        }
        v->done += len;
        srv_line(v, p, len - 2, v->done < v->inlen);
    }
}

static void srv_accept(uv_stream_t *l, int status)
{
    struct srv *v = l->data;

    if (status < 0) {
        return;
    }
    uv_tcp_init(l->loop, &v->conn);
    v->conn.data = v;
    if (uv_accept(l, (uv_stream_t *)&v->conn) == 0) {
        v->conn_open = 1;
        srv_say(v, "220 test ESMTP\r\n");
        uv_read_start((uv_stream_t *)&v->conn, srv_alloc, srv_read);
    }
}

static int srv_start(uv_loop_t *loop, struct srv *v)
{
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);

    uv_tcp_init(loop, &v->listener);
    v->listener.data = v;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&v->listener, (const struct sockaddr *)&a, 0);
    uv_listen((uv_stream_t *)&v->listener, 4, srv_accept);
    uv_tcp_getsockname(&v->listener, (struct sockaddr *)&got, &len);
    return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* ---- the client ---- */

struct cli {
    uv_loop_t *loop;
    struct srv *srv;
    struct up_session *s;
    struct up_send_req req;
    int in_start; /* inside up_send_start */
    int called_in_start;
    int replies, rcpt_ok[4], rcpt_code[4], dones, closes;
    struct up_send_result res;
    int reply_code; /* res.reply->code, 0 when none */
    int file_err;
    int had_session;
};

static void cli_on_reply(void *arg, enum up_send_step step, size_t i, const struct up_reply *r)
{
    struct cli *c = arg;
    c->called_in_start |= c->in_start;
    c->replies++;
    if (step == UP_SEND_RCPT && i < 4) {
        c->rcpt_code[i] = r->code;
    }
}

static void cli_on_done(void *arg, const struct up_send_result *res)
{
    struct cli *c = arg;
    c->called_in_start |= c->in_start;
    c->dones++;
    c->res = *res;
    c->reply_code = res->reply ? res->reply->code : 0;
    c->had_session = res->session != NULL;
    if (res->session) {
        up_quit(res->session);
    }
    uv_close((uv_handle_t *)&c->srv->listener, NULL);
}

static const struct up_send_cbs cli_send_cbs = {
    .on_reply = cli_on_reply,
    .on_done = cli_on_done,
};

static void cli_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    struct cli *c = arg;
    (void)r, (void)detail;

    ASSERT_EQ(err, 0);
    if (err) {
        uv_close((uv_handle_t *)&c->srv->listener, NULL);
        return;
    }
    c->in_start = 1;
    ASSERT_TRUE(up_send_start(c->s, &c->req) != NULL);
    c->in_start = 0;
}

static void cli_on_reply_s(void *arg, const struct up_reply *r)
{
    (void)arg, (void)r;
}

static void cli_on_fail(void *arg, int err, const char *detail, int pending)
{
    (void)arg, (void)err, (void)detail, (void)pending;
}

static void cli_on_drain(void *arg)
{
    (void)arg;
}

static void cli_on_close(void *arg)
{
    struct cli *c = arg;
    c->closes++;
}

static const struct up_cbs cli_cbs = {
    .on_ready = cli_on_ready,
    .on_reply = cli_on_reply_s,
    .on_fail = cli_on_fail,
    .on_drain = cli_on_drain,
    .on_close = cli_on_close,
};

static uint64_t run_size; /* req.size for the next run() */

/* One transaction to a fresh server; body "<head>" then the file. */
static void run(struct srv *v, struct cli *c, int pipelining, int all_or_none, const char *path,
                int fd)
{
    static const char *const rcpt[] = {"a@x.test", "bad@x.test", "c@x.test"};
    static uv_buf_t head[1];
    static char headtext[] = "Subject: t\r\n\r\n";
    uv_loop_t loop;
    struct conf_upstream up;
    struct up_params p;

    memset(v, 0, sizeof(*v));
    memset(c, 0, sizeof(*c));
    v->pipelining = pipelining;
    uv_loop_init(&loop);
    memset(&up, 0, sizeof(up));
    up.name = "test";
    up.host = "127.0.0.1";
    up.port = (uint16_t)srv_start(&loop, v);
    up.server_name = "127.0.0.1";
    memset(&p, 0, sizeof(p));
    p.up = &up;
    p.helo = "client.test";
    p.local_plain = 1;
    p.connect_timeout = p.command_timeout = p.data_timeout = 10;
    head[0] = uv_buf_init(headtext, sizeof(headtext) - 1);
    c->loop = &loop;
    c->srv = v;
    c->req.loop = &loop;
    c->req.from = "s@x.test";
    c->req.rcpt = rcpt;
    c->req.nrcpt = 3;
    c->req.all_or_none = all_or_none;
    c->req.head = head;
    c->req.nhead = 1;
    c->req.fd = fd;
    c->req.path = path;
    c->req.size = run_size;
    c->req.session_cbs = &cli_cbs;
    c->req.session_arg = c;
    c->req.cbs = &cli_send_cbs;
    c->req.arg = c;
    c->s = up_session_new(&loop, &p, &cli_cbs, c);
    ASSERT_TRUE(c->s != NULL);
    ASSERT_EQ(up_session_start(c->s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (v->conn_open) {
        uv_close((uv_handle_t *)&v->conn, srv_closed);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    ASSERT_EQ(uv_loop_close(&loop), 0);
    ASSERT_EQ(c->called_in_start, 0);
    ASSERT_EQ(c->dones, 1);
    ASSERT_EQ(c->closes, 1);
}

static const char body[] = ".leading dot\r\nline two\r\n";
static const char wire[] = "Subject: t\r\n\r\n..leading dot\r\nline two\r\n.\r\n";

static char *body_file(void)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/test_up_send.XXXXXX");
    fd = mkstemp(path);

    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, body, sizeof(body) - 1), (long long)(sizeof(body) - 1));
    close(fd);
    return path;
}

static void test_delivered(int pipelining)
{
    static struct srv v;
    struct cli c;
    char *path = body_file();

    run(&v, &c, pipelining, 0, path, -1);
    ASSERT_EQ(c.res.err, 0);
    ASSERT_EQ(c.res.file_err, 0);
    ASSERT_EQ(c.res.step, UP_SEND_DOT);
    ASSERT_EQ(c.reply_code, 250);
    ASSERT_EQ(c.res.accepted, 2);
    ASSERT_EQ(c.res.size, 14 + sizeof(body) - 1);
    ASSERT_TRUE(c.had_session);
    ASSERT_EQ(c.rcpt_code[0], 250);
    ASSERT_EQ(c.rcpt_code[1], 550);
    ASSERT_EQ(c.rcpt_code[2], 250);
    ASSERT_EQ(c.replies, 6); /* MAIL, 3 RCPT, DATA, end of data */
    ASSERT_MEMEQ(v.data, v.datalen, wire, sizeof(wire) - 1);
    if (pipelining) { /* MAIL, RCPT, RCPT, RCPT, DATA in one write */
        ASSERT_TRUE(strstr(v.log, "MAIL+\nRCPT+\nRCPT+\nRCPT+\nDATA\n") != NULL);
    } else {
        ASSERT_TRUE(strstr(v.log, "MAIL\nRCPT\nRCPT\nRCPT\nDATA\n") != NULL);
    }
    ASSERT_TRUE(strstr(v.log, "QUIT\n") != NULL);
    unlink(path);
}

static void test_all_or_none(void)
{
    static struct srv v;
    struct cli c;
    char *path = body_file();

    run(&v, &c, 1, 1, path, -1);
    ASSERT_EQ(c.res.err, 0);
    ASSERT_EQ(c.res.step, UP_SEND_RCPT); /* one refused: no DATA */
    ASSERT_EQ(c.reply_code, 0);
    ASSERT_EQ(c.res.accepted, 2);
    ASSERT_TRUE(c.had_session);
    ASSERT_TRUE(strstr(v.log, "MAIL+\nRCPT+\nRCPT+\nRCPT\n") != NULL);
    ASSERT_TRUE(strstr(v.log, "DATA") == NULL);
    ASSERT_EQ(v.datalen, 0);
    unlink(path);
}

static void test_fd_body(void)
{
    static struct srv v;
    struct cli c;
    char *path = body_file();
    FILE *f = fopen(path, "r");

    ASSERT_TRUE(f != NULL);
    if (!f) {
        return;
    }
    run(&v, &c, 0, 0, NULL, fileno(f));
    ASSERT_EQ(c.res.step, UP_SEND_DOT);
    ASSERT_EQ(c.reply_code, 250);
    ASSERT_MEMEQ(v.data, v.datalen, wire, sizeof(wire) - 1);
    ASSERT_TRUE(fcntl(fileno(f), F_GETFD) >= 0); /* the caller's fd stays open */
    fclose(f);
    unlink(path);
}

/* A known size (a spooled .msg): the body ends after size bytes without reading
 * on to the end of the file, with a read buffer of that size. */
static void test_known_size(void)
{
    static struct srv v;
    static char big[10000], want[12000];
    struct cli c;
    char path[64];
    size_t n = 0;
    int fd;

    for (size_t i = 0; i < sizeof(big); i += 10) {
        memcpy(big + i, "012345678\n", 10);
        big[i + 8] = '\r';
    }
    snprintf(path, sizeof(path), "/tmp/test_up_send.XXXXXX");
    ASSERT_TRUE((fd = mkstemp(path)) >= 0);
    ASSERT_EQ(write(fd, big, sizeof(big)), (long long)sizeof(big));
    close(fd);
    run_size = 5000; /* half of it: a read to the end would send the rest */
    run(&v, &c, 1, 0, path, -1);
    run_size = 0;
    ASSERT_EQ(c.res.step, UP_SEND_DOT);
    ASSERT_EQ(c.reply_code, 250);
    ASSERT_EQ(c.res.size, 14 + 5000);
    memcpy(want, "Subject: t\r\n\r\n", 14);
    n = 14;
    memcpy(want + n, big, 5000);
    n += 5000;
    memcpy(want + n, ".\r\n", 3);
    n += 3;
    ASSERT_MEMEQ(v.data, v.datalen, want, n);
    unlink(path);
}

static void test_missing_file(void)
{
    static struct srv v;
    struct cli c;

    run(&v, &c, 1, 0, "/nonexistent/test_up_send.msg", -1);
    ASSERT_EQ(c.res.err, 0);
    ASSERT_EQ(c.res.file_err, UV_ENOENT);
    ASSERT_EQ(c.res.step, UP_SEND_BODY);
    ASSERT_TRUE(!c.had_session); /* closed mid-DATA: upstream drops the message */
    ASSERT_TRUE(strstr(v.log, "QUIT") == NULL);
    ASSERT_TRUE(memmem(v.data, v.datalen, "\r\n.\r\n", 5) == NULL);
}

int main(void)
{
    log_set_level(LOG_ERR);
    test_delivered(0);
    test_delivered(1);
    test_all_or_none();
    test_fd_body();
    test_missing_file();
    test_known_size();
    return CHECK_DONE();
}
