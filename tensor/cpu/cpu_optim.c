// Optimizer update kernels (the formula is ew_adamw_* in tensor/elementwise.h).
#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"

#define ADAMW_LOOP(T, S)                                                                           \
    static void adamw_##S(T *p, const T *g, T *m, T *v, int64_t n, const adamw_hyper *h) {         \
        _Pragma("omp parallel for if (n >= CPU_PARALLEL_GRAIN)") for (int64_t i = 0; i < n; i++)   \
            ew_adamw_##S(&p[i], g[i], &m[i], &v[i], h);                                            \
    }
ADAMW_LOOP(float, f32)
ADAMW_LOOP(double, f64)

void cpu_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_hyper *h) {
    int64_t n = tensor_numel(param);
    if (param->dtype == PETAL_F32)
        adamw_f32(tensor_data_f32(param), tensor_data_f32(grad), tensor_data_f32(m),
                  tensor_data_f32(v), n, h);
    else
        adamw_f64(tensor_data_f64(param), tensor_data_f64(grad), tensor_data_f64(m),
                  tensor_data_f64(v), n, h);
}
