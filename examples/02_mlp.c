// 02_mlp: a small MLP learns to separate two interleaved spirals, trained with AdamW.
//
//   usage: 02_mlp [--steps N] [--hidden H] [--lr LR] [--seed S]
//
// The data are generated here (points on two spirals plus Gaussian noise), split into train and
// test halves. Each step runs forward, cross-entropy, backward and an AdamW update inside one
// scope, so every intermediate tensor is released when the step ends.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"

typedef struct {
    tensor *w1, *b1, *w2, *b2, *w3, *b3;
} mlp;

static tensor *param(int ndim, const int64_t *shape) {
    return tensor_set_requires_grad(tensor_keep(tensor_empty(PETAL_F32, ndim, shape)), true);
}

// nn.Linear's initialisation: kaiming-uniform(a = sqrt 5) weights, U(+-1/sqrt(fan_in)) biases.
static void init_linear(tensor *w, tensor *b) {
    init_kaiming_uniform_(w, sqrt(5.0), NULL);
    double bound = 1.0 / sqrt((double)w->shape[1]);
    tensor_uniform_(b, -bound, bound, NULL);
}

static mlp mlp_new(int64_t hidden) {
    mlp m = {param(SHAPE(hidden, 2)), param(SHAPE(hidden)),    param(SHAPE(hidden, hidden)),
             param(SHAPE(hidden)),    param(SHAPE(2, hidden)), param(SHAPE(2))};
    init_linear(m.w1, m.b1);
    init_linear(m.w2, m.b2);
    init_linear(m.w3, m.b3);
    return m;
}

static tensor *mlp_forward(const mlp *m, tensor *x) {
    tensor *h = tensor_gelu(tensor_linear(x, m->w1, m->b1));
    h = tensor_gelu(tensor_linear(h, m->w2, m->b2));
    return tensor_linear(h, m->w3, m->b3); // logits (N, 2)
}

// n points per class on two spirals, shuffled into x (2n, 2) and labels y (2n).
static void make_spirals(int64_t n, tensor **x, tensor **y) {
    tensor *noise = tensor_empty(PETAL_F64, SHAPE(2 * n, 2));
    tensor *order = tensor_empty(PETAL_F64, SHAPE(2 * n));
    tensor_normal_(noise, 0.0, 0.04, NULL);
    tensor_uniform_(order, 0.0, 1.0, NULL);
    int64_t *perm = malloc((size_t)(2 * n) * sizeof *perm);
    for (int64_t i = 0; i < 2 * n; i++) perm[i] = i;
    for (int64_t i = 2 * n - 1; i > 0; i--) { // Fisher-Yates from the uniform draws
        int64_t j = (int64_t)(tensor_data_f64(order)[i] * (double)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    *x = tensor_empty(PETAL_F32, SHAPE(2 * n, 2));
    *y = tensor_empty(PETAL_I64, SHAPE(2 * n));
    for (int64_t i = 0; i < 2 * n; i++) {
        int64_t label = i % 2, k = i / 2;
        double r = 0.2 + 0.8 * (double)k / (double)n, angle = 3.5 * M_PI * (double)k / (double)n;
        angle += label * M_PI;
        int64_t row = perm[i];
        tensor_data_f32(*x)[2 * row] = (float)(r * cos(angle) + tensor_data_f64(noise)[2 * i]);
        tensor_data_f32(*x)[2 * row + 1] =
            (float)(r * sin(angle) + tensor_data_f64(noise)[2 * i + 1]);
        tensor_data_i64(*y)[row] = label;
    }
    free(perm);
    tensor_free(noise);
    tensor_free(order);
}

static double accuracy(const mlp *m, tensor *x, tensor *y) {
    bool prev = grad_mode_set(false);
    int mark = scope_begin();
    tensor *pred = tensor_argmax(mlp_forward(m, x), 1, false);
    int64_t n = tensor_numel(y), right = 0;
    for (int64_t i = 0; i < n; i++) right += tensor_data_i64(pred)[i] == tensor_data_i64(y)[i];
    scope_end(mark);
    grad_mode_set(prev);
    return (double)right / (double)n;
}

int main(int argc, char **argv) {
    threads_reexec(); // OpenBLAS's kernels and libgomp's spin set before they load
                      // (tensor/threads.h)
    long steps = 600, hidden = 64, seed = 0;
    double lr = 1e-2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0)
            steps = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--hidden") == 0)
            hidden = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--lr") == 0)
            lr = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: 02_mlp [--steps N] [--hidden H] [--lr LR] [--seed S]\n");
            return 2;
        }
    }
    rng_manual_seed((uint64_t)seed);
    tensor *x, *y, *x_test, *y_test;
    make_spirals(400, &x, &y);
    make_spirals(200, &x_test, &y_test);
    mlp m = mlp_new(hidden);
    tensor *params[] = {m.w1, m.b1, m.w2, m.b2, m.w3, m.b3};
    optim_adamw *opt = adamw_new(params, 6, (adamw_config){lr, 0.9, 0.999, 1e-8, 1e-4});
    printf("two spirals: %lld train / %lld test points, MLP 2-%ld-%ld-2, AdamW lr %g\n",
           (long long)x->shape[0], (long long)x_test->shape[0], hidden, hidden, lr);
    for (long step = 1; step <= steps; step++) {
        int mark = scope_begin();
        tensor *loss = tensor_cross_entropy(mlp_forward(&m, x), y, NULL);
        autograd_backward(loss, NULL, false);
        adamw_step(opt);
        adamw_zero_grad(opt);
        if (step == 1 || step % 100 == 0) printf("step %4ld  loss %.4f\n", step, tensor_item(loss));
        scope_end(mark);
    }
    double train_acc = accuracy(&m, x, y), test_acc = accuracy(&m, x_test, y_test);
    printf("accuracy: train %.1f%%, test %.1f%%\n", 100 * train_acc, 100 * test_acc);
    memory_stats mem = memory_get_stats(DEVICE_CPU);
    printf("memory: %zu bytes in use, peak %zu\n", mem.current, mem.peak);
    adamw_free(opt);
    for (int i = 0; i < 6; i++) tensor_free(params[i]);
    tensor_free(x);
    tensor_free(y);
    tensor_free(x_test);
    tensor_free(y_test);
    return test_acc > 0.9 ? 0 : 1;
}
