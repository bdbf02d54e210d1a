// nn/ and models/blip modules through f64 gradcheck: Linear (with an attached delta), LayerNorm,
// Embedding, multi-head attention (self, cross, with a KV cache), DropPath, a ViT block, BERT
// layers in text, multimodal and causal use, and the decoder's LM loss.
#include <math.h>

#include "autograd/gradcheck.h"
#include "models/blip/bert.h"
#include "models/blip/vit.h"
#include "nn/attention.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/test_util.h"

// A module's parameters are inputs too: gradcheck perturbs every trainable registry tensor.
typedef struct {
    param_registry *r;
    rng_generator g;
    nn_builder b;
} module_env;

static void env_init(module_env *e) {
    e->r = registry_new();
    e->g = (rng_generator){42, 0};
    e->b = (nn_builder){e->r, &e->g, PETAL_F64, false};
}

// Makes every parameter trainable and checks fn over (inputs..., parameters...).
static void check_module(module_env *e, gradcheck_fn fn, const void *ctx, int n_inputs,
                         tensor **inputs, const char *what) {
    registry_set_trainable(e->r, "*", true);
    tensor *all[64];
    int n = n_inputs;
    for (int i = 0; i < n_inputs; i++) all[i] = inputs[i];
    for (int i = 0; i < e->r->n && n < 64; i++)
        if (e->r->items[i].trainable) all[n++] = e->r->items[i].value;
    gradcheck_result res = gradcheck(fn, ctx, n, all, NULL);
    char line[256];
    gradcheck_describe(&res, line, sizeof line);
    ck_assert_msg(res.passed, "%s: %s", what, line);
}

static tensor *input(int ndim, const int64_t *shape, uint64_t seed) {
    tensor *t = tensor_empty(PETAL_F64, ndim, shape);
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return tensor_set_requires_grad(t, true);
}

// ---- Linear with a delta: y = x W^T + b + (x A^T) B^T ----

typedef struct {
    nn_delta base;
    tensor *a, *b;
} lowrank_delta;

static tensor *lowrank_forward(nn_delta *d, tensor *x, const nn_ctx *ctx) {
    (void)ctx;
    lowrank_delta *l = (lowrank_delta *)d;
    tensor *h = tensor_linear(x, l->a, NULL);
    return nn_consume(h, tensor_linear(h, l->b, NULL));
}

static tensor *linear_fn(tensor **in, const void *ctx) {
    const nn_ctx eval = NN_EVAL;
    return nn_linear_forward(ctx, in[0], &eval);
}

START_TEST(test_linear_with_delta) {
    int mark = scope_begin();
    module_env e;
    env_init(&e);
    nn_linear l;
    nn_linear_init(&l, &e.b, "fc", 4, 3, true, MODALITY_NONE, NN_INIT_TORCH);
    lowrank_delta d = {{.kind = "lowrank", .forward = lowrank_forward},
                       nn_param(&e.b, "fc.delta.a", SHAPE(2, 4), MODALITY_NONE, false),
                       nn_param(&e.b, "fc.delta.b", SHAPE(3, 2), MODALITY_NONE, false)};
    tensor_normal_(d.a, 0, 0.5, &e.g);
    tensor_normal_(d.b, 0, 0.5, &e.g);
    nn_linear_attach(&l, &d.base);
    tensor *x = input(SHAPE(2, 5, 4), 1);
    check_module(&e, linear_fn, &l, 1, &x, "linear + delta");
    l.deltas = NULL; // d lives on the stack
    nn_linear_free(&l);
    registry_free(e.r);
    scope_end(mark);
}
END_TEST

// ---- LayerNorm, Embedding ----

static tensor *layer_norm_fn(tensor **in, const void *ctx) {
    return nn_layer_norm_forward(ctx, in[0]);
}

static tensor *embedding_fn(tensor **in, const void *ctx) {
    tensor *ids = tensor_from_data(PETAL_I64, SHAPE(2, 3), (int64_t[]){0, 3, 3, 1, 4, 0});
    (void)in;
    return nn_consume(ids, nn_embedding_forward(ctx, ids));
}

START_TEST(test_layer_norm_and_embedding) {
    int mark = scope_begin();
    module_env e;
    env_init(&e);
    nn_layer_norm ln;
    nn_layer_norm_init(&ln, &e.b, "ln", 6, 1e-6, MODALITY_NONE);
    tensor_normal_(ln.weight, 1, 0.3, &e.g);
    tensor_normal_(ln.bias, 0, 0.3, &e.g);
    tensor *x = input(SHAPE(3, 6), 2);
    check_module(&e, layer_norm_fn, &ln, 1, &x, "layer norm");
    registry_free(e.r);
    env_init(&e);
    nn_embedding emb;
    nn_embedding_init(&emb, &e.b, "emb", 5, 4, MODALITY_NONE);
    check_module(&e, embedding_fn, &emb, 0, NULL, "embedding");
    registry_free(e.r);
    scope_end(mark);
}
END_TEST

// ---- attention: self with a padding mask, cross, and cached decoding ----

typedef struct {
    nn_attention *a;
    tensor *mask, *kv;
    bool cached;
} attention_case;

static tensor *attention_fn(tensor **in, const void *ctx) {
    const attention_case *c = ctx;
    const nn_ctx eval = NN_EVAL;
    if (!c->cached)
        return nn_attention_forward(c->a, in[0], c->kv ? in[1] : NULL, c->mask, NULL, &eval);
    // Two steps through a cache: the second step's output depends on the first's keys.
    nn_kv_cache cache = {NULL, NULL};
    tensor *first = tensor_slice(in[0], 1, 0, 2, 1), *second = tensor_slice(in[0], 1, 2, 3, 1);
    tensor *y1 = nn_attention_forward(c->a, first, NULL, NULL, &cache, &eval);
    tensor *y2 = nn_attention_forward(c->a, second, NULL, NULL, &cache, &eval);
    tensor *y = tensor_concat((tensor *[]){y1, y2}, 2, 1);
    nn_kv_cache_free(&cache);
    return y;
}

START_TEST(test_attention_module) {
    int mark = scope_begin();
    module_env e;
    env_init(&e);
    nn_attention a;
    nn_attention_init(&a, &e.b, "att", 4, 6, 2, 0.0, MODALITY_NONE, NN_INIT_TORCH);
    tensor *x = input(SHAPE(2, 3, 4), 3), *kv = input(SHAPE(2, 5, 6), 4);
    tensor *mask = bert_extended_mask(
        tensor_from_data(PETAL_F64, SHAPE(2, 5), (double[]){1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
    attention_case cross = {&a, mask, kv, false};
    check_module(&e, attention_fn, &cross, 2, (tensor *[]){x, kv}, "cross attention");
    nn_attention_free(&a);
    registry_free(e.r);
    env_init(&e);
    nn_attention s;
    nn_attention_init(&s, &e.b, "att", 4, 4, 2, 0.0, MODALITY_NONE, NN_INIT_TORCH);
    attention_case cached = {&s, NULL, NULL, true};
    check_module(&e, attention_fn, &cached, 1, &x, "cached self attention");
    nn_attention_free(&s);
    registry_free(e.r);
    scope_end(mark);
}
END_TEST

// ---- a ViT block with drop path in training mode (a fixed generator: the same samples) ----

static tensor *vit_block_fn(tensor **in, const void *ctx) {
    rng_generator g = {5, 0};
    nn_ctx train = {true, &g};
    return vit_block_forward(ctx, in[0], NULL, 0, &train);
}

START_TEST(test_vit_block) {
    int mark = scope_begin();
    module_env e;
    env_init(&e);
    vit_config cfg = {.image_size = 16,
                      .patch = 8,
                      .width = 4,
                      .depth = 2,
                      .heads = 2,
                      .mlp = 8,
                      .eps = 1e-6,
                      .drop_path = 0.5};
    vit_model vit;
    vit_init(&vit, &e.b, "v", &cfg);
    tensor *x = input(SHAPE(3, 5, 4), 6);
    check_module(&e, vit_block_fn, &vit.blocks[1], 1, &x, "vit block (drop path)");
    vit_free(&vit);
    registry_free(e.r);
    scope_end(mark);
}
END_TEST

// ---- BERT: layers in each mode, and the LM head's smoothed loss ----

typedef struct {
    bert_model *m;
    tensor *mask, *states;
    bool causal;       // the layer test: a decoder layer
    bool per_sequence; // the loss test: reduction 'none' (sum per sequence)
} bert_case;

static tensor *bert_layer_fn(tensor **in, const void *ctx) {
    const bert_case *c = ctx;
    const nn_ctx eval = NN_EVAL;
    tensor *self_mask = c->causal ? bert_causal_mask(c->mask, 4) : bert_extended_mask(c->mask);
    tensor *y = bert_layer_forward(&c->m->layers[0], &c->m->cfg, in[0], self_mask,
                                   c->states ? in[1] : NULL, NULL, NULL, NULL, 0, &eval);
    return nn_consume(self_mask, y);
}

static tensor *lm_loss_fn(tensor **in, const void *ctx) {
    const bert_case *c = ctx;
    tensor *labels =
        tensor_from_data(PETAL_I64, SHAPE(2, 4), (int64_t[]){1, 5, -100, 2, 0, 3, 7, -100});
    tensor *logits = bert_lm_logits(c->m, in[0]);
    tensor *loss = bert_lm_loss(logits, labels, c->per_sequence);
    tensor_free(labels);
    return nn_consume(logits, loss);
}

START_TEST(test_bert) {
    int mark = scope_begin();
    bert_config cfg = {.hidden = 4,
                       .layers = 1,
                       .heads = 2,
                       .intermediate = 6,
                       .vocab = 8,
                       .max_positions = 8,
                       .encoder_width = 6,
                       .eps = 1e-12,
                       .lm_head = true};
    tensor *x = input(SHAPE(2, 4, 4), 7), *states = input(SHAPE(2, 3, 6), 8);
    tensor *mask = tensor_from_data(PETAL_F64, SHAPE(2, 4), (double[]){1, 1, 1, 1, 1, 1, 1, 0});
    const char *names[] = {"bert text layer", "bert multimodal layer", "bert causal layer"};
    for (int k = 0; k < 3; k++) {
        module_env e;
        env_init(&e);
        bert_model m;
        bert_init(&m, &e.b, "t", "t", &cfg, MODALITY_TEXT);
        bert_case c = {&m, mask, k == 1 ? states : NULL, k == 2, true};
        // Only the layer's parameters (and the head's, below) are checked here.
        check_module(&e, bert_layer_fn, &c, k == 1 ? 2 : 1, (tensor *[]){x, states}, names[k]);
        if (k == 2) {
            check_module(&e, lm_loss_fn, &c, 1, &x, "lm loss (per sequence)");
            c.per_sequence = false;
            check_module(&e, lm_loss_fn, &c, 1, &x, "lm loss (mean)");
        }
        bert_free(&m);
        registry_free(e.r);
    }
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn_modules");
    TCase *tc = tcase_with_timeout("gradcheck", 120);
    tcase_add_test(tc, test_linear_with_delta);
    tcase_add_test(tc, test_layer_norm_and_embedding);
    tcase_add_test(tc, test_attention_module);
    tcase_add_test(tc, test_vit_block);
    tcase_add_test(tc, test_bert);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
