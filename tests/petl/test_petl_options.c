// petl/: the options an ablation needs and detaching. CP's target globs and sharing scopes
// (parameter names and counts), only parameters that receive gradient counted, GQT as its own
// group, petl_detach restoring a model bit for bit after attach / merge / training, and the
// refusal to save or load a merged handle.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "io/checkpoint.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/error.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

enum { D = 768, R = 32 };

static bool has(const blip_model *m, const char *name) {
    return registry_find(m->registry, name) != NULL;
}

// ---- CP targets and sharing scopes (BLIP-base shapes, nothing computed) ----

START_TEST(test_cp_targets) {
    blip_model *m;
    // The preset's set given explicitly equals the preset.
    petl_config code = petl_config_aurora(PETL_CODE, R);
    code.cp.targets = petl_cp_default_targets(&code.cp);
    ck_assert_int_eq(petl_count(attach_base(BLIP_RETRIEVAL, code, &m)), 125696);
    blip_free(m);
    // Paper with the ViT MLP (the deprecated attention_only = false): P gets 12 rows per ViT
    // block (qkv 3, proj 1, fc1 4, fc2 4) and 8 per BERT layer.
    petl_config paper = petl_config_cp(PETL_PAPER, R);
    paper.cp.attention_only = false;
    ck_assert_int_eq(petl_count(attach_base(BLIP_RETRIEVAL, paper, &m)),
                     2 * D * R + (12 * 12 + 12 * 8) * R + 3 * R);
    blip_free(m);
    // Queries and values only (code): a [R, 1] coefficient each, no ViT coefficients.
    code = petl_config_cp(PETL_CODE, R);
    code.cp.targets = "*.self.query,*.self.value";
    ck_assert_int_eq(petl_count(attach_base(BLIP_RETRIEVAL, code, &m)),
                     2 * D * R + R * R * R + 12 * 2 * 2 * R);
    ck_assert(has(m, "text_encoder.encoder.layer.0.crossattention.self.v_CP"));
    ck_assert(!has(m, "text_encoder.encoder.layer.0.attention.self.k_CP"));
    ck_assert(!has(m, "visual_encoder.blocks.0.attn.CP_attention"));
    blip_free(m);
    // The attention output dense with the dense core (not in the released code): o_CP (R, 1).
    code.cp.targets = "*attention.output.dense";
    ck_assert_int_eq(petl_count(attach_base(BLIP_RETRIEVAL, code, &m)),
                     2 * D * R + R * R * R + 12 * 2 * R);
    ck_assert(has(m, "text_encoder.encoder.layer.11.crossattention.self.o_CP"));
    blip_free(m);
}
END_TEST

// Parameters no forward reaches are not made: with vision targets only, the paper variant has
// no text or multimodal lambda.
START_TEST(test_untargeted_modalities_not_counted) {
    blip_model *m;
    petl_config paper = petl_config_cp(PETL_PAPER, R);
    paper.cp.targets = "*.attn.qkv,*.attn.proj";
    petl_handle *h = attach_base(BLIP_RETRIEVAL, paper, &m);
    ck_assert_int_eq(petl_count(h), 2 * D * R + 12 * 4 * R + R);
    ck_assert(has(m, "CP_lambda.vision"));
    ck_assert(!has(m, "CP_lambda.text") && !has(m, "CP_lambda.multimodal"));
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT), 0);
    blip_free(m);
    // Modality scope, code variant: no pairs for the text and multimodal deltas that are absent.
    petl_config code = petl_config_cp(PETL_CODE, R);
    code.cp.targets = "*.attn.qkv";
    code.cp.sharing = CP_SHARE_MODALITY;
    h = attach_base(BLIP_RETRIEVAL, code, &m);
    ck_assert(has(m, "CP_U.vision.weight") && !has(m, "CP_U.text.weight"));
    ck_assert_int_eq(petl_count(h), R * R * R + 2 * D * R + 12 * 4 * R);
    blip_free(m);
}
END_TEST

START_TEST(test_cp_sharing_scopes) {
    blip_model *m;
    const int64_t pair = 2 * D * R, gqt = 4 * 12 * D;
    // Modality: one pair each for vision, text and multimodal deltas, in their groups.
    petl_config c = petl_config_aurora(PETL_CODE, R);
    c.cp.sharing = CP_SHARE_MODALITY;
    petl_handle *h = attach_base(BLIP_RETRIEVAL, c, &m);
    ck_assert(has(m, "CP_U.vision.weight") && has(m, "CP_V.text.weight") &&
              has(m, "CP_V.multimodal.weight"));
    ck_assert(!has(m, "CP_U.weight") && !has(m, "CP_U.decoder.weight"));
    ck_assert_int_eq(petl_count(h), 125696 + 2 * pair);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_SHARED), R * R * R);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_VISION), pair + 4608);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT), pair + 1152);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_MULTIMODAL), pair + 1152);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_GQT), gqt);
    blip_free(m);
    // Layer: one pair per ViT block and BERT layer (its self- and cross-attention share it).
    c.cp.sharing = CP_SHARE_LAYER;
    h = attach_base(BLIP_RETRIEVAL, c, &m);
    ck_assert(has(m, "visual_encoder.blocks.11.CP_U.weight") &&
              has(m, "text_encoder.encoder.layer.0.CP_V.weight"));
    ck_assert(!has(m, "CP_U.weight") && !has(m, "visual_encoder_m.blocks.0.CP_U.weight"));
    ck_assert_int_eq(petl_count(h), R * R * R + 24 * pair + 4608 + 2304 + gqt);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_VISION), 12 * pair + 4608);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_TEXT), 12 * pair + 1152);
    blip_free(m);
    // The paper's names per layer, and the decoder's own pair on VQA.
    c = petl_config_cp(PETL_PAPER, R);
    c.cp.sharing = CP_SHARE_LAYER;
    attach_base(BLIP_RETRIEVAL, c, &m);
    ck_assert(has(m, "visual_encoder.blocks.0.CP_U") && has(m, "visual_encoder.blocks.0.CP_V"));
    blip_free(m);
    c.cp.sharing = CP_SHARE_MODALITY;
    attach_base(BLIP_VQA, c, &m);
    ck_assert(has(m, "CP_U.decoder") && has(m, "CP_lambda.decoder"));
    blip_free(m);
}
END_TEST

START_TEST(test_print_groups) {
    blip_model *m;
    petl_handle *h = attach_base(BLIP_RETRIEVAL, petl_config_aurora(PETL_CODE, R), &m);
    char *text;
    size_t size;
    FILE *f = open_memstream(&text, &size);
    petl_print_trainable(h, f);
    fclose(f);
    static const char *const lines[] = {
        "  shared factors  81,920  CP_U, CP_V, CP_C\n",
        "  vision          4,608  CP_attention, mlp_CP\n",
        "  multimodal      1,152  q_CP, k_CP, v_CP\n",
        "  decoder         0\n",
        "  gqt             36,864  CP_scaleself, CP_shiftself, CP_scalecross, CP_shiftcross\n",
        "  heads           198,402  vision_proj, itm_head\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(text, lines[i]) != NULL, "missing\n%sin\n%s", lines[i], text);
    free(text);
    blip_free(m);
}
END_TEST

// Targets CP cannot adapt, or none, are refused, and the model is left as it was.
START_TEST(test_cp_bad_targets) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    int n = t.m->registry->n;
    petl_config c = petl_config_cp(PETL_CODE, 4);
    c.cp.targets = "*.attn.qkv,*.intermediate.dense";
    ck_assert(petl_attach(t.m, &c) == NULL);
    ck_assert_msg(
        strstr(petal_error_message(), "text_encoder.encoder.layer.0.intermediate.dense") &&
            strstr(petal_error_message(), "not a Linear CP can adapt"),
        "%s", petal_error_message());
    ck_assert(t.m->petl == NULL && t.m->registry->n == n && t.m->vit.blocks[0].qkv.deltas == NULL);
    c.cp.targets = "no.such.layer";
    ck_assert(petl_attach(t.m, &c) == NULL);
    ck_assert(strstr(petal_error_message(), "no Linear layer matches the targets 'no.such.layer'"));
    petl_config lora = petl_config_lora(2);
    ck_assert(petl_attach(t.m, &lora) != NULL); // the model is usable again
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- every counted parameter receives gradient ----

// One backward of the retrieval losses on the tiny model with cfg, its zero factors ("*CP_V*":
// the code's Out, the paper's In) made random: every trainable tensor gets a non-zero gradient.
static void check_all_receive_gradient(petl_config cfg, const char *what) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    ck_assert_msg(petl_attach(t.m, &cfg) != NULL, "%s", petal_error_message());
    randomise(t.m, "*CP_V*");
    autograd_backward(tiny_losses(&t, NULL), NULL, false);
    const param_registry *r = t.m->registry;
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        if (!e->trainable) continue;
        tensor *g = e->value->grad;
        tensor *a = g ? tensor_abs(g) : NULL;
        tensor *s = a ? tensor_sum_all(a) : NULL;
        ck_assert_msg(s && tensor_item(s) > 0, "%s: %s receives no gradient", what, e->name);
    }
    blip_free(t.m);
    scope_end(mark);
}

START_TEST(test_counted_parameters_receive_gradient) {
    petl_config c = petl_config_aurora(PETL_CODE, 3);
    c.cp.sharing = CP_SHARE_MODALITY;
    check_all_receive_gradient(c, "aurora code, modality scope");
    c = petl_config_aurora(PETL_PAPER, 3);
    c.cp.sharing = CP_SHARE_LAYER;
    c.cp.attention_only = false;
    check_all_receive_gradient(c, "aurora paper with MLP, layer scope");
    c = petl_config_cp(PETL_PAPER, 3);
    c.cp.targets = "*.attn.qkv,*.crossattention.self.key";
    check_all_receive_gradient(c, "cp paper, vision and cross keys");
    c = petl_config_cp(PETL_CODE, 3);
    c.cp.targets = "*.attn.proj,*attention.output.dense";
    c.cp.sharing = CP_SHARE_LAYER;
    check_all_receive_gradient(c, "cp code, projections and output dense, layer scope");
}
END_TEST

START_TEST(test_gradcheck_sharing_scopes) {
    petl_config c = petl_config_cp(PETL_CODE, 3);
    c.cp.dropout = 0;
    c.cp.sharing = CP_SHARE_LAYER;
    c.extra_trainable = "";
    gradcheck_config(c, "*CP_V*", NULL, false, "cp code, layer scope");
    c = petl_config_cp(PETL_PAPER, 3);
    c.cp.sharing = CP_SHARE_MODALITY;
    c.extra_trainable = "";
    gradcheck_config(c, "*CP_V*", NULL, false, "cp paper, modality scope");
}
END_TEST

// ---- detaching ----

// Every registry entry of a model: name, flags and a bit-for-bit copy of its value.
typedef struct {
    int n;
    char **names;
    tensor **values;
    bool *trainable, *requires_grad;
} registry_copy;

static registry_copy copy_registry(const blip_model *m) {
    const param_registry *r = m->registry;
    registry_copy c = {r->n, calloc((size_t)r->n, sizeof(char *)),
                       calloc((size_t)r->n, sizeof(tensor *)), calloc((size_t)r->n, sizeof(bool)),
                       calloc((size_t)r->n, sizeof(bool))};
    for (int i = 0; i < r->n; i++) {
        c.names[i] = strdup(r->items[i].name);
        c.values[i] = tensor_keep(tensor_clone_data(r->items[i].value));
        c.trainable[i] = r->items[i].trainable;
        c.requires_grad[i] = r->items[i].value->requires_grad;
    }
    return c;
}

static void registry_copy_free(registry_copy *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->names[i]);
        tensor_free(c->values[i]);
    }
    free(c->names);
    free(c->values);
    free(c->trainable);
    free(c->requires_grad);
}

// m has the entries, flags and values of c, and no PETL delta or hook.
static void check_restored(const registry_copy *c, const blip_model *m, const char *what) {
    const param_registry *r = m->registry;
    ck_assert_msg(r->n == c->n, "%s: %d registry entries, expected %d", what, r->n, c->n);
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        ck_assert_msg(strcmp(e->name, c->names[i]) == 0, "%s: entry %d", what, i);
        ck_assert_msg(e->trainable == c->trainable[i] &&
                          e->value->requires_grad == c->requires_grad[i],
                      "%s: %s's flags", what, e->name);
        ck_assert_msg(
            memcmp(tensor_data(e->value), tensor_data(c->values[i]), tensor_nbytes(e->value)) == 0,
            "%s: %s differs", what, e->name);
        ck_assert_msg(!e->linear || e->linear->deltas == NULL, "%s: %s keeps a delta", what,
                      e->name);
    }
    ck_assert_msg(m->petl == NULL && !m->itm_all && !m->itm_positive && !m->itc_extra &&
                      !m->vit.hooks.output && !m->text.hooks.output && !m->decoder.hooks.output,
                  "%s: hooks left behind", what);
}

// Stands for what training changes in the backbone: the trained heads, their momentum copies
// ("vision_proj_m.weight" follows "vision_proj.weight" by EMA) and the queues.
static void fake_training(blip_model *m) {
    param_registry *r = m->registry;
    static const char *const heads[] = {"vision_proj", "text_proj", "itm_head"};
    char copy[NN_NAME_MAX];
    for (int i = 0; i < r->n; i++) {
        param_entry *e = &r->items[i];
        for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
            size_t len = strlen(heads[k]);
            if (!e->trainable || strncmp(e->name, heads[k], len) != 0 || e->name[len] != '.')
                continue;
            tensor_fill_(e->value, 0.5);
            param_entry *twin = registry_find(r, nn_name(copy, "%s_m%s", heads[k], e->name + len));
            if (twin) tensor_fill_(twin->value, 0.5);
        }
    }
    tensor *queues[] = {m->image_queue, m->text_queue, m->idx_queue, m->ptr_queue};
    for (size_t i = 0; i < sizeof queues / sizeof queues[0]; i++)
        if (queues[i]) tensor_fill_(queues[i], 1);
}

// A grid on one model: each method attached, made non-trivial, merged, unmerged, merged again,
// "trained", then detached while merged, must leave the registry and the outputs as they were.
START_TEST(test_detach_restores_model) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    registry_copy before = copy_registry(t.m);
    tensor *out0 = tiny_outputs(&t);
    petl_config grid[] = {petl_config_aurora(PETL_CODE, 3), petl_config_aurora(PETL_PAPER, 3),
                          petl_config_unitrans(3), petl_config_adapter(3)};
    grid[0].lora = petl_config_lora(2).lora;
    grid[1].cp.sharing = CP_SHARE_LAYER;
    for (size_t i = 0; i < sizeof grid / sizeof grid[0]; i++) {
        petl_handle *h = petl_attach(t.m, &grid[i]);
        ck_assert_msg(h != NULL, "%s", petal_error_message());
        randomise(t.m, "*CP_V*,*lora_B*,*vcra_lambda_b*,*up_proj.weight,*GQT_gate");
        petl_merge(h);
        petl_unmerge(h);
        petl_merge(h);
        fake_training(t.m);
        petl_detach(t.m);
        char what[32];
        snprintf(what, sizeof what, "grid entry %zu", i);
        check_restored(&before, t.m, what);
        tensor *out = tiny_outputs(&t);
        ck_assert_msg(memcmp(tensor_data(out), tensor_data(out0), tensor_nbytes(out)) == 0,
                      "%s: outputs differ after detaching", what);
    }
    petl_detach(t.m); // nothing attached: nothing happens
    check_restored(&before, t.m, "detach without methods");
    registry_copy_free(&before);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// With momentum encoders: the momentum deltas, the heads' momentum copies and the queues.
START_TEST(test_detach_restores_momentum_and_queues) {
    blip_config bc = blip_config_tiny(BLIP_RETRIEVAL);
    blip_model *m = blip_new(&bc, PETAL_F32, 5);
    ck_assert(m->image_queue != NULL);
    registry_copy before = copy_registry(m);
    petl_config c = petl_config_aurora(PETL_CODE, 3);
    c.cp.sharing = CP_SHARE_MODALITY;
    petl_handle *h = petl_attach(m, &c);
    ck_assert(has(m, "visual_encoder_m.blocks.0.attn.CP_attention"));
    randomise(m, "*CP_V*");
    petl_merge(h);
    fake_training(m);
    petl_detach(m);
    check_restored(&before, m, "momentum model");
    ck_assert(m->vit_m.blocks[0].qkv.deltas == NULL && m->text_m.hooks.output == NULL);
    registry_copy_free(&before);
    blip_free(m);
}
END_TEST

// The decoder's deltas and hooks reuse the question encoder's tensors (petl.share_decoder):
// detaching frees each once and puts the VQA model back bit for bit.
START_TEST(test_detach_restores_shared_vqa) {
    int mark = scope_begin();
    tiny_vqa t = tiny_vqa_new(PETAL_F32);
    registry_copy before = copy_registry(t.m);
    tensor *loss0 = tiny_vqa_loss(&t);
    petl_config grid[] = {petl_config_aurora(PETL_CODE, 3), petl_config_aurora(PETL_PAPER, 3),
                          petl_config_unitrans(3), petl_config_lora(2)};
    grid[1].cp.sharing = CP_SHARE_LAYER;
    grid[3].vera = petl_config_vera(2).vera;
    static const char *const random[] = {"*CP*", "*CP_U*,*GQT_gate", "*vcra_lambda_b*",
                                         "*lora_B*,*vera_lambda_b*"};
    for (size_t i = 0; i < sizeof grid / sizeof grid[0]; i++) {
        grid[i].share_decoder = true;
        petl_handle *h = petl_attach(t.m, &grid[i]);
        ck_assert_msg(h != NULL, "%s", petal_error_message());
        randomise(t.m, random[i]);
        petl_merge(h);
        petl_unmerge(h);
        petl_merge(h);
        petl_detach(t.m);
        char what[32];
        snprintf(what, sizeof what, "shared grid entry %zu", i);
        check_restored(&before, t.m, what);
        tensor *loss = tiny_vqa_loss(&t);
        ck_assert_msg(memcmp(tensor_data(loss), tensor_data(loss0), tensor_nbytes(loss)) == 0,
                      "%s: the loss differs after detaching", what);
    }
    registry_copy_free(&before);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- merged handles and checkpoints ----

START_TEST(test_merged_save_refused) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32);
    petl_config c = petl_config_aurora(PETL_CODE, 3);
    petl_handle *h = petl_attach(t.m, &c);
    randomise(t.m, "*CP_V*");
    const char *a = test_dir_path("a.h5"), *b = test_dir_path("b.h5");
    ck_assert_int_eq(petl_save(h, a), PETAL_OK);
    uint64_t base = checkpoint_fingerprint(t.m->registry);
    petl_merge(h);
    ck_assert(petl_is_merged(h));
    ck_assert_int_eq(petl_save(h, b), PETAL_ERR_ARG);
    ck_assert_msg(strstr(petal_error_message(), "b.h5: cannot save a PETL checkpoint while the "
                                                "deltas are merged") &&
                      strstr(petal_error_message(), "petl_unmerge"),
                  "%s", petal_error_message());
    ck_assert_int_eq(petl_load(h, a, false), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "cannot load a PETL checkpoint while"));
    petl_unmerge(h);
    ck_assert(!petl_is_merged(h));
    ck_assert(checkpoint_fingerprint(t.m->registry) == base);
    ck_assert_int_eq(petl_save(h, b), PETAL_OK);
    checkpoint_info ia, ib;
    tensor_list fa, fb;
    ck_assert_int_eq(checkpoint_read(a, &fa, &ia), PETAL_OK);
    ck_assert_int_eq(checkpoint_read(b, &fb, &ib), PETAL_OK);
    ck_assert(ia.fingerprint == base && ib.fingerprint == base);
    ck_assert_int_eq(petl_load(h, a, false), PETAL_OK);
    tensor_list_free(&fa);
    tensor_list_free(&fb);
    checkpoint_info_free(&ia);
    checkpoint_info_free(&ib);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// The file records the scope and targets: a handle with other ones is refused.
START_TEST(test_options_recorded) {
    int mark = scope_begin();
    tiny t = tiny_new(PETAL_F32), u = tiny_new(PETAL_F32);
    petl_config layer = petl_config_cp(PETL_CODE, 3), global = layer;
    layer.cp.sharing = CP_SHARE_LAYER;
    layer.cp.targets = "*.attn.qkv";
    global.cp.targets = "*.attn.qkv";
    const char *path = test_dir_path("layer.h5");
    ck_assert_int_eq(petl_save(petl_attach(t.m, &layer), path), PETAL_OK);
    ck_assert_int_eq(petl_load(petl_attach(u.m, &global), path, false), PETAL_ERR_ARG);
    ck_assert_msg(
        strstr(petal_error_message(), "\"targets\": \"*.attn.qkv\", \"sharing\": \"layer\""), "%s",
        petal_error_message());
    blip_free(t.m);
    blip_free(u.m);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl_options");
    TCase *counts = tcase_with_timeout("counts", 120);
    tcase_add_test(counts, test_cp_targets);
    tcase_add_test(counts, test_untargeted_modalities_not_counted);
    tcase_add_test(counts, test_cp_sharing_scopes);
    tcase_add_test(counts, test_print_groups);
    suite_add_tcase(s, counts);
    TCase *tinyc = tcase_with_timeout("tiny", 120);
    tcase_add_checked_fixture(tinyc, test_dir_make, test_dir_remove);
    tcase_add_test(tinyc, test_cp_bad_targets);
    tcase_add_test(tinyc, test_counted_parameters_receive_gradient);
    tcase_add_test(tinyc, test_gradcheck_sharing_scopes);
    tcase_add_test(tinyc, test_detach_restores_model);
    tcase_add_test(tinyc, test_detach_restores_momentum_and_queues);
    tcase_add_test(tinyc, test_detach_restores_shared_vqa);
    tcase_add_test(tinyc, test_merged_save_refused);
    tcase_add_test(tinyc, test_options_recorded);
    suite_add_tcase(s, tinyc);
    return run_suite(s);
}
