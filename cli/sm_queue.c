/* sm_queue: sendmail's own commit to the daemon's spool when the daemon cannot be
 * reached (see the header). The checks mirror what the daemon does to a
 * submission from loopback (proxy/prx_session.c MAIL/RCPT, prx_txn.c, prx_data.c),
 * with the same reply classes turned into sysexits codes; the files are written
 * by spool_commit_fd in spool_writer's order (data, envelope, renames, fsyncs). */
#include "cli/sm_queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth_map.h"
#include "cli/cli.h"
#include "cli/sm_msg.h"
#include "conf/conf.h"
#include "proxy/prx_rewrite.h"
#include "spool/spool.h"

int sm_queue_possible(const struct conf *c, char *why, size_t cap)
{
    struct stat st;

    if (!conf_spool_used(c)) {
        snprintf(why, cap, "no spool (neither mode = spool nor on_upstream_failure = queue)");
        return -1;
    }
    if (stat(c->spool_dir, &st) != 0) {
        snprintf(why, cap, "spool_dir %s: %s", c->spool_dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(why, cap, "spool_dir %s is not a directory", c->spool_dir);
        return -1;
    }
    if (geteuid() != 0 && st.st_uid != geteuid()) {
        snprintf(why, cap, "spool_dir %s belongs to uid %u: only root and that user can queue",
                 c->spool_dir, (unsigned)st.st_uid);
        return -1;
    }
    return 0;
}

/* The address the daemon would see this submission come from: the submit
 * address itself when it is a literal outside loopback (a connection to one of
 * our own addresses comes from it), else 127.0.0.1 (::1 for an IPv6 loopback). */
static void sm_queue_client(const char *submit, struct sockaddr_storage *ss, char *ip, size_t cap)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    char host[300];
    uint16_t port;

    memset(ss, 0, sizeof(*ss));
    if (submit && cli__hostport(submit, 25, host, sizeof(host), &port) == 0) {
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            inet_ntop(AF_INET6, &v6->sin6_addr, ip, (socklen_t)cap);
            return;
        }
        if (inet_pton(AF_INET, host, &v4->sin_addr) == 1 &&
            (ntohl(v4->sin_addr.s_addr) >> 24) != 127) {
            v4->sin_family = AF_INET;
            inet_ntop(AF_INET, &v4->sin_addr, ip, (socklen_t)cap);
            return;
        }
    }
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(ip, cap, "127.0.0.1");
}

/* max_spool_size: would `more` bytes still fit beside what q/ holds? */
static int sm_queue_room(const struct conf *c, uint64_t more)
{
    uint64_t *ids = NULL, *sizes = NULL, total = more;
    size_t n = 0;

    if (c->max_spool_size == 0) {
        return 1;
    }
    if (spool_scan(c->spool_dir, SPOOL_AREA_Q, &ids, &sizes, &n) != 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        total += sizes[i];
    }
    free(ids);
    free(sizes);
    return total <= c->max_spool_size;
}

/* The daemon's Received: line for this submission (prx_data.c): our EHLO name is
 * the configured hostname, the protocol plain ESMTP (no TLS, no AUTH to it). */
static size_t sm_queue_received(const struct conf *c, const char *ip, uint64_t qid, char *out,
                                size_t cap)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    int n;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    n = snprintf(out, cap,
                 "Received: from %s ([%s%s])\r\n\tby %s (relay25) with ESMTP id %016" PRIx64
                 ";\r\n\t%s\r\n",
                 c->hostname, strchr(ip, ':') ? "IPv6:" : "", ip, c->hostname, qid, date);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int sm_queue_commit(const struct sm_queue_in *in, uint64_t *qid, char *err, size_t cap)
{
    const struct conf *c = in->c;
    const struct sm_msg *m = in->m;
    const struct conf_device *dev;
    const struct conf_route *route;
    struct sockaddr_storage ss;
    struct spool_env env;
    struct iovec iov[3];
    struct stat owner;
    char ip[INET6_ADDRSTRLEN], received[700], e2[600];
    char *head = NULL, *rw = NULL;
    size_t headlen, rwlen = 0, rlen = 0, niov = 0;
    uint64_t size, written = 0;
    int e, rc = EX_TEMPFAIL;

    memset(&env, 0, sizeof(env));
    sm_queue_client(in->submit, &ss, ip, sizeof(ip));
    if (!auth_map_allowed(c, (const struct sockaddr *)&ss)) {
        snprintf(err, cap, "%s is not in allow: the daemon would refuse it", ip);
        return EX_TEMPFAIL;
    }
    if (!(dev = auth_map_lookup(c, (const struct sockaddr *)&ss))) {
        snprintf(err, cap, "no [device] matches %s and there is no [device default]", ip);
        return EX_TEMPFAIL;
    }
    /* MAIL: policy judges the sender as sent; the spool gets the rewrite */
    if (!conf_patterns_match(&dev->allowed_senders, in->sender)) {
        snprintf(err, cap, "sender <%s> not allowed for device %s (allowed_senders)", in->sender,
                 dev->name);
        return EX_UNAVAILABLE;
    }
    if (c->max_recipients && m->nrcpt > c->max_recipients) {
        snprintf(err, cap, "%zu recipients, max_recipients is %u", m->nrcpt, c->max_recipients);
        return EX_TEMPFAIL;
    }
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (!conf_patterns_match(&dev->allowed_recipients, m->rcpt[i])) {
            snprintf(err, cap, "recipient <%s> not allowed for device %s (allowed_recipients)",
                     m->rcpt[i], dev->name);
            return EX_NOUSER;
        }
    }
    if (c->max_header_size && m->hdrlen + in->addedlen + 2 > c->max_header_size) {
        snprintf(err, cap, "header section larger than max_header_size");
        return EX_UNAVAILABLE;
    }
    *qid = spool_new_id();
    env.created = (uint64_t)time(NULL);
    snprintf(env.device, sizeof(env.device), "%s", dev->name);
    snprintf(env.from, sizeof(env.from), "%s",
             dev->rewrite_sender && in->sender[0] ? dev->rewrite_sender : in->sender);
    route = conf_route_for(c, dev, env.from);
    snprintf(env.user, sizeof(env.user), "%s",
             route       ? route->cred.user
             : dev->user ? dev->user
                         : "");
    snprintf(env.route, sizeof(env.route), "%s", route ? route->cred.name : "");
    snprintf(env.client, sizeof(env.client), "%s", ip);
    snprintf(env.helo, sizeof(env.helo), "%s", c->hostname);
    snprintf(env.body, sizeof(env.body), "%s", m->eightbit ? "8BITMIME" : "");
    if (spool_env_set_rcpt(&env, m->rcpt, m->nrcpt) != 0) {
        snprintf(err, cap, "out of memory");
        return EX_OSERR;
    }
    /* the content: Received:, the header section (ours after the caller's, then
     * the blank line; From: rewritten as the daemon would), the body */
    headlen = m->hdrlen + in->addedlen + 2;
    if (!(head = malloc(headlen))) {
        snprintf(err, cap, "out of memory");
        rc = EX_OSERR;
        goto out;
    }
    memcpy(head, m->hdr, m->hdrlen);
    memcpy(head + m->hdrlen, in->added, in->addedlen);
    memcpy(head + m->hdrlen + in->addedlen, "\r\n", 2);
    if (dev->rewrite_sender && dev->rewrite_from_header && in->sender[0]) {
        rw = prx_rewrite_from(head, headlen, dev->rewrite_sender, in->sender, &rwlen);
    }
    if (c->received_header && (rlen = sm_queue_received(c, ip, *qid, received, sizeof(received)))) {
        iov[niov++] = (struct iovec){.iov_base = received, .iov_len = rlen};
    }
    iov[niov++] = rw ? (struct iovec){.iov_base = rw, .iov_len = rwlen}
                     : (struct iovec){.iov_base = head, .iov_len = headlen};
    size = rlen + (rw ? rwlen : headlen) + m->bodylen;
    /* the daemon counts what the client sends: without its Received: or rewrite */
    if (headlen + m->bodylen > c->max_message_size) {
        snprintf(err, cap, "message larger than max_message_size (%llu bytes)",
                 (unsigned long long)c->max_message_size);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (!sm_queue_room(c, size)) {
        snprintf(err, cap, "the spool is full (max_spool_size)");
        goto out;
    }
    if (stat(c->spool_dir, &owner) != 0) {
        snprintf(err, cap, "spool_dir %s: %s", c->spool_dir, strerror(errno));
        goto out;
    }
    e = spool_commit_fd(c->spool_dir, *qid, iov, niov, m->fd, &env, &owner, &written, e2,
                        sizeof(e2));
    if (e != 0) {
        snprintf(err, cap, "%s", e2); /* a full disk, too, is worth another try */
        goto out;
    }
    rc = 0;
out:
    free(rw);
    free(head);
    spool_env_free(&env);
    return rc;
}
