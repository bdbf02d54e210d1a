// Softmax and log-softmax along one dim of contiguous tensors, forward and backward, on the row
// tiles of cuda_common.cuh. Per element the formulas of tensor/cpu/cpu_softmax.c: y = exp(x - m)
// times (T)(1 / sum) or x - (m + log sum), sums in double; y may alias x (attention runs in place).
#include "tensor/cuda/cuda_kernels.cuh"

template <typename T> __global__ void softmax_kernel(T *y, const T *x, row_shape s, bool as_log) {
    __shared__ T maxima[CUDA_THREADS];
    __shared__ double sums[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    int64_t start = live ? row_start(s, row) : 0;
    const T *xr = x + start;
    T m = live ? xr[0] : (T)0;
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y)
        m = max_op<T>()(m, xr[r * s.inner]);
    m = tile_reduce(m, maxima, max_op<T>());
    if (isinf(m) && m < 0) m = 0; // an all -inf row: keep exp(x - m) finite
    double acc = 0;
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y)
        acc += (double)cuda_exp(xr[r * s.inner] - m);
    double sum = tile_reduce(acc, sums, sum_op());
    T shift = m + (T)log(sum), inv = (T)(1.0 / sum);
    T *yr = y + start;
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y) {
        T v = xr[r * s.inner];
        yr[r * s.inner] = as_log ? v - shift : cuda_exp(v - m) * inv;
    }
}

// softmax: gx = y (gy - sum(gy y));  log-softmax: gx = gy - exp(y) sum(gy)
template <typename T>
__global__ void softmax_backward_kernel(T *gx, const T *gy, const T *y, row_shape s, bool as_log) {
    __shared__ double sums[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    int64_t start = live ? row_start(s, row) : 0;
    double acc = 0;
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y) {
        int64_t i = start + r * s.inner;
        acc += as_log ? gy[i] : gy[i] * y[i];
    }
    T d = (T)tile_reduce(acc, sums, sum_op());
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y) {
        int64_t i = start + r * s.inner;
        gx[i] = as_log ? gy[i] - cuda_exp(y[i]) * d : y[i] * (gy[i] - d);
    }
}

void cuda_softmax(tensor *y, const tensor *x, int dim, bool as_log) {
    cudaStream_t stream = cuda_stream_for("softmax", {y, x});
    row_shape s = row_shape_of(x, dim);
    if (s.len == 0 || s.rows == 0) return;
    row_tile t = row_tile_for(s);
    if (x->dtype == PETAL_F32)
        cuda_launch(softmax_kernel<float>, t.grid, t.block, 0, stream, cuda_data<float>(y),
                    cuda_data<float>(x), s, as_log);
    else
        cuda_launch(softmax_kernel<double>, t.grid, t.block, 0, stream, cuda_data<double>(y),
                    cuda_data<double>(x), s, as_log);
}

void cuda_softmax_backward(tensor *gx, const tensor *gy, const tensor *y, int dim, bool as_log) {
    cudaStream_t stream = cuda_stream_for("softmax backward", {gx, gy, y});
    row_shape s = row_shape_of(y, dim);
    if (s.len == 0 || s.rows == 0) return;
    row_tile t = row_tile_for(s);
    if (y->dtype == PETAL_F32)
        cuda_launch(softmax_backward_kernel<float>, t.grid, t.block, 0, stream,
                    cuda_data<float>(gx), cuda_data<float>(gy), cuda_data<float>(y), s, as_log);
    else
        cuda_launch(softmax_backward_kernel<double>, t.grid, t.block, 0, stream,
                    cuda_data<double>(gx), cuda_data<double>(gy), cuda_data<double>(y), s, as_log);
}
