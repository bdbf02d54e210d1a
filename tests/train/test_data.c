// train/data.c: every split kind becomes samples with resolved image paths, the texts BLIP feeds
// the model, image ids and the entry each sample came from; reader errors pass through.
#include <stdio.h>
#include <string.h>

#include "tests/test_util.h"
#include "train/data.h"

static void load_ok(const train_data_options *o, train_data *d) {
    petal_status st = train_data_load(o, d);
    ck_assert_msg(st == PETAL_OK, "train_data_load: %s", petal_error_message());
}

static void assert_sample(const train_data *d, int64_t i, const char *image, const char *source,
                          int64_t entry, const char *text, int64_t image_id) {
    const train_sample *s = &d->samples[i];
    ck_assert_str_eq(s->image, image);
    ck_assert_str_eq(s->source, source);
    ck_assert_int_eq(s->entry, entry);
    if (text)
        ck_assert_str_eq(s->text, text);
    else
        ck_assert_ptr_null(s->text);
    ck_assert_int_eq(s->image_id, image_id);
}

static const char *pairs_json =
    "[{\"image\": \"train/a.png\", \"caption\": \"A Red  square!\", \"image_id\": \"x\"},\n"
    " {\"image\": \"/abs/b.png\", \"caption\": \"a blue circle\", \"image_id\": 5},\n"
    " {\"image\": \"train/a.png\", \"caption\": \"the red box\", \"image_id\": \"x\"}]";

START_TEST(test_pairs_for_retrieval_and_caption) {
    const char *path = test_dir_write("pairs_train.json", pairs_json);
    train_data_options o = {.task = TRAIN_TASK_RETRIEVAL,
                            .train = true,
                            .ann_files = &path,
                            .n_ann_files = 1,
                            .image_root = "/data/coco/",
                            .max_words = 30};
    train_data d;
    load_ok(&o, &d);
    ck_assert_int_eq(d.n, 3);
    ck_assert_int_eq(d.pairs->n_images, 2);
    // pre_caption: lower case, punctuation gone, spaces collapsed; captions of one image share
    // its image_index; an absolute path ignores the root.
    assert_sample(&d, 0, "/data/coco/train/a.png", "pairs_train.json", 0, "a red square", 0);
    assert_sample(&d, 1, "/abs/b.png", "pairs_train.json", 1, "a blue circle", 1);
    assert_sample(&d, 2, "/data/coco/train/a.png", "pairs_train.json", 2, "the red box", 0);
    ck_assert_str_eq(d.samples[0].ann_image, "train/a.png");
    ck_assert_ptr_null(d.samples[0].vqa);
    train_data_free(&d);

    o.task = TRAIN_TASK_CAPTION;
    o.prompt = "a picture of ";
    o.image_root = "imgs"; // no trailing slash: one is added
    load_ok(&o, &d);
    assert_sample(&d, 1, "/abs/b.png", "pairs_train.json", 1, "a picture of a blue circle", 1);
    assert_sample(&d, 2, "imgs/train/a.png", "pairs_train.json", 2, "a picture of the red box", 0);
    train_data_free(&d);
    ck_assert_ptr_null(d.samples);
}
END_TEST

START_TEST(test_retrieval_and_caption_evaluation) {
    const char *path = test_dir_write(
        "coco_karpathy_test.json",
        "[{\"image\": \"val/COCO_val2014_000000391895.jpg\", \"caption\": [\"One.\", \"Two\"]},\n"
        " {\"image\": \"val/COCO_val2014_000000000042.jpg\", \"caption\": [\"Three\"]}]");
    train_data_options o = {.task = TRAIN_TASK_PRETRAIN,
                            .ann_files = &path,
                            .n_ann_files = 1,
                            .image_root = "/r",
                            .max_words = 30};
    train_data d;
    load_ok(&o, &d);
    // Retrieval evaluation iterates over images; the captions stay in d.retrieval.
    ck_assert_int_eq(d.n, 2);
    assert_sample(&d, 0, "/r/val/COCO_val2014_000000391895.jpg", "coco_karpathy_test.json", 0, NULL,
                  0);
    assert_sample(&d, 1, "/r/val/COCO_val2014_000000000042.jpg", "coco_karpathy_test.json", 1, NULL,
                  1);
    ck_assert_int_eq(d.retrieval->n_texts, 3);
    ck_assert_str_eq(d.retrieval->texts[2], "three");
    ck_assert_int_eq(d.retrieval->text_image[2], 1);
    train_data_free(&d);

    o.task = TRAIN_TASK_CAPTION; // image ids parsed from the COCO file names
    load_ok(&o, &d);
    ck_assert_ptr_null(d.retrieval);
    assert_sample(&d, 0, "/r/val/COCO_val2014_000000391895.jpg", "coco_karpathy_test.json", 0, NULL,
                  391895);
    assert_sample(&d, 1, "/r/val/COCO_val2014_000000000042.jpg", "coco_karpathy_test.json", 1, NULL,
                  42);
    train_data_free(&d);
}
END_TEST

static const char *vqa_json =
    "[{\"question_id\": 7, \"question\": \"What color is it?\", \"answer\": [\"red\", \"blue\", "
    "\"red\", \"red\"], \"image\": \"train/q.jpg\", \"dataset\": \"vqa\"}]";
// No question ids here; a "vg" entry's one answer has weight 0.2 and its image the VG root.
static const char *vg_json =
    "[{\"question\": \"Where?\", \"answer\": [\"left\"], \"image\": \"q.jpg\", "
    "\"dataset\": \"vqa\"},"
    " {\"question\": \"Is it big\", \"answer\": \"yes\", \"image\": \"vg/1.jpg\", "
    "\"dataset\": \"vg\"}]";

START_TEST(test_vqa_training_reads_every_file) {
    const char *files[] = {test_dir_write("vqa_train.json", vqa_json),
                           test_dir_write("vg_qa.json", vg_json)};
    const char *answer_list = test_dir_write("answer_list.json", "[\"red\", \"left\", \"yes\"]");
    train_data_options o = {.task = TRAIN_TASK_VQA,
                            .train = true,
                            .ann_files = files,
                            .n_ann_files = 2,
                            .answer_list = answer_list,
                            .image_root = "/coco",
                            .vg_root = "/vg"};
    train_data d;
    load_ok(&o, &d);
    ck_assert_int_eq(d.n, 3);
    assert_sample(&d, 0, "/coco/train/q.jpg", "vqa_train.json", 0, "what color is it?", -1);
    assert_sample(&d, 1, "/coco/q.jpg", "vg_qa.json", 0, "where?", -1);
    assert_sample(&d, 2, "/vg/vg/1.jpg", "vg_qa.json", 1, "is it big", -1);
    const ann_vqa *q = d.samples[0].vqa;
    ck_assert_int_eq(q->question_id, 7);
    ck_assert_int_eq(q->n_answers, 2); // distinct answers, weights count / len
    ck_assert_str_eq(q->answers[0], "red");
    ck_assert_double_eq_tol(q->weights[0], 0.75, 1e-15);
    ck_assert_double_eq_tol(q->weights[1], 0.25, 1e-15);
    ck_assert_double_eq_tol(d.samples[2].vqa->weights[0], 0.2, 1e-15);
    ck_assert_int_eq(d.samples[1].vqa->question_id, -1);
    ck_assert_int_eq(d.answer_list->n, 3);
    train_data_free(&d);
}
END_TEST

START_TEST(test_vqa_evaluation_with_and_without_answers) {
    const char *path = test_dir_write("vqa_val.json", vqa_json);
    train_data_options o = {
        .task = TRAIN_TASK_VQA, .ann_files = &path, .n_ann_files = 1, .image_root = "/coco"};
    train_data d;
    load_ok(&o, &d);
    ck_assert_int_eq(d.samples[0].vqa->question_id, 7);
    ck_assert_int_eq(d.samples[0].vqa->n_answers, 0); // a test split: answers ignored
    ck_assert_ptr_null(d.answer_list);
    train_data_free(&d);
    o.vqa_answers = true;
    load_ok(&o, &d);
    ck_assert_int_eq(d.samples[0].vqa->question_id, 7);
    ck_assert_int_eq(d.samples[0].vqa->n_answers, 2);
    train_data_free(&d);
}
END_TEST

START_TEST(test_reader_errors_pass_through) {
    const char *missing = test_dir_path("nope/coco_karpathy_train.json");
    train_data_options o = {.task = TRAIN_TASK_RETRIEVAL,
                            .train = true,
                            .ann_files = &missing,
                            .n_ann_files = 1,
                            .max_words = 30};
    train_data d;
    ck_assert_int_eq(train_data_load(&o, &d), PETAL_ERR_IO);
    ck_assert_msg(strstr(petal_error_message(), missing), "%s", petal_error_message());
    ck_assert_ptr_null(d.samples);

    const char *bad =
        test_dir_write("bad.json", "[{\"image\": \"a.png\", \"caption\": 3, \"image_id\": 1}]");
    o.ann_files = &bad;
    ck_assert_int_eq(train_data_load(&o, &d), PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), "bad.json") &&
                      strstr(petal_error_message(), "caption"),
                  "%s", petal_error_message());

    // The second VQA file fails: the first one's set is freed with it (LSan checks).
    const char *files[] = {test_dir_write("vqa_train.json", vqa_json), bad};
    o = (train_data_options){
        .task = TRAIN_TASK_VQA, .train = true, .ann_files = files, .n_ann_files = 2};
    ck_assert_int_ne(train_data_load(&o, &d), PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), "bad.json"), "%s", petal_error_message());
    ck_assert_int_eq(d.n, 0);

    o.task = TRAIN_TASK_CAPTION;
    ck_assert_int_eq(train_data_load(&o, &d), PETAL_ERR_ARG);
    ck_assert_msg(strstr(petal_error_message(), "one annotation file"), "%s",
                  petal_error_message());
    o.n_ann_files = 0;
    ck_assert_int_eq(train_data_load(&o, &d), PETAL_ERR_ARG);
    ck_assert_msg(strstr(petal_error_message(), "no annotation file"), "%s", petal_error_message());
}
END_TEST

START_TEST(test_text_options_are_blips) {
    tokenizer_options r = train_data_text_options(TRAIN_TASK_RETRIEVAL),
                      p = train_data_text_options(TRAIN_TASK_PRETRAIN),
                      c = train_data_text_options(TRAIN_TASK_CAPTION),
                      q = train_data_text_options(TRAIN_TASK_VQA), a = train_data_answer_options();
    ck_assert(r.max_length == 35 && r.padding == TOKENIZER_PAD_MAX_LENGTH);
    ck_assert(p.max_length == 30 && p.padding == TOKENIZER_PAD_MAX_LENGTH);
    ck_assert(c.max_length == 40 && c.padding == TOKENIZER_PAD_LONGEST);
    ck_assert(q.max_length == 35 && q.padding == TOKENIZER_PAD_LONGEST);
    ck_assert(a.max_length == 0 && a.padding == TOKENIZER_PAD_LONGEST);
    tokenizer_options all[] = {r, p, c, q, a};
    for (int k = 0; k < 5; k++) ck_assert_int_eq(all[k].first, TOKENIZER_FIRST_CLS);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("data");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_pairs_for_retrieval_and_caption);
    tcase_add_test(tc, test_retrieval_and_caption_evaluation);
    tcase_add_test(tc, test_vqa_training_reads_every_file);
    tcase_add_test(tc, test_vqa_evaluation_with_and_without_answers);
    tcase_add_test(tc, test_reader_errors_pass_through);
    tcase_add_test(tc, test_text_options_are_blips);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
