/*
 * smtp_nexthop.c - parse an smtp: route's argument into a next hop.
 *
 * Pure string work, done once when the route is opened: the session code
 * never sees the argument, only the parsed kind, port and name or address.
 */
#include "smtp_nexthop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* valid_hostname - dot-separated labels of 1..63 letters, digits, '-', '_'; no '-' at an end */
static int valid_hostname(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_' || (ch == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return s[len - 1] != '-';
}

int smtp_nexthop_parse(const char *arg, struct smtp_nexthop *nh, char *err, size_t errlen)
{
    char host[SMTP_HOST_MAX];
    const char *port_s = NULL;
    unsigned long port = SMTP_DEFAULT_PORT;
    size_t hlen;
    struct sockaddr_in *sin = (struct sockaddr_in *)&nh->literal.addrs[0];
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&nh->literal.addrs[0];
    const char *h;

    memset(nh, 0, sizeof(*nh));
    nh->port = SMTP_DEFAULT_PORT;
    if (arg == NULL || *arg == '\0') {
        snprintf(err, errlen, "smtp: needs a next hop, e.g. smtp:[192.0.2.1]:25 or smtp:mx");
        return -1;
    }
    if (strcmp(arg, "mx") == 0) {
        nh->kind = SMTP_NEXTHOP_MX;
        return 0;
    }
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL) {
            snprintf(err, errlen, "smtp:%s: missing ']'", arg);
            return -1;
        }
        hlen = (size_t)(close - arg - 1);
        if (hlen >= sizeof(host))
            goto bad_host;
        memcpy(host, arg + 1, hlen);
        host[hlen] = '\0';
        if (close[1] == ':')
            port_s = close + 2;
        else if (close[1] != '\0')
            goto bad_syntax;
    } else {
        const char *colon = strchr(arg, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            snprintf(err, errlen, "smtp:%s: write an IPv6 address in brackets: [addr]:port", arg);
            return -1;
        }
        hlen = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
        if (hlen >= sizeof(host))
            goto bad_host;
        memcpy(host, arg, hlen);
        host[hlen] = '\0';
        if (colon != NULL)
            port_s = colon + 1;
    }
    if (port_s != NULL) {
        char *end;
        if (*port_s < '0' || *port_s > '9')
            goto bad_syntax;
        errno = 0;
        port = strtoul(port_s, &end, 10);
        if (errno != 0 || *end != '\0' || port == 0 || port > 65535) {
            snprintf(err, errlen, "smtp:%s: bad port", arg);
            return -1;
        }
    }
    nh->port = (unsigned)port;
    h = host;
    if (strncasecmp(h, "ipv6:", 5) == 0)
        h += 5;
    memset(&nh->literal, 0, sizeof(nh->literal));
    if (h == host && inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        inet_ntop(AF_INET, &sin->sin_addr, nh->name, (socklen_t)sizeof(nh->name));
        nh->kind = SMTP_NEXTHOP_LITERAL;
    } else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        inet_ntop(AF_INET6, &sin6->sin6_addr, nh->name, (socklen_t)sizeof(nh->name));
        nh->kind = SMTP_NEXTHOP_LITERAL;
    } else if (h == host && valid_hostname(h)) {
        snprintf(nh->name, sizeof(nh->name), "%s", h);
        nh->kind = SMTP_NEXTHOP_NAME;
        return 0;
    } else {
        goto bad_host;
    }
    nh->literal.naddrs = 1;
    snprintf(nh->literal.host, sizeof(nh->literal.host), "%s", nh->name);
    return 0;

bad_host:
    snprintf(err, errlen, "smtp:%s: bad host: expected an IPv4 address, [IPv6 address] or name",
             arg);
    return -1;
bad_syntax:
    snprintf(err, errlen, "smtp:%s: expected [host]:port or host:port", arg);
    return -1;
}
