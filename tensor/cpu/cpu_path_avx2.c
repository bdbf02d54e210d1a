// The avx2 CPU path (x86-64-v3: AVX2 and FMA, as on Zen 3 or Haswell; compiled with
// -march=x86-64-v3, CMakeLists.txt): 8-float vector math, dropout and the narrow GEMM kernels sized
// for 16 vector registers (dot form: 2 x 4 accumulators, 4 of b, 2 of a; outer form: 4 x 3
// accumulators, 3 of a, 1 broadcast).
#include <immintrin.h>
#include <sleef.h>

#define VEC 8
typedef float vec __attribute__((vector_size(VEC * sizeof(float)), aligned(4)));
#define VEC_EXP(x)  ((vec)Sleef_expf8_u10avx2((__m256)(x)))
#define VEC_LOG(x)  ((vec)Sleef_logf8_u10avx2((__m256)(x)))
#define VEC_TANH(x) ((vec)Sleef_tanhf8_u10avx2((__m256)(x)))
#define DOT_ROWS    2
#define OUTER_VECS  3
#define ATTN_MR     6
#define ATTN_NV     2

#define CPU_PATH_NAME  "avx2"
#define CPU_PATH_TABLE cpu_path_avx2_kernels
#include "tensor/cpu/cpu_path_table.h"
