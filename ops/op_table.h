// The op table: one row (or a few) per differentiable op, each naming its inputs (shape, layout,
// value domain, whether it requires grad) and a function that runs the op. It drives gradcheck
// (`petal gradcheck`, tests/ops) and the forward tests against naive f64 references. Adding an op
// means adding its forward, its backward rule and a row here.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef enum {
    LAYOUT_CONTIGUOUS,
    LAYOUT_TRANSPOSED, // the last two dims swapped in memory (a transposed view)
    LAYOUT_STRIDED,    // every other element of a buffer twice as long in the last dim
    LAYOUT_HEADS,      // dims 1 and 2 swapped in memory, like heads split from (B, T, H, D)
} op_layout;

typedef enum {
    DOMAIN_NORMAL,    // N(0, 1)
    DOMAIN_POSITIVE,  // U(0.5, 2)
    DOMAIN_NONZERO,   // +-U(0.1, 2): away from the kinks of relu and abs
    DOMAIN_DISTINCT,  // a shuffled grid of distinct values: no ties for max, min and topk
    DOMAIN_SMALL_INT, // -1, 0 or 1 as floats: equal elements for comparisons and masks
    DOMAIN_INDEX,     // i64 in [0, index_hi): ids and indices
} op_domain;

typedef struct {
    int ndim;
    int64_t shape[PETAL_MAX_DIMS];
    op_layout layout;
    op_domain domain;
    bool grad;
    int64_t index_hi;
} op_arg;

typedef struct op_case op_case;
struct op_case {
    const char *name; // unique: "op/variant"
    const char *op;   // the op it exercises (the key of its reference implementation)
    int n_args;
    op_arg args[4];
    int64_t iparam[4]; // op parameters (dims, k, flags) read by fn and the reference
    double fparam[4];  // op parameters (scalars, eps, p)
    tensor *(*fn)(tensor **args, const op_case *c);
};

extern const op_case op_cases[];
extern const int n_op_cases;

// Builds argument i of case c in `dtype` (indices stay i64) with values from `seed`, in the case's
// layout, with requires_grad set as the case says.
tensor *op_case_arg(const op_case *c, int i, petal_dtype dtype, uint64_t seed);
// True when some argument requires grad (the case is gradchecked).
bool op_case_differentiable(const op_case *c);
