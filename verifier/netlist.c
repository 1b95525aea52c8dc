/*
 * netlist.c - client network lists: milter_skip_networks,
 * harvest_exempt_networks (see netlist.h).
 */
#include "netlist.h"
#include "verdict.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* netlist_entry_parse - one "ADDRESS[/BITS]" (s, len bytes) into e */
static int netlist_entry_parse(const char *s, size_t len, struct netlist_entry *e)
{
    char buf[64];
    const char *slash;
    int max;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    if (slash)
        buf[slash - buf] = '\0';
    memset(e, 0, sizeof(*e));
    /* "[::1]" is how Postfix writes IPv6 in mynetworks; accept it too */
    char *a = buf;
    size_t alen = strlen(a);
    if (alen > 2 && a[0] == '[' && a[alen - 1] == ']') {
        a[alen - 1] = '\0';
        a++;
    }
    if (inet_pton(AF_INET, a, e->addr) == 1) {
        e->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, a, e->addr) == 1) {
        e->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    e->bits = max;
    if (slash) {
        const char *b = slash + 1;
        int v = 0;
        if (*b == '\0' || strlen(b) > 3 || strspn(b, "0123456789") != strlen(b))
            return -1;
        v = atoi(b);
        if (v > max)
            return -1;
        e->bits = v;
    }
    /* clear host bits so matching is one masked compare */
    for (int i = 0; i < max / 8; i++) {
        int keep = e->bits - i * 8;
        if (keep >= 8)
            continue;
        e->addr[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
    }
    return 0;
}

int netlist_parse(const char *s, struct netlist *nl, char *err, size_t errlen)
{
    const char *p = s;

    memset(nl, 0, sizeof(*nl));
    for (;;) {
        p += strspn(p, ", \t");
        if (*p == '\0')
            return 0;
        size_t len = strcspn(p, ", \t");
        if (nl->n == NETLIST_MAX) {
            snprintf(err, errlen, "more than %d networks", NETLIST_MAX);
            return -1;
        }
        if (netlist_entry_parse(p, len, &nl->e[nl->n]) < 0) {
            char safe[72]; /* the token as written, made printable: it goes to a terminal */
            verdict_sanitize(safe, sizeof(safe), p, len > 64 ? 64 : len);
            snprintf(err, errlen, "bad network \"%s\" (want ADDRESS or ADDRESS/BITS)", safe);
            return -1;
        }
        nl->n++;
        p += len;
    }
}

/* netlist_prefix_eq - the first bits of a and b agree */
static int netlist_prefix_eq(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int netlist_match(const struct netlist *nl, const struct sockaddr *sa)
{
    unsigned char a4[4], a6[16];
    int have4 = 0, have6 = 0;

    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        have4 = 1;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        memcpy(a6, in6, 16);
        have6 = 1;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(a4, a6 + 12, 4);
            have4 = 1;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < nl->n; i++) {
        const struct netlist_entry *e = &nl->e[i];
        if (e->family == AF_INET && have4 && netlist_prefix_eq(e->addr, a4, e->bits))
            return 1;
        if (e->family == AF_INET6 && have6 && netlist_prefix_eq(e->addr, a6, e->bits))
            return 1;
    }
    return 0;
}
