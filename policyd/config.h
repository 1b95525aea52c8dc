/*
 * config.h - callahead.conf: Postfix-style "name = value" parameters.
 *
 * Syntax: "#" starts a comment line; a line starting with whitespace
 * continues the previous parameter's value; "name = value" sets a parameter;
 * blank lines are ignored. Unknown names, bad values and duplicate names
 * are errors reported as "FILE:LINE: reason". Every parameter is one entry
 * in a table in config.c with its name, type, default and one documenting
 * sentence: the parser, "callahead-policyd -n"/"-d" and docs/callahead.conf.5
 * all come from that table.
 */
#ifndef CALLAHEAD_CONFIG_H
#define CALLAHEAD_CONFIG_H

#include <stdio.h>

#include "policy_proto.h"
#include "verdict.h"
#include "verifier.h"

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_SOURCES 64 /* named LDAP sources */

struct backend_source; /* backend.h */

struct config {
    /* listeners: "inet:HOST:PORT" ("inet:[::1]:PORT" for IPv6) or "unix:PATH" */
    char *listen[CONFIG_MAX_LISTEN];
    int nlisten;
    int unix_socket_mode;    /* octal, e.g. 0660 */
    char *unix_socket_owner; /* user name or "" (keep) */
    char *unix_socket_group; /* group name or "" (keep) */
    char *user;              /* drop privileges to this user after binding; "" = stay */
    char *pidfile;           /* "" = none */
    char *syslog_name;       /* syslog ident, "callahead" */
    char *syslog_facility;   /* "mail" */
    int debug;               /* debug logging */

    /* operations: the control socket for "callahead", the Prometheus listener */
    char *control_socket;       /* "" = none; a UNIX socket path */
    int control_socket_mode;    /* octal, 0600 */
    char *control_socket_group; /* group name or "" (keep) */
    char *stats_listen;         /* "" = none; "inet:HOST:PORT" */

    /* harvest limit (harvest.h) */
    int max_invalid_per_client; /* 0 = off */
    int harvest_window;         /* seconds */
    int harvest_penalty;        /* seconds */
    char *harvest_action;
    int harvest_ipv4_prefix, harvest_ipv6_prefix;
    char *harvest_exempt_networks;
    int harvest_exempt_authenticated;
    int harvest_pass_valid;

    /* connections */
    int max_connections;
    int idle_timeout;    /* seconds without a request before we close */
    int request_timeout; /* seconds to receive one whole request once it began */
    struct policy_limits limits;

    /* verdict -> action templates (see reply_policy.h), by enum verdict_kind */
    char *action[VERDICT_KIND_COUNT];
    char *action_malformed;  /* recipient that does not parse as an address */
    int fail_open;           /* 1: tempfail verdicts answer action[VALID] instead */
    int reply_next_hop_text; /* 1: %r/%s may show a callout next hop's text and name */
    int dry_run;             /* 1: log what would be rejected, answer DUNNO */

    /* verifier: route table, cache, budget; strings below are owned here */
    char *route_table;
    char *recipient_delimiter;
    int answer_budget_ms;
    int max_probes;                  /* backend probes in progress at once, all next hops */
    int max_probes_per_destination;  /* of which for one destination */
    int probe_queue_limit;           /* lookups waiting for a probe slot */
    int probe_queue_per_destination; /* of which for one destination */
    int flight_timeout_ms;           /* deadline of one backend request and its lock */
    char *dns_servers;               /* "" = /etc/resolv.conf */
    int dns_timeout_ms;
    char *redis_server;      /* "" = no Redis; "HOST:PORT" or "unix:PATH" */
    char *redis_sentinels;   /* "" = none; else "HOST:PORT, ..." (then redis_server is "") */
    char *redis_master_name; /* required with redis_sentinels */
    char *redis_password;    /* "" = no AUTH */
    int redis_db;            /* SELECT after connecting */
    char *redis_key_prefix;
    int redis_timeout_ms;
    int redis_reconnect_max_ms;
    int cache_l1_size;
    int cache_l1_ttl;
    int ttl[VERDICT_KIND_COUNT]; /* indexed by verdict_kind; unknown is unused */
    int refresh[VERDICT_KIND_COUNT];

    /* callahead-milter (milter/): read from the same file, ignored by policyd */
    char *milter_listen;       /* libmilter socket: "inet:PORT@HOST", "inet6:..." or "unix:PATH" */
    int milter_socket_mode;    /* octal, for unix: */
    char *milter_socket_owner; /* user name or "" (keep) */
    char *milter_socket_group; /* group name or "" (keep) */
    char *milter_user;         /* drop privileges to this user; "" = stay */
    char *milter_pidfile;      /* "" = none */
    char *milter_policy_service; /* policyd: "inet:HOST:PORT" or "unix:PATH" */
    int milter_timeout_ms;       /* deadline for one policy query, connect included */
    char *milter_default_action; /* "tempfail" or "continue" when policyd fails */
    int milter_max_inflight;     /* policy queries in progress at once over all sessions */
    int milter_skip_authenticated;
    char *milter_skip_networks; /* client networks never verified ("" = none) */
    int milter_error_log_interval;

    /*
     * named sources, "ldap_NAME_PARAM = value" (ldap_conf.h lists the
     * PARAMs): one struct backend_source per NAME, for the backends
     * (backend.h). Reloadable: a reload reopens the route table's backends.
     */
    struct backend_source *sources;
    size_t nsources;

    /* derived from redis_server by the parser (for config_verifier); do not set */
    char *redis_host; /* NULL for "" and unix: */
    int redis_port;
};

/* config_defaults - every parameter at its default (strings allocated) */
void config_defaults(struct config *c);

/*
 * config_parse - parse text (len bytes) over the defaults. fname is for
 * messages. c is set to the defaults first (previous contents are
 * overwritten, not freed). 0 on success; -1 and "fname:line: reason" in err.
 * On error c holds nothing allocated (it is freed).
 */
int config_parse(const char *text, size_t len, const char *fname, struct config *c, char *err,
                 size_t errlen);

/* config_load - read path and config_parse it */
int config_load(const char *path, struct config *c, char *err, size_t errlen);

void config_free(struct config *c);

/* config_verifier - fill vc from c (pointers into c; valid while c lives) */
void config_verifier(const struct config *c, struct verifier_config *vc);

/*
 * config_restart_changes - how many parameters that only a restart can
 * change (callahead.conf(5) marks them)
 * differ between the running configuration and next; their names, comma
 * separated, in buf. A reload with any such change is refused as a whole.
 */
int config_restart_changes(const struct config *running, const struct config *next, char *buf,
                           size_t size);

/* config_changed - 1 if parameter name differs between running and next, 0 if not, -1 unknown */
int config_changed(const struct config *running, const struct config *next, const char *name);

/* config_print - "name = value" lines; only_changed: only those differing from the default */
void config_print(FILE *fp, const struct config *c, int only_changed);

/* config_print_doc - the parameter reference (man page body in troff when troff != 0, else text) */
void config_print_doc(FILE *fp, int troff);

#endif
