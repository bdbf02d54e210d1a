// petal itm, caption and vqa end to end: each test converts a tiny Salesforce-format .pth
// (tests/data/cli, written by tools/make_cli_fixtures.py) with `petal convert`, runs the command
// as its own process and compares what it prints with what the Salesforce BLIP code answered on
// the same image and text (expected.json): scores within 1e-4, captions and answers exactly.
// Mistakes a user can make exit with one line on stderr naming the file or option: status 2 for
// an option, 1 for a file or text that cannot be used.
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/json.h"
#include "tests/test_util.h"
#include "tests/tools/cli_run.h"

#define CLI_DATA(name) PETAL_TEST_DATA "/cli/" name
#define SCORE_TOL      1e-4

// tests/data/cli/<source>.pth -> <dir>/<name>.h5 converted as `task`, with the fixture's
// vocabulary unless told otherwise.
static const char *convert_as(const char *source, const char *task, const char *name, bool vocab) {
    char src[512], dst[64];
    snprintf(src, sizeof src, "%s/cli/%s.pth", PETAL_TEST_DATA, source);
    snprintf(dst, sizeof dst, "%s.h5", name);
    const char *path = test_dir_path(dst);
    const char *vocab_option = vocab ? "--vocab" : NULL; // NULL ends the list there
    free(run_ok(ARGS("convert", src, path, "--task", task, "--heads", "2", vocab_option,
                     CLI_DATA("vocab.txt"))));
    return path;
}

static const char *convert(const char *task) {
    return convert_as(task, task, task, true);
}

static json_value *expected(void) {
    json_value *root;
    ck_assert_msg(json_parse_file(CLI_DATA("expected.json"), &root) == PETAL_OK, "%s",
                  petal_error_message());
    return root;
}

static const char *string_at(const json_value *obj, const char *key) {
    const char *s;
    ck_assert_msg(json_get_string(obj, key, &s, NULL) == PETAL_OK, "%s", petal_error_message());
    return s;
}

static double number_at(const json_value *obj, const char *key) {
    double v;
    ck_assert_msg(json_get_number(obj, key, &v) == PETAL_OK, "%s", petal_error_message());
    return v;
}

// stdout is exactly `want` and a newline.
static void assert_prints(const char *const *args, const char *want) {
    char *out = run_ok(args);
    char line[512];
    snprintf(line, sizeof line, "%s\n", want);
    ck_assert_msg(strcmp(out, line) == 0, "petal %s printed '%s', the Salesforce code '%s'",
                  args[0], out, want);
    free(out);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

// ITM and ITC scores of every text of expected.json from the checkpoint at ckpt.
static void check_itm_scores(const char *ckpt) {
    json_value *root = expected();
    const json_value *cases;
    ck_assert_int_eq(json_get_array(root, "itm", &cases), PETAL_OK);
    ck_assert_uint_ge(json_len(cases), 3);
    for (size_t i = 0; i < json_len(cases); i++) {
        const json_value *c = json_at(cases, i);
        const char *text = string_at(c, "text");
        char *out =
            run_ok(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text", text));
        double itm, itc;
        int end = 0;
        ck_assert_msg(sscanf(out, "itm_score=%lf itc_score=%lf%n", &itm, &itc, &end) == 2 &&
                          strcmp(out + end, "\n") == 0,
                      "expected one line 'itm_score=P itc_score=C', got '%s'", out);
        ck_assert_msg(fabs(itm - number_at(c, "itm_score")) <= SCORE_TOL &&
                          fabs(itc - number_at(c, "itc_score")) <= SCORE_TOL,
                      "'%s': itm %.6f itc %.6f, the Salesforce code %.6f %.6f", text, itm, itc,
                      number_at(c, "itm_score"), number_at(c, "itc_score"));
        free(out);
    }
    json_free(root);
}

static void assert_refused(const char *const *args, const char *const *names);
static void assert_failed(const char *const *args, const char *const *names);

// Every case's text in one call: one line each, naming its text, with the scores of one call per
// text; [CLS] first instead of [ENC] moves the ITM score and leaves the ITC cosine.
static void check_itm_batch(const char *ckpt) {
    json_value *root = expected();
    const json_value *cases;
    ck_assert_int_eq(json_get_array(root, "itm", &cases), PETAL_OK);
    const char *args[32] = {"itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png")};
    int n = 5;
    for (size_t i = 0; i < json_len(cases) && n < 28; i++) {
        args[n++] = "--text";
        args[n++] = string_at(json_at(cases, i), "text");
    }
    char *out = run_ok(args);
    const char *line = out;
    for (size_t i = 0; i < json_len(cases); i++) {
        const json_value *c = json_at(cases, i);
        double itm, itc;
        int end = 0;
        ck_assert_msg(sscanf(line, "itm_score=%lf itc_score=%lf  %n", &itm, &itc, &end) == 2,
                      "line %zu of '%s'", i, out);
        ck_assert(strncmp(line + end, string_at(c, "text"), strlen(string_at(c, "text"))) == 0);
        ck_assert_msg(fabs(itm - number_at(c, "itm_score")) <= SCORE_TOL &&
                          fabs(itc - number_at(c, "itc_score")) <= SCORE_TOL,
                      "batched '%s': itm %.6f itc %.6f", string_at(c, "text"), itm, itc);
        line = strchr(line, '\n') + 1;
    }
    free(out);
    const json_value *c = json_at(cases, 0);
    out = run_ok(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text",
                      string_at(c, "text"), "--itm-token", "cls"));
    double itm, itc;
    ck_assert_int_eq(sscanf(out, "itm_score=%lf itc_score=%lf", &itm, &itc), 2);
    ck_assert_msg(fabs(itm - number_at(c, "itm_score")) > 1e-4, "--itm-token cls changed nothing");
    ck_assert(fabs(itc - number_at(c, "itc_score")) <= SCORE_TOL);
    free(out);
    json_free(root);
}

// A text over BLIP's 35 tokens is cut with a warning naming it, or refused with --long-text error.
static void check_long_text(const char *ckpt) {
    char text[400] = "";
    for (int i = 0; i < 40; i++) strcat(text, "door ");
    run_result r = run_petal(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text",
                                  "a", "--text", text));
    ck_assert_msg(r.status == 0 && strstr(r.err, "--text 2: 42 tokens, cut to 35"), "%d: %s",
                  r.status, r.err);
    run_result_free(&r);
    assert_failed(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text", text,
                       "--long-text", "error"),
                  NAMES("--text 1", "42 tokens", "more than 35"));
    assert_refused(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text", "a",
                        "--long-text", "maybe"),
                   NAMES("--long-text", "'maybe'", "warn or error"));
}

START_TEST(test_itm) {
    const char *ckpt = convert("itm");
    check_itm_scores(ckpt);
    check_itm_batch(ckpt);
    check_long_text(ckpt);
    assert_refused(ARGS("itm", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--text", "x",
                        "--itm-token", "sep"),
                   NAMES("--itm-token", "'sep'", "enc or cls"));
}
END_TEST

// A retrieval checkpoint is loaded as ITM: the same scores.
START_TEST(test_itm_from_retrieval) {
    check_itm_scores(convert_as("itm", "retrieval", "retrieval", true));
}
END_TEST

// The options of a caption case of expected.json, as petal caption takes them.
static void caption_options(const json_value *c, char buf[3][16]) {
    snprintf(buf[0], 16, "%.0f", number_at(c, "num_beams"));
    snprintf(buf[1], 16, "%.0f", number_at(c, "max_length"));
    snprintf(buf[2], 16, "%.0f", number_at(c, "min_length"));
}

START_TEST(test_caption) {
    const char *ckpt = convert("caption");
    json_value *root = expected();
    const json_value *cases;
    ck_assert_int_eq(json_get_array(root, "caption", &cases), PETAL_OK);
    ck_assert_uint_eq(json_len(cases), 3);
    // The first case is BLIP's defaults (beam 3, max 20, min 5, 'a picture of '): no options.
    const json_value *c = json_at(cases, 0);
    char opt[3][16];
    caption_options(c, opt);
    ck_assert_str_eq(opt[0], "3");
    ck_assert_str_eq(opt[1], "20");
    ck_assert_str_eq(opt[2], "5");
    ck_assert_str_eq(string_at(c, "prompt"), "a picture of ");
    assert_prints(ARGS("caption", "--ckpt", ckpt, "--image", CLI_DATA("image.png")),
                  string_at(c, "caption"));
    for (size_t i = 1; i < json_len(cases); i++) {
        c = json_at(cases, i);
        caption_options(c, opt);
        assert_prints(ARGS("caption", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--beams",
                           opt[0], "--max-length", opt[1], "--min-length", opt[2], "--prompt",
                           string_at(c, "prompt"), "--threads", "1"),
                      string_at(c, "caption"));
    }
    json_free(root);
}
END_TEST

START_TEST(test_vqa) {
    const char *ckpt = convert("vqa");
    json_value *root = expected();
    const json_value *vqa;
    ck_assert_int_eq(json_get_object(root, "vqa", &vqa), PETAL_OK);
    const char *question = string_at(vqa, "question");
    assert_prints(
        ARGS("vqa", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--question", question),
        string_at(vqa, "generate"));
    assert_prints(ARGS("vqa", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--question",
                       question, "--answers", CLI_DATA("answers.txt")),
                  string_at(vqa, "rank"));
    // The same list with \r\n line ends, blank lines and no final line end.
    char *list;
    size_t len;
    ck_assert_int_eq(buffer_read_file(CLI_DATA("answers.txt"), &list, &len), PETAL_OK);
    strbuf crlf = {0};
    strbuf_append(&crlf, "\r\n\n", 3);
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n"))
        strbuf_printf(&crlf, "%s%s", crlf.len > 3 ? "\r\n\r\n" : "", line);
    write_file(test_dir_path("crlf.txt"), crlf.data, crlf.len);
    assert_prints(ARGS("vqa", "--ckpt", ckpt, "--image", CLI_DATA("image.png"), "--question",
                       question, "--answers", test_dir_path("crlf.txt")),
                  string_at(vqa, "rank"));
    strbuf_free(&crlf);
    free(list);
    json_free(root);
}
END_TEST

// Exit `status`, nothing on stdout, one line on stderr that contains each of `names`.
static void assert_exit(int status, const char *const *args, const char *const *names) {
    run_result r = run_petal(args);
    const char *nl = strchr(r.err, '\n');
    ck_assert_msg(r.status == status && r.out[0] == '\0' && nl && nl[1] == '\0',
                  "petal %s: expected exit %d and one line on stderr, got %d, stdout '%s', "
                  "stderr '%s'",
                  args[0], status, r.status, r.out, r.err);
    for (; *names; names++)
        ck_assert_msg(strstr(r.err, *names), "the message does not name '%s': %s", *names, r.err);
    run_result_free(&r);
}

// A usage error: exit 2.
static void assert_refused(const char *const *args, const char *const *names) {
    assert_exit(2, args, names);
}

// A file or text that cannot be used: exit 1.
static void assert_failed(const char *const *args, const char *const *names) {
    assert_exit(1, args, names);
}

START_TEST(test_missing_and_corrupt_files) {
    const char *itm = convert("itm"), *image = CLI_DATA("image.png");
    const char *nope = test_dir_path("nope.png");
    assert_failed(ARGS("itm", "--ckpt", itm, "--image", nope, "--text", "a"),
                  NAMES("--image", nope));
    assert_failed(ARGS("itm", "--ckpt", test_dir_path("nope.h5"), "--image", image, "--text", "a"),
                  NAMES("--ckpt", "nope.h5"));
    // Half a checkpoint, half a PNG, a text file as the image.
    char *h5, *png;
    size_t h5_len, png_len;
    ck_assert_int_eq(buffer_read_file(itm, &h5, &h5_len), PETAL_OK);
    ck_assert_int_eq(buffer_read_file(image, &png, &png_len), PETAL_OK);
    write_file(test_dir_path("half.h5"), h5, h5_len / 2);
    write_file(test_dir_path("half.png"), png, png_len / 2);
    assert_failed(ARGS("itm", "--ckpt", test_dir_path("half.h5"), "--image", image, "--text", "a"),
                  NAMES("--ckpt", "half.h5"));
    assert_failed(ARGS("itm", "--ckpt", itm, "--image", test_dir_path("half.png"), "--text", "a"),
                  NAMES("--image", "half.png"));
    assert_failed(ARGS("itm", "--ckpt", itm, "--image", CLI_DATA("vocab.txt"), "--text", "a"),
                  NAMES("--image", "vocab.txt"));
    // An image over --max-pixels is refused naming its size; 0 is a usage error.
    assert_failed(
        ARGS("itm", "--ckpt", itm, "--image", image, "--text", "a", "--max-pixels", "100"),
        NAMES("--image", "pixels, more than the limit of 100", "--max-pixels"));
    assert_refused(ARGS("itm", "--ckpt", itm, "--image", image, "--text", "a", "--max-pixels", "0"),
                   NAMES("--max-pixels", "'0'"));
    // A directory where a file belongs says so.
    assert_failed(ARGS("inspect", test_dir_path("")), NAMES("Is a directory"));
    assert_failed(ARGS("itm", "--ckpt", test_dir_path(""), "--image", image, "--text", "a"),
                  NAMES("--ckpt", "not a regular file"));
    assert_failed(ARGS("itm", "--ckpt", itm, "--image", test_dir_path(""), "--text", "a"),
                  NAMES("--image", "directory"));
    free(h5);
    free(png);
    // The .pth itself, and a checkpoint converted without a vocabulary.
    assert_failed(ARGS("itm", "--ckpt", CLI_DATA("itm.pth"), "--image", image, "--text", "a"),
                  NAMES("itm.pth", "petal convert"));
    const char *bare = convert_as("itm", "itm", "bare", false);
    assert_failed(ARGS("itm", "--ckpt", bare, "--image", image, "--text", "a"),
                  NAMES("bare.h5", "--vocab"));
}
END_TEST

START_TEST(test_wrong_task) {
    const char *itm = convert("itm"), *caption = convert("caption"), *vqa = convert("vqa");
    const char *image = CLI_DATA("image.png");
    assert_failed(ARGS("itm", "--ckpt", caption, "--image", image, "--text", "a"),
                  NAMES("caption.h5", "for caption", "retrieval, itm or pretrain"));
    assert_failed(ARGS("caption", "--ckpt", vqa, "--image", image),
                  NAMES("vqa.h5", "for vqa", "caption or pretrain"));
    assert_failed(ARGS("vqa", "--ckpt", itm, "--image", image, "--question", "q"),
                  NAMES("itm.h5", "for itm"));
    // A text on a caption checkpoint: petal caption takes no --text.
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--text", "a"),
                   NAMES("unknown option '--text'"));
}
END_TEST

START_TEST(test_bad_options) {
    const char *caption = convert("caption"), *vqa = convert("vqa");
    const char *image = CLI_DATA("image.png");
    assert_refused(ARGS("itm", "--ckpt", caption, "--image", image), NAMES("missing --text"));
    assert_refused(ARGS("vqa", "--ckpt", vqa, "--image", image, "--question"),
                   NAMES("missing value for '--question'"));
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--beams", "0"),
                   NAMES("--beams", "'0'"));
    // Longer than the tiny decoder's 64 positions; fewer than the 4 prompt tokens.
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--max-length", "65"),
                   NAMES("--max-length", "64"));
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--max-length", "4"),
                   NAMES("--max-length"));
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--min-length", "x"),
                   NAMES("--min-length", "'x'"));
    assert_refused(ARGS("caption", "--ckpt", caption, "--image", image, "--threads", "-1"),
                   NAMES("--threads"));
    assert_failed(ARGS("caption", "--ckpt", caption, "--image", image, "--prompt", "\xff"),
                  NAMES("--prompt", "UTF-8"));
    write_file(test_dir_path("blank.txt"), "\n\r\n", 3);
    assert_failed(ARGS("vqa", "--ckpt", vqa, "--image", image, "--question", "q", "--answers",
                       test_dir_path("blank.txt")),
                  NAMES("--answers", "blank.txt"));
    write_file(test_dir_path("latin1.txt"), "red\nbl\xe9\n", 8);
    assert_failed(ARGS("vqa", "--ckpt", vqa, "--image", image, "--question", "q", "--answers",
                       test_dir_path("latin1.txt")),
                  NAMES("--answers", "latin1.txt:2", "UTF-8"));
    assert_failed(ARGS("vqa", "--ckpt", vqa, "--image", image, "--question", "q", "--answers",
                       test_dir_path("none.txt")),
                  NAMES("--answers", "none.txt"));
}
END_TEST

// petal params counts without weight memory: BLIP-base retrieval's 2 GB of zero-filled weights
// (momentum encoders included) stay untouched pages (tensor_zeros), so the process stays small.
START_TEST(test_params_touches_no_weights) {
    char *out = run_ok(ARGS("params", "--model", "blip-base-retrieval"));
    ck_assert(strstr(out, "petl params: "));
    free(out);
    struct rusage use;
    ck_assert_int_eq(getrusage(RUSAGE_CHILDREN, &use), 0);
    ck_assert_msg(use.ru_maxrss < 512 * 1024, "petal params peaked at %ld KiB", use.ru_maxrss);
}
END_TEST

// --share-decoder counts petl.share_decoder: the VQA decoder's Aurora tensors go (164,864 ->
// 125,696 at the code preset, R = 32); a bad value is a usage error, a model without a decoder a
// runtime one naming the option.
START_TEST(test_params_share_decoder) {
    char *out = run_ok(
        ARGS("params", "--model", "blip-base-vqa", "--variant", "code", "--share-decoder", "true"));
    ck_assert_msg(strstr(out, "aurora, blip-base-vqa (code variant, decoder shared), rank 32") &&
                      strstr(out, "petl params: 125,696\n"),
                  "%s", out);
    free(out);
    assert_refused(ARGS("params", "--share-decoder", "yes"),
                   NAMES("--share-decoder", "'yes'", "true or false"));
    assert_failed(ARGS("params", "--share-decoder", "true"),
                  NAMES("petl.share_decoder", "retrieval model has no answer decoder"));
}
END_TEST

// petal params refuses a malformed list before it builds any model: an empty item (which used
// to be skipped, dropping a row of the table), a non-number, a rank out of range (a huge one
// used to abort in the allocator), too many items.
START_TEST(test_params_bad_lists) {
    assert_refused(ARGS("gradcheck", "--filter", "no_such_op"),
                   NAMES("--filter", "'no_such_op'", "matches no op"));
    assert_refused(ARGS("params", "--rank", "4,,8"), NAMES("--rank", "'4,,8'", "item 2", "empty"));
    assert_refused(ARGS("params", "--rank", ",4"), NAMES("--rank", "item 1", "empty"));
    assert_refused(ARGS("params", "--rank", "4,"), NAMES("--rank", "item 2", "empty"));
    assert_refused(ARGS("params", "--rank", ""), NAMES("--rank", "item 1", "empty"));
    assert_refused(ARGS("params", "--method", "aurora,,lora"),
                   NAMES("--method", "'aurora,,lora'", "item 2", "empty"));
    assert_refused(ARGS("params", "--rank", "8,4x"), NAMES("--rank", "item 2", "'4x'", "768"));
    assert_refused(ARGS("params", "--rank", "0"), NAMES("--rank", "'0'", "from 1 to 768"));
    // Above BLIP-base's width 768, and past int64 (which strtoll clamps).
    assert_refused(ARGS("params", "--rank", "769"),
                   NAMES("--rank", "'769'", "from 1 to 768", "blip-base-retrieval"));
    assert_refused(ARGS("params", "--rank", "99999999999999999999"),
                   NAMES("--rank", "'99999999999999999999'", "768"));
    assert_refused(ARGS("params", "--model", "blip-large-retrieval", "--rank", "1025"),
                   NAMES("--rank", "'1025'", "from 1 to 1024", "blip-large-retrieval"));
    assert_refused(ARGS("params", "--rank", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"),
                   NAMES("--rank", "more than 16 items"));
    // petal convert loses nothing by accident: an existing DST needs --force, SRC is never DST,
    // an empty vocabulary is refused at once.
    const char *dst = test_dir_write("exists.h5", "x");
    assert_refused(ARGS("convert", CLI_DATA("itm.pth"), dst, "--task", "itm"),
                   NAMES("exists.h5", "exists", "--force"));
    assert_refused(ARGS("convert", CLI_DATA("itm.pth"), CLI_DATA("itm.pth"), "--force"),
                   NAMES("itm.pth", "is SRC itself"));
    assert_failed(ARGS("convert", CLI_DATA("itm.pth"), test_dir_path("new.h5"), "--vocab",
                       test_dir_write("empty.txt", "")),
                  NAMES("--vocab", "empty.txt", "is empty"));
    // petal bench train --model knows one model and bounds its sizes before building anything.
    assert_refused(ARGS("bench", "train", "--model", "blip-large"),
                   NAMES("--model 'blip-large'", "expected blip-base-retrieval"));
    assert_refused(ARGS("bench", "train", "--model", "blip-base-retrieval", "--rank", "769"),
                   NAMES("--rank", "from 1 to 768", "'769'"));
    // --precision names the choices; a valid one is said in the JSON line.
    assert_refused(ARGS("bench", "gemm", "--precision", "fp16"),
                   NAMES("--precision", "f32, tf32, bf16", "'fp16'"));
    char *line = run_ok(ARGS("bench", "gemm", "--m", "40", "--n", "24", "--k", "56", "--iters", "1",
                             "--precision", "bf16"));
    ck_assert_msg(strstr(line, "\"bench\": \"gemm\", \"device\": \"cpu\", \"precision\": \"bf16\""),
                  "%s", line);
    free(line);
    // The other commands that take lists use the same splitter.
    assert_refused(ARGS("runs", "runs/a", "--metrics", "txt_r1,,img_r1"),
                   NAMES("petal runs", "--metrics", "item 2", "empty"));
    assert_refused(ARGS("runs", "runs/a,"), NAMES("petal runs", "run", "item 2", "empty"));
    assert_refused(ARGS("ablate", "c.yaml", "--grid", "petl.rank=4,,8"),
                   NAMES("petal ablate", "--grid", "'4,,8'", "item 2", "empty"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_with_timeout("cli", 300);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_itm);
    tcase_add_test(tc, test_itm_from_retrieval);
    tcase_add_test(tc, test_caption);
    tcase_add_test(tc, test_vqa);
    tcase_add_test(tc, test_missing_and_corrupt_files);
    tcase_add_test(tc, test_wrong_task);
    tcase_add_test(tc, test_bad_options);
    tcase_add_test(tc, test_params_bad_lists);
    tcase_add_test(tc, test_params_touches_no_weights);
    tcase_add_test(tc, test_params_share_decoder);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
