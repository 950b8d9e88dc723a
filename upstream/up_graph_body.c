/* up_graph_body: plain POSIX, run in libuv's thread pool. Reads the message
 * file with pread (a 64 KiB line reader for the MIME scan), decodes base64 text
 * straight into the chunk buffer, never holds a large message whole. */
#include "upstream/up_graph_body.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "common/base64.h"
#include "upstream/up_graph_msg.h"

#define UP_GRAPH_BCC_MAX (64u * 1024u)   /* the Bcc field we add */
#define UP_GRAPH_HDR_MAX (1024u * 1024u) /* header section searched for recipients */
#define UP_GRAPH_PART_MIN (256u * 1024u) /* base64 parts from this size are uploaded */
#define UP_GRAPH_MAX_PARTS 64u
#define UP_GRAPH_LINE 1024u /* bytes of a line kept for the MIME scan */
#define UP_GRAPH_PHDR_MAX (16u * 1024u)

/* Reads len bytes at off; 0 or a negative errno. Plain POSIX: a pool thread. */
static int up_graph_pread(int fd, uint64_t off, char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : UV_EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Reads the file line by line for the MIME scan (thread pool). */
struct up_graph_lr {
    int fd;
    uint64_t off; /* file offset of buf[pos] */
    size_t pos, len;
    char buf[64 * 1024];
};

static int up_graph_b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* The next line: its start offset, its first cap - 1 bytes in line (NUL after
 * them), its whole length in *full, and the base64 characters and '=' in it.
 * 1, 0 at the end of the file, or a negative errno. */
static int up_graph_line(struct up_graph_lr *r, uint64_t *start, char *line, size_t cap,
                         size_t *full, uint64_t *nb64, uint64_t *npad)
{
    size_t o = 0;

    *start = r->off;
    *full = 0;
    *nb64 = *npad = 0;
    for (;;) {
        if (r->pos == r->len) {
            ssize_t n;
            do {
                n = read(r->fd, r->buf, sizeof(r->buf));
            } while (n < 0 && errno == EINTR);
            if (n < 0) {
                return -errno;
            }
            r->pos = 0;
            r->len = (size_t)n;
            if (n == 0) {
                line[o] = '\0';
                return *full > 0;
            }
        }
        char c = r->buf[r->pos++];
        r->off++;
        (*full)++;
        if (o + 1 < cap) {
            line[o++] = c;
        }
        if (up_graph_b64val((unsigned char)c) >= 0) {
            (*nb64)++;
        } else if (c == '=') {
            (*npad)++;
        }
        if (c == '\n') {
            line[o] = '\0';
            return 1;
        }
    }
}

/* A top-level part ends at start: a large base64 one joins the upload list. */
static void up_graph_part_end(struct up_graph_body *g, struct up_graph_part *p, uint64_t start,
                              int b64, uint64_t nb64, uint64_t npad)
{
    uint64_t q = nb64 + npad;

    p->end = start;
    if (b64 && p->body && start - p->body >= UP_GRAPH_PART_MIN && q % 4 == 0 && npad <= 2 &&
        g->nparts < UP_GRAPH_MAX_PARTS) {
        p->size = q / 4 * 3 - npad;
        if (!p->name[0]) {
            snprintf(p->name, sizeof(p->name), "attachment-%zu.bin", g->nparts + 1);
        }
        g->parts[g->nparts++] = *p;
    }
}

/* RFC 2046 §5.1: the top-level parts of a multipart message, the large base64
 * ones noted for upload sessions. 0, or a negative errno. */
static int up_graph_scan(struct up_graph_body *g, int fd, const char *boundary)
{
    struct up_graph_lr *r = malloc(sizeof(*r));
    char line[UP_GRAPH_LINE], *phdr = malloc(UP_GRAPH_PHDR_MAX);
    size_t bl = strlen(boundary), full, phlen = 0;
    uint64_t start, nb64, npad, tb64 = 0, tpad = 0;
    struct up_graph_part cur;
    int st = 0, b64 = 0, rc; /* 0 header, 1 preamble, 2 part header, 3 part body, 4 epilogue */

    g->parts = calloc(UP_GRAPH_MAX_PARTS, sizeof(*g->parts));
    if (!r || !phdr || !g->parts) {
        free(r);
        free(phdr);
        return UV_ENOMEM;
    }
    memset(&cur, 0, sizeof(cur));
    r->fd = fd;
    r->off = 0;
    r->pos = r->len = 0;
    while ((rc = up_graph_line(r, &start, line, sizeof(line), &full, &nb64, &npad)) > 0) {
        int empty = strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0;
        int delim = st > 0 && st < 4 && full >= 2 + bl && line[0] == '-' && line[1] == '-' &&
                    strncmp(line + 2, boundary, bl) == 0;

        if (st == 0) {
            st = empty ? 1 : 0;
            continue;
        }
        if (delim) {
            if (st == 3) {
                up_graph_part_end(g, &cur, start, b64, tb64, tpad);
            }
            if (line[2 + bl] == '-' && line[3 + bl] == '-') {
                st = 4;
                continue;
            }
            memset(&cur, 0, sizeof(cur));
            cur.start = start;
            st = 2;
            phlen = 0;
            continue;
        }
        if (st == 2) {
            size_t k = strlen(line);
            if (phlen + k <= UP_GRAPH_PHDR_MAX) {
                memcpy(phdr + phlen, line, k);
                phlen += k;
            }
            if (empty) {
                up__graph_part(phdr, phlen, &b64, cur.name, sizeof(cur.name), cur.ctype,
                               sizeof(cur.ctype));
                cur.body = start + full;
                tb64 = tpad = 0;
                st = 3;
            }
        } else if (st == 3) {
            tb64 += nb64;
            tpad += npad;
        }
    }
    free(r);
    free(phdr);
    return rc < 0 ? rc : 0;
}

/* The draft: the message (Bcc in front) without the spans of its large parts. */
static int up_graph_draft(struct up_graph_body *g, int fd, uint64_t size, const char *bcc,
                          size_t blen)
{
    uint64_t removed = 0, pos = 0;
    size_t o = blen;
    char *raw;
    int r = 0;

    for (size_t i = 0; i < g->nparts; i++) {
        removed += g->parts[i].end - g->parts[i].start;
    }
    if (g->nparts == 0 || size - removed + blen > UP_GRAPH_MIME_MAX) {
        g->too_large = 1;
        return 0;
    }
    g->mime_len = (size_t)(size - removed) + blen;
    if (!(raw = malloc(g->mime_len + 1))) {
        return UV_ENOMEM;
    }
    memcpy(raw, bcc, blen);
    for (size_t i = 0; i <= g->nparts && r == 0; i++) {
        uint64_t to = i < g->nparts ? g->parts[i].start : size;
        r = up_graph_pread(fd, pos, raw + o, (size_t)(to - pos));
        o += (size_t)(to - pos);
        pos = i < g->nparts ? g->parts[i].end : size;
    }
    if (r == 0 && (g->mime64 = malloc(4 * ((g->mime_len + 2) / 3) + 1))) {
        g->mime64_len = b64_encode(raw, g->mime_len, g->mime64, 4 * ((g->mime_len + 2) / 3) + 1);
    } else if (r == 0) {
        r = UV_ENOMEM;
    }
    free(raw);
    return r;
}

/* Reads the message, puts the Bcc field in front and base64-encodes it (Graph
 * wants the MIME message as one base64 text); a message larger than one request
 * becomes a draft without its large parts. */
int up_graph_body_read(const char *path, const char *const *rcpt, size_t nrcpt,
                       struct up_graph_body *g)
{
    struct stat st;
    char *raw = NULL, *bcc = NULL, *h = NULL, boundary[80];
    size_t hlen, hread, total;
    long blen;
    int fd, err = 0;

    memset(g, 0, sizeof(*g));
    bcc = malloc(UP_GRAPH_BCC_MAX);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err = -errno;
        goto out;
    }
    hread = (uint64_t)st.st_size < UP_GRAPH_HDR_MAX ? (size_t)st.st_size : UP_GRAPH_HDR_MAX;
    if (!bcc || !(h = malloc(hread + 1))) {
        err = UV_ENOMEM;
        goto out;
    }
    if ((err = up_graph_pread(fd, 0, h, hread)) != 0) {
        goto out;
    }
    {
        const char *e = memmem(h, hread, "\r\n\r\n", 4);
        hlen = e ? (size_t)(e - h) + 2 : hread;
        if (hread >= 2 && h[0] == '\r' && h[1] == '\n') {
            hlen = 0; /* no header section at all */
        }
    }
    blen = up__graph_bcc(h, hlen, rcpt, nrcpt, bcc, UP_GRAPH_BCC_MAX);
    if (blen < 0) {
        err = UV_E2BIG;
        goto out;
    }
    for (size_t i = 0; i < (size_t)blen; i++) {
        g->nbcc += bcc[i] == '@';
    }
    if ((uint64_t)st.st_size + (uint64_t)blen > UP_GRAPH_MIME_MAX) {
        g->mime_len = (size_t)st.st_size;
        if (!up__graph_boundary(h, hlen, boundary, sizeof(boundary))) {
            g->too_large = 1;
            goto out;
        }
        g->large = 1;
        if ((err = up_graph_scan(g, fd, boundary)) == 0) {
            err = up_graph_draft(g, fd, (uint64_t)st.st_size, bcc, (size_t)blen);
        }
        goto out;
    }
    total = (size_t)st.st_size + (size_t)blen;
    if (!(raw = malloc(total + 1))) {
        err = UV_ENOMEM;
        goto out;
    }
    memcpy(raw, bcc, (size_t)blen);
    if ((err = up_graph_pread(fd, 0, raw + blen, (size_t)st.st_size)) != 0) {
        goto out;
    }
    g->mime_len = total;
    g->mime64 = malloc(4 * ((total + 2) / 3) + 1);
    if (!g->mime64) {
        err = UV_ENOMEM;
        goto out;
    }
    g->mime64_len = b64_encode(raw, total, g->mime64, 4 * ((total + 2) / 3) + 1);
out:
    if (fd >= 0) {
        close(fd);
    }
    free(raw);
    free(h);
    free(bcc);
    return err;
}

int up_graph_body_chunk(const char *path, const struct up_graph_part *p, uint64_t *raw_pos,
                        uint64_t want, char *chunk, size_t *len)
{
    uint64_t pos = *raw_pos;
    unsigned char q[4];
    size_t nq = 0, npad = 0, got = 0;
    char buf[64 * 1024];
    int fd, err = 0;

    if (want > UP_GRAPH_CHUNK) {
        want = UP_GRAPH_CHUNK;
    }
    *len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return -errno;
    }
    while (got < want && pos < p->end) {
        size_t n = p->end - pos < sizeof(buf) ? (size_t)(p->end - pos) : sizeof(buf);
        if ((err = up_graph_pread(fd, pos, buf, n)) != 0) {
            break;
        }
        for (size_t i = 0; i < n && got < want; i++) {
            int v = up_graph_b64val((unsigned char)buf[i]);
            if (v < 0 && buf[i] != '=') {
                continue; /* line ends and other blanks (RFC 2045 §6.8) */
            }
            npad += buf[i] == '=';
            q[nq++] = (unsigned char)(v < 0 ? 0 : v);
            if (nq == 4) {
                unsigned char b[3] = {(unsigned char)(q[0] << 2 | q[1] >> 4),
                                      (unsigned char)(q[1] << 4 | q[2] >> 2),
                                      (unsigned char)(q[2] << 6 | q[3])};
                size_t k = npad > 2 ? 0 : 3 - npad;
                if (k > want - got) {
                    k = (size_t)(want - got);
                }
                memcpy(chunk + got, b, k);
                got += k;
                nq = npad = 0;
                if (got == want) {
                    pos += i + 1;
                    goto done;
                }
            }
        }
        pos += n;
    }
done:
    *raw_pos = pos;
    *len = got;
    close(fd);
    if (!err && got != want) {
        err = UV_EIO; /* the text ended early: the scan counted otherwise */
    }
    return err;
}

void up_graph_body_free(struct up_graph_body *b)
{
    free(b->mime64);
    free(b->parts);
    memset(b, 0, sizeof(*b));
}
