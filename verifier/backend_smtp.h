/*
 * backend_smtp.h - SMTP call-forward verification ("callout") to a static
 * next hop: route method smtp:[host]:port.
 *
 * Each lookup opens one SMTP session to the route's next hop on the event
 * loop and walks it through greeting, EHLO (HELO if EHLO is refused), MAIL
 * FROM and RCPT TO, then QUITs. The RCPT reply decides:
 *   250/251                     -> valid
 *   5xx in invalid_codes        -> invalid, with the next hop's code and text
 *   4xx, other 5xx              -> tempfail, with the next hop's code and text
 * and anything that says nothing about the address -> tempfail with code 0
 * and a reason: connect failure, a step's deadline, a 421, a malformed reply,
 * an early disconnect, a refusal at greeting/EHLO+HELO/MAIL (the next hop
 * refuses us, not the address).
 *
 * Route argument: "[host]:port", "host:port", "[host]" or "host" (port 25);
 * host is an IPv4 address or a bracketed IPv6 address ("[::1]:25",
 * "[ipv6:::1]"). Host names are not resolved yet (that needs evdns): open
 * fails with a message that says so. "mx" (MX lookup) is not done here yet.
 *
 * Route options (times are seconds, or "500ms", "5s"):
 *   connect_timeout=5s      TCP connect
 *   greeting_timeout=10s    220 greeting
 *   command_timeout=10s     default for the three below
 *   ehlo_timeout, mail_timeout, rcpt_timeout   each command's reply
 *   quit_timeout=2s         QUIT reply (after the verdict; never changes it)
 *   queue_timeout=10s       wait for a connection slot when max_connections are open
 *   max_connections=20      open sessions to this next hop at once; more lookups queue (FIFO)
 *   sender=                 MAIL FROM address; empty (default) means "<>"
 *   helo_name=              EHLO/HELO name; default gethostname(), else "localhost"
 *   invalid_codes=5xx       comma list of RCPT codes that mean invalid: "550,551,553", "55x", "5xx"
 * RFC 5321 4.5.3.2 suggests 5 minutes for the greeting and for RCPT: those are
 * for delivery. A verifier answers a waiting client, so the defaults are short.
 *
 * The verdict's source is "smtp:[host]:port". Nothing is written to disk.
 */
#ifndef CALLAHEAD_BACKEND_SMTP_H
#define CALLAHEAD_BACKEND_SMTP_H

#include "backend.h"

extern const struct backend_ops backend_smtp_ops;

#endif
