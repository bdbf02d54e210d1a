// models/blip/load: models saved with their config and vocabulary come back bit for bit; loading
// as another task takes the subset it needs; momentum state is rebuilt when the file has none;
// every bad file is refused with a message naming the file and the key.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/blip/load.h"
#include "tensor/scope.h"
#include "tests/test_util.h"

// The tiny config's vocabulary: [PAD] [CLS] [SEP] [UNK] [MASK] and 121 words; BLIP's [DEC] and
// [ENC] then take ids 126 and 127, as blip_config_tiny has them.
static char *tiny_vocab(void) {
    static const char *const specials = "[PAD]\n[CLS]\n[SEP]\n[UNK]\n[MASK]\n";
    char *v = malloc(2048);
    size_t n = (size_t)snprintf(v, 2048, "%s", specials);
    for (int i = 5; i < 126; i++) n += (size_t)snprintf(v + n, 2048 - n, "w%d\n", i);
    return v;
}

static char dir[] = "/tmp/petal-load-XXXXXX";

static const char *path_in_dir(const char *name) {
    static char buf[2][128];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", dir, name);
    return buf[which];
}

static void setup(void) {
    ck_assert(mkdtemp(dir) != NULL);
}

static blip_model *tiny(blip_task task, bool momentum) {
    blip_config c = blip_config_tiny(task);
    c.momentum = momentum;
    return blip_new(&c, PETAL_F32, 7);
}

// Every entry of a is in b with the same bytes.
static void assert_same_params(const blip_model *a, const blip_model *b) {
    for (int i = 0; i < a->registry->n; i++) {
        const param_entry *e = &a->registry->items[i];
        const param_entry *f = registry_find(b->registry, e->name);
        ck_assert_msg(f != NULL, "%s missing after loading", e->name);
        size_t bytes = (size_t)tensor_numel(e->value) * dtype_size(e->value->dtype);
        ck_assert_msg(memcmp(e->value->storage->data, f->value->storage->data, bytes) == 0,
                      "%s differs after loading", e->name);
    }
}

START_TEST(test_round_trip) {
    char *vocab = tiny_vocab();
    blip_model *m = tiny(BLIP_RETRIEVAL, true);
    ck_assert_int_eq(blip_save(path_in_dir("r.h5"), m, CHECKPOINT_FULL, vocab), PETAL_OK);
    blip_loaded l;
    ck_assert_msg(blip_load(path_in_dir("r.h5"), &(blip_load_options){.momentum = true}, &l) ==
                      PETAL_OK,
                  "%s", petal_error_message());
    ck_assert_int_eq(l.model->registry->n, m->registry->n);
    assert_same_params(m, l.model);
    const blip_config *c = &l.model->cfg;
    ck_assert_int_eq(c->task, BLIP_RETRIEVAL);
    ck_assert_int_eq(c->vision.image_size, 32);
    ck_assert_int_eq(c->text.hidden, 32);
    ck_assert_int_eq(c->text.encoder_width, 32);
    ck_assert_int_eq(c->embed_dim, 16);
    ck_assert_int_eq(c->tokens.cls, 1);
    ck_assert_int_eq(c->tokens.dec, 126);
    ck_assert_int_eq(c->tokens.enc, 127);
    ck_assert_int_eq(tokenizer_size(l.tok), 128);
    blip_loaded_free(&l);
    blip_free(m);
    free(vocab);
}
END_TEST

// A file without momentum encoders, loaded for training: the copies start equal to the main
// encoders, the queues as unit columns with unknown ids.
START_TEST(test_momentum_rebuilt) {
    char *vocab = tiny_vocab();
    blip_model *m = tiny(BLIP_RETRIEVAL, false);
    ck_assert_int_eq(blip_save(path_in_dir("nm.h5"), m, CHECKPOINT_FULL, vocab), PETAL_OK);
    blip_loaded l;
    ck_assert_msg(blip_load(path_in_dir("nm.h5"), &(blip_load_options){.momentum = true}, &l) ==
                      PETAL_OK,
                  "%s", petal_error_message());
    assert_same_params(m, l.model);
    tensor *a = registry_get(l.model->registry, "visual_encoder.blocks.1.mlp.fc2.weight");
    tensor *b = registry_get(l.model->registry, "visual_encoder_m.blocks.1.mlp.fc2.weight");
    ck_assert(tensors_close("momentum copy", b, a, 0, 0));
    const tensor *q = l.model->image_queue; // (E, Q)
    double col = 0;
    for (int64_t e = 0; e < q->shape[0]; e++) {
        double v = tensor_data_f32((tensor *)q)[e * q->shape[1]];
        col += v * v;
    }
    ck_assert_double_eq_tol(col, 1.0, 1e-5);
    ck_assert_int_eq(tensor_data_i64(l.model->idx_queue)[0], -100);
    blip_loaded_free(&l);
    blip_free(m);
    free(vocab);
}
END_TEST

// A retrieval file loaded as ITM keeps what ITM uses (no temp, no momentum) and drops the rest.
START_TEST(test_subset_for_another_task) {
    char *vocab = tiny_vocab();
    blip_model *m = tiny(BLIP_RETRIEVAL, true);
    ck_assert_int_eq(blip_save(path_in_dir("r2.h5"), m, CHECKPOINT_FULL, vocab), PETAL_OK);
    blip_loaded l;
    ck_assert_msg(blip_load(path_in_dir("r2.h5"), &(blip_load_options){.task = "itm"}, &l) ==
                      PETAL_OK,
                  "%s", petal_error_message());
    ck_assert_int_eq(l.model->cfg.task, BLIP_ITM);
    assert_same_params(l.model, m);
    blip_loaded_free(&l);
    blip_free(m);
    free(vocab);
}
END_TEST

START_TEST(test_text_model) {
    blip_config c = blip_config_tiny(BLIP_TEXT);
    c.text.type_vocab = 2;
    c.text.encoder_width = 0;
    blip_model *m = blip_new(&c, PETAL_F32, 3);
    ck_assert_int_eq(blip_save(path_in_dir("t.h5"), m, CHECKPOINT_FULL, NULL), PETAL_OK);
    blip_loaded l;
    ck_assert_msg(blip_load(path_in_dir("t.h5"), NULL, &l) == PETAL_OK, "%s",
                  petal_error_message());
    ck_assert(!l.model->has_vision && l.model->has_text && !l.model->has_heads);
    ck_assert_int_eq(l.model->cfg.text.type_vocab, 2);
    ck_assert(registry_find(l.model->registry, "text_encoder.embeddings.token_type_embeddings."
                                               "weight") != NULL);
    assert_same_params(m, l.model);
    blip_loaded_free(&l);
    blip_free(m);
}
END_TEST

// Saves m under a hand-written config and expects blip_load to fail with `expect` in the message.
static void expect_refused(const blip_model *m, const char *config, const char *task,
                           const char *expect) {
    char *vocab = tiny_vocab();
    const char *p = path_in_dir("bad.h5");
    ck_assert_int_eq(checkpoint_save(p, m->registry, CHECKPOINT_FULL,
                                     &(checkpoint_meta){.config = config, .vocab = vocab}),
                     PETAL_OK);
    free(vocab);
    blip_loaded l;
    ck_assert(blip_load(p, &(blip_load_options){.task = task}, &l) != PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), expect) && strstr(petal_error_message(), p),
                  "message '%s' lacks '%s' or the path", petal_error_message(), expect);
    ck_assert(l.model == NULL);
}

START_TEST(test_refusals) {
    blip_model *m = tiny(BLIP_RETRIEVAL, false);
    char *good = blip_config_to_json(&m->cfg);
    // the weights are 32 wide; a config saying 64 makes every tensor mismatch
    char *wide = strdup(good);
    char *at = strstr(wide, "\"width\": 32");
    memcpy(at, "\"width\": 64", 11);
    expect_refused(m, wide, NULL, "wrong shape or dtype");
    // a config whose weights outgrow the machine is refused before anything is allocated
    char *huge = NULL;
    ck_assert_int_ge(asprintf(&huge, "%.*s\"width\": 1048576%s", (int)(at - wide), wide, at + 11),
                     0);
    expect_refused(m, huge, NULL, "the vision encoder's weights alone take");
    free(huge);
    expect_refused(m, "{\"model\": \"blip\", \"task\": 3}", NULL, "task");
    expect_refused(m, "{\"model\": \"gpt\"}", NULL, "model: expected \"blip\" or \"bert\"");
    expect_refused(m, "{\"model\": \"blip\", \"task\": \"pretrain\"}", NULL, "say which one");
    expect_refused(m, "{\"model\": \"blip\", \"task\": \"retrieval\", \"text\": [1]}", NULL,
                   "text");
    expect_refused(m, good, "caption", "not in the file, e.g. text_decoder.");
    ck_assert_int_eq(blip_save(path_in_dir("nv.h5"), m, CHECKPOINT_FULL, NULL), PETAL_OK);
    blip_loaded l;
    ck_assert(blip_load(path_in_dir("nv.h5"), NULL, &l) != PETAL_OK);
    ck_assert(strstr(petal_error_message(), "convert it again with --vocab"));
    free(good);
    free(wide);
    blip_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("blip_load");
    TCase *tc = tcase_with_timeout("load", 120);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_momentum_rebuilt);
    tcase_add_test(tc, test_subset_for_another_task);
    tcase_add_test(tc, test_text_model);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
