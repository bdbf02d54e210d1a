// Element-wise CUDA kernels: copy (with dtype conversion), fill, unary, binary and where, over
// strided and broadcast operands (the iteration that tensor/cpu/cpu_iter.h builds). The formulas
// are the ones of tensor/elementwise.h that the CPU loops call; this file supplies the launches.
#include <string.h>

#include "tensor/cuda/cuda_kernels.cuh"

// ---- unary and binary: one kernel per (formula, type) ----

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

typedef void (*ew_launcher)(const cpu_iter &it, cudaStream_t stream, double p0, double p1);

template <typename T, T (*F)(T, T, T)>
static void launch_unary(const cpu_iter &it, cudaStream_t stream, double p0, double p1) {
    cuda_launch(unary_kernel<T, F>, cuda_blocks(it.numel), CUDA_THREADS, 0, stream, it, (T)p0,
                (T)p1);
}

template <typename T, T (*F)(T, T, T, T)>
static void launch_binary(const cpu_iter &it, cudaStream_t stream, double p0, double p1) {
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

// Same dtype: a move of element-size words (exact for i64 beyond 2^53, NaN payloads, ...).
template <typename U> __global__ void copy_same_kernel(cpu_iter it) {
    CUDA_FOR_EACH(i, it.numel) {
        int64_t off[2];
        iter_offsets<2>(it, i, off);
        *(U *)(it.data[0] + off[0]) = *(const U *)(it.data[1] + off[1]);
    }
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
    unsigned int blocks = cuda_blocks(it.numel);
    if (dst->dtype != src->dtype)
        cuda_launch(copy_convert_kernel, blocks, CUDA_THREADS, 0, stream, it, dst->dtype,
                    src->dtype);
    else if (dtype_size(dst->dtype) == 8)
        cuda_launch(copy_same_kernel<uint64_t>, blocks, CUDA_THREADS, 0, stream, it);
    else if (dtype_size(dst->dtype) == 4)
        cuda_launch(copy_same_kernel<uint32_t>, blocks, CUDA_THREADS, 0, stream, it);
    else
        cuda_launch(copy_same_kernel<uint16_t>, blocks, CUDA_THREADS, 0, stream, it);
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
