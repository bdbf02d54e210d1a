// Cross-attention of rows that share their images (bert_input.encoder_index over distinct states,
// nn_attention_forward_gathered), the way ITM's positive and hard-negative pairs read one batch,
// against the same pass over the states gathered for each row: hidden states and every trainable
// tensor's gradient, for the backbone and with PETL deltas on the key and value projections
// (Aurora's released code drops out In(x), LoRA drops out x) in training mode, where both ways
// must make the same random draws; the GEMM work the sharing saves; and ITM logits of texts
// scored against one image (retrieval's rerank).
#include <stdio.h>

#include "ops/ops.h"
#include "tensor/backend.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

#define TOL      1e-5 // f32 rounding, relative to each tensor's largest magnitude
#define MAX_GRAD 512

typedef struct {
    tiny t;
    tensor *states;     // (2, 5, 32): the distinct images' states, requiring grad
    tensor *ids, *mask; // 4 texts (the tiny batch twice)
    tensor *rows;       // their images: (1, 0, 0, 1)
    tensor *dir;        // a fixed direction the hidden states are projected on
} setup;

static setup setup_new(const petl_config *cfg) {
    setup s = {.t = tiny_new(PETAL_F32)};
    bert_set_dropout(&s.t.m->text, 0.1, 0.1);
    if (cfg) {
        ck_assert_msg(petl_attach(s.t.m, cfg) != NULL, "%s", petal_error_message());
        randomise(s.t.m, "*CP_V*,*lora_B*,*CP_attention*,*q_CP*,*k_CP*,*v_CP*");
    } else {
        registry_set_trainable(s.t.m->registry, "text_encoder.*", true);
    }
    rng_generator g = {7, 0};
    s.states = tensor_empty(PETAL_F32, SHAPE(2, 5, 32));
    tensor_normal_(s.states, 0, 1, &g);
    tensor_set_requires_grad(s.states, true);
    s.ids = tensor_concat((tensor *[]){s.t.ids, s.t.ids}, 2, 0);
    s.mask = tensor_concat((tensor *[]){s.t.mask, s.t.mask}, 2, 0);
    s.rows = tensor_from_data(PETAL_I64, SHAPE(4), (int64_t[]){1, 0, 0, 1});
    return s;
}

// The multimodal pass of the 4 texts: against the distinct states and rows, or (gathered)
// against states[rows] made beforehand.
static tensor *pass(const setup *s, bool gathered, rng_generator *rng) {
    const nn_ctx train = {true, rng};
    tensor *states = gathered ? tensor_index_select(s->states, 0, s->rows) : s->states;
    bert_input in = {.ids = s->ids,
                     .mask = s->mask,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = states,
                     .encoder_index = gathered ? NULL : s->rows};
    return bert_forward(&s->t.m->text, &in, &train);
}

typedef struct {
    tensor *hidden;
    tensor *grads[MAX_GRAD]; // each trainable tensor's gradient, then the states'
    int n;
} outcome;

static outcome run(setup *s, bool gathered) {
    rng_generator rng = {21, 0};
    outcome o = {.hidden = pass(s, gathered, &rng)};
    if (!s->dir) {
        rng_generator g = {1, 0};
        s->dir = tensor_empty(PETAL_F32, o.hidden->ndim, o.hidden->shape);
        tensor_normal_(s->dir, 0, 1, &g);
    }
    autograd_backward(tensor_sum_all(tensor_mul(o.hidden, s->dir)), NULL, false);
    tensor *trainable[MAX_GRAD];
    int n = registry_trainable(s->t.m->registry, trainable, MAX_GRAD - 1);
    ck_assert_int_lt(n, MAX_GRAD);
    trainable[n++] = s->states;
    for (int i = 0; i < n; i++) {
        o.grads[i] = trainable[i]->grad ? tensor_clone_data(trainable[i]->grad) : NULL;
        tensor_reset_grad(trainable[i]);
    }
    o.n = n;
    return o;
}

static void check_same(const petl_config *cfg, const char *what) {
    int mark = scope_begin();
    setup s = setup_new(cfg);
    outcome gathered = run(&s, true), shared = run(&s, false);
    char name[128];
    snprintf(name, sizeof name, "%s: hidden states", what);
    ck_assert(tensors_close_scaled(name, shared.hidden, gathered.hidden, TOL));
    ck_assert_int_eq(shared.n, gathered.n);
    int compared = 0;
    for (int i = 0; i < shared.n; i++) {
        ck_assert_msg((shared.grads[i] == NULL) == (gathered.grads[i] == NULL),
                      "%s: gradient %d reached one way only", what, i);
        if (!shared.grads[i]) continue;
        snprintf(name, sizeof name, "%s: gradient %d of %d", what, i, shared.n);
        ck_assert(tensors_close_scaled(name, shared.grads[i], gathered.grads[i], TOL));
        compared++;
    }
    ck_assert_int_gt(compared, 1);
    blip_free(s.t.m);
    scope_end(mark);
}

START_TEST(test_backbone) {
    check_same(NULL, "trainable text encoder");
}
END_TEST

START_TEST(test_aurora_code) {
    petl_config cfg = petl_config_aurora(PETL_CODE, 4);
    check_same(&cfg, "aurora (code)");
}
END_TEST

START_TEST(test_lora) {
    petl_config cfg = petl_config_lora(4);
    check_same(&cfg, "lora");
}
END_TEST

// Each distinct image's key and value products are made once: the forward pass does 2 layers x 2
// projections x (4 - 2) rows x 5 tokens x 32 x 32 multiply-adds fewer than over 4 gathered rows.
START_TEST(test_products_once) {
    int mark = scope_begin();
    setup s = setup_new(NULL);
    bool grad = grad_mode_set(false);
    int64_t flops[2];
    for (int gathered = 0; gathered < 2; gathered++) {
        backend_matmul_flops_reset();
        pass(&s, gathered, NULL);
        flops[gathered] = backend_matmul_flops();
    }
    grad_mode_set(grad);
    const bert_config *c = &s.t.m->text.cfg;
    ck_assert_int_eq(c->encoder_width, 32);
    int64_t saved = c->layers * 2 * (4 - 2) * 5 * c->encoder_width * c->hidden * 2;
    ck_assert_int_eq(flops[1] - flops[0], saved);
    blip_free(s.t.m);
    scope_end(mark);
}
END_TEST

// Retrieval's rerank scores an image against its top texts through rows: one image's products
// for k texts, the same logits as the image repeated k times.
START_TEST(test_itm_rows) {
    int mark = scope_begin();
    setup s = setup_new(NULL);
    const nn_ctx eval = NN_EVAL;
    tensor *one = tensor_slice(s.states, 0, 1, 2, 1); // (1, 5, 32)
    tensor *repeated = tensor_expand(one, SHAPE(4, 5, 32));
    tensor *zeros = tensor_zeros(PETAL_I64, SHAPE(4));
    tensor *want = blip_itm_logits(s.t.m, s.ids, s.mask, repeated, &eval);
    tensor *got = blip_itm_logits_rows(s.t.m, s.ids, s.mask, one, zeros, &eval);
    ck_assert(tensors_close_scaled("itm logits, one image for 4 texts", got, want, TOL));
    blip_free(s.t.m);
    scope_end(mark);
}
END_TEST

static void rows_mismatch(void) {
    setup s = setup_new(NULL);
    tensor *rows = tensor_from_data(PETAL_I64, SHAPE(3), (int64_t[]){0, 1, 0});
    bert_input in = {.ids = s.ids,
                     .mask = s.mask,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = s.states,
                     .encoder_index = rows};
    const nn_ctx eval = NN_EVAL;
    bert_forward(&s.t.m->text, &in, &eval);
}

START_TEST(test_errors) {
    ck_assert(aborts_with(
        rows_mismatch, "bert_forward: 4 rows against encoder_index [3] (into states [2, 5, 32])"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("gathered_kv");
    TCase *tc = tcase_with_timeout("gathered_kv", 60);
    tcase_add_test(tc, test_backbone);
    tcase_add_test(tc, test_aurora_code);
    tcase_add_test(tc, test_lora);
    tcase_add_test(tc, test_products_once);
    tcase_add_test(tc, test_itm_rows);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
