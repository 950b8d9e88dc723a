/* serve: runs the relay in the foreground on one libuv loop until SIGTERM or
 * SIGINT, then drains open sessions (bounded by shutdown_timeout) and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <uv.h>

#include "cli/cli.h"
#include "common/log.h"
#include "conf/conf.h"
#include "proxy/prx_listener.h"

struct serve {
    uv_loop_t *loop;
    struct prx_server *srv;
    uv_signal_t sigterm, sigint;
    int stopping;
};

static void serve_done(void *arg)
{
    struct serve *sv = arg;
    uv_close((uv_handle_t *)&sv->sigterm, NULL);
    uv_close((uv_handle_t *)&sv->sigint, NULL);
    log_info(0, "relay25", "event=stopped");
}

static void serve_on_signal(uv_signal_t *h, int signum)
{
    struct serve *sv = h->data;

    if (sv->stopping) {
        return;
    }
    sv->stopping = 1;
    log_info(0, "relay25", "event=stopping signal=%s", signum == SIGTERM ? "TERM" : "INT");
    prx_server_shutdown(sv->srv, serve_done, sv);
}

int cli_serve(int argc, char **argv)
{
    const char *path = NULL;
    struct serve sv;
    struct conf *c;
    char err[512];
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else {
            fprintf(stderr, "relay25: serve: unknown argument '%s'\n", argv[i]);
            return EX_USAGE;
        }
    }
    c = cli_load_conf(path, 1);
    if (!c) {
        return EX_CONFIG;
    }
    log_set_level(c->log_level);
    signal(SIGPIPE, SIG_IGN);
    memset(&sv, 0, sizeof(sv));
    sv.loop = uv_default_loop();
    sv.srv = prx_server_new(sv.loop, c, err, sizeof(err));
    if (!sv.srv) {
        fprintf(stderr, "relay25: %s\n", err);
        uv_run(sv.loop, UV_RUN_DEFAULT);
        uv_loop_close(sv.loop);
        conf_free(c);
        return EX_OSERR;
    }
    uv_signal_init(sv.loop, &sv.sigterm);
    uv_signal_init(sv.loop, &sv.sigint);
    sv.sigterm.data = sv.sigint.data = &sv;
    uv_signal_start(&sv.sigterm, serve_on_signal, SIGTERM);
    uv_signal_start(&sv.sigint, serve_on_signal, SIGINT);
    log_info(0, "relay25", "event=started version=%s config=%s upstreams=%zu devices=%zu",
             RELAY25_VERSION, c->path ? c->path : "environment", c->nupstreams, c->ndevices);
    uv_run(sv.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(sv.loop);
    if (rc != 0) {
        log_warn(0, "relay25", "event=loop_close error=\"%s\"", uv_strerror(rc));
    }
    conf_free(c);
    return 0;
}
