// Reductions over one dim (sum, mean, max, min, logsumexp) and arg max/min, on the row tiles of
// cuda_common.cuh, with the CPU kernels' semantics (tensor/cpu/cpu_reduce.c): sums accumulate in
// double, a NaN wins max and min, ties and NaNs go to the first index. The combination order is
// fixed, so a result repeats exactly from run to run (it may differ from the CPU's in the last
// bits of a double sum).
//
// Rows too few to fill the GPU (a sum over dim 0 of a large gradient, say) take two passes
// (cuda_split.h): pass 1 reduces chunks of every row into a (chunks, rows) matrix of partials,
// pass 2 combines each row's partials in chunk order. logsumexp takes two such rounds: the
// maximum, then the sum of exp(x - maximum).
#include "tensor/cuda/cuda_kernels.cuh"
#include "tensor/cuda/cuda_split.h"

// A candidate for max or min: its value and index (-1: no candidate yet). A partial sum of the
// two-pass reductions travels in v.
struct extreme {
    double v;
    int64_t i;
};

// The better of two candidates: a NaN, then the larger (max) or smaller (min) value, then the
// smaller index. This is the element the CPU's left-to-right scan keeps, and as a total order it
// gives that element however the lanes and chunks split the row.
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

// What this lane adds from elements [begin, end) of its row, combined over the lanes: the sum, or
// with `shift` (a row's maximum) the sum of exp(x - shift).
template <typename T>
__device__ double lanes_sum(const T *row, row_shape s, int64_t begin, int64_t end, bool exp_of,
                            double shift, double *shared) {
    double acc = 0;
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y)
        acc += exp_of ? (double)cuda_exp((T)(row[r * s.inner] - shift)) : (double)row[r * s.inner];
    return tile_reduce(acc, shared, sum_op());
}

// The extreme of elements [begin, end) of this thread's row, combined over the lanes.
template <typename T>
__device__ extreme lanes_extreme(const T *row, row_shape s, int64_t begin, int64_t end, bool is_min,
                                 extreme *shared) {
    extreme e = {0, -1};
    extreme_op pick = {is_min};
    for (int64_t r = begin + threadIdx.y; r < end; r += blockDim.y)
        e = pick(e, extreme{(double)row[r * s.inner], r});
    return tile_reduce(e, shared, pick);
}

// ---- one pass: a tile row per row ----

template <typename T> __global__ void reduce_kernel(reduce_op op, T *out, const T *x, row_shape s) {
    __shared__ double sums[CUDA_THREADS];
    __shared__ extreme best[CUDA_THREADS];
    int64_t row = tile_row();
    bool live = row < s.rows;
    const T *base = x + (live ? row_start(s, row) : 0);
    int64_t end = live ? s.len : 0;
    double result;
    if (op == REDUCE_SUM || op == REDUCE_MEAN) {
        double total = lanes_sum(base, s, 0, end, false, 0, sums);
        result = op == REDUCE_MEAN ? total / (double)s.len : total;
    } else {
        result = lanes_extreme(base, s, 0, end, op == REDUCE_MIN, best).v;
        if (op == REDUCE_LOGSUMEXP) { // every lane takes part, whatever its row's maximum
            double total = lanes_sum(base, s, 0, end, true, result, sums);
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
    extreme e =
        lanes_extreme(x + (live ? row_start(s, row) : 0), s, 0, live ? s.len : 0, is_min, best);
    if (live && threadIdx.y == 0) {
        values[row] = (T)e.v;
        indices[row] = e.i;
    }
}

// ---- two passes (cuda_split.h) ----
//
// Round 0 of logsumexp finds the maximum (into shift), round 1 sums exp(x - maximum); every other
// op has one round. Sums are partial sums, max and min (arg or not) partial extremes.

__device__ inline bool round_sums(reduce_op op, int round) {
    return op == REDUCE_SUM || op == REDUCE_MEAN || (op == REDUCE_LOGSUMEXP && round == 1);
}

// Pass 1: partial[v] for each (chunk, row) pair v (cuda_split.h's order).
template <typename T>
__global__ void reduce_partial_kernel(reduce_op op, int round, extreme *partial, const T *x,
                                      row_shape s, split_plan p, const double *shift) {
    __shared__ double sums[CUDA_THREADS];
    __shared__ extreme best[CUDA_THREADS];
    int64_t v = tile_row(), begin = 0, end = 0;
    bool live = v < s.rows * p.chunks;
    int64_t row = live ? split_row(v, s.rows) : 0;
    if (live) split_bounds(p, s.len, split_chunk(v, s.rows), &begin, &end);
    const T *base = x + row_start(s, row);
    extreme e;
    if (round_sums(op, round))
        e = extreme{lanes_sum(base, s, begin, end, round == 1, round ? shift[row] : 0, sums), 0};
    else
        e = lanes_extreme(base, s, begin, end, op == REDUCE_MIN, best);
    if (live && threadIdx.y == 0) partial[v] = e;
}

// Pass 2: a row's partials in chunk order, then the op's result. With indices, max and min write
// values and indices (arg reduce).
template <typename T>
__global__ void reduce_finish_kernel(reduce_op op, int round, T *out, int64_t *indices,
                                     double *shift, const extreme *partial, row_shape s,
                                     int64_t chunks) {
    CUDA_FOR_EACH(row, s.rows) {
        extreme e = partial[row];
        extreme_op pick = {op == REDUCE_MIN};
        bool sums = round_sums(op, round);
        for (int64_t k = 1; k < chunks; k++) {
            extreme next = partial[k * s.rows + row];
            e = sums ? extreme{e.v + next.v, 0} : pick(e, next);
        }
        if (op == REDUCE_LOGSUMEXP && round == 0) {
            shift[row] = e.v;
        } else if (op == REDUCE_LOGSUMEXP) {
            double m = shift[row];
            out[row] = (T)(!isinf(m) && m == m ? m + log(e.v) : m);
        } else {
            out[row] = (T)(op == REDUCE_MEAN ? e.v / (double)s.len : e.v);
            if (indices) indices[row] = e.i;
        }
    }
}

template <typename T>
static void reduce_split(cudaStream_t stream, int device, reduce_op op, T *out, int64_t *indices,
                         const T *x, row_shape s, split_plan p) {
    scratch_set sc = {device, {}, {}, 0};
    extreme *partial = (extreme *)scratch_take(&sc, (size_t)(s.rows * p.chunks) *
                                                        sizeof(extreme)); // (chunks, rows)
    double *shift = op == REDUCE_LOGSUMEXP
                        ? (double *)scratch_take(&sc, (size_t)s.rows * sizeof(double)) // (rows)
                        : NULL;
    row_tile t = row_tile_for(row_shape{p.chunk_len, s.inner, s.rows * p.chunks});
    for (int round = 0; round < (op == REDUCE_LOGSUMEXP ? 2 : 1); round++) {
        cuda_launch(reduce_partial_kernel<T>, t.grid, t.block, 0, stream, op, round, partial, x, s,
                    p, (const double *)shift);
        cuda_launch(reduce_finish_kernel<T>, cuda_blocks(s.rows), CUDA_THREADS, 0, stream, op,
                    round, out, indices, shift, (const extreme *)partial, s, p.chunks);
    }
    scratch_release(&sc);
}

// ---- the table's entries ----

static void check_float(const char *op, const tensor *x) {
    PETAL_CHECK(dtype_is_float(x->dtype), "%s: dtype %s is not supported", op,
                dtype_name(x->dtype));
}

template <typename T>
static void reduce_typed(cudaStream_t stream, reduce_op op, tensor *out, const tensor *x,
                         row_shape s) {
    row_tile t = row_tile_for(s);
    split_plan p = split_plan_for(t.grid, s.len);
    if (p.chunks > 1)
        reduce_split<T>(stream, x->device.index, op, cuda_data<T>(out), NULL, cuda_data<T>(x), s,
                        p);
    else
        cuda_launch(reduce_kernel<T>, t.grid, t.block, 0, stream, op, cuda_data<T>(out),
                    cuda_data<T>(x), s);
}

void cuda_reduce(reduce_op op, tensor *out, const tensor *x, int dim) {
    cudaStream_t stream = cuda_stream_for("reduce", {out, x});
    check_float("reduce", x);
    row_shape s = row_shape_of(x, dim);
    PETAL_CHECK(s.len > 0 || op == REDUCE_SUM || op == REDUCE_MEAN,
                "reduce: max/min/logsumexp over an empty dim");
    if (s.rows == 0) return;
    if (x->dtype == PETAL_F32)
        reduce_typed<float>(stream, op, out, x, s);
    else
        reduce_typed<double>(stream, op, out, x, s);
}

template <typename T>
static void arg_reduce_typed(cudaStream_t stream, reduce_op op, tensor *values, tensor *indices,
                             const tensor *x, row_shape s) {
    row_tile t = row_tile_for(s);
    split_plan p = split_plan_for(t.grid, s.len);
    if (p.chunks > 1)
        reduce_split<T>(stream, x->device.index, op, cuda_data<T>(values),
                        cuda_data<int64_t>(indices), cuda_data<T>(x), s, p);
    else
        cuda_launch(arg_reduce_kernel<T>, t.grid, t.block, 0, stream, op == REDUCE_MIN,
                    cuda_data<T>(values), cuda_data<int64_t>(indices), cuda_data<T>(x), s);
}

void cuda_arg_reduce(reduce_op op, tensor *values, tensor *indices, const tensor *x, int dim) {
    cudaStream_t stream = cuda_stream_for("arg reduce", {values, indices, x});
    check_float("arg reduce", x);
    row_shape s = row_shape_of(x, dim);
    PETAL_CHECK(s.len > 0, "arg reduce over an empty dim");
    if (s.rows == 0) return;
    if (x->dtype == PETAL_F32)
        arg_reduce_typed<float>(stream, op, values, indices, x, s);
    else
        arg_reduce_typed<double>(stream, op, values, indices, x, s);
}
