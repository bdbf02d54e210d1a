// Help and exit codes of every petal command: `petal CMD --help`, `petal CMD -h` and
// `petal help CMD` print the same usage (synopsis, options, an example) and exit 0; an unknown
// option exits 2 naming it; a missing or unknown command exits 2 with the list of commands.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tools/cli_run.h"

// Every command `petal help` lists, with arguments that reach its option parsing and an option
// none of them takes.
static const struct {
    const char *name;
    const char *const *bogus; // args (after the name) that hold the unknown option "--bogus"
} commands[] = {
    {"gradcheck", ARGS("--bogus", "1")},
    {"bench", ARGS("gemm", "--bogus", "1")},
    {"params", ARGS("--bogus", "1")},
    {"convert", ARGS("a.pth", "b.h5", "--bogus", "1")},
    {"inspect", ARGS("--bogus")},
    {"itm", ARGS("--bogus", "1")},
    {"caption", ARGS("--bogus", "1")},
    {"vqa", ARGS("--bogus", "1")},
    {"train", ARGS("c.yaml", "--bogus")},
    {"eval", ARGS("c.yaml", "--bogus")},
    {"data", ARGS("synth", "dir", "--bogus", "1")},
    {"frames", ARGS("v.mp4", "--bogus", "1")},
    {"plot", ARGS("--bogus")},
    {"ablate", ARGS("c.yaml", "--bogus")},
    {"runs", ARGS("run", "--bogus")},
    {"grads", ARGS("record", "--bogus", "1")},
    {"diff", ARGS("a.h5", "--bogus")},
    {"score", ARGS("captions", "--bogus", "1")},
};
enum { N_COMMANDS = sizeof commands / sizeof *commands };

// The bench cases take the same help as bench itself.
static const char *const bench_cases[] = {"gemm", "block", "vit", "blip-itm", "train"};
enum { N_BENCH_CASES = sizeof bench_cases / sizeof *bench_cases };

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

// Runs args, expects exit 0 and nothing on stderr; returns stdout (malloc'd).
static char *help_of(const char *const *args) {
    run_result r = run_petal(args);
    ck_assert_msg(r.status == 0 && r.err[0] == '\0', "petal %s %s: exit %d, stderr '%s'", args[0],
                  args[1] ? args[1] : "", r.status, r.err);
    char *out = r.out;
    r.out = NULL;
    run_result_free(&r);
    return out;
}

START_TEST(test_three_forms_print_the_same_usage) {
    const char *name = commands[_i].name;
    char *help = help_of(ARGS(name, "--help")), *h = help_of(ARGS(name, "-h"));
    char *topic = help_of(ARGS("help", name));
    char synopsis[64], example[64];
    snprintf(synopsis, sizeof synopsis, "usage: petal %s", name);
    snprintf(example, sizeof example, "\nexample: petal %s", name);
    ck_assert_msg(starts_with(help, synopsis), "petal %s --help: '%s'", name, help);
    ck_assert_msg(strstr(help, example), "petal %s --help has no example line: '%s'", name, help);
    ck_assert_msg(strcmp(help, h) == 0, "petal %s: --help '%s' but -h '%s'", name, help, h);
    ck_assert_msg(strcmp(help, topic) == 0, "petal %s: --help '%s' but help '%s'", name, help,
                  topic);
    free(help);
    free(h);
    free(topic);
}
END_TEST

START_TEST(test_bench_cases_print_the_bench_usage) {
    char *bench = help_of(ARGS("bench", "--help"));
    char *one = help_of(ARGS("bench", bench_cases[_i], "--help"));
    ck_assert_msg(strcmp(bench, one) == 0, "petal bench %s --help: '%s'", bench_cases[_i], one);
    char line[64];
    snprintf(line, sizeof line, "\n  %s ", bench_cases[_i]);
    ck_assert_msg(strstr(bench, line), "petal bench --help does not describe '%s': '%s'",
                  bench_cases[_i], bench);
    free(bench);
    free(one);
}
END_TEST

START_TEST(test_unknown_option_exits_2_naming_it) {
    const char *args[8] = {commands[_i].name};
    for (int k = 0; commands[_i].bogus[k]; k++) args[k + 1] = commands[_i].bogus[k];
    run_result r = run_petal(args);
    ck_assert_msg(r.status == 2 && r.out[0] == '\0' && strstr(r.err, "'--bogus'"),
                  "petal %s with --bogus: exit %d, stdout '%s', stderr '%s'", args[0], r.status,
                  r.out, r.err);
    run_result_free(&r);
}
END_TEST

// The commands `petal help` lists, in order, are the ones this suite covers.
START_TEST(test_help_lists_every_command) {
    char *list = help_of(ARGS("help"));
    const char *p = strstr(list, "commands:\n");
    ck_assert_msg(p, "petal help: '%s'", list);
    p += strlen("commands:\n");
    for (int i = 0; i < N_COMMANDS; i++, p = strchr(p, '\n') + 1) {
        char name[32] = "";
        sscanf(p, " %31s", name);
        ck_assert_msg(strcmp(name, commands[i].name) == 0, "petal help lists '%s' where '%s'", name,
                      commands[i].name);
    }
    ck_assert_msg(*p == '\0', "petal help lists commands this suite does not cover: '%s'", p);
    free(list);
}
END_TEST

START_TEST(test_missing_or_unknown_command_exits_2) {
    char *list = help_of(ARGS("help"));
    run_result r = run_petal((const char *[]){NULL});
    ck_assert_msg(r.status == 2 && strcmp(r.err, list) == 0, "petal alone: exit %d, stderr '%s'",
                  r.status, r.err);
    run_result_free(&r);
    r = run_petal(ARGS("nope"));
    ck_assert_msg(r.status == 2 && starts_with(r.err, "petal: unknown command 'nope'\n") &&
                      strstr(r.err, list),
                  "petal nope: exit %d, stderr '%s'", r.status, r.err);
    run_result_free(&r);
    r = run_petal(ARGS("help", "nope"));
    ck_assert_msg(r.status == 2 && r.out[0] == '\0' && strstr(r.err, "'nope'"),
                  "petal help nope: exit %d, stdout '%s', stderr '%s'", r.status, r.out, r.err);
    run_result_free(&r);
    free(list);
}
END_TEST

int main(void) {
    Suite *s = suite_create("help_cli");
    TCase *tc = tcase_with_timeout("help_cli", 10);
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_loop_test(tc, test_three_forms_print_the_same_usage, 0, N_COMMANDS);
    tcase_add_loop_test(tc, test_bench_cases_print_the_bench_usage, 0, N_BENCH_CASES);
    tcase_add_loop_test(tc, test_unknown_option_exits_2_naming_it, 0, N_COMMANDS);
    tcase_add_test(tc, test_help_lists_every_command);
    tcase_add_test(tc, test_missing_or_unknown_command_exits_2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
