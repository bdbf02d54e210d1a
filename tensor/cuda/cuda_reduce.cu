// Reductions over one dim (sum, mean, max, min, logsumexp) and arg max/min, on the row tiles of
// cuda_common.cuh, with the CPU kernels' semantics (tensor/cpu/cpu_reduce.c): sums accumulate in
// double, a NaN wins max and min, ties and NaNs go to the first index. The combination order is
// fixed, so a result repeats exactly from run to run (it may differ from the CPU's in the last
// bits of a double sum).
#include "tensor/cuda/cuda_kernels.cuh"

// A candidate for max or min: its value and index (-1: no candidate yet).
struct extreme {
    double v;
    int64_t i;
};

// The better of two candidates: a NaN, then the larger (max) or smaller (min) value, then the
// smaller index. This is the element the CPU's left-to-right scan keeps, and as a total order it
// gives that element however the lanes split the row.
struct extreme_op {
    bool is_min;
    __device__ extreme operator()(extreme a, extreme b) const {
        if (a.i < 0) return b;
        if (b.i < 0) return a;
        bool a_nan = a.v != a.v, b_nan = b.v != b.v;
        if (a_nan != b_nan) return a_nan ? a : b;
        if (!a_nan && a.v != b.v) return (is_min ? a.v < b.v : a.v > b.v) ? a : b;
        return a.i < b.i ? a : b;
    }
};

// The extreme of this lane's elements of its row, combined over the lanes.
template <typename T>
__device__ extreme row_extreme(const T *row, row_shape s, bool live, bool is_min, extreme *shared) {
    extreme e = {0, -1};
    extreme_op pick = {is_min};
    for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y)
        e = pick(e, extreme{(double)row[r * s.inner], r});
    return tile_reduce(e, shared, pick);
}

template <typename T> __global__ void reduce_kernel(reduce_op op, T *out, const T *x, row_shape s) {
    __shared__ double sums[CUDA_THREADS];
    __shared__ extreme best[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    const T *base = x + (live ? row_start(s, row) : 0);
    double result;
    if (op == REDUCE_SUM || op == REDUCE_MEAN) {
        double acc = 0;
        for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y)
            acc += (double)base[r * s.inner];
        double total = tile_reduce(acc, sums, sum_op());
        result = op == REDUCE_MEAN ? total / (double)s.len : total;
    } else {
        result = row_extreme(base, s, live, op == REDUCE_MIN, best).v;
        if (op == REDUCE_LOGSUMEXP) { // every lane takes part, whatever its row's maximum
            double acc = 0;
            for (int64_t r = threadIdx.y; live && r < s.len; r += blockDim.y)
                acc += (double)cuda_exp((T)(base[r * s.inner] - result));
            double total = tile_reduce(acc, sums, sum_op());
            if (!isinf(result) && result == result) result += log(total);
        }
    }
    if (live && threadIdx.y == 0) out[row] = (T)result;
}

template <typename T>
__global__ void arg_reduce_kernel(bool is_min, T *values, int64_t *indices, const T *x,
                                  row_shape s) {
    __shared__ extreme best[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    extreme e = row_extreme(x + (live ? row_start(s, row) : 0), s, live, is_min, best);
    if (live && threadIdx.y == 0) {
        values[row] = (T)e.v;
        indices[row] = e.i;
    }
}

static void check_float(const char *op, const tensor *x) {
    PETAL_CHECK(dtype_is_float(x->dtype), "%s: dtype %s is not supported", op,
                dtype_name(x->dtype));
}

void cuda_reduce(reduce_op op, tensor *out, const tensor *x, int dim) {
    cudaStream_t stream = cuda_stream_for("reduce", {out, x});
    check_float("reduce", x);
    row_shape s = row_shape_of(x, dim);
    PETAL_CHECK(s.len > 0 || op == REDUCE_SUM || op == REDUCE_MEAN,
                "reduce: max/min/logsumexp over an empty dim");
    if (s.rows == 0) return;
    row_tile t = row_tile_for(s);
    if (x->dtype == PETAL_F32)
        cuda_launch(reduce_kernel<float>, t.grid, t.block, 0, stream, op, cuda_data<float>(out),
                    cuda_data<float>(x), s);
    else
        cuda_launch(reduce_kernel<double>, t.grid, t.block, 0, stream, op, cuda_data<double>(out),
                    cuda_data<double>(x), s);
}

void cuda_arg_reduce(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim) {
    cudaStream_t stream = cuda_stream_for("arg reduce", {values, indices, x});
    check_float("arg reduce", x);
    row_shape s = row_shape_of(x, dim);
    PETAL_CHECK(s.len > 0, "arg reduce over an empty dim");
    if (s.rows == 0) return;
    row_tile t = row_tile_for(s);
    bool is_min = op == REDUCE_MIN;
    int64_t *ind = cuda_data<int64_t>(indices);
    if (x->dtype == PETAL_F32)
        cuda_launch(arg_reduce_kernel<float>, t.grid, t.block, 0, stream, is_min,
                    cuda_data<float>(values), ind, cuda_data<float>(x), s);
    else
        cuda_launch(arg_reduce_kernel<double>, t.grid, t.block, 0, stream, is_min,
                    cuda_data<double>(values), ind, cuda_data<double>(x), s);
}
