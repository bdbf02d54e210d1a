// Element-wise CUDA kernels: copy (with dtype conversion), fill, unary, binary and where, over
// strided and broadcast operands (the iteration that tensor/cpu/cpu_iter.h builds). The formulas
// are the ones of tensor/elementwise.h that the CPU loops call; this file supplies the launches.
// Unary, binary and same-dtype copies take faster kernels where the plan allows
// (tensor/cuda/cuda_ew_path.h): 16-byte accesses for contiguous operands, 32-bit indices for them
// and for a row vector over contiguous rows; the formula and so the result are the same.
#include <string.h>

#include "tensor/cuda/cuda_ew_path.h"
#include "tensor/cuda/cuda_kernels.cuh"

// ---- unary and binary: kernels per (formula, type) and path (cuda_ew_path.h) ----

template <typename T, T (*F)(T, T, T)> __global__ void unary_kernel(cpu_iter it, T p0, T p1) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[2];
        iter_offsets<2>(it, i, off);
        *(T *)(it.data[0] + off[0]) = F(*(const T *)(it.data[1] + off[1]), p0, p1);
    }
}

template <typename T, T (*F)(T, T, T, T)> __global__ void binary_kernel(cpu_iter it, T p0, T p1) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[3];
        iter_offsets<3>(it, i, off);
        *(T *)(it.data[0] + off[0]) =
            F(*(const T *)(it.data[1] + off[1]), *(const T *)(it.data[2] + off[2]), p0, p1);
    }
}

// A grid-stride loop with 32-bit indices over [start, n), n < EW_MAX_NUMEL.
#define CUDA_FOR_EACH32(i, start, n)                                                               \
    for (uint32_t i = (start) + blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
         i += gridDim.x * blockDim.x)

// EW_PACK_BYTES of elements, loaded and stored in one access.
template <typename T> struct alignas(EW_PACK_BYTES) ew_pack { T v[EW_PACK_BYTES / sizeof(T)]; };

template <typename T, T (*F)(T, T, T)>
__global__ void unary_flat_kernel(T *out, const T *x, uint32_t n, T p0, T p1) {
    const uint32_t per = EW_PACK_BYTES / sizeof(T), tail = ew_tail_start(n, per);
    CUDA_FOR_EACH32(j, 0, tail / per) {
        ew_pack<T> a = ((const ew_pack<T> *)x)[j], r;
        for (uint32_t k = 0; k < per; k++) r.v[k] = F(a.v[k], p0, p1);
        ((ew_pack<T> *)out)[j] = r;
    }
    CUDA_FOR_EACH32(i, tail, n) out[i] = F(x[i], p0, p1);
}

template <typename T, T (*F)(T, T, T, T)>
__global__ void binary_flat_kernel(T *out, const T *a, const T *b, uint32_t n, T p0, T p1) {
    const uint32_t per = EW_PACK_BYTES / sizeof(T), tail = ew_tail_start(n, per);
    CUDA_FOR_EACH32(j, 0, tail / per) {
        ew_pack<T> u = ((const ew_pack<T> *)a)[j], w = ((const ew_pack<T> *)b)[j], r;
        for (uint32_t k = 0; k < per; k++) r.v[k] = F(u.v[k], w.v[k], p0, p1);
        ((ew_pack<T> *)out)[j] = r;
    }
    CUDA_FOR_EACH32(i, tail, n) out[i] = F(a[i], b[i], p0, p1);
}

template <typename T, T (*F)(T, T, T)>
__global__ void unary_rows_kernel(T *out, const T *x, uint32_t n, uint32_t cols, bool repeat, T p0,
                                  T p1) {
    CUDA_FOR_EACH32(i, 0, n) out[i] = F(x[ew_rows_index(i, cols, repeat)], p0, p1);
}

template <typename T, T (*F)(T, T, T, T)>
__global__ void binary_rows_kernel(T *out, const T *a, const T *b, uint32_t n, uint32_t cols,
                                   bool a_repeat, bool b_repeat, T p0, T p1) {
    CUDA_FOR_EACH32(i, 0, n) {
        out[i] =
            F(a[ew_rows_index(i, cols, a_repeat)], b[ew_rows_index(i, cols, b_repeat)], p0, p1);
    }
}

typedef void (*ew_launcher)(const cpu_iter &it, cudaStream_t stream, double p0, double p1);

template <typename T, T (*F)(T, T, T)>
static void launch_unary(const cpu_iter &it, cudaStream_t stream, double p0, double p1) {
    ew_path path = ew_path_choose(&it, sizeof(T));
    T *out = (T *)it.data[0];
    const T *x = (const T *)it.data[1];
    uint32_t n = (uint32_t)it.numel, cols = (uint32_t)path.cols;
    if (path.kind == EW_PATH_FLAT)
        cuda_launch(unary_flat_kernel<T, F>,
                    cuda_blocks(it.numel * (int64_t)sizeof(T) / EW_PACK_BYTES + 1), CUDA_THREADS, 0,
                    stream, out, x, n, (T)p0, (T)p1);
    else if (path.kind == EW_PATH_ROWS)
        cuda_launch(unary_rows_kernel<T, F>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, out, x,
                    n, cols, path.repeat[1], (T)p0, (T)p1);
    else
        cuda_launch(unary_kernel<T, F>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, it, (T)p0,
                    (T)p1);
}

template <typename T, T (*F)(T, T, T, T)>
static void launch_binary(const cpu_iter &it, cudaStream_t stream, double p0, double p1) {
    ew_path path = ew_path_choose(&it, sizeof(T));
    T *out = (T *)it.data[0];
    const T *a = (const T *)it.data[1], *b = (const T *)it.data[2];
    uint32_t n = (uint32_t)it.numel, cols = (uint32_t)path.cols;
    if (path.kind == EW_PATH_FLAT)
        cuda_launch(binary_flat_kernel<T, F>,
                    cuda_blocks(it.numel * (int64_t)sizeof(T) / EW_PACK_BYTES + 1), CUDA_THREADS, 0,
                    stream, out, a, b, n, (T)p0, (T)p1);
    else if (path.kind == EW_PATH_ROWS)
        cuda_launch(binary_rows_kernel<T, F>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, out,
                    a, b, n, cols, path.repeat[1], path.repeat[2], (T)p0, (T)p1);
    else
        cuda_launch(binary_kernel<T, F>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, it, (T)p0,
                    (T)p1);
}

// The launcher of an op for a dtype; NULL where the CPU backend rejects the pair too.
#define UNARY_CASE(T, S, E, NAME)                                                                  \
    case E:                                                                                        \
        return launch_unary<T, ew_##NAME##_##S>;
#define UNARY_CASE_F32(E, NAME) UNARY_CASE(float, f32, E, NAME)
#define UNARY_CASE_F64(E, NAME) UNARY_CASE(double, f64, E, NAME)
#define UNARY_CASE_I32(E, NAME) UNARY_CASE(int32_t, i32, E, NAME)
#define UNARY_CASE_I64(E, NAME) UNARY_CASE(int64_t, i64, E, NAME)
#define BINARY_CASE(T, S, E, NAME)                                                                 \
    case E:                                                                                        \
        return launch_binary<T, ew_##NAME##_##S>;
#define BINARY_CASE_F32(E, NAME) BINARY_CASE(float, f32, E, NAME)
#define BINARY_CASE_F64(E, NAME) BINARY_CASE(double, f64, E, NAME)
#define BINARY_CASE_I32(E, NAME) BINARY_CASE(int32_t, i32, E, NAME)
#define BINARY_CASE_I64(E, NAME) BINARY_CASE(int64_t, i64, E, NAME)

// FN(dtype, op): the launcher table of one kind of op, as a switch over dtypes and ops.
#define DEFINE_LAUNCHER(FN, OP_T, OPS, INT_OPS, CASE)                                              \
    static ew_launcher FN(petal_dtype dtype, OP_T op) {                                            \
        switch (dtype) {                                                                           \
        case PETAL_F32:                                                                            \
            switch (op) { OPS(CASE##_F32) default : break; }                                       \
            break;                                                                                 \
        case PETAL_F64:                                                                            \
            switch (op) { OPS(CASE##_F64) default : break; }                                       \
            break;                                                                                 \
        case PETAL_I32:                                                                            \
            switch (op) { INT_OPS(CASE##_I32) default : break; }                                   \
            break;                                                                                 \
        case PETAL_I64:                                                                            \
            switch (op) { INT_OPS(CASE##_I64) default : break; }                                   \
            break;                                                                                 \
        default:                                                                                   \
            break;                                                                                 \
        }                                                                                          \
        return NULL;                                                                               \
    }
DEFINE_LAUNCHER(unary_launcher, unary_op, PETAL_UNARY_OPS, PETAL_INT_UNARY_OPS, UNARY_CASE)
DEFINE_LAUNCHER(binary_launcher, binary_op, PETAL_BINARY_OPS, PETAL_INT_BINARY_OPS, BINARY_CASE)

void cuda_unary(unary_op op, tensor *out, const tensor *x, double p0, double p1) {
    ew_launcher launch = unary_launcher(out->dtype, op);
    PETAL_CHECK(launch != NULL, "%s: dtype %s is not supported", unary_op_name(op),
                dtype_name(out->dtype));
    cudaStream_t stream = cuda_stream_for(unary_op_name(op), {out, x});
    cpu_iter it = cuda_iter({out, x});
    if (it.numel > 0) launch(it, stream, p0, p1);
}

void cuda_binary(binary_op op, tensor *out, const tensor *a, const tensor *b, double p0,
                 double p1) {
    ew_launcher launch = binary_launcher(out->dtype, op);
    PETAL_CHECK(launch != NULL, "%s: dtype %s is not supported", binary_op_name(op),
                dtype_name(out->dtype));
    cudaStream_t stream = cuda_stream_for(binary_op_name(op), {out, a, b});
    cpu_iter it = cuda_iter({out, a, b});
    if (it.numel > 0) launch(it, stream, p0, p1);
}

// ---- where: out = cond != 0 ? a : b (cond has out's dtype) ----

template <typename T> __global__ void where_kernel(cpu_iter it) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[4];
        iter_offsets<4>(it, i, off);
        int pick = *(const T *)(it.data[1] + off[1]) != 0 ? 2 : 3;
        *(T *)(it.data[0] + off[0]) = *(const T *)(it.data[pick] + off[pick]);
    }
}

void cuda_where(tensor *out, const tensor *cond, const tensor *a, const tensor *b) {
    cudaStream_t stream = cuda_stream_for("where", {out, cond, a, b});
    cpu_iter it = cuda_iter({out, cond, a, b});
    if (it.numel == 0) return;
    unsigned int blocks = cuda_blocks(it.numel);
    switch (out->dtype) {
    case PETAL_F32:
        cuda_launch(where_kernel<float>, blocks, CUDA_THREADS, 0, stream, it);
        break;
    case PETAL_F64:
        cuda_launch(where_kernel<double>, blocks, CUDA_THREADS, 0, stream, it);
        break;
    case PETAL_I32:
        cuda_launch(where_kernel<int32_t>, blocks, CUDA_THREADS, 0, stream, it);
        break;
    case PETAL_I64:
        cuda_launch(where_kernel<int64_t>, blocks, CUDA_THREADS, 0, stream, it);
        break;
    default:
        PETAL_CHECK(0, "where: dtype %s is not supported", dtype_name(out->dtype));
    }
}

// ---- copy and fill ----

__global__ void copy_convert_kernel(cpu_iter it, petal_dtype dst, petal_dtype src) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[2];
        iter_offsets<2>(it, i, off);
        dtype_store_double(dst, it.data[0] + off[0], dtype_load_double(src, it.data[1] + off[1]));
    }
}

// Same dtype: a move of element-size words (exact for i64 beyond 2^53, NaN payloads, ...), through
// the unary launcher so that contiguous copies take its fast paths.
template <typename U> __device__ U copy_word(U x, U, U) {
    return x;
}

template <typename U> __global__ void fill_kernel(cpu_iter it, U value) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[1];
        iter_offsets<1>(it, i, off);
        *(U *)(it.data[0] + off[0]) = value;
    }
}

void cuda_copy(tensor *dst, const tensor *src) {
    cudaStream_t stream = cuda_stream_for("copy", {dst, src});
    cpu_iter it = cuda_iter({dst, src});
    if (it.numel == 0) return;
    if (dst->dtype != src->dtype)
        cuda_launch(copy_convert_kernel, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, it,
                    dst->dtype, src->dtype);
    else if (dtype_size(dst->dtype) == 8)
        launch_unary<uint64_t, copy_word<uint64_t>>(it, stream, 0, 0);
    else if (dtype_size(dst->dtype) == 4)
        launch_unary<uint32_t, copy_word<uint32_t>>(it, stream, 0, 0);
    else
        launch_unary<uint16_t, copy_word<uint16_t>>(it, stream, 0, 0);
}

template <typename U>
static void launch_fill(const cpu_iter &it, cudaStream_t stream, char *bytes) {
    U value;
    memcpy(&value, bytes, sizeof value);
    cuda_launch(fill_kernel<U>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, it, value);
}

void cuda_fill(tensor *dst, double value) {
    cudaStream_t stream = cuda_stream_for("fill", {dst});
    cpu_iter it = cuda_iter({dst});
    if (it.numel == 0) return;
    char bytes[8];
    dtype_store_double(dst->dtype, bytes, value); // the element, converted once on the host
    if (dtype_size(dst->dtype) == 8)
        launch_fill<uint64_t>(it, stream, bytes);
    else if (dtype_size(dst->dtype) == 4)
        launch_fill<uint32_t>(it, stream, bytes);
    else
        launch_fill<uint16_t>(it, stream, bytes);
}
