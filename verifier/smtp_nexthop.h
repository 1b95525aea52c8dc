/*
 * smtp_nexthop.h - the next hop of an smtp: route, from its argument.
 *
 * The route argument says where callouts go; it is parsed once, when the
 * route is opened, so that a typo stops start-up (or a reload) instead of
 * turning every lookup into a tempfail:
 *   "mx"                                  the recipient domain's MX hosts
 *   "[192.0.2.1]:25", "192.0.2.1:25", "[::1]:25", "[IPv6:::1]", "192.0.2.1"
 *                                         an address: no DNS
 *   "[mail.example.org]:25", "mail.example.org:25", "mail.example.org"
 *                                         a host name, resolved per lookup
 * Unlike Postfix, a name without brackets does NOT mean an MX lookup of the
 * name: write smtp:mx for that. The port defaults to 25.
 */
#ifndef CALLAHEAD_SMTP_NEXTHOP_H
#define CALLAHEAD_SMTP_NEXTHOP_H

#include <stddef.h>

#include "dns.h"

#define SMTP_DEFAULT_PORT 25
#define SMTP_HOST_MAX (DNS_NAME_MAX + 3) /* a host name or an address in text */

enum smtp_nexthop_kind {
    SMTP_NEXTHOP_LITERAL, /* smtp:[192.0.2.1]:25: no DNS */
    SMTP_NEXTHOP_NAME,    /* smtp:[mail.example.org]:25: A/AAAA per lookup */
    SMTP_NEXTHOP_MX,      /* smtp:mx: MX of the recipient's domain per lookup */
};

/* smtp_nexthop - a parsed route argument */
struct smtp_nexthop {
    enum smtp_nexthop_kind kind;
    unsigned port;             /* SMTP_DEFAULT_PORT unless the argument names one */
    char name[SMTP_HOST_MAX];  /* host name, or the normalised address text; "" for mx */
    struct dns_target literal; /* SMTP_NEXTHOP_LITERAL: the one address (port not set) */
};

/*
 * smtp_nexthop_parse - parse the route argument arg into *nh. An address
 * literal is normalised ("[IPv6:0:0::1]" -> "::1"). Returns 0, or -1 with
 * err (errlen bytes) saying what is wrong.
 */
int smtp_nexthop_parse(const char *arg, struct smtp_nexthop *nh, char *err, size_t errlen);

#endif
