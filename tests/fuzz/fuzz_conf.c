/* fuzz_conf: conf_load (conf/conf.h) on a fuzzed INI file held in a memfd and
 * opened by its /proc/self/fd path (no disk I/O; load_ca = 0). It must not crash
 * or leak; a failure leaves one NUL-terminated line in err (of a size picked from
 * the input, exact so overruns hit ASan), or with CONF_LOAD_STRICT one line per
 * error; a success is a consistent snapshot. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/fuzz/fuzz.h"

static int conf_fd = -1;
static char conf_path[64];

/* memfd, or a file in /dev/shm when memfd_create is not available. */
static void open_file(void)
{
    int n;

    conf_fd = memfd_create("fuzz_conf", MFD_CLOEXEC);
    if (conf_fd >= 0) {
        n = snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
        FUZZ_CHECK(n > 0 && (size_t)n < sizeof(conf_path));
        return;
    }
    n = snprintf(conf_path, sizeof(conf_path), "/dev/shm/fuzz_conf.XXXXXX");
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(conf_path));
    conf_fd = mkstemp(conf_path);
    FUZZ_CHECK(conf_fd >= 0);
    /* The name stays valid for fopen while the fuzzer runs; removed at exit. */
}

static void remove_file(void)
{
    if (strncmp(conf_path, "/dev/shm/", 9) == 0)
        unlink(conf_path);
}

static void write_file(const uint8_t *data, size_t size)
{
    size_t off = 0;

    FUZZ_CHECK(ftruncate(conf_fd, 0) == 0);
    while (off < size) {
        ssize_t w = pwrite(conf_fd, data + off, size - off, (off_t)off);

        FUZZ_CHECK(w > 0);
        off += (size_t)w;
    }
}

static void check_conf(const struct conf *c)
{
    FUZZ_CHECK(c->path != NULL && strcmp(c->path, conf_path) == 0);
    FUZZ_CHECK(c->nlisten > 0 && c->nallow > 0 && c->hostname != NULL);
    for (size_t i = 0; i < c->nlisten; i++)
        FUZZ_CHECK(memchr(c->listen[i].text, '\0', sizeof(c->listen[i].text)) != NULL);
    FUZZ_CHECK(c->max_message_size > 0);
    FUZZ_CHECK(c->idle_timeout > 0 && c->connect_timeout > 0 && c->command_timeout > 0 &&
               c->data_timeout > 0 && c->shutdown_timeout > 0);
    FUZZ_CHECK(c->nupstreams > 0 && c->ndevices > 0);
    for (size_t i = 0; i < c->nupstreams; i++) {
        const struct conf_upstream *u = &c->upstreams[i];

        FUZZ_CHECK(u->name && u->host && u->ca_file && u->server_name && u->port > 0);
        FUZZ_CHECK(u->ca == NULL); /* load_ca = 0 */
        FUZZ_CHECK(!u->preset_filled || u->provider);
    }
    for (size_t i = 0; i < c->nwarnings; i++)
        FUZZ_CHECK(c->warnings[i].text != NULL && c->warnings[i].text[0] != '\0');
    for (size_t i = 0; i < c->ndevices; i++) {
        const struct conf_device *d = &c->devices[i];

        FUZZ_CHECK(d->name && d->user);
        if (d->auth != CONF_AUTH_PASSWORD) {
            const struct conf_oauth *o = &d->oauth;

            FUZZ_CHECK(d->password == NULL && d->password_source == NULL);
            if (o->grant == CONF_OAUTH_COMMAND) {
                FUZZ_CHECK(o->argv && o->argv[0] && o->argv[0][0] == '/' && o->command);
                FUZZ_CHECK(o->token_url == NULL && o->client_id == NULL);
            } else {
                FUZZ_CHECK(o->token_url && o->host && o->host[0] && o->port > 0);
                FUZZ_CHECK(o->path && o->path[0] == '/' && o->client_id && !o->argv);
                FUZZ_CHECK(o->grant == CONF_OAUTH_CLIENT_CREDENTIALS
                               ? o->client_secret && !o->refresh_token_file
                               : o->refresh_token && o->refresh_token_file);
            }
        } else {
            FUZZ_CHECK(d->password && d->password_source);
        }
        FUZZ_CHECK(d->up >= c->upstreams && d->up < c->upstreams + c->nupstreams);
        FUZZ_CHECK(d->is_default ? d->nmatch == 0 : d->nmatch > 0);
        for (size_t j = 0; j < d->nmatch; j++) {
            char buf[64];

            FUZZ_CHECK(cidr_format(&d->match[j], buf, sizeof(buf))[0] != '\0');
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Mostly a normal buffer; sometimes one so small that messages are cut. */
    size_t errlen = size % 8 == 7 ? (size / 8) % 48 : 512;
    char *err = malloc(errlen ? errlen : 1);
    struct conf *c;

    FUZZ_CHECK(err != NULL);
    if (conf_fd < 0) {
        open_file();
        atexit(remove_file);
    }
    write_file(data, size);
    memset(err, 'X', errlen ? errlen : 1);
    /* every third input the CLI's way: all errors, hints, duplicate match */
    c = conf_load(conf_path, size % 3 == 1 ? CONF_LOAD_STRICT : 0, err, errlen);
    if (c) {
        check_conf(c);
        conf_free(c);
    } else if (errlen > 0 && size % 3 == 1) {
        char *nul = memchr(err, '\0', errlen);

        /* One line per error: none empty. */
        FUZZ_CHECK(nul != NULL);
        FUZZ_CHECK(errlen == 1 || (nul > err && err[0] != '\n' && nul[-1] != '\n' &&
                                   !memmem(err, (size_t)(nul - err), "\n\n", 2)));
    } else if (errlen > 0) {
        char *nul = memchr(err, '\0', errlen);

        /* One NUL-terminated line, not empty unless there was no room for text. */
        FUZZ_CHECK(nul != NULL);
        FUZZ_CHECK(memchr(err, '\n', (size_t)(nul - err)) == NULL);
        if (errlen > 1)
            FUZZ_CHECK(nul > err);
    }
    free(err);
    return 0;
}
