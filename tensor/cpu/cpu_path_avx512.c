// The avx512 CPU path (x86-64-v4; compiled with -march=x86-64-v4, CMakeLists.txt): 16-float
// vector math, dropout and the narrow GEMM kernels with 24 of the 32 vector registers as
// accumulators.
#include <immintrin.h>
#include <sleef.h>

#define VEC 16
typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(4)));
#define VEC_EXP(x)  ((vec)Sleef_expf16_u10avx512f((__m512)(x)))
#define VEC_LOG(x)  ((vec)Sleef_logf16_u10avx512f((__m512)(x)))
#define VEC_TANH(x) ((vec)Sleef_tanhf16_u10avx512f((__m512)(x)))
#define DOT_ROWS    6
#define OUTER_VECS  6
#define ATTN_MR     6
#define ATTN_NV     4

#define CPU_PATH_NAME  "avx512"
#define CPU_PATH_TABLE cpu_path_avx512_kernels
#include "tensor/cpu/cpu_path_table.h"
