#include "autograd/checkpoint.h"

#include <string.h>

#include "tensor/error.h"

// What the backward rule needs to run fn again. It lives in a host tensor saved on the node, so
// the node frees it with its other saved tensors (ag_node has no destructor of its own).
typedef struct {
    ag_checkpoint_fn fn;
    rng_generator rng;  // the generator's state before the forward: the recompute's draws
    uint64_t x_version; // x's storage version at the forward: a later in-place write breaks replay
    bool x_needs_grad;  // else the node's input is a stand-in leaf and x gets no gradient
    max_align_t ctx[];  // ctx_size bytes of the caller's ctx
} closure;

enum { SAVED_X, SAVED_CLOSURE };

static tensor *closure_new(ag_checkpoint_fn fn, const void *ctx, size_t ctx_size,
                           const rng_generator *start, const tensor *x) {
    size_t bytes = sizeof(closure) + ctx_size;
    tensor *t = tensor_empty(PETAL_I64, SHAPE((int64_t)((bytes + 7) / 8)));
    closure *c = tensor_data(t); // storage is 64-byte aligned: fine for max_align_t
    c->fn = fn;
    c->rng = *start;
    c->x_version = x->storage->version;
    c->x_needs_grad = x->requires_grad;
    memcpy(c->ctx, ctx, ctx_size);
    return t;
}

// Runs fn again under grad on a fresh leaf viewing x and back-propagates g through it. The
// nested autograd_backward is safe inside a rule: the outer tape was collected before any rule
// ran, the sub-graph starts at a new leaf so it reaches no outer node, and parameters are leaves
// that both passes add into.
static void checkpoint_backward(ag_node *n, tensor *g, tensor **gin) {
    const closure *c = tensor_data(ag_saved(n, SAVED_CLOSURE));
    tensor *x = ag_saved(n, SAVED_X);
    PETAL_CHECK(x->storage->version == c->x_version,
                "ag_checkpoint: the input was written in place after the forward (version %llu, "
                "now %llu); the recompute would not be the forward that ran",
                (unsigned long long)c->x_version, (unsigned long long)x->storage->version);
    tensor *leaf = tensor_detach(x);
    if (c->x_needs_grad) tensor_set_requires_grad(leaf, true);
    rng_generator replay = c->rng;
    bool prev = grad_mode_set(true);
    tensor *y = c->fn(c->ctx, leaf, &replay);
    // Parameters frozen since the forward leave nothing to propagate.
    if (y->requires_grad) autograd_backward(y, g, false);
    grad_mode_set(prev);
    tensor_free(y); // the sub-graph goes with it
    if (leaf->grad) {
        // A view in this rule's scope owning the only reference, which the engine can adopt.
        gin[0] = tensor_detach(leaf->grad);
        tensor_reset_grad(leaf);
    }
    tensor_free(leaf);
}

tensor *ag_checkpoint(ag_checkpoint_fn fn, const void *ctx, size_t ctx_size, tensor *x,
                      rng_generator *rng) {
    rng_generator *g = rng ? rng : rng_default();
    if (!grad_mode_enabled()) return fn(ctx, x, g);
    rng_generator start = *g;
    tensor *y, *stand_in = NULL;
    if (x->requires_grad) {
        grad_mode_set(false);
        y = fn(ctx, x, g);
        grad_mode_set(true);
    } else {
        tensor *probe = fn(ctx, x, g);
        if (!probe->requires_grad) return probe;
        y = tensor_detach(probe);
        tensor_free(probe); // drops the graph the probe saved
        // ag_record records only for an input that requires grad.
        stand_in = tensor_set_requires_grad(tensor_scalar(PETAL_F32, 0), true);
    }
    ag_node *n = ag_record("checkpoint", checkpoint_backward, y, 1, stand_in ? &stand_in : &x);
    ag_save(n, SAVED_X, x);
    tensor *c = closure_new(fn, ctx, ctx_size, &start, x);
    ag_save(n, SAVED_CLOSURE, c);
    tensor_free(c);
    tensor_free(stand_in);
    return y;
}
