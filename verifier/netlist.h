/*
 * netlist.h - a short list of client networks (milter_skip_networks,
 * harvest_exempt_networks): "ADDRESS[/BITS]" entries, IPv4 or IPv6, comma
 * or space separated. One grammar for every network list in callahead.conf.
 *
 * Parsed once at start-up (or reload), then only read (the milter reads
 * it from every libmilter thread), so no locking. An IPv4-mapped IPv6 client (::ffff:192.0.2.1)
 * matches IPv4 entries, because that is how a dual-stack MTA may report an IPv4 peer.
 */
#ifndef CALLAHEAD_NETLIST_H
#define CALLAHEAD_NETLIST_H

#include <stddef.h>
#include <sys/socket.h>

#define NETLIST_MAX 64

struct netlist_entry {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, host bits cleared */
    int bits;               /* prefix length */
};

struct netlist {
    struct netlist_entry e[NETLIST_MAX];
    int n;
};

/* netlist_parse - s into nl; 0 ok, -1 and the bad entry in err */
int netlist_parse(const char *s, struct netlist *nl, char *err, size_t errlen);

/* netlist_match - does the address sa (AF_INET/AF_INET6; NULL never) fall in nl? */
int netlist_match(const struct netlist *nl, const struct sockaddr *sa);

#endif
