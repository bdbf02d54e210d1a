#include "autograd/gradcheck.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/autograd.h"
#include "tensor/error.h"
#include "tensor/scope.h"

// Storage position of the i-th element (row-major) of t, so perturbations reach views too.
static double *element_ptr(tensor *t, int64_t i) {
    int64_t pos = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        pos += (i % t->shape[d]) * t->strides[d];
        i /= t->shape[d];
    }
    return (double *)t->storage->data + pos;
}

// f(inputs) flattened into out (n_out doubles), with grad mode off.
static void evaluate(gradcheck_fn fn, const void *ctx, tensor **inputs, double *out) {
    bool prev = grad_mode_set(false);
    int mark = scope_begin();
    tensor_to_doubles(fn(inputs, ctx), out);
    scope_end(mark);
    grad_mode_set(prev);
}

static void compare(gradcheck_result *r, const gradcheck_options *o, double a, double n, int input,
                    int64_t elem, int64_t out) {
    double ratio = fabs(a - n) / (o->atol + o->rtol * fabs(n));
    if (!(ratio <= 1.0)) r->passed = false; // NaN fails too
    r->n_checked++;
    if (ratio > r->worst_ratio || (isnan(ratio) && !isnan(r->worst_ratio))) {
        r->worst_ratio = ratio;
        r->worst_input = input;
        r->worst_element = elem;
        r->worst_output = out;
        r->worst_analytic = a;
        r->worst_numeric = n;
    }
}

gradcheck_result gradcheck(gradcheck_fn fn, const void *ctx, int n_inputs, tensor **inputs,
                           const gradcheck_options *opt) {
    gradcheck_options o = opt ? *opt : GRADCHECK_DEFAULTS;
    gradcheck_result r = {.passed = true, .worst_input = -1};
    for (int i = 0; i < n_inputs; i++)
        PETAL_CHECK(!inputs[i]->requires_grad ||
                        (inputs[i]->dtype == PETAL_F64 && inputs[i]->device.type == PETAL_CPU),
                    "gradcheck: input %d must be an f64 CPU tensor", i);
    int mark = scope_begin();
    tensor *y = fn(inputs, ctx);
    PETAL_CHECK(y->dtype == PETAL_F64 && y->requires_grad,
                "gradcheck: the output must be f64 and depend on an input that requires grad");
    int64_t n_out = tensor_numel(y);
    // analytic[i][e * n_out + j] = d out_j / d input_i[e]
    double **analytic = calloc((size_t)n_inputs, sizeof *analytic);
    PETAL_CHECK(analytic != NULL, "gradcheck: out of host memory");
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i]->requires_grad) {
            analytic[i] = calloc((size_t)(tensor_numel(inputs[i]) * n_out + 1), sizeof(double));
            PETAL_CHECK(analytic[i] != NULL, "gradcheck: out of host memory");
        }
    tensor *seed = tensor_zeros_like(y);
    for (int64_t j = 0; j < n_out; j++) {
        for (int i = 0; i < n_inputs; i++) tensor_reset_grad(inputs[i]);
        *element_ptr(seed, j) = 1.0;
        autograd_backward(y, seed, true);
        *element_ptr(seed, j) = 0.0;
        for (int i = 0; i < n_inputs; i++) {
            if (!analytic[i] || !inputs[i]->grad) continue;
            for (int64_t e = 0; e < tensor_numel(inputs[i]); e++)
                analytic[i][e * n_out + j] = tensor_get_flat(inputs[i]->grad, e);
        }
    }
    for (int i = 0; i < n_inputs; i++) tensor_reset_grad(inputs[i]);
    double *plus = malloc((size_t)(n_out + 1) * sizeof *plus);
    double *minus = malloc((size_t)(n_out + 1) * sizeof *minus);
    PETAL_CHECK(plus && minus, "gradcheck: out of host memory");
    for (int i = 0; i < n_inputs; i++) {
        if (!analytic[i]) continue;
        int64_t numel = tensor_numel(inputs[i]);
        int64_t picks = o.max_per_input > 0 && o.max_per_input < numel ? o.max_per_input : numel;
        for (int64_t k = 0; k < picks; k++) {
            int64_t e = k * numel / picks;
            double *x = element_ptr(inputs[i], e), saved = *x;
            // Each write bumps the version, so caches keyed on it (petl/cp.c) see the change.
            *x = saved + o.eps;
            tensor_bump_version(inputs[i]);
            evaluate(fn, ctx, inputs, plus);
            *x = saved - o.eps;
            tensor_bump_version(inputs[i]);
            evaluate(fn, ctx, inputs, minus);
            *x = saved;
            tensor_bump_version(inputs[i]);
            for (int64_t j = 0; j < n_out; j++)
                compare(&r, &o, analytic[i][e * n_out + j], (plus[j] - minus[j]) / (2 * o.eps), i,
                        e, j);
        }
        free(analytic[i]);
    }
    free(analytic);
    free(plus);
    free(minus);
    scope_end(mark);
    return r;
}

void gradcheck_describe(const gradcheck_result *r, char *buf, size_t size) {
    if (r->passed) {
        snprintf(buf, size, "passed (%" PRId64 " entries, worst ratio %.3g)", r->n_checked,
                 r->worst_ratio);
        return;
    }
    snprintf(buf, size,
             "FAILED: input %d element %" PRId64 " -> output %" PRId64
             ": analytic %.10g, numeric %.10g (ratio %.3g, %" PRId64 " entries)",
             r->worst_input, r->worst_element, r->worst_output, r->worst_analytic, r->worst_numeric,
             r->worst_ratio, r->n_checked);
}
