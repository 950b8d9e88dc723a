/* passwd: `relay25 passwd LOGIN` prints a users_file line "LOGIN:HASH" for
 * inbound AUTH. The password comes from stdin (first line) or, on a terminal,
 * is asked twice without echo. The hash is yescrypt ("$y$", libcrypt). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "auth/auth_passwd.h"
#include "cli/cli.h"

/* One line from stdin into buf without the newline; echo off on a tty. 0 or -1. */
static int passwd_read(const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO);
    size_t n;
    char *r;

    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = 0;
        }
    }
    r = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!r) {
        return -1;
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
    } else if (n + 1 == cap) {
        return -1; /* longer than AUTH_PASSWD_MAX */
    }
    if (n > 0 && buf[n - 1] == '\r') {
        buf[--n] = '\0';
    }
    return 0;
}

int cli_passwd(int argc, char **argv)
{
    char pw[AUTH_PASSWD_MAX + 2], again[AUTH_PASSWD_MAX + 2];
    const char *login;
    char *hash;
    int rc = 0;

    if (argc == 2 && cli_is_help(argv[1])) {
        printf("usage: " CLI_USAGE_PASSWD "\n"
               "Prints the users_file line LOGIN:HASH (yescrypt) for inbound AUTH. The\n"
               "password is the first line of stdin, or asked twice on a terminal.\n"
               "Exit: 0, 64 usage, 65 no password or they differ, 70 crypt failed.\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "relay25 passwd: LOGIN is missing\n");
    } else if (argc > 2) {
        fprintf(stderr, "relay25 passwd: one LOGIN only, not '%s'\n", argv[2]);
    } else if (argv[1][0] == '-' || argv[1][0] == '\0') {
        fprintf(stderr, "relay25 passwd: unknown argument '%s'\n", argv[1]);
    }
    if (argc != 2 || argv[1][0] == '-' || argv[1][0] == '\0') {
        fprintf(stderr, "usage: " CLI_USAGE_PASSWD "  (password on stdin or asked on a tty)\n");
        return EX_USAGE;
    }
    login = argv[1];
    if (strlen(login) > AUTH_PASSWD_MAX || strpbrk(login, ": \t\r\n")) {
        fprintf(stderr, "relay25: passwd: bad login '%s' (no ':' or blanks)\n", login);
        return EX_USAGE;
    }
    if (passwd_read("Password: ", pw, sizeof(pw)) != 0 || pw[0] == '\0') {
        fprintf(stderr, "relay25: passwd: no password (or longer than %u bytes)\n",
                (unsigned)AUTH_PASSWD_MAX);
        rc = EX_DATAERR;
        goto out;
    }
    if (isatty(STDIN_FILENO)) {
        if (passwd_read("Again: ", again, sizeof(again)) != 0 || strcmp(pw, again) != 0) {
            fprintf(stderr, "relay25: passwd: the passwords differ\n");
            rc = EX_DATAERR;
            goto out;
        }
    }
    if (!(hash = auth_passwd_hash(pw))) {
        fprintf(stderr, "relay25: passwd: crypt failed (is yescrypt supported by libcrypt?)\n");
        rc = EX_SOFTWARE;
        goto out;
    }
    printf("%s:%s\n", login, hash);
    free(hash);
out:
    explicit_bzero(pw, sizeof(pw));
    explicit_bzero(again, sizeof(again));
    return rc;
}
