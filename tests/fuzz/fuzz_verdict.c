/*
 * fuzz_verdict.c - libFuzzer harness for verdict_parse, the parser of what
 * comes back from Redis (which anyone can write to), and for the format /
 * parse round trip and verdict_sanitize.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verdict.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct verdict v, w;
    char buf[1024], buf2[1024], san[VERDICT_TEXT_MAX];
    enum verdict_kind kind;

    /* sanitised text is printable ASCII without leading/trailing/double spaces */
    size_t sn = verdict_sanitize(san, sizeof(san), (const char *)data, size);
    check(sn == strlen(san) && sn < sizeof(san));
    for (size_t i = 0; i < sn; i++)
        check(san[i] >= 0x20 && san[i] <= 0x7e && !(san[i] == ' ' && san[i + 1] == ' '));
    check(sn == 0 || (san[0] != ' ' && san[sn - 1] != ' '));

    (void)verdict_kind_parse((const char *)data, size, &kind);

    memset(&v, 0x5a, sizeof(v));
    if (verdict_parse((const char *)data, size, &v) < 0) {
        /* out untouched on error */
        for (size_t i = 0; i < sizeof(v); i++)
            check(((unsigned char *)&v)[i] == 0x5a);
        return 0;
    }
    check((int)v.kind >= 0 && (int)v.kind < VERDICT_KIND_COUNT);
    check(v.code == 0 || (v.code >= 200 && v.code <= 599));
    check(v.when >= 0);
    check(strlen(v.source) > 0 && strlen(v.source) < VERDICT_SOURCE_MAX);
    check(strlen(v.text) < VERDICT_TEXT_MAX);

    /* format is stable: format(parse(format(v))) == format(v) */
    int n = verdict_format(&v, buf, sizeof(buf));
    check(n > 0);
    check(verdict_parse(buf, (size_t)n, &w) == 0);
    check(w.kind == v.kind && w.code == v.code && w.when == v.when);
    check(strcmp(w.source, v.source) == 0);
    int n2 = verdict_format(&w, buf2, sizeof(buf2));
    check(n2 == n && memcmp(buf, buf2, (size_t)n) == 0);
    return 0;
}
