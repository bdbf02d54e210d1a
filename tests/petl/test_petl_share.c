// petl/: petl.share_decoder, the answer decoder adapting with the question encoder's PETL tensors
// (docs/petl.md "Sharing the decoder's parameters"). Counts on BLIP-base VQA drop by exactly the
// decoder's tensors; on the tiny VQA model the decoder's deltas compute with their twins' tensors,
// a shared tensor's gradient is the sum of the two unshared copies' gradients, checkpoints keep
// the tensors once and record the option, merging round-trips bit for bit, and a model or target
// set the option cannot apply to is refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "io/checkpoint.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/error.h"
#include "tensor/scope.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

enum { D = 768, R = 32 };

#define DECODER_LAYER "text_decoder.bert.encoder.layer."

static bool is_decoder_layer(const char *name) {
    return strncmp(name, DECODER_LAYER, strlen(DECODER_LAYER)) == 0;
}

// "text_decoder.bert.encoder.layer.N.x" -> "text_encoder.encoder.layer.N.x"
static const char *encoder_twin(const char *name, char *buf, size_t size) {
    snprintf(buf, size, "text_encoder.encoder.layer.%s", name + strlen(DECODER_LAYER));
    return buf;
}

static petl_config shared(petl_config c) {
    c.share_decoder = true;
    return c;
}

// ---- BLIP-base VQA counts (nothing computed) ----

typedef struct {
    const char *what;
    petl_config cfg;
    int64_t shared_factors_drop; // the decoder's rows of the paper's P (the "shared" group)
    bool gqt;                    // GQT: the decoder's half of the GQT group goes too
} count_case;

// With the option: the decoder group is empty, no trainable entry is a decoder layer's, no tensor
// is registered twice (the optimizer keeps one AdamW state per trainable entry), and the count
// drops by exactly what the decoder had of its own.
static void check_count_case(const count_case *c) {
    blip_model *m;
    petl_handle *h = attach_base(BLIP_VQA, c->cfg, &m);
    int64_t all = petl_count(h), decoder = petl_count_group(h, PETL_GROUP_DECODER);
    int64_t gqt = petl_count_group(h, PETL_GROUP_GQT);
    ck_assert_msg(decoder > 0, "%s: no decoder tensors to share", c->what);
    blip_free(m);
    h = attach_base(BLIP_VQA, shared(c->cfg), &m);
    ck_assert_int_eq(petl_count_group(h, PETL_GROUP_DECODER), 0);
    int64_t want = all - decoder - (c->gqt ? gqt / 2 : 0) - c->shared_factors_drop;
    ck_assert_msg(petl_count(h) == want, "%s: %lld trainable, expected %lld", c->what,
                  (long long)petl_count(h), (long long)want);
    const param_registry *r = m->registry;
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        ck_assert_msg(!e->trainable || !is_decoder_layer(e->name), "%s: %s registered", c->what,
                      e->name);
        for (int j = 0; j < i && e->trainable; j++)
            ck_assert_msg(r->items[j].value != e->value, "%s: %s is also %s", c->what, e->name,
                          r->items[j].name);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    petl_print_trainable(h, f);
    fclose(f);
    ck_assert_msg(strstr(text, "decoder         0  (petl.share_decoder"), "%s", text);
    free(text);
    blip_free(m);
}

START_TEST(test_counts) {
    petl_config cp_layer = petl_config_cp(PETL_CODE, R),
                cp_modality = petl_config_cp(PETL_PAPER, R);
    cp_layer.cp.sharing = CP_SHARE_LAYER;
    cp_modality.cp.sharing = CP_SHARE_MODALITY;
    // The paper's P: 4 rows (q, k, v, output dense) per attention block, 2 blocks a decoder layer.
    const count_case cases[] = {
        {"aurora code", petl_config_aurora(PETL_CODE, R), 0, true},
        {"aurora paper", petl_config_aurora(PETL_PAPER, R), 12 * 2 * 4 * R, true},
        {"cp code, layer scope", cp_layer, 0, false},
        {"cp paper, modality scope", cp_modality, 12 * 2 * 4 * R, false},
        {"lora", petl_config_lora(8), 0, false},
        {"vera", petl_config_vera(8), 0, false},
        {"unitrans", petl_config_unitrans(8), 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_count_case(&cases[i]);
    // The numbers docs/petl.md gives: shared, Aurora on VQA trains what it trains on retrieval.
    blip_model *m;
    ck_assert_int_eq(
        petl_count(attach_base(BLIP_VQA, shared(petl_config_aurora(PETL_CODE, R)), &m)), 125696);
    blip_free(m);
    ck_assert_int_eq(
        petl_count(attach_base(BLIP_VQA, shared(petl_config_aurora(PETL_PAPER, R)), &m)), 63072);
    blip_free(m);
    // UniAdapter's adapters are shared by layer index already: nothing changes.
    int64_t adapter = petl_count(attach_base(BLIP_VQA, petl_config_adapter(8), &m));
    blip_free(m);
    ck_assert_int_eq(petl_count(attach_base(BLIP_VQA, shared(petl_config_adapter(8)), &m)),
                     adapter);
    blip_free(m);
}
END_TEST

// ---- the decoder's deltas are their twins' ----

// Fills every trainable entry with N(0, 0.3) (a fresh draw per entry): no two tensors agree.
static void randomise_trainable(blip_model *m) {
    rng_generator g = {11, 0};
    for (int i = 0; i < m->registry->n; i++)
        if (m->registry->items[i].trainable)
            tensor_normal_(m->registry->items[i].value, 0, 0.3, &g);
}

// The deltas of l and of its twin, in order, give the same output for one x bit for bit; CP's and
// LoRA's low-rank form hands out a view of the very Out / B tensor of the twin. Returns how many.
static int check_twin_deltas(const nn_linear *l, const nn_linear *twin, const char *what) {
    const nn_ctx eval = NN_EVAL;
    tensor *x = tensor_empty(l->weight->dtype, SHAPE(2, 3, l->in));
    tensor_normal_(x, 0, 1, &(rng_generator){7, 0});
    int n = 0;
    const nn_delta *t = twin->deltas;
    for (nn_delta *d = l->deltas; d; d = d->next, t = t->next, n++) {
        ck_assert_msg(t && strcmp(t->kind, d->kind) == 0, "%s: %s has no %s twin", what, l->name,
                      d->kind);
        nn_delta *tm = (nn_delta *)t;
        tensor *y = d->forward(d, x, &eval), *want = tm->forward(tm, x, &eval);
        ck_assert_msg(memcmp(tensor_data(y), tensor_data(want), tensor_nbytes(y)) == 0,
                      "%s: %s's %s delta differs from its twin's", what, l->name, d->kind);
        if (strcmp(d->kind, "cp") == 0 || strcmp(d->kind, "lora") == 0) {
            tensor *v, *tv;
            d->lowrank(d, x, &eval, &v);
            tm->lowrank(tm, x, &eval, &tv);
            ck_assert_msg(v->storage == tv->storage, "%s: %s's %s factor is not its twin's", what,
                          l->name, d->kind);
        }
    }
    ck_assert_msg(t == NULL, "%s: %s lacks its twin's deltas", what, l->name);
    return n;
}

START_TEST(test_decoder_deltas_are_twins) {
    petl_config cp_layer = petl_config_cp(PETL_CODE, 3),
                cp_modality = petl_config_cp(PETL_PAPER, 3);
    cp_layer.cp.sharing = CP_SHARE_LAYER;
    cp_layer.cp.dropout = 0;
    cp_modality.cp.sharing = CP_SHARE_MODALITY;
    petl_config lora_vera = petl_config_lora(2);
    lora_vera.vera = petl_config_vera(2).vera;
    const struct {
        const char *what;
        petl_config cfg;
    } cases[] = {{"cp code, layer scope", cp_layer},
                 {"cp paper, modality scope", cp_modality},
                 {"lora + vera", lora_vera}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int mark = scope_begin();
        tiny_vqa t = tiny_vqa_new(PETAL_F32);
        petl_config cfg = shared(cases[c].cfg);
        ck_assert_msg(petl_attach(t.m, &cfg) != NULL, "%s", petal_error_message());
        randomise_trainable(t.m);
        int n = 0;
        for (int64_t i = 0; i < t.m->decoder.cfg.layers; i++) {
            bert_layer *l = &t.m->decoder.layers[i], *e = &t.m->text.layers[i];
            const nn_linear *mine[] = {&l->self.query,  &l->self.key,    &l->self.value,
                                       &l->self_dense,  &l->cross.query, &l->cross.key,
                                       &l->cross.value, &l->cross_dense};
            const nn_linear *twins[] = {&e->self.query,  &e->self.key,    &e->self.value,
                                        &e->self_dense,  &e->cross.query, &e->cross.key,
                                        &e->cross.value, &e->cross_dense};
            for (int k = 0; k < 8; k++) n += check_twin_deltas(mine[k], twins[k], cases[c].what);
        }
        ck_assert_msg(n >= 12, "%s: %d decoder deltas", cases[c].what, n);
        blip_free(t.m);
        scope_end(mark);
    }
}
END_TEST

// ---- gradients ----

// Copies every entry of `from` into the same-named entry of `to`.
static void copy_values(blip_model *to, const blip_model *from) {
    for (int i = 0; i < to->registry->n; i++) {
        param_entry *e = &to->registry->items[i];
        tensor_copy_(e->value, registry_get(from->registry, e->name));
    }
}

static tensor *grad_or_zeros(const tensor *t) {
    return t->grad ? t->grad : tensor_zeros(t->dtype, t->ndim, t->shape);
}

// cfg unshared, its decoder tensors set to their encoder twins' values, against cfg shared with
// the same values: one loss, and each shared tensor's gradient the sum of its two copies' (f64,
// 1e-12). Returns how many tensors had a decoder copy.
static int check_gradient_sum(petl_config cfg, const char *what) {
    int mark = scope_begin();
    tiny_vqa a = tiny_vqa_new(PETAL_F64), b = tiny_vqa_new(PETAL_F64);
    ck_assert_msg(petl_attach(a.m, &cfg) != NULL, "%s: %s", what, petal_error_message());
    randomise_trainable(a.m);
    char buf[NN_NAME_MAX];
    for (int i = 0; i < a.m->registry->n; i++) {
        param_entry *e = &a.m->registry->items[i];
        if (e->trainable && is_decoder_layer(e->name))
            tensor_copy_(e->value,
                         registry_get(a.m->registry, encoder_twin(e->name, buf, sizeof buf)));
    }
    petl_config s = shared(cfg);
    ck_assert_msg(petl_attach(b.m, &s) != NULL, "%s: %s", what, petal_error_message());
    copy_values(b.m, a.m);
    tensor *la = tiny_vqa_loss(&a), *lb = tiny_vqa_loss(&b);
    ck_assert_msg(tensors_close("loss", lb, la, 1e-12, 1e-12), "%s", what);
    autograd_backward(la, NULL, false);
    autograd_backward(lb, NULL, false);
    int twins = 0;
    const param_registry *r = b.m->registry;
    for (int i = 0; i < r->n; i++) {
        const param_entry *e = &r->items[i];
        if (!e->trainable) continue;
        tensor *want = grad_or_zeros(registry_get(a.m->registry, e->name));
        char dec[NN_NAME_MAX];
        const char *n = e->name, *layer = "text_encoder.encoder.layer.";
        if (strncmp(n, layer, strlen(layer)) == 0) {
            snprintf(dec, sizeof dec, DECODER_LAYER "%s", n + strlen(layer));
            param_entry *copy = registry_find(a.m->registry, dec);
            if (copy) {
                want = tensor_add(want, grad_or_zeros(copy->value));
                twins++;
            }
        }
        ck_assert_msg(tensors_close(e->name, grad_or_zeros(e->value), want, 1e-12, 1e-12), "%s",
                      what);
    }
    blip_free(a.m);
    blip_free(b.m);
    scope_end(mark);
    return twins;
}

START_TEST(test_gradient_is_sum_of_copies) {
    petl_config code = petl_config_aurora(PETL_CODE, 3);
    code.cp.dropout = 0;
    code.cp.sharing = CP_SHARE_LAYER;
    petl_config cp = petl_config_cp(PETL_CODE, 3);
    cp.cp.dropout = 0;
    cp.cp.targets = "*.self.query,*.self.value,*attention.output.dense";
    petl_config lora_vera = petl_config_lora(2);
    lora_vera.vera = petl_config_vera(2).vera;
    const struct {
        const char *what;
        petl_config cfg;
        int twins; // tensors with a decoder copy: per layer (2 on the tiny model)
    } cases[] = {
        // q, k, v coefficients of 2 blocks, the layer's CP pair (2), GQT's 4 vectors
        {"aurora code, layer scope", code, 2 * (6 + 2 + 4)},
        {"cp code, queries, values, output dense", cp, 2 * 6},
        {"lora + vera", lora_vera, 2 * (2 * 8 + 2 * 6)},  // A, B of 8 Linears; 2 lambdas of 6
        {"unitrans", petl_config_unitrans(2), 2 * 2 * 4}, // q and kv pairs of lambdas, 2 blocks
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int twins = check_gradient_sum(cases[i].cfg, cases[i].what);
        ck_assert_msg(twins == cases[i].twins, "%s: %d shared tensors, expected %d", cases[i].what,
                      twins, cases[i].twins);
    }
}
END_TEST

static tensor *vqa_loss_fn(tensor **in, const void *ctx) {
    (void)in; // the parameters are read through the model
    return tensor_reshape(tiny_vqa_loss(ctx), SHAPE(1));
}

// Finite differences of the loss through both uses of a shared tensor.
static void gradcheck_shared(petl_config cfg, const char *const *names, int n, const char *what) {
    int mark = scope_begin();
    tiny_vqa t = tiny_vqa_new(PETAL_F64);
    cfg = shared(cfg);
    ck_assert_msg(petl_attach(t.m, &cfg) != NULL, "%s", petal_error_message());
    randomise_trainable(t.m);
    tensor *params[4];
    for (int i = 0; i < n; i++) params[i] = registry_get(t.m->registry, names[i]);
    gradcheck_options o = GRADCHECK_DEFAULTS;
    o.max_per_input = 16;
    gradcheck_result r = gradcheck(vqa_loss_fn, &t, n, params, &o);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    ck_assert_msg(r.passed, "%s: %s", what, line);
    blip_free(t.m);
    scope_end(mark);
}

START_TEST(test_gradcheck_shared) {
    petl_config code = petl_config_aurora(PETL_CODE, 3);
    code.cp.dropout = 0;
    code.cp.sharing = CP_SHARE_LAYER;
    static const char *const code_names[] = {"text_encoder.encoder.layer.1.attention.self.k_CP",
                                             "text_encoder.encoder.layer.0.CP_U.weight",
                                             "text_encoder.encoder.layer.1.CP_scalecross"};
    gradcheck_shared(code, code_names, 3, "aurora code, layer scope");
    // The paper's rows of P and lambdas: the decoder's self-attention reads the text ones, its
    // cross-attention the multimodal ones.
    static const char *const paper_names[] = {"CP_P", "CP_lambda.text", "CP_lambda.multimodal"};
    gradcheck_shared(petl_config_cp(PETL_PAPER, 3), paper_names, 3, "cp paper");
}
END_TEST

// ---- checkpoints and merging ----

START_TEST(test_save_load) {
    int mark = scope_begin();
    tiny_vqa t = tiny_vqa_new(PETAL_F32), u = tiny_vqa_new(PETAL_F32), v = tiny_vqa_new(PETAL_F32);
    petl_config c = petl_config_aurora(PETL_CODE, 3), s = shared(c);
    c.cp.dropout = s.cp.dropout = 0;
    petl_handle *h = petl_attach(t.m, &s);
    randomise_trainable(t.m);
    const char *path = test_dir_path("shared.h5");
    ck_assert_int_eq(petl_save(h, path), PETAL_OK);
    // Each shared tensor once, under the encoder's name.
    tensor_list file;
    checkpoint_info info;
    ck_assert_int_eq(checkpoint_read(path, &file, &info), PETAL_OK);
    tensor *trainable[256];
    ck_assert_int_eq(file.n, registry_trainable(t.m->registry, trainable, 256));
    for (int i = 0; i < file.n; i++)
        ck_assert_msg(!is_decoder_layer(file.items[i].name), "%s saved", file.items[i].name);
    ck_assert_msg(strstr(info.config, "\"share_decoder\": true"), "%s", info.config);
    tensor_list_free(&file);
    checkpoint_info_free(&info);
    // Loaded into the same configuration: the same tensors, the same loss.
    ck_assert_int_eq(petl_load(petl_attach(u.m, &s), path, false), PETAL_OK);
    for (int i = 0; i < t.m->registry->n; i++) {
        const param_entry *e = &t.m->registry->items[i];
        tensor *w = registry_get(u.m->registry, e->name);
        ck_assert_msg(memcmp(tensor_data(w), tensor_data(e->value), tensor_nbytes(w)) == 0, "%s",
                      e->name);
    }
    tensor *lt = tiny_vqa_loss(&t), *lu = tiny_vqa_loss(&u);
    ck_assert(memcmp(tensor_data(lt), tensor_data(lu), tensor_nbytes(lt)) == 0);
    // The other setting is refused, both ways, naming the option.
    petl_handle *plain = petl_attach(v.m, &c);
    ck_assert_int_eq(petl_load(plain, path, false), PETAL_ERR_ARG);
    ck_assert_msg(strstr(petal_error_message(), "\"share_decoder\": true"), "%s",
                  petal_error_message());
    const char *unshared = test_dir_path("unshared.h5");
    ck_assert_int_eq(petl_save(plain, unshared), PETAL_OK);
    ck_assert_int_eq(petl_load(h, unshared, false), PETAL_ERR_ARG);
    blip_free(t.m);
    blip_free(u.m);
    blip_free(v.m);
    scope_end(mark);
}
END_TEST

START_TEST(test_merge_round_trip) {
    int mark = scope_begin();
    tiny_vqa t = tiny_vqa_new(PETAL_F32);
    petl_config c = shared(petl_config_aurora(PETL_CODE, 3));
    c.cp.dropout = 0;
    c.lora = petl_config_lora(2).lora;
    petl_handle *h = petl_attach(t.m, &c);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    randomise_trainable(t.m);
    tensor *q = t.m->decoder.layers[1].cross.query.weight;
    tensor *q0 = tensor_clone_data(q), *loss = tiny_vqa_loss(&t);
    petl_merge(h);
    ck_assert(memcmp(tensor_data(q), tensor_data(q0), tensor_nbytes(q)) != 0); // folded in
    ck_assert(tensors_close("merged loss", tiny_vqa_loss(&t), loss, 1e-5, 1e-5));
    petl_unmerge(h);
    ck_assert(memcmp(tensor_data(q), tensor_data(q0), tensor_nbytes(q)) == 0);
    tensor *after = tiny_vqa_loss(&t);
    ck_assert(memcmp(tensor_data(after), tensor_data(loss), tensor_nbytes(loss)) == 0);
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

// ---- what the option cannot apply to ----

// cfg on m fails naming the option and `expect`, and leaves m without methods.
static void check_refused(blip_model *m, petl_config cfg, const char *expect) {
    int entries = m->registry->n;
    ck_assert_ptr_null(petl_attach(m, &cfg));
    ck_assert_msg(strstr(petal_error_message(), "petl.share_decoder") &&
                      strstr(petal_error_message(), expect),
                  "expected '%s' in: %s", expect, petal_error_message());
    ck_assert(m->petl == NULL && m->registry->n == entries);
}

START_TEST(test_refused) {
    int mark = scope_begin();
    petl_config aurora = shared(petl_config_aurora(PETL_PAPER, 3));
    tiny retrieval = tiny_new(PETAL_F32);
    check_refused(retrieval.m, aurora, "retrieval model has no answer decoder");
    blip_free(retrieval.m);
    blip_config bc = blip_config_tiny(BLIP_CAPTION);
    blip_model *m = blip_new(&bc, PETAL_F32, 3);
    check_refused(m, aurora, "caption model has no question encoder");
    blip_free(m);
    bc = blip_config_tiny(BLIP_VQA);
    bc.decoder.layers = 3;
    m = blip_new(&bc, PETAL_F32, 3);
    check_refused(m, aurora,
                  "question encoder (2 layers, hidden 32, intermediate 64, "
                  "cross-attention width 32) and the answer decoder (3, 32, 64, 32) "
                  "differ");
    blip_free(m);
    // Targets in the decoder whose twins are not targets.
    tiny_vqa t = tiny_vqa_new(PETAL_F32);
    petl_config lora = shared(petl_config_lora(2));
    lora.lora.targets = "text_decoder.*.self.query";
    check_refused(t.m, lora,
                  "the decoder's 'text_decoder.bert.encoder.layer.0.attention.self.query.lora_A."
                  "weight' has no twin 'text_encoder.encoder.layer.0.attention.self.query.lora_A."
                  "weight'");
    petl_config cp = shared(petl_config_cp(PETL_CODE, 3));
    cp.cp.targets = "*.attn.qkv,text_decoder.*.crossattention.self.key";
    check_refused(t.m, cp,
                  "cp targets the decoder's 'text_decoder.bert.encoder.layer.0.crossattention.self."
                  "key' but not its twin 'text_encoder.encoder.layer.0.crossattention.self.key'");
    // The model is usable after the refusals.
    ck_assert_ptr_nonnull(petl_attach(t.m, &aurora));
    blip_free(t.m);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl_share");
    TCase *counts = tcase_with_timeout("counts", 120);
    tcase_add_test(counts, test_counts);
    suite_add_tcase(s, counts);
    TCase *tinyc = tcase_with_timeout("tiny", 120);
    tcase_add_checked_fixture(tinyc, test_dir_make, test_dir_remove);
    tcase_add_test(tinyc, test_decoder_deltas_are_twins);
    tcase_add_test(tinyc, test_gradient_is_sum_of_copies);
    tcase_add_test(tinyc, test_gradcheck_shared);
    tcase_add_test(tinyc, test_save_load);
    tcase_add_test(tinyc, test_merge_round_trip);
    tcase_add_test(tinyc, test_refused);
    suite_add_tcase(s, tinyc);
    return run_suite(s);
}
