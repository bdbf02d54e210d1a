// petal data synth --video and petal frames end to end: the generated set's files and formats,
// that its captions tell the truth about the motion, that it is byte-identical for a seed, and
// that the PNG files of petal frames are the frames io/video.h decodes, resized. In a build
// without FFmpeg both commands must fail saying so.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "io/json.h"
#include "io/video.h"
#include "tests/tools/cli_run.h"
#include "train/synth.h"
#include "train/synth_video.h"

static const char *synth_args(const char *dir, const char *seed) {
    char *out = run_ok(ARGS("data", "synth", "--video", dir, "--seed", seed, "--train-videos", "4",
                            "--val-videos", "2", "--test-videos", "3", "--frames", "12"));
    ck_assert_msg(strstr(out, "wrote the synthetic video set to"), "%s", out);
    ck_assert_msg(strstr(out, "test          3         6          6"), "%s", out);
    free(out);
    return dir;
}

static json_value *parse_ok(const char *path) {
    json_value *j;
    ck_assert_msg(json_parse_file(path, &j) == PETAL_OK, "%s", petal_error_message());
    return j;
}

static const char *string_of(const json_value *entry, const char *key) {
    const json_value *v = json_get(entry, key);
    ck_assert_msg(v && v->type == JSON_STRING, "no string '%s'", key);
    return v->string.chars;
}

// Where the square is in an RGB frame: the mean position of the pixels within 40 levels of its
// colour in every channel (the background's channels are all in [64, 192), and each colour has
// a channel at 40 or at 230 and above).
static void square_centre(const image *im, int colour, double *x, double *y) {
    double sx = 0, sy = 0, n = 0;
    for (int r = 0; r < im->height; r++)
        for (int c = 0; c < im->width; c++) {
            const uint8_t *p = image_pixel(im, c, r);
            bool near = true;
            for (int k = 0; k < 3; k++) near &= abs((int)p[k] - synth_colour_rgb[colour][k]) <= 40;
            sx += near ? c : 0;
            sy += near ? r : 0;
            n += near;
        }
    ck_assert_double_gt(n, 0);
    *x = sx / n;
    *y = sy / n;
}

static int word_index(const char *const *words, int n, const char *word) {
    for (int i = 0; i < n; i++)
        if (strcmp(words[i], word) == 0) return i;
    ck_abort_msg("unknown word '%s'", word);
    return -1;
}

// The first and last frames of a clip show the square where its QA answers say: its colour, and
// moved by more than a third of the frame in the answered direction.
static void check_clip_motion(const char *dir, const json_value *colour_q,
                              const json_value *motion_q) {
    char path[512];
    snprintf(path, sizeof path, "%s/videos/%s", dir, string_of(colour_q, "video"));
    ck_assert_str_eq(string_of(colour_q, "video"), string_of(motion_q, "video"));
    int colour = word_index(synth_colour_words, SYNTH_COLOURS, string_of(colour_q, "answer"));
    int motion =
        word_index(synth_video_motion_words, SYNTH_VIDEO_MOTIONS, string_of(motion_q, "answer"));
    video_file *v;
    ck_assert_msg(video_open(path, &v) == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(video_get_info(v).frames, 12);
    video_clip c;
    ck_assert_int_eq(video_read_clip(v, (const int64_t[]){0, 11}, 2, &c), PETAL_OK);
    double x0, y0, x1, y1;
    square_centre(&c.frames[0], colour, &x0, &y0);
    square_centre(&c.frames[1], colour, &x1, &y1);
    const double dx[] = {-1, 1, 0, 0}, dy[] = {0, 0, -1, 1};
    double along = (x1 - x0) * dx[motion] + (y1 - y0) * dy[motion];
    ck_assert_msg(along > 32.0 / 3, "%s: the square moved %.1f px %s", path, along,
                  synth_video_motion_words[motion]);
    video_clip_free(&c);
    video_close(v);
}

START_TEST(test_synth_video_set) {
    if (!video_available()) return;
    const char *dir = synth_args(test_dir_path("set"), "0");
    char path[512];
    snprintf(path, sizeof path, "%s/annotations/msrvtt_train.json", dir);
    json_value *train = parse_ok(path);
    ck_assert_uint_eq(json_len(train), 4 * SYNTH_VIDEO_CAPTIONS);
    ck_assert_str_eq(string_of(json_at(train, 0), "video"), "train/video_0.mp4");
    ck_assert_ptr_nonnull(strstr(string_of(json_at(train, 0), "caption"), "square"));
    json_free(train);
    snprintf(path, sizeof path, "%s/annotations/msrvtt_test.json", dir);
    json_value *test = parse_ok(path);
    ck_assert_uint_eq(json_len(test), 3);
    ck_assert_str_eq(string_of(json_at(test, 0), "video"), "test/video_6.mp4");
    ck_assert_uint_eq(json_len(json_get(json_at(test, 0), "caption")), SYNTH_VIDEO_CAPTIONS);
    json_free(test);
    snprintf(path, sizeof path, "%s/annotations/msrvtt_qa_test.json", dir);
    json_value *qa = parse_ok(path);
    ck_assert_uint_eq(json_len(qa), 3 * SYNTH_VIDEO_QUESTIONS);
    ck_assert_int_eq(json_get(json_at(qa, 0), "question_id")->number.exact, 12);
    for (size_t i = 0; i < json_len(qa); i += 2)
        check_clip_motion(dir, json_at(qa, i), json_at(qa, i + 1));
    json_free(qa);
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    char *vocab = slurp(path);
    ck_assert_msg(strncmp(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", 30) == 0 &&
                      strstr(vocab, "\nleft\n") && strstr(vocab, "\nmoving\n"),
                  "%s", vocab);
    free(vocab);
}
END_TEST

static bool same_file(const char *a, const char *b) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

START_TEST(test_synth_video_is_deterministic) {
    if (!video_available()) return;
    const char *a = synth_args(test_dir_path("a"), "5"), *b = synth_args(test_dir_path("b"), "5");
    const char *c = synth_args(test_dir_path("c"), "6");
    const char *files[] = {"videos/train/video_0.mp4", "videos/test/video_8.mp4",
                           "annotations/msrvtt_train.json", "annotations/msrvtt_qa_val.json",
                           "vocab.txt"};
    char pa[512], pb[512], pc[512];
    for (int i = 0; i < 5; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        ck_assert_msg(same_file(pa, pb), "%s differs between two runs with seed 5", files[i]);
    }
    snprintf(pa, sizeof pa, "%s/videos/train/video_0.mp4", a);
    snprintf(pc, sizeof pc, "%s/videos/train/video_0.mp4", c);
    ck_assert_msg(!same_file(pa, pc), "seeds 5 and 6 made the same first clip");
    run_result r = run_petal(ARGS("data", "synth", "--video", a));
    ck_assert_msg(r.status == 1 && strstr(r.err, "is not empty"), "exit %d: %s", r.status, r.err);
    run_result_free(&r);
}
END_TEST

// petal frames writes what io/video.h decodes, resized with image_resize, and prints each frame.
START_TEST(test_frames_writes_the_sampled_frames) {
    if (!video_available()) return;
    const char *dir = synth_args(test_dir_path("set"), "1"), *out = test_dir_path("frames");
    char clip[512];
    snprintf(clip, sizeof clip, "%s/videos/val/video_4.mp4", dir);
    char *printed = run_ok(ARGS("frames", clip, "--frames", "4", "--size", "24", "--train",
                                "--seed", "9", "--out", out));
    video_sampling s = {.frames = 4, .size = 24, .train = true, .seed = 9};
    int64_t positions[4];
    video_sample_positions(12, &s, positions);
    video_file *v;
    ck_assert_int_eq(video_open(clip, &v), PETAL_OK);
    video_clip c;
    ck_assert_int_eq(video_read_clip(v, positions, 4, &c), PETAL_OK);
    for (int i = 0; i < 4; i++) {
        char line[64], png[600];
        snprintf(line, sizeof line, "frame_%02d.png  index %5lld", i, (long long)positions[i]);
        ck_assert_msg(strstr(printed, line), "no '%s' in:\n%s", line, printed);
        snprintf(png, sizeof png, "%s/frame_%02d.png", out, i);
        image got, want;
        ck_assert_int_eq(image_load(png, &got), PETAL_OK);
        image_resize(&c.frames[i], 24, 24, &want);
        ck_assert_mem_eq(got.data, want.data, 24 * 24 * 3);
        image_free(&got);
        image_free(&want);
    }
    video_clip_free(&c);
    video_close(v);
    free(printed);
}
END_TEST

START_TEST(test_frames_errors) {
    run_result r = run_petal(
        ARGS("frames", test_dir_path("none.mp4"), "--frames", "2", "--out", test_dir_path("o")));
    const char *why = video_available() ? "No such file" : "built without FFmpeg";
    ck_assert_msg(r.status == 1 && strstr(r.err, "none.mp4") && strstr(r.err, why), "exit %d: %s",
                  r.status, r.err);
    run_result_free(&r);
    r = run_petal(ARGS("frames", "x.mp4", "--out", test_dir_path("o")));
    ck_assert_msg(r.status == 2 && strstr(r.err, "--frames and --out are required"), "exit %d: %s",
                  r.status, r.err);
    run_result_free(&r);
    r = run_petal(ARGS("frames", "x.mp4", "--frames", "0", "--out", test_dir_path("o")));
    ck_assert_msg(r.status == 2 && strstr(r.err, "--frames expects an integer from 1"),
                  "exit %d: %s", r.status, r.err);
    run_result_free(&r);
    if (video_available()) return;
    r = run_petal(ARGS("data", "synth", "--video", test_dir_path("v")));
    ck_assert_msg(r.status == 1 && strstr(r.err, "built without FFmpeg"), "exit %d: %s", r.status,
                  r.err);
    run_result_free(&r);
}
END_TEST

// A tiny BLIP built from arch and trained on the generated clips through the trainer: video
// retrieval with Aurora's frame-aware attention and VideoQA, each for 4 steps, then evaluated.
static const char *const video_config =
    "task: %s\n"
    "media: video\n"
    "data_root: %s\n"
    "image_root: videos\n"
    "ann_root: annotations\n"
    "train_file: %s_train.json\n"
    "val_file: %s_val.json\n"
    "test_file: %s_test.json\n"
    "vocab: vocab.txt\n"
    "image_size: 32\n"
    "num_frames: 3\n"
    "num_frames_test: 5\n"
    "frame_aware_attention: true\n"
    "video_chunk: 4\n"
    "arch: {patch: 8, vision_width: 32, vision_depth: 1, vision_heads: 2, vision_mlp: 64,\n"
    "       text_hidden: 32, text_layers: 1, text_heads: 2, text_intermediate: 64,\n"
    "       max_positions: 40, embed_dim: 16}\n"
    "petl: {methods: aurora, variant: paper, rank: 4}\n"
    "batch_size_train: 4\n"
    "batch_size_test: 4\n"
    "init_lr: 1.0e-3\n"
    "max_steps: 4\n"
    "queue_size: 8\n"
    "k_test: 3\n"
    "log_every: 1\n"
    "eval_every: 0\n"
    "threads: 1\n"
    "num_workers: 2\n";

static char *train_video(const char *data, const char *task, const char *files) {
    char text[4096], name[64], out[64];
    snprintf(text, sizeof text, video_config, task, data, files, files, files);
    snprintf(name, sizeof name, "%s.yaml", task);
    snprintf(out, sizeof out, "run_%s", task);
    const char *config = test_dir_write(name, text);
    return run_ok(ARGS("train", config, "--out", test_dir_path(out)));
}

START_TEST(test_train_on_videos) {
    if (!video_available()) return;
    const char *data = synth_args(test_dir_path("set"), "0");
    char *out = train_video(data, "retrieval", "msrvtt");
    ck_assert_msg(strstr(out, "step     4/4") && strstr(out, "\"txt_r1\"") &&
                      strstr(out, "\"img_mdr\""),
                  "%s", out);
    free(out);
    out = train_video(data, "vqa", "msrvtt_qa");
    ck_assert_msg(strstr(out, "step     4/4") && strstr(out, "\"qa_acc\""), "%s", out);
    free(out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("video_cli");
    TCase *tc = tcase_with_timeout("video_cli", 60);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_synth_video_set);
    tcase_add_test(tc, test_synth_video_is_deterministic);
    tcase_add_test(tc, test_frames_writes_the_sampled_frames);
    tcase_add_test(tc, test_frames_errors);
    tcase_add_test(tc, test_train_on_videos);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
