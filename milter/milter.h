/*
 * milter.h - the libmilter callbacks of callahead-milter: at RCPT ask
 * policyd over the policy protocol and turn its action into a milter reply.
 * No verification logic lives here; policyd (one cache, one flight table,
 * one circuit breaker for every MTA on the host) decides.
 */
#ifndef CALLAHEAD_MILTER_H
#define CALLAHEAD_MILTER_H

#include <stddef.h>

#include "netlist.h"
#include "policy_client.h"

/* what the callbacks need from the configuration; set before smfi_main, read-only after */
struct milter_settings {
    struct policy_endpoint policy;
    int timeout_ms;         /* one policy query, connect included */
    int default_tempfail;   /* 1: tempfail, 0: continue when policyd fails */
    int max_inflight;       /* policy queries at once over all sessions */
    int skip_authenticated; /* {auth_authen} set: do not verify */
    struct netlist skip_networks;
    int error_log_interval; /* seconds between "policyd unreachable" lines */
};

/*
 * milter_register - hand our callbacks to libmilter (smfi_register). s must
 * live until smfi_main returns. 0 ok, -1 and a reason in err.
 */
int milter_register(const struct milter_settings *s, char *err, size_t errlen);

#endif
