// petal diff: the tensors of two petal HDF5 files (checkpoints, PETL files, gradient files)
// compared by name: the largest absolute and relative difference of each tensor that differs,
// and the tensors only one file has. Exit status as diff(1): 0 identical, 1 different, 2 trouble.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/tensor_list.h"
#include "tools/cli.h"

const char cmd_diff_usage[] =
    "petal diff A.h5 B.h5\n"
    "  A.h5, B.h5  petal HDF5 files (checkpoints, PETL files, gradient files); no options\n"
    "exit 0 when identical, 1 when they differ, 2 on a usage error or a file that cannot be read\n"
    "example: petal diff runs/a/last.h5 runs/b/last.h5";

typedef struct {
    double max_abs, max_rel; // rel: |a - b| / max(|a|, |b|)
    int64_t n_diff;          // elements that are not the same value
} tensor_diff;

static tensor_diff diff_values(const tensor *a, const tensor *b) {
    int64_t n = tensor_numel(a);
    double *x = malloc((size_t)(2 * n + 1) * sizeof *x), *y = x + n;
    tensor_diff d = {0};
    PETAL_CHECK(x != NULL, "petal diff: out of host memory");
    tensor_to_doubles(a, x);
    tensor_to_doubles(b, y);
    for (int64_t i = 0; i < n; i++) {
        if (x[i] == y[i] || (isnan(x[i]) && isnan(y[i]))) continue;
        double abs = fabs(x[i] - y[i]), rel = abs / fmax(fabs(x[i]), fabs(y[i]));
        d.n_diff++;
        d.max_abs = isnan(abs) ? INFINITY : fmax(d.max_abs, abs);
        d.max_rel = isnan(rel) ? INFINITY : fmax(d.max_rel, rel);
    }
    free(x);
    return d;
}

// Prints one line when the two tensors of one name differ; returns whether they do.
static bool diff_tensor(const char *name, const tensor *a, const tensor *b, const char *pa,
                        const char *pb) {
    char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
    shape_str(a->ndim, a->shape, sa, sizeof sa);
    shape_str(b->ndim, b->shape, sb, sizeof sb);
    if (a->dtype != b->dtype || !tensor_same_shape(a, b)) {
        printf("%s: %s %s in %s, %s %s in %s\n", name, dtype_name(a->dtype), sa, pa,
               dtype_name(b->dtype), sb, pb);
        return true;
    }
    tensor_diff d = diff_values(a, b);
    if (d.n_diff == 0) return false;
    printf("%s: %s %s, %lld of %lld elements differ, max abs %.6g, max rel %.6g\n", name,
           dtype_name(a->dtype), sa, (long long)d.n_diff, (long long)tensor_numel(a), d.max_abs,
           d.max_rel);
    return true;
}

// Lists the tensors of `from` that `other` lacks; returns how many.
static int only_in(const tensor_list *from, const tensor_list *other, const char *path) {
    int n = 0;
    for (int i = 0; i < from->n; i++)
        if (!tensor_list_find(other, from->items[i].name)) {
            printf("%s: only in %s\n", from->items[i].name, path);
            n++;
        }
    return n;
}

int cmd_diff(int argc, char **argv) {
    if (cli_check_file_args(argc, argv, 2, cmd_diff_usage)) return 2;
    tensor_list a, b;
    if (checkpoint_read(argv[1], &a, NULL) != PETAL_OK) {
        fprintf(stderr, "petal diff: %s\n", petal_error_message());
        return 2;
    }
    if (checkpoint_read(argv[2], &b, NULL) != PETAL_OK) {
        fprintf(stderr, "petal diff: %s\n", petal_error_message());
        tensor_list_free(&a);
        return 2;
    }
    int differ = 0;
    for (int i = 0; i < a.n; i++) {
        const named_tensor *other = tensor_list_find(&b, a.items[i].name);
        if (other)
            differ +=
                diff_tensor(a.items[i].name, a.items[i].value, other->value, argv[1], argv[2]);
    }
    int only_a = only_in(&a, &b, argv[1]), only_b = only_in(&b, &a, argv[2]);
    printf("%d tensors in both, %d differ; %d only in %s, %d only in %s\n", a.n - only_a, differ,
           only_a, argv[1], only_b, argv[2]);
    tensor_list_free(&a);
    tensor_list_free(&b);
    return differ || only_a || only_b ? 1 : 0;
}
