/* prx_data: the body pump (RFC 5321 §4.1.1.4): decodes the client's body in
 * bounded steps (dot codec, common/data; lf_line_ends devices end lines with LF),
 * enforces max_message_size, max_header_size and bare_lf, adds Received: (RFC 5321 §4.4), applies
 * the From: rewrite, and re-encodes for upstream and/or the spool copy. */
#include "proxy/prx_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/data.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "proxy/prx_rewrite.h"
#include "spool/spool.h"
#include "spool/spool_writer.h"
#include "upstream/up_session.h"

/* 354 sent: the body streams to upstream, to the spool, or to both. */
void prx_body_start(struct prx_session *s)
{
    s->txn->bodybuf = malloc(3 * PRX_BODY_STEP);
    if (!s->txn->bodybuf) {
        prx_drop_up(s);
        prx_txn_abort(s, REPLY_NOMEM);
        return;
    }
    data_dec_init(&s->txn->dec);
    s->txn->size_limit = prx_size_limit(s, s->txn->from);
    /* lf_line_ends: this device's LF is a line end, so <LF>.<LF> ends its message */
    s->txn->dec.lf_eol = s->dev->lf_line_ends;
    s->txn->hdr_done = 0;
    s->txn->hdr_eol = 2;
    s->txn->hdr_size = 0;
    data_enc_init(&s->txn->enc);
    s->txn->hdr_hold = s->txn->rw_from && s->dev->rewrite_from_header;
    s->txn->rate_ms = uv_now(s->env->loop);
    s->txn->rate_bytes = 0;
    s->txn->rate_paused = 0;
    prx_reply(s, REPLY_DATA);
    prx_enter_state(s, PRX_STATE_BODY);
    if (s->conf->received_header) {
        char hdr[600], date[64];
        time_t now = time(NULL);
        struct tm tm;
        int n;
        localtime_r(&now, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
        /* RFC 5321 §4.1.3: IPv6 address literals carry the "IPv6:" tag */
        n = snprintf(hdr, sizeof(hdr),
                     "Received: from %s ([%s%s])\r\n\tby %s (relay25) with %s id "
                     "%016llx;\r\n\t%s\r\n",
                     s->helo[0] ? s->helo : "unknown", strchr(s->ip, ':') ? "IPv6:" : "", s->ip,
                     s->conf->hostname, prx_with(s), (unsigned long long)s->txn->qid, date);
        if (n > 0 && (size_t)n < sizeof(hdr)) {
            if (s->up && s->txn->sink->relays) {
                up_body(s->up, hdr, (size_t)n);
            }
            if (s->txn->spw && spool_writer_write(s->txn->spw, hdr, (size_t)n) < 0) {
                s->txn->spool_err = 1;
            }
            if (s->txn->gw && prx_graph_write(s->txn->gw, hdr, (size_t)n) < 0) {
                s->txn->spool_err = 1;
            }
        }
    }
}

/* The body ended with body_err set: the client gets our own reply (or the
 * upstream's failure) and the transaction ends. */
void prx_body_refuse(struct prx_session *s)
{
    struct prx_txn *t = s->txn;
    size_t len;
    const char *r;

    switch (t->body_err) {
    case PRX_BODY_TOO_BIG:
        r = reply_canned(REPLY_TOO_BIG, &len);
        break;
    case PRX_BODY_BARE_LF:
        r = reply_canned(REPLY_BARE_LF, &len);
        break;
    case PRX_BODY_HEADER_TOO_BIG:
        r = reply_canned(REPLY_HEADER_TOO_BIG, &len);
        break;
    case PRX_BODY_SPOOL:
        r = reply_canned(REPLY_SPOOL_NO_ROOM, &len);
        break;
    case PRX_BODY_OK:
    case PRX_BODY_UPSTREAM:
    default:
        r = t->upfail;
        len = strlen(t->upfail);
        break;
    }
    if (t->body_err != PRX_BODY_UPSTREAM) {
        prx_log_message(s, r[0] == '5' ? "bounced" : "deferred", r, len - 2);
    }
    prx_send(s, r, len);
    prx_txn_end(s);
}

static void prx_body_end(struct prx_session *s)
{
    if (s->txn->body_err != PRX_BODY_OK) {
        prx_body_refuse(s);
        return;
    }
    s->txn->sink->body_done(s);
}

/* Finds the empty line that ends the header section (RFC 5322 §2.1) in decoded
 * content, whose line ends are always CRLF. hdr_eol: 0 in a line, 1 after its
 * CR, 2 at the start of a line, 3 after a CR at the start of a line. */
static size_t prx_scan_header(struct prx_session *s, const char *p, size_t n)
{
    int st = s->txn->hdr_eol;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\r') {
            st = st == 2 ? 3 : 1;
        } else if (ch == '\n' && st == 3) {
            s->txn->hdr_done = 1;
            s->txn->hdr_size += i + 1;
            return i + 1;
        } else {
            st = ch == '\n' && st == 1 ? 2 : 0;
        }
    }
    s->txn->hdr_eol = st;
    s->txn->hdr_size += n;
    return n;
}

/* Decoded content on its way out: to the spool copy and, re-encoded in steps the
 * encode buffer holds (2 * PRX_BODY_STEP), upstream. */
static void prx_emit(struct prx_session *s, const char *dec, size_t len)
{
    char *enc = s->txn->bodybuf + PRX_BODY_STEP;

    if (len == 0) {
        return;
    }
    if (s->txn->spw && !s->txn->spool_err &&
        !prx_spool_room(s, spool_writer_written(s->txn->spw) + len)) {
        s->txn->spool_err = UV_ENOSPC; /* max_spool_size */
    }
    if (s->txn->spw && !s->txn->spool_err) {
        int r = spool_writer_write(s->txn->spw, dec, len);
        if (r < 0) {
            s->txn->spool_err = r;
        } else if (r == 1) {
            s->txn->bp_spool = 1; /* resumed by prx_spool_drain */
        }
    }
    if (s->txn->gw && !s->txn->spool_err) {
        int r = prx_graph_write(s->txn->gw, dec, len);
        if (r < 0) {
            s->txn->spool_err = r;
        } else if (r == 1) {
            s->txn->bp_spool = 1; /* resumed when the temp file's write ends */
        }
    }
    for (size_t o = 0; o < len && s->up && s->txn->sink->relays;) {
        size_t k = len - o < PRX_BODY_STEP ? len - o : PRX_BODY_STEP;
        size_t n = data_enc_feed(&s->txn->enc, dec + o, k, enc);
        up_body(s->up, enc, n); /* a failure arrives as prx_up_fail */
        o += k;
    }
}

/* rewrite_from_header: the held section goes out rewritten (prx_rewrite), or
 * as it came when it cannot be. */
static void prx_rewrite_header(struct prx_session *s)
{
    struct prx_txn *t = s->txn;
    size_t n = 0;
    char *out = prx_rewrite_from(t->hbuf, t->hlen, s->dev->rewrite_sender, t->orig_from, &n);

    if (!out) {
        prx_emit(s, t->hbuf, t->hlen);
        return;
    }
    prx_emit(s, out, n);
    free(out);
}

/* Holds header bytes for the rewrite; at the end of the section (or of a message
 * without body) rewrites and emits them. Beyond max_header_size (1 MiB when that
 * is 0: unlimited) the message goes out as sent. */
static void prx_hold_header(struct prx_session *s, const char *p, size_t n, int end)
{
    size_t limit = s->conf->max_header_size ? (size_t)s->conf->max_header_size : (1u << 20);

    if (s->txn->hlen + n > s->txn->hcap) {
        size_t ncap = s->txn->hcap ? s->txn->hcap : 8192;
        char *nb;

        while (ncap < s->txn->hlen + n) {
            ncap *= 2;
        }
        if (ncap > limit + PRX_BODY_STEP) {
            ncap = limit + PRX_BODY_STEP;
        }
        nb = s->txn->hlen + n <= ncap ? realloc(s->txn->hbuf, ncap) : NULL;
        if (!nb) {
            /* not rewritten: out as sent */
            prx_emit(s, s->txn->hbuf, s->txn->hlen);
            prx_emit(s, p, n);
            s->txn->hdr_hold = 0;
            return;
        }
        s->txn->hbuf = nb;
        s->txn->hcap = ncap;
    }
    memcpy(s->txn->hbuf + s->txn->hlen, p, n);
    s->txn->hlen += n;
    if (end) {
        prx_rewrite_header(s);
        s->txn->hdr_hold = 0;
        free(s->txn->hbuf);
        s->txn->hbuf = NULL;
        s->txn->hlen = s->txn->hcap = 0;
    }
}

/* Decode, check, re-encode and forward one step of body bytes. Returns input consumed. */
size_t prx_body(struct prx_session *s, const char *data, size_t len)
{
    char *dec = s->txn->bodybuf;
    size_t in = len < PRX_BODY_STEP / 2 ? len : PRX_BODY_STEP / 2;
    size_t outlen = 0, c, hl = 0;
    int done = 0;

    c = data_dec_feed(&s->txn->dec, data, in, dec, PRX_BODY_STEP, &outlen, &done);
    if (!s->txn->hdr_done) {
        hl = prx_scan_header(s, dec, outlen);
    }
    if (s->txn->body_err == PRX_BODY_OK) {
        if (s->txn->dec.size > s->txn->size_limit) {
            s->txn->body_err = PRX_BODY_TOO_BIG;
        } else if (s->conf->max_header_size && s->txn->hdr_size > s->conf->max_header_size) {
            s->txn->body_err = PRX_BODY_HEADER_TOO_BIG;
        } else if (s->txn->dec.bare_seen && s->conf->bare_lf == CONF_BARE_LF_REJECT) {
            s->txn->body_err = PRX_BODY_BARE_LF;
        }
        if (s->txn->body_err != PRX_BODY_OK) {
            prx_drop_up(s); /* no final dot: upstream discards the partial message */
        } else if (s->txn->hdr_hold) {
            /* rewrite_from_header: the header section waits, the rest streams */
            prx_hold_header(s, dec, hl, s->txn->hdr_done || done);
            prx_emit(s, dec + hl, outlen - hl);
        } else {
            prx_emit(s, dec, outlen);
        }
    }
    s->txn->rate_bytes += c;
    if (done) {
        prx_body_end(s);
    }
    return c;
}

/* When the current data_min_rate window ends (uv_now() time), or 0: no limit. */
uint64_t prx_body_rate_due(const struct prx_session *s)
{
    if (!s->conf->data_min_rate || !s->txn) {
        return 0;
    }
    return s->txn->rate_ms + (uint64_t)s->conf->data_rate_window * 1000u;
}

/* The window ended: 1 when the client kept up data_min_rate on average (or we
 * did not read from it for a while: upstream or the spool was slower), and the
 * next window begins; 0 for a client too slow to keep the session. A window
 * rather than the idle timer, because a client dripping a byte a second never
 * leaves the link idle. */
int prx_body_rate_ok(struct prx_session *s, uint64_t now_ms)
{
    struct prx_txn *t = s->txn;
    uint64_t need = (uint64_t)s->conf->data_min_rate * (now_ms - t->rate_ms) / 1000u;
    int ok = t->rate_paused || s->bp || t->bp_spool || t->rate_bytes >= need;

    if (!ok) {
        log_info(s->sid, "prx",
                 "event=slow_client client=%s state=body bytes=%llu seconds=%llu "
                 "limit=data_min_rate rate=%u/s",
                 s->ip, (unsigned long long)t->rate_bytes,
                 (unsigned long long)((now_ms - t->rate_ms) / 1000u), s->conf->data_min_rate);
    }
    t->rate_ms = now_ms;
    t->rate_bytes = 0;
    t->rate_paused = 0;
    return ok;
}
