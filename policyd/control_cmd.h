/*
 * control_cmd.h - the commands of the control socket: what "callahead"
 * asks the running daemon.
 *
 * A request is one line of words separated by single spaces (no word holds
 * a space or a control character): "verify ADDR [sender=S] [client=IP]
 * [refresh]", "stats", "show ADDR|DOMAIN|IP", "flush address ADDR", "flush
 * domain DOMAIN", "flush invalid", "flush all". The reply is "name=value" lines
 * ended by an empty line; the first is "status=ok" or "status=error",
 * followed by "error=<reason>" on error. Values are printable ASCII, so a
 * reply can never be split by what a next hop or Redis said.
 */
#ifndef CALLAHEAD_CONTROL_CMD_H
#define CALLAHEAD_CONTROL_CMD_H

#include <stddef.h>

struct evbuffer;
struct stats_env;
struct control_cmd;
struct stats_snapshot;

/* CONTROL_MAX_LINE - the longest request line in bytes, without its LF */
#define CONTROL_MAX_LINE 1024

/* control_done_fn - a pending command has written its whole reply */
typedef void (*control_done_fn)(void *arg);

/*
 * control_cmd_start - run the request line (len bytes, no LF; untrusted).
 * Returns 0 when the reply is complete in out now, or 1 when it is pending:
 * done(arg) runs later from the event loop (never from inside this call)
 * once the reply is in out, and *pending is set so the caller can
 * control_cmd_cancel it. out must live until then.
 */
int control_cmd_start(struct stats_env *env, const char *line, size_t len, struct evbuffer *out,
                      control_done_fn done, void *arg, struct control_cmd **pending);

/* control_cmd_cancel - done will not run; the command's lookups are cancelled */
void control_cmd_cancel(struct control_cmd *cmd);

/* control_reply_error - write a whole error reply ("status=error", "error=why", "") to out */
void control_reply_error(struct evbuffer *out, const char *why);

/*
 * control_stats_format - the whole "stats" reply for the snapshot st
 * ("status=ok", one "name=value" line per number, the empty line), appended
 * to out
 */
void control_stats_format(const struct stats_snapshot *st, struct evbuffer *out);

#endif
