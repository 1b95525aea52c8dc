/*
 * policy_proto.h - the Postfix SMTPD access policy delegation protocol,
 * request side (see Postfix's SMTPD_POLICY_README).
 *
 * A request is "name=value" lines ended by an empty line; the reply is
 * "action=..." and an empty line. The parser takes one line at a time
 * (without its LF; a trailing CR is tolerated) so the connection code can
 * enforce the line limit before buffering, and so the parser can be fuzzed
 * alone. Everything here is untrusted input: every limit is a parameter.
 */
#ifndef CALLAHEAD_POLICY_PROTO_H
#define CALLAHEAD_POLICY_PROTO_H

#include <stddef.h>

struct policy_limits {
    size_t max_line;    /* longest line, without LF */
    int max_attributes; /* attributes per request */
    size_t max_request; /* bytes per request, all lines */
};

/* the attributes we use; everything else is counted and ignored, as the protocol requires */
struct policy_request {
    char *request;        /* "smtpd_access_policy" */
    char *protocol_state; /* "RCPT", ... */
    char *protocol_name;
    char *recipient;
    char *sender;
    char *client_address;
    char *client_name;
    char *helo_name;
    char *queue_id;
    char *sasl_username; /* set when the client authenticated (harvest exemption) */
    char *instance;
    /* the values above point into this one block (policy_proto.c owns it) */
    char *values;
    size_t values_used, values_size;
    int nattributes;
    size_t size;
};

void policy_request_init(struct policy_request *r);
/* policy_request_reset - free the values, ready for the next request on the connection */
void policy_request_reset(struct policy_request *r);

enum policy_line_status {
    POLICY_LINE_ERROR = -1, /* protocol error: err says why; send no reply, close */
    POLICY_LINE_MORE = 0,   /* attribute taken (or ignored); need more lines */
    POLICY_LINE_END = 1     /* empty line: the request is complete */
};

/*
 * policy_request_add_line - add one line (len bytes, no LF, may contain any
 * byte). Errors: NUL byte, line longer than max_line, no '=', empty name,
 * too many attributes, request too big, a used attribute given twice, an
 * empty line before any attribute.
 */
enum policy_line_status policy_request_add_line(struct policy_request *r, const char *line,
                                                size_t len, const struct policy_limits *lim,
                                                char *err, size_t errlen);

/*
 * policy_format_reply - "action=<action>\n\n" into buf. Returns the length,
 * or -1 if it does not fit or action contains CR, LF or NUL.
 */
int policy_format_reply(const char *action, char *buf, size_t size);

#endif
