/* cli: the relay25 command's front ends (serve, check, sendmail, health, queue); each
 * returns the process exit status (sysexits.h codes for usage and configuration
 * errors). */
#ifndef RELAY25_CLI_H
#define RELAY25_CLI_H

#include <stddef.h>
#include <stdint.h>

#define RELAY25_DEFAULT_CONFIG "/etc/relay25/relay25.conf"
/* conf.c's spool_dir default, for `mailq` on a host with no configuration at all */
#define RELAY25_DEFAULT_SPOOL_DIR "/var/spool/relay25"

struct conf;

/* Each subcommand's synopsis: its --help and the overview of `relay25 --help`. */
#define CLI_USAGE_SERVE "relay25 serve [-c FILE]"
#define CLI_USAGE_CHECK "relay25 check [-c FILE] [--upstream] [--rcpt ADDRESS]"
#define CLI_USAGE_HEALTH "relay25 health [-c FILE] [--timeout SECONDS] [--proxy] [HOST:PORT]"
#define CLI_USAGE_PASSWD "relay25 passwd LOGIN"
#define CLI_USAGE_OAUTH "relay25 oauth login DEVICE [-c FILE]"
#define CLI_USAGE_CONFIG                                                                           \
    "Without -c: $RELAY25_CONFIG, else the RELAY25_* environment when RELAY25_UPSTREAM\n"          \
    "is set, else " RELAY25_DEFAULT_CONFIG ".\n"

/* "-h" or "--help": the subcommand prints its usage on stdout and exits 0. */
int cli_is_help(const char *arg);
/* An option that needs a value was last on the command line (or its value is
 * missing): "relay25 CMD: OPT needs WHAT" on stderr; returns EX_USAGE. */
int cli_missing(const char *cmd, const char *opt, const char *what);

int cli_serve(int argc, char **argv);
int cli_check(int argc, char **argv);
/* sendmail(8) interface: argv[0] is the program name, options follow. mailq:
 * called as mailq (queue listing). */
int cli_sendmail(int argc, char **argv, int mailq);
/* `relay25 health [-c FILE] [--timeout SECONDS] [HOST:PORT]`: greeting, EHLO, QUIT
 * against a running relay25; 0 when healthy, 1 otherwise (the Docker HEALTHCHECK). */
int cli_health(int argc, char **argv);
/* `relay25 queue [-c FILE] [--json] list [--failed] | show ID | flush [ID] | delete ID |
 * delete [--failed] --all | retry-failed`: the spool's messages (spool/spool.h);
 * 0, 1 when a message does not exist, else a sysexits.h code. */
int cli_queue(int argc, char **argv);
/* The listing of `queue list`, `sendmail -bp` and `mailq`: the messages in
 * <spool_dir>/q (failed: <spool_dir>/failed), as text lines or a JSON array. */
int cli_queue_list(const char *spool_dir, int failed, int json);
/* mailq with no configuration at all: the default spool's listing, and on
 * stderr that no configuration was found (and whether that spool exists). */
int cli_queue_list_unconfigured(const char *spool_dir);
/* Quietly asks a running daemon (<spool_dir>/relay25.pid) to rescan and retry its
 * queue now (SIGUSR1, as `queue flush`). 1 when signalled, else 0 (none runs, or
 * it is not ours to signal). */
int cli_queue_kick(const char *spool_dir);

/* `relay25 queue --held flush [ID]`: sends the caller's messages that sendmail
 * kept (cli/sm_held) through the daemon (or upstream) of c; all, or qid. 0 when
 * none is left waiting, 1 when qid is not held, else a sysexits code. */
int cli_sendmail_flush_held(const struct conf *c, uint64_t qid);

/* `relay25 passwd LOGIN`: prints "LOGIN:HASH" for users_file (inbound AUTH). */
int cli_passwd(int argc, char **argv);
/* `relay25 oauth login DEVICE [-c FILE]`: RFC 8628 device authorization grant;
 * writes the device's refresh token to oauth_refresh_token_file. */
int cli_oauth(int argc, char **argv);

/* Which configuration to use: -c FILE, else $RELAY25_CONFIG, else the
 * RELAY25_* environment when RELAY25_UPSTREAM is set, else
 * /etc/relay25/relay25.conf. Prints "relay25: <error>" and returns NULL on failure. */
struct conf *cli_load_conf(const char *path, int load_ca);

/* "host:port", "[v6]:port", "host" (port defport) -> host (brackets removed) and
 * port. 0, or -1 when it does not parse or host does not fit. */
int cli__hostport(const char *s, uint16_t defport, char *host, size_t hostcap, uint16_t *port);

#endif
