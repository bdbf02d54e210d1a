#include "tests/hashed.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

void hashed_fill(tensor *t, const char *name, double scale, double offset) {
    int64_t n = tensor_numel(t);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    uint32_t h = fnv1a(name);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(h + (uint32_t)i * 2654435761u) >> 8;
        v[i] = ((double)u / 16777216.0 - 0.5) * scale + offset;
    }
    tensor *src = tensor_from_data(PETAL_F64, t->ndim, t->shape, v);
    tensor_copy_(t, src);
    tensor_free(src);
    free(v);
}

tensor *hashed_tensor(const char *name, int ndim, const int64_t *shape, double scale) {
    tensor *t = tensor_empty(PETAL_F32, ndim, shape);
    hashed_fill(t, name, scale, 0.0);
    return t;
}

static bool contains_norm(const char *s) {
    for (; *s; s++)
        if (strncasecmp(s, "norm", 4) == 0) return true;
    return false;
}

void hashed_params(param_registry *r, const char *prefix) {
    size_t len = strlen(prefix);
    for (int i = 0; i < r->n; i++) {
        param_entry *e = &r->items[i];
        if (strncmp(e->name, prefix, len) != 0) continue;
        const char *local = e->name + len;
        size_t l = strlen(local);
        bool weight = l >= 6 && strcmp(local + l - 6, "weight") == 0;
        if (e->value->ndim == 1 && contains_norm(local) && weight)
            hashed_fill(e->value, local, 0.2, 1.0);
        else if (e->value->ndim == 1)
            hashed_fill(e->value, local, 0.04, 0.0);
        else
            hashed_fill(e->value, local, 0.08, 0.0);
    }
}
