// models/blip/video.h against the Salesforce BLIP code (tests/data/video/tiny_video.h5, written by
// tools/make_video_fixtures.py): frame embeddings, both ITC video features, similarities, ITM
// logits of every (video, text) pair and eval_retrieval_video.py's score matrices; Aurora's
// frame-aware attention and video training step (CP/med.py, CP/blip_retrieval.py, written on
// BLIP's modules by the script); f64 gradchecks of the ITC video feature path and of the video
// losses with frame-aware attention; VideoQA of one-frame videos against image VQA.
#include <stdio.h>

#include "autograd/gradcheck.h"
#include "models/blip/tasks.h"
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
    tensor *g = tensor_cast(got, PETAL_F64), *w = tensor_cast(want, PETAL_F64); // ids too
    tensor *diff = tensor_reshape(tensor_abs(tensor_sub(g, w)), SHAPE(-1));
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

// Frame features, the key scale of CP/med.py from them and from strongly uneven weights, and the
// multimodal encoder with its cross-attention keys scaled.
START_TEST(test_frame_aware) {
    int mark = scope_begin();
    setup s = load();
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_video_embeds(s.m, s.frames, 0, &eval); // (B, T, N + 1, D)
    int64_t b = embeds->shape[0], t = embeds->shape[1], tokens = embeds->shape[2];
    tensor *frame_feat = blip_video_frame_feat(s.m, embeds);
    ck_assert(check(&s.f, "frame_aware/frame_feat", frame_feat, TOL));
    tensor *ids = tensor_slice(s.ids, 0, 0, b, 1), *mask = tensor_slice(s.mask, 0, 0, b, 1);
    tensor *text_feat = blip_text_feat(s.m, ids, mask, &eval);
    ck_assert(check(&s.f, "frame_aware/feat_scale",
                    blip_video_frame_scale(text_feat, frame_feat, tokens), TOL));
    // text . frame_t = weight[t] when the frame features are the unit vectors
    tensor *eye = tensor_zeros(PETAL_F32, SHAPE(t, t));
    for (int64_t i = 0; i < t; i++) tensor_data_f32(eye)[i * t + i] = 1.0f;
    tensor *weight = fixture_get(&s.f, "frame_aware/weight");
    tensor *units = tensor_expand(eye, SHAPE(b, t, t));
    tensor *scale = blip_video_frame_scale(weight, units, tokens);
    ck_assert(check(&s.f, "frame_aware/key_scale", scale, TOL));
    tensor *states = blip_video_states(embeds);
    bert_input in = {.ids = blip_with_first_token(ids, s.m->cfg.tokens.enc),
                     .mask = mask,
                     .mode = BERT_MULTIMODAL,
                     .encoder_states = states,
                     .key_scale = scale};
    ck_assert(check(&s.f, "frame_aware/hidden", bert_forward(&s.m->text, &in, &eval), TOL));
    blip_free(s.m);
    fixture_close(&s.f);
    scope_end(mark);
}
END_TEST

// The training fixture's model: momentum copies equal to the hashed model, temp 0.07 and the
// queues the script started from.
static blip_model *train_model(const fixture *f) {
    blip_config cfg = blip_config_tiny(BLIP_RETRIEVAL);
    cfg.queue_size = 12;
    blip_model *m = blip_new_for_loading(&cfg, PETAL_F32);
    hashed_params(m->registry, "");
    blip_momentum_copy(m);
    tensor_fill_(m->temp, 0.07);
    static const char *const queues[] = {"image_queue", "text_queue", "idx_queue", "ptr_queue"};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "train/inputs/%s", queues[i]);
        tensor_copy_(registry_get(m->registry, queues[i]), fixture_get(f, name));
    }
    return m;
}

static tensor *group_get(const fixture *f, const char *group, const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, name);
    return fixture_get(f, path);
}

static bool group_check(const fixture *f, const char *group, const char *name, tensor *got,
                        double tol) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, name);
    return check(f, path, got, tol);
}

// Gradients are far below 1 here, so they are compared relative to their own largest magnitude
// (1e-4 of it), with a 1e-10 floor: without frame-aware attention the key bias gets no gradient
// (a shift of every key changes no softmax), only rounding noise.
static bool grad_check(const fixture *f, const char *group, const char *name, tensor *got) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", group, name);
    tensor *want = report(f, path, got);
    tensor *flat = tensor_reshape(tensor_abs(want), SHAPE(-1));
    double atol = 1e-4 * tensor_item(tensor_max(flat, 0, false)) + 1e-10;
    return tensors_close(path, got, want, atol, 0);
}

// One step of Aurora's video retrieval training against the script's: both losses with its
// negatives replayed, the gradients of a cross-attention key projection (and of the frames with
// frame-aware attention), and the queues after the step.
static void training_step(const char *group, bool frame_aware) {
    int mark = scope_begin();
    fixture f;
    ck_assert(fixture_open(&f, "video/tiny_video.h5"));
    blip_model *m = train_model(&f);
    tensor *frames = tensor_set_requires_grad(fixture_get(&f, "train/inputs/frames"), true);
    tensor *ids = fixture_get(&f, "train/inputs/ids");
    tensor *mask = tensor_cast(fixture_get(&f, "train/inputs/mask"), PETAL_F32);
    tensor *video_ids = fixture_get(&f, "train/inputs/idx");
    registry_set_trainable(m->registry, "*", true);
    registry_set_trainable(m->registry, "*_m.*", false);
    const nn_ctx eval = NN_EVAL;
    retrieval_options opt = {
        .alpha = 0.4,
        .neg_image_for_text = tensor_data_i64(group_get(&f, group, "neg_video_for_text")),
        .neg_text_for_image = tensor_data_i64(group_get(&f, group, "neg_text_for_video"))};
    blip_video_options video = {BLIP_VIDEO_ITC_MEAN_PROJ, frame_aware};
    retrieval_losses l =
        blip_video_retrieval_losses(m, frames, ids, mask, video_ids, &opt, &video, &eval);
    ck_assert(group_check(&f, group, "loss_ita", l.ita, TOL));
    ck_assert(group_check(&f, group, "loss_itm", l.itm, TOL));
    autograd_backward(tensor_add(l.ita, l.itm), NULL, false);
    const char *key = "text_encoder.encoder.layer.0.crossattention.self.key";
    char name[128];
    snprintf(name, sizeof name, "%s.weight", key);
    ck_assert(grad_check(&f, group, "grad_key_weight", registry_get(m->registry, name)->grad));
    snprintf(name, sizeof name, "%s.bias", key);
    ck_assert(grad_check(&f, group, "grad_key_bias", registry_get(m->registry, name)->grad));
    if (frame_aware) ck_assert(grad_check(&f, group, "grad_frames", frames->grad));
    static const char *const queues[] = {"image_queue", "text_queue", "idx_queue", "ptr_queue"};
    for (int i = 0; i < 4; i++)
        ck_assert(group_check(&f, group, queues[i], registry_get(m->registry, queues[i]), TOL));
    blip_free(m);
    fixture_close(&f);
    scope_end(mark);
}

START_TEST(test_training_step) {
    training_step("train_plain", false);
}
END_TEST

START_TEST(test_training_step_frame_aware) {
    training_step("train_frame_aware", true);
}
END_TEST

// An f64 tiny model without momentum (a gradcheck's repeated calls must not move the queues),
// three videos and texts, the negatives fixed.
typedef struct {
    blip_model *m;
    tensor *frames, *ids, *mask, *video_ids; // (3, 2, 3, S, S), (3, L), (3, L), (3)
    tensor *frame_feat;                      // (3, 2, E) at the frames the check starts from
} loss_ctx;

static const int64_t neg_video[] = {1, 2, 0}, neg_text[] = {2, 0, 1};

static loss_ctx loss_setup(void) {
    blip_config cfg = tiny_config();
    loss_ctx c = {.m = blip_new(&cfg, PETAL_F64, 11)};
    rng_generator g = {12, 0};
    c.frames = tensor_empty(PETAL_F64, SHAPE(3, 2, 3, 32, 32));
    tensor_normal_(c.frames, 0, 1, &g);
    static const int64_t ids[] = {1, 9, 17, 33, 2, 1, 40, 2, 0, 0, 1, 70, 71, 72, 2};
    static const double mask[] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    static const int64_t video_ids[] = {0, 1, 2};
    c.ids = tensor_from_data(PETAL_I64, SHAPE(3, 5), ids);
    c.mask = tensor_from_data(PETAL_F64, SHAPE(3, 5), mask);
    c.video_ids = tensor_from_data(PETAL_I64, SHAPE(3), video_ids);
    const nn_ctx eval = NN_EVAL;
    bool grad = grad_mode_set(false);
    c.frame_feat = blip_video_frame_feat(c.m, blip_video_embeds(c.m, c.frames, 0, &eval));
    grad_mode_set(grad);
    return c;
}

static tensor *loss_sum(retrieval_losses l) {
    return tensor_reshape(tensor_add(l.ita, l.itm), SHAPE(1));
}

static const retrieval_options fixed_negatives = {.neg_image_for_text = neg_video,
                                                  .neg_text_for_image = neg_text};

// The video losses as the trainer calls them: ITC and ITM with frame-aware attention.
static tensor *video_loss_fn(tensor **in, const void *vctx) {
    (void)in; // the inputs are the model's parameters, read through it
    const loss_ctx *c = vctx;
    const nn_ctx eval = NN_EVAL;
    blip_video_options video = {BLIP_VIDEO_ITC_MEAN_PROJ, true};
    return loss_sum(blip_video_retrieval_losses(c->m, c->frames, c->ids, c->mask, c->video_ids,
                                                &fixed_negatives, &video, &eval));
}

// blip_video_retrieval_losses' encoding with the frame features held at the starting frames':
// frame-aware attention's scale has no gradient, so finite differences in the frames must not
// move it either.
static blip_visual held_scale_encode(const vit_model *vit, const nn_linear *proj, tensor *frames,
                                     bool with_frames, const void *opts, const nn_ctx *ctx) {
    const loss_ctx *c = opts;
    ck_assert(vit == &c->m->vit && proj == &c->m->vision_proj && with_frames);
    tensor *embeds = blip_video_embeds(c->m, frames, 0, ctx);
    return (blip_visual){blip_video_states(embeds),
                         blip_video_feat(c->m, embeds, BLIP_VIDEO_ITC_MEAN_PROJ),
                         tensor_detach(c->frame_feat)};
}

static tensor *frames_loss_fn(tensor **in, const void *vctx) {
    const loss_ctx *c = vctx;
    const nn_ctx eval = NN_EVAL;
    blip_visual_encoder enc = {held_scale_encode, c, true};
    return loss_sum(blip_retrieval_losses_with(c->m, &enc, in[0], c->ids, c->mask, c->video_ids,
                                               &fixed_negatives, &eval));
}

static void run_gradcheck(const char *what, tensor *(*fn)(tensor **, const void *),
                          const loss_ctx *c, int n, tensor **inputs) {
    gradcheck_options o = GRADCHECK_DEFAULTS;
    o.max_per_input = 24;
    gradcheck_result r = gradcheck(fn, c, n, inputs, &o);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    printf("gradcheck %s: %s\n", what, line);
    ck_assert_msg(r.passed, "%s", line);
}

// The parameters the frame-aware scale does not depend on (the cross-attention's and the ITM
// head's) through blip_video_retrieval_losses itself; the frames through the same losses with the
// scale held.
START_TEST(test_gradcheck_video_losses) {
    int mark = scope_begin();
    loss_ctx c = loss_setup();
    static const char *const params[] = {
        "text_encoder.encoder.layer.0.crossattention.self.key.weight",
        "text_encoder.encoder.layer.0.crossattention.self.key.bias",
        "text_encoder.encoder.layer.1.crossattention.self.key.bias",
        "text_encoder.encoder.layer.1.crossattention.self.value.weight", "itm_head.weight"};
    tensor *inputs[5];
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(registry_set_trainable(c.m->registry, params[i], true), 1);
        inputs[i] = registry_get(c.m->registry, params[i]);
    }
    run_gradcheck("video losses (parameters)", video_loss_fn, &c, 5, inputs);
    tensor_set_requires_grad(c.frames, true);
    run_gradcheck("video losses (frames)", frames_loss_fn, &c, 1, &c.frames);
    blip_free(c.m);
    scope_end(mark);
}
END_TEST

static bool same_generated(const generate_result *a, const generate_result *b) {
    bool ok = a->n == b->n && a->len == b->len;
    for (int64_t i = 0; ok && i < a->n * a->len; i++) ok = a->tokens[i] == b->tokens[i];
    return ok;
}

// One-frame videos are images: VideoQA's loss, rank and generate equal image VQA's.
START_TEST(test_video_vqa_one_frame) {
    int mark = scope_begin();
    fixture f;
    ck_assert(fixture_open(&f, "blip/tiny_vqa.h5"));
    blip_config cfg = blip_config_tiny(BLIP_VQA);
    blip_model *m = blip_new_for_loading(&cfg, PETAL_F32);
    ck_assert_int_eq(fixture_load_weights(&f, m->registry), 0);
    tensor *image = fixture_get(&f, "inputs/image"); // (B, 3, S, S)
    tensor *frames = tensor_unsqueeze(image, 1);     // (B, 1, 3, S, S)
    tensor *q_ids = fixture_get(&f, "inputs/q_ids");
    tensor *q_mask = tensor_cast(fixture_get(&f, "inputs/q_mask"), PETAL_F32);
    tensor *a_ids = fixture_get(&f, "inputs/a_ids");
    tensor *a_mask = tensor_cast(fixture_get(&f, "inputs/a_mask"), PETAL_F32);
    const int64_t *n = tensor_data_i64(fixture_get(&f, "inputs/n"));
    tensor *weights = fixture_get(&f, "inputs/weights");
    const nn_ctx eval = NN_EVAL;
    tensor *want = blip_vqa_loss(m, image, q_ids, q_mask, a_ids, a_mask, n, weights, &eval);
    tensor *got = blip_video_vqa_loss(m, frames, q_ids, q_mask, a_ids, a_mask, n, weights, &eval);
    printf("video VQA loss, T = 1: %.9g, image VQA loss %.9g\n", tensor_item(got),
           tensor_item(want));
    ck_assert(tensors_close("vqa loss", got, want, 0, 0));
    tensor *cand_ids = fixture_get(&f, "inputs/cand_ids");
    tensor *cand_mask = tensor_cast(fixture_get(&f, "inputs/cand_mask"), PETAL_F32);
    tensor *rank_want = blip_vqa_rank(m, image, q_ids, q_mask, cand_ids, cand_mask, 3);
    tensor *rank_got = blip_video_vqa_rank(m, frames, 1, q_ids, q_mask, cand_ids, cand_mask, 3);
    ck_assert(tensors_close("vqa rank", rank_got, rank_want, 0, 0));
    tensor_free(rank_want);
    tensor_free(rank_got);
    generate_options o = {3, 10, 1, 1.0, 1.0, 2, 0};
    generate_result g_want = blip_vqa_generate(m, image, q_ids, q_mask, &o);
    generate_result g_got = blip_video_vqa_generate(m, frames, 0, q_ids, q_mask, &o);
    ck_assert(same_generated(&g_got, &g_want));
    generate_result_free(&g_want);
    generate_result_free(&g_got);
    blip_free(m);
    fixture_close(&f);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("video_blip");
    TCase *tc = tcase_with_timeout("video", 120);
    tcase_add_test(tc, test_parity);
    tcase_add_test(tc, test_chunks);
    tcase_add_test(tc, test_gradcheck_video_feat);
    tcase_add_test(tc, test_frame_aware);
    tcase_add_test(tc, test_training_step);
    tcase_add_test(tc, test_training_step_frame_aware);
    tcase_add_test(tc, test_gradcheck_video_losses);
    tcase_add_test(tc, test_video_vqa_one_frame);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
