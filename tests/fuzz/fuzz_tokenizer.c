// libFuzzer target for io/tokenizer and io/text: arbitrary bytes as text through tokenize, batch
// encoding (BLIP's retrieval settings), decode, pre_caption and pre_question. The first byte picks
// the mode: 'v' reads the rest as a vocab.txt, anything else tokenizes the rest. Built and run by
// scripts/fuzz_text.sh, which defines PETAL_TEST_DATA (the vocabulary is
// tests/data/tokenizer/vocab.txt).
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/text.h"
#include "io/tokenizer.h"
#include "tensor/tensor.h"

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

static tokenizer *blip;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    EXPECT(tokenizer_load_blip(PETAL_TEST_DATA "/tokenizer/vocab.txt", &blip) == PETAL_OK);
    return 0;
}

static void fuzz_vocab(const uint8_t *data, size_t size) {
    int fd = memfd_create("vocab", 0);
    EXPECT(fd >= 0 && write(fd, data, size) == (ssize_t)size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    tokenizer *t;
    if (tokenizer_load(path, &t) == PETAL_OK) {
        token_ids ids = {0};
        tokenizer_tokenize(t, "Hello, [MASK] worlds!", 21, &ids);
        for (size_t i = 0; i < ids.len; i++)
            EXPECT(ids.ids[i] >= 0 && ids.ids[i] < tokenizer_size(t));
        token_ids_free(&ids);
        tokenizer_free(t);
    }
    close(fd);
}

static void fuzz_preprocessing(const char *text) {
    char *out;
    if (text_pre_caption(text, 30, &out) == PETAL_OK) free(out);
    if (text_pre_question(text, 50, &out) == PETAL_OK) free(out);
}

static void fuzz_text(const char *text, size_t len) {
    token_ids ids = {0};
    if (tokenizer_tokenize(blip, text, len, &ids) != PETAL_OK) return;
    int64_t *wide = malloc((ids.len + 1) * sizeof *wide);
    for (size_t i = 0; i < ids.len; i++) {
        EXPECT(ids.ids[i] >= 0 && ids.ids[i] < tokenizer_size(blip));
        wide[i] = ids.ids[i];
    }
    for (int skip = 0; skip < 2; skip++) {
        char *back = tokenizer_decode(blip, wide, ids.len, skip);
        EXPECT(text_utf8_prefix(back, strlen(back)) == strlen(back));
        free(back);
    }
    const char *texts[] = {text, "a dog"};
    tensor *out_ids, *mask;
    tokenizer_options opt = {
        .max_length = 35, .padding = TOKENIZER_PAD_MAX_LENGTH, .first = TOKENIZER_FIRST_ENC};
    if (tokenizer_encode_batch(blip, texts, 2, &opt, &out_ids, &mask) == PETAL_OK) {
        EXPECT(out_ids->shape[1] == 35 && tensor_data_i64(out_ids)[0] == 30523);
        tensor_free(out_ids);
        tensor_free(mask);
    }
    free(wide);
    token_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    bool vocab = data[0] == 'v';
    data++;
    size--;
    if (vocab) {
        fuzz_vocab(data, size);
        return 0;
    }
    char *text = malloc(size + 1); // NUL-terminated: encode_batch and preprocessing take C strings
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_text(text, size);
    fuzz_preprocessing(text);
    free(text);
    return 0;
}
