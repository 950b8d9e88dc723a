/* `relay25 oauth login DEVICE [-c FILE]`: the OAuth 2.0 device authorization grant
 * (RFC 8628) in a terminal. POST client_id (+ client_secret) and scope to the
 * device's oauth_device_url, show verification_uri and user_code, poll
 * oauth_token_url with grant_type=urn:ietf:params:oauth:grant-type:device_code
 * every `interval` seconds (authorization_pending: wait; slow_down: 5 s more;
 * expired_token, access_denied: give up), then write the refresh token to
 * oauth_refresh_token_file (common/afile: 0600, fsync, rename). The HTTPS requests run on a uv
 * loop with up_oauth's (verified against the upstream's ca_file). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cJSON.h>
#include <uv.h>

#include "cli/cli.h"
#include "common/afile.h"
#include "conf/conf.h"
#include "upstream/up_http.h"
#include "upstream/up_oauth.h"

#define OAUTH_GRANT_DEVICE "urn:ietf:params:oauth:grant-type:device_code"
#define OAUTH_SLOW_DOWN_S 5u /* RFC 8628 §3.5 */
#define OAUTH_DEFAULT_INTERVAL 5u
#define OAUTH_MAX_WAIT_S 1800u /* when the answer has no expires_in */

struct login {
    uv_loop_t *loop;
    const struct conf_device *dev;
    struct up_oauth *device_ep, *token_ep;
    uv_timer_t timer;
    char *device_code;
    unsigned interval; /* seconds between polls */
    uint64_t deadline; /* uv_now() ms */
    int rc;            /* exit status; -1 while running */
};

static void login_done(struct login *l, int rc)
{
    l->rc = rc;
    uv_timer_stop(&l->timer);
}

static const char *json_str(const cJSON *j, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static double json_num(const cJSON *j, const char *name, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

    if (cJSON_IsNumber(v)) {
        return v->valuedouble;
    }
    if (cJSON_IsString(v)) {
        return strtod(v->valuestring, NULL);
    }
    return def;
}

/* The refresh token to its file, atomically (common/afile: a temporary file next
 * to it, 0600, fsync, rename, directory fsync), as the daemon rewrites it. */
static int login_write_token(const char *path, const char *token)
{
    struct iovec v[2] = {{.iov_base = (void *)token, .iov_len = strlen(token)},
                         {.iov_base = "\n", .iov_len = 1}};
    const char *step;
    int e = afile_writev(path, v, 2, 0600, NULL, &step);

    if (e != 0) {
        fprintf(stderr, "relay25 oauth login: %s: cannot %s: %s\n", path, step, strerror(e));
        return -1;
    }
    return 0;
}

static void login_poll(uv_timer_t *t);

static void login_schedule(struct login *l)
{
    if (uv_now(l->loop) + (uint64_t)l->interval * 1000u > l->deadline) {
        fprintf(stderr, "relay25 oauth login: the code expired before it was used\n");
        login_done(l, 1);
        return;
    }
    uv_timer_start(&l->timer, login_poll, (uint64_t)l->interval * 1000u, 0);
}

static void login_token_cb(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct login *l = arg;
    cJSON *j;
    const char *e, *rt;

    if (status == 0) {
        fprintf(stderr, "relay25 oauth login: %s\n", err);
        login_done(l, 1);
        return;
    }
    j = cJSON_ParseWithLength(body, len);
    e = json_str(j, "error");
    rt = json_str(j, "refresh_token");
    if (status == 200 && !e) {
        if (!rt) {
            fprintf(stderr, "relay25 oauth login: the token endpoint gave no refresh_token "
                            "(offline_access missing from oauth_scope?)\n");
            login_done(l, 1);
        } else if (login_write_token(l->dev->oauth.refresh_token_file, rt) != 0) {
            login_done(l, 1);
        } else {
            printf("Signed in: the refresh token of device %s is in %s.\n", l->dev->name,
                   l->dev->oauth.refresh_token_file);
            login_done(l, 0);
        }
    } else if (e && strcmp(e, "authorization_pending") == 0) {
        login_schedule(l);
    } else if (e && strcmp(e, "slow_down") == 0) {
        l->interval += OAUTH_SLOW_DOWN_S;
        login_schedule(l);
    } else if (e && strcmp(e, "expired_token") == 0) {
        fprintf(stderr, "relay25 oauth login: the code expired; run the command again\n");
        login_done(l, 1);
    } else if (e && strcmp(e, "access_denied") == 0) {
        fprintf(stderr, "relay25 oauth login: access denied by the user\n");
        login_done(l, 1);
    } else {
        const char *d = json_str(j, "error_description");
        fprintf(stderr, "relay25 oauth login: token endpoint answered HTTP %d%s%s%s%s%s\n", status,
                e ? " " : "", e ? e : "", d ? " (" : "", d ? d : "", d ? ")" : "");
        login_done(l, 1);
    }
    if (rt) {
        explicit_bzero((char *)rt, strlen(rt));
    }
    cJSON_Delete(j);
}

/* Form body: name/value pairs, NULL values left out. */
static char *login_form(const char *const *kv, size_t n)
{
    size_t cap = 64, len = 0;
    char *out;

    for (size_t i = 0; i < n; i += 2) {
        cap += strlen(kv[i]) + 2 + (kv[i + 1] ? 3 * strlen(kv[i + 1]) : 0);
    }
    out = malloc(cap);
    if (!out) {
        return NULL;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n; i += 2) {
        if (kv[i + 1] && up_http_form_add(out, cap, &len, kv[i], kv[i + 1]) != 0) {
            free(out);
            return NULL;
        }
    }
    return out;
}

static void login_poll(uv_timer_t *t)
{
    struct login *l = t->data;
    const struct conf_oauth *o = &l->dev->oauth;
    const char *kv[] = {"grant_type", OAUTH_GRANT_DEVICE, "device_code",   l->device_code,
                        "client_id",  o->client_id,       "client_secret", o->client_secret};
    char *form = login_form(kv, sizeof(kv) / sizeof(kv[0]));

    if (!form || up_oauth_post(l->token_ep, form, login_token_cb, l) != 0) {
        fprintf(stderr, "relay25 oauth login: out of memory\n");
        login_done(l, 1);
    }
    if (form) {
        explicit_bzero(form, strlen(form));
        free(form);
    }
}

static void login_device_cb(void *arg, int status, const char *body, size_t len, const char *err)
{
    struct login *l = arg;
    cJSON *j;
    const char *dc, *uri, *code, *complete, *msg;
    double expires, interval;

    if (status == 0) {
        fprintf(stderr, "relay25 oauth login: %s\n", err);
        login_done(l, 1);
        return;
    }
    j = cJSON_ParseWithLength(body, len);
    dc = json_str(j, "device_code");
    code = json_str(j, "user_code");
    uri = json_str(j, "verification_uri");
    if (!uri) {
        uri = json_str(j, "verification_url"); /* Google's older name */
    }
    if (status != 200 || !dc || !code || !uri) {
        const char *e = json_str(j, "error"), *d = json_str(j, "error_description");
        fprintf(stderr,
                "relay25 oauth login: device authorization endpoint answered HTTP %d%s%s%s%s%s\n",
                status, e ? " " : "", e ? e : (status == 200 ? " without device_code" : ""),
                d ? " (" : "", d ? d : "", d ? ")" : "");
        cJSON_Delete(j);
        login_done(l, 1);
        return;
    }
    complete = json_str(j, "verification_uri_complete");
    msg = json_str(j, "message");
    expires = json_num(j, "expires_in", OAUTH_MAX_WAIT_S);
    interval = json_num(j, "interval", OAUTH_DEFAULT_INTERVAL);
    l->interval = interval >= 1 && interval <= 300 ? (unsigned)interval : OAUTH_DEFAULT_INTERVAL;
    if (!(expires >= 1) || expires > OAUTH_MAX_WAIT_S) {
        expires = OAUTH_MAX_WAIT_S;
    }
    l->deadline = uv_now(l->loop) + (uint64_t)expires * 1000u;
    l->device_code = strdup(dc);
    if (msg) {
        printf("%s\n", msg);
    }
    printf("To sign in device %s, open %s and enter the code %s\n", l->dev->name, uri, code);
    if (complete) {
        printf("(or open %s)\n", complete);
    }
    printf("Waiting for the sign-in (the code is valid for %u s)...\n", (unsigned)expires);
    fflush(stdout);
    cJSON_Delete(j);
    if (!l->device_code) {
        fprintf(stderr, "relay25 oauth login: out of memory\n");
        login_done(l, 1);
        return;
    }
    login_schedule(l);
}

static int login_run(const struct conf_device *d)
{
    struct conf_device dd = *d;
    const struct conf_oauth *o = &d->oauth;
    const char *kv[] = {"client_id",      o->client_id, "client_secret",
                        o->client_secret, "scope",      o->scope};
    struct login l;
    uv_loop_t loop;
    char *form;

    memset(&l, 0, sizeof(l));
    l.rc = -1;
    l.dev = d;
    l.loop = &loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "relay25 oauth login: cannot start the event loop\n");
        return EX_OSERR;
    }
    uv_timer_init(&loop, &l.timer);
    l.timer.data = &l;
    /* the device authorization endpoint as a provider's "token URL" */
    dd.oauth.token_url = o->device_url;
    dd.oauth.host = o->device_host;
    dd.oauth.port = o->device_port;
    dd.oauth.path = o->device_path;
    l.device_ep = up_oauth_new(&loop, &dd);
    l.token_ep = up_oauth_new(&loop, d);
    form = login_form(kv, sizeof(kv) / sizeof(kv[0]));
    if (!l.device_ep || !l.token_ep || !form ||
        up_oauth_post(l.device_ep, form, login_device_cb, &l) != 0) {
        fprintf(stderr, "relay25 oauth login: out of memory\n");
        l.rc = EX_OSERR;
    }
    if (form) {
        explicit_bzero(form, strlen(form));
        free(form);
    }
    while (l.rc < 0 && uv_run(&loop, UV_RUN_ONCE)) {
    }
    if (l.rc < 0) {
        l.rc = 1;
    }
    up_oauth_free(l.device_ep);
    up_oauth_free(l.token_ep);
    uv_close((uv_handle_t *)&l.timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    if (l.device_code) {
        explicit_bzero(l.device_code, strlen(l.device_code));
        free(l.device_code);
    }
    return l.rc;
}

static int oauth_usage_error(int rc)
{
    fprintf(stderr, "usage: " CLI_USAGE_OAUTH "\n");
    return rc;
}

int cli_oauth(int argc, char **argv)
{
    const char *path = NULL, *name = NULL;
    const struct conf_device *d = NULL;
    struct conf *c;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf(
                "usage: " CLI_USAGE_OAUTH "\n"
                "Signs DEVICE in with the OAuth 2.0 device authorization grant (RFC 8628):\n"
                "shows a URL and a code, waits for the sign-in, then writes the refresh\n"
                "token to the device's oauth_refresh_token_file.\n"
                "Exit: 0 signed in, 1 refused, expired or failed, 64 usage,\n"
                "78 configuration error (no such device, not an OAuth device).\n" CLI_USAGE_CONFIG);
            return 0;
        }
    }
    if (argc < 2) {
        fprintf(stderr, "relay25 oauth: the command is missing (login)\n");
        return oauth_usage_error(EX_USAGE);
    }
    if (strcmp(argv[1], "login") != 0) {
        fprintf(stderr, "relay25 oauth: unknown command '%s'\n", argv[1]);
        return oauth_usage_error(EX_USAGE);
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 >= argc) {
                return oauth_usage_error(cli_missing("oauth login", "-c", "a file"));
            }
            path = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            fprintf(stderr, "relay25 oauth login: unknown argument '%s'\n", argv[i]);
            return oauth_usage_error(EX_USAGE);
        }
    }
    if (!name) {
        fprintf(stderr, "relay25 oauth login: DEVICE is missing (a [device NAME] of the "
                        "configuration)\n");
        return oauth_usage_error(EX_USAGE);
    }
    c = cli_load_conf(path, CONF_LOAD_LOGIN);
    if (!c) {
        return EX_CONFIG;
    }
    for (size_t i = 0; i < c->ndevices; i++) {
        if (strcmp(c->devices[i].name, name) == 0) {
            d = &c->devices[i];
        }
    }
    if (!d) {
        fprintf(stderr, "relay25 oauth login: no [device %s]\n", name);
        conf_free(c);
        return EX_CONFIG;
    }
    if (d->auth == CONF_AUTH_PASSWORD || d->oauth.grant != CONF_OAUTH_REFRESH_TOKEN ||
        !d->oauth.device_url) {
        fprintf(stderr,
                "relay25 oauth login: [device %s] needs auth = xoauth2 (or oauthbearer), "
                "oauth_token_url, oauth_client_id, oauth_refresh_token_file and "
                "oauth_device_url\n",
                name);
        conf_free(c);
        return EX_CONFIG;
    }
    rc = login_run(d);
    conf_free(c);
    return rc;
}
