// train/synth: the synthetic set read back through petal's own readers (annotations, images,
// tokenizer), the scenes behind the files, held-out compositions, the shifted camera,
// determinism and errors.
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/annotations.h"
#include "io/buffer.h"
#include "io/image.h"
#include "io/json.h"
#include "io/text.h"
#include "io/tokenizer.h"
#include "tests/test_util.h"
#include "train/synth.h"

enum { TRAIN = 24, VAL = 8, TEST = 12 };

static synth_options small_options(void) {
    synth_options o = synth_defaults();
    o.seed = 7;
    o.train_images = TRAIN;
    o.val_images = VAL;
    o.test_images = TEST;
    return o;
}

static const char *set_dir; // the set of small_options(), written for each test

static void write_set(void) {
    test_dir_make();
    set_dir = test_dir_path("synth");
    synth_options o = small_options();
    ck_assert_msg(synth_write(set_dir, &o, NULL) == PETAL_OK, "%s", petal_error_message());
}

// A path in the set; valid until the test ends.
static const char *in_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *in_set(const char *fmt, ...) {
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    char name[300];
    snprintf(name, sizeof name, "synth/%s", rel);
    return test_dir_path(name);
}

static const int64_t split_images[SYNTH_SPLITS] = {TRAIN, VAL, TEST};
static const int64_t first_id[SYNTH_SPLITS] = {0, TRAIN, TRAIN + VAL};

static ann_vqa_set *load_vqa(synth_split split, ann_vqa_split how) {
    const char *path = in_set("annotations/vqa_%s.json", synth_split_names[split]);
    ann_vqa_set *s;
    ck_assert_msg(ann_load_vqa(&path, 1, how, &s) == PETAL_OK, "%s", petal_error_message());
    return s;
}

static ann_retrieval_set *load_retrieval(synth_split split) {
    ann_retrieval_set *s;
    ck_assert_msg(
        ann_load_retrieval(in_set("annotations/coco_karpathy_%s.json", synth_split_names[split]),
                           TEXT_DATASET_MAX_WORDS, &s) == PETAL_OK,
        "%s", petal_error_message());
    return s;
}

// ---- the files load with the expected counts ----

START_TEST(test_train_captions) {
    ann_train_set *t;
    ck_assert_msg(ann_load_train(in_set("annotations/coco_karpathy_train.json"),
                                 TEXT_DATASET_MAX_WORDS, "", &t) == PETAL_OK,
                  "%s", petal_error_message());
    ck_assert_int_eq(t->n, TRAIN * SYNTH_CAPTIONS_PER_IMAGE);
    ck_assert_int_eq(t->n_images, TRAIN);
    char want[64];
    for (int64_t i = 0; i < t->n; i++) {
        snprintf(want, sizeof want, "train/synth_%lld.png", (long long)(i / 2));
        ck_assert_str_eq(t->items[i].image, want);
        ck_assert_int_eq(t->items[i].image_index, i / 2);
    }
    ck_assert_str_ne(t->items[0].caption, t->items[1].caption); // two wordings of one scene
    ann_train_free(t);
}
END_TEST

// coco_karpathy_{val,test}.json for retrieval and caption evaluation, and their COCO ground truth:
// the same images, ids and captions.
START_TEST(test_eval_captions) {
    for (synth_split p = SYNTH_VAL; p <= SYNTH_TEST; p++) {
        ann_retrieval_set *r = load_retrieval(p);
        ck_assert_int_eq(r->n_images, split_images[p]);
        ck_assert_int_eq(r->n_texts, split_images[p] * SYNTH_CAPTIONS_PER_IMAGE);
        ann_image_set *ids;
        ck_assert_msg(
            ann_load_caption_eval(in_set("annotations/coco_karpathy_%s.json", synth_split_names[p]),
                                  &ids) == PETAL_OK,
            "%s", petal_error_message());
        ck_assert_int_eq(ids->n, split_images[p]);
        json_value *gt;
        ck_assert_msg(
            json_parse_file(in_set("annotations/coco_karpathy_%s_gt.json", synth_split_names[p]),
                            &gt) == PETAL_OK,
            "%s", petal_error_message());
        const json_value *images = json_get(gt, "images"), *anns = json_get(gt, "annotations");
        ck_assert_int_eq((int64_t)json_len(images), ids->n);
        ck_assert_int_eq((int64_t)json_len(anns), r->n_texts);
        for (int64_t i = 0; i < ids->n; i++) {
            ck_assert_int_eq(ids->image_ids[i], first_id[p] + i);
            ck_assert_str_eq(ids->images[i], r->images[i]);
            ck_assert_int_eq(json_get(json_at(images, (size_t)i), "id")->number.exact,
                             ids->image_ids[i]);
        }
        for (int64_t k = 0; k < r->n_texts; k++) {
            const json_value *a = json_at(anns, (size_t)k);
            ck_assert_int_eq(json_get(a, "image_id")->number.exact,
                             ids->image_ids[r->text_image[k]]);
            char *pre;
            ck_assert_int_eq(text_pre_caption(json_get(a, "caption")->string.chars,
                                              TEXT_DATASET_MAX_WORDS, &pre),
                             PETAL_OK);
            ck_assert_str_eq(pre, r->texts[k]);
            free(pre);
        }
        json_free(gt);
        ann_image_set_free(ids);
        ann_retrieval_free(r);
    }
}
END_TEST

// Every question has ten answers whose weights sum to 1, the majority one weighing at least 0.8;
// every answer is in answer_list.json; the test split loads as BLIP's test split.
START_TEST(test_vqa_files) {
    ann_strings *list;
    ck_assert_msg(ann_load_answer_list(in_set("annotations/answer_list.json"), &list) == PETAL_OK,
                  "%s", petal_error_message());
    ck_assert_int_eq(list->n, 24);
    int noisy = 0;
    for (synth_split p = SYNTH_TRAIN; p < SYNTH_SPLITS; p++) {
        ann_vqa_set *s = load_vqa(p, ANN_VQA_TRAIN);
        ck_assert_int_eq(s->n, split_images[p] * SYNTH_QUESTIONS_PER_IMAGE);
        for (int64_t i = 0; i < s->n; i++) {
            const ann_vqa *q = &s->items[i];
            ck_assert_int_eq(q->question_id, first_id[p] * SYNTH_QUESTIONS_PER_IMAGE + i);
            char want[64];
            snprintf(want, sizeof want, "%s/synth_%lld.png", synth_split_names[p],
                     (long long)(first_id[p] + i / SYNTH_QUESTIONS_PER_IMAGE));
            ck_assert_str_eq(q->image, want);
            ck_assert_int_eq(q->dataset, ANN_DATASET_VQA);
            double sum = 0;
            for (int a = 0; a < q->n_answers; a++) {
                sum += q->weights[a];
                bool listed = false;
                for (int64_t l = 0; l < list->n && !listed; l++)
                    listed = strcmp(list->items[l], q->answers[a]) == 0;
                ck_assert_msg(listed, "answer '%s' is not in answer_list.json", q->answers[a]);
            }
            ck_assert_msg(sum > 1 - 1e-12 && sum < 1 + 1e-12, "question %lld: weights sum to %g",
                          (long long)q->question_id, sum);
            double top = 0;
            for (int a = 0; a < q->n_answers; a++) top = q->weights[a] > top ? q->weights[a] : top;
            ck_assert_msg(top >= 0.8 - 1e-12, "question %lld: the majority answer weighs %g",
                          (long long)q->question_id, top);
            noisy += q->n_answers > 1;
        }
        ann_vqa_free(s);
    }
    // 0, 1 or 2 noisy annotators, equally likely: about 2/3 of the 176 questions
    ck_assert_msg(noisy > 80 && noisy < 150, "%d questions with noisy answers", noisy);
    ann_vqa_set *test = load_vqa(SYNTH_TEST, ANN_VQA_TEST);
    ck_assert_int_eq(test->n, TEST * SYNTH_QUESTIONS_PER_IMAGE);
    ann_vqa_free(test);
    ann_strings_free(list);
}
END_TEST

// ---- the vocabulary covers every text ----

static void check_no_unk(const tokenizer *t, const char *text) {
    token_ids ids = {0};
    ck_assert_int_eq(tokenizer_tokenize(t, text, strlen(text), &ids), PETAL_OK);
    ck_assert_int_gt((int64_t)ids.len, 0);
    for (size_t i = 0; i < ids.len; i++)
        ck_assert_msg(ids.ids[i] != tokenizer_specials(t)->unk, "'%s': token %zu is [UNK]", text,
                      i);
    token_ids_free(&ids);
}

// The raw texts of an annotation file: every string under "caption", "question" and "answer"
// (and the answer list's); returns how many.
static int check_raw_strings(const tokenizer *t, const json_value *v) {
    if (v->type == JSON_STRING) {
        check_no_unk(t, v->string.chars);
        return 1;
    }
    static const char *const texts[] = {"caption", "question", "answer", "annotations"};
    int n = 0;
    if (v->type == JSON_ARRAY)
        for (size_t i = 0; i < json_len(v); i++) n += check_raw_strings(t, json_at(v, i));
    for (size_t k = 0; v->type == JSON_OBJECT && k < sizeof texts / sizeof *texts; k++)
        if (json_get(v, texts[k])) n += check_raw_strings(t, json_get(v, texts[k]));
    return n;
}

START_TEST(test_vocab) {
    tokenizer *t;
    ck_assert_msg(tokenizer_load_blip(in_set("vocab.txt"), &t) == PETAL_OK, "%s",
                  petal_error_message());
    const tokenizer_special_ids *sp = tokenizer_specials(t);
    ck_assert_int_eq(sp->pad, 0);
    ck_assert_int_eq(sp->unk, 1);
    ck_assert_int_eq(sp->cls, 2);
    ck_assert_int_eq(sp->sep, 3);
    ck_assert_int_eq(sp->mask, 4);
    synth_summary sum;
    synth_options o = small_options();
    ck_assert_int_eq(synth_write(test_dir_path("again"), &o, &sum), PETAL_OK);
    ck_assert_int_eq(tokenizer_size(t), sum.vocab_size + 2); // + [DEC] and [ENC]
    // what the datasets feed the tokenizer
    ann_train_set *train;
    ck_assert_int_eq(ann_load_train(in_set("annotations/coco_karpathy_train.json"),
                                    TEXT_DATASET_MAX_WORDS, "a picture of ", &train),
                     PETAL_OK);
    for (int64_t i = 0; i < train->n; i++) check_no_unk(t, train->items[i].caption);
    ann_train_free(train);
    for (synth_split p = SYNTH_TRAIN; p < SYNTH_SPLITS; p++) {
        if (p != SYNTH_TRAIN) {
            ann_retrieval_set *r = load_retrieval(p);
            for (int64_t i = 0; i < r->n_texts; i++) check_no_unk(t, r->texts[i]);
            ann_retrieval_free(r);
        }
        ann_vqa_set *s = load_vqa(p, ANN_VQA_TRAIN);
        for (int64_t i = 0; i < s->n; i++) {
            check_no_unk(t, s->items[i].question);
            for (int a = 0; a < s->items[i].n_answers; a++) check_no_unk(t, s->items[i].answers[a]);
        }
        ann_vqa_free(s);
    }
    // and the raw texts, punctuation and all
    static const char *const files[] = {"coco_karpathy_train.json",
                                        "coco_karpathy_val.json",
                                        "coco_karpathy_test.json",
                                        "vqa_train.json",
                                        "vqa_val.json",
                                        "vqa_test.json",
                                        "answer_list.json",
                                        "coco_karpathy_val_gt.json"};
    int n = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        json_value *root;
        ck_assert_int_eq(json_parse_file(in_set("annotations/%s", files[f]), &root), PETAL_OK);
        n += check_raw_strings(t, root);
        json_free(root);
    }
    ck_assert_int_gt(n, 1000);
    tokenizer_free(t);
}
END_TEST

// ---- the scenes behind the files ----

// The answer with the largest weight.
static const char *majority(const ann_vqa *q) {
    int best = 0;
    for (int a = 1; a < q->n_answers; a++)
        if (q->weights[a] > q->weights[best]) best = a;
    return q->answers[best];
}

// The files describe the scene synth_scene_at gives: the VQA majority answers name its colour,
// texture, size and position, the captions its colour, size and position.
START_TEST(test_files_describe_scenes) {
    synth_options o = small_options();
    for (synth_split p = SYNTH_TRAIN; p < SYNTH_SPLITS; p++) {
        ann_vqa_set *s = load_vqa(p, ANN_VQA_TRAIN);
        ann_retrieval_set *r = p == SYNTH_TRAIN ? NULL : load_retrieval(p);
        for (int64_t i = 0; i < split_images[p]; i++) {
            synth_scene sc = synth_scene_at(&o, p, i);
            const ann_vqa *q = &s->items[i * SYNTH_QUESTIONS_PER_IMAGE];
            ck_assert_str_eq(majority(&q[0]), synth_colour_words[sc.colour]);
            ck_assert_str_eq(majority(&q[1]), synth_texture_words[sc.texture]);
            ck_assert_str_eq(majority(&q[2]), synth_size_words[sc.size]);
            ck_assert_str_eq(majority(&q[3]), synth_position_words[sc.position]);
            for (int c = 0; r && c < SYNTH_CAPTIONS_PER_IMAGE; c++) {
                const char *text = r->texts[r->image_texts[i] + c];
                ck_assert_msg(strstr(text, synth_colour_words[sc.colour]) &&
                                  strstr(text, synth_size_words[sc.size]) &&
                                  strstr(text, synth_position_words[sc.position]),
                              "%s image %lld: '%s'", synth_split_names[p], (long long)i, text);
            }
        }
        ann_retrieval_free(r);
        ann_vqa_free(s);
    }
}
END_TEST

// At the default sizes: no train image shows a held-out pair, every seen composition comes up 8
// or 9 times in 800 images, and the 128 test images show each composition once.
START_TEST(test_held_out) {
    synth_options o = synth_defaults();
    int train[SYNTH_COMPOSITIONS] = {0}, test[SYNTH_COMPOSITIONS] = {0};
    const struct {
        synth_split split;
        int64_t n;
        int *count;
    } splits[] = {{SYNTH_TRAIN, o.train_images, train}, {SYNTH_TEST, o.test_images, test}};
    for (int p = 0; p < 2; p++)
        for (int64_t i = 0; i < splits[p].n; i++) {
            synth_scene s = synth_scene_at(&o, splits[p].split, i);
            splits[p].count[s.colour + SYNTH_COLOURS *
                                           (s.texture + SYNTH_TEXTURES *
                                                            (s.size + SYNTH_SIZES * s.position))]++;
            if (splits[p].split == SYNTH_TEST)
                ck_assert_int_eq(synth_is_held_out(s.colour, s.texture), i % 4 == 0);
        }
    int held_pairs = 0;
    for (int k = 0; k < SYNTH_COMPOSITIONS; k++) {
        bool held = synth_is_held_out(k % 4, k / 4 % 4);
        held_pairs += held && k < 16;
        ck_assert_msg(held ? train[k] == 0 : train[k] == 8 || train[k] == 9,
                      "composition %d: %d train images", k, train[k]);
        ck_assert_msg(test[k] == 1, "composition %d: %d test images", k, test[k]);
    }
    ck_assert_int_eq(held_pairs, SYNTH_HELD_OUT);
    // the small set: held-out images in val and test, none in train
    synth_summary sum;
    synth_options small = small_options();
    ck_assert_int_eq(synth_write(test_dir_path("counted"), &small, &sum), PETAL_OK);
    ck_assert_int_eq(sum.held_out[SYNTH_TRAIN], 0);
    ck_assert_int_eq(sum.held_out[SYNTH_VAL], 2);
    ck_assert_int_eq(sum.held_out[SYNTH_TEST], 3);
    for (int p = 0; p < SYNTH_SPLITS; p++) {
        ck_assert_int_eq(sum.images[p], split_images[p]);
        ck_assert_int_eq(sum.captions[p], split_images[p] * SYNTH_CAPTIONS_PER_IMAGE);
        ck_assert_int_eq(sum.questions[p], split_images[p] * SYNTH_QUESTIONS_PER_IMAGE);
    }
}
END_TEST

static image load_image(const char *camera, synth_split p, int64_t i) {
    image im;
    const char *path =
        in_set("%s/%s/synth_%lld.png", camera, synth_split_names[p], (long long)(first_id[p] + i));
    ck_assert_msg(image_load(path, &im) == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(im.width, 32);
    ck_assert_int_eq(im.height, 32);
    return im;
}

// Every PNG decodes to the scene: the square's textured pixels within SYNTH_SQUARE_NOISE of its
// colour, the rest in the background's range; the shifted camera's pixel (r, g, b) is the
// original's (b, r, g) exactly.
START_TEST(test_pixels) {
    synth_options o = small_options();
    int on = 0;
    for (synth_split p = SYNTH_TRAIN; p < SYNTH_SPLITS; p++)
        for (int64_t i = 0; i < split_images[p]; i++) {
            synth_scene s = synth_scene_at(&o, p, i);
            image im = load_image("images", p, i), shifted = load_image("images_shifted", p, i);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++) {
                    bool inside =
                        y >= s.top && y < s.top + s.side && x >= s.left && x < s.left + s.side;
                    bool lit = inside && synth_texture_on(s.texture, 32, y - s.top, x - s.left);
                    const uint8_t *px = image_pixel(&im, x, y), *sh = image_pixel(&shifted, x, y);
                    for (int c = 0; c < 3; c++) {
                        int want = synth_colour_rgb[s.colour][c];
                        ck_assert_msg(lit ? abs(px[c] - want) <= SYNTH_SQUARE_NOISE
                                          : px[c] >= 64 && px[c] < 192,
                                      "%s image %lld (%d, %d) channel %d: %d (%s)",
                                      synth_split_names[p], (long long)i, x, y, c, px[c],
                                      lit ? "square" : "background");
                        ck_assert_msg(sh[(c + 1) % 3] == px[c],
                                      "%s image %lld (%d, %d): shifted channel %d is %d, the "
                                      "original's channel %d is %d",
                                      synth_split_names[p], (long long)i, x, y, (c + 1) % 3,
                                      sh[(c + 1) % 3], c, px[c]);
                    }
                    on += lit;
                }
            image_free(&im);
            image_free(&shifted);
        }
    ck_assert_int_gt(on, 44 * 16); // every square lights pixels
}
END_TEST

// ---- determinism ----

static bool same_file(const char *a, const char *b) {
    char *da, *db;
    size_t la, lb;
    ck_assert_msg(buffer_read_file(a, &da, &la) == PETAL_OK, "%s", petal_error_message());
    ck_assert_msg(buffer_read_file(b, &db, &lb) == PETAL_OK, "%s", petal_error_message());
    bool same = la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

// Compares every file under a with the same path under b; returns how many there are.
static int compare_trees(const char *a, const char *b) {
    DIR *d = opendir(a);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char pa[512], pb[512];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        struct stat sb;
        ck_assert_int_eq(stat(pa, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            n += compare_trees(pa, pb);
        } else {
            ck_assert_msg(same_file(pa, pb), "%s and %s differ", pa, pb);
            n++;
        }
    }
    closedir(d);
    return n;
}

START_TEST(test_deterministic) {
    synth_options o = small_options();
    const char *again = test_dir_path("again");
    ck_assert_int_eq(synth_write(again, &o, NULL), PETAL_OK);
    // the PNGs; captions, ground truth, VQA, the answer list; vocab.txt, README.txt
    int files = 2 * (TRAIN + VAL + TEST) + 3 + 2 + 3 + 1 + 1 + 1;
    ck_assert_int_eq(compare_trees(set_dir, again), files);
    ck_assert_int_eq(compare_trees(again, set_dir), files);
    // another seed changes the scenes; another train size leaves val's and test's alone
    o.seed = 8;
    o.train_images = TRAIN + 1;
    const char *other = test_dir_path("other");
    ck_assert_int_eq(synth_write(other, &o, NULL), PETAL_OK);
    ck_assert(!same_file(in_set("images/train/synth_0.png"), test_dir_path("other/images/train/"
                                                                           "synth_0.png")));
    o.seed = 7;
    const char *longer = test_dir_path("longer");
    ck_assert_int_eq(synth_write(longer, &o, NULL), PETAL_OK);
    char path[64];
    snprintf(path, sizeof path, "longer/images_shifted/test/synth_%d.png", TRAIN + VAL + 1);
    ck_assert(
        same_file(in_set("images_shifted/test/synth_%d.png", TRAIN + VAL), test_dir_path(path)));
}
END_TEST

// ---- errors ----

static bool fails_with(petal_status got, petal_status want, const char *part1, const char *part2) {
    const char *msg = petal_error_message();
    bool ok = got == want && strstr(msg, part1) && strstr(msg, part2);
    if (!ok)
        fprintf(stderr, "status %s, message \"%s\"; want %s and \"%s\", \"%s\"\n",
                petal_status_name(got), msg, petal_status_name(want), part1, part2);
    return ok;
}

START_TEST(test_errors) {
    synth_options o = small_options();
    ck_assert(fails_with(synth_write(set_dir, &o, NULL), PETAL_ERR_ARG, set_dir,
                         "exists and is not empty"));
    // force: the set's files are rewritten, other files stay
    FILE *f = fopen(in_set("notes.txt"), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(remove(in_set("annotations/vqa_val.json")), 0);
    o.force = true;
    ck_assert_int_eq(synth_write(set_dir, &o, NULL), PETAL_OK);
    struct stat sb;
    ck_assert_int_eq(stat(in_set("notes.txt"), &sb), 0);
    ck_assert_int_eq(stat(in_set("annotations/vqa_val.json"), &sb), 0);

    ck_assert(fails_with(synth_write(in_set("notes.txt"), &o, NULL), PETAL_ERR_IO, "notes.txt",
                         "Not a directory"));
    ck_assert(fails_with(synth_write(in_set("notes.txt/set"), &o, NULL), PETAL_ERR_IO,
                         "notes.txt/set", "Not a directory"));
    // a file where the set wants a directory
    const char *blocked = test_dir_path("blocked");
    ck_assert_int_eq(mkdir(blocked, 0777), 0);
    f = fopen(test_dir_path("blocked/annotations"), "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert(fails_with(synth_write(blocked, &o, NULL), PETAL_ERR_IO, "blocked/annotations",
                         "cannot create the directory"));

    o = small_options();
    o.image_size = 8;
    ck_assert(fails_with(synth_write(test_dir_path("small"), &o, NULL), PETAL_ERR_ARG,
                         "synth_options.image_size: expected 16 to 1024, found 8", ""));
    o = small_options();
    o.val_images = 0;
    ck_assert(fails_with(synth_write(test_dir_path("empty"), &o, NULL), PETAL_ERR_ARG,
                         "synth_options.val_images: expected 1 to 1000000, found 0", ""));
    ck_assert_int_ne(stat(test_dir_path("empty"), &sb), 0); // nothing written
    o = small_options();
    ck_assert(fails_with(synth_write("", &o, NULL), PETAL_ERR_ARG, "expected a directory", ""));
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_synth");
    TCase *tc = tcase_with_timeout("synth", 20);
    tcase_add_checked_fixture(tc, write_set, test_dir_remove);
    tcase_add_test(tc, test_train_captions);
    tcase_add_test(tc, test_eval_captions);
    tcase_add_test(tc, test_vqa_files);
    tcase_add_test(tc, test_vocab);
    tcase_add_test(tc, test_files_describe_scenes);
    tcase_add_test(tc, test_held_out);
    tcase_add_test(tc, test_pixels);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
