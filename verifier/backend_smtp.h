/*
 * backend_smtp.h - SMTP call-forward verification ("callout"): route methods
 * smtp:[host]:port, smtp:host:port and smtp:mx.
 *
 * A lookup gets an SMTP session to the next hop on the event loop, walks it
 * through greeting, EHLO (HELO if EHLO is refused), MAIL FROM and RCPT TO.
 * The RCPT reply decides (smtp_status.h, docs/CALLOUTS.md):
 *   250/251                     -> valid
 *   5xx in invalid_codes with an enhanced status in invalid_status
 *                               -> invalid, with the next hop's code and text
 *   5xx in invalid_codes without a readable status
 *                               -> per bare_5xx: invalid if the next hop
 *                                  accepted a RCPT of ours within
 *                                  confirm_window, else tempfail with its code
 *   5xx X.7 / X.3-X.6 / X.1.7-8 -> the next hop refuses us: as below
 *   4xx, other 5xx              -> tempfail, with the next hop's code and text
 * and anything that says nothing about the address -> tempfail with code 0
 * and a reason: connect failure, a step's deadline, a 421, a malformed reply,
 * an early disconnect, a refusal at greeting/EHLO+HELO/MAIL or a policy or
 * system refusal at RCPT (the next hop refuses us, not the address). Code 0
 * is what the verifier's circuit breaker counts as a failure of the next hop.
 *
 * Next hops (the route argument):
 *   "[192.0.2.1]:25", "192.0.2.1:25", "[::1]:25", "[IPv6:::1]", "192.0.2.1"
 *       an address: no DNS.
 *   "[mail.example.org]:25", "mail.example.org:25", "mail.example.org"
 *       a host name: its A/AAAA records are looked up for every lookup
 *       (dns_host_lookup), addresses tried in order on connect failure or a
 *       refused greeting. Unlike Postfix, the form without brackets does NOT
 *       mean an MX lookup of the name: write smtp:mx for that. A name that
 *       does not resolve is tempfail (our configuration, not the address).
 *   "mx"
 *       the MX records of the recipient's domain, in preference order, with
 *       RFC 5321 5.1's implicit MX (the domain's own A/AAAA) when there is no
 *       MX (dns_mx_lookup). The next address, then the next MX host, is tried
 *       when a connection fails or times out, or the greeting is not 220 (4xx,
 *       421 and also 5xx, like Postfix's smtp_skip_5xx_greeting) or never
 *       comes. A RCPT reply (even 4xx) is the answer: no fall back then.
 *       Decision: a domain that does not exist (NXDOMAIN) or that publishes a
 *       null MX (RFC 7505) or no MX and no address cannot receive mail, so
 *       every recipient in it is "invalid 550 5.1.2 domain has no mail
 *       server" (source "smtp:mx"): the MTA would bounce such mail anyway,
 *       and rejecting at RCPT is kinder to the sender. A DNS timeout or
 *       SERVFAIL, or MX hosts none of which resolve, is tempfail. A domain
 *       literal ("user@[192.0.2.1]") is not routed by MX: tempfail.
 * Host names need the resolver the verifier passes in backend_env.dns; when
 * it passes NULL, the route opens its own from /etc/resolv.conf.
 *
 * Sessions are pooled per destination (host name or address, and port): for
 * smtp:mx that is each MX host, shared by every domain it serves, so the
 * connection limit and the pool protect the next hop, not a domain. After a
 * RCPT reply a session waits idle in the pool with its mail transaction open
 * (unless reuse=no, or it carried max_rcpts_per_session RCPTs or took
 * max_rejects_per_session 4xx/5xx replies: then it QUITs); the next lookup
 * for that destination sends only RCPT TO on it. RSET, MAIL FROM, RCPT TO
 * (in one write when the next hop offers PIPELINING) start a new
 * transaction when one is needed: SMTPUTF8 for a UTF-8 local part, or once
 * more for a RCPT refused (or 452) in a transaction shared with others. A
 * session that saw a 421, a timeout, garbage or a disconnect is never
 * pooled; one the next hop closes while idle leaves the pool; one whose
 * first command after the pool (RCPT or RSET) fails is dropped and the
 * lookup starts a new connection, once. Idle sessions count against
 * max_connections; a lookup waiting for a slot is handed an idle session
 * before it would wait. close() sends QUIT to idle sessions without waiting.
 *
 * Route options (times are seconds, or "500ms", "5s"):
 *   connect_timeout=5s      TCP connect (per address tried)
 *   greeting_timeout=10s    220 greeting
 *   command_timeout=10s     default for the four below
 *   ehlo_timeout, mail_timeout, rcpt_timeout, rset_timeout   each command's reply
 *   quit_timeout=2s         QUIT reply (after the verdict; never changes it)
 *   queue_timeout=10s       wait for a connection slot when max_connections are open
 *   max_connections=20      open sessions (busy and idle) per destination; more lookups
 *                           queue (FIFO)
 *   reuse=yes               keep sessions (and their transaction) for later lookups
 *   max_rcpts_per_session=100  RCPTs one session carries before it QUITs
 *   max_rejects_per_session=8  4xx/5xx replies one session takes before it QUITs
 *                              (below Postfix's smtpd_soft_error_limit of 10, past
 *                              which a Postfix next hop slows every reply by 1s)
 *   pipelining=yes          send MAIL and RCPT (after RSET) in one write when offered
 *   idle_timeout=5s         an idle pooled session QUITs after this long
 *   max_addresses=5         new connections one lookup may open, over all addresses
 *                           and MX hosts (Postfix's smtp_mx_address_limit)
 *   port=25                 smtp:mx only: the port of the MX hosts
 *   sender=                 MAIL FROM address; empty (default) means "<>"
 *   helo_name=              EHLO/HELO name; default gethostname(), else "localhost"
 *   invalid_codes=5xx       comma list of RCPT codes that may mean invalid: "550,551,553", "55x"
 *   invalid_status=5.1.0,5.1.1,5.1.2,5.1.3,5.1.6,5.1.10   statuses that mean "no such mailbox"
 *   bare_5xx=confirm        a 5xx without a readable status: confirm, invalid or tempfail
 *   confirm_window=10m      how recent an accepted RCPT must be to confirm a bare 5xx
 * RFC 5321 4.5.3.2 suggests 5 minutes for the greeting and for RCPT: those are
 * for delivery. A verifier answers a waiting client, so the defaults are short.
 *
 * The verdict's source names the host that answered, as configured or as
 * the MX record names it: "smtp:[192.0.2.1]:25", "smtp:[mx1.example.org]:25"
 * (truncated to VERDICT_SOURCE_MAX), or "smtp:mx" when DNS decided. Nothing
 * is written to disk.
 */
#ifndef CALLAHEAD_BACKEND_SMTP_H
#define CALLAHEAD_BACKEND_SMTP_H

#include "backend.h"

extern const struct backend_ops backend_smtp_ops;

#endif
