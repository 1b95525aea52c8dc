/*
 * fuzz_config.c - libFuzzer harness for the callahead.conf parser.
 *
 * Beyond "no crash, no leak": error messages are printable (they go to the
 * terminal and syslog), every action that parses passes reply_action_check,
 * and a config that parses prints (config_print) to text that parses back
 * to the same printed form.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* by path, so it can never be confused with an autoconf-generated config.h */
#include "../../policyd/config.h"
#include "reply_action.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* print_to_string - config_print into a malloc'ed string (NULL on ENOMEM) */
static char *print_to_string(const struct config *c, size_t *len)
{
    char *buf = NULL;
    FILE *fp = open_memstream(&buf, len);

    if (fp == NULL)
        return NULL;
    config_print(fp, c, 0);
    fclose(fp);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c, c2;
    struct verifier_config vc;
    char err[512];

    err[0] = '\0';
    if (config_parse((const char *)data, size, "fuzz.conf", &c, err, sizeof(err)) < 0) {
        if (strncmp(err, "fuzz.conf:", 10) != 0)
            abort();
        for (const char *s = err; *s; s++)
            if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
                abort();
        config_free(&c);
        return 0;
    }
    for (int k = 0; k < VERDICT_KIND_COUNT; k++)
        if (reply_action_check(c.action[k], NULL, 0) < 0)
            abort();
    config_verifier(&c, &vc);

    size_t len1 = 0, len2 = 0;
    char *text1 = print_to_string(&c, &len1);
    if (text1 != NULL) {
        if (config_parse(text1, len1, "printed", &c2, err, sizeof(err)) < 0)
            abort(); /* what we print must parse back */
        char *text2 = print_to_string(&c2, &len2);
        if (text2 != NULL && (len1 != len2 || memcmp(text1, text2, len1) != 0))
            abort();
        free(text2);
        config_free(&c2);
    }
    free(text1);
    config_free(&c);
    return 0;
}
