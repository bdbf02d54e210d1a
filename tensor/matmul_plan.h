// How c = alpha * a @ b + beta * c becomes GEMM calls, shared by every backend (OpenBLAS in
// tensor/cpu/cpu_matmul.c, cuBLAS in tensor/cuda/cuda_matmul.cu).
//
// Operands reach the GEMM through their strides: a row-major or a transposed (column-major) matrix
// is passed as is, with the matching transpose flag, so x @ W^T never copies W. Only a matrix whose
// strides are neither (e.g. a slice with a step in both dims) is copied first. When b is the same
// matrix for every batch entry and the batch dims of a and c are plain stacks of rows (the x @ W^T
// of every Linear layer), the batch folds into the row dim: one tall GEMM.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/precision.h"
#include "tensor/tensor.h"

typedef struct {
    bool trans_a, trans_b;          // the operand is stored column-major (a transposed view)
    int64_t m, n, k, lda, ldb, ldc; // a row-major GEMM: c (m, n) = a (m, k) @ b (k, n)
    int64_t batch;                  // GEMMs to run: one per batch entry of c, 1 once folded
} matmul_plan;

// Runs the plan's GEMMs with inputs at `precision`. Entry i reads each operand t at element
// matmul_batch_offset(t, c, i) of its storage (with the batch folded, entry 0 covers everything).
typedef void (*matmul_gemm_fn)(const matmul_plan *plan, const tensor *a, const tensor *b, tensor *c,
                               double alpha, double beta, petal_precision precision);

// The driver every backend's matmul calls: an empty product (k = 0) becomes c = beta * c through
// c's backend, operands the GEMM cannot read are copied, then `gemm` runs the plan.
void matmul_run(matmul_gemm_fn gemm, tensor *c, const tensor *a, const tensor *b, double alpha,
                double beta, petal_precision precision);

// The plan matmul_run would run for c = a @ b, into *plan; false when it would first copy a or b
// (strides a GEMM cannot read), and for an empty product (k = 0).
bool matmul_plan_make(const tensor *c, const tensor *a, const tensor *b, matmul_plan *plan);

// Room for operand t at lower precision: a new storage of `dtype` (on t's device) as long as the
// span of t's storage that t's elements lie in (*first: the span's first element there, *count: its
// length), viewed with t's shape and strides. The backend writes element j of the span, rounded,
// to element j of the new storage; the GEMM then reads the copy exactly where it would read t, so
// the plan, and with it the order of the sums, is the unrounded product's. For a dense operand
// (contiguous, transposed, a permutation) the span is its numel; broadcast dims make it smaller.
tensor *matmul_operand_span(const tensor *t, petal_dtype dtype, int64_t *first, int64_t *count);

// Element offset of batch entry i of operand t (a, b or c) in its storage, t's batch dims
// broadcast to c's (size-1 dims repeat).
int64_t matmul_batch_offset(const tensor *t, const tensor *c, int64_t i);
