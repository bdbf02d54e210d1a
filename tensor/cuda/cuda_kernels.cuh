// The CUDA backend's kernels (one concern per file in tensor/cuda/), gathered into cuda_backend.
// Each has the contract of its backend table entry (tensor/backend.h) and the semantics of the CPU
// kernel of the same name in tensor/cpu/.
#pragma once

#include "tensor/cuda/cuda_common.cuh"

void cuda_copy(tensor *dst, const tensor *src);
void cuda_fill(tensor *dst, double value);
void cuda_unary(unary_op op, tensor *out, const tensor *x, double p0, double p1);
void cuda_binary(binary_op op, tensor *out, const tensor *a, const tensor *b, double p0, double p1);
void cuda_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b);

void cuda_reduce(reduce_op op, tensor *out, const tensor *x, int dim);
void cuda_arg_reduce(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim);
void cuda_topk(tensor *values, tensor *indices, const tensor *x, int64_t k, bool largest);

void cuda_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta,
                 petal_precision precision);
// GEMM operand t (f32) as bf16 with t's layout (matmul_operand_span), rounded on `stream`.
tensor *cuda_bf16_operand(const tensor *t, cudaStream_t stream);
#ifdef PETAL_HAVE_CUBLASLT
bool cuda_linear_bias(tensor *y, const tensor *x, const tensor *wt, const tensor *b,
                      petal_precision precision);
#endif

void cuda_softmax(tensor *y, const tensor *x, int dim, bool log);
void cuda_softmax_backward(tensor *gx, const tensor *gy, const tensor *y, int dim, bool log);
void cuda_layer_norm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                     const tensor *b, double eps);
void cuda_layer_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy, const tensor *x,
                              const tensor *mean, const tensor *rstd, const tensor *w);
void cuda_cross_entropy(tensor *loss, tensor *lse, const tensor *logits, const tensor *target,
                        int64_t ignore_index, double smoothing);
void cuda_cross_entropy_backward(tensor *glogits, const tensor *gloss, const tensor *logits,
                                 const tensor *lse, const tensor *target, int64_t ignore_index,
                                 double smoothing);
void cuda_attention(tensor *o, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                    const tensor *mask, const attention_params *p);
void cuda_attention_backward(tensor *gq, tensor *gk, tensor *gv, const tensor *go, const tensor *q,
                             const tensor *k, const tensor *v, const tensor *o, const tensor *lse,
                             const tensor *mask, const attention_params *p);

void cuda_index_select(tensor *out, const tensor *x, int dim, const tensor *idx);
void cuda_index_add(tensor *out, int dim, const tensor *idx, const tensor *src);
void cuda_gather(tensor *out, const tensor *x, int dim, const tensor *idx);
void cuda_scatter_add(tensor *out, int dim, const tensor *idx, const tensor *src);

void cuda_random(random_kind kind, tensor *out, rng_state rng, const double *params);
void cuda_dropout(tensor *out, const tensor *x, double p, rng_state rng);
void cuda_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_hyper *h);
