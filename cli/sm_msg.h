/* sm_msg: the message `relay25 sendmail` submits: read from standard input into
 * a header section in memory and a body in an unlinked temporary file, its
 * recipients (arguments, or -t: To:, Cc:, Bcc:), Bcc: removed, and the header
 * fields sendmail adds. Errors are sysexits codes, the text in err. RFC 5322. */
#ifndef RELAY25_SM_MSG_H
#define RELAY25_SM_MSG_H

#include <stddef.h>
#include <stdint.h>

#define SM_ADDR_MAX 256 /* RFC 5321 §4.5.3.1.3: a path is 256 octets */

struct sm_msg {
    const char *hostname; /* qualifies bare local parts */
    char *hdr;            /* header section: CRLF lines, no blank line at the end */
    size_t hdrlen;
    int fd; /* the body (CRLF lines, not yet dot-stuffed), unlinked */
    uint64_t bodylen;
    int eightbit;
    char **rcpt; /* deduplicated, qualified */
    size_t nrcpt, rcptcap;
    char err[1024]; /* why the last call failed (empty for out of memory) */
};

/* hostname must outlive m. */
void sm_msg_init(struct sm_msg *m, const char *hostname);
void sm_msg_free(struct sm_msg *m);
/* Adds one bare address (an SMTP path without its <>), vetted, qualified,
 * deduplicated. 0 or a sysexits code. */
int sm_msg_add_rcpt(struct sm_msg *m, const char *a, size_t n);
/* Adds every address of an RFC 5322 §3.4 address-list: display names, quoted
 * strings, comments, groups and route addresses; what names the source for
 * messages ("To: header"). 0 or a sysexits code. */
int sm_msg_addrlist(struct sm_msg *m, const char *s, size_t n, const char *what);
/* Buffered input shared by SMTP command lines and DATA (sendmail -bs). */
struct sm_in {
    int fd;
    char buf[64 * 1024];
    size_t pos, len;
    int eof;
    int err; /* errno of a failed read, else 0 */
};
void sm_in_init(struct sm_in *in, int fd);
/* The next line without its LF or CRLF, NUL-terminated, into line (cap bytes):
 * 1, 0 at the end of input, -1 when it was longer than cap (the excess is
 * dropped, the line still consumed). */
int sm_in_line(struct sm_in *in, char *line, size_t cap, size_t *len);

/* Standard input -> m, a lone "." line ending it unless ignore_dots (-i). */
int sm_msg_read(struct sm_msg *m, int ignore_dots);
/* The same from in; smtp: SMTP DATA (RFC 5321 §4.5.2: a leading dot of a longer
 * line is removed). *ended (when given): 1 when a lone "." line ended it, 0 at
 * the end of input. */
int sm_msg_read_in(struct sm_msg *m, struct sm_in *in, int ignore_dots, int smtp, int *ended);
/* -t: recipients from To:, Cc: and Bcc:. */
int sm_msg_extract(struct sm_msg *m);
/* Bcc: (and Resent-Bcc:) never leave: the other recipients must not see them. */
void sm_msg_remove_bcc(struct sm_msg *m);
/* From:, Date: and Message-ID: when the message has none, as a malloc'd block
 * of CRLF lines (*len bytes); NULL when out of memory. */
char *sm_msg_added_headers(const struct sm_msg *m, const char *from_hdr, const char *fullname,
                           size_t *len);

#endif
