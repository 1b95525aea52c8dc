/*
 * fuzz_milter_reply.c - libFuzzer harness for the milter's mapping of a
 * policyd action line (and of milter_skip_networks). The first input byte
 * chooses the recipient's length and whether the MTA names the address
 * itself; the rest is split into a recipient and an action. Every reply that
 * comes out is checked against what libmilter demands: a code whose class
 * matches the verdict, an enhanced status of the same class, a text of
 * printable ASCII with every '%' doubled, within the length limit.
 *
 * Build and run: FUZZ_ONLY=milter_reply tests/fuzz/run.sh
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter_reply.h"
#include "netlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* check - abort unless r keeps libmilter's rules */
static void check(const struct milter_reply *r)
{
    size_t len = strlen(r->text);

    if (len > MILTER_REPLY_MAX_TEXT)
        abort();
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if (c < 0x20 || c >= 0x7f)
            abort();
        if (c == '%') {
            if (i + 1 >= len || r->text[i + 1] != '%')
                abort();
            i++;
        }
    }
    if (r->verdict == MILTER_CONTINUE)
        return;
    char want = r->verdict == MILTER_REJECT ? '5' : '4';
    if (strlen(r->rcode) != 3 || r->rcode[0] != want || r->xcode[0] != want || r->xcode[1] != '.')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct milter_reply r;
    struct netlist nl;
    char err[128];

    if (size == 0)
        return 0;
    size_t rlen = (size_t)(data[0] & 0x7f);
    int names_5xx = data[0] >> 7;
    data++;
    size--;
    if (rlen > size)
        rlen = size;
    char *rcpt = strndup((const char *)data, rlen);
    char *action = strndup((const char *)data + rlen, size - rlen);
    if (rcpt == NULL || action == NULL)
        abort();
    if (milter_reply_from_action(action, rcpt, names_5xx, &r) == 0)
        check(&r);
    milter_reply_tempfail(&r, rcpt, action);
    check(&r);
    netlist_parse(action, &nl, err, sizeof(err));
    free(rcpt);
    free(action);
    return 0;
}
