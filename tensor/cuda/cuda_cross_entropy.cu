// Cross-entropy of logits (N, C) against class targets (N), one loss per row, with the formulas of
// tensor/cpu/cpu_cross_entropy.c (label smoothing e over C classes):
//   loss = lse - (1 - e) x_y - (e / C) sum_c x_c,   lse = log sum_c exp(x_c)
//   dloss/dx_c = softmax_c - (1 - e) [c == y] - e / C
// Rows whose target is ignore_index have loss 0 and gradient 0. A target outside [0, C) is never
// read through: the forward kernel flags it and the host aborts naming the row, as the CPU does,
// at the next call that waits for the device (cuda_check_errors, cuda_backend.h).
#include "tensor/cuda/cuda_kernels.cuh"

typedef struct {
    const void *ids; // i32 or i64
    bool is_i64;
    int64_t ignore;
    double smoothing;
} targets;

template <typename T>
__global__ void cross_entropy_kernel(T *loss, T *lse, const T *x, targets tg, row_shape s,
                                     unsigned long long *bad) {
    __shared__ T maxima[CUDA_THREADS];
    __shared__ double sums[CUDA_THREADS];
    int64_t row = tile_row(), c = s.len;
    bool live = row < s.rows;
    const T *xr = x + (live ? row * c : 0);
    T m = live ? xr[0] : (T)0;
    for (int64_t j = threadIdx.y; live && j < c; j += blockDim.y) m = max_op<T>()(m, xr[j]);
    m = tile_reduce(m, maxima, max_op<T>());
    double acc = 0, acc_total = 0;
    for (int64_t j = threadIdx.y; live && j < c; j += blockDim.y) {
        acc += cuda_exp(xr[j] - m);
        acc_total += xr[j];
    }
    double sum = tile_reduce(acc, sums, sum_op()), total = tile_reduce(acc_total, sums, sum_op());
    if (!live || threadIdx.y != 0) return;
    int64_t y = index_load(tg.ids, tg.is_i64, row);
    bool ignored = y == tg.ignore;
    if (!ignored && (y < 0 || y >= c)) {
        atomicMin(bad, (unsigned long long)row);
        return;
    }
    double l = (double)m + log(sum);
    lse[row] = (T)l;
    double e = tg.smoothing;
    loss[row] = ignored ? (T)0 : (T)(l - (1 - e) * xr[y] - e / (double)c * total);
}

template <typename T>
__global__ void cross_entropy_backward_kernel(T *gx, const T *gloss, const T *x, const T *lse,
                                              targets tg, int64_t n, int64_t c) {
    T off = (T)(tg.smoothing / (double)c), hit = (T)(1 - tg.smoothing);
    CUDA_FOR_EACH(e, n * c) {
        int64_t i = e / c, j = e % c, y = index_load(tg.ids, tg.is_i64, i);
        T g = y == tg.ignore ? (T)0 : gloss[i];
        T p = cuda_exp(x[e] - lse[i]);
        gx[e] = g * (p - off - (j == y ? hit : (T)0));
    }
}

static targets targets_of(const tensor *target, int64_t ignore_index, double smoothing) {
    return targets{cuda_data<const char>(target), target->dtype == PETAL_I64, ignore_index,
                   smoothing};
}

void cuda_cross_entropy(tensor *loss, tensor *lse, const tensor *logits, const tensor *target,
                        int64_t ignore_index, double smoothing) {
    cudaStream_t stream = cuda_stream_for("cross_entropy", {loss, lse, logits, target});
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (n == 0) return;
    PETAL_CHECK(c > 0, "cross_entropy: logits (%lld, 0) have no classes", (long long)n);
    int dev = logits->device.index;
    unsigned long long *bad = cuda_bad_index_begin(dev);
    row_tile t = row_tile_for(row_shape{c, 1, n});
    targets tg = targets_of(target, ignore_index, smoothing);
    if (logits->dtype == PETAL_F32)
        cuda_launch(cross_entropy_kernel<float>, t.grid, t.block, 0, stream, cuda_data<float>(loss),
                    cuda_data<float>(lse), cuda_data<float>(logits), tg, row_shape{c, 1, n}, bad);
    else
        cuda_launch(cross_entropy_kernel<double>, t.grid, t.block, 0, stream,
                    cuda_data<double>(loss), cuda_data<double>(lse), cuda_data<double>(logits), tg,
                    row_shape{c, 1, n}, bad);
    cuda_bad_index_commit(BAD_INDEX_TARGET, target, c, ignore_index);
}

void cuda_cross_entropy_backward(tensor *glogits, const tensor *gloss, const tensor *logits,
                                 const tensor *lse, const tensor *target, int64_t ignore_index,
                                 double smoothing) {
    cudaStream_t stream =
        cuda_stream_for("cross_entropy backward", {glogits, gloss, logits, lse, target});
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (n * c == 0) return;
    targets tg = targets_of(target, ignore_index, smoothing);
    unsigned int blocks = cuda_blocks(n * c);
    if (logits->dtype == PETAL_F32)
        cuda_launch(cross_entropy_backward_kernel<float>, blocks, CUDA_THREADS, 0, stream,
                    cuda_data<float>(glogits), cuda_data<float>(gloss), cuda_data<float>(logits),
                    cuda_data<float>(lse), tg, n, c);
    else
        cuda_launch(cross_entropy_backward_kernel<double>, blocks, CUDA_THREADS, 0, stream,
                    cuda_data<double>(glogits), cuda_data<double>(gloss), cuda_data<double>(logits),
                    cuda_data<double>(lse), tg, n, c);
}
