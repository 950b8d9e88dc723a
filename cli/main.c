/* main: dispatches `relay25 serve|check|sendmail|health|queue|passwd` (and the sendmail and
 * mailq names, when called through a symlink) and prints usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: relay25 serve [-c FILE]\n"
               "       relay25 check [-c FILE] [--upstream] [--rcpt ADDRESS]\n"
               "       relay25 sendmail [-t] [-i] [-f SENDER] [-F NAME] [-v] [-C FILE] [RCPT...]\n"
               "       relay25 health [-c FILE] [--timeout SECONDS] [HOST:PORT]\n"
               "       relay25 queue [-c FILE] [--json] list [--failed] | show ID | flush [ID] |\n"
               "                     delete ID | delete [--failed] --all | retry-failed\n"
               "       relay25 passwd LOGIN\n"
               "       relay25 oauth login DEVICE [-c FILE]\n"
               "       relay25 --version\n"
               "Without -c: $RELAY25_CONFIG, else the RELAY25_* environment when RELAY25_UPSTREAM\n"
               "is set, else " RELAY25_DEFAULT_CONFIG ".\n");
}

struct conf *cli_load_conf(const char *path, int load_ca)
{
    char err[4096]; /* every config error, one per line */
    struct conf *c;

    if (!path) {
        const char *e = getenv("RELAY25_CONFIG");
        if (e && *e) {
            path = e;
        } else if (!getenv("RELAY25_UPSTREAM")) {
            path = RELAY25_DEFAULT_CONFIG;
            if (access(path, F_OK) != 0) {
                fprintf(stderr, "relay25: no configuration: give -c FILE, set RELAY25_CONFIG, or "
                                "set RELAY25_UPSTREAM (and RELAY25_USER, RELAY25_PASSWORD) "
                                "(" RELAY25_DEFAULT_CONFIG " does not exist)\n");
                return NULL;
            }
        }
    }
    c = conf_load(path, load_ca | CONF_LOAD_STRICT, err, sizeof(err));
    if (!c) {
        /* "relay25: " before each error line */
        for (char *line = err, *nl; line; line = nl) {
            nl = strchr(line, '\n');
            if (nl) {
                *nl++ = '\0';
            }
            fprintf(stderr, "relay25: %s\n", line);
        }
    }
    return c;
}

int main(int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *name = slash ? slash + 1 : argc > 0 ? argv[0] : "relay25";

    /* /usr/sbin/sendmail and /usr/bin/mailq may be symlinks to relay25 */
    if (strcmp(name, "sendmail") == 0) {
        return cli_sendmail(argc, argv, 0);
    }
    if (strcmp(name, "mailq") == 0) {
        return cli_sendmail(argc, argv, 1);
    }
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "serve") == 0) {
        return cli_serve(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "check") == 0) {
        return cli_check(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "sendmail") == 0) {
        return cli_sendmail(argc - 1, argv + 1, 0);
    }
    if (strcmp(argv[1], "mailq") == 0) {
        return cli_sendmail(argc - 1, argv + 1, 1);
    }
    if (strcmp(argv[1], "health") == 0) {
        return cli_health(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "queue") == 0) {
        return cli_queue(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "passwd") == 0) {
        return cli_passwd(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "oauth") == 0) {
        return cli_oauth(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("relay25 %s\n", RELAY25_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "relay25: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
