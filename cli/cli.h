/* cli: the relay25 command's front ends (serve, check); each returns the
 * process exit status (sysexits.h codes for usage and configuration errors). */
#ifndef RELAY25_CLI_H
#define RELAY25_CLI_H

struct conf;

int cli_serve(int argc, char **argv);
int cli_check(int argc, char **argv);

/* Which configuration to use: -c FILE, else $RELAY25_CONFIG, else the
 * RELAY25_* environment when RELAY25_UPSTREAM is set, else
 * /etc/relay25/relay25.conf. Prints "relay25: <error>" and returns NULL on failure. */
struct conf *cli_load_conf(const char *path, int load_ca);

#endif
