#include "train/data.h"

#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"

#define PRETRAIN_MAX_LENGTH 30 // pretrain.py's tokenizer call (blip_pretrain.py)

// root/path; an absolute path, or no root, keeps the path as written (malloc'd).
static char *join_path(const char *root, const char *path) {
    strbuf b = {0};
    if (root && root[0] && path[0] != '/') {
        strbuf_append(&b, root, strlen(root));
        if (root[strlen(root) - 1] != '/') strbuf_push(&b, '/');
    }
    strbuf_append(&b, path, strlen(path));
    return strbuf_take(&b);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static train_sample *samples_alloc(train_data *d, int64_t n) {
    d->samples = buffer_calloc((size_t)n, sizeof *d->samples, "train_data");
    d->n = n;
    return d->samples;
}

static void sample_set_image(train_sample *s, const char *root, const char *ann_image,
                             const char *source, int64_t entry) {
    s->image = join_path(root, ann_image);
    s->ann_image = ann_image;
    s->source = source;
    s->entry = entry;
    s->image_id = -1;
}

static petal_status load_pairs(const train_data_options *o, train_data *d) {
    petal_status st =
        ann_load_train(o->ann_files[0], o->max_words, o->prompt ? o->prompt : "", &d->pairs);
    if (!st && o->paragraph) st = ann_train_paragraphs(d->pairs, o->max_words);
    if (st) return st;
    train_sample *s = samples_alloc(d, d->pairs->n);
    for (int64_t i = 0; i < d->pairs->n; i++) {
        const ann_caption *c = &d->pairs->items[i];
        sample_set_image(&s[i], o->image_root, c->image, d->sources[0], i);
        s[i].text = c->caption;
        s[i].image_id = c->image_index;
    }
    return PETAL_OK;
}

// Image-only samples: image i of the file is entry i, and `ids` gives its image_id.
static void add_images(const train_data_options *o, train_data *d, char *const *images,
                       const int64_t *ids, int64_t n) {
    train_sample *s = samples_alloc(d, n);
    for (int64_t i = 0; i < n; i++) {
        sample_set_image(&s[i], o->image_root, images[i], d->sources[0], i);
        s[i].image_id = ids ? ids[i] : i;
    }
}

static petal_status load_retrieval_eval(const train_data_options *o, train_data *d) {
    petal_status st = ann_load_retrieval(o->ann_files[0], o->max_words, &d->retrieval);
    if (!st && o->paragraph) st = ann_retrieval_paragraphs(d->retrieval, o->max_words);
    if (!st) add_images(o, d, d->retrieval->images, NULL, d->retrieval->n_images);
    return st;
}

static petal_status load_caption_eval(const train_data_options *o, train_data *d) {
    petal_status st = ann_load_caption_eval(o->ann_files[0], &d->caption_images);
    if (!st)
        add_images(o, d, d->caption_images->images, d->caption_images->image_ids,
                   d->caption_images->n);
    return st;
}

// One set per file (BLIP concatenates them), so each sample knows its file and entry.
static petal_status load_vqa(const train_data_options *o, train_data *d) {
    ann_vqa_split split = o->train ? ANN_VQA_TRAIN : o->vqa_answers ? ANN_VQA_EVAL : ANN_VQA_TEST;
    d->vqa = buffer_calloc((size_t)o->n_ann_files, sizeof *d->vqa, "train_data");
    int64_t total = 0;
    for (; d->n_vqa < o->n_ann_files; d->n_vqa++) {
        petal_status st = ann_load_vqa(&o->ann_files[d->n_vqa], 1, split, &d->vqa[d->n_vqa]);
        if (st) return st;
        total += d->vqa[d->n_vqa]->n;
    }
    const char *vg_root = o->vg_root ? o->vg_root : o->image_root;
    train_sample *s = samples_alloc(d, total);
    for (int f = 0; f < d->n_vqa; f++)
        for (int64_t i = 0; i < d->vqa[f]->n; i++, s++) {
            const ann_vqa *q = &d->vqa[f]->items[i];
            const char *root = q->dataset == ANN_DATASET_VG ? vg_root : o->image_root;
            sample_set_image(s, root, q->image, d->sources[f], i);
            s->text = q->question;
            s->vqa = q;
        }
    return o->answer_list ? ann_load_answer_list(o->answer_list, &d->answer_list) : PETAL_OK;
}

static petal_status check_files(const train_data_options *o) {
    if (o->n_ann_files < 1 || !o->ann_files)
        return petal_error(PETAL_ERR_ARG, "train_data: %s %s split: no annotation file given",
                           train_task_name(o->task), o->train ? "training" : "evaluation");
    if (o->n_ann_files > 1 && o->task != TRAIN_TASK_VQA)
        return petal_error(PETAL_ERR_ARG,
                           "train_data: the %s task reads one annotation file per split, "
                           "found %d (%s, ...)",
                           train_task_name(o->task), o->n_ann_files, o->ann_files[0]);
    return PETAL_OK;
}

static petal_status load_split(const train_data_options *o, train_data *d) {
    if (o->task == TRAIN_TASK_VQA) return load_vqa(o, d);
    if (o->train) return load_pairs(o, d);
    if (o->task == TRAIN_TASK_CAPTION) return load_caption_eval(o, d);
    return load_retrieval_eval(o, d);
}

petal_status train_data_load(const train_data_options *o, train_data *out) {
    *out = (train_data){.task = o->task, .train = o->train};
    petal_status st = check_files(o);
    if (st) return st;
    out->sources = buffer_calloc((size_t)o->n_ann_files, sizeof *out->sources, "train_data");
    out->n_sources = o->n_ann_files;
    for (int f = 0; f < o->n_ann_files; f++) {
        const char *name = base_name(o->ann_files[f]);
        out->sources[f] = buffer_strndup(name, strlen(name));
    }
    if ((st = load_split(o, out))) train_data_free(out);
    return st;
}

void train_data_free(train_data *d) {
    for (int64_t i = 0; i < d->n; i++) free(d->samples[i].image);
    free(d->samples);
    if (d->pairs) ann_train_free(d->pairs);
    if (d->retrieval) ann_retrieval_free(d->retrieval);
    if (d->caption_images) ann_image_set_free(d->caption_images);
    for (int f = 0; f < d->n_vqa; f++) ann_vqa_free(d->vqa[f]);
    free(d->vqa);
    if (d->answer_list) ann_strings_free(d->answer_list);
    for (int f = 0; f < d->n_sources; f++) free(d->sources[f]);
    free(d->sources);
    *d = (train_data){0};
}

tokenizer_options train_data_text_options(train_task task) {
    switch (task) {
    case TRAIN_TASK_RETRIEVAL:
        return (tokenizer_options){BLIP_RETRIEVAL_MAX_LENGTH, TOKENIZER_PAD_MAX_LENGTH,
                                   TOKENIZER_FIRST_CLS};
    case TRAIN_TASK_PRETRAIN:
        return (tokenizer_options){PRETRAIN_MAX_LENGTH, TOKENIZER_PAD_MAX_LENGTH,
                                   TOKENIZER_FIRST_CLS};
    case TRAIN_TASK_CAPTION:
        return (tokenizer_options){BLIP_CAPTION_MAX_LENGTH, TOKENIZER_PAD_LONGEST,
                                   TOKENIZER_FIRST_CLS};
    case TRAIN_TASK_VQA:
        return (tokenizer_options){BLIP_QUESTION_MAX_LENGTH, TOKENIZER_PAD_LONGEST,
                                   TOKENIZER_FIRST_CLS};
    }
    PETAL_CHECK(false, "train_data_text_options: unknown task %d", (int)task);
}

tokenizer_options train_data_answer_options(void) {
    return (tokenizer_options){0, TOKENIZER_PAD_LONGEST, TOKENIZER_FIRST_CLS};
}
