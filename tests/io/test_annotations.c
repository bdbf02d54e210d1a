// io/annotations: BLIP's annotation formats read as BLIP's datasets read them (fixtures and the
// expected results from tools/make_annotation_fixtures.py), and errors that name the file, the
// entry and the field.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/annotations.h"
#include "io/json.h"
#include "io/text.h"
#include "tests/test_util.h"

#define DATA PETAL_TEST_DATA "/annotations/"

static json_value *expected_root;

static void load_expected(void) {
    ck_assert_msg(json_parse_file(DATA "expected.json", &expected_root) == PETAL_OK, "%s",
                  petal_error_message());
}

static void free_expected(void) {
    json_free(expected_root);
}

static const json_value *expected(const char *key) {
    return json_get(expected_root, key);
}

static const char *text_of(const json_value *v) {
    const char *s;
    ck_assert_msg(json_as_string(v, &s, NULL) == PETAL_OK, "%s", petal_error_message());
    return s;
}

static int64_t int_of(const json_value *v) {
    int64_t x;
    ck_assert_msg(json_as_int(v, &x) == PETAL_OK, "%s", petal_error_message());
    return x;
}

static void check_strings(char *const *got, int64_t n, const json_value *want) {
    ck_assert_int_eq(n, (int64_t)json_len(want));
    for (int64_t i = 0; i < n; i++) ck_assert_str_eq(got[i], text_of(json_at(want, (size_t)i)));
}

static void check_train(const ann_train_set *s, const json_value *want) {
    ck_assert_int_eq(s->n, (int64_t)json_len(want));
    int64_t images = 0;
    for (int64_t i = 0; i < s->n; i++) {
        const json_value *w = json_at(want, (size_t)i);
        ck_assert_str_eq(s->items[i].image, text_of(json_get(w, "image")));
        ck_assert_str_eq(s->items[i].caption, text_of(json_get(w, "caption")));
        ck_assert_int_eq(s->items[i].image_index, int_of(json_get(w, "image_index")));
        if (s->items[i].image_index >= images) images = s->items[i].image_index + 1;
    }
    ck_assert_int_eq(s->n_images, images);
}

START_TEST(test_train) {
    ann_train_set *s;
    ck_assert_int_eq(ann_load_train(DATA "retrieval_train.json", TEXT_DATASET_MAX_WORDS, "", &s),
                     PETAL_OK);
    check_train(s, expected("retrieval_train"));
    ck_assert_int_eq(s->n_images, 5); // "coco_184613", 9 and "9", 1 and 1.0, "1"
    ann_train_free(s);
    ck_assert_int_eq(
        ann_load_train(DATA "retrieval_train.json", TEXT_DATASET_MAX_WORDS, "a picture of ", &s),
        PETAL_OK);
    check_train(s, expected("caption_train"));
    ann_train_free(s);
}
END_TEST

START_TEST(test_retrieval_eval) {
    ann_retrieval_set *s;
    ck_assert_int_eq(ann_load_retrieval(DATA "retrieval_test.json", TEXT_DATASET_MAX_WORDS, &s),
                     PETAL_OK);
    const json_value *want = expected("retrieval_test");
    check_strings(s->images, s->n_images, json_get(want, "images"));
    check_strings(s->texts, s->n_texts, json_get(want, "texts"));
    for (int64_t i = 0; i < s->n_images; i++) {
        const json_value *mine = json_at(json_get(want, "image_texts"), (size_t)i);
        ck_assert_int_eq(s->image_texts[i + 1] - s->image_texts[i], (int64_t)json_len(mine));
        for (size_t k = 0; k < json_len(mine); k++)
            ck_assert_int_eq(s->image_texts[i] + (int64_t)k, int_of(json_at(mine, k)));
    }
    for (int64_t t = 0; t < s->n_texts; t++)
        ck_assert_int_eq(s->text_image[t],
                         int_of(json_at(json_get(want, "text_image"), (size_t)t)));
    ann_retrieval_free(s);

    ann_image_set *images;
    ck_assert_int_eq(ann_load_caption_eval(DATA "retrieval_test.json", &images), PETAL_OK);
    const json_value *ids = expected("caption_eval");
    ck_assert_int_eq(images->n, (int64_t)json_len(ids));
    for (int64_t i = 0; i < images->n; i++)
        ck_assert_int_eq(images->image_ids[i], int_of(json_at(ids, (size_t)i)));
    ck_assert_str_eq(images->images[0], "val2014/COCO_val2014_000000391895.jpg");
    ann_image_set_free(images);
}
END_TEST

static void check_vqa(const ann_vqa_set *s, const json_value *want, bool train) {
    ck_assert_int_eq(s->n, (int64_t)json_len(want));
    for (int64_t i = 0; i < s->n; i++) {
        const ann_vqa *q = &s->items[i];
        const json_value *w = json_at(want, (size_t)i);
        ck_assert_str_eq(q->image, text_of(json_get(w, "image")));
        ck_assert_str_eq(q->dataset == ANN_DATASET_VG ? "vg" : "vqa",
                         text_of(json_get(w, "dataset")));
        ck_assert_str_eq(q->question, text_of(json_get(w, "question")));
        ck_assert_int_eq(q->question_id, int_of(json_get(w, "question_id")));
        if (!train) {
            ck_assert_int_eq(q->n_answers, 0);
            continue;
        }
        const json_value *answers = json_get(w, "answers"), *weights = json_get(w, "weights");
        ck_assert_int_eq(q->n_answers, (int)json_len(answers));
        for (int k = 0; k < q->n_answers; k++) {
            ck_assert_str_eq(q->answers[k], text_of(json_at(answers, (size_t)k)));
            ck_assert_msg(q->weights[k] == json_at(weights, (size_t)k)->number.value,
                          "entry %lld answer %d: weight %.17g, want %.17g", (long long)i, k,
                          q->weights[k], json_at(weights, (size_t)k)->number.value);
        }
    }
}

START_TEST(test_vqa) {
    const char *train[] = {DATA "vqa_train.json", DATA "vg_qa.json"};
    ann_vqa_set *s;
    ck_assert_int_eq(ann_load_vqa(train, 2, ANN_VQA_TRAIN, &s), PETAL_OK);
    check_vqa(s, expected("vqa_train"), true);
    ck_assert(s->items[1].weights[0] != 0.9); // summed one 0.1 at a time, as BLIP does
    ann_vqa_free(s);
    const char *test[] = {DATA "vqa_test.json"};
    ck_assert_int_eq(ann_load_vqa(test, 1, ANN_VQA_TEST, &s), PETAL_OK);
    check_vqa(s, expected("vqa_test"), false);
    ann_vqa_free(s);

    ann_strings *answers;
    ck_assert_int_eq(ann_load_answer_list(DATA "answer_list.json", &answers), PETAL_OK);
    check_strings(answers->items, answers->n, expected("answer_list"));
    ann_strings_free(answers);
}
END_TEST

static char tmp[64];

// content in a new file under /tmp whose name ends with suffix ("" or ".jsonl": JSON Lines).
static const char *write_tmp_as(const char *content, const char *suffix) {
    snprintf(tmp, sizeof tmp, "/tmp/petal-ann-XXXXXX%s", suffix);
    int fd = mkstemps(tmp, (int)strlen(suffix));
    ck_assert(fd >= 0);
    ck_assert(write(fd, content, strlen(content)) == (ssize_t)strlen(content));
    close(fd);
    return tmp;
}

static const char *write_tmp(const char *content) {
    return write_tmp_as(content, "");
}

static const char *write_tmp_jsonl(const char *content) {
    return write_tmp_as(content, ".jsonl");
}

// The message is "<tmp path>: <rest>".
static bool fails_with(petal_status got, petal_status want, const char *rest) {
    const char *msg = petal_error_message();
    bool ok = got == want && strncmp(msg, tmp, strlen(tmp)) == 0 && strstr(msg, rest);
    if (!ok)
        fprintf(stderr, "status %s, message \"%s\"; want %s and \"%s: ...%s\"\n",
                petal_status_name(got), msg, petal_status_name(want), tmp, rest);
    unlink(tmp);
    return ok;
}

// MSR-VTT / MSRVTT-QA style entries: "video" for "image", a video its own id, one caption as a
// string in a test entry, one answer (weight 1) and no "dataset" in a QA entry.
START_TEST(test_video_sets) {
    ann_train_set *t;
    ck_assert_int_eq(ann_load_train(write_tmp("[{\"video\": \"v1.mp4\", \"caption\": \"A cat.\"},"
                                              " {\"video\": \"v2.mp4\", \"caption\": \"dog\"},"
                                              " {\"video\": \"v1.mp4\", \"caption\": \"cat\"}]"),
                                    30, "", &t),
                     PETAL_OK);
    ck_assert_int_eq(t->n, 3);
    ck_assert_int_eq(t->n_images, 2);
    ck_assert_str_eq(t->items[1].image, "v2.mp4");
    ck_assert_str_eq(t->items[0].caption, "a cat");
    ck_assert_int_eq(t->items[2].image_index, t->items[0].image_index);
    ann_train_free(t);
    unlink(tmp);
    ann_retrieval_set *r;
    ck_assert_int_eq(ann_load_retrieval(write_tmp("[{\"video\": \"v1.mp4\", \"caption\": \"one\"},"
                                                  " {\"video\": \"v2.mp4\", \"caption\": "
                                                  "[\"two\", \"three\"]}]"),
                                        30, &r),
                     PETAL_OK);
    ck_assert_int_eq(r->n_images, 2);
    ck_assert_int_eq(r->n_texts, 3);
    ck_assert_str_eq(r->texts[0], "one");
    ck_assert_int_eq(r->text_image[2], 1);
    ann_retrieval_free(r);
    unlink(tmp);
    ann_vqa_set *q;
    const char *path = write_tmp("[{\"video\": \"v1.mp4\", \"question\": \"What colour?\", "
                                 "\"answer\": \"red\", \"question_id\": 7}]");
    ck_assert_int_eq(ann_load_vqa(&path, 1, ANN_VQA_TRAIN, &q), PETAL_OK);
    ck_assert_int_eq(q->n, 1);
    ck_assert_str_eq(q->items[0].image, "v1.mp4");
    ck_assert_int_eq(q->items[0].question_id, 7);
    ck_assert_int_eq(q->items[0].n_answers, 1);
    ck_assert_str_eq(q->items[0].answers[0], "red");
    ck_assert(q->items[0].weights[0] == 1.0);
    ann_vqa_free(q);
    unlink(tmp);
}
END_TEST

// The released Aurora code's annotations: JSON Lines naming videos by clip_name (the file is
// clip_name + ".mp4"), one caption a line; blank lines are skipped, errors keep line numbers.
START_TEST(test_jsonl_clip_names) {
    ann_train_set *t;
    ck_assert_int_eq(ann_load_train(write_tmp_jsonl("{\"clip_name\": \"video7010\", \"caption\": "
                                                    "\"A man runs.\"}\n\n"
                                                    "{\"clip_name\": \"video7011\", \"caption\": "
                                                    "\"a dog\"}\n"
                                                    "{\"clip_name\": \"video7010\", \"caption\": "
                                                    "\"a man\"}\n"),
                                    30, "", &t),
                     PETAL_OK);
    ck_assert_int_eq(t->n, 3);
    ck_assert_int_eq(t->n_images, 2);
    ck_assert_str_eq(t->items[0].image, "video7010.mp4");
    ck_assert_str_eq(t->items[1].image, "video7011.mp4");
    ck_assert_str_eq(t->items[0].caption, "a man runs");
    ck_assert_int_eq(t->items[2].image_index, t->items[0].image_index);
    ann_train_free(t);
    unlink(tmp);
    ann_retrieval_set *r;
    ck_assert_int_eq(ann_load_retrieval(write_tmp_jsonl("{\"clip_name\": \"video9770\", "
                                                        "\"caption\": \"a person is cooking\"}\n"
                                                        "{\"clip_name\": \"video9771\", "
                                                        "\"caption\": \"a car\"}"),
                                        30, &r),
                     PETAL_OK);
    ck_assert_int_eq(r->n_images, 2);
    ck_assert_int_eq(r->n_texts, 2);
    ck_assert_str_eq(r->images[1], "video9771.mp4");
    ck_assert_int_eq(r->text_image[1], 1);
    ann_retrieval_free(r);
    unlink(tmp);
    ck_assert_int_eq(ann_load_retrieval(write_tmp_jsonl("\n"), 30, &r), PETAL_OK);
    ck_assert_int_eq(r->n_images, 0);
    ann_retrieval_free(r);
    unlink(tmp);
    ann_train_set *s = (ann_train_set *)1;
    ck_assert(fails_with(ann_load_train(write_tmp_jsonl("{\"clip_name\": \"a\", \"caption\": "
                                                        "\"x\"}\n\n{\"clip_name\": 3, "
                                                        "\"caption\": \"y\"}\n"),
                                        30, "", &s),
                         PETAL_ERR_FORMAT,
                         ": [1].clip_name: expected a string, found a number (3)"));
    unlink(tmp);
    ck_assert(fails_with(ann_load_train(write_tmp_jsonl("{\"clip_name\": \"a\", \"caption\": "
                                                        "\"x\"}\n{\"clip_name\": \"b\",}\n"),
                                        30, "", &s),
                         PETAL_ERR_FORMAT, ":2:"));
    unlink(tmp);
}
END_TEST

// DiDeMo's paragraphs: a video's descriptions joined in file order, max_words counting the whole;
// one line per description and one entry with a caption list give the same evaluation set.
START_TEST(test_paragraphs) {
    ann_train_set *t;
    ck_assert_int_eq(ann_load_train(write_tmp_jsonl("{\"clip_name\": \"v1\", \"caption\": "
                                                    "\"A man runs.\"}\n"
                                                    "{\"clip_name\": \"v2\", \"caption\": "
                                                    "\"a dog\"}\n"
                                                    "{\"clip_name\": \"v1\", \"caption\": "
                                                    "\"He stops, then sits down.\"}\n"),
                                    6, "", &t),
                     PETAL_OK);
    unlink(tmp);
    ck_assert_int_eq(ann_train_paragraphs(t, 6), PETAL_OK);
    ck_assert_int_eq(t->n, 2);
    ck_assert_str_eq(t->items[0].image, "v1.mp4");
    ck_assert_str_eq(t->items[0].caption, "a man runs he stops, then"); // 6 words in all
    ck_assert_str_eq(t->items[1].image, "v2.mp4");
    ck_assert_str_eq(t->items[1].caption, "a dog");
    ck_assert_int_eq(t->items[1].image_index, 1);
    ann_train_free(t);

    ann_retrieval_set *lines, *lists;
    ck_assert_int_eq(ann_load_retrieval(write_tmp_jsonl("{\"clip_name\": \"v1\", \"caption\": "
                                                        "\"a man runs\"}\n"
                                                        "{\"clip_name\": \"v2\", \"caption\": "
                                                        "\"a dog\"}\n"
                                                        "{\"clip_name\": \"v1\", \"caption\": "
                                                        "\"he sits\"}\n"),
                                        30, &lines),
                     PETAL_OK);
    unlink(tmp);
    ck_assert_int_eq(ann_load_retrieval(
                         write_tmp_jsonl("{\"video\": \"v1.mp4\", \"caption\": [\"a man runs\", "
                                         "\"he sits\"]}\n{\"video\": \"v2.mp4\", \"caption\": []}\n"
                                         "{\"video\": \"v2.mp4\", \"caption\": [\"a dog\"]}\n"),
                         30, &lists),
                     PETAL_OK);
    unlink(tmp);
    ck_assert_int_eq(ann_retrieval_paragraphs(lines, 30), PETAL_OK);
    ck_assert_int_eq(ann_retrieval_paragraphs(lists, 30), PETAL_OK);
    ann_retrieval_set *sets[] = {lines, lists};
    for (int k = 0; k < 2; k++) {
        ann_retrieval_set *r = sets[k];
        ck_assert_int_eq(r->n_images, 2);
        ck_assert_int_eq(r->n_texts, 2);
        ck_assert_str_eq(r->images[0], "v1.mp4");
        ck_assert_str_eq(r->images[1], "v2.mp4");
        ck_assert_str_eq(r->texts[0], "a man runs he sits");
        ck_assert_str_eq(r->texts[1], "a dog");
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(r->text_image[i], i);
            ck_assert_int_eq(r->image_texts[i], i);
        }
        ck_assert_int_eq(r->image_texts[2], 2);
        ann_retrieval_free(r);
    }
}
END_TEST

START_TEST(test_train_errors) {
    ann_train_set *s = (ann_train_set *)1;
    ck_assert(fails_with(ann_load_train(write_tmp("{\"image\": 1}"), 30, "", &s), PETAL_ERR_FORMAT,
                         ": (root): expected an array, found an object"));
    ck_assert_ptr_null(s);
    ck_assert(fails_with(ann_load_train(write_tmp("[{\"image\": \"a.jpg\", \"caption\": \"x\", "
                                                  "\"image_id\": 1}, {\"image\": \"b.jpg\", "
                                                  "\"image_id\": 2}]"),
                                        30, "", &s),
                         PETAL_ERR_KEY, ": [1]: missing key \"caption\""));
    ck_assert(fails_with(ann_load_train(write_tmp("[{\"image\": \"a.jpg\", \"caption\": 3, "
                                                  "\"image_id\": 1}]"),
                                        30, "", &s),
                         PETAL_ERR_FORMAT, ": [0].caption: expected a string, found a number (3)"));
    ck_assert(fails_with(ann_load_train(write_tmp("[{\"image\": \"a.jpg\", \"caption\": \"x\", "
                                                  "\"image_id\": true}]"),
                                        30, "", &s),
                         PETAL_ERR_FORMAT,
                         ": [0].image_id: expected a string or a number, found a boolean (true)"));
    ck_assert(fails_with(ann_load_train(write_tmp("[{\"image\": \"a.jpg\", \"caption\": "
                                                  "\"a\\u0000b\", \"image_id\": 1}]"),
                                        30, "", &s),
                         PETAL_ERR_FORMAT,
                         ": [0].caption: expected text without NUL characters (\\u0000)"));
    ck_assert(fails_with(ann_load_train(write_tmp("[\"a.jpg\"]"), 30, "", &s), PETAL_ERR_FORMAT,
                         ": [0]: expected an object, found a string (\"a.jpg\")"));
    ck_assert(fails_with(ann_load_train(write_tmp("[{\"image\": \"a.jpg\",}]"), 30, "", &s),
                         PETAL_ERR_FORMAT, ":1:20 (byte 19): expected a string key after ','"));
    ck_assert_int_eq(ann_load_train("/nonexistent/train.json", 30, "", &s), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "/nonexistent/train.json"));
}
END_TEST

START_TEST(test_eval_errors) {
    ann_retrieval_set *r;
    ck_assert(fails_with(ann_load_retrieval(write_tmp("[{\"image\": \"a.jpg\", \"caption\": "
                                                      "\"one caption\"}]"),
                                            30, &r),
                         PETAL_ERR_FORMAT, ": [0].caption: expected an array, found a string"));
    ck_assert(fails_with(ann_load_retrieval(write_tmp("[{\"image\": \"a.jpg\", \"caption\": "
                                                      "[\"ok\", null]}]"),
                                            30, &r),
                         PETAL_ERR_FORMAT, ": [0].caption[1]: expected a string, found null"));
    ann_image_set *images;
    ck_assert(fails_with(ann_load_caption_eval(write_tmp("[{\"image\": \"val/x_12.jpg\"}, "
                                                         "{\"image\": \"val/x.png\"}]"),
                                               &images),
                         PETAL_ERR_FORMAT,
                         ": [1].image: expected a file name ending in _<digits>.jpg (BLIP reads "
                         "the image id from it), found a string (\"val/x.png\")"));
    ck_assert(fails_with(ann_load_caption_eval(write_tmp("[{\"image\": \"x_99999999999999999999."
                                                         "jpg\"}]"),
                                               &images),
                         PETAL_ERR_FORMAT, "expected a file name ending in _<digits>.jpg"));
    ann_strings *answers;
    ck_assert(fails_with(ann_load_answer_list(write_tmp("[\"yes\", \"no\", 2]"), &answers),
                         PETAL_ERR_FORMAT, ": [2]: expected a string, found a number (2)"));
}
END_TEST

// An entry's integer "image_id" wins over the file name, which BLIP's rule cannot parse for .png
// names; entries without one still go by the name.
START_TEST(test_caption_eval_ids) {
    ann_image_set *images;
    ck_assert_int_eq(ann_load_caption_eval(write_tmp("[{\"image\": \"val/synth_817.png\", "
                                                     "\"image_id\": 817}, {\"image\": "
                                                     "\"val2014/COCO_val2014_000000000042.jpg\"}, "
                                                     "{\"image\": \"val/x_5.jpg\", "
                                                     "\"image_id\": 9}]"),
                                           &images),
                     PETAL_OK);
    unlink(tmp);
    ck_assert_int_eq(images->n, 3);
    ck_assert_int_eq(images->image_ids[0], 817);
    ck_assert_int_eq(images->image_ids[1], 42);
    ck_assert_int_eq(images->image_ids[2], 9);
    ck_assert_str_eq(images->images[0], "val/synth_817.png");
    ann_image_set_free(images);
    ck_assert(fails_with(ann_load_caption_eval(write_tmp("[{\"image\": \"val/x_12.jpg\", "
                                                         "\"image_id\": \"coco_12\"}]"),
                                               &images),
                         PETAL_ERR_FORMAT,
                         ": [0].image_id: expected an integer (exact in 64 bits), found a string "
                         "(\"coco_12\")"));
    ck_assert(fails_with(ann_load_caption_eval(write_tmp("[{\"image\": \"val/x_12.jpg\"}, "
                                                         "{\"image\": \"val/x_13.jpg\", "
                                                         "\"image_id\": 1.5}]"),
                                               &images),
                         PETAL_ERR_FORMAT, ": [1].image_id: expected an integer"));
}
END_TEST

START_TEST(test_vqa_errors) {
    static const struct {
        const char *content;
        ann_vqa_split split;
        petal_status status;
        const char *message;
    } cases[] = {
        {"[{\"question\": \"q\", \"answer\": \"a\", \"image\": \"i.jpg\", \"dataset\": \"coco\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT,
         ": [0].dataset: expected \"vqa\" or \"vg\", found a string (\"coco\")"},
        {"[{\"question\": \"q\", \"answer\": \"yes\", \"image\": \"i.jpg\", \"dataset\": \"vqa\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT,
         ": [0].answer: expected an array, found a string (\"yes\")"},
        {"[{\"question\": \"q\", \"answer\": [], \"image\": \"i.jpg\", \"dataset\": \"vqa\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT,
         ": [0].answer: expected a non-empty array of answers, found an array"},
        {"[{\"question\": \"q\", \"answer\": [\"x\"], \"image\": \"i.jpg\", \"dataset\": \"vg\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT, ": [0].answer: expected a string, found an array"},
        {"[{\"question\": \"q\", \"image\": \"i.jpg\", \"dataset\": \"vqa\"}]", ANN_VQA_TEST,
         PETAL_ERR_KEY, ": [0]: missing key \"question_id\""},
        {"[{\"question_id\": 1.5, \"question\": \"q\", \"answer\": [\"x\"], \"image\": \"i.jpg\", "
         "\"dataset\": \"vqa\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT, ": [0].question_id: expected an integer"},
        {"[{\"question\": \"q\", \"answer\": [\"x\", 3], \"image\": \"i.jpg\", \"dataset\": "
         "\"vqa\"}]",
         ANN_VQA_TRAIN, PETAL_ERR_FORMAT, ": [0].answer[1]: expected a string, found a number (3)"},
    };
    ann_vqa_set *s = (ann_vqa_set *)1;
    const char *paths[2];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        paths[0] = write_tmp(cases[i].content);
        ck_assert_msg(fails_with(ann_load_vqa(paths, 1, cases[i].split, &s), cases[i].status,
                                 cases[i].message),
                      "case %zu", i);
        ck_assert_ptr_null(s);
    }
    // the second file is missing: nothing from the first one leaks out
    paths[0] = DATA "vqa_train.json";
    paths[1] = "/nonexistent/vg_qa.json";
    ck_assert_int_eq(ann_load_vqa(paths, 2, ANN_VQA_TRAIN, &s), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "/nonexistent/vg_qa.json"));
    ck_assert_ptr_null(s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_annotations");
    TCase *tc = tcase_with_timeout("annotations", 30);
    tcase_add_checked_fixture(tc, load_expected, free_expected);
    tcase_add_test(tc, test_train);
    tcase_add_test(tc, test_retrieval_eval);
    tcase_add_test(tc, test_vqa);
    tcase_add_test(tc, test_train_errors);
    tcase_add_test(tc, test_video_sets);
    tcase_add_test(tc, test_jsonl_clip_names);
    tcase_add_test(tc, test_paragraphs);
    tcase_add_test(tc, test_eval_errors);
    tcase_add_test(tc, test_caption_eval_ids);
    tcase_add_test(tc, test_vqa_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
