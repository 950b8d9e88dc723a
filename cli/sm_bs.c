/* sm_bs: `sendmail -bs` (see the header): an SMTP server on standard input and
 * output for one local client. Lines are read with sm_in, the data with
 * sm_msg_read_in in SMTP mode (dot-unstuffing, "." ends it); replies come from
 * common/reply. The state is small: greeted or not, a sender, recipients. */
#include "cli/sm_bs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/sm_msg.h"
#include "common/reply.h"
#include "conf/conf.h"

#define SMB_LINE_MAX                                                                               \
    1000                    /* RFC 5321 §4.5.3.1.4: a command line with its CRLF is 512;          \
                               we accept longer parameters and refuse above this */
#define SMB_MAX_ERRORS 20   /* then 421, as a daemon would after too many errors */
#define SMB_MAX_RCPT 10000u /* recipients per message: bounds memory */

enum smb_state {
    SMB_STATE_IDLE, /* no transaction */
    SMB_STATE_MAIL, /* MAIL accepted */
    SMB_STATE_RCPT, /* at least one RCPT accepted */
};

struct smb {
    const struct sm_bs_in *in;
    struct sm_in *input;
    struct sm_msg m;
    enum smb_state state;
    char sender[SM_ADDR_MAX + 1];
    unsigned errors;
    int rc;      /* first failed delivery's status */
    int out_err; /* writing stdout failed */
    int quit;    /* QUIT or end */
};

static void smb_write(struct smb *b, const char *p, size_t n)
{
    while (n > 0 && !b->out_err) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            b->out_err = 1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void smb_canned(struct smb *b, enum reply_id id)
{
    size_t n;
    const char *r = reply_canned(id, &n);
    smb_write(b, r, n);
}

/* An error reply; too many of them end the session. */
static void smb_error(struct smb *b, enum reply_id id)
{
    smb_canned(b, id);
    if (++b->errors >= SMB_MAX_ERRORS) {
        smb_canned(b, REPLY_TOO_MANY_ERRORS);
        b->quit = 1;
        if (!b->rc) {
            b->rc = EX_PROTOCOL;
        }
    }
}

static void smb_reset(struct smb *b)
{
    sm_msg_free(&b->m);
    sm_msg_init(&b->m, b->in->origin);
    b->sender[0] = '\0';
    b->state = SMB_STATE_IDLE;
}

/* "FROM:<path> params" after the verb: the path without its <> into path, the
 * parameters from *params on. 0, or -1 when it does not parse. */
static int smb_path(const char *arg, const char *prefix, char *path, size_t cap,
                    const char **params)
{
    size_t plen = strlen(prefix);
    const char *lt, *gt;

    if (strncasecmp(arg, prefix, plen) != 0) {
        return -1;
    }
    arg += plen;
    while (*arg == ' ') { /* tolerated, as most servers do */
        arg++;
    }
    if (*arg != '<' || !(gt = strchr(arg, '>'))) {
        return -1;
    }
    lt = arg + 1;
    if ((size_t)(gt - lt) >= cap || (size_t)(gt - lt) > SM_ADDR_MAX) {
        return -1;
    }
    for (const char *q = lt; q < gt; q++) {
        if ((unsigned char)*q < 0x21 || *q == 0x7f || *q == '<') {
            return -1;
        }
    }
    memcpy(path, lt, (size_t)(gt - lt));
    path[gt - lt] = '\0';
    *params = gt + 1;
    return 0;
}

/* RFC 6531 §3.5: SMTPUTF8 is not offered here, so a non-ASCII address is refused. */
static int smb_ascii(const char *path)
{
    for (const char *q = path; *q; q++) {
        if ((unsigned char)*q >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* MAIL parameters: SIZE (RFC 1870) and BODY (RFC 6152) are understood. */
static int smb_mail_params(struct smb *b, const char *p)
{
    while (*p) {
        const char *end;
        size_t n;

        while (*p == ' ') {
            p++;
        }
        if (!*p) {
            break;
        }
        end = strchr(p, ' ');
        n = end ? (size_t)(end - p) : strlen(p);
        if (n > 5 && strncasecmp(p, "SIZE=", 5) == 0) {
            unsigned long long v = strtoull(p + 5, NULL, 10);
            if (b->in->c->max_message_size && v > b->in->c->max_message_size) {
                return REPLY_TOO_BIG;
            }
        } else if (!((n == 9 && strncasecmp(p, "BODY=7BIT", 9) == 0) ||
                     (n == 13 && strncasecmp(p, "BODY=8BITMIME", 13) == 0))) {
            return REPLY_BAD_PARAM;
        }
        p += n;
    }
    return -1;
}

static void smb_mail(struct smb *b, const char *arg)
{
    char path[SM_ADDR_MAX + 1];
    const char *params;
    int r;

    if (b->state != SMB_STATE_IDLE) {
        smb_error(b, REPLY_NESTED_MAIL);
        return;
    }
    if (smb_path(arg, "FROM:", path, sizeof(path), &params) != 0) {
        smb_error(b, REPLY_SYNTAX_PATH);
        return;
    }
    if (!smb_ascii(path)) {
        smb_error(b, REPLY_NEED_SMTPUTF8);
        return;
    }
    if ((r = smb_mail_params(b, params)) >= 0) {
        smb_error(b, (enum reply_id)r);
        return;
    }
    if (path[0] && !strchr(path, '@')) { /* "root": qualified as the command line's -f */
        if ((size_t)snprintf(b->sender, sizeof(b->sender), "%s@%s", path, b->in->origin) >=
            sizeof(b->sender)) {
            smb_error(b, REPLY_PATH_TOO_LONG);
            return;
        }
    } else {
        snprintf(b->sender, sizeof(b->sender), "%s", path);
    }
    b->state = SMB_STATE_MAIL;
    smb_canned(b, REPLY_MAIL_OK);
}

static void smb_rcpt(struct smb *b, const char *arg)
{
    char path[SM_ADDR_MAX + 1];
    const char *params;

    if (b->state == SMB_STATE_IDLE) {
        smb_error(b, REPLY_NEED_MAIL);
        return;
    }
    if (smb_path(arg, "TO:", path, sizeof(path), &params) != 0 || !path[0]) {
        smb_error(b, REPLY_SYNTAX_PATH);
        return;
    }
    if (!smb_ascii(path)) {
        smb_error(b, REPLY_NEED_SMTPUTF8);
        return;
    }
    while (*params == ' ') {
        params++;
    }
    if (*params) {
        smb_error(b, REPLY_BAD_PARAM);
        return;
    }
    if (b->m.nrcpt >= SMB_MAX_RCPT) {
        smb_error(b, REPLY_TOO_MANY_RCPT);
        return;
    }
    if (sm_msg_add_rcpt(&b->m, path, strlen(path)) != 0) {
        b->m.err[0] = '\0';
        smb_error(b, REPLY_SYNTAX_PATH);
        return;
    }
    b->state = SMB_STATE_RCPT;
    smb_canned(b, REPLY_RCPT_OK);
}

static void smb_data(struct smb *b)
{
    char text[700], out[800];
    int ended = 0, rc;
    size_t n;

    if (b->state == SMB_STATE_IDLE) {
        smb_error(b, REPLY_NEED_MAIL);
        return;
    }
    if (b->state != SMB_STATE_RCPT) {
        smb_error(b, REPLY_NEED_RCPT);
        return;
    }
    smb_canned(b, REPLY_DATA);
    rc = sm_msg_read_in(&b->m, b->input, 0, 1, &ended);
    if (!ended) { /* the client went away inside DATA: nothing is sent */
        b->quit = 1;
        if (!b->rc) {
            b->rc = rc ? rc : EX_PROTOCOL;
        }
        return;
    }
    if (rc == 0) {
        text[0] = '\0';
        rc = b->in->deliver(b->in->arg, &b->m, b->sender, text, sizeof(text));
    } else {
        snprintf(text, sizeof(text), "%.600s", b->m.err[0] ? b->m.err : "cannot take the message");
    }
    if (rc != 0 && !b->rc) {
        b->rc = rc;
    }
    n = reply_sendmail(out, sizeof(out), rc, text);
    smb_write(b, out, n);
    smb_reset(b);
}

/* One command line. */
static void smb_command(struct smb *b, char *line)
{
    const struct conf *c = b->in->c;
    char out[1024];
    char *arg = line;
    size_t vlen, n;

    while (*arg && *arg != ' ') {
        arg++;
    }
    vlen = (size_t)(arg - line);
    while (*arg == ' ') {
        arg++;
    }
#define VERB(v) (vlen == sizeof(v) - 1 && strncasecmp(line, v, vlen) == 0)
    if (VERB("EHLO") || VERB("HELO")) {
        if (!*arg) {
            smb_error(b, REPLY_HELO_NEEDS_ARG);
            return;
        }
        smb_reset(b);
        n = reply_ehlo(out, sizeof(out), c->hostname, VERB("EHLO"), c->max_message_size, 0, 0, 0);
        smb_write(b, out, n);
    } else if (VERB("MAIL")) {
        smb_mail(b, arg);
    } else if (VERB("RCPT")) {
        smb_rcpt(b, arg);
    } else if (VERB("DATA")) {
        smb_data(b);
    } else if (VERB("RSET")) {
        smb_reset(b);
        smb_canned(b, REPLY_RSET);
    } else if (VERB("NOOP")) {
        smb_canned(b, REPLY_OK);
    } else if (VERB("VRFY")) {
        smb_canned(b, REPLY_VRFY);
    } else if (VERB("HELP")) {
        smb_canned(b, REPLY_HELP);
    } else if (VERB("QUIT")) {
        smb_canned(b, REPLY_QUIT);
        b->quit = 1;
    } else if (VERB("BDAT") || VERB("STARTTLS") || VERB("AUTH") || VERB("ETRN") || VERB("EXPN")) {
        smb_error(b, REPLY_NOT_IMPL);
    } else {
        smb_error(b, REPLY_UNKNOWN);
    }
#undef VERB
}

int sm_bs_run(const struct sm_bs_in *in)
{
    struct smb b;
    char line[SMB_LINE_MAX + 1], out[512];
    size_t len, n;
    int r;

    memset(&b, 0, sizeof(b));
    b.in = in;
    if (!(b.input = malloc(sizeof(*b.input)))) {
        return EX_OSERR;
    }
    sm_in_init(b.input, 0);
    sm_msg_init(&b.m, in->origin);
    n = reply_greeting(out, sizeof(out), in->c->hostname);
    smb_write(&b, out, n);
    while (!b.quit && !b.out_err && (r = sm_in_line(b.input, line, sizeof(line), &len)) != 0) {
        if (r < 0) {
            smb_error(&b, REPLY_LINE_TOO_LONG);
            continue;
        }
        smb_command(&b, line);
    }
    sm_msg_free(&b.m);
    free(b.input);
    if (b.out_err) {
        return EX_IOERR;
    }
    return b.rc;
}
