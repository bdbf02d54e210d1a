// libFuzzer target for io/annotations: arbitrary bytes as an annotation file, read by every BLIP
// reader (caption/retrieval train with and without a prompt, retrieval and caption evaluation, VQA
// train and test, the answer list). Built and run by scripts/fuzz_text.sh.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/annotations.h"

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

static void read_all(const char *path) {
    ann_train_set *train;
    if (ann_load_train(path, 30, "a picture of ", &train) == PETAL_OK) {
        for (int64_t i = 0; i < train->n; i++)
            EXPECT(train->items[i].image_index >= 0 &&
                   train->items[i].image_index < train->n_images);
        ann_train_free(train);
    }
    ann_retrieval_set *r;
    if (ann_load_retrieval(path, 30, &r) == PETAL_OK) {
        EXPECT(r->image_texts[r->n_images] == r->n_texts);
        for (int64_t t = 0; t < r->n_texts; t++)
            EXPECT(r->text_image[t] >= 0 && r->text_image[t] < r->n_images);
        ann_retrieval_free(r);
    }
    ann_image_set *images;
    if (ann_load_caption_eval(path, &images) == PETAL_OK) ann_image_set_free(images);
    for (int split = 0; split < 2; split++) {
        ann_vqa_set *vqa;
        if (ann_load_vqa(&path, 1, (ann_vqa_split)split, &vqa) != PETAL_OK) continue;
        for (int64_t i = 0; i < vqa->n; i++) {
            double sum = 0;
            for (int k = 0; k < vqa->items[i].n_answers; k++) sum += vqa->items[i].weights[k];
            EXPECT(split == ANN_VQA_TEST || (sum > 0.19 && sum < 1.01));
        }
        ann_vqa_free(vqa);
    }
    ann_strings *answers;
    if (ann_load_answer_list(path, &answers) == PETAL_OK) ann_strings_free(answers);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("annotations", 0);
    EXPECT(fd >= 0 && write(fd, data, size) == (ssize_t)size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    read_all(path);
    close(fd);
    return 0;
}
