/*
 * fuzz_policy_proto.c - libFuzzer harness for the policy request parser and
 * the action expansion that turns what it parsed into a reply line.
 *
 * The input is a byte stream as a client would send it: split at LF, fed
 * line by line, a completed request is used and reset, an error stops the
 * "connection". Properties checked beyond "no crash": the request size never
 * exceeds the limit, error strings are printable, and an expanded action with
 * the hostile recipient in it never contains CR or LF.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply_action.h"
#include "policy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* check_printable - abort on a byte a log line or reply line must not carry */
static void check_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            abort();
}

/* use_request - what policy_conn does with a complete request, minus the verifier */
static void use_request(const struct policy_request *r)
{
    struct verdict v;
    char action[512], reply[600];

    verdict_set(&v, VERDICT_INVALID, 550, "fuzz", r->sender ? r->sender : "");
    reply_action_expand("550 5.1.1 <%a>: %r (%s %c) %%", &v, r->recipient ? r->recipient : "",
                        action, sizeof(action));
    check_printable(action);
    if (policy_format_reply(action, reply, sizeof(reply)) < 0)
        abort(); /* a sanitised action of < 512 bytes always fits */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* small limits so the fuzzer reaches them */
    static const struct policy_limits lim = {
        .max_line = 256, .max_attributes = 20, .max_request = 2048};
    struct policy_request r;
    const char *p = (const char *)data, *end = p + size;
    char err[128];

    policy_request_init(&r);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break; /* an incomplete line waits for more input */
        err[0] = '\0';
        enum policy_line_status st =
            policy_request_add_line(&r, p, (size_t)(nl - p), &lim, err, sizeof(err));
        p = nl + 1;
        if (r.size > lim.max_request || r.nattributes > lim.max_attributes)
            abort();
        if (st == POLICY_LINE_ERROR) {
            if (err[0] == '\0')
                abort();
            check_printable(err);
            break;
        }
        if (st == POLICY_LINE_END) {
            use_request(&r);
            policy_request_reset(&r);
        }
    }
    policy_request_reset(&r);
    return 0;
}
