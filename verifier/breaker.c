/*
 * breaker.c - per-destination circuit breakers (see breaker.h).
 *
 * A linked list with a bound: the destinations that fail at one time are
 * few, and a healthy destination is forgotten as soon as it succeeds, so the
 * list stays short; the bound only matters under a flood of failing
 * domains, where the least recently touched entry goes.
 */
#include "breaker.h"

#include <stdlib.h>
#include <string.h>

struct breaker {
    char *dest;
    int failures;      /* consecutive session failures */
    time_t open_until; /* 0 = closed */
    int half_open;     /* the one trial probe is out */
    struct breaker *next;
};

struct breaker_table {
    struct breaker *head; /* most recently touched first */
    size_t count, max;
};

struct breaker_table *breaker_table_new(size_t max_entries)
{
    struct breaker_table *t = calloc(1, sizeof(*t));

    if (t != NULL)
        t->max = max_entries > 0 ? max_entries : 1;
    return t;
}

static void breaker_free(struct breaker *b)
{
    free(b->dest);
    free(b);
}

void breaker_table_free(struct breaker_table *t)
{
    if (t == NULL)
        return;
    while (t->head != NULL) {
        struct breaker *b = t->head;
        t->head = b->next;
        breaker_free(b);
    }
    free(t);
}

/* breaker_find - the entry for dest, moved to the front; NULL if untracked */
static struct breaker *breaker_find(struct breaker_table *t, const char *dest)
{
    struct breaker **pp = &t->head;

    for (; *pp != NULL; pp = &(*pp)->next) {
        struct breaker *b = *pp;
        if (strcmp(b->dest, dest) == 0) {
            *pp = b->next;
            b->next = t->head;
            t->head = b;
            return b;
        }
    }
    return NULL;
}

/* breaker_remove - forget dest (it is healthy) */
static void breaker_remove(struct breaker_table *t, const char *dest)
{
    for (struct breaker **pp = &t->head; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->dest, dest) == 0) {
            struct breaker *b = *pp;
            *pp = b->next;
            breaker_free(b);
            t->count--;
            return;
        }
    }
}

/* breaker_add - track dest, dropping the least recently touched entry when full */
static struct breaker *breaker_add(struct breaker_table *t, const char *dest)
{
    struct breaker *b = calloc(1, sizeof(*b));

    if (b == NULL || (b->dest = strdup(dest)) == NULL) {
        free(b);
        return NULL;
    }
    if (t->count >= t->max) {
        struct breaker **pp = &t->head;
        while ((*pp)->next != NULL)
            pp = &(*pp)->next;
        breaker_free(*pp);
        *pp = NULL;
        t->count--;
    }
    b->next = t->head;
    t->head = b;
    t->count++;
    return b;
}

int breaker_allow(struct breaker_table *t, const char *dest, time_t now, int *retry_in)
{
    struct breaker *b = breaker_find(t, dest);

    if (b == NULL || b->open_until == 0)
        return 1;
    if (now < b->open_until) {
        if (retry_in)
            *retry_in = (int)(b->open_until - now);
        return 0;
    }
    if (b->half_open) {
        if (retry_in)
            *retry_in = 1;
        return 0;
    }
    b->half_open = 1;
    return 1;
}

int breaker_report(struct breaker_table *t, const char *dest, int ok, int failures, int open_secs,
                   time_t now)
{
    struct breaker *b = breaker_find(t, dest);

    if (ok) {
        int was_open = b != NULL && b->open_until != 0;
        if (b != NULL)
            breaker_remove(t, dest);
        return was_open ? -1 : 0;
    }
    if (b == NULL && (b = breaker_add(t, dest)) == NULL)
        return 0;
    b->failures++;
    if (b->half_open || (b->open_until == 0 && b->failures >= failures)) {
        int opened = b->open_until == 0;
        b->half_open = 0;
        b->open_until = now + open_secs;
        return opened;
    }
    return 0;
}

size_t breaker_open_count(const struct breaker_table *t, time_t now)
{
    size_t n = 0;

    for (const struct breaker *b = t->head; b != NULL; b = b->next)
        if (b->open_until != 0)
            n++;
    return n;
}

/* breaker_describe - b as an operator sees it at now */
static void breaker_describe(const struct breaker *b, time_t now, struct breaker_info *out)
{
    out->dest = b->dest;
    out->failures = b->failures;
    out->retry_in = 0;
    if (b->open_until == 0) {
        out->state = BREAKER_CLOSED;
    } else if (now < b->open_until) {
        out->state = BREAKER_OPEN;
        out->retry_in = (int)(b->open_until - now);
    } else {
        out->state = BREAKER_HALF_OPEN;
    }
}

int breaker_peek(const struct breaker_table *t, const char *dest, time_t now,
                 struct breaker_info *out)
{
    for (const struct breaker *b = t->head; b != NULL; b = b->next) {
        if (strcmp(b->dest, dest) == 0) {
            breaker_describe(b, now, out);
            return 1;
        }
    }
    memset(out, 0, sizeof(*out));
    out->dest = dest;
    out->state = BREAKER_CLOSED;
    return 0;
}

void breaker_foreach(const struct breaker_table *t, time_t now, breaker_foreach_fn fn, void *arg)
{
    struct breaker_info info;

    for (const struct breaker *b = t->head; b != NULL; b = b->next) {
        breaker_describe(b, now, &info);
        if (fn(&info, arg) != 0)
            return;
    }
}

const char *breaker_state_name(enum breaker_state st)
{
    switch (st) {
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half-open";
    case BREAKER_CLOSED:
        break;
    }
    return "closed";
}
