#include "io/load_budget.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tensor_list.h"

uint64_t load_budget_default(uint64_t file_size) {
    uint64_t slack = (uint64_t)16 << 20;
    return file_size > (UINT64_MAX - slack) / 16 ? UINT64_MAX : 16 * file_size + slack;
}

// "8000000000", "512M", "8G": false unless the whole text is one such count.
static bool parse_bytes(const char *text, uint64_t *out) {
    static const char units[] = "KMGT";
    char *end = NULL;
    errno = 0;
    if (text[0] < '0' || text[0] > '9') return false;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno || end == text) return false;
    const char *unit = *end ? strchr(units, *end) : NULL;
    if (*end && (!unit || end[1] != '\0')) return false;
    int shift = unit ? 10 * (int)(unit - units + 1) : 0;
    if (shift && n > UINT64_MAX >> shift) return false;
    *out = (uint64_t)n << shift;
    return true;
}

petal_status load_budget_init(load_budget *b, const char *path, uint64_t file_size) {
    *b = (load_budget){.path = path, .limit = load_budget_default(file_size)};
    const char *env = getenv(LOAD_BUDGET_ENV);
    if (!env) return PETAL_OK;
    if (!parse_bytes(env, &b->limit))
        return petal_error(PETAL_ERR_ARG,
                           "%s='%.64s': expected a byte count such as 8000000000 or 8G (suffixes "
                           "K, M, G, T: powers of 1024)",
                           LOAD_BUDGET_ENV, env);
    b->from_env = true;
    return PETAL_OK;
}

static petal_status over(const load_budget *b, const char *entry, const char *size) {
    char why[64];
    if (b->from_env)
        snprintf(why, sizeof why, "%s=%s", LOAD_BUDGET_ENV, getenv(LOAD_BUDGET_ENV));
    else
        snprintf(why, sizeof why, "16 x its size + 16 MiB");
    return petal_error(PETAL_ERR_FORMAT,
                       "%s: entry '%s' needs %s bytes and the tensors read before it hold %" PRIu64
                       ": over the limit of %" PRIu64
                       " bytes per file (%.48s); if the file is trusted, raise the limit with "
                       "%s=<bytes> (e.g. 8G)",
                       b->path, entry, size, b->used, b->limit, why, LOAD_BUDGET_ENV);
}

petal_status load_budget_take(load_budget *b, const char *entry, uint64_t bytes) {
    if (bytes > b->limit - b->used) {
        char size[32];
        snprintf(size, sizeof size, "%" PRIu64, bytes);
        return over(b, entry, size);
    }
    b->used += bytes;
    return PETAL_OK;
}

petal_status load_budget_take_shape(load_budget *b, const char *entry, petal_dtype dtype, int ndim,
                                    const int64_t *shape, uint64_t *bytes) {
    uint64_t elem = dtype_size(dtype), numel = 1;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return petal_error(PETAL_ERR_FORMAT, "%s: entry '%s' has a negative size", b->path,
                               entry);
    if (!tensor_shape_within(ndim, shape, UINT64_MAX / elem))
        return over(b, entry, "more than 2^64");
    for (int d = 0; d < ndim; d++) numel *= (uint64_t)shape[d];
    if (bytes) *bytes = numel * elem;
    return load_budget_take(b, entry, numel * elem);
}
