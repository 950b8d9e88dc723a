/* cli: the relay25 command's front ends (serve, check, sendmail, health); each
 * returns the process exit status (sysexits.h codes for usage and configuration
 * errors). */
#ifndef RELAY25_CLI_H
#define RELAY25_CLI_H

#include <stddef.h>
#include <stdint.h>

#define RELAY25_DEFAULT_CONFIG "/etc/relay25/relay25.conf"

struct conf;

int cli_serve(int argc, char **argv);
int cli_check(int argc, char **argv);
/* sendmail(8) interface: argv[0] is the program name, options follow. mailq:
 * called as mailq (queue listing). */
int cli_sendmail(int argc, char **argv, int mailq);
/* `relay25 health [-c FILE] [--timeout SECONDS] [HOST:PORT]`: greeting, EHLO, QUIT
 * against a running relay25; 0 when healthy, 1 otherwise (the Docker HEALTHCHECK). */
int cli_health(int argc, char **argv);

/* Which configuration to use: -c FILE, else $RELAY25_CONFIG, else the
 * RELAY25_* environment when RELAY25_UPSTREAM is set, else
 * /etc/relay25/relay25.conf. Prints "relay25: <error>" and returns NULL on failure. */
struct conf *cli_load_conf(const char *path, int load_ca);

/* "host:port", "[v6]:port", "host" (port defport) -> host (brackets removed) and
 * port. 0, or -1 when it does not parse or host does not fit. */
int cli__hostport(const char *s, uint16_t defport, char *host, size_t hostcap, uint16_t *port);

#endif
