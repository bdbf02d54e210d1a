// The generic CPU path (x86-64-v2: SSE4.2; compiled with -march=x86-64-v2, CMakeLists.txt):
// 4-float vector math and dropout. The narrow GEMMs stay with OpenBLAS (which picks its own kernels
// for the CPU at run time).
#include <immintrin.h>
#include <sleef.h>

#define VEC 4
typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(4)));
#define VEC_EXP(x)  ((vec)Sleef_expf4_u10sse4((__m128)(x)))
#define VEC_LOG(x)  ((vec)Sleef_logf4_u10sse4((__m128)(x)))
#define VEC_TANH(x) ((vec)Sleef_tanhf4_u10sse4((__m128)(x)))
#define ATTN_MR     6
#define ATTN_NV     2

#define CPU_PATH_NAME  "generic"
#define CPU_PATH_TABLE cpu_path_generic_kernels
#include "tensor/cpu/cpu_path_table.h"
