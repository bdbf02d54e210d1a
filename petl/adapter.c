// UniAdapter (Lu et al., ICLR 2024; RERV/UniAdapter at 796c124, models/adapter.py): adapter i is
// shared by ViT block i, BERT layer i of the text encoder and (VQA, captioning) of the decoder:
//     down(x) = ReLU(down_proj(LN_in(x)))                           LN_in: eps 1e-5
//     visual:     scale * visual_up_proj(down(x))
//     text:       scale * up_proj(down(x))
//     multimodal: scale * LN_cross(multi_up_proj(down(x)) + up_proj(down(x)))
// scale = 0.1. Where they sit (the code, not a feed-forward hook): a ViT block's output gains
// visual(x1), x1 = x + attn(norm1(x)) the block's mid-point (added after drop-path, which never
// touches the adapter); a BERT layer's output (after its last LayerNorm) gains text(a_s), a_s the
// self-attention block's output, and in multimodal mode also multimodal(a_c), a_c the
// cross-attention block's output. Names are the code's: "adapters.<i>.down_proj.weight",
// "adapters.<i>.adapter_layer_norm_before.weight", "...up_proj", "...multi_up_proj",
// "...visual_up_proj", "...adapter_layer_norm_cross_modal".
//
// Initialisation: down_proj kaiming-uniform(a = sqrt 5) with a zero bias, every up projection zero
// (the code re-zeroes only up_proj: its visual and multimodal up projections keep BERT's N(0, 0.02)
// init, so the released model is not the backbone at step 0; here all three start at zero and the
// model is unchanged). Per adapter 4 d r + r + 7 d parameters (d = 768: 3073 r + 5376); the
// momentum encoders get no adapters, and the code's video key/value adapters (video_key_adapter,
// for video inputs) are not part of this method.
#include <stdlib.h>

#include "nn/layer_norm.h"
#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef enum { ADAPT_VISUAL, ADAPT_TEXT, ADAPT_MULTIMODAL } adapt_mode;

typedef struct {
    nn_layer_norm ln_in, ln_cross;
    nn_linear down, up, multi_up, visual_up;
} uni_adapter;

typedef struct {
    uni_adapter *adapters;
    int n;
    double scale;
} adapter_set;

typedef struct {
    layer_hook base;
    const adapter_set *set;
    bool vision; // on ViT blocks; otherwise on BERT layers
} adapter_hook;

// The adapter's output for x (B, T, d) in one mode, without the residual.
static tensor *adapt(const uni_adapter *a, double scale, tensor *x, adapt_mode mode,
                     const nn_ctx *ctx) {
    tensor *n = nn_layer_norm_forward(&a->ln_in, x);
    tensor *down = nn_consume(n, nn_linear_forward(&a->down, n, ctx));
    down = nn_consume(down, tensor_relu(down)); // (B, T, r)
    tensor *up;
    if (mode == ADAPT_VISUAL) {
        up = nn_linear_forward(&a->visual_up, down, ctx);
    } else {
        up = nn_linear_forward(&a->up, down, ctx);
        if (mode == ADAPT_MULTIMODAL) {
            tensor *multi = nn_linear_forward(&a->multi_up, down, ctx);
            up = nn_consume(up, nn_consume(multi, tensor_add(multi, up)));
            up = nn_consume(up, nn_layer_norm_forward(&a->ln_cross, up));
        }
    }
    tensor_free(down);
    return nn_consume(up, tensor_mul_scalar(up, scale));
}

// y + adapt(x)
static tensor *plus(tensor *y, const adapter_hook *h, const layer_io *io, tensor *x,
                    adapt_mode mode, const nn_ctx *ctx) {
    tensor *a = adapt(&h->set->adapters[io->layer], h->set->scale, x, mode, ctx);
    return nn_consume(a, tensor_add(y, a));
}

static tensor *adapter_fn(layer_hook *base, const layer_io *io, tensor *y, const nn_ctx *ctx) {
    const adapter_hook *h = (const adapter_hook *)base;
    if (h->vision) return plus(y, h, io, io->self_out, ADAPT_VISUAL, ctx);
    tensor *out = plus(y, h, io, io->self_out, ADAPT_TEXT, ctx);
    if (!io->cross_out) return out;
    return nn_consume(out, plus(out, h, io, io->cross_out, ADAPT_MULTIMODAL, ctx));
}

static void adapter_hook_free(layer_hook *h) {
    free(h);
}

static void attach_hook(petl_handle *h, adapter_set *set, layer_hook **list, bool vision) {
    adapter_hook *hook = calloc(1, sizeof *hook);
    PETAL_CHECK(hook != NULL, "adapter: out of host memory");
    *hook = (adapter_hook){{.fn = adapter_fn, .free = adapter_hook_free}, set, vision};
    petl_add_layer_hook(h, list, &hook->base);
}

static void set_free(void *p) {
    adapter_set *set = p;
    for (int i = 0; i < set->n; i++) {
        uni_adapter *a = &set->adapters[i];
        nn_linear *linears[] = {&a->down, &a->up, &a->multi_up, &a->visual_up};
        for (int k = 0; k < 4; k++) nn_linear_free(linears[k]);
    }
    free(set->adapters);
    free(set);
}

static void adapter_init(uni_adapter *a, nn_builder *b, int i, int64_t d, int64_t r) {
    char name[NN_NAME_MAX];
    nn_layer_norm_init(&a->ln_in, b, nn_name(name, "adapters.%d.adapter_layer_norm_before", i), d,
                       1e-5, MODALITY_NONE);
    nn_linear_init(&a->down, b, nn_name(name, "adapters.%d.down_proj", i), d, r, true,
                   MODALITY_NONE, NN_INIT_TORCH);
    tensor_fill_(a->down.bias, 0.0);
    nn_linear_init(&a->up, b, nn_name(name, "adapters.%d.up_proj", i), r, d, true, MODALITY_TEXT,
                   NN_INIT_ZEROS);
    nn_linear_init(&a->multi_up, b, nn_name(name, "adapters.%d.multi_up_proj", i), r, d, true,
                   MODALITY_MULTIMODAL, NN_INIT_ZEROS);
    nn_linear_init(&a->visual_up, b, nn_name(name, "adapters.%d.visual_up_proj", i), r, d, true,
                   MODALITY_VISION, NN_INIT_ZEROS);
    nn_layer_norm_init(&a->ln_cross, b,
                       nn_name(name, "adapters.%d.adapter_layer_norm_cross_modal", i), d, 1e-5,
                       MODALITY_MULTIMODAL);
}

static int max3(int64_t a, int64_t b, int64_t c) {
    int64_t m = a > b ? a : b;
    return (int)(m > c ? m : c);
}

petal_status petl_adapter_attach(petl_handle *h) {
    const adapter_options *o = &h->cfg.adapter;
    blip_model *m = h->m;
    int64_t d;
    petal_status st = petl_shared_width(h, "adapter", o->rank, &d);
    if (st) return st;
    adapter_set *set = calloc(1, sizeof *set);
    PETAL_CHECK(set != NULL, "adapter: out of host memory");
    set->scale = o->scale;
    set->n = max3(m->vit.cfg.depth, m->has_text ? m->cfg.text.layers : 0,
                  m->has_decoder ? m->cfg.decoder.layers : 0);
    set->adapters = calloc((size_t)set->n, sizeof *set->adapters);
    PETAL_CHECK(set->adapters != NULL, "adapter: out of host memory");
    petl_own(h, set, set_free);
    nn_builder b = {m->registry, &h->rng, m->vit.patch_weight->dtype, false};
    for (int i = 0; i < set->n; i++) adapter_init(&set->adapters[i], &b, i, d, o->rank);
    registry_set_trainable(m->registry, "adapters.*", true);
    attach_hook(h, set, &m->vit.hooks.output, true);
    if (m->has_text) attach_hook(h, set, &m->text.hooks.output, false);
    if (m->has_decoder) attach_hook(h, set, &m->decoder.hooks.output, false);
    return PETAL_OK;
}
