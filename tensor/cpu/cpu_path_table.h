// The kernels and table of one CPU path (cpu_path.h), included last by the path's translation unit
// (tensor/cpu/cpu_path_*.c). It defines first CPU_PATH_NAME (the path's name, "avx2"),
// CPU_PATH_TABLE (the table's name, cpu_path_avx2_kernels), what cpu_path_math.h needs, and, for
// a path with narrow GEMM kernels, what cpu_gemm_narrow.h needs (DOT_ROWS among it), and the
// fused attention's tile (ATTN_MR, ATTN_NV: cpu_path_attention.h).
#ifdef DOT_ROWS
#include "tensor/cpu/cpu_gemm_narrow.h"
#endif
#include "tensor/cpu/cpu_path_dropout.h"
#include "tensor/cpu/cpu_path_math.h"
#include "tensor/cpu/cpu_path_row.h" // after the math, before the row kernels that use it
#include "tensor/cpu/cpu_path_layer_norm.h"
#include "tensor/cpu/cpu_path_softmax.h"
#include "tensor/cpu/cpu_path_attention.h"

const cpu_path_kernels CPU_PATH_TABLE = {
    .name = CPU_PATH_NAME,
    .unary_f32 = {[UNARY_EXP] = span_exp,
                  [UNARY_LOG] = span_log,
                  [UNARY_TANH] = span_tanh,
                  [UNARY_GELU_ERF] = span_gelu_erf,
                  [UNARY_GELU_TANH] = span_gelu_tanh},
    .binary_f32 = {[BINARY_ADD_GELU_ERF] = span_add_gelu_erf,
                   [BINARY_GELU_ERF_GRAD] = span_gelu_erf_grad,
                   [BINARY_GELU_TANH_GRAD] = span_gelu_tanh_grad},
    .dropout_group = dropout_group,
    .softmax_row = softmax_row,
    .softmax_backward_row = softmax_backward_row,
    .layer_norm_row = layer_norm_row,
    .layer_norm_backward_row = layer_norm_backward_row,
    .vec_width = VEC,
    .attn_mr = ATTN_MR,
    .attn_nv = ATTN_NV,
    .attn_rows_tile = attn_rows_tile,
    .attn_panel_tile = attn_panel_tile,
    .attn_softmax_row = attn_softmax_row,
    .attn_transpose = attn_transpose,
    .attn_keep = attn_keep,
#ifdef DOT_ROWS
    .sgemm_narrow = narrow_sgemm,
#endif
};
