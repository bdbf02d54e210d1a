// Random fills and dropout on the device: element i is random_value / random_keep of
// tensor/random_formula.h at counter i, the same Philox stream the CPU kernels read, so a seed
// gives the same uniforms and dropout masks bit for bit on both devices, and the same normals up
// to the last bits of CUDA's and libm's log, cos and erf. (cuRAND's generators are not used: their
// counter layout differs, and a model must not change with the device it was initialised on.)
#include "tensor/cuda/cuda_kernels.cuh"
extern "C" {
#include "tensor/random_formula.h"
}

template <typename T>
__global__ void random_kernel(random_kind kind, T *out, int64_t n, rng_state rng,
                              random_params params) {
    CUDA_FOR_EACH(i, n) out[i] = (T)random_value(kind, rng, i, &params);
}

template <typename T>
__global__ void dropout_kernel(T *out, const T *x, int64_t n, double p, rng_state rng) {
    T scale = (T)(1.0 / (1.0 - p));
    CUDA_FOR_EACH(i, n) out[i] = random_keep(rng, i, p) ? x[i] * scale : (T)0;
}

void cuda_random(random_kind kind, tensor *out, rng_state rng, const double *params) {
    cudaStream_t stream = cuda_stream_for("random fill", {out});
    PETAL_CHECK(tensor_is_contiguous(out), "random fill: the output must be contiguous");
    PETAL_CHECK(dtype_is_float(out->dtype), "random fill: dtype %s is not supported",
                dtype_name(out->dtype));
    random_params rp = random_prepare(kind, params); // the bounds' CDF on the host, as the CPU's
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    if (out->dtype == PETAL_F32)
        cuda_launch(random_kernel<float>, cuda_blocks(n), CUDA_THREADS, 0, stream, kind,
                    cuda_data<float>(out), n, rng, rp);
    else
        cuda_launch(random_kernel<double>, cuda_blocks(n), CUDA_THREADS, 0, stream, kind,
                    cuda_data<double>(out), n, rng, rp);
}

void cuda_dropout(tensor *out, const tensor *x, double p, rng_state rng) {
    cudaStream_t stream = cuda_stream_for("dropout", {out, x});
    int64_t n = tensor_numel(out);
    if (n == 0) return;
    if (out->dtype == PETAL_F32)
        cuda_launch(dropout_kernel<float>, cuda_blocks(n), CUDA_THREADS, 0, stream,
                    cuda_data<float>(out), cuda_data<float>(x), n, p, rng);
    else
        cuda_launch(dropout_kernel<double>, cuda_blocks(n), CUDA_THREADS, 0, stream,
                    cuda_data<double>(out), cuda_data<double>(x), n, p, rng);
}
