/*
 * stats_table.h - every number policyd reports, described once: its
 * Prometheus family (stats_http.c), its "callahead stats" name
 * (control_cmd.c), its type and help, and where its value is in a stats
 * snapshot (stats.h). Both outputs walk the same rows in the same order, so
 * a number added here appears in both, and the two can never disagree
 * about what it means or where it is read.
 *
 * A Prometheus family is a run of consecutive rows with the same metric
 * name; its first row carries the help, the others differ only by their
 * fixed label (verdict="valid", layer="l1", ...). A list (the busiest
 * destinations, the LDAP pools) is one row of kind STATS_V_LIST pointing
 * at a table of its own: Prometheus shows each of its families over every
 * item (labelled by the item's label rows), "callahead stats" shows each
 * item numbered from 1 (dest1_name=, dest1_running=, ...).
 */
#ifndef CALLAHEAD_STATS_TABLE_H
#define CALLAHEAD_STATS_TABLE_H

#include <stddef.h>

struct stats_snapshot;

/* the Prometheus metric type of a family */
enum stats_type {
    STATS_COUNTER,
    STATS_GAUGE,
    STATS_SUMMARY,
    STATS_HISTOGRAM,
};

/* how a row's value is read from the snapshot (or a list item) and shown */
enum stats_value {
    STATS_V_ULONG,     /* unsigned long at off */
    STATS_V_UINT,      /* unsigned at off */
    STATS_V_INT,       /* int at off */
    STATS_V_SIZE,      /* size_t at off */
    STATS_V_FLAG,      /* int at off: 1 or 0 in Prometheus, words[1] or words[0] in stats */
    STATS_V_SINCE,     /* time_t at off: that time in Prometheus, the seconds since in stats */
    STATS_V_STATE,     /* const char * at off, one of words: a state set in Prometheus (one
                          series per word, label state=, 1 for the current one), the word in stats */
    STATS_V_LABEL_STR, /* list items only: char[] at off, the label metric= in Prometheus */
    STATS_V_LABEL_INT, /* list items only: int at off, the label metric= in Prometheus */
    STATS_V_MEAN,      /* double sum (seconds) at off, unsigned long count at off2: a
                          summary in Prometheus, the mean in ms (2 decimals) in stats */
    STATS_V_LATENCY,   /* the verdict latency histograms of metrics.h, by source */
    STATS_V_LIST,      /* list: the items of list (stats: "<stat>=" the number shown) */
};

/* when a row is shown */
enum stats_when {
    STATS_ALWAYS,
    STATS_IF_REDIS,   /* a Redis cache is configured */
    STATS_IF_METRICS, /* latency is measured */
};

struct stats_list;

struct stats_row {
    const char *metric; /* Prometheus family; the label name for STATS_V_LABEL_* */
    const char *label;  /* this sample's fixed label ("verdict=\"valid\""), or NULL */
    const char *stat;   /* name in "callahead stats" (for list items: after "dest1_") */
    enum stats_type type;
    const char *help; /* on the first row of a family only */
    enum stats_value value;
    size_t off, off2;         /* offsets in the snapshot, or in one list item */
    const char *const *words; /* STATS_V_FLAG: {no, yes}; STATS_V_STATE: the states, NULL-ended */
    enum stats_when when;     /* the row is left out of both outputs unless this holds */
    const char *absent;       /* stats only: the value shown when `when` does not hold */
    const struct stats_list *list; /* STATS_V_LIST */
};

/* a list of items in the snapshot, described by rows of its own */
struct stats_list {
    const char *item;            /* stats prefix of item i: "<item><i+1>_" */
    size_t array_off, item_size; /* the items in the snapshot */
    size_t count_off;            /* size_t: how many items are in the array */
    const struct stats_row *rows;
    size_t nrows;
};

/* the rows, in the order both outputs show them */
extern const struct stats_row stats_rows[];
extern const size_t stats_nrows;

/* stats_row_shown - whether row is shown for snapshot st (its `when` holds) */
int stats_row_shown(const struct stats_row *row, const struct stats_snapshot *st);

/*
 * stats_family_end - the index after the last row of the family that
 * starts at rows[i] (the run of rows with the same metric name)
 */
size_t stats_family_end(const struct stats_row *rows, size_t n, size_t i);

/*
 * stats_row_number - the value of a numeric row (STATS_V_ULONG, _UINT,
 * _INT, _SIZE, _LABEL_INT) of the struct at base as decimal text in buf;
 * -1 for other kinds
 */
int stats_row_number(const struct stats_row *row, const void *base, char *buf, size_t size);

/* stats_row_flag - a STATS_V_FLAG row's value: 0 or 1 */
int stats_row_flag(const struct stats_row *row, const void *base);

/* stats_row_string - a STATS_V_STATE or STATS_V_LABEL_STR row's text ("" for none) */
const char *stats_row_string(const struct stats_row *row, const void *base);

/* stats_row_time - a STATS_V_SINCE row's time */
long stats_row_time(const struct stats_row *row, const void *base);

/* stats_row_mean - a STATS_V_MEAN row's sum (seconds) and count */
void stats_row_mean(const struct stats_row *row, const void *base, double *sum,
                    unsigned long *count);

/* stats_list_count - how many items of list st holds */
size_t stats_list_count(const struct stats_list *list, const struct stats_snapshot *st);

/* stats_list_item - item i of list in st */
const void *stats_list_item(const struct stats_list *list, const struct stats_snapshot *st,
                            size_t i);

#endif
