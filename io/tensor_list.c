#include "io/tensor_list.h"

#include <stdlib.h>
#include <string.h>

#include "tensor/error.h"
#include "tensor/view.h"

void tensor_list_init(tensor_list *l) {
    *l = (tensor_list){0};
}

void tensor_list_free(tensor_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].name);
        tensor_free(l->items[i].value);
    }
    free(l->items);
    tensor_list_init(l);
}

named_tensor *tensor_list_find(const tensor_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0) return &l->items[i];
    return NULL;
}

void tensor_list_add(tensor_list *l, const char *name, tensor *t) {
    PETAL_CHECK(tensor_list_find(l, name) == NULL, "tensor_list_add: '%s' is already in the list",
                name);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = realloc(l->items, (size_t)l->cap * sizeof *l->items);
        PETAL_CHECK(l->items != NULL, "tensor_list_add: out of host memory");
    }
    named_tensor *e = &l->items[l->n++];
    e->name = strdup(name);
    PETAL_CHECK(e->name != NULL, "tensor_list_add: out of host memory");
    e->value = tensor_keep(t);
}

void tensor_list_remove(tensor_list *l, int i) {
    PETAL_CHECK(i >= 0 && i < l->n, "tensor_list_remove: index %d out of range [0, %d)", i, l->n);
    free(l->items[i].name);
    tensor_free(l->items[i].value);
    memmove(&l->items[i], &l->items[i + 1], (size_t)(l->n - i - 1) * sizeof *l->items);
    l->n--;
}

tensor *tensor_host_contiguous(const tensor *t) {
    tensor *host = tensor_to(t, DEVICE_CPU);
    tensor *c = view_contiguous(host);
    tensor_free(host);
    return c;
}

bool tensor_shape_within(int ndim, const int64_t *shape, uint64_t max_elements) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return false;
        if (shape[d] == 0) continue;
        if ((uint64_t)shape[d] > max_elements / n) return false;
        n *= (uint64_t)shape[d];
    }
    return true;
}
