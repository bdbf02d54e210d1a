// models/blip/video.h against the Salesforce BLIP code (tests/data/video/tiny_video.h5, written by
// tools/make_video_fixtures.py): frame embeddings, both ITC video features, similarities, ITM
// logits of every (video, text) pair and eval_retrieval_video.py's score matrices; and an f64
// gradcheck of the ITC video feature path.
#include <stdio.h>

#include "autograd/gradcheck.h"
#include "models/blip/video.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/hashed.h"
#include "tests/test_util.h"

#define TOL 1e-5 // f32, relative to each tensor's largest magnitude (at least 1)

typedef struct {
    fixture f;
    blip_model *m;
    tensor *frames, *ids, *mask; // (B, T, 3, S, S), (Tx, L) with [CLS] first, (Tx, L)
} setup;

static blip_config tiny_config(void) {
    blip_config cfg = blip_config_tiny(BLIP_RETRIEVAL);
    cfg.momentum = false;
    return cfg;
}

// The script's model: the tiny retrieval BLIP with make_blip_fixtures.py's hashed parameters.
static setup load(void) {
    setup s;
    ck_assert(fixture_open(&s.f, "video/tiny_video.h5"));
    blip_config cfg = tiny_config();
    s.m = blip_new_for_loading(&cfg, PETAL_F32);
    hashed_params(s.m->registry, "");
    s.frames = fixture_get(&s.f, "inputs/frames");
    s.ids = fixture_get(&s.f, "inputs/ids");
    s.mask = tensor_cast(fixture_get(&s.f, "inputs/mask"), PETAL_F32);
    return s;
}

// Prints the largest difference (the parity figure docs/video-models.md quotes).
static tensor *report(const fixture *f, const char *dataset, tensor *got) {
    tensor *want = fixture_get(f, dataset);
    tensor *diff = tensor_reshape(tensor_abs(tensor_sub(got, want)), SHAPE(-1));
    printf("%-26s max |petal - torch| %.3g\n", dataset, tensor_item(tensor_max(diff, 0, false)));
    fflush(stdout);
    return want;
}

static bool check(const fixture *f, const char *dataset, tensor *got, double tol) {
    report(f, dataset, got);
    return fixture_check(f, dataset, got, tol);
}

// The score matrices hold -100 outside the top k: compared absolutely, not relative to 100.
static bool check_abs(const fixture *f, const char *dataset, tensor *got, double atol) {
    return tensors_close(dataset, got, report(f, dataset, got), atol, 0);
}

// Every (video, text) pair, video-major: rows (V Tx) of texts and of frame embeddings.
static void all_pairs(tensor *ids, tensor *mask, tensor *embeds, tensor **pair_ids,
                      tensor **pair_mask, tensor **pair_embeds) {
    int64_t v = embeds->shape[0], tx = ids->shape[0], l = ids->shape[1];
    *pair_ids = tensor_reshape(tensor_expand(ids, SHAPE(v, tx, l)), SHAPE(v * tx, l));
    *pair_mask = tensor_reshape(tensor_expand(mask, SHAPE(v, tx, l)), SHAPE(v * tx, l));
    tensor *e = tensor_unsqueeze(embeds, 1); // (V, 1, T, N + 1, D)
    int64_t t = embeds->shape[1], n = embeds->shape[2], d = embeds->shape[3];
    *pair_embeds = tensor_reshape(tensor_expand(e, SHAPE(v, tx, t, n, d)), SHAPE(v * tx, t, n, d));
}

START_TEST(test_parity) {
    int mark = scope_begin();
    setup s = load();
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_video_embeds(s.m, s.frames, 0, &eval); // (B, T, N + 1, D)
    ck_assert(check(&s.f, "outputs/frame_embeds", embeds, TOL));
    tensor *feat = blip_video_feat(s.m, embeds, BLIP_VIDEO_ITC_PROJ_MEAN);
    ck_assert(check(&s.f, "outputs/video_feat_blip", feat, TOL));
    ck_assert(check(&s.f, "outputs/video_feat_aurora",
                    blip_video_feat(s.m, embeds, BLIP_VIDEO_ITC_MEAN_PROJ), TOL));
    tensor *text_feat = blip_text_feat(s.m, s.ids, s.mask, &eval);
    ck_assert(check(&s.f, "outputs/text_feat", text_feat, TOL));
    ck_assert(
        check(&s.f, "outputs/sims", tensor_matmul(feat, tensor_transpose(text_feat, 0, 1)), TOL));
    tensor *ids, *mask, *pair_embeds;
    all_pairs(blip_with_first_token(s.ids, s.m->cfg.tokens.enc), s.mask, embeds, &ids, &mask,
              &pair_embeds);
    ck_assert(check(&s.f, "outputs/itm_logits",
                    blip_video_itm_logits(s.m, ids, mask, pair_embeds, &eval), TOL));
    tensor *v2t, *t2v;
    int64_t k = (int64_t)tensor_item(fixture_get(&s.f, "inputs/k_test"));
    blip_video_retrieval_scores(s.m, embeds, feat, s.ids, s.mask, text_feat, k, 1.0, &v2t, &t2v);
    ck_assert(check_abs(&s.f, "outputs/score_v2t", v2t, TOL));
    ck_assert(check_abs(&s.f, "outputs/score_t2v", t2v, TOL));
    tensor_free(v2t);
    tensor_free(t2v);
    blip_free(s.m);
    fixture_close(&s.f);
    scope_end(mark);
}
END_TEST

// Chunked encoding gives the one-pass embeddings, with a last chunk shorter than the others, and
// records nothing for backward even when the frames require grad.
START_TEST(test_chunks) {
    int mark = scope_begin();
    setup s = load();
    const nn_ctx eval = NN_EVAL;
    tensor_set_requires_grad(s.frames, true);
    tensor *whole = blip_video_embeds(s.m, s.frames, 0, &eval);
    ck_assert(whole->grad_fn != NULL);
    for (int64_t chunk = 1; chunk <= 7; chunk += 3) { // 6 frames: chunks of 1, 4 (+ 2) and 7
        tensor *parts = blip_video_embeds(s.m, s.frames, chunk, &eval);
        ck_assert(parts->grad_fn == NULL && !parts->requires_grad);
        ck_assert_msg(tensors_close("chunked embeds", parts, whole, 1e-6, 1e-6), "chunk %lld",
                      (long long)chunk);
    }
    blip_free(s.m);
    fixture_close(&s.f);
    scope_end(mark);
}
END_TEST

typedef struct {
    blip_model *m;
    tensor *direction; // (B, 2 E) a fixed random projection of both features to one number
} feat_ctx;

static tensor *video_feat_fn(tensor **in, const void *vctx) {
    const feat_ctx *c = vctx;
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_video_embeds(c->m, in[0], 0, &eval);
    tensor *a = blip_video_feat(c->m, embeds, BLIP_VIDEO_ITC_PROJ_MEAN);
    tensor *b = blip_video_feat(c->m, embeds, BLIP_VIDEO_ITC_MEAN_PROJ);
    tensor *both = tensor_concat((tensor *[]){a, b}, 2, 1); // (B, 2 E)
    return tensor_reshape(tensor_sum_all(tensor_mul(both, c->direction)), SHAPE(1));
}

START_TEST(test_gradcheck_video_feat) {
    int mark = scope_begin();
    blip_config cfg = tiny_config();
    blip_model *m = blip_new(&cfg, PETAL_F64, 7);
    rng_generator g = {8, 0};
    tensor *frames = tensor_empty(PETAL_F64, SHAPE(2, 2, 3, 32, 32));
    tensor_normal_(frames, 0, 1, &g);
    tensor_set_requires_grad(frames, true);
    static const char *const params[] = {"vision_proj.weight", "vision_proj.bias",
                                         "visual_encoder.blocks.1.attn.qkv.weight",
                                         "visual_encoder.cls_token"};
    tensor *inputs[5] = {frames};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(registry_set_trainable(m->registry, params[i], true), 1);
        inputs[i + 1] = registry_get(m->registry, params[i]);
    }
    feat_ctx c = {m, tensor_empty(PETAL_F64, SHAPE(2, 2 * cfg.embed_dim))};
    tensor_normal_(c.direction, 0, 1, &g);
    gradcheck_options o = GRADCHECK_DEFAULTS;
    o.max_per_input = 24; // spread over each tensor: a wrong rule corrupts whole rows or columns
    gradcheck_result r = gradcheck(video_feat_fn, &c, 5, inputs, &o);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    printf("gradcheck video ITC features: %s\n", line);
    ck_assert_msg(r.passed, "%s", line);
    blip_free(m);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("video_blip");
    TCase *tc = tcase_with_timeout("video", 60);
    tcase_add_test(tc, test_parity);
    tcase_add_test(tc, test_chunks);
    tcase_add_test(tc, test_gradcheck_video_feat);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
