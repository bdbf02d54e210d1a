// QASN (UniTrans, docs/reference.md section 3): a side network that runs along the N fusion layers
// of the image-grounded text encoder (its multimodal-mode passes) and feeds back into them:
//     h_0 = 0,  h_{i+1} = h_i + w_i(x_F^i),  w_i(x) = Lambda_b^i (B (Lambda_a^i (A x)))
//     x_F^{i+1} = b_i(x_F^i, x_V) + f_i(h_{i+1}),  f_i(h) = act(alpha_i h + beta_i) - act(0)
// x_F^i is fusion layer i's input and b_i its output. A (r, d) and B (d, r) are QASN's own frozen
// random pair ("qasn_A", "qasn_B", seeded by qasn.seed); per layer "<layer>.qasn_lambda_a" (r) = 1,
// "qasn_lambda_b" (d) = 0, "qasn_alpha" (d) = 1 and "qasn_beta" (d) = 0 are trained.
//
// Paper vs here: the paper writes x_F w_i with w_i = Lambda_b B Lambda_a A; w_i is applied here as
// VCRA's delta is (A first), so both share one formulation. The paper's filter is act(alpha h +
// beta); subtracting the constant act(0) changes nothing for GELU, ReLU and tanh (act(0) = 0) and
// makes sigmoid (act(0) = 1/2) identity-preserving too: at step 0 (Lambda_b = 0, so h = 0, and
// beta = 0) every activation leaves the model bit-for-bit unchanged, and beta still gives each
// channel a learned offset act(beta) - act(0).
//
// The side state h lives between the layers of one pass. bert_forward runs a pass's layers in
// order and passes never interleave, so the state is reset at layer 0 and dropped after the last
// layer; a multimodal pass that reaches layer i > 0 without the state of layer i - 1 (or with
// another batch shape) is a programming error and aborts. Text-mode passes (ITC) do not touch it.
#include <stdlib.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    tensor *lambda_a, *lambda_b, *alpha, *beta;
} qasn_layer;

typedef struct {
    layer_hook base;
    tensor *a, *b; // (r, d), (d, r) frozen
    petl_activation act;
    qasn_layer *layers;
    int n_layers;
    tensor *h;      // h_{i+1} of the pass under way (kept: owned by the hook), or NULL
    int next_layer; // the layer that may read h
} qasn_hook;

// act(z) - act(0)
static tensor *filter(petl_activation act, tensor *z) {
    switch (act) {
    case PETL_ACT_GELU:
        return tensor_gelu(z);
    case PETL_ACT_RELU:
        return tensor_relu(z);
    case PETL_ACT_TANH:
        return tensor_tanh(z);
    case PETL_ACT_SIGMOID: {
        tensor *s = tensor_sigmoid(z);
        return nn_consume(s, tensor_add_scalar(s, -0.5));
    }
    }
    PETAL_CHECK(0, "qasn: unknown activation %d", (int)act);
}

// Takes the state entering layer `layer` of a multimodal pass over x: NULL at layer 0 (h_0 = 0).
static tensor *take_state(qasn_hook *q, int layer, tensor *x) {
    tensor *h = q->h;
    q->h = NULL;
    if (layer == 0) {
        tensor_free(h); // left by a pass that stopped early
        return NULL;
    }
    PETAL_CHECK(h && q->next_layer == layer && tensor_same_shape(h, x),
                "qasn: fusion layer %d runs without the side state of layer %d (the state is "
                "for layer %d%s)",
                layer, layer - 1, h ? q->next_layer : -1,
                h && !tensor_same_shape(h, x) ? ", another batch shape" : "");
    return h;
}

static tensor *qasn_fn(layer_hook *base, const layer_io *io, tensor *y, const nn_ctx *ctx) {
    (void)ctx;
    qasn_hook *q = (qasn_hook *)base;
    if (!io->cross_out) return y; // a text-mode pass: no fusion
    const qasn_layer *l = &q->layers[io->layer];
    tensor *h = take_state(q, io->layer, io->input);
    tensor *u = petl_linear(io->input, q->a); // (B, T, r)
    tensor *w = nn_consume(u, petl_scaled_up(u, l->lambda_a, q->b, l->lambda_b));
    tensor *next = h ? nn_consume(w, tensor_add(h, w)) : w; // h_{i+1}
    tensor_free(h);
    tensor *z = tensor_mul(next, l->alpha);
    z = nn_consume(z, tensor_add(z, l->beta));
    tensor *f = nn_consume(z, filter(q->act, z));
    q->next_layer = io->layer + 1;
    if (q->next_layer < q->n_layers)
        q->h = tensor_keep(next); // outlives the caller's scope if a pass stops early
    else
        tensor_free(next);
    return nn_consume(f, tensor_add(y, f));
}

static void qasn_free(layer_hook *base) {
    qasn_hook *q = (qasn_hook *)base;
    tensor_free(q->h);
    free(q->layers);
    free(q);
}

petal_status petl_qasn_attach(petl_handle *h) {
    const qasn_options *o = &h->cfg.qasn;
    blip_model *m = h->m;
    if (o->rank < 1 || !m->has_text)
        return petal_error(PETAL_ERR_ARG,
                           "qasn: rank %lld (must be >= 1) on a %s model (needs the "
                           "image-grounded text encoder: retrieval, itm or vqa)",
                           (long long)o->rank, blip_task_name(m->cfg.task));
    bert_model *bert = &m->text;
    int64_t d = bert->cfg.hidden;
    qasn_hook *q = calloc(1, sizeof *q);
    PETAL_CHECK(q != NULL, "qasn: out of host memory");
    q->base = (layer_hook){.fn = qasn_fn, .free = qasn_free};
    q->act = o->activation;
    q->n_layers = (int)bert->cfg.layers;
    q->layers = calloc((size_t)q->n_layers, sizeof *q->layers);
    PETAL_CHECK(q->layers != NULL, "qasn: out of host memory");
    rng_generator g = {o->seed, 0};
    petl_random_pair(h, "qasn_A", "qasn_B", o->rank, d, &g, &q->a, &q->b);
    char name[NN_NAME_MAX];
    for (int i = 0; i < q->n_layers; i++) {
        const char *prefix = nn_name(name, "text_encoder.encoder.layer.%d", i);
        char buf[NN_NAME_MAX];
        qasn_layer *l = &q->layers[i];
        l->lambda_a = petl_param(h, nn_name(buf, "%s.qasn_lambda_a", prefix), SHAPE(o->rank),
                                 MODALITY_MULTIMODAL, false);
        l->lambda_b = petl_param(h, nn_name(buf, "%s.qasn_lambda_b", prefix), SHAPE(d),
                                 MODALITY_MULTIMODAL, false);
        l->alpha = petl_param(h, nn_name(buf, "%s.qasn_alpha", prefix), SHAPE(d),
                              MODALITY_MULTIMODAL, false);
        l->beta = petl_param(h, nn_name(buf, "%s.qasn_beta", prefix), SHAPE(d), MODALITY_MULTIMODAL,
                             false);
        tensor_fill_(l->lambda_a, 1.0);
        tensor_fill_(l->alpha, 1.0);
    }
    petl_add_layer_hook(h, &bert->hooks.output, &q->base);
    return PETAL_OK;
}
