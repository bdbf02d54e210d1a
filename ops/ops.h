// Differentiable tensor operations: the math API of petal.
//
// Every function checks its arguments (shapes, dtypes, devices; a mismatch aborts with the op's
// name and the shapes involved), allocates its output, runs the backend kernel and, when an input
// requires grad and grad mode is on, records a node whose backward rule sits next to the forward in
// the same file. Inputs are never modified. Outputs are new tensors owned like any other
// (tensor.h).
//
// Element-wise ops broadcast like NumPy and need operands of one dtype (no silent promotion).
// Comparisons return 1 or 0 in the operands' dtype, usable directly as masks.
#pragma once

#include <stdbool.h>

#include "autograd/autograd.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

// ---- element-wise, binary (broadcasting) ----
tensor *tensor_add(tensor *a, tensor *b);
tensor *tensor_sub(tensor *a, tensor *b);
tensor *tensor_mul(tensor *a, tensor *b);
tensor *tensor_div(tensor *a, tensor *b);
tensor *tensor_eq(tensor *a, tensor *b); // comparisons: no gradient
tensor *tensor_ne(tensor *a, tensor *b);
tensor *tensor_lt(tensor *a, tensor *b);
tensor *tensor_le(tensor *a, tensor *b);
tensor *tensor_gt(tensor *a, tensor *b);
tensor *tensor_ge(tensor *a, tensor *b);
// cond != 0 ? a : b; cond may have any dtype (it is converted), a and b share one.
tensor *tensor_where(tensor *cond, tensor *a, tensor *b);
tensor *tensor_masked_fill(tensor *x, tensor *mask, double value); // mask != 0 -> value

// ---- element-wise, unary ----
tensor *tensor_add_scalar(tensor *x, double s);
tensor *tensor_mul_scalar(tensor *x, double s);
tensor *tensor_div_scalar(tensor *x, double s);
tensor *tensor_neg(tensor *x);
tensor *tensor_exp(tensor *x);
tensor *tensor_log(tensor *x);
tensor *tensor_sqrt(tensor *x);
tensor *tensor_rsqrt(tensor *x);
tensor *tensor_abs(tensor *x);
tensor *tensor_tanh(tensor *x);
tensor *tensor_sigmoid(tensor *x);
tensor *tensor_relu(tensor *x);
tensor *tensor_gelu(tensor *x);      // exact: x * Phi(x), with erf
tensor *tensor_gelu_tanh(tensor *x); // the tanh approximation
// gelu(x + b), exact (erf) form, in one pass and one autograd node: a linear's bias and its GELU
// (b broadcasts to x, typically (out) over (..., out)). Equal to tensor_gelu(tensor_add(x, b)).
tensor *tensor_add_gelu(tensor *x, tensor *b);
tensor *tensor_pow_scalar(tensor *x, double exponent);
tensor *tensor_clamp(tensor *x, double lo, double hi); // use -INFINITY / INFINITY for one side

// ---- reductions; dim may be negative; keepdim keeps it with size 1 ----
tensor *tensor_sum(tensor *x, int dim, bool keepdim);
tensor *tensor_mean(tensor *x, int dim, bool keepdim);
tensor *tensor_max(tensor *x, int dim, bool keepdim); // values; the gradient goes to the argmax
tensor *tensor_min(tensor *x, int dim, bool keepdim);
tensor *tensor_logsumexp(tensor *x, int dim, bool keepdim);
tensor *tensor_argmax(tensor *x, int dim, bool keepdim); // i64, first occurrence
tensor *tensor_argmin(tensor *x, int dim, bool keepdim);
tensor *tensor_sum_all(tensor *x); // 0-d results
tensor *tensor_mean_all(tensor *x);
// The k largest (or smallest) entries along the last dim, sorted; *indices (i64) may be NULL.
tensor *tensor_topk(tensor *x, int64_t k, bool largest, tensor **indices);

// ---- linear algebra ----
// (..., M, K) @ (..., K, N) -> (..., M, N); batch dims broadcast; 2-D operands are matrices.
tensor *tensor_matmul(tensor *a, tensor *b);
// x (..., in) W^T (out, in) + b (out) -> (..., out); b may be NULL. A frozen W saves no x and
// computes no dW.
tensor *tensor_linear(tensor *x, tensor *w, tensor *b);
// x W^T + b + sum_k z_k v_k^T, the low-rank terms (PETL deltas) accumulated by GEMMs onto the
// same output: no delta tensor and no add pass. z_k (..., m, R) and v_k (out / m, R): term k adds
// z_k[..., j, :] v_k^T to outputs j out/m .. (j + 1) out/m - 1 (m = 3 for a fused qkv, say).
#define LINEAR_MAX_TERMS 2
tensor *tensor_linear_lowrank(tensor *x, tensor *w, tensor *b, int n_terms, tensor *const *z,
                              tensor *const *v);
// base + sum_k z_k v_k^T, the terms as in tensor_linear_lowrank: a Linear whose product x W^T + b
// was computed elsewhere (once for rows that several inputs share; nn_linear_forward_gathered).
tensor *tensor_add_lowrank(tensor *base, int n_terms, tensor *const *z, tensor *const *v);

// ---- views (share storage with their input; reshape copies only when strides demand it) ----
tensor *tensor_reshape(tensor *x, int ndim, const int64_t *shape); // one -1 allowed
tensor *tensor_flatten(tensor *x, int start_dim, int end_dim);
tensor *tensor_permute(tensor *x, const int *perm);
tensor *tensor_transpose(tensor *x, int d0, int d1);
tensor *tensor_slice(tensor *x, int dim, int64_t start, int64_t end, int64_t step);
tensor *tensor_select(tensor *x, int dim, int64_t index);
tensor *tensor_expand(tensor *x, int ndim, const int64_t *shape);
tensor *tensor_squeeze(tensor *x, int dim);
tensor *tensor_unsqueeze(tensor *x, int dim);
tensor *tensor_contiguous(tensor *x);

// ---- joining and indexing ----
tensor *tensor_concat(tensor *const *ts, int n, int dim);
tensor *tensor_stack(tensor *const *ts, int n, int dim);
tensor *tensor_index_select(tensor *x, int dim, tensor *index); // index: 1-D i64 or i32
// out[..i.., j, ..k..] = x[..i.., index[..i.., j, ..k..], ..k..]; index matches x except at dim.
tensor *tensor_gather(tensor *x, int dim, tensor *index);
// Rows of weight (V, D) picked by ids (any shape) -> (ids shape..., D); scatter-add backward.
tensor *tensor_embedding(tensor *weight, tensor *ids);

// ---- fused primitives ----
tensor *tensor_softmax(tensor *x, int dim);
tensor *tensor_log_softmax(tensor *x, int dim);
// Over the last dim; w and b (shape (D)) may be NULL.
tensor *tensor_layer_norm(tensor *x, tensor *w, tensor *b, double eps);
// x / max(||x||_2, eps) along dim (torch.nn.functional.normalize).
tensor *tensor_normalize(tensor *x, int dim, double eps);
// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p).
// Identity when !training or p == 0. g: the generator (NULL: the default one).
tensor *tensor_dropout(tensor *x, double p, bool training, rng_generator *g);

typedef enum { REDUCTION_MEAN, REDUCTION_SUM, REDUCTION_NONE } loss_reduction;
typedef struct {
    int64_t ignore_index;     // targets equal to this contribute nothing (default -100)
    double label_smoothing;   // in [0, 1]
    loss_reduction reduction; // MEAN averages over the targets that are not ignored
} cross_entropy_options;
#define CROSS_ENTROPY_DEFAULTS ((cross_entropy_options){-100, 0.0, REDUCTION_MEAN})
// logits (N, C), target (N) class ids (i64 or i32). opt may be NULL for the defaults.
tensor *tensor_cross_entropy(tensor *logits, tensor *target, const cross_entropy_options *opt);

typedef struct {
    tensor *mask;   // additive, broadcastable to (B, H, T, S), or NULL
    bool causal;    // query i sees keys j <= i + (S - T) (a KV-cached decoder step works)
    double scale;   // <= 0: 1 / sqrt(D)
    double dropout; // on the attention probabilities, applied only when training
    bool training;
    rng_generator *rng; // dropout masks (NULL: the default generator)
} attention_options;
#define ATTENTION_DEFAULTS ((attention_options){NULL, false, 0.0, 0.0, false, NULL})

// softmax(q k^T * scale + mask) v for q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv); opt may be
// NULL for the defaults. The mask receives a gradient if it requires one. Returns (B, H, T, Dv)
// laid out in memory as (B, T, H, Dv): transpose(1, 2) + reshape to (B, T, H * Dv) is then free.
// On a backend with fused attention (CUDA) P is never stored (ops/attention.c says when);
// the environment variable PETAL_ATTENTION=unfused forces the GEMM path everywhere.
tensor *tensor_attention(tensor *q, tensor *k, tensor *v, const attention_options *opt);
// Self-attention over a packed projection qkv (B, T, 3 H D): q, k and v side by side, each H
// heads of D (a ViT's qkv linear); returns the heads merged, (B, T, H D). The same as
// tensor_attention on qkv's parts, but on a backend with fused attention the gradient is written
// straight into one (B, T, 3 H D) tensor, not summed from three (B, H, T, D) pieces. The mask
// may not require a gradient there (the GEMM path is taken when it does).
tensor *tensor_attention_packed(tensor *qkv, int64_t heads, const attention_options *opt);
