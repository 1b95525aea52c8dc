/*
 * verifier_pools.c - the backend pools report (see verifier.h): the
 * connections and requests of every route whose backend keeps a pool (the
 * ldap: routes), for "callahead stats" and the Prometheus exposition.
 *
 * Read-only and cheap: one pass over the current route table, each backend
 * filling in a copy (backend.h, ops->pool_stats); nothing of a pool leaks
 * out. Pools of a route table replaced by a reload are not reported: they
 * only finish what they carry and close.
 */
#include <string.h>

#include "backend.h"
#include "route.h"
#include "verifier.h"
#include "verifier_int.h"

size_t verifier_pools(const struct verifier *v, struct verifier_pool *out, size_t max,
                      size_t *total)
{
    const struct verifier_tables *t = v->tables;
    size_t n = 0, all = 0;

    for (int i = 0; t != NULL && i < t->nroutes; i++) {
        const struct route_backend *rb = &t->backends[i];
        if (rb->ops == NULL || rb->state == NULL || rb->ops->pool_stats == NULL)
            continue;
        all++;
        if (n >= max)
            continue;
        rb->ops->pool_stats(rb->state, &out[n]);
        out[n].route_line = rb->route->lineno;
        n++;
    }
    if (total != NULL)
        *total = all;
    return n;
}
