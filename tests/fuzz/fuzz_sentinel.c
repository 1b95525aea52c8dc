/*
 * fuzz_sentinel.c - libFuzzer harness for what the sentinels send and the
 * config gives (redis_sentinel.h): a +switch-master message is taken from
 * the network, so no input may crash its parser, and an accepted one must
 * name our master and carry a numeric address that fits and a port in
 * 1..65535; the sentinel list and master name checks must not crash either.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_sentinel.h"

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[REDIS_SENTINEL_ADDR_MAX], s[1200], err[200];
    unsigned char bin[16];
    int port = -7;

    /* the message as it came (not NUL-terminated: a copy without the terminator's room) */
    char *msg = malloc(size ? size : 1);
    if (msg == NULL)
        return 0;
    memcpy(msg, data, size);
    if (redis_sentinel_parse_switch(msg, size, "mymaster", host, sizeof(host), &port) == 1) {
        check(size > 9 && memcmp(msg, "mymaster ", 9) == 0);
        check(strlen(host) < sizeof(host));
        check(inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1);
        check(port >= 1 && port <= 65535);
    }
    free(msg);

    if (size >= sizeof(s))
        size = sizeof(s) - 1;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)redis_sentinel_check(s, err, sizeof(err));
    (void)redis_sentinel_check_name(s);
    return 0;
}
