// train/: AdamW against its formula, a 200-step loop whose memory stays flat, and bitwise
// reproducible losses from a seed.
#include <math.h>
#include <string.h>

#include "petal.h"
#include "tests/test_util.h"

// torch.optim.AdamW, written out: decoupled decay, then the bias-corrected Adam step.
static void adamw_reference(double *p, double g, double *m, double *v, int step, adamw_config c,
                            bool decay) {
    *p *= 1 - c.lr * (decay ? c.weight_decay : 0);
    *m = c.beta1 * *m + (1 - c.beta1) * g;
    *v = c.beta2 * *v + (1 - c.beta2) * g * g;
    double bc1 = 1 - pow(c.beta1, step), bc2 = 1 - pow(c.beta2, step);
    *p -= c.lr / bc1 * *m / (sqrt(*v) / sqrt(bc2) + c.eps);
}

START_TEST(test_adamw_matches_formula) {
    adamw_config cfg = {0.01, 0.9, 0.99, 1e-8, 0.1};
    tensor *w = tensor_set_requires_grad(
        tensor_from_data(PETAL_F64, SHAPE(3), (double[]){0.5, -1, 2}), true);
    tensor *b =
        tensor_set_requires_grad(tensor_from_data(PETAL_F64, SHAPE(1), (double[]){0.25}), true);
    optim_adamw *opt = adamw_new((tensor *[]){w, b}, 2, cfg);
    adamw_set_decay(opt, 1, false);
    double pw[3] = {0.5, -1, 2}, mw[3] = {0}, vw[3] = {0}, pb = 0.25, mb = 0, vb = 0;
    for (int step = 1; step <= 5; step++) {
        int mark = scope_begin();
        // loss = sum(w^3) + 3 b^2: gradients 3 w^2 and 6 b
        tensor *loss = tensor_add(tensor_sum_all(tensor_pow_scalar(w, 3)),
                                  tensor_mul_scalar(tensor_sum_all(tensor_mul(b, b)), 3));
        autograd_backward(loss, NULL, false);
        for (int i = 0; i < 3; i++)
            adamw_reference(&pw[i], 3 * pw[i] * pw[i], &mw[i], &vw[i], step, cfg, true);
        adamw_reference(&pb, 6 * pb, &mb, &vb, step, cfg, false);
        adamw_step(opt);
        adamw_zero_grad(opt);
        scope_end(mark);
        ck_assert(tensor_close("w", w, pw, 1e-14, 1e-12));
        ck_assert(tensor_close("b", b, &pb, 1e-14, 1e-12));
    }
    adamw_free(opt);
    tensor_free(w);
    tensor_free(b);
}
END_TEST

typedef struct {
    tensor *w1, *b1, *w2, *b2;
    optim_adamw *opt;
    tensor *x, *y;
} tiny_trainer;

static tiny_trainer trainer_new(uint64_t seed) {
    tiny_trainer t;
    rng_generator g = {seed, 0};
    t.w1 = tensor_keep(tensor_empty(PETAL_F32, SHAPE(32, 4)));
    t.b1 = tensor_keep(tensor_zeros(PETAL_F32, SHAPE(32)));
    t.w2 = tensor_keep(tensor_empty(PETAL_F32, SHAPE(3, 32)));
    t.b2 = tensor_keep(tensor_zeros(PETAL_F32, SHAPE(3)));
    init_kaiming_uniform_(t.w1, sqrt(5.0), &g);
    init_kaiming_uniform_(t.w2, sqrt(5.0), &g);
    tensor *ps[] = {t.w1, t.b1, t.w2, t.b2};
    for (int i = 0; i < 4; i++) tensor_set_requires_grad(ps[i], true);
    t.opt = adamw_new(ps, 4, ADAMW_DEFAULTS);
    t.x = tensor_keep(tensor_empty(PETAL_F32, SHAPE(64, 4)));
    tensor_normal_(t.x, 0, 1, &g);
    t.y = tensor_keep(tensor_empty(PETAL_I64, SHAPE(64)));
    for (int i = 0; i < 64; i++) // a learnable rule: the class is the sign pattern of x0, x1
        tensor_data_i64(t.y)[i] =
            (tensor_data_f32(t.x)[4 * i] > 0) + (tensor_data_f32(t.x)[4 * i + 1] > 0);
    return t;
}

// One step in its own scope, with dropout so the random stream is exercised too.
static double trainer_step(tiny_trainer *t, rng_generator *g) {
    int mark = scope_begin();
    tensor *h = tensor_dropout(tensor_gelu(tensor_linear(t->x, t->w1, t->b1)), 0.1, true, g);
    h = tensor_layer_norm(h, NULL, NULL, 1e-5);
    tensor *loss = tensor_cross_entropy(tensor_linear(h, t->w2, t->b2), t->y, NULL);
    autograd_backward(loss, NULL, false);
    adamw_step(t->opt);
    adamw_zero_grad(t->opt);
    double value = tensor_item(loss);
    scope_end(mark);
    return value;
}

static void trainer_free(tiny_trainer *t) {
    adamw_free(t->opt);
    tensor *all[] = {t->w1, t->b1, t->w2, t->b2, t->x, t->y};
    for (int i = 0; i < 6; i++) tensor_free(all[i]);
}

START_TEST(test_200_steps_memory_is_flat) {
    tiny_trainer t = trainer_new(1);
    rng_generator g = {2, 0};
    size_t current_after_first = 0, peak_of_second = 0;
    int64_t live_after_first = 0;
    double first = 0, last = 0;
    for (int step = 1; step <= 200; step++) {
        memory_reset_peak(DEVICE_CPU);
        double loss = trainer_step(&t, &g);
        memory_stats st = memory_get_stats(DEVICE_CPU);
        if (step == 1) {
            first = loss;
            current_after_first = st.current; // parameters, gradients and AdamW state
            live_after_first = st.n_live;
        }
        if (step == 2) peak_of_second = st.peak;
        ck_assert_uint_eq(st.current, current_after_first);
        ck_assert_int_eq((int)st.n_live, (int)live_after_first);
        if (step >= 2) ck_assert_uint_eq(st.peak, peak_of_second);
        last = loss;
    }
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g: training did not progress", first, last);
    trainer_free(&t);
    memory_stats end = memory_get_stats(DEVICE_CPU);
    ck_assert_uint_eq(end.current, 0);
    ck_assert_int_eq((int)end.n_live, 0);
}
END_TEST

START_TEST(test_same_seed_same_losses) {
    double losses[2][50];
    for (int run = 0; run < 2; run++) {
        tiny_trainer t = trainer_new(7);
        rng_generator g = {8, 0};
        for (int step = 0; step < 50; step++) losses[run][step] = trainer_step(&t, &g);
        trainer_free(&t);
    }
    ck_assert_mem_eq(losses[0], losses[1], sizeof losses[0]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_with_timeout("optim", 60);
    tcase_add_test(tc, test_adamw_matches_formula);
    tcase_add_test(tc, test_200_steps_memory_is_flat);
    tcase_add_test(tc, test_same_seed_same_losses);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
