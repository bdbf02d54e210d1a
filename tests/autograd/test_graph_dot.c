// autograd/graph_dot: the DOT text of a known graph, parsed by Graphviz itself, and PETAL_TRACE.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "petal.h"
#include "tests/test_util.h"

// loss = sum((tanh(W x + b) * c)^2), with W, x, b leaves and c frozen: ops linear, tanh, mul
// (saves c only: y's gradient needs c, c needs none), mul (z twice), and sum_all's reshape and sum.
static tensor *small_graph(tensor **leaves) {
    leaves[0] =
        tensor_from_data(PETAL_F64, SHAPE(2, 3), (double[]){0.1, -0.2, 0.3, 0.4, 0.5, -0.6});
    leaves[1] = tensor_from_data(PETAL_F64, SHAPE(3), (double[]){1, 2, -1});
    leaves[2] = tensor_from_data(PETAL_F64, SHAPE(2), (double[]){0.05, -0.05});
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(leaves[i], true);
    tensor *c = tensor_from_data(PETAL_F64, SHAPE(2), (double[]){2, 3});
    tensor *z = tensor_mul(tensor_tanh(tensor_linear(leaves[1], leaves[0], leaves[2])), c);
    return tensor_sum_all(tensor_mul(z, z));
}

static char *dot_text(const tensor *root) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    ag_graph_dot(root, f);
    fclose(f);
    return text;
}

static int count(const char *text, const char *needle) {
    int n = 0;
    size_t len = strlen(needle);
    for (size_t i = 0; text[i]; i++) n += strncmp(text + i, needle, len) == 0;
    return n;
}

// Lines of `dot -Tplain` output starting with `kind` ("node " or "edge ").
static int count_plain(const char *path, const char *kind) {
    char cmd[512], line[4096];
    snprintf(cmd, sizeof cmd, "dot -Tplain '%s'", path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = 0;
    while (fgets(line, sizeof line, p)) n += strncmp(line, kind, strlen(kind)) == 0;
    ck_assert_int_eq(pclose(p), 0);
    return n;
}

START_TEST(test_graphviz_parses_the_graph) {
    int mark = scope_begin();
    tensor *leaves[3];
    char *text = dot_text(small_graph(leaves));
    const char *path = test_dir_write("graph.dot", text);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' -o '%s'", path, test_dir_path("graph.svg"));
    ck_assert_int_eq(system(cmd), 0);
    // 6 ops, 3 leaves, c, the output; edges: linear 3, tanh 1, mul 2, mul 2, reshape 1, sum 1,
    // and the sum's to the output.
    ck_assert_int_eq(count_plain(path, "node "), 11);
    ck_assert_int_eq(count_plain(path, "edge "), 11);
    ck_assert_int_eq(count(text, "requires_grad"), 3);
    ck_assert_int_eq(count(text, "fontcolor=gray"), 1); // c: needs no gradient
    ck_assert_int_eq(count(text, "-> op2 [label=\"[2]\", color=gray]"), 1);
    ck_assert_ptr_nonnull(strstr(text, "op2 [shape=ellipse, label=\"mul\\nsaved 1: f64 [2]\"]"));
    ck_assert_ptr_nonnull(strstr(text, "label=\"mul\\nsaved 0: f64 [2]\\nsaved 1: f64 [2]\"]"));
    free(text);
    // A leaf used twice is one box with two edges: x, mul, reshape, sum, output.
    tensor *x = leaves[1];
    text = dot_text(tensor_sum_all(tensor_mul(x, x)));
    path = test_dir_write("square.dot", text);
    ck_assert_int_eq(count_plain(path, "node "), 5);
    ck_assert_int_eq(count_plain(path, "edge "), 5);
    ck_assert_int_eq(count(text, "leaf0 -> op0"), 2);
    free(text);
    scope_end(mark);
}
END_TEST

START_TEST(test_same_computation_same_text) {
    int mark = scope_begin();
    tensor *leaves[3];
    tensor *first = small_graph(leaves);
    char *a = dot_text(first);
    char *b = dot_text(small_graph(leaves)); // later nodes, same structure
    ck_assert_str_eq(a, b);
    autograd_backward(first, NULL, false);
    char *after = dot_text(first);
    ck_assert_int_eq(count(after, "saved: released"), 6);
    ck_assert_int_eq(count(after, "saved 0"), 0);
    free(a);
    free(b);
    free(after);
    scope_end(mark);
}
END_TEST

START_TEST(test_trace_prints_each_node) {
    int mark = scope_begin();
    setenv("PETAL_TRACE", "1",
           1); // this test runs in its own process: read here for the first time
    tensor *leaves[3];
    tensor *loss = small_graph(leaves);
    const char *path = test_dir_path("trace.txt");
    fflush(stderr);
    int saved = dup(2);
    ck_assert(freopen(path, "w", stderr) != NULL);
    autograd_backward(loss, NULL, false);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    char line[512], lines[8][512];
    int n = 0;
    while (n < 8 && fgets(line, sizeof line, f)) snprintf(lines[n++], sizeof lines[0], "%s", line);
    fclose(f);
    ck_assert_int_eq(n, 6); // one per node, newest first
    const char *ops[] = {"sum ", "reshape ", "mul ", "mul ", "tanh ", "linear "};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(strncmp(lines[i] + 7, ops[i], strlen(ops[i])) == 0, "line %d: %s", i,
                      lines[i]);
    ck_assert_ptr_nonnull(strstr(lines[3], ", -\n")); // c needs no gradient
    // z = tanh(W x + b) * c; each of z * z's two edges gets the other factor, z (together 2 z),
    // and the sum hands its reshape ones: norm sqrt(2).
    double z0 = tanh(0.1 * 1 - 0.2 * 2 - 0.3 + 0.05) * 2, z1 = tanh(0.4 + 1.0 + 0.6 - 0.05) * 3;
    char want[64];
    snprintf(want, sizeof want, "%.6e", sqrt(z0 * z0 + z1 * z1));
    ck_assert_msg(count(lines[2], want) == 2, "expected |z| = %s twice in: %s", want, lines[2]);
    ck_assert_ptr_nonnull(strstr(lines[0], "out []               grad norms: 1.414214e+00\n"));
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("graph_dot");
    TCase *tc = tcase_create("graph_dot");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_graphviz_parses_the_graph);
    tcase_add_test(tc, test_same_computation_same_text);
    tcase_add_test(tc, test_trace_prints_each_node);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
