/* sm_held: the caller's held messages (see the header). The files are a spool's
 * (spool/ writes, reads and removes them); what is ours is where the directory
 * is and how a held message is turned back into a submission. */
#include "cli/sm_held.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/sm_msg.h"
#include "spool/spool.h"

int sm_held_dir(char *out, size_t cap)
{
    const char *d = getenv("RELAY25_HELD_DIR");
    const char *home;
    int n;

    if (d && *d) {
        n = snprintf(out, cap, "%s", d);
    } else if ((d = getenv("XDG_STATE_HOME")) && *d == '/') {
        n = snprintf(out, cap, "%s/relay25/held", d);
    } else {
        struct passwd *pw;
        home = getenv("HOME");
        if ((!home || *home != '/') && (pw = getpwuid(getuid()))) {
            home = pw->pw_dir;
        }
        if (!home || *home != '/') {
            return -1;
        }
        n = snprintf(out, cap, "%s/.local/state/relay25/held", home);
    }
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* mkdir -p, new directories 0700 (the messages are the caller's private mail). */
static int smh_mkdirs(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        return ENAMETOOLONG;
    }
    memcpy(path, dir, len + 1);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                return errno;
            }
            if (c == '\0') {
                return 0;
            }
            *p = c;
        }
    }
}

int sm_held_keep(const char *dir, const struct sm_msg *m, const char *sender, const char *added,
                 size_t addedlen, uint64_t *qid, char *err, size_t cap)
{
    struct spool_env env;
    struct iovec iov[3];
    struct stat owner;
    struct passwd *pw = getpwuid(getuid());
    char e2[1024];
    uint64_t written = 0;
    int e;

    if ((e = smh_mkdirs(dir)) != 0) {
        snprintf(err, cap, "cannot create %s: %s", dir, strerror(e));
        return EX_CANTCREAT;
    }
    if (spool_prepare(dir, e2, sizeof(e2)) != 0) {
        snprintf(err, cap, "%s", e2);
        return EX_CANTCREAT;
    }
    if (stat(dir, &owner) != 0) {
        snprintf(err, cap, "%.900s: %s", dir, strerror(errno));
        return EX_CANTCREAT;
    }
    memset(&env, 0, sizeof(env));
    env.created = (uint64_t)time(NULL);
    snprintf(env.device, sizeof(env.device), "sendmail");
    snprintf(env.user, sizeof(env.user), "%s", pw ? pw->pw_name : "?");
    snprintf(env.client, sizeof(env.client), "local");
    snprintf(env.body, sizeof(env.body), "%s", m->eightbit ? "8BITMIME" : "");
    snprintf(env.from, sizeof(env.from), "%s", sender);
    if (spool_env_set_rcpt(&env, m->rcpt, m->nrcpt) != 0) {
        snprintf(err, cap, "out of memory");
        return EX_OSERR;
    }
    iov[0] = (struct iovec){.iov_base = m->hdr, .iov_len = m->hdrlen};
    iov[1] = (struct iovec){.iov_base = (void *)added, .iov_len = addedlen};
    iov[2] = (struct iovec){.iov_base = "\r\n", .iov_len = 2};
    *qid = spool_new_id();
    e = spool_commit_fd(dir, *qid, iov, 3, m->fd, &env, &owner, &written, e2, sizeof(e2));
    spool_env_free(&env);
    if (e != 0) {
        snprintf(err, cap, "%s", e2);
        return EX_IOERR;
    }
    return 0;
}

size_t sm_held_count(const char *dir)
{
    uint64_t *ids = NULL;
    size_t n = 0;

    if (spool_scan(dir, SPOOL_AREA_Q, &ids, NULL, &n) != 0) {
        return 0;
    }
    free(ids);
    return n;
}

/* One held message back into an sm_msg (raw content) and through send. */
static int smh_send_one(const char *dir, uint64_t qid, sm_held_send_fn *send, void *arg, char *why,
                        size_t cap)
{
    struct spool_msg sm;
    struct sm_msg m;
    struct stat st;
    char path[4096], err[1024];
    int rc, e;

    memset(&sm, 0, sizeof(sm));
    if ((e = spool_load(dir, SPOOL_AREA_Q, qid, &sm, err, sizeof(err))) != 0) {
        spool_msg_free(&sm);
        snprintf(why, cap, "%s", err);
        return e == ENOENT ? 0 : EX_IOERR; /* gone meanwhile: nothing to send */
    }
    sm_msg_init(&m, NULL);
    rc = EX_IOERR;
    if (spool_msg_path(path, sizeof(path), dir, SPOOL_AREA_Q, qid) != 0 ||
        (m.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(m.fd, &st) != 0) {
        snprintf(why, cap, "cannot read %.900s: %s", path, strerror(errno));
        goto out;
    }
    m.bodylen = (uint64_t)st.st_size;
    m.eightbit = strcmp(sm.env.body, "8BITMIME") == 0;
    for (size_t i = 0; i < sm.env.nrcpt; i++) {
        if (sm.verdict && sm.verdict[i] == SPOOL_OK) {
            continue;
        }
        if ((rc = sm_msg_add_rcpt(&m, sm.env.rcpt[i], strlen(sm.env.rcpt[i]))) != 0) {
            snprintf(why, cap, "bad recipient <%s>", sm.env.rcpt[i]);
            goto out;
        }
    }
    rc = m.nrcpt ? send(arg, &m, sm.env.from, why, cap) : 0;
out:
    sm_msg_free(&m);
    spool_msg_free(&sm);
    return rc;
}

int sm_held_flush(const char *dir, uint64_t qid, sm_held_send_fn *send, void *arg, size_t *sent,
                  size_t *failed)
{
    uint64_t *ids = NULL;
    size_t n = 0, found = 0;
    int rc = 0;

    *sent = *failed = 0;
    if (spool_scan(dir, SPOOL_AREA_Q, &ids, NULL, &n) != 0) {
        return 0; /* no directory: nothing held */
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        char why[1200] = "", err[1200];
        int r;

        if (qid && ids[i] != qid) {
            continue;
        }
        found++;
        r = smh_send_one(dir, ids[i], send, arg, why, sizeof(why));
        if (r == 0) {
            (*sent)++;
            int e = spool_remove(dir, SPOOL_AREA_Q, ids[i], err, sizeof(err));
            if (e != 0 && e != ENOENT) {
                rc = EX_IOERR; /* sent, but still held: stop before anything else repeats */
            }
        } else if (r == EX_UNAVAILABLE || r == EX_NOUSER || r == EX_DATAERR) {
            if (!why[0]) {
                snprintf(why, sizeof(why), "refused for good (exit status %d)", r);
            }
            spool_fail(dir, ids[i], why, strlen(why), err, sizeof(err));
            (*failed)++;
        } else {
            rc = r; /* temporary: the rest waits for the next run */
        }
    }
    spool_sync(dir, SPOOL_AREA_Q);
    free(ids);
    return qid && !found ? 1 : rc;
}
