/* up_exec: run a helper program (argv, no shell) in its own process group and
 * collect what it prints on stdout, bounded; stdin is closed and stderr goes
 * where relay25 logs. For oauth_token_command. No timeout of its own: the caller
 * bounds it with its timer and up_exec_cancel(), which kills the whole group. */
#ifndef RELAY25_UP_EXEC_H
#define RELAY25_UP_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct up_exec;

/* Once, when the program has exited and its stdout is closed: status and signal
 * as uv_exit_cb gives them, and its output (writable, with room for a NUL after
 * len bytes, valid only during the call); or err ("printed more than 64 KiB", a
 * read error) when the output could not be read whole: the program is killed. */
typedef void up_exec_cb(void *arg, int64_t status, int signal, char *out, size_t len,
                        const char *err);

/* Returns 0 and *out: cb follows exactly once, from the loop, unless
 * up_exec_cancel() comes first; after cb, *out is gone. Or a libuv error (the
 * program cannot be started): nothing follows. out_max: 0 for 64 KiB. */
int up_exec_start(uv_loop_t *loop, char **argv, size_t out_max, up_exec_cb *cb, void *arg,
                  struct up_exec **out);
/* cb will not run; the process group is killed and x frees itself. Not from inside cb. */
void up_exec_cancel(struct up_exec *x);

#endif
