#include "autograd/autograd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/graph_dot.h"
#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/precision.h"
#include "tensor/scope.h"

static _Thread_local bool grad_enabled = true;
static uint64_t next_seq = 1;
static uint64_t traversal_epoch = 0;
static bool live_tracking = false;
static int recompute_enabled = -1; // -1: not read from PETAL_RECOMPUTE yet
static ag_node *live_head, *live_tail;

bool grad_mode_enabled(void) {
    return grad_enabled;
}

bool grad_mode_set(bool enabled) {
    bool prev = grad_enabled;
    grad_enabled = enabled;
    return prev;
}

// ---- nodes ----

void ag_live_track(bool on) {
    live_tracking = on;
}

ag_node *ag_live_first(void) {
    return live_head;
}

static void live_link(ag_node *n) {
    n->live_prev = live_tail;
    if (live_tail)
        live_tail->live_next = n;
    else
        live_head = n;
    live_tail = n;
}

// Tracking may have been turned off since the node joined: a linked node leaves either way.
static void live_unlink(ag_node *n) {
    if (!n->live_prev && live_head != n) return;
    if (n->live_prev)
        n->live_prev->live_next = n->live_next;
    else
        live_head = n->live_next;
    if (n->live_next)
        n->live_next->live_prev = n->live_prev;
    else
        live_tail = n->live_prev;
}

static void release_saved(ag_node *n) {
    for (int s = 0; s < AG_MAX_SAVED; s++) {
        if (n->saved[s]) tensor_release(n->saved[s]);
        n->saved[s] = NULL;
    }
    if (!n->recipes) return;
    for (int s = 0; s < AG_MAX_SAVED; s++)
        if (n->recipes->source[s]) ag_node_release(n->recipes->source[s]);
    free(n->recipes);
    n->recipes = NULL;
}

// Frees the outputs rebuilt for a rule: the recipes stay for another backward.
static void drop_rebuilt(ag_node *n) {
    for (int s = 0; s < AG_MAX_SAVED && n->recipes; s++)
        if (n->recipes->source[s] && n->saved[s]) {
            tensor_release(n->saved[s]);
            n->saved[s] = NULL;
        }
}

// Frees a node whose last reference went away, and every producer node that only it kept alive.
// Iterative: a graph can be thousands of nodes deep.
void ag_node_release(ag_node *node) {
    ag_node *stack_small[64], **stack = stack_small;
    size_t top = 0, cap = 64;
    stack[top++] = node;
    while (top > 0) {
        ag_node *n = stack[--top];
        if (--n->refs > 0) continue;
        release_saved(n);
        tensor_free(n->grad);
        for (int i = 0; i < n->n_in; i++) {
            if (n->in[i].leaf) tensor_release(n->in[i].leaf);
            if (!n->in[i].node) continue;
            if (top == cap) {
                cap *= 2;
                ag_node **bigger = malloc(cap * sizeof *bigger);
                PETAL_CHECK(bigger != NULL, "autograd: out of host memory");
                memcpy(bigger, stack, top * sizeof *stack);
                if (stack != stack_small) free(stack);
                stack = bigger;
            }
            stack[top++] = n->in[i].node;
        }
        live_unlink(n);
        free(n);
    }
    if (stack != stack_small) free(stack);
}

ag_node *ag_record(const char *op, ag_backward_fn backward, tensor *out, int n_in,
                   tensor *const *in) {
    if (!grad_enabled) return NULL;
    bool any = false;
    for (int i = 0; i < n_in; i++) any = any || (in[i] && in[i]->requires_grad);
    if (!any) return NULL;
    static bool hook_installed = false;
    if (!hook_installed) {
        tensor_set_grad_fn_release(ag_node_release);
        hook_installed = true;
    }
    ag_node *n = calloc(1, sizeof *n + (size_t)n_in * sizeof(ag_edge));
    PETAL_CHECK(n != NULL, "autograd: out of host memory recording '%s'", op);
    n->op = op;
    n->backward = backward;
    n->seq = next_seq++;
    n->precision = precision_get();
    n->refs = 1; // held by out->grad_fn
    n->n_in = n_in;
    if (live_tracking) live_link(n);
    for (int i = 0; i < n_in; i++) {
        ag_edge *e = &n->in[i];
        if (!in[i]) continue;
        e->dtype = in[i]->dtype;
        e->device = in[i]->device;
        e->ndim = in[i]->ndim;
        memcpy(e->shape, in[i]->shape, sizeof e->shape);
        if (!in[i]->requires_grad) continue;
        e->needs_grad = true;
        if (in[i]->grad_fn) {
            e->node = in[i]->grad_fn;
            e->node->refs++;
        } else {
            e->leaf = in[i];
            tensor_retain(in[i]);
        }
    }
    PETAL_CHECK(out->grad_fn == NULL, "autograd: '%s' output already has a grad_fn", op);
    out->grad_fn = n;
    out->requires_grad = true;
    return n;
}

bool ag_recompute_enabled(void) {
    if (recompute_enabled < 0) {
        const char *env = getenv("PETAL_RECOMPUTE");
        bool off = env && strcmp(env, "off") == 0;
        PETAL_CHECK(!env || !*env || off || strcmp(env, "on") == 0,
                    "PETAL_RECOMPUTE=%s: expected on (the default) or off", env);
        recompute_enabled = !off;
    }
    return recompute_enabled;
}

bool ag_recompute_set(bool enabled) {
    bool prev = ag_recompute_enabled();
    recompute_enabled = enabled;
    return prev;
}

// The node that can rebuild t: t's producer, through reshapes (same elements, same order). Not
// one that keeps recipes itself: rebuilding stays one kernel, and its inputs stay saved.
static ag_node *recipe_source(const tensor *t) {
    ag_node *p = t->grad_fn;
    while (p && !p->recompute && p->reshape && p->in[0].node) p = p->in[0].node;
    return p && p->recompute && !p->recipes && !p->released ? p : NULL;
}

static void recipe_add(ag_node *node, int slot, ag_node *source, const tensor *t) {
    if (!node->recipes) {
        node->recipes = calloc(1, sizeof *node->recipes);
        PETAL_CHECK(node->recipes != NULL, "autograd: out of host memory recording '%s'", node->op);
    }
    source->refs++;
    node->recipes->source[slot] = source;
    node->recipes->ndim[slot] = t->ndim;
    memcpy(node->recipes->shape[slot], t->shape, sizeof t->shape);
}

void ag_save(ag_node *node, int slot, const tensor *t) {
    PETAL_CHECK(slot >= 0 && slot < AG_MAX_SAVED && !node->saved[slot] &&
                    !(node->recipes && node->recipes->source[slot]),
                "autograd: '%s' saves into slot %d twice or out of range", node->op, slot);
    ag_node *source = ag_recompute_enabled() ? recipe_source(t) : NULL;
    if (source && source != node) {
        recipe_add(node, slot, source, t);
        return;
    }
    // A detached alias: saving an op's own output must not make the node hold itself.
    node->saved[slot] = tensor_keep(tensor_detach(t));
}

tensor *ag_saved_rebuild(ag_node *node, int slot) {
    ag_node *src = node->recipes->source[slot];
    if (!src) return NULL;
    PETAL_CHECK(!src->released,
                "autograd_backward: '%s' reads the output of '%s', rebuilt from what '%s' saved, "
                "which an earlier backward freed; pass retain_graph=true to that call",
                node->op, src->op, src->op);
    bool prev = grad_mode_set(false);
    petal_precision outer = precision_set(src->precision);
    int mark = scope_begin();
    tensor *out = src->recompute(src);
    int64_t strides[PETAL_MAX_DIMS], numel = 1;
    for (int d = 0; d < node->recipes->ndim[slot]; d++) numel *= node->recipes->shape[slot][d];
    PETAL_CHECK(tensor_is_contiguous(out) && tensor_numel(out) == numel,
                "autograd: '%s' rebuilt %lld elements, not contiguous or not the %lld saved",
                src->op, (long long)tensor_numel(out), (long long)numel);
    tensor_contiguous_strides(node->recipes->ndim[slot], node->recipes->shape[slot], strides);
    node->saved[slot] =
        tensor_keep(tensor_make_view(out->storage, out->dtype, node->recipes->ndim[slot],
                                     node->recipes->shape[slot], strides, out->offset));
    scope_end(mark);
    precision_set(outer);
    grad_mode_set(prev);
    return node->saved[slot];
}

tensor *ag_grad_buffer(ag_node *node, int i) {
    ag_edge *e = &node->in[i];
    PETAL_CHECK(e->needs_grad,
                "autograd: '%s' asked for the gradient of input %d, which needs none", node->op, i);
    tensor **slot = e->node ? &e->node->grad : &e->leaf->grad;
    if (!*slot) *slot = tensor_keep(tensor_zeros_on(e->device, e->dtype, e->ndim, e->shape));
    return *slot;
}

tensor *ag_grad_accumulated(ag_node *node, int i) {
    ag_edge *own = &node->in[i], *e = own;
    if (!own->needs_grad) return NULL;
    while (e->node && e->node->reshape && !e->node->grad && e->node->in[0].needs_grad)
        e = &e->node->in[0];
    tensor *g = e->node ? e->node->grad : e->leaf->grad;
    return g && tensor_is_contiguous(g) ? g : NULL;
}

// ---- leaves ----

tensor *tensor_set_requires_grad(tensor *t, bool requires_grad) {
    PETAL_CHECK(
        t->grad_fn == NULL,
        "tensor_set_requires_grad: only leaves can be set; this tensor was computed by '%s'",
        t->grad_fn->op);
    PETAL_CHECK(!requires_grad || dtype_is_float(t->dtype),
                "tensor_set_requires_grad: a %s tensor cannot require grad (f32/f64 only)",
                dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return t;
}

void tensor_zero_grad(tensor *t) {
    if (t->grad) tensor_fill_(t->grad, 0.0);
}

void tensor_reset_grad(tensor *t) {
    tensor_free(t->grad);
    t->grad = NULL;
}

// ---- backward ----

// May the engine keep g itself as the accumulated gradient, instead of a copy? Only if nothing
// else can see its memory: g is a temporary of the backward rule (or the node's own incoming
// gradient, freed right after), spans its whole storage, and no later input's gradient shares it.
// A leaf's gradient must also be contiguous (optimizers read it flat); a node's may be any dense
// layout, such as the transposed view a permute's rule returns.
static bool can_adopt(const tensor *g, tensor *const *gin, int n_in, int i, const tensor *gout,
                      int backward_scope, bool for_leaf) {
    bool temporary = g->owner && g->owner->depth == backward_scope - 1;
    if (!(temporary || g == gout) || g->refs != 1) return false;
    bool layout_ok = for_leaf ? tensor_is_contiguous(g) : tensor_is_dense(g);
    if (!layout_ok || g->offset != 0 || tensor_nbytes(g) != g->storage->nbytes) return false;
    int holders = 1 + (g != gout && gout && g->storage == gout->storage);
    if (g->storage->refs != holders) return false;
    for (int j = i + 1; j < n_in; j++)
        if (gin[j] && gin[j]->storage == g->storage) return false;
    return true;
}

static void accumulate(tensor **slot, tensor *g) {
    if (*slot)
        backend_of(*slot)->binary(BINARY_ADD, *slot, *slot, g, 0, 0);
    else
        *slot = tensor_keep(tensor_clone_data(g));
}

static void check_grad_shape(const ag_node *n, int i, const tensor *g) {
    const ag_edge *e = &n->in[i];
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    PETAL_CHECK(g->ndim == e->ndim && memcmp(g->shape, e->shape, (size_t)e->ndim * 8) == 0 &&
                    g->dtype == e->dtype,
                "backward of '%s': gradient for input %d is %s %s, the input is %s %s", n->op, i,
                dtype_name(g->dtype), shape_str(g->ndim, g->shape, a, sizeof a),
                dtype_name(e->dtype), shape_str(e->ndim, e->shape, b, sizeof b));
}

static void run_node(ag_node *n, bool retain_graph) {
    PETAL_CHECK(!n->released,
                "autograd_backward: the graph through '%s' was already freed by an earlier "
                "backward; pass retain_graph=true to that call to backward twice",
                n->op);
    tensor *gin_small[8], **gin = n->n_in <= 8 ? gin_small : calloc((size_t)n->n_in, sizeof *gin);
    PETAL_CHECK(gin != NULL, "autograd: out of host memory");
    memset(gin, 0, (size_t)n->n_in * sizeof *gin);
    int mark = scope_begin();
    petal_precision outer = precision_set(n->precision);
    n->backward(n, n->grad, gin);
    drop_rebuilt(n);
    precision_set(outer);
    if (ag_trace_enabled()) ag_trace_node(n, n->grad, gin);
    for (int i = 0; i < n->n_in; i++) {
        ag_edge *e = &n->in[i];
        if (!e->needs_grad || !gin[i]) continue;
        check_grad_shape(n, i, gin[i]);
        tensor **slot = e->node ? &e->node->grad : &e->leaf->grad;
        if (*slot || !can_adopt(gin[i], gin, n->n_in, i, n->grad, mark, e->node == NULL)) {
            accumulate(slot, gin[i]);
            continue;
        }
        *slot = tensor_keep(gin[i]);
        if (gin[i] == n->grad) n->grad = NULL; // now owned by the input's slot
    }
    scope_end(mark);
    if (gin != gin_small) free(gin);
    tensor_free(n->grad);
    n->grad = NULL;
    if (!retain_graph) {
        release_saved(n);
        n->released = true;
    }
}

static int by_seq_desc(const void *a, const void *b) {
    uint64_t x = (*(ag_node *const *)a)->seq, y = (*(ag_node *const *)b)->seq;
    return x < y ? 1 : (x > y ? -1 : 0);
}

// Every node reachable from root through edges that need grad, in reverse tape order.
static ag_node **collect_tape(ag_node *root, size_t *count) {
    size_t cap = 64, n = 0, top = 0;
    ag_node **order = malloc(cap * sizeof *order), **stack = malloc(cap * sizeof *stack);
    PETAL_CHECK(order && stack, "autograd: out of host memory");
    uint64_t epoch = ++traversal_epoch;
    root->visited = epoch;
    stack[top++] = root;
    while (top > 0) {
        ag_node *node = stack[--top];
        if (n == cap || top + (size_t)node->n_in >= cap) {
            cap = 2 * (cap + (size_t)node->n_in);
            order = realloc(order, cap * sizeof *order);
            stack = realloc(stack, cap * sizeof *stack);
            PETAL_CHECK(order && stack, "autograd: out of host memory");
        }
        order[n++] = node;
        for (int i = 0; i < node->n_in; i++) {
            ag_node *p = node->in[i].node;
            if (p && p->visited != epoch) {
                p->visited = epoch;
                stack[top++] = p;
            }
        }
    }
    free(stack);
    qsort(order, n, sizeof *order, by_seq_desc);
    *count = n;
    return order;
}

// ---- leaves whose gradient is complete ----

typedef struct {
    tensor *leaf;
    size_t last; // index in the tape of the last node that adds to the leaf's gradient
} leaf_use;

static int by_leaf_then_last(const void *a, const void *b) {
    const leaf_use *x = a, *y = b;
    if (x->leaf != y->leaf) return (uintptr_t)x->leaf < (uintptr_t)y->leaf ? -1 : 1;
    return x->last < y->last ? 1 : (x->last > y->last ? -1 : 0); // the last use first
}

static int by_last(const void *a, const void *b) {
    const leaf_use *x = a, *y = b;
    return x->last < y->last ? -1 : (x->last > y->last ? 1 : 0);
}

// Each leaf that needs a gradient with the tape index after which nothing adds to it, in tape
// order; *n gets the count.
static leaf_use *leaf_schedule(ag_node **order, size_t count, size_t *n) {
    size_t cap = 16, k = 0;
    leaf_use *uses = malloc(cap * sizeof *uses);
    PETAL_CHECK(uses != NULL, "autograd: out of host memory");
    for (size_t i = 0; i < count; i++)
        for (int j = 0; j < order[i]->n_in; j++) {
            const ag_edge *e = &order[i]->in[j];
            if (!e->leaf || !e->needs_grad) continue;
            if (k == cap) {
                uses = realloc(uses, (cap *= 2) * sizeof *uses);
                PETAL_CHECK(uses != NULL, "autograd: out of host memory");
            }
            uses[k++] = (leaf_use){e->leaf, i};
        }
    qsort(uses, k, sizeof *uses, by_leaf_then_last);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (i == 0 || uses[i].leaf != uses[i - 1].leaf) uses[m++] = uses[i];
    qsort(uses, m, sizeof *uses, by_last);
    *n = m;
    return uses;
}

void autograd_backward(tensor *root, tensor *grad, bool retain_graph) {
    autograd_backward_notify(root, grad, retain_graph, NULL, NULL);
}

void autograd_backward_notify(tensor *root, tensor *grad, bool retain_graph,
                              void (*done)(tensor *leaf, void *ctx), void *ctx) {
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    PETAL_CHECK(root->requires_grad,
                "autograd_backward: the tensor does not require grad (no input of its graph is "
                "a leaf with requires_grad, or it was computed with grad mode off)");
    PETAL_CHECK(grad || tensor_numel(root) == 1,
                "autograd_backward: the root has shape %s; pass its gradient explicitly or reduce "
                "it to one element first",
                shape_str(root->ndim, root->shape, a, sizeof a));
    PETAL_CHECK(!grad || (tensor_same_shape(grad, root) && grad->dtype == root->dtype),
                "autograd_backward: seed gradient %s %s does not match the root %s %s",
                grad ? dtype_name(grad->dtype) : "",
                grad ? shape_str(grad->ndim, grad->shape, a, sizeof a) : "",
                dtype_name(root->dtype), shape_str(root->ndim, root->shape, b, sizeof b));
    char da[16], db[16];
    PETAL_CHECK(!grad || device_equal(grad->device, root->device),
                "autograd_backward: seed gradient on %s, the root on %s",
                grad ? device_name(grad->device, da) : "", device_name(root->device, db));
    bool prev = grad_mode_set(false);
    tensor *seed = grad ? tensor_clone_data(grad) : tensor_empty_like(root);
    if (!grad) tensor_fill_(seed, 1.0);
    tensor_keep(seed);
    if (!root->grad_fn) { // a leaf: the gradient of itself
        if (root->grad) {
            accumulate(&root->grad, seed);
            tensor_free(seed);
        } else {
            root->grad = seed;
        }
        grad_mode_set(prev);
        if (done) done(root, ctx);
        return;
    }
    size_t count, n_uses = 0, next = 0;
    ag_node **order = collect_tape(root->grad_fn, &count);
    leaf_use *uses = done ? leaf_schedule(order, count, &n_uses) : NULL;
    root->grad_fn->grad = seed;
    for (size_t i = 0; i < count; i++) {
        if (order[i]->grad) run_node(order[i], retain_graph);
        for (; next < n_uses && uses[next].last == i; next++) done(uses[next].leaf, ctx);
    }
    free(uses);
    free(order);
    grad_mode_set(prev);
}
