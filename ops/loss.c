// Cross-entropy with ignore_index, label smoothing and mean / sum / none reduction.
#include <inttypes.h>
#include <stdlib.h>

#include "ops/internal.h"
#include "ops/ops.h"

static void cross_entropy_backward(ag_node *n, tensor *g, tensor **gin) {
    tensor *logits = ag_saved(n, 0), *lse = ag_saved(n, 1), *target = ag_saved(n, 2);
    tensor *gc = view_contiguous(g);
    tensor *gx = tensor_empty_like(logits);
    backend_of(gx)->cross_entropy_backward(gx, gc, logits, lse, target, n->attr_i[0], n->attr_f[0]);
    tensor_free(gc);
    gin[0] = gx;
}

// Per-row losses (N): the differentiable core; reductions are ordinary ops on top of it.
static tensor *cross_entropy_rows(tensor *logits, tensor *target, int64_t ignore_index,
                                  double smoothing) {
    tensor *lc = view_contiguous(logits), *tc = view_contiguous(target);
    int64_t rows = logits->shape[0];
    tensor *loss = tensor_empty_on(logits->device, logits->dtype, SHAPE(rows));
    tensor *lse = tensor_empty_on(logits->device, logits->dtype, SHAPE(rows));
    backend_of(loss)->cross_entropy(loss, lse, lc, tc, ignore_index, smoothing);
    ag_node *n = ag_record("cross_entropy", cross_entropy_backward, loss, 1, &logits);
    if (n) {
        ag_save(n, 0, lc);
        ag_save(n, 1, lse);
        ag_save(n, 2, tc);
        n->attr_i[0] = ignore_index;
        n->attr_f[0] = smoothing;
    }
    tensor_free(lc);
    tensor_free(tc);
    tensor_free(lse);
    return loss;
}

static int64_t count_targets(const tensor *target, int64_t ignore_index) {
    int64_t n = tensor_numel(target), count = 0;
    double *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    PETAL_CHECK(ids != NULL, "tensor_cross_entropy: out of host memory");
    tensor_to_doubles(target, ids); // one transfer, whatever the device
    for (int64_t i = 0; i < n; i++) count += (int64_t)ids[i] != ignore_index;
    free(ids);
    return count;
}

tensor *tensor_cross_entropy(tensor *logits, tensor *target, const cross_entropy_options *opt) {
    const char *op = "tensor_cross_entropy";
    cross_entropy_options o = opt ? *opt : CROSS_ENTROPY_DEFAULTS;
    ops_check_float(op, logits);
    ops_check_index(op, logits, target);
    char sl[SHAPE_STR_MAX], st[SHAPE_STR_MAX];
    PETAL_CHECK(logits->ndim == 2 && target->ndim == 1 && target->shape[0] == logits->shape[0],
                "%s: expects logits (N, C) and targets (N), got %s and %s", op,
                shape_str(logits->ndim, logits->shape, sl, sizeof sl),
                shape_str(target->ndim, target->shape, st, sizeof st));
    PETAL_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1,
                "%s: label_smoothing %g outside [0, 1]", op, o.label_smoothing);
    tensor *rows = cross_entropy_rows(logits, target, o.ignore_index, o.label_smoothing);
    if (o.reduction == REDUCTION_NONE) return rows;
    tensor *total = tensor_sum_all(rows);
    tensor_free(rows);
    if (o.reduction == REDUCTION_SUM) return total;
    // The mean runs over the targets that count (torch's convention; all ignored gives NaN).
    tensor *mean = tensor_div_scalar(total, (double)count_targets(target, o.ignore_index));
    tensor_free(total);
    return mean;
}
