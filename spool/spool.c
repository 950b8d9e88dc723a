/* spool: the message store's files (layout in the header): paths, startup
 * clean-up, scan, load, progress, and the moves between q/ and failed/. Plain
 * blocking POSIX; every rewrite goes through common/afile, every multi-file
 * change commits by the .env's arrival and removes by the .env's departure. */
#include "spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/afile.h"
#include "common/log.h"

#define SPOOL_PATH 4096
#define SPOOL_ID_LEN 16

static const char *const spool_areas[] = {[SPOOL_AREA_Q] = "q", [SPOOL_AREA_FAILED] = "failed"};

uint64_t spool_new_id(void)
{
    uint64_t id = 0;
    while (id == 0) {
        if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
            id = log_new_id() ^ ((uint64_t)time(NULL) << 20);
        }
    }
    return id;
}

int spool__path(char *out, size_t cap, const char *dir, const char *area, uint64_t qid,
                const char *ext)
{
    int n = snprintf(out, cap, "%s/%s/%016" PRIx64 "%s", dir, area, qid, ext);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int spool_msg_path(char *out, size_t cap, const char *dir, enum spool_area area, uint64_t qid)
{
    return spool__path(out, cap, dir, spool_areas[area], qid, ".msg");
}

int spool_area_path(char *out, size_t cap, const char *dir, enum spool_area area)
{
    int n = snprintf(out, cap, "%s/%s", dir, spool_areas[area]);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int spool_sync(const char *dir, enum spool_area area)
{
    char path[SPOOL_PATH];

    if (spool_area_path(path, sizeof(path), dir, area) != 0) {
        return ENAMETOOLONG;
    }
    return afile_fsync_dir(path);
}

/* A queue id file name "<16 lower-case hex><ext>": its id, else 0. */
static uint64_t spool_name_id(const char *name, const char *ext)
{
    uint64_t id = 0;

    if (strlen(name) != SPOOL_ID_LEN + strlen(ext) || strcmp(name + SPOOL_ID_LEN, ext) != 0) {
        return 0;
    }
    for (size_t i = 0; i < SPOOL_ID_LEN; i++) { /* spool_path writes lower-case hex */
        int v = name[i] >= '0' && name[i] <= '9'   ? name[i] - '0'
                : name[i] >= 'a' && name[i] <= 'f' ? name[i] - 'a' + 10
                                                   : -1;
        if (v < 0) {
            return 0;
        }
        id = id << 4 | (uint64_t)v;
    }
    return id;
}

/* ---- startup ---- */

static int spool_mkdir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* An area's leftovers: temp files of afile, and parts of a message whose .env
 * is missing (never committed, or half removed). */
static int spool_sweep(const char *path, char *err, size_t errlen)
{
    static const char *const parts[] = {".msg", ".done", ".reason"};
    DIR *d = opendir(path);
    struct dirent *de;

    if (!d) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while ((de = readdir(d))) {
        char env[SPOOL_ID_LEN + 8];
        int orphan = 0;

        if (strstr(de->d_name, ".tmp-")) {
            unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            orphan |= spool_name_id(de->d_name, parts[i]) != 0;
        }
        if (!orphan) {
            continue;
        }
        snprintf(env, sizeof(env), "%.16s.env", de->d_name);
        if (faccessat(dirfd(d), env, F_OK, 0) != 0) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
    return 0;
}

/* defer/: the notes of messages no longer in q/ (a crash between the removal
 * of a message and of its note) and temp files go. */
static void spool_defer_sweep(const char *dir)
{
    char path[SPOOL_PATH], env[SPOOL_PATH];
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof(path), "%s/defer", dir);
    if (!(d = opendir(path))) {
        return;
    }
    while ((de = readdir(d))) {
        uint64_t id = spool_name_id(de->d_name, "");
        if (de->d_name[0] == '.') {
            continue;
        }
        if (id == 0 || spool__path(env, sizeof(env), dir, "q", id, ".env") != 0 ||
            access(env, F_OK) != 0) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
}

int spool_prepare(const char *dir, char *err, size_t errlen)
{
    static const char *const areas[] = {"q", "tmp", "failed"};
    char path[SPOOL_PATH];
    DIR *d;
    struct dirent *de;

    if (spool_mkdir(dir, err, errlen) != 0) {
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, areas[i]);
        if (spool_mkdir(path, err, errlen) != 0) {
            return -1;
        }
    }
    /* tmp/: never acknowledged */
    snprintf(path, sizeof(path), "%s/tmp", dir);
    if ((d = opendir(path))) {
        while ((de = readdir(d))) {
            if (de->d_name[0] != '.') {
                unlinkat(dirfd(d), de->d_name, 0);
            }
        }
        closedir(d);
    }
    for (int a = SPOOL_AREA_Q; a <= SPOOL_AREA_FAILED; a++) {
        spool_area_path(path, sizeof(path), dir, (enum spool_area)a);
        if (spool_sweep(path, err, errlen) != 0) {
            return -1;
        }
    }
    spool_defer_sweep(dir);
    return 0;
}

/* ---- scan ---- */

static int spool_cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int spool_scan(const char *dir, enum spool_area area, uint64_t **ids, uint64_t **sizes, size_t *n)
{
    char path[SPOOL_PATH];
    size_t cap = 0;
    uint64_t *vi = NULL, *vs = NULL;
    DIR *d;
    struct dirent *de;
    int e = 0;

    *ids = NULL;
    if (sizes) {
        *sizes = NULL;
    }
    *n = 0;
    if (spool_area_path(path, sizeof(path), dir, area) != 0) {
        return ENAMETOOLONG;
    }
    if (!(d = opendir(path))) {
        return errno == ENOENT ? 0 : errno;
    }
    while ((de = readdir(d))) {
        uint64_t id = spool_name_id(de->d_name, ".env");
        if (id == 0) {
            continue;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *a = realloc(vi, ncap * sizeof(*a));
            if (a) {
                vi = a;
            }
            if (!a || !(a = realloc(vs, ncap * sizeof(*a)))) {
                e = ENOMEM;
                break;
            }
            vs = a;
            cap = ncap;
        }
        vi[*n] = id;
        vs[(*n)++] = 0;
    }
    if (e) {
        closedir(d);
        free(vi);
        free(vs);
        *n = 0;
        return e;
    }
    /* sorted by id: sizes follow from the sorted ids */
    if (*n > 0) {
        qsort(vi, *n, sizeof(*vi), spool_cmp_id);
    }
    for (size_t i = 0; sizes && i < *n; i++) {
        char msg[SPOOL_ID_LEN + 8];
        struct stat st;
        snprintf(msg, sizeof(msg), "%016" PRIx64 ".msg", vi[i]);
        vs[i] = fstatat(dirfd(d), msg, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
    }
    closedir(d);
    *ids = vi;
    if (sizes) {
        *sizes = vs;
    } else {
        free(vs);
    }
    return 0;
}

/* ---- load ---- */

int spool_load(const char *dir, enum spool_area area, uint64_t qid, struct spool_msg *m, char *err,
               size_t errlen)
{
    const char *an = spool_areas[area];
    char path[SPOOL_PATH], *text;
    size_t len;
    int e;
    struct stat st;

    memset(m, 0, sizeof(*m));
    m->qid = qid;
    m->area = area;
    if (spool__path(path, sizeof(path), dir, an, qid, ".env") != 0) {
        snprintf(err, errlen, "spool path too long");
        return ENAMETOOLONG;
    }
    if (!(text = afile_read(path, SPOOL_FILE_MAX, 0, &len, &e))) {
        snprintf(err, errlen, "cannot read the .env: %s", strerror(e));
        return e;
    }
    if (spool__path(path, sizeof(path), dir, an, qid, ".msg") == 0 && stat(path, &st) == 0) {
        m->size = (uint64_t)st.st_size;
    }
    e = spool_env_parse(text, len, &m->env, err, errlen);
    free(text);
    if (e != 0) {
        return EINVAL;
    }
    m->verdict = calloc(m->env.nrcpt, 1);
    m->reply = calloc(m->env.nrcpt, sizeof(*m->reply));
    m->defer = calloc(m->env.nrcpt, sizeof(*m->defer));
    if (!m->verdict || !m->reply || !m->defer) {
        snprintf(err, errlen, "out of memory");
        return ENOMEM;
    }
    if (spool__path(path, sizeof(path), dir, an, qid, ".done") == 0 &&
        (text = afile_read(path, SPOOL_FILE_MAX, 0, &len, &e))) {
        e = spool_done_apply(text, len, &m->env, m->verdict, m->reply);
        free(text);
        if (e != 0) {
            snprintf(err, errlen, "out of memory");
            return ENOMEM;
        }
    }
    if (area == SPOOL_AREA_Q && spool__path(path, sizeof(path), dir, "defer", qid, "") == 0 &&
        (text = afile_read(path, SPOOL_FILE_MAX, 0, &len, &e))) {
        e = spool_done_deferrals(text, len, &m->env, m->defer);
        free(text);
        if (e != 0) {
            snprintf(err, errlen, "out of memory");
            return ENOMEM;
        }
    }
    if (area == SPOOL_AREA_FAILED &&
        spool__path(path, sizeof(path), dir, an, qid, ".reason") == 0 &&
        (text = afile_read(path, SPOOL_FILE_MAX, 1, &len, &e))) {
        text[strcspn(text, "\r\n")] = '\0';
        if (*text) {
            m->reason = text;
        } else {
            free(text);
        }
    }
    return 0;
}

void spool_msg_free(struct spool_msg *m)
{
    for (size_t i = 0; m->reply && i < m->env.nrcpt; i++) {
        free(m->reply[i]);
    }
    free(m->reply);
    spool_defer_free(m->defer, m->env.nrcpt);
    free(m->verdict);
    free(m->reason);
    spool_env_free(&m->env);
    memset(m, 0, sizeof(*m));
}

char *spool_msg_head(const char *dir, enum spool_area area, uint64_t qid, size_t max, size_t *len,
                     int *err)
{
    char path[SPOOL_PATH];

    *len = 0;
    if (spool_msg_path(path, sizeof(path), dir, area, qid) != 0) {
        *err = ENAMETOOLONG;
        return NULL;
    }
    return afile_read(path, max, 1, len, err);
}

/* ---- changes ---- */

int spool_done_append(const char *dir, uint64_t qid, const char *text, size_t len)
{
    char path[SPOOL_PATH];
    int fd, e = 0;

    if (spool__path(path, sizeof(path), dir, "q", qid, ".done") != 0) {
        return ENAMETOOLONG;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        return errno;
    }
    if (afile_write_all(fd, text, len) != 0 || fsync(fd) != 0) {
        e = errno;
    }
    close(fd);
    return e;
}

int spool_commit(const char *dir, uint64_t qid, const char *msg, size_t msglen,
                 const struct spool_env *env)
{
    char qmsg[SPOOL_PATH], qenv[SPOOL_PATH], *text;
    size_t len;
    int e;

    if (spool__path(qmsg, sizeof(qmsg), dir, "q", qid, ".msg") != 0 ||
        spool__path(qenv, sizeof(qenv), dir, "q", qid, ".env") != 0) {
        return ENAMETOOLONG;
    }
    if (!(text = spool_env_format(env, &len))) {
        return ENOMEM;
    }
    /* a .msg without its .env is not committed (startup removes it) */
    if ((e = afile_write(qmsg, msg, msglen, 0600, NULL, NULL)) == 0 &&
        (e = afile_write(qenv, text, len, 0600, NULL, NULL)) != 0) {
        unlink(qmsg);
    }
    free(text);
    return e;
}

/* from -> to as a second name (from stays until the commit); where the file
 * system has no hard links, a plain rename (*moved = 1: from is gone until
 * spool_unmove puts it back). 0, ENOENT, or an errno value. */
static int spool_link(const char *from, const char *to, int *moved)
{
    *moved = 0;
    unlink(to); /* left by an earlier attempt that did not commit */
    if (link(from, to) == 0) {
        return 0;
    }
    if (errno == ENOENT) {
        return ENOENT;
    }
    if (rename(from, to) != 0) {
        return errno;
    }
    *moved = 1;
    return 0;
}

/* spool_fail gave up before its commit: a part it moved (no hard links) goes
 * back to q/, else the q/ message would lack it and startup would remove the
 * failed/ copy that has no .env. */
static void spool_unmove(char q[][SPOOL_PATH], char f[][SPOOL_PATH], const int *moved)
{
    for (size_t i = 1; i <= 2; i++) {
        if (moved[i]) {
            rename(f[i], q[i]);
        }
    }
}

int spool_fail(const char *dir, uint64_t qid, const char *reason, size_t len, char *err,
               size_t errlen)
{
    static const char *const exts[] = {".env", ".msg", ".done", ".reason"};
    char q[4][SPOOL_PATH], f[4][SPOOL_PATH];
    int e, moved[4] = {0, 0, 0, 0};

    for (size_t i = 0; i < 4; i++) {
        if (spool__path(q[i], SPOOL_PATH, dir, "q", qid, exts[i]) != 0 ||
            spool__path(f[i], SPOOL_PATH, dir, "failed", qid, exts[i]) != 0) {
            snprintf(err, errlen, "spool path too long");
            return ENAMETOOLONG;
        }
    }
    /* .msg and .done (it says who got the message) first, under both names */
    for (size_t i = 1; i <= 2; i++) {
        if ((e = spool_link(q[i], f[i], &moved[i])) != 0 && e != ENOENT) {
            snprintf(err, errlen, "cannot move %s: %s", q[i], strerror(e));
            spool_unmove(q, f, moved);
            return e;
        }
    }
    if ((e = afile_write(f[3], reason, len, 0600, NULL, NULL)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", f[3], strerror(e));
        spool_unmove(q, f, moved);
        return e;
    }
    if ((e = spool_sync(dir, SPOOL_AREA_FAILED)) != 0) {
        snprintf(err, errlen, "cannot sync %s/failed: %s", dir, strerror(e));
        spool_unmove(q, f, moved);
        return e;
    }
    /* the commit: from here the message is in failed/ */
    if (rename(q[0], f[0]) != 0) {
        e = errno;
        snprintf(err, errlen, "cannot move %s: %s", q[0], strerror(e));
        spool_unmove(q, f, moved);
        return e;
    }
    unlink(q[1]);
    unlink(q[2]);
    spool_defer_drop(dir, qid); /* failed/ has its .reason instead */
    if ((e = spool_sync(dir, SPOOL_AREA_FAILED)) != 0 || (e = spool_sync(dir, SPOOL_AREA_Q)) != 0) {
        snprintf(err, errlen, "cannot sync %s: %s", dir, strerror(e));
        return e;
    }
    return 0;
}

/* Only the "ok" records of a .done: the failed recipients are pending again.
 * malloc'd (possibly empty), NULL when out of memory. */
static char *spool_done_ok(const char *t, size_t len, size_t *olen)
{
    const char *p = t, *end = t + len;
    struct spool_done_rec r;
    char *out = malloc(len + 1);
    size_t o = 0;

    if (!out) {
        return NULL;
    }
    while (spool_done_next(&p, end, &r)) {
        if (r.verdict == SPOOL_OK) {
            /* the whole line: an address with a quoted blank goes past addr_len */
            size_t n = (size_t)(p - r.addr);
            memcpy(out + o, "ok ", 3);
            memcpy(out + o + 3, r.addr, n);
            o += 3 + n;
        }
    }
    *olen = o;
    return out;
}

/* q/ when the daemon never ran, owned like the spool. */
static int spool_mkdir_q(const char *dir, const struct stat *owner)
{
    char path[SPOOL_PATH];

    if (spool_area_path(path, sizeof(path), dir, SPOOL_AREA_Q) != 0) {
        return ENAMETOOLONG;
    }
    if (mkdir(path, 0700) != 0) {
        return errno == EEXIST ? 0 : errno;
    }
    if (owner && geteuid() == 0 && chown(path, owner->st_uid, owner->st_gid) != 0) {
        return errno;
    }
    return 0;
}

int spool_requeue(const char *dir, uint64_t qid, uint64_t now, const struct stat *owner, char *err,
                  size_t errlen)
{
    static const char *const exts[] = {".env", ".msg", ".done", ".reason"};
    char f[4][SPOOL_PATH], q[3][SPOOL_PATH], qdir[SPOOL_PATH];
    char *text = NULL, *ok = NULL, *envtext = NULL;
    size_t len, oklen = 0, envlen;
    struct spool_env env;
    int e = 0;

    memset(&env, 0, sizeof(env));
    for (size_t i = 0; i < 4; i++) {
        if (spool__path(f[i], SPOOL_PATH, dir, "failed", qid, exts[i]) != 0 ||
            (i < 3 && spool__path(q[i], SPOOL_PATH, dir, "q", qid, exts[i]) != 0)) {
            snprintf(err, errlen, "spool path too long");
            return ENAMETOOLONG;
        }
    }
    spool_area_path(qdir, sizeof(qdir), dir, SPOOL_AREA_Q);
    if ((e = spool_mkdir_q(dir, owner)) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", qdir, strerror(e));
        return e;
    }
    if (access(q[0], F_OK) == 0) {
        snprintf(err, errlen, "%s exists already", q[0]);
        return EEXIST;
    }
    if (!(text = afile_read(f[0], SPOOL_FILE_MAX, 0, &len, &e))) {
        snprintf(err, errlen, "cannot read %s: %s", f[0], strerror(e));
        return e;
    }
    e = spool_env_parse(text, len, &env, err, errlen);
    free(text);
    text = NULL;
    if (e != 0) {
        return EINVAL;
    }
    /* the .msg stays in failed/ until the new .env commits it in q/: a crash
     * leaves the failed message, or the queued one (startup removes a q/ .msg
     * without .env) */
    unlink(q[1]);
    if (link(f[1], q[1]) != 0) {
        e = errno;
        snprintf(err, errlen, "cannot link the .msg into q/: %s", strerror(e));
        goto fail;
    }
    text = afile_read(f[2], SPOOL_FILE_MAX, 0, &len, &e);
    if (!text && e != ENOENT) {
        snprintf(err, errlen, "cannot read %s: %s", f[2], strerror(e));
        goto fail;
    }
    if (text && !(ok = spool_done_ok(text, len, &oklen))) {
        e = ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (oklen > 0) {
        if ((e = afile_write(q[2], ok, oklen, 0600, owner, NULL)) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", q[2], strerror(e));
            goto fail;
        }
    } else {
        unlink(q[2]);
    }
    /* the .msg and .done must be on disk before the .env commits them */
    if ((e = afile_fsync_dir(qdir)) != 0) {
        snprintf(err, errlen, "cannot sync %s: %s", qdir, strerror(e));
        goto fail;
    }
    env.created = now; /* a fresh max_queue_age, else an expired message fails at once */
    if (!(envtext = spool_env_format(&env, &envlen))) {
        e = ENOMEM;
        snprintf(err, errlen, "cannot format the envelope");
        goto fail;
    }
    if ((e = afile_write(q[0], envtext, envlen, 0600, owner, NULL)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", q[0], strerror(e));
        goto fail;
    }
    /* committed; failed/ loses it, .env first (as every remover does) */
    for (size_t i = 0; i < 4; i++) {
        unlink(f[i]);
    }
    free(envtext);
    free(ok);
    free(text);
    spool_env_free(&env);
    return 0;
fail:
    unlink(q[2]);
    unlink(q[1]);
    free(envtext);
    free(ok);
    free(text);
    spool_env_free(&env);
    return e ? e : EIO;
}

int spool_defer_write(const char *dir, uint64_t qid, const char *text, size_t len)
{
    char path[SPOOL_PATH], area[SPOOL_PATH];
    int n = snprintf(area, sizeof(area), "%s/defer", dir);

    if (n < 0 || (size_t)n >= sizeof(area) ||
        spool__path(path, sizeof(path), dir, "defer", qid, "") != 0) {
        return ENAMETOOLONG;
    }
    if (mkdir(area, 0700) != 0 && errno != EEXIST) { /* made at the first deferral */
        return errno;
    }
    return afile_write(path, text, len, 0600, NULL, NULL);
}

void spool_defer_drop(const char *dir, uint64_t qid)
{
    char path[SPOOL_PATH];

    if (spool__path(path, sizeof(path), dir, "defer", qid, "") == 0) {
        unlink(path);
    }
}

int spool_remove(const char *dir, enum spool_area area, uint64_t qid, char *err, size_t errlen)
{
    static const char *const exts[] = {".env", ".msg", ".done", ".reason"};
    char path[SPOOL_PATH];
    int rc = 0, gone = 0;

    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        int e;
        if (spool__path(path, sizeof(path), dir, spool_areas[area], qid, exts[i]) != 0) {
            snprintf(err, errlen, "spool path too long");
            return ENAMETOOLONG;
        }
        if (unlink(path) == 0) {
            continue;
        }
        if (errno == ENOENT) {
            gone |= i == 0;
            continue;
        }
        e = errno;
        if (!rc) {
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(e));
            rc = e;
        }
        if (i == 0) {
            return e; /* nothing removed: the message stays whole */
        }
    }
    if (area == SPOOL_AREA_Q) {
        spool_defer_drop(dir, qid);
    }
    return rc ? rc : gone ? ENOENT : 0;
}

/* ---- a message from a command ---- */

/* <dir>/<name> when missing, mode 0700, owned like the spool when we are root. */
static int spool_mkdir_owned(const char *dir, const char *name, const struct stat *owner)
{
    char path[SPOOL_PATH];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        return ENAMETOOLONG;
    }
    if (mkdir(path, 0700) != 0) {
        return errno == EEXIST ? 0 : errno;
    }
    if (owner && geteuid() == 0 && chown(path, owner->st_uid, owner->st_gid) != 0) {
        return errno;
    }
    return 0;
}

/* A new file in tmp/ (O_EXCL, 0600), owned like the spool when we are root. */
static int spool_create_owned(const char *path, const struct stat *owner)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    if (fd >= 0 && owner && geteuid() == 0 && fchown(fd, owner->st_uid, owner->st_gid) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e;
        return -1;
    }
    return fd;
}

/* head, then body_fd from offset 0 to its end, into fd; the bytes in *size. */
static int spool_copy(int fd, const struct iovec *head, size_t nhead, int body_fd, uint64_t *size)
{
    char buf[64 * 1024];
    off_t off = 0;

    *size = 0;
    for (size_t i = 0; i < nhead; i++) {
        if (afile_write_all(fd, head[i].iov_base, head[i].iov_len) != 0) {
            return -1;
        }
        *size += head[i].iov_len;
    }
    for (;;) {
        ssize_t r = body_fd >= 0 ? pread(body_fd, buf, sizeof(buf), off) : 0;
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return (int)r;
        }
        if (afile_write_all(fd, buf, (size_t)r) != 0) {
            return -1;
        }
        off += r;
        *size += (uint64_t)r;
    }
}

/* Creates path (owned like owner), writes head and then body_fd's content
 * (none when < 0), fsyncs and closes it. 0, or -1 with errno set and *step
 * naming what failed. */
static int spool_write_new(const char *path, const struct stat *owner, const struct iovec *head,
                           size_t nhead, int body_fd, uint64_t *size, const char **step)
{
    int fd, e;

    *step = "create";
    if ((fd = spool_create_owned(path, owner)) < 0) {
        return -1;
    }
    *step = "write";
    if (spool_copy(fd, head, nhead, body_fd, size) == 0) {
        *step = "fsync";
        if (fsync(fd) == 0) {
            *step = "close";
            return close(fd) == 0 ? 0 : -1; /* never closed twice: fd may be reused */
        }
    }
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int spool_commit_fd(const char *dir, uint64_t qid, const struct iovec *head, size_t nhead,
                    int body_fd, const struct spool_env *env, const struct stat *owner,
                    uint64_t *size, char *err, size_t errlen)
{
    char tmsg[SPOOL_PATH], tenv[SPOOL_PATH], qmsg[SPOOL_PATH], qenv[SPOOL_PATH];
    char qdir[SPOOL_PATH], *text = NULL;
    const char *step = NULL, *what = dir;
    size_t len = 0;
    uint64_t envsize;
    struct iovec envtext;
    int e = 0, renamed = 0;

    if (spool__path(tmsg, sizeof(tmsg), dir, "tmp", qid, ".msg") != 0 ||
        spool__path(tenv, sizeof(tenv), dir, "tmp", qid, ".env") != 0 ||
        spool__path(qmsg, sizeof(qmsg), dir, "q", qid, ".msg") != 0 ||
        spool__path(qenv, sizeof(qenv), dir, "q", qid, ".env") != 0 ||
        spool_area_path(qdir, sizeof(qdir), dir, SPOOL_AREA_Q) != 0) {
        snprintf(err, errlen, "spool path too long");
        return ENAMETOOLONG;
    }
    if ((e = spool_mkdir_owned(dir, "q", owner)) != 0 ||
        (e = spool_mkdir_owned(dir, "tmp", owner)) != 0) {
        snprintf(err, errlen, "cannot create %s/q and %s/tmp: %s", dir, dir, strerror(e));
        return e;
    }
    if (!(text = spool_env_format(env, &len))) {
        snprintf(err, errlen, "out of memory");
        return ENOMEM;
    }
    envtext.iov_base = text;
    envtext.iov_len = len;
    /* the content, then the envelope, each on disk before any rename */
    what = tmsg;
    if (spool_write_new(tmsg, owner, head, nhead, body_fd, size, &step) != 0) {
        goto fail;
    }
    what = tenv;
    if (spool_write_new(tenv, owner, &envtext, 1, -1, &envsize, &step) != 0) {
        goto fail;
    }
    /* a daemon starting now empties tmp/ (ENOENT here) */
    step = "rename";
    what = tmsg;
    if (rename(tmsg, qmsg) != 0) {
        goto fail;
    }
    renamed = 1;
    what = tenv;
    if (rename(tenv, qenv) != 0) { /* the commit */
        goto fail;
    }
    renamed = 2;
    step = "sync";
    what = qdir;
    if ((e = afile_fsync_dir(qdir)) != 0) {
        errno = e;
        goto fail;
    }
    /* a daemon starting between the two renames removed the .msg as uncommitted
     * (spool_prepare): then the message is not in the spool after all */
    step = "find";
    what = qmsg;
    if (access(qmsg, F_OK) != 0) {
        goto fail;
    }
    free(text);
    return 0;
fail:
    e = errno ? errno : EIO;
    snprintf(err, errlen, "cannot %s %s: %s", step, what, strerror(e));
    if (renamed == 2) {
        unlink(qenv); /* .env first, as every remover does */
    }
    if (renamed) {
        unlink(qmsg);
    }
    unlink(tmsg);
    unlink(tenv);
    free(text);
    return e;
}

/* ---- group commit: spool_writer's thread-pool work ---- */

int spool_tmp_append(const char *dir, uint64_t qid, int *fd, const char *data, size_t len)
{
    char path[SPOOL_PATH];

    if (*fd < 0) {
        if (spool__path(path, sizeof(path), dir, "tmp", qid, ".msg") != 0) {
            return ENAMETOOLONG;
        }
        if ((*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
            return errno;
        }
    }
    return len > 0 && afile_write_all(*fd, data, len) != 0 ? errno : 0;
}

void spool_tmp_drop(const char *dir, uint64_t qid, int fd, int committed)
{
    char path[SPOOL_PATH];
    static const char *const gone[][2] = {
        {"q", ".env"}, {"q", ".msg"}, {"tmp", ".msg"}, {"tmp", ".env"}};

    if (fd >= 0) {
        close(fd);
    }
    /* a committed message goes .env first, as every remover does */
    for (size_t i = committed ? 0 : 2; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (spool__path(path, sizeof(path), dir, gone[i][0], qid, gone[i][1]) == 0) {
            unlink(path);
        }
    }
}

/* Starts writing fd's dirty pages back now, so that the fsyncs that follow
 * for a whole batch wait for one burst of I/O instead of one after another. */
static void spool_writeback(int fd)
{
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
#endif
}

/* it's tmp/<qid>.env: created and written, its descriptor in it->envfd. */
static int spool_batch_env(struct spool_batch_item *it)
{
    char path[SPOOL_PATH];

    if (spool__path(path, sizeof(path), it->dir, "tmp", it->qid, ".env") != 0) {
        return ENAMETOOLONG;
    }
    if ((it->envfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        return errno;
    }
    return afile_write_all(it->envfd, it->envtext, it->envlen) != 0 ? errno : 0;
}

/* tmp/<qid><ext> renamed to q/<qid><ext>. 0 or an errno value. */
static int spool_batch_rename(const struct spool_batch_item *it, const char *ext)
{
    char from[SPOOL_PATH], to[SPOOL_PATH];

    if (spool__path(from, sizeof(from), it->dir, "tmp", it->qid, ext) != 0 ||
        spool__path(to, sizeof(to), it->dir, "q", it->qid, ext) != 0) {
        return ENAMETOOLONG;
    }
    return rename(from, to) == 0 ? 0 : errno;
}

/* A close that fails (NFS reports write errors there) fails the message. */
static int spool_batch_close(int *fd, int err)
{
    if (*fd >= 0 && close(*fd) != 0 && !err) {
        err = errno;
    }
    *fd = -1; /* closed even when close(2) failed: never twice */
    return err;
}

size_t spool_commit_batch(struct spool_batch_item *it, size_t n)
{
    size_t nsync = 0;

    /* 1: every message's rest of content and its envelope written, write-back started */
    for (size_t i = 0; i < n; i++) {
        it[i].envfd = -1;
        it[i].renamed = 0;
        it[i].err = spool_tmp_append(it[i].dir, it[i].qid, &it[i].fd, it[i].tail, it[i].tail_len);
        if (!it[i].err) {
            it[i].err = spool_batch_env(&it[i]);
        }
        if (!it[i].err) {
            spool_writeback(it[i].fd);
            spool_writeback(it[i].envfd);
        }
    }
    /* 2: content and envelope on disk before any rename (mostly waits for step 1's I/O) */
    for (size_t i = 0; i < n; i++) {
        if (!it[i].err && (fsync(it[i].fd) != 0 || fsync(it[i].envfd) != 0)) {
            it[i].err = errno;
        }
        if (!it[i].err) {
            nsync += 2;
        }
        it[i].err = spool_batch_close(&it[i].fd, it[i].err);
        it[i].err = spool_batch_close(&it[i].envfd, it[i].err);
    }
    /* 3: into q/, the .env last: its rename is the commit */
    for (size_t i = 0; i < n; i++) {
        if (!it[i].err && !(it[i].err = spool_batch_rename(&it[i], ".msg"))) {
            it[i].renamed = 1;
            if (!(it[i].err = spool_batch_rename(&it[i], ".env"))) {
                it[i].renamed = 2;
            }
        }
    }
    /* 4: one fsync of q/ per spool directory makes all the renames durable */
    for (size_t i = 0; i < n; i++) {
        char qdir[SPOOL_PATH];
        int seen = 0, e;

        if (it[i].renamed != 2 || it[i].err) {
            continue;
        }
        for (size_t k = 0; k < i && !seen; k++) {
            seen = it[k].renamed == 2 && strcmp(it[k].dir, it[i].dir) == 0;
        }
        if (seen) {
            continue;
        }
        e = spool_area_path(qdir, sizeof(qdir), it[i].dir, SPOOL_AREA_Q) != 0
                ? ENAMETOOLONG
                : afile_fsync_dir(qdir);
        nsync++;
        for (size_t k = i; e && k < n; k++) {
            if (it[k].renamed == 2 && !it[k].err && strcmp(it[k].dir, it[i].dir) == 0) {
                it[k].err = e;
            }
        }
    }
    /* a failure reported means nothing stays behind */
    for (size_t i = 0; i < n; i++) {
        if (it[i].err) {
            spool_tmp_drop(it[i].dir, it[i].qid, -1, it[i].renamed);
        }
    }
    return nsync;
}
