// Gated Query Transformation (Aurora): in multimodal mode each BERT layer's output also receives
// the query (self-attention) stream, so the fused representation keeps the text's contribution.
//   affine (released code): y += 0.1 (a_s * g_s + b_s) + 0.1 (a_c * g_c + b_c), four vectors per
//     layer ("CP_scaleself", "CP_shiftself", "CP_scalecross", "CP_shiftcross") ~ N(0, 2e-4);
//   gate (the paper's description: a gated mix of the query and the cross-attention outputs):
//     y += g * (a_s - a_c), one vector g per layer ("GQT_gate"), zero at start so the layer is
//     unchanged until training opens the gate channel by channel.
#include <stdlib.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    layer_hook base;
    gqt_mode mode;
    tensor **vectors; // per layer: 4 (affine) or 1 (gate)
} gqt_hook;

// 0.1 (a * scale + shift)
static tensor *affine(tensor *a, tensor *scale, tensor *shift) {
    tensor *s = tensor_mul(a, scale);
    tensor *t = nn_consume(s, tensor_add(s, shift));
    return nn_consume(t, tensor_mul_scalar(t, 0.1));
}

static tensor *gqt_fn(layer_hook *base, const layer_io *io, tensor *y, const nn_ctx *ctx) {
    (void)ctx;
    gqt_hook *h = (gqt_hook *)base;
    if (!io->cross_out) return y; // text mode: nothing to balance
    tensor *add;
    if (h->mode == GQT_AFFINE) {
        tensor **v = &h->vectors[4 * io->layer];
        tensor *r_self = affine(io->self_out, v[0], v[1]);
        tensor *r_cross = affine(io->cross_out, v[2], v[3]);
        add = nn_consume(r_self, nn_consume(r_cross, tensor_add(r_self, r_cross)));
    } else {
        tensor *diff = tensor_sub(io->self_out, io->cross_out);
        add = nn_consume(diff, tensor_mul(diff, h->vectors[io->layer]));
    }
    return nn_consume(add, tensor_add(y, add));
}

static void gqt_free(layer_hook *base) {
    gqt_hook *h = (gqt_hook *)base;
    free(h->vectors);
    free(h);
}

static void attach(petl_handle *h, bert_model *bert, const char *prefix, modality tag) {
    gqt_hook *hook = calloc(1, sizeof *hook);
    int per_layer = h->cfg.gqt == GQT_AFFINE ? 4 : 1;
    hook->vectors = calloc((size_t)(bert->cfg.layers * per_layer), sizeof *hook->vectors);
    PETAL_CHECK(hook && hook->vectors, "gqt: out of host memory");
    hook->base = (layer_hook){.fn = gqt_fn, .free = gqt_free};
    hook->mode = h->cfg.gqt;
    static const char *const names[] = {"CP_scaleself", "CP_shiftself", "CP_scalecross",
                                        "CP_shiftcross"};
    char name[NN_NAME_MAX];
    int64_t d = bert->cfg.hidden;
    for (int64_t i = 0; i < bert->cfg.layers; i++)
        for (int k = 0; k < per_layer; k++) {
            const char *what = per_layer == 4 ? names[k] : "GQT_gate";
            tensor *v =
                petl_param(h, nn_name(name, "%s.encoder.layer.%lld.%s", prefix, (long long)i, what),
                           SHAPE(d), tag, false);
            if (per_layer == 4) tensor_normal_(v, 0.0, 2e-4, &h->rng);
            hook->vectors[i * per_layer + k] = v;
        }
    petl_add_layer_hook(h, &bert->hooks.output, &hook->base);
}

petal_status petl_gqt_attach(petl_handle *h) {
    blip_model *m = h->m;
    if (m->has_text) attach(h, &m->text, "text_encoder", MODALITY_MULTIMODAL);
    if (m->has_decoder) attach(h, &m->decoder, "text_decoder.bert", MODALITY_DECODER);
    return PETAL_OK;
}
