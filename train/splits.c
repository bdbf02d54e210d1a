#include "train/splits.h"

#include <stdlib.h>
#include <string.h>

static const char *const split_names[] = {"train", "val", "test"};

const char *train_split_name(train_split s) {
    return split_names[s];
}

petal_status train_split_parse(const char *name, train_split *out) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, split_names[i]) == 0) {
            *out = (train_split)i;
            return PETAL_OK;
        }
    return petal_error(PETAL_ERR_ARG, "split '%s': expected train, val or test", name);
}

petal_status splits_load(const train_config *c, train_split split, train_data *out) {
    const char *files[] = {c->train_file, c->val_file, c->test_file};
    char *ann_root = train_config_path(c, c->ann_root);
    char *image_root = train_config_path(c, c->image_root);
    size_t n = strlen(ann_root) + strlen(files[split]) + 2;
    char *ann = malloc(n);
    char *answers = NULL;
    PETAL_CHECK(ann != NULL, "splits_load: out of host memory");
    snprintf(ann, n, "%s/%s", ann_root, files[split]);
    if (c->task == TRAIN_TASK_VQA && c->answer_list) {
        size_t m = strlen(ann_root) + strlen(c->answer_list) + 2;
        answers = malloc(m);
        PETAL_CHECK(answers != NULL, "splits_load: out of host memory");
        snprintf(answers, m, "%s/%s", ann_root, c->answer_list);
    }
    train_data_options o = {.task = c->task,
                            .train = split == TRAIN_SPLIT_TRAIN,
                            .ann_files = (const char *const[]){ann},
                            .n_ann_files = 1,
                            .answer_list = answers,
                            .image_root = image_root,
                            .max_words = (int)c->max_words,
                            .prompt = c->task == TRAIN_TASK_CAPTION ? c->prompt : NULL,
                            .vqa_answers = true,
                            .paragraph = c->paragraph};
    petal_status s = train_data_load(&o, out);
    if (s) {
        static const char *const keys[] = {"train_file", "val_file", "test_file"};
        char why[1024];
        snprintf(why, sizeof why, "%s", petal_error_message());
        s = petal_error(s, "%s: %s (under ann_root, data_root '%s'): %s", c->source, keys[split],
                        c->data_root, why);
    }
    free(ann);
    free(answers);
    free(ann_root);
    free(image_root);
    return s;
}

loader_options splits_loader_options(const train_config *c, bool train) {
    return (loader_options){.batch_size = (int)(train ? c->batch_size_train : c->batch_size_test),
                            .shuffle = train,
                            .drop_last = train,
                            .train_transform = train,
                            .skip_bad_images = c->skip_bad_images,
                            .image_size = (int)c->image_size,
                            .workers = (int)c->num_workers,
                            .prefetch = (int)c->prefetch,
                            .text_length = (int)c->text_length,
                            .seed = (uint64_t)c->seed,
                            .dtype = train_config_dtype(c),
                            .device = train_config_device(c),
                            .frames = c->media == TRAIN_MEDIA_VIDEO
                                          ? (int)(train ? c->num_frames : c->num_frames_test)
                                          : 0};
}
