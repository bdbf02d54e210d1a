// Optimizer update kernels: one thread per element runs ew_adamw_* of tensor/elementwise.h, the
// formula the CPU loop runs (compiled without fused multiply-adds, so the step is the same bits).
#include "tensor/cuda/cuda_kernels.cuh"

template <typename T, void (*STEP)(T *, T, T *, T *, const adamw_hyper *)>
__global__ void adamw_kernel(T *p, const T *g, T *m, T *v, int64_t n, adamw_hyper h) {
    CUDA_FOR_EACH(i, n) STEP(&p[i], g[i], &m[i], &v[i], &h);
}

void cuda_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_hyper *h) {
    cudaStream_t stream = cuda_stream_for("adamw", {param, grad, m, v});
    int64_t n = tensor_numel(param);
    if (n == 0) return;
    if (param->dtype == PETAL_F32)
        cuda_launch(adamw_kernel<float, ew_adamw_f32>, cuda_blocks(n), CUDA_THREADS, 0, stream,
                    cuda_data<float>(param), cuda_data<float>(grad), cuda_data<float>(m),
                    cuda_data<float>(v), n, *h);
    else
        cuda_launch(adamw_kernel<double, ew_adamw_f64>, cuda_blocks(n), CUDA_THREADS, 0, stream,
                    cuda_data<double>(param), cuda_data<double>(grad), cuda_data<double>(m),
                    cuda_data<double>(v), n, *h);
}
