// The precision of f32 matrix products, per thread, like PyTorch's autocast region.
//
// Only the inputs of f32 GEMMs (every product goes through backend_matmul) are affected: under TF32
// each operand is rounded to TF32 (10 mantissa bits), under BF16 to bf16 (7 mantissa bits; the
// rounding functions are dtype_convert.h's f32_round_tf32 and f32_round_bf16); the
// products of rounded operands are exact in f32, the sums accumulate in f32 and the result is f32.
// Everything else stays f32: weights, activations, softmax, LayerNorm statistics, losses,
// gradients, the optimizer. f64 products never change (gradcheck keeps its reference).
//
//     petal_precision prev = precision_set(PETAL_PRECISION_BF16);
//     tensor *loss = model_forward(...);      // its GEMMs take bf16 inputs
//     precision_set(prev);
//     autograd_backward(loss, NULL, false);   // still bf16 for those nodes (autograd/autograd.h)
//
// A node of the autograd tape records the precision its forward ran in, and backward runs its
// GEMMs in that precision wherever backward is called, as PyTorch's autocast does.
#pragma once

#include <stdbool.h>

typedef enum {
    PETAL_PRECISION_F32,  // IEEE f32 products (the default)
    PETAL_PRECISION_TF32, // inputs rounded to TF32, f32 accumulation (cuBLAS's FAST_TF32)
    PETAL_PRECISION_BF16, // inputs rounded to bf16, f32 accumulation and result
    PETAL_PRECISION_COUNT
} petal_precision;

petal_precision precision_get(void);              // this thread's mode (F32 in a new thread)
petal_precision precision_set(petal_precision p); // returns the previous mode
const char *precision_name(petal_precision p);    // "f32", "tf32", "bf16"
bool precision_parse(const char *s, petal_precision *out); // false if s names no mode
#define PRECISION_CHOICES "f32, tf32, bf16"
