// The released Aurora protocol (docs/petl.md "Released Aurora protocol"): a training checkpoint
// written by torch with the released code's key names (tools/make_aurora_fixture.py) converts into
// a backbone checkpoint plus a PETL file that loads onto the released configuration with every
// tensor's values; the momentum encoders' copies (text_encoder_m's GQT vectors included) are
// accepted and dropped; files that lack a tensor or hold one of the wrong shape are refused naming
// it. And the released decoder's KV-cached generation steps without CP on their keys and values
// (cp.plain_cached_kv) against a step-by-step decoding that switches those deltas off by hand.
// Retrieval and VQA checkpoints; d = 8, R = 4 throughout.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/pth.h"
#include "models/blip/generate.h"
#include "models/blip/load.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

#define AURORA_DATA(name) PETAL_TEST_DATA "/aurora/" name

static const convert_options tiny_opts = {.vocab_path = AURORA_DATA("vocab.txt"), .heads = 1};

static bool dropped_for(const convert_report *rep, const char *name, const char *reason) {
    for (int i = 0; i < rep->n_dropped; i++)
        if (strcmp(rep->dropped[i].name, name) == 0) return strstr(rep->dropped[i].reason, reason);
    return false;
}

static void same_values(const char *name, const tensor *got, const tensor *want) {
    ck_assert_msg(tensors_close(name, got, want, 0, 0), "%s differs from the .pth", name);
}

// Converts the fixture `name` (n_aurora Aurora tensors of `params` parameters), checks that the
// backbone holds none of them, and loads the PETL file onto the released configuration attached to
// it (with momentum encoders when `momentum`): every Aurora tensor and `head` (NULL: none) holds
// the .pth's values. Returns the loaded model for more checks (blip_loaded_free it).
static blip_loaded convert_and_load(const char *name, int n_aurora, int64_t params, bool momentum,
                                    const char *head, convert_report *rep) {
    char src[512], petl_file[256];
    snprintf(src, sizeof src, "%s/aurora/%s.pth", PETAL_TEST_DATA, name);
    snprintf(petl_file, sizeof petl_file, "%s", test_dir_path("aurora.h5"));
    const char *backbone = test_dir_path("backbone.h5");
    ck_assert_msg(petl_convert_aurora(src, backbone, petl_file, &tiny_opts, rep) == PETAL_OK, "%s",
                  petal_error_message());
    ck_assert_int_eq(rep->petl.n, n_aurora);
    ck_assert_int_eq(rep->n_written + rep->n_dropped + rep->petl.n, rep->n_read);

    tensor_list written, source;
    checkpoint_info info;
    ck_assert_int_eq(checkpoint_read(backbone, &written, &info), PETAL_OK);
    for (int i = 0; i < written.n; i++)
        ck_assert_msg(!strstr(written.items[i].name, "CP"), "%s in the backbone",
                      written.items[i].name);
    tensor_list_free(&written);
    checkpoint_info_free(&info);

    blip_loaded l;
    ck_assert_msg(blip_load(backbone, &(blip_load_options){.momentum = momentum}, &l) == PETAL_OK,
                  "%s", petal_error_message());
    petl_config cfg = petl_config_aurora(PETL_CODE, 4);
    petl_handle *h = petl_attach(l.model, &cfg);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    ck_assert_msg(petl_load(h, petl_file, false) == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(pth_read(src, &source), PETAL_OK);
    const param_registry *r = l.model->registry;
    int64_t aurora_params = 0;
    for (int i = 0; i < rep->petl.n; i++) {
        const char *t = rep->petl.items[i].name;
        same_values(t, registry_get(r, t), tensor_list_find(&source, t)->value);
        aurora_params += tensor_numel(rep->petl.items[i].value);
    }
    ck_assert_int_eq(aurora_params, params);
    ck_assert_int_eq(petl_count(h), params);
    if (head) same_values(head, registry_get(r, head), tensor_list_find(&source, head)->value);
    tensor_list_free(&source);
    return l;
}

// d = 8, R = 4: 2 d R + R^3 shared, 12 R per ViT block (CP_attention, mlp_CP), 6 R + 4 d per BERT
// layer (q, k, v_CP of two attentions; GQT).
enum { SHARED = 2 * 8 * 4 + 64, BLOCK = 12 * 4, LAYER = 6 * 4 + 4 * 8 };

START_TEST(test_retrieval) {
    // CP_U, CP_V, CP_C; CP_attention and mlp_CP per block; q, k, v_CP per attention; 4 GQT per
    // layer. The momentum encoders' copies are dropped, saying why.
    convert_report rep;
    blip_loaded l =
        convert_and_load("retrieval", 3 + 2 * 2 + 2 * 6 + 2 * 4, SHARED + 2 * BLOCK + 2 * LAYER,
                         true, "vision_proj.weight", &rep);
    ck_assert(dropped_for(&rep, "text_encoder_m.encoder.layer.1.CP_shiftcross", "never read"));
    ck_assert(dropped_for(&rep, "visual_encoder_m.blocks.1.mlp.mlp_CP",
                          "momentum copy of an Aurora tensor"));
    ck_assert(dropped_for(&rep, "text_encoder_m.encoder.layer.0.attention.self.k_CP",
                          "momentum copy of an Aurora tensor"));
    // petl_load restarted the momentum coefficients from their twins.
    const param_registry *r = l.model->registry;
    same_values("visual_encoder_m.blocks.1.attn.CP_attention",
                registry_get(r, "visual_encoder_m.blocks.1.attn.CP_attention"),
                registry_get(r, "visual_encoder.blocks.1.attn.CP_attention"));
    blip_loaded_free(&l);
    convert_report_free(&rep);
}
END_TEST

START_TEST(test_vqa) {
    // The answer decoder's two layers add their own coefficients and GQT vectors.
    convert_report rep;
    blip_loaded l = convert_and_load("vqa", 3 + 2 * 2 + 4 * 6 + 4 * 4,
                                     SHARED + 2 * BLOCK + 4 * LAYER, false, NULL, &rep);
    ck_assert_str_eq(rep.task, "vqa");
    blip_loaded_free(&l);
    convert_report_free(&rep);
}
END_TEST

// Converting f must fail naming `want`, and leave no backbone behind.
static void refused(const char *f, bool split, const char *want) {
    convert_report rep;
    const char *dst = test_dir_path("refused.h5");
    char petl_file[256];
    snprintf(petl_file, sizeof petl_file, "%s", test_dir_path("refused_petl.h5"));
    petal_status st = split ? petl_convert_aurora(f, dst, petl_file, &tiny_opts, &rep)
                            : convert_file(f, dst, &tiny_opts, &rep);
    ck_assert_msg(st != PETAL_OK, "%s converted", f);
    ck_assert_msg(strstr(petal_error_message(), want), "%s: %s", f, petal_error_message());
    ck_assert_msg(access(dst, F_OK) != 0 && access(petl_file, F_OK) != 0, "%s left files", f);
    convert_report_free(&rep);
}

START_TEST(test_refusals) {
    refused(AURORA_DATA("retrieval.pth"), false, "'CP_C' is one of Aurora's CP / GQT tensors");
    refused(AURORA_DATA("retrieval.pth"), false, "--petl FILE");
    refused(AURORA_DATA("missing.pth"), true,
            "trains 'text_encoder.encoder.layer.1.crossattention.self.v_CP' [4, 1], which the file "
            "lacks");
    refused(AURORA_DATA("shape.pth"), true,
            "'visual_encoder.blocks.1.attn.CP_attention' is [4, 3], expected [4, 4]");
}
END_TEST

// ---- cached generation steps ----

// Marks the CP deltas of the decoder's self-attention keys and values skipped (or not): what the
// released decoder does on a cached step, done by hand.
static void skip_kv_deltas(blip_model *m, bool skip) {
    for (int64_t i = 0; i < m->decoder.cfg.layers; i++) {
        nn_attention *a = &m->decoder.layers[i].self;
        nn_linear *kv[2] = {&a->key, &a->value};
        for (int k = 0; k < 2; k++)
            for (nn_delta *d = kv[k]->deltas; d; d = d->next) d->merged = skip;
    }
}

// Greedy decoding one step at a time with the KV cache, EOS forbidden, CP skipped on the cached
// steps' keys and values when `plain`: out gets the `steps` tokens.
static void reference(blip_model *m, tensor *prompt, tensor *states, int steps, bool plain,
                      int64_t eos, int64_t *out) {
    int mark = scope_begin();
    const nn_ctx eval = NN_EVAL;
    int64_t layers = m->decoder.cfg.layers;
    nn_kv_cache *cache = calloc((size_t)layers, sizeof *cache);
    tensor *ids = prompt;
    for (int s = 0; s < steps; s++) {
        skip_kv_deltas(m, plain && s > 0);
        bert_input in = {.ids = ids,
                         .mode = BERT_MULTIMODAL,
                         .encoder_states = states,
                         .causal = true,
                         .cache = cache};
        tensor *h = bert_forward(&m->decoder, &in, &eval);
        tensor *logits = bert_lm_logits(&m->decoder, tensor_select(h, 1, h->shape[1] - 1));
        tensor *host = tensor_to(tensor_cast(logits, PETAL_F64), DEVICE_CPU);
        int64_t best = -1;
        for (int64_t v = 0; v < host->shape[1]; v++)
            if (v != eos && (best < 0 || tensor_get_flat(host, v) > tensor_get_flat(host, best)))
                best = v;
        out[s] = best;
        ids = tensor_from_data(PETAL_I64, SHAPE(1, 1), &best);
    }
    skip_kv_deltas(m, false);
    for (int64_t i = 0; i < layers; i++) nn_kv_cache_free(&cache[i]);
    free(cache);
    scope_end(mark);
}

// The tiny captioner with CP (code, R = 4) on the decoder too, its factors random.
static blip_model *captioner(bool plain) {
    blip_config c = blip_config_tiny(BLIP_CAPTION);
    blip_model *m = blip_new(&c, PETAL_F32, 7);
    petl_config cfg = petl_config_cp(PETL_CODE, 4);
    cfg.cp.plain_cached_kv = plain;
    ck_assert_msg(petl_attach(m, &cfg) != NULL, "%s", petal_error_message());
    randomise(m, "*CP*");
    // Large deltas, so that leaving them out of the cached steps changes the greedy tokens.
    tensor_normal_(registry_get(m->registry, "CP_V.weight"), 0, 10, &(rng_generator){5, 0});
    return m;
}

START_TEST(test_plain_cached_kv) {
    enum { PROMPT = 2, STEPS = 10 };
    int64_t prompt_ids[PROMPT] = {1, 5}, eos = 2, want[2][STEPS];
    generate_options o = {.num_beams = 1,
                          .max_length = PROMPT + STEPS,
                          .min_length = PROMPT + STEPS, // EOS never allowed: every step runs
                          .repetition_penalty = 1.0,
                          .length_penalty = 1.0,
                          .eos = eos,
                          .pad = 0};
    for (int plain = 0; plain < 2; plain++) {
        int mark = scope_begin();
        blip_model *m = captioner(plain);
        tensor *prompt = tensor_from_data(PETAL_I64, SHAPE(1, PROMPT), prompt_ids);
        int64_t w = m->decoder.cfg.encoder_width;
        tensor *states = tensor_empty(PETAL_F32, SHAPE(1, 5, w));
        tensor_normal_(states, 0, 1, &(rng_generator){3, 0});
        reference(m, prompt, states, STEPS, plain, eos, want[plain]);
        generate_result g = blip_generate(&m->decoder, prompt, states, NULL, &o);
        for (int s = 0; s < STEPS; s++)
            ck_assert_msg(g.tokens[PROMPT + s] == want[plain][s],
                          "plain %d, step %d: generated %lld, expected %lld", plain, s,
                          (long long)g.tokens[PROMPT + s], (long long)want[plain][s]);
        generate_result_free(&g);
        // Merging folds every CP delta but the step-dependent ones into W.
        petl_merge(m->petl);
        const blip_model *mm = m;
        ck_assert(mm->decoder.layers[0].self.query.deltas->merged);
        ck_assert(mm->decoder.layers[0].self.key.deltas->merged == !plain);
        petl_unmerge(m->petl);
        blip_free(m);
        scope_end(mark);
    }
    // The option changes what is generated, so the comparison above saw it act.
    ck_assert(memcmp(want[0], want[1], sizeof want[0]) != 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("aurora_release");
    TCase *tc = tcase_with_timeout("aurora_release", 120);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_retrieval);
    tcase_add_test(tc, test_vqa);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_plain_cached_kv);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
