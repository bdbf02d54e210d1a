// train/plot (`petal plot`): PNGs drawn by gnuplot from a small metrics.jsonl, the plots skipped
// when there is nothing for them, and the errors a user meets (a malformed line, a missing file,
// gnuplot missing).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/test_util.h"
#include "train/plot.h"

static const char *run_dir(void) {
    static int runs; // a fresh folder for each run in a test
    char name[32];
    snprintf(name, sizeof name, "run%d", runs++);
    const char *dir = test_dir_path(name);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    return dir;
}

static void write_metrics(const char *dir, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

// The whole file, NUL-terminated (malloc'd); NULL when it does not exist.
static char *read_file(const char *dir, const char *name, long *size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    char *data = malloc((size_t)*size + 1);
    ck_assert_int_eq((long)fread(data, 1, (size_t)*size, f), *size);
    data[*size] = '\0';
    fclose(f);
    return data;
}

static void check_png(const char *dir, const char *name) {
    long size;
    char *data = read_file(dir, name, &size);
    ck_assert_msg(data != NULL, "%s was not written", name);
    ck_assert_msg(size > 8000, "%s has %ld bytes: too small for a plot with lines and labels", name,
                  size);
    ck_assert_mem_eq(data, "\x89PNG\r\n\x1a\n", 8);
    free(data);
}

// The report plot_run writes (what `petal plot` prints).
static char *run_plot(const char *dir, petal_status want) {
    FILE *report = tmpfile();
    petal_status st = plot_run(dir, report);
    ck_assert_msg(st == want, "plot_run: %s (%s)", petal_status_name(st), petal_error_message());
    long size = ftell(report);
    char *text = calloc((size_t)size + 1, 1);
    rewind(report);
    ck_assert_int_eq((long)fread(text, 1, (size_t)size, report), size);
    fclose(report);
    return text;
}

// 60 steps of three losses and a warm-up-then-cosine-like lr; val and test every 200 steps.
static void write_training_run(const char *dir, bool with_eval) {
    char *text = malloc(1 << 16), *p = text;
    for (int step = 10; step <= 600; step += 10) {
        double itc = 3.0 / (1 + step / 100.0), itm = 0.7 - 0.2 * step / 600.0;
        double lr = step < 100 ? 1e-4 * step / 100 : 1e-4 * (1 - (step - 100) / 600.0);
        p += sprintf(p,
                     "{\"step\": %d, \"epoch\": %d, \"lr\": %g, \"loss\": %g, \"loss_itc\": %g, "
                     "\"loss_itm\": %g, \"note\": \"ignored\"}\n",
                     step, step / 200, lr, itc + itm, itc, itm);
        if (step == 300) p += sprintf(p, "\n"); // blank lines are skipped
        for (int s = 0; with_eval && s < 2 && step % 200 == 0; s++)
            p += sprintf(p,
                         "{\"step\": %d, \"epoch\": %d, \"split\": \"%s\", \"txt_r1\": %g, "
                         "\"img_r1\": %g, \"r_mean\": %g, \"checkpoint\": \"x.h5\"}\n",
                         step, step / 200, s ? "test" : "val", 20 + step / 10.0 - s,
                         15 + step / 12.0 - s, 40 + step / 20.0);
    }
    write_metrics(dir, text);
    free(text);
}

START_TEST(test_plots_losses_lr_and_metrics) {
    const char *dir = run_dir();
    write_training_run(dir, true);
    char *report = run_plot(dir, PETAL_OK);
    char plots[512];
    snprintf(plots, sizeof plots, "%s/plots", dir);
    const char *pngs[] = {"loss.png", "lr.png", "eval.png"};
    for (int i = 0; i < 3; i++) {
        check_png(plots, pngs[i]);
        char line[600];
        snprintf(line, sizeof line, "%s/%s\n", plots, pngs[i]);
        ck_assert_msg(strstr(report, line), "the report does not name %s:\n%s", pngs[i], report);
    }
    long size;
    char *loss = read_file(plots, "loss.dat", &size), *eval = read_file(plots, "eval.dat", &size);
    char *script = read_file(plots, "plot.gp", &size);
    ck_assert_ptr_nonnull(strstr(loss, "\n\n# loss_itm\n10 0.6966"));
    ck_assert_ptr_nonnull(strstr(eval, "# r_mean (test)\n200 50\n400 60\n600 70\n"));
    ck_assert_ptr_null(strstr(eval, "epoch"));
    ck_assert_ptr_nonnull(strstr(script, "set xlabel 'step'"));
    ck_assert_ptr_nonnull(strstr(script, "'eval.dat' index 5 using 1:2 with linespoints title "
                                         "'r_mean (test)'"));
    free(loss);
    free(eval);
    free(script);
    free(report);
}
END_TEST

START_TEST(test_no_eval_lines_skip_eval_png) {
    const char *dir = run_dir();
    write_training_run(dir, false);
    char *report = run_plot(dir, PETAL_OK);
    ck_assert_msg(strstr(report, "no evaluation lines in ") && strstr(report, "eval.png skipped"),
                  "%s", report);
    char plots[512];
    snprintf(plots, sizeof plots, "%s/plots", dir);
    check_png(plots, "loss.png");
    long size;
    ck_assert_ptr_null(read_file(plots, "eval.png", &size));
    free(report);
}
END_TEST

// Keys are written into gnuplot strings: a quote must not end one.
START_TEST(test_keys_with_quotes) {
    const char *dir = run_dir();
    write_metrics(dir, "{\"step\": 1, \"loss_it's\": 2}\n{\"step\": 2, \"loss_it's\": 1}\n");
    char *report = run_plot(dir, PETAL_OK);
    ck_assert_ptr_nonnull(strstr(report, "no lr values in "));
    free(report);
}
END_TEST

static void check_malformed(const char *text, const char *want) {
    const char *dir = run_dir();
    write_metrics(dir, text);
    FILE *report = tmpfile();
    ck_assert_int_eq(plot_run(dir, report), PETAL_ERR_FORMAT);
    fclose(report);
    char expect[600];
    snprintf(expect, sizeof expect, "%s/metrics.jsonl:%s", dir, want);
    ck_assert_msg(strstr(petal_error_message(), expect), "message \"%s\" lacks \"%s\"",
                  petal_error_message(), expect);
    struct stat st;
    char plots[512];
    snprintf(plots, sizeof plots, "%s/plots", dir);
    ck_assert_int_ne(stat(plots, &st), 0); // nothing written
}

START_TEST(test_malformed_json) {
    check_malformed("{\"step\": 1, \"loss\": 2}\n\n{\"step\": 3, \"loss\": }\n",
                    "3:21 (byte 20): expected a value");
}
END_TEST

START_TEST(test_malformed_entries) {
    check_malformed("{\"step\": 1}\n[1, 2]\n", "2: expected a JSON object, found an array");
}
END_TEST

START_TEST(test_missing_or_wrong_step) {
    check_malformed("{\"epoch\": 1, \"loss\": 2}\n", "1: missing key \"step\"");
    check_malformed("{\"step\": \"7\"}\n", "1: \"step\": expected a number, found a string");
}
END_TEST

START_TEST(test_loss_not_a_number) {
    check_malformed("{\"step\": 1, \"loss_itc\": \"high\"}\n",
                    "1: \"loss_itc\": expected a number, found a string");
}
END_TEST

START_TEST(test_missing_metrics_file) {
    const char *dir = run_dir();
    ck_assert_int_eq(plot_run(dir, NULL), PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "metrics.jsonl"));
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "No such file"));
}
END_TEST

START_TEST(test_nothing_to_plot) {
    const char *dir = run_dir();
    write_metrics(dir, "{\"step\": 1, \"epoch\": 0}\n");
    ck_assert_int_eq(plot_run(dir, NULL), PETAL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "nothing to plot"));
}
END_TEST

START_TEST(test_gnuplot_missing) {
    const char *dir = run_dir();
    write_training_run(dir, true);
    char *path = strdup(getenv("PATH"));
    setenv("PATH", dir, 1); // no gnuplot there
    petal_status st = plot_run(dir, NULL);
    setenv("PATH", path, 1); // test_dir_remove runs rm
    free(path);
    ck_assert_int_eq(st, PETAL_ERR_IO);
    ck_assert_str_eq(petal_error_message(),
                     "gnuplot not found on PATH: install it (Debian: apt-get install gnuplot-nox)");
}
END_TEST

int main(void) {
    Suite *s = suite_create("plot");
    TCase *tc = tcase_with_timeout("plot", 30);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_plots_losses_lr_and_metrics);
    tcase_add_test(tc, test_no_eval_lines_skip_eval_png);
    tcase_add_test(tc, test_keys_with_quotes);
    tcase_add_test(tc, test_malformed_json);
    tcase_add_test(tc, test_malformed_entries);
    tcase_add_test(tc, test_missing_or_wrong_step);
    tcase_add_test(tc, test_loss_not_a_number);
    tcase_add_test(tc, test_missing_metrics_file);
    tcase_add_test(tc, test_nothing_to_plot);
    tcase_add_test(tc, test_gnuplot_missing);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
