// The CPU backend's kernels (one concern per file in tensor/cpu/), gathered into cpu_backend.
#pragma once

#include "tensor/backend.h"

extern const backend cpu_backend; // the CPU row of the backend table (tensor/backend.c)

void cpu_copy(tensor *dst, const tensor *src);
void cpu_fill(tensor *dst, double value);
void cpu_unary(unary_op op, tensor *out, const tensor *x, double p0, double p1);
void cpu_binary(binary_op op, tensor *out, const tensor *a, const tensor *b, double p0, double p1);
void cpu_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b);

void cpu_reduce(reduce_op op, tensor *out, const tensor *x, int dim);
void cpu_arg_reduce(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim);
void cpu_topk(tensor *values, tensor *indices, const tensor *x, int64_t k, bool largest);

void cpu_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta,
                petal_precision precision);

void cpu_softmax(tensor *y, const tensor *x, int dim, bool log);
void cpu_attention(tensor *o, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                   const tensor *mask, const attention_params *p);
void cpu_attention_backward(tensor *gq, tensor *gk, tensor *gv, const tensor *go, const tensor *q,
                            const tensor *k, const tensor *v, const tensor *o, const tensor *lse,
                            const tensor *mask, const attention_params *p);
void cpu_softmax_backward(tensor *gx, const tensor *gy, const tensor *y, int dim, bool log);
void cpu_layer_norm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                    const tensor *b, double eps);
void cpu_layer_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy, const tensor *x,
                             const tensor *mean, const tensor *rstd, const tensor *w);
void cpu_cross_entropy(tensor *loss, tensor *lse, const tensor *logits, const tensor *target,
                       int64_t ignore_index, double smoothing);
void cpu_cross_entropy_backward(tensor *glogits, const tensor *gloss, const tensor *logits,
                                const tensor *lse, const tensor *target, int64_t ignore_index,
                                double smoothing);

void cpu_index_select(tensor *out, const tensor *x, int dim, const tensor *idx);
void cpu_index_add(tensor *out, int dim, const tensor *idx, const tensor *src);
void cpu_gather(tensor *out, const tensor *x, int dim, const tensor *idx);
void cpu_scatter_add(tensor *out, int dim, const tensor *idx, const tensor *src);

void cpu_random(random_kind kind, tensor *out, rng_state rng, const double *params);
void cpu_dropout(tensor *out, const tensor *x, double p, rng_state rng);
void cpu_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_hyper *h);

// Helpers shared by the kernels.
// Sizes of x around `dim`: outer (dims before), len (the dim), inner (dims after).
void cpu_split_dim(const tensor *x, int dim, int64_t *outer, int64_t *len, int64_t *inner);
// Reads index i of an i32 or i64 index tensor (contiguous).
static inline int64_t cpu_index_at(const tensor *idx, int64_t i) {
    const char *base = (const char *)idx->storage->data;
    return idx->dtype == PETAL_I64 ? ((const int64_t *)base)[idx->offset + i]
                                   : ((const int32_t *)base)[idx->offset + i];
}

// c (m, n) = alpha * op(a) @ op(b) + beta * c in f32, row-major operands with leading dims; runs
// and returns true for the rank-R products of low-rank PETL methods (one of m, n, k 16..64 and
// the others long; tensor/cpu/cpu_gemm_narrow.h), else returns false and leaves c alone. The
// active CPU path runs them (tensor/cpu/cpu_path.h): the avx2 and avx512 paths have kernels, the
// generic path declines every shape.
bool cpu_sgemm_narrow(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc);
