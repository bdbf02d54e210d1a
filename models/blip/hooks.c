#include "models/blip/hooks.h"

#include "ops/ops.h"

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

tensor *cls_hooks_run(cls_hook *list, tensor *cls, tensor *text_cls, const nn_ctx *ctx) {
    for (cls_hook *h = list; h; h = h->next) {
        tensor *next = h->fn(h, cls, text_cls, ctx);
        if (next != cls) tensor_free(cls);
        cls = next;
    }
    return cls;
}

void cls_hooks_append(cls_hook **list, cls_hook *h) {
    h->next = NULL;
    while (*list) list = &(*list)->next;
    *list = h;
}

void cls_hooks_free(cls_hook **list) {
    for (cls_hook *h = *list; h;) {
        cls_hook *next = h->next;
        if (h->free) h->free(h);
        h = next;
    }
    *list = NULL;
}

tensor *loss_hooks_run(loss_hook *list, tensor *image_feat, tensor *text_feat, const nn_ctx *ctx) {
    tensor *sum = NULL;
    for (loss_hook *h = list; h; h = h->next) {
        tensor *term = h->fn(h, image_feat, text_feat, ctx);
        sum = sum ? nn_consume(sum, nn_consume(term, tensor_add(sum, term))) : term;
    }
    return sum;
}

void loss_hooks_free(loss_hook *list) {
    while (list) {
        loss_hook *next = list->next;
        if (list->free) list->free(list);
        list = next;
    }
}
