/*
 * control_int.h - what the control socket's command files share
 * (control_cmd.c: verify, stats; control_cache.c: show, flush).
 */
#ifndef CALLAHEAD_CONTROL_INT_H
#define CALLAHEAD_CONTROL_INT_H

#include "control_cmd.h"

struct stats_env;
struct evbuffer;

/* a pending command: each kind embeds this first and frees itself in cancel */
struct control_cmd {
    void (*cancel)(struct control_cmd *cmd); /* done will not run; frees cmd */
};

/* control_kv - append "name=value\n"; the value is made printable ASCII on one line */
void control_kv(struct evbuffer *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* control_error - a whole error reply, counted in env; returns 0 (the reply is complete) */
int control_error(struct stats_env *env, struct evbuffer *out, const char *why);

/* "show ADDR|DOMAIN" and "flush address A|domain D|invalid|all": as control_cmd_start */
int control_show_start(struct stats_env *env, char **w, int n, struct evbuffer *out,
                       control_done_fn done, void *arg, struct control_cmd **pending);
int control_flush_start(struct stats_env *env, char **w, int n, struct evbuffer *out,
                        control_done_fn done, void *arg, struct control_cmd **pending);

#endif
