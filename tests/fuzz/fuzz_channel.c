/*
 * fuzz_channel.c - libFuzzer harness for what arrives on the Redis flush
 * channel, which anyone who can write to the Redis can publish to: flush
 * selectors (cache_flush_parse) and harvest penalties (harvest_message).
 * A flush that parses must format back to a message that parses to the
 * same selector; a penalty that is accepted must block a network.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cache.h"
#include "cache_flush.h"
#include "config.h"
#include "harvest.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

static struct harvest *harvest_once(void)
{
    static struct harvest *h;
    static struct config cfg;
    struct cache_config cc;
    char err[256];

    if (h != NULL)
        return h;
    memset(&cc, 0, sizeof(cc));
    cc.key_prefix = "callahead:";
    cc.l1_max_entries = 16;
    cc.l1_ttl = 60;
    struct event_base *base = event_base_new();
    struct cache *c = cache_new(base, &cc, err, sizeof(err));
    config_defaults(&cfg);
    cfg.max_invalid_per_client = 5;
    check(c != NULL && (h = harvest_new(base, c)) != NULL);
    check(harvest_configure(h, &cfg, err, sizeof(err)) == 0);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_flush_sel sel, back;
    char msg[1200];

    if (cache_flush_parse((const char *)data, size, &sel) == 0) {
        check(sel.kind >= CACHE_FLUSH_ADDRESS && sel.kind <= CACHE_FLUSH_ALL);
        check(strlen(sel.name) < sizeof(sel.name) && strlen(sel.alt) < sizeof(sel.alt));
        int n = cache_flush_format(&sel, msg, sizeof(msg));
        check(n > 0);
        check(cache_flush_parse(msg, (size_t)n, &back) == 0);
        check(back.kind == sel.kind && strcmp(back.name, sel.name) == 0 &&
              strcmp(back.alt, sel.alt) == 0);
        /* no control bytes; bytes >= 0x80 are the UTF-8 of an RFC 6531 address */
        for (int i = 0; i < n; i++)
            check((unsigned char)msg[i] >= 0x20 && (unsigned char)msg[i] != 0x7f);
    }
    (void)harvest_message(harvest_once(), (const char *)data, size);
    return 0;
}
