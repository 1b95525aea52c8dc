/*
 * config.c - callahead.conf: one table of parameters, and the parser, the
 * printer ("callahead-policyd -n") and the reference (docs/callahead.conf.5)
 * that are all driven by it (see config.h).
 *
 * Postfix's main.cf is the model: "name = value", "#" comment lines, a line
 * that starts with whitespace continues the previous value. Unlike main.cf a
 * parameter may be set only once and unknown names are errors: this file
 * decides which mail is rejected, so a typo must stop the daemon at start-up
 * rather than silently leave a default in force. The file is trusted more
 * than the network but still bounded: line length, value length, file size.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "harvest.h"
#include "ldap_conf.h"
#include "redis_sentinel.h"
#include "reply_action.h"
#include "value_parse.h"

#define CONFIG_MAX_LINE 4096      /* one physical line, without LF */
#define CONFIG_MAX_VALUE 2048     /* one value after joining continuation lines */
#define CONFIG_MAX_FILE (1 << 20) /* config_load refuses bigger files */
#define CONFIG_UNIX_PATH_MAX 107  /* sizeof(sun_path) - 1 on Linux */
#define CONFIG_REDIS_DEFAULT_PORT 6379

enum config_type {
    CONFIG_STR,    /* char * */
    CONFIG_ACTION, /* char *, checked with reply_action_check */
    CONFIG_INT,    /* int, decimal */
    CONFIG_BOOL,   /* int, yes/no */
    CONFIG_TIME,   /* int seconds; suffix s m h d w, none = s */
    CONFIG_MS,     /* int milliseconds; suffix ms or s, none = ms */
    CONFIG_MODE,   /* int, octal file mode */
    CONFIG_LISTEN, /* the listen[] list */
};

/* extra checks for some strings */
enum config_check {
    CHECK_NONE,
    CHECK_FACILITY,
    CHECK_REDIS,
    CHECK_NONEMPTY,
    CHECK_ENDPOINT,      /* inet:HOST:PORT or unix:PATH */
    CHECK_MILTER_SOCKET, /* libmilter's inet:PORT@HOST, inet6:PORT@HOST or unix:PATH */
    CHECK_MILTER_ACTION, /* tempfail or continue */
    CHECK_NETWORKS,      /* harvest_check_networks */
    CHECK_INET,          /* "" or inet:HOST:PORT */
    CHECK_UNIXPATH,      /* "" or a path that fits a UNIX socket address */
    CHECK_SENTINELS,     /* "" or a list of HOST:PORT (redis_sentinel_check) */
    CHECK_MASTER_NAME,   /* "" or a Sentinel master name */
};

struct config_param {
    const char *name;
    enum config_type type;
    const char *def; /* default, as it would be written in the file */
    size_t offset;   /* into struct config */
    long min, max;   /* range for numeric types (in the stored unit) */
    enum config_check check;
    const char *doc; /* one sentence: what it does, and why the default */
    int restart;     /* RELOAD: a SIGHUP applies it; RESTART: see config_restart_changes */
};

/*
 * RESTART marks a parameter that is fixed once the daemon runs: the user it
 * switched to and the pidfile it locked. A reload that changes one of them is refused as a whole
 * (the running configuration stays entirely in force, and the log names each
 * of them), rather than half applied. Everything else a SIGHUP applies
 * without dropping a connection (docs/OPERATIONS.md lists how; the Redis
 * settings through cache_swap.c).
 */
#define RELOAD 0
#define RESTART 1

#define OFF(field) offsetof(struct config, field)
#define DAY (24L * 3600)

/* big enough that any in-range value stays exact */
#define CONFIG_NUM_LIMIT 1000000000L

static const struct config_param config_params[] = {
    /* where we listen */
    {"listen", CONFIG_LISTEN, "inet:127.0.0.1:10040", OFF(listen), 0, 0, CHECK_NONE,
     "Where to accept policy requests: a list (comma or space separated, at most 16) of "
     "inet:HOST:PORT, inet:[IPV6]:PORT or unix:PATH; loopback only by default, because the "
     "answers tell whoever asks which addresses exist.",
     RELOAD},
    {"unix_socket_mode", CONFIG_MODE, "0660", OFF(unix_socket_mode), 0, 0777, CHECK_NONE,
     "Octal permissions of unix: listening sockets; 0660 lets only the owner and group (give "
     "it to postfix) connect, since anyone who can connect can probe addresses.",
     RELOAD},
    {"unix_socket_owner", CONFIG_STR, "", OFF(unix_socket_owner), 0, 0, CHECK_NONE,
     "User that owns unix: listening sockets; empty keeps the user the daemon runs as.", RELOAD},
    {"unix_socket_group", CONFIG_STR, "", OFF(unix_socket_group), 0, 0, CHECK_NONE,
     "Group that owns unix: listening sockets (for example postfix); empty keeps the "
     "daemon's group.",
     RELOAD},
    {"user", CONFIG_STR, "", OFF(user), 0, 0, CHECK_NONE,
     "User to switch to after the sockets are bound when started as root; empty stays as "
     "started (for example as a systemd unit's User=).",
     RESTART},
    {"pidfile", CONFIG_STR, "", OFF(pidfile), 0, 0, CHECK_NONE,
     "File to write the daemon's process id to; empty writes none, which suits systemd. It "
     "stays locked while the daemon runs, so a second instance with the same pidfile refuses "
     "to start.",
     RESTART},
    {"syslog_name", CONFIG_STR, "callahead", OFF(syslog_name), 0, 0, CHECK_NONEMPTY,
     "Program name in syslog lines, like Postfix's syslog_name.", RELOAD},
    {"syslog_facility", CONFIG_STR, "mail", OFF(syslog_facility), 0, 0, CHECK_FACILITY,
     "Syslog facility (mail, daemon, user or local0 to local7); mail puts the verdicts next "
     "to Postfix's own log lines.",
     RELOAD},
    {"debug", CONFIG_BOOL, "no", OFF(debug), 0, 1, CHECK_NONE,
     "Log debug detail (state changes, cache and backend steps); off because it is one line "
     "per step of every request.",
     RELOAD},

    /* operations */
    {"control_socket", CONFIG_STR, "", OFF(control_socket), 0, 0, CHECK_UNIXPATH,
     "UNIX socket on which the callahead command talks to the daemon (verify, show, flush, "
     "stats); empty opens none. Its clients can probe addresses, so only root, the daemon's user "
     "and, when "
     "control_socket_mode lets the group write, the socket's group are served.",
     RELOAD},
    {"control_socket_mode", CONFIG_MODE, "0600", OFF(control_socket_mode), 0, 0777, CHECK_NONE,
     "Octal permissions of the control socket; 0600 lets only the daemon's user (and root) "
     "connect.",
     RELOAD},
    {"control_socket_group", CONFIG_STR, "", OFF(control_socket_group), 0, 0, CHECK_NONE,
     "Group that owns the control socket; with control_socket_mode 0660 its members (by "
     "primary group) may use the callahead command; empty keeps the daemon's group.",
     RELOAD},
    {"stats_listen", CONFIG_STR, "", OFF(stats_listen), 0, 0, CHECK_INET,
     "Where to serve Prometheus metrics over HTTP (GET /metrics), as inet:HOST:PORT; empty "
     "serves none. Bind it to loopback or a monitoring network: the counters show traffic.",
     RELOAD},

    /* harvest limit (dictionary attacks) */
    {"max_invalid_per_client", CONFIG_INT, "0", OFF(max_invalid_per_client), 0, 1000000, CHECK_NONE,
     "Most invalid recipients a client network may collect within harvest_window before every "
     "further RCPT from it is answered harvest_action for harvest_penalty; shared between hosts "
     "through Redis; 0 turns the limit off (for example 20 stops a dictionary attack early "
     "while a mistyped address or two never trips it).",
     RELOAD},
    {"harvest_window", CONFIG_TIME, "10m", OFF(harvest_window), 1, DAY, CHECK_NONE,
     "Length of the fixed window in which invalid recipients are counted per client network.",
     RELOAD},
    {"harvest_penalty", CONFIG_TIME, "1h", OFF(harvest_penalty), 1, 31 * DAY, CHECK_NONE,
     "How long a client network over the limit is answered harvest_action.", RELOAD},
    {"harvest_action", CONFIG_ACTION,
     "450 4.7.1 Too many invalid recipients from your network, try again later",
     OFF(harvest_action), 0, 0, CHECK_NONE,
     "Reply to every RCPT from a client network in its penalty; a tempfail by default, so a "
     "legitimate sender caught by mistake only waits.",
     RELOAD},
    {"harvest_ipv4_prefix", CONFIG_INT, "32", OFF(harvest_ipv4_prefix), 8, 32, CHECK_NONE,
     "IPv4 clients are counted together per network of this many bits (32 = each address, 24 "
     "= per /24).",
     RELOAD},
    {"harvest_ipv6_prefix", CONFIG_INT, "64", OFF(harvest_ipv6_prefix), 16, 128, CHECK_NONE,
     "IPv6 clients are counted together per network of this many bits; 64, because one host "
     "usually holds a whole /64.",
     RELOAD},
    {"harvest_exempt_networks", CONFIG_STR, "", OFF(harvest_exempt_networks), 0, 0, CHECK_NETWORKS,
     "Client networks never limited, as a list of ADDRESS[/BITS] (for example your own "
     "submission servers and monitoring).",
     RELOAD},
    {"harvest_exempt_authenticated", CONFIG_BOOL, "yes", OFF(harvest_exempt_authenticated), 0, 1,
     CHECK_NONE,
     "Never limit a request that carries a sasl_username: an authenticated user's typos are "
     "not an attack.",
     RELOAD},
    {"harvest_pass_valid", CONFIG_BOOL, "no", OFF(harvest_pass_valid), 0, 1, CHECK_NONE,
     "During a penalty, still verify and accept recipients that exist (only the others get "
     "harvest_action); off, because the answers would keep telling the harvester which "
     "addresses exist.",
     RELOAD},

    /* connections */
    {"max_connections", CONFIG_INT, "4096", OFF(max_connections), 1, 1000000, CHECK_NONE,
     "Most policy client connections at once; Postfix keeps one per smtpd process, so 4096 "
     "covers far more smtpd processes than a default default_process_limit of 100. When all "
     "are in use, a new client takes the slot of the least recently active connection that "
     "waits for input (idle, or still sending a request). A reload that lowers it closes "
     "no connection at once: the next new client closes the least recently active idle ones "
     "until it fits.",
     RELOAD},
    {"idle_timeout", CONFIG_TIME, "300s", OFF(idle_timeout), 1, DAY, CHECK_NONE,
     "Close a connection that sends no request for this long; 300s matches Postfix's "
     "smtpd_policy_service_max_idle, so the client notices first.",
     RELOAD},
    {"request_timeout", CONFIG_TIME, "30s", OFF(request_timeout), 1, 3600, CHECK_NONE,
     "Close a connection that takes longer than this to send one whole request, counted from "
     "its first byte; Postfix sends a request in one write, so only a stuck or hostile client "
     "waits this long.",
     RELOAD},
    {"max_line_length", CONFIG_INT, "4096", OFF(limits.max_line), 64, 1048576, CHECK_NONE,
     "Longest request line in bytes; a protocol error above it, and 4096 is far above any "
     "attribute Postfix sends (an address is at most 256 bytes).",
     RELOAD},
    {"max_attributes", CONFIG_INT, "100", OFF(limits.max_attributes), 16, 100000, CHECK_NONE,
     "Most attributes in one request; Postfix 3.7 sends about 30, so 100 leaves room for "
     "future versions and still bounds a hostile client.",
     RELOAD},
    {"max_request_size", CONFIG_INT, "65536", OFF(limits.max_request), 1024, 16777216, CHECK_NONE,
     "Most bytes in one request, all lines together; 64 KiB is many times a real request.", RELOAD},

    /* verdict -> action */
    {"action_valid", CONFIG_ACTION, "DUNNO", OFF(action[VERDICT_VALID]), 0, 0, CHECK_NONE,
     "Reply for an address that exists; DUNNO lets the restrictions after "
     "check_policy_service still apply.",
     RELOAD},
    {"action_invalid", CONFIG_ACTION, "550 5.1.1 %r", OFF(action[VERDICT_INVALID]), 0, 0,
     CHECK_NONE,
     "Reply for an address that does not exist (%a is the address, %r the reason, %s the "
     "source, %c the next hop's code, %% a percent sign); an explicit 550 because Postfix "
     "turns a plain REJECT into 554, and no address in the text because Postfix itself "
     "writes \"<address>: Recipient address rejected: \" before it.",
     RELOAD},
    {"action_tempfail", CONFIG_ACTION,
     "DEFER_IF_PERMIT 4.1.1 Recipient address verification failed: %r",
     OFF(action[VERDICT_TEMPFAIL]), 0, 0, CHECK_NONE,
     "Reply when the address could not be verified now; DEFER_IF_PERMIT defers only mail "
     "that later restrictions would accept, as Postfix's reject_unverified_recipient does.",
     RELOAD},
    {"action_unknown", CONFIG_ACTION, "DUNNO", OFF(action[VERDICT_UNKNOWN]), 0, 0, CHECK_NONE,
     "Reply when no route covers the address; DUNNO leaves the decision to Postfix.", RELOAD},
    {"action_malformed", CONFIG_ACTION, "DUNNO", OFF(action_malformed), 0, 0, CHECK_NONE,
     "Reply when the recipient does not parse as an address; DUNNO, because Postfix has "
     "already accepted its syntax and its own checks are the better judge.",
     RELOAD},
    {"fail_open", CONFIG_BOOL, "no", OFF(fail_open), 0, 1, CHECK_NONE,
     "Answer action_valid instead of action_tempfail when verification fails; off, because "
     "deferring costs the sender a retry while accepting may cost a bounce to a forged sender.",
     RELOAD},
    {"dry_run", CONFIG_BOOL, "no", OFF(dry_run), 0, 1, CHECK_NONE,
     "Log the verdicts but always answer DUNNO; turn it on for a first deployment to see what "
     "would be rejected.",
     RELOAD},
    {"reply_next_hop_text", CONFIG_BOOL, "no", OFF(reply_next_hop_text), 0, 1, CHECK_NONE,
     "Put a callout next hop's own reply text in %r and its name in %s; off, so that internal "
     "host names, addresses and software banners never reach the SMTP client (a generic "
     "reason is used instead).",
     RELOAD},

    /* verifier */
    {"route_table", CONFIG_STR, "/etc/callahead/routes", OFF(route_table), 0, 0, CHECK_NONEMPTY,
     "File that says how each recipient domain is verified (first match wins).", RELOAD},
    {"recipient_delimiter", CONFIG_STR, "+", OFF(recipient_delimiter), 0, 0, CHECK_NONE,
     "Characters that separate a local part from its extension (user+ext), as in Postfix's "
     "recipient_delimiter; empty for none.",
     RELOAD},
    {"answer_budget", CONFIG_MS, "5000ms", OFF(answer_budget_ms), 10, 600000, CHECK_NONE,
     "Answer tempfail if verification takes longer than this, and let it finish into the "
     "cache; 5s is well under Sendmail's milter timeout of about 10s and Postfix's 100s "
     "policy timeout.",
     RELOAD},
    {"max_probes", CONFIG_INT, "500", OFF(max_probes), 1, 100000, CHECK_NONE,
     "Most backend probes (callouts) in progress at once over all next hops; more wait in a "
     "queue within their answer budget, so a flood of new addresses cannot open thousands of "
     "connections (each smtp route also has its own max_connections).",
     RELOAD},
    {"max_probes_per_destination", CONFIG_INT, "0", OFF(max_probes_per_destination), 0, 100000,
     CHECK_NONE,
     "Most probes in progress at once for one destination (a next hop, or one domain of an "
     "smtp:mx route), so that a next hop that never answers cannot hold every probe slot; "
     "destinations waiting for a slot are served in turn. 0 means a fifth of max_probes.",
     RELOAD},
    {"probe_queue_limit", CONFIG_INT, "10000", OFF(probe_queue_limit), 1, 1000000, CHECK_NONE,
     "Most lookups waiting for a probe slot over all destinations; beyond it a lookup that "
     "needs a probe is answered tempfail at once, so memory stays bounded.",
     RELOAD},
    {"probe_queue_per_destination", CONFIG_INT, "1000", OFF(probe_queue_per_destination), 1,
     1000000, CHECK_NONE,
     "Most lookups waiting for a probe slot for one destination; beyond it that destination's "
     "new lookups are answered tempfail at once.",
     RELOAD},
    {"flight_timeout", CONFIG_MS, "60s", OFF(flight_timeout_ms), 1000, 3600000, CHECK_NONE,
     "Backstop deadline of one backend request (a callout with its DNS, queueing and random "
     "probe), and the lifetime of its cross-host probe lock: a request that has neither "
     "finished nor failed by then is failed as tempfail and counts as a failure of its "
     "destination.",
     RELOAD},
    {"dns_servers", CONFIG_STR, "", OFF(dns_servers), 0, 0, CHECK_NONE,
     "Resolvers for smtp:mx and next hops given by name, as a comma list of ADDRESS[:PORT] or "
     "[IPV6]:PORT; empty uses /etc/resolv.conf (read at start-up and at every reload). A "
     "reload sends new lookups to the new servers; lookups in progress finish on the old ones.",
     RELOAD},
    {"dns_timeout", CONFIG_MS, "4000ms", OFF(dns_timeout_ms), 100, 60000, CHECK_NONE,
     "Deadline for one whole MX and address lookup; below answer_budget so that a slow DNS "
     "still leaves time for the callout.",
     RELOAD},
    {"redis_server", CONFIG_STR, "", OFF(redis_server), 0, 0, CHECK_REDIS,
     "Shared Redis cache as HOST:PORT, [IPV6]:PORT or unix:PATH; empty uses only the "
     "in-process cache, which is enough for a single MX. A host name is resolved once per "
     "configuration (start-up, and a reload that changes it, which keeps serving meanwhile), "
     "from the hosts file or dns_servers within dns_timeout; one that does not resolve stops "
     "the start or refuses the reload.",
     RELOAD},
    {"redis_sentinels", CONFIG_STR, "", OFF(redis_sentinels), 0, 0, CHECK_SENTINELS,
     "Redis Sentinel instances as a list of HOST:PORT or [IPV6]:PORT (at most 16), to find "
     "and follow the master named redis_master_name instead of using redis_server; empty uses "
     "redis_server. Names are resolved as redis_server's are.",
     RELOAD},
    {"redis_master_name", CONFIG_STR, "", OFF(redis_master_name), 0, 0, CHECK_MASTER_NAME,
     "Name of the master the sentinels watch (the name in sentinel.conf's \"sentinel monitor\" "
     "line); required with redis_sentinels. A name the sentinels do not know is accepted, at "
     "start-up and by a reload alike: the daemon logs it, answers without Redis and keeps "
     "asking, so it connects once the sentinels monitor that name.",
     RELOAD},
    {"redis_password", CONFIG_STR, "", OFF(redis_password), 0, 0, CHECK_NONE,
     "Password sent with AUTH to Redis and to the sentinels on every connect; empty sends "
     "none. Keep the file readable only by root and the daemon's group when it is set.",
     RELOAD},
    {"redis_db", CONFIG_INT, "0", OFF(redis_db), 0, 1000000, CHECK_NONE,
     "Redis database number to SELECT after connecting; 0 is Redis's default.", RELOAD},
    {"redis_key_prefix", CONFIG_STR, "callahead:", OFF(redis_key_prefix), 0, 0, CHECK_NONE,
     "Prefix of every Redis key, so one Redis can serve other applications too.", RELOAD},
    {"redis_timeout", CONFIG_MS, "250ms", OFF(redis_timeout_ms), 1, 60000, CHECK_NONE,
     "Deadline for connecting to Redis and for each command; a slow Redis costs a cache miss, "
     "not a slow answer.",
     RELOAD},
    {"redis_reconnect_max", CONFIG_MS, "10s", OFF(redis_reconnect_max_ms), 100, 3600000, CHECK_NONE,
     "Longest wait between Redis reconnect attempts (backoff starts at 100ms and doubles).",
     RELOAD},
    {"cache_l1_size", CONFIG_INT, "100000", OFF(cache_l1_size), 1, 100000000, CHECK_NONE,
     "Most addresses in the in-process cache; 100000 verdicts take a few tens of MB. A reload to "
     "a smaller size evicts the least recently used verdicts at once.",
     RELOAD},
    {"cache_l1_ttl", CONFIG_TIME, "60s", OFF(cache_l1_ttl), 1, 31 * DAY, CHECK_NONE,
     "How long the in-process cache keeps a verdict when Redis is used, so that a change in "
     "Redis (a flush) reaches every host within a minute.",
     RELOAD},
    {"ttl_valid", CONFIG_TIME, "31d", OFF(ttl[VERDICT_VALID]), 0, 365 * DAY, CHECK_NONE,
     "How long an existing address stays cached; 31d as Postfix's "
     "address_verify_positive_expire_time (Exim uses 24h); 0 disables caching.",
     RELOAD},
    {"ttl_invalid", CONFIG_TIME, "3d", OFF(ttl[VERDICT_INVALID]), 0, 365 * DAY, CHECK_NONE,
     "How long a non-existent address stays cached; 3d as Postfix's "
     "address_verify_negative_expire_time (Exim uses 2h); 0 disables caching.",
     RELOAD},
    {"ttl_tempfail", CONFIG_TIME, "60s", OFF(ttl[VERDICT_TEMPFAIL]), 0, 365 * DAY, CHECK_NONE,
     "How long a failed verification is cached, briefly, so a dead next hop is not asked "
     "again for every recipient; 0 disables caching.",
     RELOAD},
    {"refresh_valid", CONFIG_TIME, "7d", OFF(refresh[VERDICT_VALID]), 0, 365 * DAY, CHECK_NONE,
     "A cached valid verdict older than this is still used but verified again in the "
     "background; 7d as Postfix's address_verify_positive_refresh_time; 0 never.",
     RELOAD},
    {"refresh_invalid", CONFIG_TIME, "3h", OFF(refresh[VERDICT_INVALID]), 0, 365 * DAY, CHECK_NONE,
     "A cached invalid verdict older than this is still used but verified again in the "
     "background, so a new mailbox works within hours; 3h as Postfix's "
     "address_verify_negative_refresh_time; 0 never.",
     RELOAD},

    /* callahead-milter (see callahead-milter(8)); policyd reads and ignores these, so a
     * reload that changes one is not refused: RELOAD (the milter itself has no reload) */
    {"milter_listen", CONFIG_STR, "inet:10041@127.0.0.1", OFF(milter_listen), 0, 0,
     CHECK_MILTER_SOCKET,
     "Where callahead-milter accepts the MTA's milter connections, in libmilter's notation: "
     "inet:PORT@HOST, inet6:PORT@HOST or unix:PATH (a stale unix socket is replaced, a live one "
     "is not).",
     RELOAD},
    {"milter_socket_mode", CONFIG_MODE, "0660", OFF(milter_socket_mode), 0, 0777, CHECK_NONE,
     "Octal permissions of a unix: milter socket; 0660 lets only its owner and group (give it "
     "to the MTA) connect.",
     RELOAD},
    {"milter_socket_owner", CONFIG_STR, "", OFF(milter_socket_owner), 0, 0, CHECK_NONE,
     "User that owns a unix: milter socket; empty keeps the user the milter runs as.", RELOAD},
    {"milter_socket_group", CONFIG_STR, "", OFF(milter_socket_group), 0, 0, CHECK_NONE,
     "Group that owns a unix: milter socket (smmsp or postfix); empty keeps the milter's group.",
     RELOAD},
    {"milter_user", CONFIG_STR, "", OFF(milter_user), 0, 0, CHECK_NONE,
     "User callahead-milter switches to after its socket is bound when started as root; empty "
     "stays as started.",
     RELOAD},
    {"milter_pidfile", CONFIG_STR, "", OFF(milter_pidfile), 0, 0, CHECK_NONE,
     "File to write callahead-milter's process id to; empty writes none.", RELOAD},
    {"milter_policy_service", CONFIG_STR, "inet:127.0.0.1:10040", OFF(milter_policy_service), 0, 0,
     CHECK_ENDPOINT,
     "The callahead-policyd the milter asks at RCPT: inet:HOST:PORT, inet:[IPV6]:PORT or "
     "unix:PATH, one of policyd's listen entries.",
     RELOAD},
    {"milter_timeout", CONFIG_MS, "8s", OFF(milter_timeout_ms), 100, 60000, CHECK_NONE,
     "Deadline for one policy query, connecting included; 8s stays under Sendmail's default "
     "milter reply timeout (R:10s) and above policyd's answer_budget of 5s.",
     RELOAD},
    {"milter_default_action", CONFIG_STR, "tempfail", OFF(milter_default_action), 0, 0,
     CHECK_MILTER_ACTION,
     "What the milter answers when policyd cannot be asked or answers nonsense: tempfail (a 451 "
     "reply, the client retries) or continue (accept the recipient unverified), named as "
     "Postfix's milter_default_action.",
     RELOAD},
    {"milter_max_inflight", CONFIG_INT, "200", OFF(milter_max_inflight), 1, 100000, CHECK_NONE,
     "Most policy queries in progress at once over all MTA sessions; above it a recipient gets "
     "an immediate 451, because libmilter starts a thread per session without a bound.",
     RELOAD},
    {"milter_skip_authenticated", CONFIG_BOOL, "yes", OFF(milter_skip_authenticated), 0, 1,
     CHECK_NONE,
     "Do not verify recipients of SMTP-authenticated senders (the {auth_authen} macro): they "
     "are your own users, and their mail to the outside is not ours to verify.",
     RELOAD},
    {"milter_skip_networks", CONFIG_STR, "", OFF(milter_skip_networks), 0, 0, CHECK_NONE,
     "Client networks whose recipients are not verified, as a list of ADDRESS[/BITS] (IPv4 or "
     "IPv6, comma or space separated, at most 64); empty verifies every client.",
     RELOAD},
    {"milter_error_log_interval", CONFIG_TIME, "60s", OFF(milter_error_log_interval), 1, DAY,
     CHECK_NONE,
     "Log a failure to reach policyd at most once per this interval (with the number of "
     "failures since), so a dead policyd does not flood the log with one line per recipient.",
     RELOAD},
};
#define CONFIG_NPARAMS (sizeof(config_params) / sizeof(config_params[0]))

/* config_field - where a parameter lives in c */
static void *config_field(struct config *c, const struct config_param *p)
{
    return (char *)c + p->offset;
}

static const void *config_cfield(const struct config *c, const struct config_param *p)
{
    return (const char *)c + p->offset;
}

/* config_find - the table entry called name (len bytes), or NULL */
static const struct config_param *config_find(const char *name, size_t len)
{
    for (size_t i = 0; i < CONFIG_NPARAMS; i++)
        if (strlen(config_params[i].name) == len && memcmp(config_params[i].name, name, len) == 0)
            return &config_params[i];
    return NULL;
}

/* config_seterr - "reason" into err (callers add the file and line) */
static int config_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int config_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* config_parse_mode - octal digits, e.g. "0660" */
static int config_parse_mode(const char *s, long *out)
{
    long v = 0;

    if (*s == '\0')
        return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '7')
            return -1;
        v = v * 8 + (*p - '0');
        if (v > 07777)
            return -1;
    }
    *out = v;
    return 0;
}

/* config_check_unix_path - an absolute-or-relative path that fits sun_path */
static int config_check_unix_path(const char *s, size_t len)
{
    if (len == 0 || len > CONFIG_UNIX_PATH_MAX)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return -1;
    return 0;
}

/* config_check_endpoint - one listen entry (s, len bytes) */
static int config_check_endpoint(const char *s, size_t len)
{
    if (len > 5 && strncmp(s, "inet:", 5) == 0)
        return value_parse_hostport(s + 5, len - 5, 1, NULL, 0, NULL) == VALUE_OK ? 0 : -1;
    if (len > 5 && strncmp(s, "unix:", 5) == 0)
        return config_check_unix_path(s + 5, len - 5);
    return -1;
}

/*
 * config_check_milter_socket - libmilter's own socket notation, which differs
 * from ours: "inet:PORT@HOST" or "inet6:PORT@HOST" (HOST optional) or
 * "unix:PATH"/"local:PATH".
 */
static int config_check_milter_socket(const char *s)
{
    size_t len = strlen(s);
    const char *rest;

    if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0) {
        rest = strchr(s, ':') + 1;
        return config_check_unix_path(rest, strlen(rest));
    }
    if (strncmp(s, "inet:", 5) == 0)
        rest = s + 5;
    else if (strncmp(s, "inet6:", 6) == 0)
        rest = s + 6;
    else
        return -1;
    len = strlen(rest);
    const char *at = memchr(rest, '@', len);
    size_t plen = at ? (size_t)(at - rest) : len;
    char port[8];
    long long v;
    if (plen == 0 || plen >= sizeof(port))
        return -1;
    memcpy(port, rest, plen);
    port[plen] = '\0';
    if (value_parse_count(port, 0, 65535, &v) != VALUE_OK)
        return -1;
    if (at == NULL)
        return 0;
    size_t hlen = len - plen - 1;
    if (hlen == 0 || hlen > 255)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)at[1 + i]) && strchr(".-_:[]", at[1 + i]) == NULL)
            return -1;
    return 0;
}

/* config_free_listen - drop the listen list */
static void config_free_listen(struct config *c)
{
    for (int i = 0; i < c->nlisten && i < CONFIG_MAX_LISTEN; i++) {
        free(c->listen[i]);
        c->listen[i] = NULL;
    }
    c->nlisten = 0;
}

/* config_set_listen - replace the listen list with value (comma and/or space separated) */
static int config_set_listen(struct config *c, const char *value, char *err, size_t errlen)
{
    char *items[CONFIG_MAX_LISTEN];
    int n = 0;
    const char *p = value;

    for (;;) {
        p += strspn(p, ", \t");
        if (*p == '\0')
            break;
        size_t len = strcspn(p, ", \t");
        if (n == CONFIG_MAX_LISTEN) {
            config_seterr(err, errlen, "too many listen entries (at most %d)", CONFIG_MAX_LISTEN);
            goto fail;
        }
        if (config_check_endpoint(p, len) < 0) {
            config_seterr(err, errlen,
                          "bad listen entry (want inet:HOST:PORT, inet:[IPV6]:PORT or "
                          "unix:PATH)");
            goto fail;
        }
        items[n] = strndup(p, len);
        if (items[n] == NULL) {
            config_seterr(err, errlen, "out of memory");
            goto fail;
        }
        n++;
        p += len;
    }
    if (n == 0)
        return config_seterr(err, errlen, "listen is empty");
    config_free_listen(c);
    memcpy(c->listen, items, (size_t)n * sizeof(items[0]));
    c->nlisten = n;
    return 0;
fail:
    while (n > 0)
        free(items[--n]);
    return -1;
}

/* config_check_string - the extra checks some string parameters have */
static int config_check_string(const struct config_param *p, const char *value, char *err,
                               size_t errlen)
{
    static const char *const facilities[] = {"mail",   "daemon", "user",   "local0",
                                             "local1", "local2", "local3", "local4",
                                             "local5", "local6", "local7"};
    switch (p->check) {
    case CHECK_NONE:
        return 0;
    case CHECK_NETWORKS:
        return harvest_check_networks(value, err, errlen);
    case CHECK_INET: {
        int port = -1;
        if (*value == '\0' ||
            (strncmp(value, "inet:", 5) == 0 &&
             value_parse_hostport(value + 5, strlen(value + 5), 1, NULL, 0, &port) == VALUE_OK))
            return 0;
        return config_seterr(err, errlen, "bad %s (want inet:HOST:PORT or inet:[IPV6]:PORT)",
                             p->name);
    }
    case CHECK_UNIXPATH:
        if (*value == '\0' || config_check_unix_path(value, strlen(value)) == 0)
            return 0;
        return config_seterr(err, errlen, "bad %s (a path of at most %d bytes)", p->name,
                             CONFIG_UNIX_PATH_MAX);
    case CHECK_NONEMPTY:
        if (*value == '\0')
            return config_seterr(err, errlen, "%s must not be empty", p->name);
        return 0;
    case CHECK_FACILITY:
        for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
            if (strcasecmp(value, facilities[i]) == 0)
                return 0;
        return config_seterr(err, errlen, "bad %s (want mail, daemon, user or local0-7)", p->name);
    case CHECK_REDIS: {
        size_t len = strlen(value);
        if (len == 0)
            return 0;
        if (strncmp(value, "unix:", 5) == 0) {
            if (config_check_unix_path(value + 5, len - 5) == 0)
                return 0;
        } else {
            int port = CONFIG_REDIS_DEFAULT_PORT;
            if (value_parse_hostport(value, len, 0, NULL, 0, &port) == VALUE_OK && port > 0)
                return 0;
        }
        return config_seterr(err, errlen, "bad %s (want HOST:PORT, [IPV6]:PORT or unix:PATH)",
                             p->name);
    }
    case CHECK_SENTINELS: {
        char why[160];
        if (*value == '\0' || redis_sentinel_check(value, why, sizeof(why)) == 0)
            return 0;
        return config_seterr(err, errlen, "bad %s: %s", p->name, why);
    }
    case CHECK_MASTER_NAME:
        if (*value == '\0' || redis_sentinel_check_name(value) == 0)
            return 0;
        return config_seterr(err, errlen, "bad %s (1..%d printable bytes, no blanks)", p->name,
                             REDIS_SENTINEL_NAME_MAX);
    case CHECK_ENDPOINT:
        if (config_check_endpoint(value, strlen(value)) == 0)
            return 0;
        return config_seterr(
            err, errlen, "bad %s (want inet:HOST:PORT, inet:[IPV6]:PORT or unix:PATH)", p->name);
    case CHECK_MILTER_SOCKET:
        if (config_check_milter_socket(value) == 0)
            return 0;
        return config_seterr(err, errlen,
                             "bad %s (want inet:PORT@HOST, inet6:PORT@HOST or unix:PATH)", p->name);
    case CHECK_MILTER_ACTION:
        if (strcmp(value, "tempfail") == 0 || strcmp(value, "continue") == 0)
            return 0;
        return config_seterr(err, errlen, "bad %s (want tempfail or continue)", p->name);
    }
    return 0;
}

/* config_redis_derive - fill the redis_host/redis_port fields from redis_server */
static int config_redis_derive(struct config *c)
{
    free(c->redis_host);
    c->redis_host = NULL;
    c->redis_port = CONFIG_REDIS_DEFAULT_PORT;
    if (c->redis_server == NULL || c->redis_server[0] == '\0' ||
        strncmp(c->redis_server, "unix:", 5) == 0)
        return 0;
    char host[VALUE_HOST_MAX];
    if (value_parse_hostport(c->redis_server, strlen(c->redis_server), 0, host, sizeof(host),
                             &c->redis_port) != VALUE_OK)
        return -1;
    c->redis_host = strdup(host);
    return c->redis_host != NULL ? 0 : -1;
}

/*
 * config_set - give parameter p the text value (already trimmed). On error
 * err gets the reason (without file and line) and c is unchanged.
 */
static int config_set(struct config *c, const struct config_param *p, const char *value, char *err,
                      size_t errlen)
{
    void *field = config_field(c, p);
    long long v = 0;
    long m;

    switch (p->type) {
    case CONFIG_ACTION: {
        char why[128];
        if (reply_action_check(value, why, sizeof(why)) < 0)
            return config_seterr(err, errlen, "bad %s: %s", p->name, why);
    }
        /* fall through */
    case CONFIG_STR: {
        if (config_check_string(p, value, err, errlen) < 0)
            return -1;
        char *copy = strdup(value);
        if (copy == NULL)
            return config_seterr(err, errlen, "out of memory");
        free(*(char **)field);
        *(char **)field = copy;
        if (p->check == CHECK_REDIS && config_redis_derive(c) < 0)
            return config_seterr(err, errlen, "out of memory");
        return 0;
    }
    case CONFIG_LISTEN:
        return config_set_listen(c, value, err, errlen);
    case CONFIG_INT:
        if (value_parse_count(value, 0, CONFIG_NUM_LIMIT, &v) != VALUE_OK)
            return config_seterr(err, errlen, "bad number for %s", p->name);
        break;
    case CONFIG_BOOL: {
        int b;
        if (value_parse_bool(value, &b) != VALUE_OK)
            return config_seterr(err, errlen, "bad boolean for %s (want yes or no)", p->name);
        v = b;
        break;
    }
    case CONFIG_TIME:
    case CONFIG_MS: {
        /* one duration grammar (value_parse.h); only the unit of a bare number differs */
        long long bare = p->type == CONFIG_TIME ? VALUE_SECONDS : VALUE_MS;
        int rc = value_parse_duration(value, bare, 0, LLONG_MAX, &v);
        if (rc == VALUE_OK && p->type == CONFIG_TIME && v % 1000 != 0)
            rc = VALUE_SYNTAX;
        if (rc == VALUE_SYNTAX)
            return config_seterr(err, errlen,
                                 "bad time for %s (want a number with unit ms, s, m, h, d or w%s)",
                                 p->name, p->type == CONFIG_TIME ? ", whole seconds" : "");
        if (rc == VALUE_OK && p->type == CONFIG_TIME)
            v /= 1000;
        if (rc != VALUE_OK)
            v = LLONG_MAX; /* too large to compute: out of range below */
        break;
    }
    case CONFIG_MODE:
        if (config_parse_mode(value, &m) < 0)
            return config_seterr(err, errlen, "bad octal mode for %s", p->name);
        v = m;
        break;
    }
    if (v < p->min || v > p->max)
        return config_seterr(err, errlen, "%s out of range (%ld..%ld)", p->name, p->min, p->max);
    if (p->offset == OFF(limits.max_line) || p->offset == OFF(limits.max_request))
        *(size_t *)field = (size_t)v;
    else
        *(int *)field = (int)v;
    return 0;
}

/* config_free_sources - the named sources and everything they point to */
static void config_free_sources(struct config *c)
{
    for (size_t i = 0; i < c->nsources; i++) {
        struct backend_source *src = &c->sources[i];
        for (size_t j = 0; j < src->nparams; j++) {
            /* allocated by config_source_param; const only for the backends */
            free((char *)src->params[j].value);
            free((char *)src->params[j].file);
        }
        free((struct backend_param *)src->params);
        free((char *)src->name);
    }
    free(c->sources);
    c->sources = NULL;
    c->nsources = 0;
}

/*
 * config_source_param - "ldap_NAME_PARAM = value" (p is PARAM's table
 * entry, src/srclen the NAME) into c->sources, remembering fname and line
 * for the backend's error messages. A parameter set twice is an error.
 */
static int config_source_param(struct config *c, const char *src, size_t srclen,
                               const struct ldap_conf_param *p, const char *value,
                               const char *fname, size_t line, char *err, size_t errlen)
{
    struct backend_source *s = NULL;

    for (size_t i = 0; i < c->nsources; i++)
        if (strlen(c->sources[i].name) == srclen && memcmp(c->sources[i].name, src, srclen) == 0)
            s = &c->sources[i];
    if (s == NULL) {
        if (c->nsources == CONFIG_MAX_SOURCES)
            return config_seterr(err, errlen, "too many LDAP sources (at most %d)",
                                 CONFIG_MAX_SOURCES);
        struct backend_source *grown = realloc(c->sources, (c->nsources + 1) * sizeof(*grown));
        if (grown == NULL)
            return config_seterr(err, errlen, "out of memory");
        c->sources = grown;
        s = &c->sources[c->nsources];
        memset(s, 0, sizeof(*s));
        s->type = "ldap";
        if ((s->name = strndup(src, srclen)) == NULL)
            return config_seterr(err, errlen, "out of memory");
        /* one slot per parameter of the table: a second setting is refused below */
        if ((s->params = calloc(ldap_conf_nparams, sizeof(struct backend_param))) == NULL) {
            free((char *)s->name);
            return config_seterr(err, errlen, "out of memory");
        }
        c->nsources++;
    }
    struct backend_param *params = (struct backend_param *)s->params;
    for (size_t j = 0; j < s->nparams; j++)
        if (strcmp(params[j].name, p->name) == 0)
            return config_seterr(err, errlen, "duplicate parameter \"ldap_%s_%s\"", s->name,
                                 p->name);
    if (s->nparams == ldap_conf_nparams)
        return config_seterr(err, errlen, "internal error: too many parameters");
    struct backend_param *bp = &params[s->nparams];
    bp->name = p->name; /* static, from the table */
    bp->value = strdup(value);
    bp->file = strdup(fname != NULL ? fname : "(config)");
    bp->line = (int)line;
    if (bp->value == NULL || bp->file == NULL) {
        free((char *)bp->value);
        free((char *)bp->file);
        return config_seterr(err, errlen, "out of memory");
    }
    s->nparams++;
    return 0;
}

void config_free(struct config *c)
{
    config_free_sources(c);
    config_free_listen(c);
    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        const struct config_param *p = &config_params[i];
        if (p->type == CONFIG_STR || p->type == CONFIG_ACTION) {
            char **field = config_field(c, p);
            free(*field);
            *field = NULL;
        }
    }
    free(c->redis_host);
    c->redis_host = NULL;
}

void config_defaults(struct config *c)
{
    char err[256];

    memset(c, 0, sizeof(*c));
    c->redis_port = CONFIG_REDIS_DEFAULT_PORT;
    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        /* the defaults are ours and valid; only ENOMEM can fail here */
        if (config_set(c, &config_params[i], config_params[i].def, err, sizeof(err)) < 0) {
            fprintf(stderr, "callahead: config default %s: %s\n", config_params[i].name, err);
            abort();
        }
    }
}

/* config_trim - strip leading and trailing blanks from s (len bytes) */
static const char *config_trim(const char *s, size_t *len)
{
    while (*len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        (*len)--;
    }
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
        (*len)--;
    return s;
}

/* config_is_name_char - parameter names are lower case letters, digits and '_' */
static int config_is_name_char(int ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* config_safe_name - a loggable copy of an unknown name: name characters only, truncated */
static void config_safe_name(char *dst, size_t size, const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n + 4 < size; i++)
        dst[n++] = config_is_name_char((unsigned char)s[i]) ? s[i] : '?';
    if (len > 0 && n < len && n + 3 < size) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

/*
 * config_logical - apply one logical line "name = value" (text, len bytes,
 * continuation lines already joined). seen[] marks parameters already set.
 */
static int config_logical(struct config *c, const char *text, size_t len, unsigned char *seen,
                          const char *fname, size_t line, char *err, size_t errlen)
{
    const char *eq = memchr(text, '=', len);
    char safe[72];

    if (eq == NULL) {
        size_t nlen = strcspn(text, " \t");
        config_safe_name(safe, sizeof(safe), text, nlen < len ? nlen : len);
        return config_seterr(err, errlen, "missing '=' after \"%s\"", safe);
    }
    size_t nlen = (size_t)(eq - text);
    const char *name = config_trim(text, &nlen);
    size_t vlen = len - (size_t)(eq + 1 - text);
    const char *val = config_trim(eq + 1, &vlen);

    if (nlen == 0)
        return config_seterr(err, errlen, "missing parameter name before '='");
    const struct config_param *p = config_find(name, nlen);
    const struct ldap_conf_param *lp = NULL;
    const char *src = NULL;
    size_t srclen = 0;
    if (p == NULL)
        lp = ldap_conf_param_split(name, nlen, &src, &srclen);
    if (p == NULL && lp == NULL) {
        config_safe_name(safe, sizeof(safe), name, nlen);
        if (nlen > 5 && memcmp(name, "ldap_", 5) == 0)
            return config_seterr(err, errlen,
                                 "unknown parameter \"%s\" (an LDAP source parameter is "
                                 "ldap_NAME_PARAM, PARAM one of callahead.conf(5)'s)",
                                 safe);
        return config_seterr(err, errlen, "unknown parameter \"%s\"", safe);
    }
    if (lp != NULL) {
        /* the source's name is echoed in messages and matched by ldap:NAME routes */
        for (size_t i = 0; i < srclen; i++) {
            unsigned char ch = (unsigned char)src[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.')) {
                config_safe_name(safe, sizeof(safe), name, nlen);
                return config_seterr(err, errlen,
                                     "bad LDAP source name in \"%s\": letters, digits, '_', '-' "
                                     "and '.' only",
                                     safe);
            }
        }
        if (vlen > CONFIG_MAX_VALUE)
            return config_seterr(err, errlen, "value too long (at most %d bytes)",
                                 CONFIG_MAX_VALUE);
        for (size_t i = 0; i < vlen; i++)
            if (((unsigned char)val[i] < 0x20 && val[i] != '\t') || val[i] == 0x7f)
                return config_seterr(err, errlen, "control character in the value");
        char value[CONFIG_MAX_VALUE + 1];
        memcpy(value, val, vlen);
        value[vlen] = '\0';
        return config_source_param(c, src, srclen, lp, value, fname, line, err, errlen);
    }
    size_t idx = (size_t)(p - config_params);
    if (seen[idx])
        return config_seterr(err, errlen, "duplicate parameter \"%s\"", p->name);
    seen[idx] = 1;
    if (vlen > CONFIG_MAX_VALUE)
        return config_seterr(err, errlen, "value of %s too long (at most %d bytes)", p->name,
                             CONFIG_MAX_VALUE);
    /* a control character in a value is a damaged file, not a setting (tabs are blanks) */
    for (size_t i = 0; i < vlen; i++)
        if (((unsigned char)val[i] < 0x20 && val[i] != '\t') || val[i] == 0x7f)
            return config_seterr(err, errlen, "control character in the value of %s", p->name);
    char value[CONFIG_MAX_VALUE + 1];
    memcpy(value, val, vlen);
    value[vlen] = '\0';
    return config_set(c, p, value, err, errlen);
}

/* config_fail - "fname:line: reason", free c, return -1 */
static int config_fail(struct config *c, const char *fname, size_t line, const char *why, char *err,
                       size_t errlen)
{
    config_seterr(err, errlen, "%s:%zu: %s", fname ? fname : "(config)", line, why);
    config_free(c);
    return -1;
}

/*
 * config_parse - see config.h. c is first set to the defaults (any previous
 * contents are overwritten, not freed). A logical line is collected into a
 * bounded buffer as its physical lines arrive and applied when the next
 * non-continuation line (or the end) is reached.
 */
int config_parse(const char *text, size_t len, const char *fname, struct config *c, char *err,
                 size_t errlen)
{
    unsigned char seen[CONFIG_NPARAMS] = {0};
    char logical[CONFIG_MAX_LINE + 1];
    size_t llen = 0, lline = 0, lineno = 0;
    int have = 0, overflow = 0;
    char why[512];
    const char *p = text, *end = text + len;

    config_defaults(c);
    if (len > 0 && memchr(text, '\0', len) != NULL) {
        /* report the line it is on, as for every other error */
        const char *nul = memchr(text, '\0', len);
        size_t ln = 1;
        for (const char *q = text; q < nul; q++)
            ln += *q == '\n';
        return config_fail(c, fname, ln, "NUL byte in file", err, errlen);
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t plen = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;
        p = nl ? nl + 1 : end;
        lineno++;
        if (plen > 0 && line[plen - 1] == '\r')
            plen--;
        if (plen > CONFIG_MAX_LINE) {
            snprintf(why, sizeof(why), "line too long (at most %d bytes)", CONFIG_MAX_LINE);
            return config_fail(c, fname, lineno, why, err, errlen);
        }
        size_t tlen = plen;
        const char *t = config_trim(line, &tlen);
        if (tlen == 0 || t[0] == '#')
            continue; /* blank and comment lines, also between continuation lines */
        if (t != line) {
            /* leading whitespace: continue the previous parameter's value */
            if (!have)
                return config_fail(c, fname, lineno, "continuation line without a parameter", err,
                                   errlen);
            if (llen + 1 + tlen > sizeof(logical) - 1) {
                overflow = 1;
                continue;
            }
            logical[llen++] = ' ';
            memcpy(logical + llen, t, tlen);
            llen += tlen;
            continue;
        }
        if (have) {
            if (overflow) {
                snprintf(why, sizeof(why), "value too long (at most %d bytes)", CONFIG_MAX_VALUE);
                return config_fail(c, fname, lline, why, err, errlen);
            }
            logical[llen] = '\0';
            if (config_logical(c, logical, llen, seen, fname, lline, why, sizeof(why)) < 0)
                return config_fail(c, fname, lline, why, err, errlen);
        }
        memcpy(logical, t, tlen);
        llen = tlen;
        lline = lineno;
        have = 1;
        overflow = 0;
    }
    if (have) {
        if (overflow) {
            snprintf(why, sizeof(why), "value too long (at most %d bytes)", CONFIG_MAX_VALUE);
            return config_fail(c, fname, lline, why, err, errlen);
        }
        logical[llen] = '\0';
        if (config_logical(c, logical, llen, seen, fname, lline, why, sizeof(why)) < 0)
            return config_fail(c, fname, lline, why, err, errlen);
    }
    /* parameters that only make sense together */
    if (c->redis_sentinels[0] != '\0') {
        const char *bad = NULL;
        if (c->redis_master_name[0] == '\0')
            bad = "redis_sentinels needs redis_master_name";
        else if (c->redis_server[0] != '\0')
            bad = "set either redis_server or redis_sentinels, not both";
        if (bad != NULL) {
            config_seterr(err, errlen, "%s: %s", fname ? fname : "(config)", bad);
            config_free(c);
            return -1;
        }
    }
    return 0;
}

int config_load(const char *path, struct config *c, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        memset(c, 0, sizeof(*c));
        return config_seterr(err, errlen, "%s: %s", path, strerror(errno));
    }
    char *buf = malloc(CONFIG_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(fp);
        memset(c, 0, sizeof(*c));
        return config_seterr(err, errlen, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, CONFIG_MAX_FILE + 1, fp);
    int rerr = ferror(fp);
    fclose(fp);
    memset(c, 0, sizeof(*c));
    if (rerr) {
        free(buf);
        return config_seterr(err, errlen, "%s: read error", path);
    }
    if (n > CONFIG_MAX_FILE) {
        free(buf);
        return config_seterr(err, errlen, "%s: file too large (at most %d bytes)", path,
                             CONFIG_MAX_FILE);
    }
    int rc = config_parse(buf, n, path, c, err, errlen);
    free(buf);
    return rc;
}

void config_verifier(const struct config *c, struct verifier_config *vc)
{
    memset(vc, 0, sizeof(*vc));
    vc->route_table = c->route_table;
    vc->recipient_delimiter = c->recipient_delimiter;
    vc->answer_budget_ms = c->answer_budget_ms;
    vc->max_probes = c->max_probes;
    vc->max_probes_per_destination = c->max_probes_per_destination;
    vc->probe_queue_limit = c->probe_queue_limit;
    vc->probe_queue_per_destination = c->probe_queue_per_destination;
    vc->flight_timeout_ms = c->flight_timeout_ms;
    vc->dns_servers = c->dns_servers;
    vc->sources = c->sources;
    vc->nsources = c->nsources;
    vc->dns_timeout_ms = c->dns_timeout_ms;
    vc->cache.key_prefix = c->redis_key_prefix;
    vc->cache.l1_max_entries = (size_t)c->cache_l1_size;
    vc->cache.l1_ttl = c->cache_l1_ttl;
    for (int k = 0; k < VERDICT_KIND_COUNT; k++) {
        vc->cache.ttl[k] = c->ttl[k];
        vc->cache.refresh[k] = c->refresh[k];
    }
    vc->cache.use_redis = c->redis_server != NULL && c->redis_server[0] != '\0';
    if (c->redis_sentinels != NULL && c->redis_sentinels[0] != '\0') {
        vc->cache.use_redis = 1;
        vc->cache.redis.sentinels = c->redis_sentinels;
        vc->cache.redis.master_name = c->redis_master_name;
    } else if (vc->cache.use_redis) {
        if (strncmp(c->redis_server, "unix:", 5) == 0) {
            vc->cache.redis.unix_path = c->redis_server + 5;
        } else {
            vc->cache.redis.host = c->redis_host;
            vc->cache.redis.port = c->redis_port;
        }
    }
    vc->cache.redis.timeout_ms = c->redis_timeout_ms;
    vc->cache.redis.reconnect_min_ms = 100;
    vc->cache.redis.reconnect_max_ms = c->redis_reconnect_max_ms;
    vc->cache.redis.password = c->redis_password;
    vc->cache.redis.db = c->redis_db;
}

/* config_format_time - seconds in the largest unit that keeps them exact */
static void config_format_time(char *buf, size_t size, long v)
{
    if (v != 0 && v % DAY == 0)
        snprintf(buf, size, "%ldd", v / DAY);
    else if (v != 0 && v % 3600 == 0)
        snprintf(buf, size, "%ldh", v / 3600);
    else if (v != 0 && v % 60 == 0)
        snprintf(buf, size, "%ldm", v / 60);
    else
        snprintf(buf, size, "%lds", v);
}

/*
 * config_format - the value of p in c as it would be written in the file.
 * Returns buf, or a string from c (listen values and strings can be long).
 */
static const char *config_format(const struct config *c, const struct config_param *p, char *buf,
                                 size_t size)
{
    const void *field = config_cfield(c, p);
    long v;

    switch (p->type) {
    case CONFIG_STR:
    case CONFIG_ACTION: {
        const char *s = *(char *const *)field;
        return s ? s : "";
    }
    case CONFIG_LISTEN: {
        /* ", " reads best; fall back to " " so the line still parses back within limits */
        size_t total = 0;
        for (int i = 0; i < c->nlisten && i < CONFIG_MAX_LISTEN; i++)
            total += strlen(c->listen[i]) + (i ? 2 : 0);
        const char *sep = total <= CONFIG_MAX_VALUE ? ", " : " ";
        size_t n = 0;
        buf[0] = '\0';
        for (int i = 0; i < c->nlisten && i < CONFIG_MAX_LISTEN; i++) {
            int w = snprintf(buf + n, size - n, "%s%s", i ? sep : "", c->listen[i]);
            if (w < 0 || (size_t)w >= size - n)
                break;
            n += (size_t)w;
        }
        return buf;
    }
    default:
        break;
    }
    if (p->offset == OFF(limits.max_line) || p->offset == OFF(limits.max_request))
        v = (long)*(const size_t *)field;
    else
        v = *(const int *)field;
    switch (p->type) {
    case CONFIG_BOOL:
        return v ? "yes" : "no";
    case CONFIG_TIME:
        config_format_time(buf, size, v);
        break;
    case CONFIG_MS:
        snprintf(buf, size, "%ldms", v);
        break;
    case CONFIG_MODE:
        snprintf(buf, size, "%04lo", (unsigned long)v);
        break;
    default:
        snprintf(buf, size, "%ld", v);
        break;
    }
    return buf;
}

void config_print(FILE *fp, const struct config *c, int only_changed)
{
    struct config def;
    char a[CONFIG_MAX_LINE + 1], b[CONFIG_MAX_LINE + 1];

    if (only_changed)
        config_defaults(&def);
    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        const struct config_param *p = &config_params[i];
        const char *val = config_format(c, p, a, sizeof(a));
        if (only_changed && strcmp(val, config_format(&def, p, b, sizeof(b))) == 0)
            continue;
        /* an empty value prints as "name =", which parses back to empty */
        fprintf(fp, "%s =%s%s\n", p->name, *val ? " " : "", val);
    }
    if (only_changed)
        config_free(&def);
    /* named sources: only what was set (each has its own defaults); no password */
    for (size_t i = 0; i < c->nsources; i++)
        for (size_t j = 0; j < c->sources[i].nparams; j++) {
            const struct backend_param *bp = &c->sources[i].params[j];
            int secret = strcmp(bp->name, "bind_pw") == 0;
            fprintf(fp, "%s_%s_%s =%s%s\n", c->sources[i].type, c->sources[i].name, bp->name,
                    *bp->value ? " " : "", secret ? "(not shown)" : bp->value);
        }
}

/*
 * config_restart_changes - list in buf (comma separated, cut to size) the
 * RESTART parameters whose values differ between running and next, as
 * "callahead-policyd -n" would print them; returns how many differ.
 */
int config_restart_changes(const struct config *running, const struct config *next, char *buf,
                           size_t size)
{
    char a[CONFIG_MAX_LINE + 1], b[CONFIG_MAX_LINE + 1];
    int n = 0;
    size_t used = 0;

    if (size > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        const struct config_param *p = &config_params[i];
        if (!p->restart || strcmp(config_format(running, p, a, sizeof(a)),
                                  config_format(next, p, b, sizeof(b))) == 0)
            continue;
        if (used < size) {
            int w = snprintf(buf + used, size - used, "%s%s", n ? ", " : "", p->name);
            used += w > 0 ? (size_t)w : 0;
        }
        n++;
    }
    return n;
}

/*
 * config_changed - 1 when parameter name has another value in next than in
 * running (compared as -n prints them), 0 when not, -1 for an unknown name
 */
int config_changed(const struct config *running, const struct config *next, const char *name)
{
    char a[CONFIG_MAX_LINE + 1], b[CONFIG_MAX_LINE + 1];

    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        const struct config_param *p = &config_params[i];
        if (strcmp(p->name, name) == 0)
            return strcmp(config_format(running, p, a, sizeof(a)),
                          config_format(next, p, b, sizeof(b))) != 0;
    }
    return -1;
}

/* config_troff_text - s with troff's escape character and line-start controls made literal */
static void config_troff_text(FILE *fp, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", fp);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", fp);
        else if (*s == '-')
            fputs("\\-", fp);
        else
            fputc(*s, fp);
    }
}

/* config_wrap - s as plain text, indented, wrapped near 76 columns */
static void config_wrap(FILE *fp, const char *s, int indent)
{
    int col = 0;

    while (*s) {
        size_t w = strcspn(s, " ");
        if (col > indent && col + 1 + (int)w > 76) {
            fputc('\n', fp);
            col = 0;
        }
        if (col == 0) {
            fprintf(fp, "%*s", indent, "");
            col = indent;
        } else {
            fputc(' ', fp);
            col++;
        }
        fwrite(s, 1, w, fp);
        col += (int)w;
        s += w;
        s += strspn(s, " ");
    }
    if (col > 0)
        fputc('\n', fp);
}

/*
 * config_doc_entry - one parameter of -d (text) or -m (troff): its name after
 * a prefix (troff_prefix is already troff), its default, whether a change
 * needs a restart, and its sentence; the main and the LDAP tables share it
 */
static void config_doc_entry(FILE *fp, int troff, const char *troff_prefix, const char *text_prefix,
                             const char *name, const char *def, int restart, const char *doc)
{
    const char *shown = *def ? def : "empty";
    const char *note = restart ? "; a change needs a restart" : "";

    if (troff) {
        fprintf(fp, ".TP\n.B %s", troff_prefix);
        config_troff_text(fp, name);
        fputs("\n(default: ", fp);
        config_troff_text(fp, shown);
        fprintf(fp, "%s)\n", note);
        config_troff_text(fp, doc);
    } else {
        fprintf(fp, "%s%s (default: %s%s)\n", text_prefix, name, shown, note);
        config_wrap(fp, doc, 4);
    }
    fputc('\n', fp);
}

/*
 * config_print_ldap_doc - the parameters of a named LDAP source, from
 * ldap_conf.c's table, as ldap_NAME_PARAM
 */
static void config_print_ldap_doc(FILE *fp, int troff)
{
    static const char intro[] =
        "A route ldap:NAME is verified against the LDAP source NAME, whose parameters are "
        "written ldap_NAME_PARAM = value (NAME: lower case letters, digits and '_'); the "
        "PARAMs below take the names of Postfix's ldap_table(5) where they mean the same, so "
        "the lines of a Postfix LDAP map file can be copied with the prefix added. Each "
        "source has its own defaults; an unknown PARAM is an error. Values are checked when "
        "the route table is loaded (start-up, reload, -t).";

    if (troff) {
        fputs(".SH LDAP SOURCES\n", fp);
        config_troff_text(fp, intro);
        fputc('\n', fp);
    } else {
        fputs("LDAP SOURCES\n", fp);
        config_wrap(fp, intro, 4);
        fputc('\n', fp);
    }
    for (size_t i = 0; i < ldap_conf_nparams; i++) {
        const struct ldap_conf_param *p = &ldap_conf_params[i];
        config_doc_entry(fp, troff, "ldap_\\fINAME\\fB_", "ldap_NAME_", p->name, p->def, 0, p->doc);
    }
}

void config_print_doc(FILE *fp, int troff)
{
    for (size_t i = 0; i < CONFIG_NPARAMS; i++) {
        const struct config_param *p = &config_params[i];
        config_doc_entry(fp, troff, "", "", p->name, p->def, p->restart, p->doc);
    }
    config_print_ldap_doc(fp, troff);
}
