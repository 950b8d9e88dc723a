/* reply: canned SMTP replies (RFC 5321 §4.2, enhanced codes RFC 3463) and the
 * mapping of upstream failures to temporary (4xx) client replies. Nothing that
 * is only a failure of the path to upstream becomes a 5xx. */
#include "common/reply.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#define R(s)                                                                                       \
    {                                                                                              \
        s "\r\n", sizeof(s "\r\n") - 1                                                             \
    }

static const struct {
    const char *text;
    size_t len;
} reply_table[REPLY_COUNT] = {
    [REPLY_OK] = R("250 2.0.0 Ok"),
    [REPLY_RSET] = R("250 2.0.0 Reset"),
    [REPLY_QUIT] = R("221 2.0.0 Bye"),
    [REPLY_VRFY] = R("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"),
    [REPLY_HELP] = R("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"),
    [REPLY_DATA] = R("354 End data with <CR><LF>.<CR><LF>"),
    [REPLY_UNKNOWN] = R("500 5.5.2 Error: command not recognized"),
    [REPLY_LINE_TOO_LONG] = R("500 5.5.2 Error: line too long"),
    [REPLY_SYNTAX_PARAM] = R("501 5.5.4 Error: syntax error in parameters"),
    [REPLY_SYNTAX_PATH] = R("501 5.1.7 Error: bad address syntax"),
    [REPLY_PATH_TOO_LONG] = R("553 5.1.3 Error: address too long"),
    [REPLY_HELO_NEEDS_ARG] = R("501 5.5.4 Error: HELO/EHLO needs a domain or address literal"),
    [REPLY_NOT_IMPL] = R("502 5.5.1 Error: command not implemented"),
    [REPLY_NESTED_MAIL] = R("503 5.5.1 Error: nested MAIL command"),
    [REPLY_NEED_MAIL] = R("503 5.5.1 Error: need MAIL command"),
    [REPLY_NEED_RCPT] = R("503 5.5.1 Error: need RCPT command"),
    [REPLY_ONLY_QUIT] = R("503 5.7.1 Error: access denied, only QUIT is accepted"),
    [REPLY_NO_VALID_RCPT] = R("554 5.5.1 Error: no valid recipients"),
    [REPLY_TOO_BIG] = R("552 5.3.4 Error: message size exceeds fixed limit"),
    [REPLY_TOO_MANY_RCPT] = R("452 4.5.3 Error: too many recipients"),
    [REPLY_BARE_LF] =
        R("554 5.6.0 Error: bare LF or bare CR in message refused (bare_lf = reject)"),
    [REPLY_BAD_PARAM] = R("555 5.5.4 Error: unsupported MAIL/RCPT parameter"),
    [REPLY_NOMEM] = R("451 4.3.0 Error: local resource shortage, try again later"),
    [REPLY_TOO_MANY_ERRORS] = R("421 4.7.0 Error: too many errors, closing connection"),
    [REPLY_TOO_MANY_COMMANDS] = R("421 4.7.0 Error: too many commands without MAIL, closing "
                                  "connection"),
    [REPLY_TOO_MANY_MESSAGES] = R("421 4.7.0 Error: too many messages in this session, closing "
                                  "connection"),
    [REPLY_HEADER_TOO_BIG] = R("552 5.3.4 Error: message header section exceeds fixed limit"),
    [REPLY_STARTTLS] = R("220 2.0.0 Ready to start TLS"),
    [REPLY_STARTTLS_IN_TXN] = R("503 5.5.1 Error: STARTTLS not allowed during a mail transaction"),
    [REPLY_TLS_ACTIVE] = R("503 5.5.1 Error: TLS already active"),
    [REPLY_TLS_UNAVAILABLE] = R("454 4.7.0 TLS not available due to temporary reason"),
    [REPLY_NEED_EHLO] = R("503 5.5.1 Error: send EHLO first"),
    [REPLY_AUTH_OK] = R("235 2.7.0 Authentication successful"),
    [REPLY_AUTH_FAILED] = R("535 5.7.8 Authentication credentials invalid"),
    [REPLY_AUTH_NEED_TLS] = R("538 5.7.11 Encryption required for requested authentication "
                              "mechanism"),
    [REPLY_AUTH_REQUIRED] = R("530 5.7.0 Authentication required"),
    [REPLY_AUTH_TWICE] = R("503 5.5.1 Error: already authenticated"),
    [REPLY_AUTH_IN_TXN] = R("503 5.5.1 Error: AUTH not allowed during a mail transaction"),
    [REPLY_AUTH_MECH] = R("504 5.5.4 Unrecognized authentication type"),
    [REPLY_AUTH_CANCELLED] = R("501 5.0.0 Authentication cancelled"),
    [REPLY_AUTH_SYNTAX] = R("501 5.5.2 Error: cannot decode the AUTH response"),
    [REPLY_AUTH_TEMP] = R("454 4.7.0 Temporary authentication failure"),
    [REPLY_AUTH_LOCKED] = R("454 4.7.0 Too many authentication failures, try again later"),
    [REPLY_AUTH_BUSY] = R("454 4.7.0 Too many authentication attempts in progress, try again "
                          "later"),
    [REPLY_AUTH_CONTINUE] = R("334 "),
    [REPLY_AUTH_USERNAME] = R("334 VXNlcm5hbWU6"),
    [REPLY_AUTH_PASSWORD] = R("334 UGFzc3dvcmQ6"),
    [REPLY_MAIL_OK] = R("250 2.1.0 Ok"),
    [REPLY_RCPT_OK] = R("250 2.1.5 Ok"),
    [REPLY_MAIL_QUEUED_DOWN] = R("250 2.1.0 Ok (upstream unavailable: the message will be queued)"),
    [REPLY_MAIL_QUEUED_TEMP] = R("250 2.1.0 Ok (upstream deferred: the message will be queued)"),
    [REPLY_RCPT_QUEUED_DOWN] = R("250 2.1.5 Ok (upstream unavailable: queued)"),
    [REPLY_RCPT_QUEUED_TEMP] = R("250 2.1.5 Ok (upstream deferred it: queued)"),
    [REPLY_SPOOL_FULL] = R("452 4.3.1 Insufficient system storage: the spool is full"),
    [REPLY_SPOOL_NO_ROOM] =
        R("452 4.3.1 Insufficient system storage: the spool cannot take the message"),
    [REPLY_SPOOL_FAILED] = R("451 4.3.0 Local error: the message could not be spooled"),
    [REPLY_DSN_SYNTAX] = R("501 5.5.4 Error: malformed DSN parameter (RFC 3461: RET=FULL|HDRS, "
                           "NOTIFY=NEVER|SUCCESS,FAILURE,DELAY, ENVID and ORCPT in xtext)"),
    [REPLY_NEED_SMTPUTF8] = R("553 5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter "
                              "(RFC 6531)"),
    [REPLY_MAIL_QUEUED_DSN] = R("250 2.1.0 Ok (upstream does not offer DSN at present: the message "
                                "will be queued and the relay sends the notices)"),
    [REPLY_RCPT_QUEUED_DSN] = R("250 2.1.5 Ok (upstream does not offer DSN at present: queued, the "
                                "relay sends the notices)"),
};

const char *reply_canned(enum reply_id id, size_t *len)
{
    *len = reply_table[id].len;
    return reply_table[id].text;
}

/* snprintf result -> length; a truncated reply still ends in CRLF. */
static size_t reply_done(char *out, int r, size_t cap)
{
    if (r < 0) {
        return 0;
    }
    if ((size_t)r < cap) {
        return (size_t)r;
    }
    out[cap - 3] = '\r';
    out[cap - 2] = '\n';
    return cap - 1;
}

size_t reply_timeout(char *out, size_t cap, const char *hostname)
{
    return reply_done(out, snprintf(out, cap, "421 4.4.2 %s Error: timeout exceeded\r\n", hostname),
                      cap);
}

size_t reply_too_slow(char *out, size_t cap, const char *hostname)
{
    return reply_done(
        out, snprintf(out, cap, "421 4.4.2 %s Error: transfer too slow\r\n", hostname), cap);
}

size_t reply_shutdown(char *out, size_t cap, const char *hostname)
{
    return reply_done(out, snprintf(out, cap, "421 4.3.2 %s Service shutting down\r\n", hostname),
                      cap);
}

size_t reply_refused(char *out, size_t cap, const char *hostname, const char *ip,
                     const char *reason)
{
    return reply_done(out,
                      snprintf(out, cap, "554 5.7.1 %s Client [%s] not allowed to relay: %s\r\n",
                               hostname, ip, reason),
                      cap);
}

size_t reply_greeting(char *out, size_t cap, const char *hostname)
{
    return reply_done(out, snprintf(out, cap, "220 %s ESMTP relay25\r\n", hostname), cap);
}

size_t reply_ehlo(char *out, size_t cap, const char *hostname, int esmtp,
                  unsigned long long max_size, int starttls, int auth, unsigned offer)
{
    if (!esmtp) {
        return reply_done(out, snprintf(out, cap, "250 %s\r\n", hostname), cap);
    }
    return reply_done(out,
                      snprintf(out, cap,
                               "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n250-8BITMIME\r\n"
                               "250-ENHANCEDSTATUSCODES\r\n%s%s%s%s250 HELP\r\n",
                               hostname, max_size, starttls ? "250-STARTTLS\r\n" : "",
                               auth ? "250-AUTH PLAIN LOGIN\r\n" : "",
                               (offer & REPLY_EHLO_DSN) ? "250-DSN\r\n" : "",
                               (offer & REPLY_EHLO_SMTPUTF8) ? "250-SMTPUTF8\r\n" : ""),
                      cap);
}

size_t reply_upstream_lacks(char *out, size_t cap, const char *where, const char *what)
{
    return reply_done(out,
                      snprintf(out, cap,
                               "455 4.5.4 Upstream %s does not offer %s at present: send without "
                               "it, or try again later\r\n",
                               where, what),
                      cap);
}

size_t reply_too_many_connections(char *out, size_t cap, const char *hostname, int per_ip)
{
    return reply_done(out,
                      snprintf(out, cap,
                               "421 4.7.0 %s Error: too many connections%s, try again later\r\n",
                               hostname, per_ip ? " from your address" : ""),
                      cap);
}

size_t reply_not_allowed(char *out, size_t cap, const char *what, const char *addr,
                         const char *device)
{
    return reply_done(
        out,
        snprintf(out, cap, "550 5.7.1 %s <%s> not allowed for device %s\r\n", what, addr, device),
        cap);
}

size_t reply_rate_limited(char *out, size_t cap, const char *name, unsigned count,
                          unsigned per_seconds, const char *device, unsigned long long retry_s)
{
    return reply_done(out,
                      snprintf(out, cap,
                               "450 4.7.1 Rate limit %s (%u per %u s) exceeded for device %s, try "
                               "again in %llu s\r\n",
                               name, count, per_seconds, device, retry_s),
                      cap);
}

size_t reply_queued(char *out, size_t cap, unsigned long long qid)
{
    return reply_done(out, snprintf(out, cap, "250 2.0.0 Ok: queued as %016llx\r\n", qid), cap);
}

size_t reply_sendmail(char *out, size_t cap, int sysexit, const char *text)
{
    const char *code;
    char clean[600];
    size_t i;

    switch (sysexit) {
    case 0:
        code = "250 2.0.0";
        break;
    case EX_NOUSER:
        code = "550 5.1.1";
        break;
    case EX_DATAERR:
        code = "554 5.6.0";
        break;
    case EX_UNAVAILABLE:
        code = "554 5.0.0";
        break;
    case EX_CONFIG:
        code = "451 4.3.5";
        break;
    default:
        code = "451 4.3.0";
        break;
    }
    for (i = 0; text && text[i] && i + 1 < sizeof(clean); i++) {
        unsigned char c = (unsigned char)text[i];
        clean[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    clean[i] = '\0';
    return reply_done(out, snprintf(out, cap, "%s %s\r\n", code, i ? clean : "Ok"), cap);
}

const char *reply_err_name(int err)
{
    switch (err) {
    case RELAY_OK:
        return "ok";
    case RELAY_E_RESOLVE:
        return "resolve";
    case RELAY_E_CONNECT:
        return "connect";
    case RELAY_E_TIMEOUT:
        return "timeout";
    case RELAY_E_TLS:
        return "tls";
    case RELAY_E_CERT:
        return "cert";
    case RELAY_E_NO_STARTTLS:
        return "no_starttls";
    case RELAY_E_AUTH:
        return "auth";
    case RELAY_E_NO_AUTH_MECH:
        return "no_auth_mech";
    case RELAY_E_REFUSED:
        return "refused";
    case RELAY_E_PROTOCOL:
        return "protocol";
    case RELAY_E_LOST:
        return "lost";
    case RELAY_E_NOMEM:
        return "nomem";
    case RELAY_E_BUSY:
        return "busy";
    case RELAY_E_STARTTLS_REFUSED:
        return "starttls_refused";
    default:
        return "unknown";
    }
}

/* The reply code and what happened, by err; the detail cleaned to one line. */
static const char *reply_upstream_parts(int err, const char *detail, const char **what, char *clean,
                                        size_t cleancap)
{
    const char *code;
    size_t o = 0;

    switch (err) {
    case RELAY_E_RESOLVE:
        code = "451 4.4.3";
        *what = "host name does not resolve";
        break;
    case RELAY_E_CONNECT:
        code = "451 4.4.1";
        *what = "connection failed";
        break;
    case RELAY_E_TIMEOUT:
        code = "451 4.4.2";
        *what = "timed out";
        break;
    case RELAY_E_TLS:
        code = "451 4.7.5";
        *what = "TLS handshake failed, nothing sent";
        break;
    case RELAY_E_CERT:
        code = "451 4.7.5";
        *what = "certificate rejected, nothing sent";
        break;
    case RELAY_E_NO_STARTTLS:
        code = "451 4.7.4";
        *what = "does not offer STARTTLS; refusing to send credentials or mail in clear";
        break;
    case RELAY_E_STARTTLS_REFUSED:
        code = "451 4.7.4";
        *what = "refused STARTTLS; refusing to send credentials or mail in clear";
        break;
    case RELAY_E_AUTH:
        code = "451 4.7.0";
        *what = "authentication failed";
        break;
    case RELAY_E_NO_AUTH_MECH:
        code = "451 4.7.4";
        *what = "offers no AUTH mechanism relay25 supports (PLAIN, LOGIN, CRAM-MD5, XOAUTH2)";
        break;
    case RELAY_E_REFUSED:
        code = "451 4.4.0";
        *what = "refused the session";
        break;
    case RELAY_E_PROTOCOL:
        code = "451 4.5.0";
        *what = "protocol error";
        break;
    case RELAY_E_LOST:
        code = "451 4.4.2";
        *what = "connection lost";
        break;
    case RELAY_E_BUSY:
        code = "451 4.4.5"; /* RFC 3463: system congestion */
        *what = "busy";
        break;
    default:
        code = "451 4.3.0";
        *what = "local error";
        break;
    }
    for (const char *p = detail; p && *p && o + 1 < cleancap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\r' || c == '\n' || c == '\t') {
            c = ' ';
        } else if (c < 0x20 || c == 0x7f) {
            continue;
        }
        clean[o++] = (char)c;
    }
    clean[o] = '\0';
    return code;
}

size_t reply_upstream(char *out, size_t cap, int err, const char *where, const char *detail)
{
    const char *what;
    char clean[512];
    const char *code = reply_upstream_parts(err, detail, &what, clean, sizeof(clean));

    return reply_done(out,
                      snprintf(out, cap, "%s Upstream %s %s%s%s\r\n", code, where, what,
                               clean[0] ? ": " : "", clean),
                      cap);
}

/* Graph's texts on one line: control characters become blanks. */
static void reply_clean(char *out, size_t cap, const char *in)
{
    size_t o = 0;

    for (; *in && o + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[o] = '\0';
}

size_t reply_graph(char *out, size_t cap, int status, const char *code, const char *message,
                   const char *request_id, unsigned retry_after)
{
    const char *smtp, *what;
    char wait[48] = "", rid[96] = "", why[640] = "";

    if (status == 0) {
        smtp = "454 4.7.0";
        what = "cannot get an access token for Microsoft Graph";
    } else if (status >= 200 && status < 300) {
        smtp = "250 2.0.0";
        what = "Ok: accepted by Microsoft Graph";
    } else if (status == 429) {
        smtp = "451 4.7.0";
        what = "Microsoft Graph is throttling this mailbox";
    } else if (status == 401) {
        smtp = "454 4.7.0";
        what = "Microsoft Graph refused the access token";
    } else if (status == 408 || status == 409 || status >= 500) {
        smtp = "451 4.4.1";
        what = "Microsoft Graph is unavailable";
    } else if (status == 403) {
        smtp = "550 5.7.1";
        what = "Microsoft Graph refused to send as this mailbox (Mail.Send permission, "
               "application access policy)";
    } else if (status == 404) {
        smtp = "550 5.1.0";
        what = "Microsoft Graph has no such mailbox";
    } else if (status == 413) {
        smtp = "552 5.3.4";
        what = "Microsoft Graph refused the message as too large";
    } else {
        smtp = "554 5.6.0";
        what = "Microsoft Graph refused the message";
    }
    if (status < 200 || status >= 300) {
        char c[80], m[512];
        reply_clean(c, sizeof(c), code && *code ? code : "-");
        reply_clean(m, sizeof(m), message ? message : "");
        if (status == 0) {
            snprintf(why, sizeof(why), ": %s", m);
        } else {
            snprintf(why, sizeof(why), ": HTTP %d %s%s%s", status, c, m[0] ? ": " : "", m);
        }
    }
    if (retry_after) {
        snprintf(wait, sizeof(wait), " (retry after %u s)", retry_after);
    }
    if (request_id && *request_id) {
        char r[80];
        reply_clean(r, sizeof(r), request_id);
        snprintf(rid, sizeof(rid), " [request-id %s]", r);
    }
    return reply_done(out, snprintf(out, cap, "%s %s%s%s%s\r\n", smtp, what, why, wait, rid), cap);
}

void reply_upstream_reason(char *out, size_t cap, int err, const char *where, const char *detail)
{
    const char *what;
    char clean[512];

    reply_upstream_parts(err, detail, &what, clean, sizeof(clean));
    snprintf(out, cap, "%s %s%s%s", where, what, clean[0] ? ": " : "", clean);
}

/* Length of an RFC 3463 enhanced status code at p (class "." 1*3digit "."
 * 1*3digit, then a blank or the end), 0 when there is none. */
static size_t reply_esc_len(const char *p, size_t n)
{
    size_t i = 0;

    if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.') {
        return 0;
    }
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && d < 4) {
            i++, d++;
        }
        if (d == 0 || d > 3) {
            return 0;
        }
        if (part == 0) {
            if (i >= n || p[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    return i == n || p[i] == ' ' || p[i] == '\t' ? i : 0;
}

/* RFC 3463 detail for a reply without one, by code and command: the wording of
 * Postfix's smtpd for its own replies, RFC 5321 §4.2.2's meaning of the code,
 * and else "X.0.0" (other or undefined status), as Postfix's smtp client does
 * for a server that sends none. */
static const char *reply_derive(int code, enum reply_cmd cmd)
{
    switch (code) {
    case 421:
        return "4.3.2"; /* service not available, closing */
    case 450:
        return cmd == REPLY_CMD_RCPT ? "4.2.0" : cmd == REPLY_CMD_MAIL ? "4.1.0" : "4.0.0";
    case 451:
        return "4.3.0"; /* local error in processing */
    case 452:
        /* RFC 5321 §4.5.3.1.10: at RCPT it means too many recipients */
        return cmd == REPLY_CMD_RCPT ? "4.5.3" : "4.3.1";
    case 454:
        return "4.7.0";
    case 455:
    case 555:
        return code == 455 ? "4.5.4" : "5.5.4"; /* parameters not accommodated */
    case 500:
        return "5.5.2";
    case 501:
    case 504:
        return "5.5.4";
    case 502:
    case 503:
        return "5.5.1";
    case 530:
        return "5.7.0";
    case 534:
        return "5.7.9";
    case 535:
        return "5.7.8";
    case 538:
        return "5.7.11";
    case 550:
        /* Postfix: sender rejected 5.1.0, unknown recipient 5.1.1 */
        return cmd == REPLY_CMD_RCPT ? "5.1.1" : cmd == REPLY_CMD_MAIL ? "5.1.0" : "5.0.0";
    case 551:
        return "5.1.6";
    case 552:
        /* RFC 1870: message size; at RCPT a full mailbox */
        return cmd == REPLY_CMD_RCPT ? "5.2.2" : "5.3.4";
    case 553:
        return cmd == REPLY_CMD_MAIL ? "5.1.7" : cmd == REPLY_CMD_RCPT ? "5.1.3" : "5.0.0";
    case 554:
        /* Postfix: relay access denied and policy refusals at MAIL/RCPT */
        return cmd == REPLY_CMD_MAIL || cmd == REPLY_CMD_RCPT ? "5.7.1" : "5.0.0";
    default:
        break;
    }
    if (code >= 200 && code < 300) {
        return cmd == REPLY_CMD_MAIL ? "2.1.0" : cmd == REPLY_CMD_RCPT ? "2.1.5" : "2.0.0";
    }
    return code >= 500 ? "5.0.0" : "4.0.0";
}

size_t reply_pass(char *out, size_t cap, const char *text, size_t len, enum reply_cmd cmd)
{
    char esc[16];
    size_t o = 0, last = (size_t)-1, i;
    int code;

    if (cap < 16) {
        return 0;
    }
    if (len < 3 || text[0] < '1' || text[0] > '5' || text[1] < '0' || text[1] > '9' ||
        text[2] < '0' || text[2] > '9') {
        /* not a reply up_reply would hand over: out as it is, as far as it fits */
        size_t n = len < cap - 1 ? len : cap - 1;
        memcpy(out, text, n);
        out[n] = '\0';
        return n;
    }
    code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
    esc[0] = '\0';
    if (code >= 200 && code < 600 && code / 100 != 3) {
        /* the first enhanced code upstream did send, for lines that lack one */
        for (i = 0; i < len && !esc[0];) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len, t = i + 4, k;
            while (t < e && text[t] == ' ') {
                t++;
            }
            k = t < e ? reply_esc_len(text + t, e - t - (text[e - 1] == '\r')) : 0;
            if (i + 4 <= e && k > 0 && k < sizeof(esc) && text[t] == text[0]) {
                memcpy(esc, text + t, k);
                esc[k] = '\0';
            }
            i = e + 1;
        }
        if (!esc[0]) {
            snprintf(esc, sizeof(esc), "%s", reply_derive(code, cmd));
        }
    }
    for (i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len, next = nl ? e + 1 : len;
        size_t body, blen, k = 0;
        char sep = ' ';

        if (e > i && text[e - 1] == '\r') {
            e--;
        }
        if (e - i < 3) {
            i = next; /* not a reply line: dropped */
            continue;
        }
        body = i + 3;
        if (body < e && (text[body] == ' ' || text[body] == '-')) {
            sep = text[body];
            body++;
        }
        blen = e - body;
        if (esc[0]) {
            size_t t = 0;
            while (t < blen && text[body + t] == ' ') {
                t++;
            }
            /* RFC 3463 §2: the class must be the reply code's first digit */
            k = t < blen && text[body + t] == text[0] && reply_esc_len(text + body + t, blen - t)
                    ? 0
                    : strlen(esc);
        }
        /* "ddd" sep [esc " "] text CRLF, and the final NUL */
        if (o + 4 + k + 1 + blen + 3 > cap) {
            break;
        }
        last = o;
        memcpy(out + o, text + i, 3);
        o += 3;
        out[o++] = sep;
        if (k) {
            memcpy(out + o, esc, k);
            o += k;
            if (blen) {
                out[o++] = ' ';
            }
        }
        memcpy(out + o, text + body, blen);
        o += blen;
        out[o++] = '\r';
        out[o++] = '\n';
        i = next;
    }
    if (last != (size_t)-1) {
        out[last + 3] = ' '; /* the last line kept ends the reply */
    }
    out[o] = '\0';
    return o;
}
