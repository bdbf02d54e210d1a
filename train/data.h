// A split of a task's data set, in memory (salesforce/BLIP data/coco_karpathy_dataset.py,
// flickr30k_dataset.py, vqa_dataset.py): the annotation files read with io/annotations.h, every
// image path resolved against the image root, and one sample per item the loader iterates over.
//
//     task        train split                       evaluation split
//     retrieval   image-caption pairs               images (the captions in d->retrieval)
//     pretrain    image-caption pairs               images (the captions in d->retrieval)
//     caption     pairs, the prompt before captions images with their COCO ids
//     vqa         questions with weighted answers   questions with ids (answers on request)
//
//     train_data_options o = {.task = TRAIN_TASK_RETRIEVAL, .train = true,
//                             .ann_files = (const char *[]){"ann/coco_karpathy_train.json"},
//                             .n_ann_files = 1, .image_root = "coco", .max_words = 30};
//     train_data d;
//     if (train_data_load(&o, &d) != PETAL_OK) fprintf(stderr, "%s\n", petal_error_message());
//     ...
//     train_data_free(&d);
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "io/annotations.h"
#include "io/tokenizer.h"
#include "tensor/error.h"
#include "train/config.h"

typedef struct {
    train_task task;
    bool train;                   // the training split; else an evaluation split
    const char *const *ann_files; // one file; VQA training reads several (BLIP's train_files)
    int n_ann_files;
    const char *answer_list; // vqa: answer_list.json, or NULL
    const char *image_root;  // base of relative image paths (NULL or "": as written)
    const char *vg_root;     // vqa: base of "vg" entries' images (NULL: image_root)
    int max_words;           // pre_caption's word limit (BLIP: 30)
    const char *prompt;      // caption training: put before every caption (NULL: none)
    bool vqa_answers;        // vqa evaluation: read the answers of the entries that have them
    bool paragraph;          // retrieval: one text per image, its captions joined (DiDeMo)
} train_data_options;

typedef struct {
    char *image;           // the image file: the annotation's path joined to its root (owned)
    const char *ann_image; // the image as the annotation file writes it (messages)
    const char *source;    // the annotation file's name, without directories (messages)
    int64_t entry;         // the entry's index in that file
    const char *text;      // the caption (prompt included) or question; NULL: images only
    // pairs: BLIP's image_index (equal for the captions of one image: ITC positives); retrieval
    // evaluation: the image's number (d->retrieval's text_image refers to it); caption evaluation:
    // the COCO image id; VQA: -1
    int64_t image_id;
    const ann_vqa *vqa; // VQA: the entry (question id; answers and weights when read), else NULL
} train_sample;

typedef struct {
    train_task task;
    bool train;
    train_sample *samples; // (n)
    int64_t n;
    // What the readers returned; the samples point into them. NULL unless the split is that kind.
    ann_train_set *pairs;          // training of retrieval, pretrain and caption (n_images)
    ann_retrieval_set *retrieval;  // evaluation of retrieval and pretrain: every caption
    ann_image_set *caption_images; // evaluation of caption
    ann_vqa_set **vqa;             // (n_vqa) one set per annotation file
    int n_vqa;
    ann_strings *answer_list; // vqa, when options.answer_list was given
    char **sources;           // (n_ann_files) the files' names, which samples' `source` points to
    int n_sources;
} train_data;

// Reads the split. Errors of the readers (a missing file, a bad field) pass through unchanged;
// PETAL_ERR_ARG when the options name no annotation file, or several for a split that reads one.
petal_status train_data_load(const train_data_options *o, train_data *out);
void train_data_free(train_data *d); // leaves a zeroed struct; a zeroed one is fine

// How BLIP tokenizes the texts of this task (the samples' texts, and for retrieval evaluation
// d->retrieval's captions): [CLS] first (the models put [ENC] or [DEC] in its place) and
//     retrieval  padding to max_length 35     pretrain  padding to max_length 30
//     caption    padding longest, at most 40  vqa       questions: padding longest, at most 35
tokenizer_options train_data_text_options(train_task task);
// VQA answers (the batch's and the answer list's): padding longest, not truncated, [CLS] first.
tokenizer_options train_data_answer_options(void);
