// CPU paths: the hot kernels (the f32 vector math of GELU, exp, log and tanh, the f32 rows of
// softmax and LayerNorm, dropout's Philox rounds and the narrow GEMM kernels) are built once per
// x86-64 level, each level in its own translation unit with its own -march
// (tensor/cpu/cpu_path_generic.c, _avx2.c, _avx512.c), so one binary runs at full speed on every
// x86-64 machine and never executes an instruction its CPU lacks. The best path the CPU supports is
// picked by cpuid on first use; PETAL_CPU=generic|avx2|avx512 forces one, and a forced path the CPU
// cannot run is refused.
//
//   generic  x86-64-v2 (SSE4.2): 4-float math, rows and dropout; the narrow GEMMs go to OpenBLAS
//   avx2     x86-64-v3 (AVX2, FMA): 8-float math, rows and dropout, 8-float narrow GEMM kernels
//   avx512   x86-64-v4 (AVX-512 F/BW/DQ/VL): 16-float math, rows, dropout and narrow GEMM kernels
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/backend.h"
#include "tensor/cpu/cpu_iter.h"
#include "tensor/error.h"

typedef enum { CPU_PATH_GENERIC, CPU_PATH_AVX2, CPU_PATH_AVX512, CPU_PATH_COUNT } cpu_path;

// c (m, n) = alpha * op(a) @ op(b) + beta * c, as cpu_sgemm_narrow (tensor/cpu/cpu_kernels.h).
typedef bool (*cpu_sgemm_narrow_fn)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                    float alpha, const float *a, int64_t lda, const float *b,
                                    int64_t ldb, float beta, float *c, int64_t ldc);

// Elements 4 b0 .. of a dropout (cpu_dropout): DROPOUT_LANES Philox blocks, 4 elements each.
#define DROPOUT_LANES 16
typedef void (*cpu_dropout_group_fn)(int64_t b0, int64_t n, const tensor *x, tensor *out, double p,
                                     rng_state rng);

// One contiguous f32 row of len elements: y = softmax(x), or log_softmax(x) when as_log (y may be
// x), and its backward (gx may be gy); cpu_softmax and cpu_softmax_backward.
typedef void (*cpu_softmax_row_fn)(float *y, const float *x, int64_t len, bool as_log);
typedef void (*cpu_softmax_backward_row_fn)(float *gx, const float *gy, const float *y, int64_t len,
                                            bool as_log);
// One f32 row of d elements of cpu_layer_norm (w, b may be NULL), and of its backward: gx (skipped
// when NULL) and the row's share of gw and gb added into f64 accumulators (each may be NULL).
typedef void (*cpu_layer_norm_row_fn)(float *y, float *mean, float *rstd, const float *x,
                                      const float *w, const float *b, int64_t d, double eps);
typedef void (*cpu_layer_norm_backward_row_fn)(float *gx, double *gw, double *gb, const float *gy,
                                               const float *x, float mean, float rstd,
                                               const float *w, int64_t d);

// Fused attention (tensor/cpu/cpu_attention.c, tensor/cpu/cpu_path_attention.h): c (mr x nv
// vectors, rows ldc apart) = alpha * sum_kk a(r, kk) b[kk * ldb ..], for kk < k, with a(r, kk) at
// a[r * as + kk] (rows form) or a[kk * as + r] (panel form); rows mr.. of the tile are computed
// but not stored. nv is 1 .. attn_nv; mr is 1 .. attn_mr.
typedef void (*cpu_attn_tile_fn)(int64_t k, const float *a, int64_t as, const float *b, int64_t ldb,
                                 float alpha, float *c, int64_t ldc, int64_t mr, int nv);
// The scores of a row (scale s + mask, -inf from `visible` on; mask NULL: none) turned into
// softmax probabilities in place, returning the log-sum-exp.
typedef float (*cpu_attn_softmax_row_fn)(float *s, int64_t len, int64_t visible, float scale,
                                         const float *mask);
// keep[c] = 1 / (1 - p) where dropout keeps element e0 + c of P (B, H, T, S), else 0.
typedef void (*cpu_attn_keep_fn)(float *keep, int64_t n, int64_t e0, double p, rng_state rng);
// dst[c * ldd + r] = src[r * lds + c] (r < rows, c < cols), zero for rows <= r < ldd.
typedef void (*cpu_attn_transpose_fn)(float *dst, int64_t ldd, const float *src, int64_t lds,
                                      int64_t rows, int64_t cols);

// What one path supplies. The spans replace the portable f32 spans of cpu_elementwise.c for their
// op (NULL: the portable one runs); they compute contiguous and strided operands alike, so a
// result does not depend on the layout.
typedef struct {
    const char *name;
    cpu_span_fn unary_f32[UNARY_OP_COUNT];
    cpu_span_fn binary_f32[BINARY_OP_COUNT];
    cpu_sgemm_narrow_fn sgemm_narrow; // NULL: every shape is left to OpenBLAS
    cpu_dropout_group_fn dropout_group;
    cpu_softmax_row_fn softmax_row;
    cpu_softmax_backward_row_fn softmax_backward_row;
    cpu_layer_norm_row_fn layer_norm_row;
    cpu_layer_norm_backward_row_fn layer_norm_backward_row;
    int vec_width;        // floats per vector
    int attn_mr, attn_nv; // the tiles' rows and vectors of columns
    cpu_attn_tile_fn attn_rows_tile, attn_panel_tile;
    cpu_attn_softmax_row_fn attn_softmax_row;
    cpu_attn_transpose_fn attn_transpose;
    cpu_attn_keep_fn attn_keep;
} cpu_path_kernels;

extern const cpu_path_kernels cpu_path_generic_kernels, cpu_path_avx2_kernels,
    cpu_path_avx512_kernels;

const char *cpu_path_name(cpu_path path);
// Whether this CPU runs the path's instructions (cpuid).
bool cpu_path_supported(cpu_path path);
// "generic", "avx2" or "avx512" -> *path; PETAL_ERR_ARG naming the value otherwise.
petal_status cpu_path_parse(const char *name, cpu_path *path);
// Makes `path` the active one; PETAL_ERR_DEVICE if this CPU cannot run it. Call it between kernels
// (tests and the bench compare paths this way), not while one runs.
petal_status cpu_path_set(cpu_path path);
// Picks the path unless one is active: PETAL_CPU when set, else the best supported. An unknown or
// unsupported PETAL_CPU returns its error and leaves no path active (the next call fails again).
petal_status cpu_path_init(void);
// The active path; the first call runs cpu_path_init and aborts on a bad PETAL_CPU (as a bad
// PETAL_NUM_THREADS does: a kernel has no caller to return the error to).
cpu_path cpu_path_active(void);
const cpu_path_kernels *cpu_path_kernels_active(void);
