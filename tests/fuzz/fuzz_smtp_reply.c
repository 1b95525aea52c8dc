/*
 * fuzz_smtp_reply.c - libFuzzer harness for the SMTP reply parser, the first
 * code to touch bytes from a next hop. The first input byte chooses how the
 * rest is split into reads, so the fuzzer explores split points too; every
 * reply that comes out is checked against the parser's promises, and
 * classified as a RCPT reply (smtp_status.c) with a class in range and
 * "invalid" only for a 5xx.
 *
 * Build and run (clang with libFuzzer):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iverifier \
 *     tests/fuzz/fuzz_smtp_reply.c verifier/smtp_reply.c verifier/smtp_status.c verifier/verdict.c
 * \ -o /tmp/fuzz_smtp_reply /tmp/fuzz_smtp_reply -max_total_time=60 tests/fuzz/corpus/smtp_reply
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_reply.h"
#include "smtp_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct smtp_reply_parser *p;
    static struct smtp_status_set set;
    static unsigned char all_5xx[100];
    size_t chunk, off = 1;

    if (size == 0)
        return 0;
    if (p == NULL) {
        if ((p = smtp_reply_parser_new()) == NULL ||
            smtp_status_set_parse(SMTP_INVALID_STATUS_DEFAULT, &set) < 0)
            abort();
        memset(all_5xx, 1, sizeof(all_5xx));
    }
    smtp_reply_parser_reset(p);
    chunk = (size_t)data[0] + 1;
    while (off < size) {
        struct smtp_reply r;
        char err[128];
        size_t used = 0;
        size_t n = size - off < chunk ? size - off : chunk;
        enum smtp_reply_status st =
            smtp_reply_parse(p, (const char *)data + off, n, &used, &r, err, sizeof(err));

        if (used > n)
            abort();
        if (st == SMTP_REPLY_ERROR) {
            if (err[0] == '\0')
                abort();
            break;
        }
        if (st == SMTP_REPLY_DONE) {
            size_t len = strnlen(r.text, sizeof(r.text));
            if (r.code < 200 || r.code > 599 || r.nlines < 1 || r.nlines > SMTP_REPLY_LINES_MAX ||
                len >= sizeof(r.text) || used == 0)
                abort();
            for (size_t i = 0; i < len; i++)
                if (r.text[i] < 0x20 || r.text[i] > 0x7e)
                    abort();
            enum smtp_rcpt_class c = smtp_rcpt_classify(&r, all_5xx, &set);
            if ((int)c < 0 || c >= SMTP_RCPT_CLASS_COUNT ||
                ((c == SMTP_RCPT_NO_MAILBOX || c == SMTP_RCPT_BARE || c == SMTP_RCPT_REFUSED) &&
                 r.code / 100 != 5))
                abort();
        } else if (used != n) {
            abort();
        }
        off += used;
    }
    return 0;
}
