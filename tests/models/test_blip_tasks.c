// Captioning and VQA against the Salesforce BLIP code (tests/data/blip/tiny_caption.h5 and
// tiny_vqa.h5, written by tools/make_blip_fixtures.py): losses, gradients, and the exact token
// sequences of beam search (with and without a repetition penalty) and greedy search.
#include <stdio.h>
#include <string.h>

#include "models/blip/tasks.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/test_util.h"

#define TOL 1e-5

static blip_model *load_model(fixture *f, const char *file, blip_task task) {
    ck_assert(fixture_open(f, file));
    blip_config cfg = blip_config_tiny(task);
    blip_model *m = blip_new_for_loading(&cfg, PETAL_F32);
    ck_assert_int_eq(fixture_load_weights(f, m->registry), 0);
    return m;
}

static tensor *mask_input(fixture *f, const char *name) {
    tensor *m = fixture_get(f, name);
    return tensor_cast(m, PETAL_F32);
}

// The generated sequences equal the fixture's token for token.
static bool same_tokens(fixture *f, const char *dataset, const generate_result *r) {
    tensor *want = fixture_get(f, dataset);
    bool ok = want->shape[0] == r->n && want->shape[1] == r->len;
    for (int64_t i = 0; ok && i < r->n * r->len; i++) ok = tensor_data_i64(want)[i] == r->tokens[i];
    if (!ok) {
        fprintf(stderr, "%s: got %lld x %lld tokens:", dataset, (long long)r->n, (long long)r->len);
        for (int64_t i = 0; i < r->n * r->len; i++)
            fprintf(stderr, " %lld", (long long)r->tokens[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

static void check_grads(fixture *f, blip_model *m, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char name[256];
        snprintf(name, sizeof name, "grads/%s", names[i]);
        ck_assert_msg(fixture_check(f, name, registry_get(m->registry, names[i])->grad, 1e-4), "%s",
                      name);
    }
}

START_TEST(test_caption) {
    int mark = scope_begin();
    fixture f;
    blip_model *m = load_model(&f, "blip/tiny_caption.h5", BLIP_CAPTION);
    tensor *image = tensor_set_requires_grad(fixture_get(&f, "inputs/image"), true);
    tensor *ids = fixture_get(&f, "inputs/ids"), *mask = mask_input(&f, "inputs/mask");
    int64_t prompt_len = (int64_t)tensor_item(fixture_get(&f, "meta"));
    registry_set_trainable(m->registry, "*", true);
    const nn_ctx eval = NN_EVAL;
    tensor *loss = blip_caption_loss(m, image, ids, mask, prompt_len, &eval);
    ck_assert(fixture_check(&f, "outputs/loss", loss, TOL));
    autograd_backward(loss, NULL, false);
    ck_assert(fixture_check(&f, "grads/image", image->grad, 1e-4));
    static const char *const params[] = {
        "text_decoder.cls.predictions.bias", "text_decoder.cls.predictions.transform.dense.weight",
        "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
        "text_decoder.bert.embeddings.word_embeddings.weight",
        "visual_encoder.blocks.1.mlp.fc1.weight"};
    check_grads(&f, m, params, sizeof params / sizeof params[0]);
    tensor *prompt = tensor_from_data(PETAL_I64, SHAPE(1, 4), (int64_t[]){126, 10, 11, 12});
    generate_options o = {.num_beams = 3,
                          .max_length = 12,
                          .min_length = 6,
                          .repetition_penalty = 1.0,
                          .length_penalty = 1.0,
                          .eos = 2,
                          .pad = 0};
    generate_result r = blip_caption_generate(m, image, prompt, &o);
    ck_assert(same_tokens(&f, "outputs/beam3", &r));
    generate_result_free(&r);
    o.repetition_penalty = 1.5;
    r = blip_caption_generate(m, image, prompt, &o);
    ck_assert(same_tokens(&f, "outputs/beam3_penalty", &r));
    generate_result_free(&r);
    o.repetition_penalty = 1.0;
    o.num_beams = 1;
    r = blip_caption_generate(m, image, prompt, &o);
    ck_assert(same_tokens(&f, "outputs/greedy", &r));
    generate_result_free(&r);
    blip_free(m);
    fixture_close(&f);
    scope_end(mark);
}
END_TEST

START_TEST(test_vqa) {
    int mark = scope_begin();
    fixture f;
    blip_model *m = load_model(&f, "blip/tiny_vqa.h5", BLIP_VQA);
    tensor *image = tensor_set_requires_grad(fixture_get(&f, "inputs/image"), true);
    tensor *q_ids = fixture_get(&f, "inputs/q_ids"), *q_mask = mask_input(&f, "inputs/q_mask");
    tensor *a_ids = fixture_get(&f, "inputs/a_ids"), *a_mask = mask_input(&f, "inputs/a_mask");
    tensor *n = fixture_get(&f, "inputs/n"), *weights = fixture_get(&f, "inputs/weights");
    registry_set_trainable(m->registry, "*", true);
    const nn_ctx eval = NN_EVAL;
    ck_assert(fixture_check(&f, "outputs/question_states",
                            blip_vqa_encode(m, image, q_ids, q_mask, &eval), TOL));
    tensor *loss =
        blip_vqa_loss(m, image, q_ids, q_mask, a_ids, a_mask, tensor_data_i64(n), weights, &eval);
    ck_assert(fixture_check(&f, "outputs/loss", loss, TOL));
    autograd_backward(loss, NULL, false);
    ck_assert(fixture_check(&f, "grads/image", image->grad, 1e-4));
    static const char *const params[] = {
        "text_decoder.cls.predictions.transform.LayerNorm.weight",
        "text_encoder.encoder.layer.0.crossattention.self.value.weight",
        "text_decoder.bert.encoder.layer.0.crossattention.self.query.weight"};
    check_grads(&f, m, params, sizeof params / sizeof params[0]);
    tensor *cand_ids = fixture_get(&f, "inputs/cand_ids");
    tensor *cand_mask = mask_input(&f, "inputs/cand_mask");
    tensor *chosen = blip_vqa_rank(m, image, q_ids, q_mask, cand_ids, cand_mask, 3);
    ck_assert(fixture_check(&f, "outputs/rank", chosen, 0));
    tensor_free(chosen);
    generate_options o = {.num_beams = 3,
                          .max_length = 10,
                          .min_length = 1,
                          .repetition_penalty = 1.0,
                          .length_penalty = 1.0,
                          .eos = 2,
                          .pad = 0};
    generate_result r = blip_vqa_generate(m, image, q_ids, q_mask, &o);
    ck_assert(same_tokens(&f, "outputs/generate", &r));
    generate_result_free(&r);
    blip_free(m);
    fixture_close(&f);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("blip_tasks");
    TCase *tc = tcase_with_timeout("parity", 60);
    tcase_add_test(tc, test_caption);
    tcase_add_test(tc, test_vqa);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
