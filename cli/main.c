/* main: dispatches `relay25 serve|check|sendmail|health|queue|passwd|oauth` (and the sendmail
 * and mailq names, when called through a symlink) and prints usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: " CLI_USAGE_SERVE "\n"
               "       " CLI_USAGE_CHECK "\n"
               "       relay25 sendmail [-t] [-i] [-f SENDER] [-F NAME] [-v] [-C FILE] [RCPT...]\n"
               "       relay25 sendmail -bs | -q | -bp [-C FILE]\n"
               "       relay25 mailq [-C FILE]\n"
               "       " CLI_USAGE_HEALTH "\n"
               "       relay25 queue [-c FILE] [--json] [--held] list [--failed] | show ID | flush "
               "[ID] |\n"
               "                     delete ID | delete [--failed] --all | retry-failed\n"
               "       " CLI_USAGE_PASSWD "\n"
               "       " CLI_USAGE_OAUTH "\n"
               "       relay25 --version\n"
               "relay25 COMMAND --help shows one command's options; relay25(8) has them "
               "all.\n" CLI_USAGE_CONFIG);
}

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_missing(const char *cmd, const char *opt, const char *what)
{
    fprintf(stderr, "relay25 %s: %s needs %s\n", cmd, opt, what);
    return EX_USAGE;
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

/* `relay25 CMD ...` with argv[0] == CMD; -1 when CMD is not one. */
static int dispatch(int argc, char **argv)
{
    if (strcmp(argv[0], "serve") == 0) {
        return cli_serve(argc, argv);
    }
    if (strcmp(argv[0], "check") == 0) {
        return cli_check(argc, argv);
    }
    if (strcmp(argv[0], "sendmail") == 0) {
        return cli_sendmail(argc, argv, 0);
    }
    if (strcmp(argv[0], "mailq") == 0) {
        return cli_sendmail(argc, argv, 1);
    }
    if (strcmp(argv[0], "health") == 0) {
        return cli_health(argc, argv);
    }
    if (strcmp(argv[0], "queue") == 0) {
        return cli_queue(argc, argv);
    }
    if (strcmp(argv[0], "passwd") == 0) {
        return cli_passwd(argc, argv);
    }
    if (strcmp(argv[0], "oauth") == 0) {
        return cli_oauth(argc, argv);
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *name = slash ? slash + 1 : argc > 0 ? argv[0] : "relay25";
    int rc;

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
    if ((rc = dispatch(argc - 1, argv + 1)) >= 0) {
        return rc;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("relay25 %s\n", RELAY25_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 && argc == 3) {
        /* `relay25 help CMD` is `relay25 CMD --help` */
        char help[] = "--help";
        char *sub[] = {argv[2], help, NULL};
        if ((rc = dispatch(2, sub)) >= 0) {
            return rc;
        }
        fprintf(stderr, "relay25: unknown command '%s'\n", argv[2]);
        usage(stderr);
        return EX_USAGE;
    }
    if (cli_is_help(argv[1]) || (strcmp(argv[1], "help") == 0 && argc == 2)) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "relay25: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
