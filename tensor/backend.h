// The backend table: what a device must provide (docs/architecture.md "Tensor").
//
// Kernels receive preallocated outputs and strided input views, all on the backend's device and
// already checked by the caller (ops/ checks shapes, dtypes and devices and names the op in its
// errors). Kernels never allocate tensors and never record autograd history.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/elementwise.h"
#include "tensor/precision.h"
#include "tensor/tensor.h"

#define PETAL_ENUM_ENTRY(E, name) E,
typedef enum { PETAL_UNARY_OPS(PETAL_ENUM_ENTRY) UNARY_OP_COUNT } unary_op;
typedef enum { PETAL_BINARY_OPS(PETAL_ENUM_ENTRY) BINARY_OP_COUNT } binary_op;
#undef PETAL_ENUM_ENTRY

const char *unary_op_name(unary_op op);
const char *binary_op_name(binary_op op);

typedef enum { REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX, REDUCE_MIN, REDUCE_LOGSUMEXP } reduce_op;

typedef enum {
    RANDOM_UNIFORM,      // U[a, b)
    RANDOM_NORMAL,       // N(a, b^2)
    RANDOM_TRUNC_NORMAL, // N(a, b^2) restricted to [c, d] (inverse-CDF, as torch.nn.init)
} random_kind;

typedef struct {
    uint64_t seed;   // Philox key
    uint64_t offset; // Philox counter of the first element (in blocks of 4 outputs)
} rng_state;

// The fused attention's parameters (tensor/attention_tile.h says how each is used).
typedef struct {
    double scale;    // of q k^T
    bool causal;     // query i of T sees key j of S when j <= i + (S - T)
    double dropout;  // p of the dropout on P (0: none)
    rng_state rng;   // its stream: element e of P (B, H, T, S), row-major, reads counter e
    bool round_bf16; // round what a bf16 tensor-core kernel would round (attention_tile.h)
} attention_params;

typedef struct backend {
    const char *name;

    // ---- memory ----
    // NULL on failure; *capacity gets the block's real size (a cache may serve a larger block),
    // which free takes back.
    void *(*alloc)(int device_index, size_t nbytes, size_t *capacity);
    // The same, zero-filled; NULL in a backend that zero-fills with memset_zero after alloc.
    void *(*alloc_zeroed)(int device_index, size_t nbytes, size_t *capacity);
    void (*free)(int device_index, void *ptr, size_t capacity);
    void (*empty_cache)(int device_index); // returns cached blocks to the system
    size_t (*reserved)(int device_index);  // bytes held from the system, cache included
    void (*memset_zero)(void *ptr, size_t nbytes);
    void (*copy_from_host)(void *dst, const void *src, size_t nbytes);
    void (*copy_to_host)(void *dst, const void *src, size_t nbytes);
    void (*synchronize)(void);

    // ---- element-wise; inputs broadcast to out's shape (right-aligned, size-1 dims repeat) ----
    void (*copy)(tensor *dst, const tensor *src); // converts dtype
    void (*fill)(tensor *dst, double value);
    void (*unary)(unary_op op, tensor *out, const tensor *x, double p0, double p1);
    void (*binary)(binary_op op, tensor *out, const tensor *a, const tensor *b, double p0,
                   double p1);
    void (*where)(tensor *out, const tensor *cond, const tensor *a, const tensor *b);

    // ---- reductions over one dim of a contiguous x; out is contiguous with that dim removed ----
    void (*reduce)(reduce_op op, tensor *out, const tensor *x, int dim);
    // MAX or MIN values and their i64 indices (first occurrence).
    void (*arg_reduce)(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim);
    // The k largest (or smallest) along the last dim of a contiguous x, sorted, i64 indices.
    void (*topk)(tensor *values, tensor *indices, const tensor *x, int64_t k, bool largest);

    // ---- c = alpha * a @ b + beta * c over the last two dims, batch dims broadcast ----
    // f32 products take their inputs rounded to `precision` (tensor/precision.h) and accumulate in
    // f32; f64 products get PETAL_PRECISION_F32 and ignore it. c (beta * c) is never rounded.
    void (*matmul)(tensor *c, const tensor *a, const tensor *b, double alpha, double beta,
                   petal_precision precision);
    // y = x @ wt + b, the bias added inside the product (NULL where the caller copies b into y and
    // runs matmul with beta = 1). y (..., out) contiguous, x (..., in) and wt (in, out) as matmul
    // takes them, b (out); f32 inputs rounded to `precision` as matmul's. Returns false, having
    // written nothing, for what it cannot compute as one product: the caller takes matmul's path.
    bool (*linear_bias)(tensor *y, const tensor *x, const tensor *wt, const tensor *b,
                        petal_precision precision);

    // ---- fused primitives; x, y and gradients contiguous ----
    void (*softmax)(tensor *y, const tensor *x, int dim, bool log); // y may be x unless log
    void (*softmax_backward)(tensor *gx, const tensor *gy, const tensor *y, int dim, bool log);
    // Over the last dim; w, b may be NULL. mean and rstd: one per row, saved for backward.
    void (*layer_norm)(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                       const tensor *b, double eps);
    // gw, gb may be NULL (frozen affine); they are overwritten, not accumulated.
    void (*layer_norm_backward)(tensor *gx, tensor *gw, tensor *gb, const tensor *gy,
                                const tensor *x, const tensor *mean, const tensor *rstd,
                                const tensor *w);
    // Per-row loss of logits (N, C) against i64 targets (N); lse (N) saved for backward.
    void (*cross_entropy)(tensor *loss, tensor *lse, const tensor *logits, const tensor *target,
                          int64_t ignore_index, double smoothing);
    void (*cross_entropy_backward)(tensor *glogits, const tensor *gloss, const tensor *logits,
                                   const tensor *lse, const tensor *target, int64_t ignore_index,
                                   double smoothing);

    // ---- fused attention (NULL where the unfused GEMM path of ops/attention.c is used) ----
    // q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv), o (B, H, T, Dv): any strides with the last
    // dim contiguous, D and Dv at most ATTN_HEAD_MAX (tensor/attention_tile.h); mask (one dtype
    // with q) broadcasts to (B, H, T, S) or is NULL; lse (B, H, T) contiguous, saved for backward.
    void (*attention)(tensor *o, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                      const tensor *mask, const attention_params *p);
    // gq, gk, gv (the shapes of q, k, v) are overwritten; go has o's shape (o is NULL unless
    // attention_backward_reads_o). The mask gets no
    // gradient (ops/attention.c takes the unfused path when it needs one).
    void (*attention_backward)(tensor *gq, tensor *gk, tensor *gv, const tensor *go,
                               const tensor *q, const tensor *k, const tensor *v, const tensor *o,
                               const tensor *lse, const tensor *mask, const attention_params *p);
    // The fused entries take f32 at PETAL_PRECISION_F32 only (no f64, no bf16 rounding).
    bool attention_f32_only;
    // The largest T x S a fused call takes (0: any); beyond it the GEMM path runs. The CPU's
    // kernels hold a head's whole score matrix, three times, per thread.
    int64_t attention_max_scores;
    // The fused backward reads o (CUDA: D_i = dO_i . o_i); where it does not, o is not kept for
    // it and it gets NULL.
    bool attention_backward_reads_o;

    // ---- indexing; idx is i64 (or i32), contiguous ----
    void (*index_select)(tensor *out, const tensor *x, int dim, const tensor *idx);
    void (*index_add)(tensor *out, int dim, const tensor *idx, const tensor *src); // accumulates
    void (*gather)(tensor *out, const tensor *x, int dim, const tensor *idx);
    void (*scatter_add)(tensor *out, int dim, const tensor *idx, const tensor *src);

    // ---- random numbers from Philox 4x32-10; element i depends only on (state, i) ----
    void (*random)(random_kind kind, tensor *out, rng_state rng, const double *params);
    // out = x * mask / (1 - p), mask_i = (u_i >= p); the same rng gives the same mask, so the
    // backward pass regenerates it instead of saving it.
    void (*dropout)(tensor *out, const tensor *x, double p, rng_state rng);

    // ---- optimizers; all four tensors contiguous and of one shape ----
    void (*adamw)(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_hyper *h);
} backend;

const backend *backend_get(petal_device device);
static inline const backend *backend_of(const tensor *t) {
    return backend_get(t->device);
}

// c = alpha * a @ b + beta * c on c's backend, an f32 product in this thread's precision
// (precision_get). Every GEMM of petal goes through here, so the floating-point operations a model
// or a PETL method adds can be counted (2 M N K per product, per batch; from the thread that
// issues ops).
void backend_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta);
// y = x @ wt + b in one product where y's backend has linear_bias and it takes the operands (the
// flops counted as backend_matmul's); false, nothing written, otherwise.
bool backend_linear_bias(tensor *y, const tensor *x, const tensor *wt, const tensor *b);
// Counts the products of a fused kernel that multiplies without backend_matmul (attention).
void backend_matmul_flops_add(int64_t flops);
int64_t backend_matmul_flops(void); // since the last reset
void backend_matmul_flops_reset(void);

// Number of CUDA devices, or -1 if petal was built without CUDA.
int backend_cuda_device_count(void);
