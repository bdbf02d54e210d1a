#include "nn/registry.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "tensor/error.h"

const char *modality_name(modality m) {
    switch (m) {
    case MODALITY_NONE:
        return "none";
    case MODALITY_VISION:
        return "vision";
    case MODALITY_TEXT:
        return "text";
    case MODALITY_MULTIMODAL:
        return "multimodal";
    case MODALITY_DECODER:
        return "decoder";
    }
    return "?";
}

param_registry *registry_new(void) {
    param_registry *r = calloc(1, sizeof *r);
    PETAL_CHECK(r != NULL, "registry_new: out of host memory");
    return r;
}

void registry_free(param_registry *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        free(r->items[i].name);
        tensor_free(r->items[i].value);
    }
    free(r->items);
    free(r);
}

param_entry *registry_find(const param_registry *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->items[i].name, name) == 0) return &r->items[i];
    return NULL;
}

tensor *registry_get(const param_registry *r, const char *name) {
    param_entry *e = registry_find(r, name);
    PETAL_CHECK(e != NULL, "registry: no parameter named '%s'", name);
    return e->value;
}

param_entry *registry_add(param_registry *r, const char *name, tensor *t, modality tag,
                          bool decay) {
    PETAL_CHECK(registry_find(r, name) == NULL, "registry_add: '%s' is already registered", name);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->items = realloc(r->items, (size_t)r->cap * sizeof *r->items);
        PETAL_CHECK(r->items != NULL, "registry_add: out of host memory");
    }
    param_entry *e = &r->items[r->n++];
    e->name = strdup(name);
    PETAL_CHECK(e->name != NULL, "registry_add: out of host memory");
    e->value = tensor_keep(t);
    e->trainable = false;
    e->decay = decay;
    e->tag = tag;
    e->buffer = false;
    e->linear = NULL;
    if (dtype_is_float(t->dtype)) tensor_set_requires_grad(t, false);
    return e;
}

bool registry_match(const char *p, const char *s) {
    // Iterative glob with backtracking to the last '*'.
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*') p++;
    return *p == '\0';
}

int registry_set_trainable(param_registry *r, const char *pattern, bool trainable) {
    int count = 0;
    for (int i = 0; i < r->n; i++) {
        param_entry *e = &r->items[i];
        // Buffers and integer tensors are state, never trained: patterns pass over them.
        if (e->buffer || !dtype_is_float(e->value->dtype) || !registry_match(pattern, e->name))
            continue;
        e->trainable = trainable;
        tensor_set_requires_grad(e->value, trainable);
        if (!trainable) tensor_reset_grad(e->value);
        count++;
    }
    return count;
}

void registry_freeze_all(param_registry *r) {
    registry_set_trainable(r, "*", false);
}

int64_t registry_count(const param_registry *r, bool trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < r->n; i++)
        if (!r->items[i].buffer && (!trainable_only || r->items[i].trainable))
            n += tensor_numel(r->items[i].value);
    return n;
}

int registry_trainable(const param_registry *r, tensor **out, int cap) {
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        if (!r->items[i].trainable) continue;
        if (n < cap) out[n] = r->items[i].value;
        n++;
    }
    return n;
}
