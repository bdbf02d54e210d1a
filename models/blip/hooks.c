#include "models/blip/hooks.h"

tensor *layer_hooks_run(layer_hook *list, const layer_io *io, tensor *y, const nn_ctx *ctx) {
    for (layer_hook *h = list; h; h = h->next) {
        tensor *next = h->fn(h, io, y, ctx);
        if (next != y) tensor_free(y);
        y = next;
    }
    return y;
}

void layer_hooks_append(layer_hook **list, layer_hook *h) {
    h->next = NULL;
    while (*list) list = &(*list)->next;
    *list = h;
}

static void free_list(layer_hook *h) {
    while (h) {
        layer_hook *next = h->next;
        if (h->free) h->free(h);
        h = next;
    }
}

void layer_hooks_free(layer_hooks *hooks) {
    free_list(hooks->ffn);
    free_list(hooks->output);
    hooks->ffn = hooks->output = NULL;
}
