// LayerNorm over the last dim, forward and backward, with the formulas of
// tensor/cpu/cpu_layer_norm.c on the row tiles of cuda_common.cuh:
//   y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps)  (biased variance, as torch)
//   gx = rstd * (gxh - mean(gxh) - xh * mean(gxh * xh)),  xh = (x - mean) * rstd, gxh = gy * w
//   gw = sum_rows(gy * xh),  gb = sum_rows(gy)
// A row is one LayerNorm row for the forward pass (one kernel) and gx (one kernel); for gw and gb a
// "row" is a column of the (rows, d) matrix, so the same tiles sum it (32 columns side by side,
// coalesced), split into chunks of rows to fill the GPU (cuda_split.h).
#include "tensor/cuda/cuda_kernels.cuh"
#include "tensor/cuda/cuda_split.h"

template <typename T>
__global__ void layer_norm_kernel(T *y, T *mean_out, T *rstd_out, const T *x, const T *w,
                                  const T *b, row_shape s, double eps) {
    __shared__ double sums[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    const T *xr = x + (live ? row * s.len : 0);
    double acc = 0;
    for (int64_t i = threadIdx.y; live && i < s.len; i += blockDim.y) acc += xr[i];
    double mean = tile_reduce(acc, sums, sum_op()) / (double)s.len;
    acc = 0;
    for (int64_t i = threadIdx.y; live && i < s.len; i += blockDim.y)
        acc += ((double)xr[i] - mean) * ((double)xr[i] - mean);
    double rstd = 1.0 / sqrt(tile_reduce(acc, sums, sum_op()) / (double)s.len + eps);
    if (!live) return; // after the last tile_reduce: no barrier follows
    T m = (T)mean, r = (T)rstd;
    for (int64_t i = threadIdx.y; i < s.len; i += blockDim.y) {
        T v = (xr[i] - m) * r;
        if (w) v *= w[i];
        if (b) v += b[i];
        y[row * s.len + i] = v;
    }
    if (threadIdx.y == 0) {
        mean_out[row] = m;
        rstd_out[row] = r;
    }
}

// gx, one LayerNorm row per tile row.
template <typename T>
__global__ void layer_norm_backward_kernel(T *gx, const T *gy, const T *x, const T *mean,
                                           const T *rstd, const T *w, row_shape s) {
    __shared__ double sums[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    int64_t start = live ? row * s.len : 0;
    T mu = live ? mean[row] : (T)0, r = live ? rstd[row] : (T)0;
    double acc1 = 0, acc2 = 0; // sum(gxh), sum(gxh * xh)
    for (int64_t i = threadIdx.y; live && i < s.len; i += blockDim.y) {
        T xh = (x[start + i] - mu) * r, g = w ? gy[start + i] * w[i] : gy[start + i];
        acc1 += g;
        acc2 += g * xh;
    }
    T m1 = (T)(tile_reduce(acc1, sums, sum_op()) / (double)s.len);
    T m2 = (T)(tile_reduce(acc2, sums, sum_op()) / (double)s.len);
    for (int64_t i = threadIdx.y; live && i < s.len; i += blockDim.y) {
        T xh = (x[start + i] - mu) * r, g = w ? gy[start + i] * w[i] : gy[start + i];
        gx[start + i] = r * (g - m1 - xh * m2);
    }
}

// gw and gb: column c of the (n_rows, d) gradient summed over rows, in two passes (cuda_split.h),
// as a (6304, 768) gradient's 24 column tiles would leave most of a GPU idle. Pass 1: partial v
// sums chunk v / d of column v % d (tile row = (chunk, column) pair) into (chunks, d) matrices.
template <typename T>
__global__ void layer_norm_affine_partial_kernel(double *part_w, double *part_b, const T *gy,
                                                 const T *x, const T *mean, const T *rstd,
                                                 row_shape s, split_plan p) {
    __shared__ double sums[CUDA_THREADS];
    int64_t v = tile_row(), d = s.inner, begin = 0, end = 0;
    bool live = v < d * p.chunks;
    int64_t col = live ? split_row(v, d) : 0;
    if (live) split_bounds(p, s.len, split_chunk(v, d), &begin, &end);
    double acc_w = 0, acc_b = 0;
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y) {
        int64_t i = r * d + col;
        T xh = (x[i] - mean[r]) * rstd[r];
        acc_w += gy[i] * xh;
        acc_b += gy[i];
    }
    double sw = tile_reduce(acc_w, sums, sum_op()), sb = tile_reduce(acc_b, sums, sum_op());
    if (!live || threadIdx.y != 0) return;
    part_w[v] = sw;
    part_b[v] = sb;
}

// Pass 2: a column's partials in chunk order.
template <typename T>
__global__ void layer_norm_affine_finish_kernel(T *gw, T *gb, const double *part_w,
                                                const double *part_b, int64_t d, int64_t chunks) {
    CUDA_FOR_EACH(col, d) {
        double sw = 0, sb = 0;
        for (int64_t k = 0; k < chunks; k++) {
            sw += part_w[k * d + col];
            sb += part_b[k * d + col];
        }
        if (gw) gw[col] = (T)sw;
        if (gb) gb[col] = (T)sb;
    }
}

template <typename T> static T *data_or_null(const tensor *t) {
    return t ? cuda_data<T>(t) : NULL;
}

template <typename T>
static void layer_norm_typed(cudaStream_t stream, tensor *y, tensor *mean, tensor *rstd,
                             const tensor *x, const tensor *w, const tensor *b, row_shape s,
                             double eps) {
    row_tile t = row_tile_for(s);
    cuda_launch(layer_norm_kernel<T>, t.grid, t.block, 0, stream, cuda_data<T>(y),
                cuda_data<T>(mean), cuda_data<T>(rstd), cuda_data<T>(x), data_or_null<T>(w),
                data_or_null<T>(b), s, eps);
}

template <typename T>
static void layer_norm_affine_typed(cudaStream_t stream, tensor *gw, tensor *gb, const tensor *gy,
                                    const tensor *x, const tensor *mean, const tensor *rstd,
                                    row_shape s) {
    row_shape cols = {s.rows, s.len, s.len}; // (n_rows, d): d columns of n_rows, d apart
    split_plan p = split_plan_for(row_tile_for(cols).grid, s.rows);
    row_tile t = row_tile_for(row_shape{p.chunk_len, s.len, s.len * p.chunks});
    scratch_set sc = {x->device.index, {}, {}, 0};
    size_t nbytes = (size_t)(p.chunks * s.len) * sizeof(double);
    double *part_w = (double *)scratch_take(&sc, nbytes); // (chunks, d)
    double *part_b = (double *)scratch_take(&sc, nbytes); // (chunks, d)
    cuda_launch(layer_norm_affine_partial_kernel<T>, t.grid, t.block, 0, stream, part_w, part_b,
                cuda_data<T>(gy), cuda_data<T>(x), cuda_data<T>(mean), cuda_data<T>(rstd), cols, p);
    cuda_launch(layer_norm_affine_finish_kernel<T>, cuda_blocks(s.len), CUDA_THREADS, 0, stream,
                data_or_null<T>(gw), data_or_null<T>(gb), (const double *)part_w,
                (const double *)part_b, s.len, p.chunks);
    scratch_release(&sc);
}

template <typename T>
static void layer_norm_backward_typed(cudaStream_t stream, tensor *gx, tensor *gw, tensor *gb,
                                      const tensor *gy, const tensor *x, const tensor *mean,
                                      const tensor *rstd, const tensor *w, row_shape s) {
    if (gx) {
        row_tile t = row_tile_for(s);
        cuda_launch(layer_norm_backward_kernel<T>, t.grid, t.block, 0, stream, cuda_data<T>(gx),
                    cuda_data<T>(gy), cuda_data<T>(x), cuda_data<T>(mean), cuda_data<T>(rstd),
                    data_or_null<T>(w), s);
    }
    if (gw || gb) layer_norm_affine_typed<T>(stream, gw, gb, gy, x, mean, rstd, s);
}

// Rows of the last dim: len d, inner 1.
static row_shape last_dim_rows(const tensor *x) {
    int64_t d = x->shape[x->ndim - 1];
    return row_shape{d, 1, d ? tensor_numel(x) / d : 0};
}

void cuda_layer_norm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                     const tensor *b, double eps) {
    cudaStream_t stream = cuda_stream_for("layer_norm", {y, mean, rstd, x, w, b});
    row_shape s = last_dim_rows(x);
    if (s.rows == 0) return;
    if (x->dtype == PETAL_F32)
        layer_norm_typed<float>(stream, y, mean, rstd, x, w, b, s, eps);
    else
        layer_norm_typed<double>(stream, y, mean, rstd, x, w, b, s, eps);
}

void cuda_layer_norm_backward(tensor *gx, tensor *gw, tensor *gb, const tensor *gy, const tensor *x,
                              const tensor *mean, const tensor *rstd, const tensor *w) {
    cudaStream_t stream =
        cuda_stream_for("layer_norm backward", {x, gx, gw, gb, gy, mean, rstd, w});
    row_shape s = last_dim_rows(x);
    if (s.len == 0) return;
    if (x->dtype == PETAL_F32)
        layer_norm_backward_typed<float>(stream, gx, gw, gb, gy, x, mean, rstd, w, s);
    else
        layer_norm_backward_typed<double>(stream, gx, gw, gb, gy, x, mean, rstd, w, s);
}
