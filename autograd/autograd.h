// Reverse-mode automatic differentiation (docs/architecture.md "Autograd").
//
// Define-by-run: every op whose inputs need gradients records a node: its backward rule, an edge to
// each input (the node that produced it, or the leaf itself), the tensors the rule needs, and a
// sequence number. The nodes reachable from a loss form the tape; autograd_backward replays it in
// reverse creation order, so each node runs after every node that consumes its output.
//
//     tensor *w = tensor_set_requires_grad(tensor_randn(...), true);   // a leaf
//     tensor *loss = tensor_mean_all(tensor_mul(w, w));
//     autograd_backward(loss, NULL, false);                             // w->grad = 2w / n
//
// Gradients accumulate into leaf->grad across calls until tensor_zero_grad / tensor_reset_grad.
// Each node's rule runs its GEMMs in the precision its forward ran in (tensor/precision.h), in
// whatever precision backward itself is called.
// Memory: a node's incoming gradient is freed as soon as the node has run, and (unless the graph is
// retained) so are the tensors it saved; a frozen input (requires_grad false) gets no gradient and
// makes its op save nothing on its behalf. A rule that saves the output of a cheap element-wise
// node which can rebuild it from what it saves itself (gelu, add_gelu, relu...: ag_recompute_fn)
// keeps that recipe instead of the tensor: the output is freed after the forward, and rebuilt, bit
// for bit by the same kernel on the same inputs, when the rule reads it (then freed again).
#pragma once

#include <stdbool.h>

#include "tensor/precision.h"
#include "tensor/tensor.h"

#define AG_MAX_SAVED 6
#define AG_MAX_ATTRS 8

typedef struct ag_node ag_node;

// Computes the gradient of each input that needs one (gin[i], left NULL for the others or for a
// zero gradient) from the output gradient g. Runs with grad mode off; temporaries it makes are
// freed when it returns.
typedef void (*ag_backward_fn)(ag_node *node, tensor *g, tensor **gin);
// Computes the node's output again, contiguous, from its saved tensors alone, by the kernel its
// forward ran (so the result is the same bits); runs with grad mode off.
typedef tensor *(*ag_recompute_fn)(ag_node *node);

// The saved slots a node keeps as recipes: the node whose output each is and the saved shape
// (the output's elements in the same order).
typedef struct {
    ag_node *source[AG_MAX_SAVED];
    int ndim[AG_MAX_SAVED];
    int64_t shape[AG_MAX_SAVED][PETAL_MAX_DIMS];
} ag_recipes;

typedef struct {
    ag_node *node;   // the node that produced this input, or NULL
    tensor *leaf;    // the input itself, when it is a leaf that requires grad
    bool needs_grad; // node or leaf set
    petal_dtype dtype;
    petal_device device;
    int ndim;
    int64_t shape[PETAL_MAX_DIMS];
} ag_edge;

struct ag_node {
    const char *op;
    ag_backward_fn backward;
    uint64_t seq;     // creation order: the position on the tape
    uint64_t visited; // traversal epoch of the last backward that reached this node
    int refs;         // the output tensor and each consumer's edge
    bool released;    // saved tensors freed by a backward without retain_graph
    bool reshape;     // the output is the input's elements in the same order (a reshape)
    tensor *grad;     // gradient of the output, summed during backward
    tensor *saved[AG_MAX_SAVED];
    ag_recompute_fn recompute;    // set by ops that can rebuild their output (NULL: the others)
    ag_recipes *recipes;          // slots saved as recipes, or NULL
    int64_t attr_i[AG_MAX_ATTRS]; // op parameters (dims, sizes, flags)
    double attr_f[AG_MAX_ATTRS];  // op parameters (eps, p, scales)
    // The thread's GEMM precision when the node was made: its backward rule runs in it.
    petal_precision precision;
    ag_node *live_prev, *live_next; // the live-node list, while ag_live_track is on
    int n_in;
#ifdef __cplusplus
    // C++ has no flexible array members: there the edges are read right after the struct, which is
    // where C puts `in` when ag_edge and ag_node have the same alignment (asserted below).
#else
    ag_edge in[]; // one per input, in the op's argument order
#endif
};
#ifdef __cplusplus
static_assert(alignof(ag_edge) == alignof(ag_node), "ag_node's edges start at its end");
#endif

// ---- grad mode ----
bool grad_mode_enabled(void);
bool grad_mode_set(bool enabled); // returns the previous mode

// ---- leaves and gradients ----
tensor *tensor_set_requires_grad(tensor *t, bool requires_grad); // leaves only; returns t
void tensor_zero_grad(tensor *t);  // zeroes t->grad in place (keeps its memory)
void tensor_reset_grad(tensor *t); // frees t->grad (the next backward allocates a new one)

// ---- backward ----
// Seeds the gradient of `root` with `grad` (NULL: 1 for a one-element root) and propagates it to
// every leaf that requires grad. A second backward through the same nodes needs retain_graph on
// the first.
void autograd_backward(tensor *root, tensor *grad, bool retain_graph);
// The same, calling done(leaf, ctx) for each leaf that needs a gradient as soon as it is complete:
// after the last node of the tape that adds to it has run (grad mode is off during the call).
// Data parallelism starts averaging those gradients while the pass goes on.
void autograd_backward_notify(tensor *root, tensor *grad, bool retain_graph,
                              void (*done)(tensor *leaf, void *ctx), void *ctx);

// ---- recording (used by ops/) ----
// Returns NULL, recording nothing, when grad mode is off or no input requires grad. Otherwise
// makes `out` a non-leaf that requires grad, produced by the returned node.
ag_node *ag_record(const char *op, ag_backward_fn backward, tensor *out, int n_in,
                   tensor *const *in);
// Saves t for the backward rule (a detached alias; no copy of the data), or a recipe for it when
// t is (a reshape of) the output of a node with a recompute function and recipes are on.
void ag_save(ag_node *node, int slot, const tensor *t);
// What the rule saved in `slot`; a recipe is rebuilt on the first read and freed after the rule.
tensor *ag_saved_rebuild(ag_node *node, int slot);
static inline tensor *ag_saved(ag_node *node, int slot) {
    return node->saved[slot] || !node->recipes ? node->saved[slot] : ag_saved_rebuild(node, slot);
}
// Recomputing in backward instead of saving, on (the default) or off for the nodes recorded from
// now on: recipes, and ops that rebuild an intermediate of their own (attention's probabilities on
// the GEMM path). Returns the previous setting. Off, everything is saved (comparisons, tests).
// The default comes from PETAL_RECOMPUTE in the environment: on (unset or empty too) or off.
bool ag_recompute_set(bool enabled);
bool ag_recompute_enabled(void);
static inline bool ag_needs(const ag_node *node, int i) {
#ifdef __cplusplus
    return reinterpret_cast<const ag_edge *>(node + 1)[i].needs_grad;
#else
    return node->in[i].needs_grad;
#endif
}
// The gradient accumulator of input i (zero-filled if nothing reached it yet). Rules that scatter
// into their input (select, slice, index_select, gather, max, topk) add into a window of it in
// place and leave gin[i] NULL, instead of materialising a mostly-zero tensor per contribution.
tensor *ag_grad_buffer(ag_node *node, int i);
// The gradient already accumulated for input i when it is contiguous, else NULL. A rule whose
// kernel can add into its output (a GEMM with beta = 1) adds its contribution there in place and
// leaves gin[i] NULL: no new tensor and no separate add pass. When input i comes out of reshapes
// that have no gradient of their own yet, the accumulator is the reshaped tensor's (same
// elements in the same order, another shape: view it in input i's shape); the contribution skips
// the reshapes, which run later only if another consumer gives them a gradient.
tensor *ag_grad_accumulated(ag_node *node, int i);
void ag_node_release(ag_node *node);

// ---- live nodes (used by autograd/memory_profile.c) ----
// While on, each node recorded joins a list, in creation order, until it is freed: a profile walks
// it for the tensors the graph saves. Off (the default) costs one test per node.
void ag_live_track(bool on);
ag_node *ag_live_first(void); // the oldest; then node->live_next
