// Informative Context Enhancement (Aurora): the fused [CLS] f_i absorbs context from the batch's
// text queries t_j (the unimodal text encoder's [CLS]), in training:
//   softmax (paper, eq. 5): f_i += sum_j softmax_j(f_i . t_j) t_j, on every pair ITM classifies;
//   mean (released code):   f_i += 0.1 mean_j t_j, on the positive pairs only.
// The released code's choice leaks the label: the ITM head can learn to spot the enhancement
// instead of the match (on the tiny BLIP of examples/aurora_retrieval.c its ITM loss falls to
// 0.006 while ITM ranks at chance). The paper's equation names no such restriction, so the paper
// variant enhances positives and negatives alike. No parameters.
#include <stdlib.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    cls_hook base;
    ice_mode mode;
    double scale;
} ice_hook;

static tensor *ice_fn(cls_hook *base, tensor *cls, tensor *text_cls, const nn_ctx *ctx) {
    ice_hook *h = (ice_hook *)base;
    if (!ctx->training) return tensor_dropout(cls, 0, false, NULL); // an alias: unchanged
    tensor *context;
    if (h->mode == ICE_MEAN) {
        tensor *mean = tensor_mean(text_cls, 0, true); // (1, H)
        context = nn_consume(mean, tensor_mul_scalar(mean, h->scale));
    } else {
        tensor *tt = tensor_transpose(text_cls, 0, 1);
        tensor *scores = nn_consume(tt, tensor_matmul(cls, tt)); // (B, B)
        tensor *weights = nn_consume(scores, tensor_softmax(scores, 1));
        context = nn_consume(weights, tensor_matmul(weights, text_cls)); // (B, H)
    }
    return nn_consume(context, tensor_add(cls, context));
}

static void ice_free(cls_hook *h) {
    free(h);
}

petal_status petl_ice_attach(petl_handle *h) {
    // ITM's positive pairs exist only in retrieval training; other tasks have nothing to enhance.
    if (h->m->cfg.task != BLIP_RETRIEVAL) return PETAL_OK;
    ice_hook *hook = calloc(1, sizeof *hook);
    PETAL_CHECK(hook != NULL, "ice: out of host memory");
    hook->base = (cls_hook){.fn = ice_fn, .free = ice_free};
    hook->mode = h->cfg.ice;
    hook->scale = h->cfg.ice_scale;
    petl_add_cls_hook(h, h->cfg.ice == ICE_MEAN ? &h->m->itm_positive : &h->m->itm_all,
                      &hook->base);
    return PETAL_OK;
}
