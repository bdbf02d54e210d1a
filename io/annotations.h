// Readers for BLIP's annotation files (salesforce/BLIP data/*.py), with the text preprocessing the
// datasets apply. Every file is a JSON array; errors name the file, the entry and the field
// ("coco_karpathy_train.json: [12].caption: expected a string, found a number"). Text fields must
// not contain NUL characters (\u0000).
#pragma once

#include <stdint.h>

#include "tensor/error.h"

// Video sets of BLIP-style code (MSR-VTT, DiDeMo, MSRVTT-QA) read through the same functions: an
// entry's "video" stands for its "image" (the struct fields keep the name image), a training pair
// without "image_id" is its video's own id, a retrieval test entry's "caption" may be one string,
// and a QA entry {"video", "question", "answer": "one answer", "question_id"} has no "dataset"
// (its answer weighs 1).

// ---- caption and retrieval training: coco_karpathy_train.json, flickr30k_train.json ----
// [{"image": "val2014/x.jpg", "caption": "...", "image_id": "coco_123" | 123}, ...]
typedef struct {
    char *image;         // path under the image root
    char *caption;       // prompt + pre_caption(caption, max_words)
    int64_t image_index; // BLIP's img_ids[image_id]: image ids numbered by first appearance
} ann_caption;

typedef struct {
    ann_caption *items;
    int64_t n;
    int64_t n_images; // distinct image ids
} ann_train_set;

// max_words: TEXT_DATASET_MAX_WORDS in BLIP; prompt: "" for retrieval, "a picture of " for
// captioning. Equal ids compare as Python's dict keys do (the number 5 and the string "5" differ).
petal_status ann_load_train(const char *path, int max_words, const char *prompt,
                            ann_train_set **out);
void ann_train_free(ann_train_set *s);

// ---- retrieval evaluation: coco_karpathy_val/test.json, flickr30k_val/test.json ----
// [{"image": "...", "caption": ["...", ...]}, ...]
typedef struct {
    char **images;
    int64_t n_images;
    char **texts; // pre_caption(caption, max_words) of every caption, image after image
    int64_t n_texts;
    int64_t *text_image;  // (n_texts,) BLIP's txt2img
    int64_t *image_texts; // (n_images + 1,): the texts of image i are [image_texts[i], [i + 1])
} ann_retrieval_set;

petal_status ann_load_retrieval(const char *path, int max_words, ann_retrieval_set **out);
void ann_retrieval_free(ann_retrieval_set *s);

// ---- paragraphs: DiDeMo's paragraph-to-video retrieval ----
// All the descriptions of a video joined into one text, in file order (ClipBERT's protocol, which
// Aurora's DiDeMo numbers follow), with pre_caption's word limit applied to the whole paragraph.
// Training: the pairs of one image become one pair, at its first pair's place. Evaluation: the
// entries naming one image merge into one image with one text (a file with one line per
// description, or entries with caption lists, give the same set).
petal_status ann_train_paragraphs(ann_train_set *s, int max_words);
petal_status ann_retrieval_paragraphs(ann_retrieval_set *s, int max_words);

// ---- caption evaluation: coco_karpathy_val/test.json ----
// [{"image": "...", "image_id": 391895 (optional), ...}, ...]
// The image id is the entry's "image_id", which must then be an integer (`petal data synth` writes
// one: its file names carry no COCO id). Without it, the id is parsed from the file name as BLIP
// does: int(image.split('/')[-1].strip('.jpg').split('_')[-1]), e.g. COCO_val2014_000000391895.jpg
// (strip removes the characters . j p g, not a suffix, so a .png name does not parse).
typedef struct {
    char **images;
    int64_t *image_ids;
    int64_t n;
} ann_image_set;

petal_status ann_load_caption_eval(const char *path, ann_image_set **out);
void ann_image_set_free(ann_image_set *s);

// ---- VQA: vqa_train.json, vqa_val.json, vg_qa.json (train), vqa_test.json (test) ----
// [{"question_id": 1, "question": "...", "answer": ["...", ...] | "...", "image": "...",
//   "dataset": "vqa" | "vg"}, ...]
typedef enum {
    ANN_VQA_TRAIN, // answers with weights; question_id optional
    ANN_VQA_TEST,  // question_id required; answers ignored
    ANN_VQA_EVAL,  // question_id required; answers read where an entry has them (vqa_val.json
                   // has them, vqa_test.json not), for accuracy
} ann_vqa_split;

typedef enum {
    ANN_DATASET_VQA, // images under the VQA (COCO) root
    ANN_DATASET_VG,  // images under the Visual Genome root
} ann_dataset;

typedef struct {
    char *image;
    ann_dataset dataset;
    char *question;      // pre_question(question) (50 words)
    int64_t question_id; // -1 when the entry has none
    // train: "vqa" entries give each distinct answer (in order of first appearance) the weight
    // count / len(answers), summed as BLIP does; "vg" entries give their one answer 0.2
    char **answers;
    double *weights;
    int n_answers;
    // every annotator's answer as the file lists it (duplicates kept), for VQA accuracy
    char **raw_answers;
    int n_raw;
} ann_vqa;

typedef struct {
    ann_vqa *items;
    int64_t n;
} ann_vqa_set;

// Reads and concatenates the files, like BLIP's train_files list.
petal_status ann_load_vqa(const char *const *paths, int n_paths, ann_vqa_split split,
                          ann_vqa_set **out);
void ann_vqa_free(ann_vqa_set *s);

// ---- answer_list.json: ["net", "pitcher", ...] (not preprocessed, as in BLIP) ----
typedef struct {
    char **items;
    int64_t n;
} ann_strings;

petal_status ann_load_answer_list(const char *path, ann_strings **out);
void ann_strings_free(ann_strings *s);
