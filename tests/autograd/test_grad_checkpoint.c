// autograd/checkpoint: ag_checkpoint through f64 gradcheck (with a dropout mask the recompute must
// replay, an input that needs a gradient and one that does not), the plain-call cases, the
// generator position, a stale input; the ViT's first ckpt_layers blocks (drop path, every weight
// trainable, images requiring grad) and Aurora on a tiny BLIP retrieval model giving bit-identical
// losses and gradients for ckpt_layers 0, 1 and depth; and the peak memory checkpointing saves.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "models/blip/retrieval.h"
#include "models/blip/vit.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tests/test_util.h"

// ---- helpers ----

static tensor *random_tensor(petal_dtype dtype, int ndim, const int64_t *shape, uint64_t seed) {
    tensor *t = tensor_empty(dtype, ndim, shape);
    tensor_normal_(t, 0, 1, &(rng_generator){seed, 0});
    return t;
}

// Nodes named `op` in the graph behind t, each counted once.
static int count_nodes(const tensor *t, const char *op) {
    enum { MAX_NODES = 4096 };
    static ag_node *seen[MAX_NODES], *stack[MAX_NODES];
    int n_seen = 0, top = 0, count = 0;
    if (t->grad_fn) stack[top++] = t->grad_fn;
    while (top > 0) {
        ag_node *n = stack[--top];
        bool visited = false;
        for (int i = 0; i < n_seen && !visited; i++) visited = seen[i] == n;
        if (visited) continue;
        ck_assert_int_lt(n_seen, MAX_NODES);
        seen[n_seen++] = n;
        count += strcmp(n->op, op) == 0;
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i].node) {
                ck_assert_int_lt(top, MAX_NODES);
                stack[top++] = n->in[i].node;
            }
    }
    return count;
}

// Exact equality, element by element (or both NULL); on a mismatch prints the worst element.
static void check_identical(const char *what, const tensor *got, const tensor *want) {
    ck_assert_msg((got == NULL) == (want == NULL), "%s: gradient missing (got %p, want %p)", what,
                  (void *)got, (void *)want);
    if (!want) return;
    ck_assert_int_eq(tensor_numel(got), tensor_numel(want));
    int64_t worst = -1, differing = 0;
    double worst_diff = 0;
    for (int64_t i = 0; i < tensor_numel(want); i++) {
        double a = tensor_get_flat(got, i), b = tensor_get_flat(want, i);
        if (a == b) continue;
        differing++;
        if (worst < 0 || fabs(a - b) > worst_diff || isnan(a - b)) {
            worst = i;
            worst_diff = fabs(a - b);
        }
    }
    ck_assert_msg(differing == 0, "%s: %lld of %lld elements differ; worst [%lld] %.9g vs %.9g",
                  what, (long long)differing, (long long)tensor_numel(want), (long long)worst,
                  worst < 0 ? 0 : tensor_get_flat(got, worst),
                  worst < 0 ? 0 : tensor_get_flat(want, worst));
}

static bool any_nonzero(const tensor *t) {
    for (int64_t i = 0; i < tensor_numel(t); i++)
        if (tensor_get_flat(t, i) != 0) return true;
    return false;
}

// Takes t's gradient out of t: the caller owns it (NULL if none reached t).
static tensor *take_grad(tensor *t) {
    tensor *g = t->grad;
    t->grad = NULL;
    return g;
}

// ---- ag_checkpoint on a small function: y = dropout(tanh(x W^T), 0.5), W read through ctx ----

typedef struct {
    tensor *w;
} small_ctx;

static tensor *small_fn(const void *ctx, tensor *x, rng_generator *rng) {
    const small_ctx *c = ctx;
    tensor *h = tensor_linear(x, c->w, NULL);
    tensor *t = tensor_tanh(h);
    tensor_free(h);
    tensor *y = tensor_dropout(t, 0.5, true, rng);
    tensor_free(t);
    return y;
}

// in[0] x (3, 4), in[1] W (4, 4): x * checkpoint(small_fn)(x), so x also gets a gradient from
// outside the checkpoint. A fresh generator per call: every evaluation draws the same mask.
static tensor *small_case(tensor **in, const void *unused) {
    (void)unused;
    rng_generator g = {7, 3};
    small_ctx c = {in[1]};
    tensor *y = ag_checkpoint(small_fn, &c, sizeof c, in[0], &g);
    if (grad_mode_enabled())
        ck_assert_int_eq(count_nodes(y, "checkpoint"), y->requires_grad ? 1 : 0);
    tensor *out = tensor_mul(y, in[0]);
    tensor_free(y);
    return out;
}

static void gradcheck_small(bool x_needs_grad, const char *what) {
    int mark = scope_begin();
    tensor *x = random_tensor(PETAL_F64, SHAPE(3, 4), 1);
    tensor *w = tensor_set_requires_grad(random_tensor(PETAL_F64, SHAPE(4, 4), 2), true);
    tensor_set_requires_grad(x, x_needs_grad);
    gradcheck_result r = gradcheck(small_case, NULL, 2, (tensor *[]){x, w}, NULL);
    char line[256];
    gradcheck_describe(&r, line, sizeof line);
    printf("gradcheck ag_checkpoint, %s: %s\n", what, line);
    ck_assert_msg(r.passed, "%s: %s", what, line);
    scope_end(mark);
}

START_TEST(test_gradcheck_x_and_parameter) {
    gradcheck_small(true, "x and W require grad");
}
END_TEST

// x frozen: only W needs a gradient, which the node must still carry (through its stand-in).
START_TEST(test_gradcheck_parameter_only) {
    gradcheck_small(false, "only W requires grad");
}
END_TEST

// sum(small_fn(x)) from generator {seed, 0}, plain or checkpointed, with more draws between the
// forward and the backward (the rest of a training step); returns the generator's offset after
// the forward and takes the gradients of x and W.
static uint64_t small_step(small_ctx *c, tensor *x, uint64_t seed, bool ckpt, tensor **grads) {
    rng_generator g = {seed, 0};
    tensor *y = ckpt ? ag_checkpoint(small_fn, c, sizeof *c, x, &g) : small_fn(c, x, &g);
    uint64_t offset = g.offset;
    tensor_normal_(tensor_empty(PETAL_F32, SHAPE(1024)), 0, 1, &g);
    autograd_backward(tensor_sum_all(y), NULL, false);
    grads[0] = take_grad(x);
    grads[1] = take_grad(c->w);
    return offset;
}

// The recompute draws the mask the forward drew, though the generator has moved on by then (a
// backward that read its current state would get another mask: another seed shows that the mask
// changes the gradients), and after the forward the generator stands where the plain call leaves
// it.
START_TEST(test_dropout_mask_replayed_and_generator_position_kept) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(64, 16), 3), true);
    small_ctx c = {tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(16, 16), 4), true)};
    tensor *plain[2], *ckpt[2], *other[2];
    uint64_t plain_offset = small_step(&c, x, 9, false, plain);
    ck_assert_uint_eq(small_step(&c, x, 9, true, ckpt), plain_offset);
    check_identical("x gradient", ckpt[0], plain[0]);
    check_identical("W gradient", ckpt[1], plain[1]);
    small_step(&c, x, 10, true, other);
    int64_t moved = 0;
    for (int64_t i = 0; i < tensor_numel(plain[1]); i++)
        moved += tensor_get_flat(other[1], i) != tensor_get_flat(plain[1], i);
    ck_assert_int_gt(moved, tensor_numel(plain[1]) / 2);
    for (int i = 0; i < 2; i++) {
        tensor_free(plain[i]);
        tensor_free(ckpt[i]);
        tensor_free(other[i]);
    }
    scope_end(mark);
}
END_TEST

START_TEST(test_plain_call_without_grad) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(4, 8), 5), true);
    tensor *frozen = random_tensor(PETAL_F32, SHAPE(4, 8), 6);
    tensor *w = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(8, 8), 7), true);
    small_ctx c = {w};
    rng_generator g = {1, 0}, plain = {1, 0};
    tensor_free(small_fn(&c, x, &plain));
    bool prev = grad_mode_set(false); // evaluation: no node, no requires_grad
    tensor *y = ag_checkpoint(small_fn, &c, sizeof c, x, &g);
    grad_mode_set(prev);
    ck_assert_ptr_null(y->grad_fn);
    ck_assert(!y->requires_grad);
    ck_assert_uint_eq(g.offset, plain.offset);
    tensor_set_requires_grad(w, false); // nothing fn computes needs a gradient
    tensor *z = ag_checkpoint(small_fn, &c, sizeof c, frozen, &g);
    ck_assert_ptr_null(z->grad_fn);
    ck_assert(!z->requires_grad);
    ck_assert_uint_eq(g.offset, 2 * plain.offset);
    scope_end(mark);
}
END_TEST

static void backward_after_in_place_write(void) {
    int mark = scope_begin();
    tensor *x = tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(2, 4), 8), true);
    tensor *h = tensor_mul_scalar(x, 2.0);
    small_ctx c = {tensor_set_requires_grad(random_tensor(PETAL_F32, SHAPE(4, 4), 9), true)};
    tensor *y = ag_checkpoint(small_fn, &c, sizeof c, h, NULL);
    tensor_fill_(h, 0.0);
    autograd_backward(tensor_sum_all(y), NULL, false);
    scope_end(mark);
}

START_TEST(test_stale_input_is_reported) {
    ck_assert(aborts_with(backward_after_in_place_write, "written in place after the forward"));
}
END_TEST

// ---- the ViT: every weight trainable, images requiring grad, drop path in training mode ----

typedef struct {
    param_registry *r;
    vit_model vit;
    tensor *images;    // (B, 3, S, S), requires grad
    tensor *direction; // (B, N + 1, D): the loss is the output projected on it
} vit_env;

static void vit_env_init(vit_env *e, const vit_config *cfg, int64_t batch) {
    e->r = registry_new();
    rng_generator g = {42, 0};
    nn_builder b = {e->r, &g, PETAL_F32, false};
    vit_init(&e->vit, &b, "visual_encoder", cfg);
    registry_set_trainable(e->r, "*", true);
    int64_t s = cfg->image_size, tokens = (s / cfg->patch) * (s / cfg->patch) + 1;
    e->images = tensor_keep(random_tensor(PETAL_F32, SHAPE(batch, 3, s, s), 1));
    tensor_set_requires_grad(e->images, true);
    e->direction = tensor_keep(random_tensor(PETAL_F32, SHAPE(batch, tokens, cfg->width), 2));
}

static void vit_env_free(vit_env *e) {
    tensor_free(e->images);
    tensor_free(e->direction);
    vit_free(&e->vit);
    registry_free(e->r);
}

// What one training step computed: the loss, the images' gradient, then every parameter's in
// registry order (owned), the checkpoint nodes on the tape and the generator's final offset.
typedef struct {
    tensor *values[160];
    int n, checkpoints;
    uint64_t rng_offset;
} step_result;

static void step_result_free(step_result *s) {
    for (int i = 0; i < s->n; i++) tensor_free(s->values[i]);
}

static step_result vit_step(vit_env *e, int64_t ckpt_layers) {
    step_result res = {.n = 0};
    e->vit.cfg.ckpt_layers = ckpt_layers;
    rng_generator g = {11, 0};
    nn_ctx train = {true, &g};
    int mark = scope_begin();
    tensor *loss =
        tensor_sum_all(tensor_mul(vit_forward(&e->vit, e->images, &train), e->direction));
    res.checkpoints = count_nodes(loss, "checkpoint");
    res.rng_offset = g.offset;
    autograd_backward(loss, NULL, false);
    res.values[res.n++] = tensor_keep(tensor_clone_data(loss));
    res.values[res.n++] = take_grad(e->images);
    for (int i = 0; i < e->r->n; i++) {
        ck_assert_int_lt(res.n, 160);
        res.values[res.n++] = take_grad(e->r->items[i].value);
    }
    scope_end(mark);
    return res;
}

// Bit-identical: the recompute runs the same kernels on the same values, and each gradient's
// contributions arrive in the same order (the checkpoint node sits where the block's nodes sat on
// the tape, and the block's own nodes replay in their order inside it).
static void check_same_step(const step_result *got, const step_result *want, const char *what,
                            const param_registry *r) {
    char label[320];
    ck_assert_int_eq(got->n, want->n);
    ck_assert_uint_eq(got->rng_offset, want->rng_offset);
    for (int i = 0; i < want->n; i++) {
        const char *name = i == 0 ? "loss" : i == 1 ? "images.grad" : r->items[i - 2].name;
        snprintf(label, sizeof label, "%s: %s", what, name);
        check_identical(label, got->values[i], want->values[i]);
    }
}

START_TEST(test_vit_gradients_identical) {
    vit_config cfg = {.image_size = 32,
                      .patch = 8,
                      .width = 16,
                      .depth = 3,
                      .heads = 2,
                      .mlp = 32,
                      .eps = 1e-6,
                      .drop_path = 0.5};
    vit_env e;
    vit_env_init(&e, &cfg, 4);
    step_result plain = vit_step(&e, 0);
    ck_assert_int_eq(plain.checkpoints, 0);
    for (int i = 0; i < plain.n; i++) {
        ck_assert_ptr_nonnull(plain.values[i]);
        ck_assert_msg(any_nonzero(plain.values[i]), "value %d is all zeros", i);
    }
    const int64_t layers[] = {1, cfg.depth};
    for (int k = 0; k < 2; k++) {
        step_result ckpt = vit_step(&e, layers[k]);
        ck_assert_int_eq(ckpt.checkpoints, (int)layers[k]);
        char what[64];
        snprintf(what, sizeof what, "ckpt_layers %lld", (long long)layers[k]);
        check_same_step(&ckpt, &plain, what, e.r);
        step_result_free(&ckpt);
    }
    step_result_free(&plain);
    vit_env_free(&e);
}
END_TEST

// Checkpointing is for training: in eval mode the blocks are plain calls even with grad on.
START_TEST(test_vit_eval_is_plain) {
    vit_config cfg = {.image_size = 16,
                      .patch = 8,
                      .width = 8,
                      .depth = 2,
                      .heads = 2,
                      .mlp = 16,
                      .eps = 1e-6,
                      .ckpt_layers = 2};
    vit_env e;
    vit_env_init(&e, &cfg, 2);
    int mark = scope_begin();
    const nn_ctx eval = NN_EVAL;
    tensor *y = vit_forward(&e.vit, e.images, &eval);
    ck_assert(y->requires_grad);
    ck_assert_int_eq(count_nodes(y, "checkpoint"), 0);
    scope_end(mark);
    vit_env_free(&e);
}
END_TEST

// Peak bytes of one training step (forward and backward) above what was live before it.
static size_t vit_step_peak(vit_env *e, int64_t ckpt_layers) {
    size_t before = memory_get_stats(DEVICE_CPU).current;
    memory_reset_peak(DEVICE_CPU);
    step_result s = vit_step(e, ckpt_layers);
    size_t peak = memory_get_stats(DEVICE_CPU).peak - before;
    step_result_free(&s);
    ck_assert_uint_eq(memory_get_stats(DEVICE_CPU).current, before); // the sub-graphs were freed
    return peak;
}

START_TEST(test_vit_peak_memory_lower) {
    vit_config cfg = {.image_size = 64,
                      .patch = 8,
                      .width = 64,
                      .depth = 6,
                      .heads = 4,
                      .mlp = 256,
                      .eps = 1e-6,
                      .drop_path = 0.1};
    vit_env e;
    vit_env_init(&e, &cfg, 4);
    size_t plain = vit_step_peak(&e, 0), half = vit_step_peak(&e, 3), all = vit_step_peak(&e, 6);
    printf("ViT width 64, depth 6, 65 tokens, batch 4: step peak above the parameters "
           "%.2f MB plain, %.2f MB with 3 blocks checkpointed, %.2f MB with 6\n",
           plain / 1e6, half / 1e6, all / 1e6);
    ck_assert_msg(half < plain && all < half, "peaks %zu, %zu, %zu", plain, half, all);
    vit_env_free(&e);
}
END_TEST

// ---- Aurora on a tiny BLIP retrieval model: the CP deltas run inside the recomputed blocks ----

static step_result aurora_step(blip_model *m, int64_t ckpt_layers) {
    step_result res = {.n = 0};
    m->vit.cfg.ckpt_layers = ckpt_layers;
    rng_generator g = {13, 0};
    nn_ctx train = {true, &g};
    static const int64_t neg_img[] = {1, 0}, neg_txt[] = {1, 0};
    retrieval_options o = {
        .alpha = 0.4, .rng = &g, .neg_image_for_text = neg_img, .neg_text_for_image = neg_txt};
    int mark = scope_begin();
    tensor *images = random_tensor(PETAL_F32, SHAPE(2, 3, 32, 32), 4);
    tensor *ids = tensor_from_data(PETAL_I64, SHAPE(2, 6),
                                   (int64_t[]){1, 9, 17, 33, 2, 0, 1, 40, 41, 42, 43, 2});
    tensor *mask =
        tensor_from_data(PETAL_F32, SHAPE(2, 6), (float[]){1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1});
    tensor *image_ids = tensor_from_data(PETAL_I64, SHAPE(2), (int64_t[]){3, 4});
    retrieval_losses l = blip_retrieval_losses(m, images, ids, mask, image_ids, &o, &train);
    tensor *loss = tensor_add(l.ita, l.itm);
    res.checkpoints = count_nodes(loss, "checkpoint");
    res.rng_offset = g.offset;
    autograd_backward(loss, NULL, false);
    res.values[res.n++] = tensor_keep(tensor_clone_data(loss));
    res.values[res.n++] = NULL; // no image gradient: keeps check_same_step's numbering
    for (int i = 0; i < m->registry->n; i++)
        if (m->registry->items[i].trainable) {
            ck_assert_int_lt(res.n, 160);
            res.values[res.n++] = take_grad(m->registry->items[i].value);
        }
    scope_end(mark);
    return res;
}

START_TEST(test_aurora_cp_gradients_identical) {
    blip_config cfg = blip_config_tiny(BLIP_RETRIEVAL);
    cfg.momentum = false;
    cfg.vision.drop_path = 0.3;
    blip_model *m = blip_new(&cfg, PETAL_F32, 3);
    petl_config pc = petl_config_aurora(PETL_PAPER, 4);
    pc.cp.dropout = 0.2; // masks inside the recomputed deltas too
    petl_handle *h = petl_attach(m, &pc);
    ck_assert_msg(h != NULL, "%s", petal_error_message());
    // CP_V starts at zero, which would leave P and the lambdas without a gradient.
    tensor_normal_(registry_get(m->registry, "CP_V"), 0, 0.3, &(rng_generator){5, 0});
    step_result plain = aurora_step(m, 0);
    ck_assert_int_eq(plain.checkpoints, 0);
    // Only the trainable entries were taken, in registry order: name them for messages.
    param_registry names = {.n = 0};
    param_entry entries[64];
    for (int i = 0; i < m->registry->n; i++)
        if (m->registry->items[i].trainable) entries[names.n++] = m->registry->items[i];
    names.items = entries;
    int cp = 0;
    for (int i = 0; i < names.n; i++) {
        if (strncmp(entries[i].name, "CP_", 3) != 0) continue;
        cp++;
        ck_assert_msg(plain.values[i + 2] && any_nonzero(plain.values[i + 2]), "%s has no gradient",
                      entries[i].name);
    }
    ck_assert_int_ge(cp, 4); // U, V, P and the lambdas
    const int64_t layers[] = {1, cfg.vision.depth};
    for (int k = 0; k < 2; k++) {
        step_result ckpt = aurora_step(m, layers[k]);
        // The first block's input is frozen: its node is recorded through the stand-in leaf.
        ck_assert_int_eq(ckpt.checkpoints, (int)layers[k]);
        char what[64];
        snprintf(what, sizeof what, "aurora, ckpt_layers %lld", (long long)layers[k]);
        check_same_step(&ckpt, &plain, what, &names);
        step_result_free(&ckpt);
    }
    step_result_free(&plain);
    blip_free(m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("grad_checkpoint");
    TCase *tc = tcase_with_timeout("ag_checkpoint", 20);
    tcase_add_test(tc, test_gradcheck_x_and_parameter);
    tcase_add_test(tc, test_gradcheck_parameter_only);
    tcase_add_test(tc, test_dropout_mask_replayed_and_generator_position_kept);
    tcase_add_test(tc, test_plain_call_without_grad);
    tcase_add_test(tc, test_stale_input_is_reported);
    suite_add_tcase(s, tc);
    TCase *models = tcase_with_timeout("models", 60);
    tcase_add_test(models, test_vit_gradients_identical);
    tcase_add_test(models, test_vit_eval_is_plain);
    tcase_add_test(models, test_vit_peak_memory_lower);
    tcase_add_test(models, test_aurora_cp_gradients_identical);
    suite_add_tcase(s, models);
    return run_suite(s);
}
