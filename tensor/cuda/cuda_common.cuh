// What the CUDA kernels (tensor/cuda/*.cu) share: the per-device state that cuda_backend.cu owns
// (stream, cuBLAS handle, scratch memory, the bad-index flag), launch shapes, strided iteration
// and the row tiles every reduction runs on.
#pragma once

#include <cuda_runtime.h>
#include <initializer_list>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_libs.h"
extern "C" {
#include "tensor/backend.h"
#include "tensor/cpu/cpu_iter.h"
#include "tensor/cpu/cpu_kernels.h"
}

// Runs kernel k on grid x block threads with smem bytes of dynamic shared memory on stream s.
// Every launch of petal goes through here, in one spelling, so that the same sources can be
// compiled for a host emulation of the runtime (tests/cuda_emu). A launch that cannot start (bad
// configuration, no code for this GPU) aborts here; a fault inside a kernel surfaces at the next
// call that synchronises (find it with compute-sanitizer, docs/cuda.md).
#ifdef PETAL_CUDA_EMU
// The host emulator runs the kernel at once on the CPU, and names this launch in what it reports.
#define cuda_launch(...)                                                                           \
    do {                                                                                           \
        cuda_emu_launch(__FILE__, __LINE__, #__VA_ARGS__, __VA_ARGS__);                            \
        CUDA_CHECK(cudaGetLastError());                                                            \
    } while (0)
#else
template <typename... P, typename... A>
static inline void cuda_launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                               A... args) {
    k<<<grid, block, smem, s>>>(args...);
    CUDA_CHECK(cudaGetLastError());
}
#endif

// ---- devices (cuda_backend.cu) ----

// Makes the device of ts[0] current and returns its stream, where every kernel, copy and cuBLAS
// call of that device runs (so stream order alone keeps reused cache blocks safe). Aborts naming
// `op` unless every tensor (NULLs are skipped) is on that one CUDA device.
cudaStream_t cuda_stream_for(const char *op, std::initializer_list<const tensor *> ts);
cublasHandle_t cuda_blas_handle(int device_index); // bound to the device's stream

// Temporary device memory from the device's block cache (stream-ordered, like tensors).
void *cuda_scratch_alloc(int device_index, size_t nbytes, size_t *capacity);
void cuda_scratch_free(int device_index, void *ptr, size_t capacity);

// Device scratch freed at the end of the call (stream order keeps later reuse safe).
typedef struct {
    int device;
    void *ptr[6];
    size_t capacity[6];
    int n;
} scratch_set;

static inline void *scratch_take(scratch_set *s, size_t nbytes) {
    void *p = cuda_scratch_alloc(s->device, nbytes, &s->capacity[s->n]);
    s->ptr[s->n++] = p;
    return p;
}

static inline void scratch_release(scratch_set *s) {
    for (int i = 0; i < s->n; i++) cuda_scratch_free(s->device, s->ptr[i], s->capacity[i]);
}

// Indexing kernels never read or write out of bounds: a thread that meets a bad index skips it
// and records its position (atomicMin) in the device's flag. The host does not wait for the
// kernel: cuda_bad_index_commit queues a one-thread kernel that moves the flag's position (with
// the index value there, the op, the range and `extra`) into the device's record of the first bad
// index, unless one is already there, and clears the flag. The host reads the record where it
// waits for the device anyway (copy_to_host, synchronize, cuda_check_errors: cuda_backend.h) and
// aborts with the CPU kernel's message. begin takes the device's lock on the flag (threads sharing
// a device cannot mix up their kernels' positions) and returns the flag's device address; commit
// releases it.
typedef enum {
    BAD_INDEX_SELECT,
    BAD_INDEX_ADD,
    BAD_INDEX_GATHER,
    BAD_INDEX_SCATTER_ADD,
    BAD_INDEX_TARGET, // cross_entropy's targets; extra is ignore_index
} bad_index_op;

unsigned long long *cuda_bad_index_begin(int device_index);
void cuda_bad_index_commit(bad_index_op op, const tensor *idx, int64_t len, int64_t extra);

// ---- launch shapes ----

#define CUDA_THREADS 256

static inline unsigned int cuda_blocks(int64_t n) {
    int64_t blocks = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    const int64_t cap = (int64_t)1 << 20; // more work per thread beyond this (grid-stride loops)
    return (unsigned int)(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

#define CUDA_FOR_EACH(i, n)                                                                        \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

// Element address of a tensor on its device.
template <typename T> static inline T *cuda_data(const tensor *t) {
    return (T *)((char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype));
}

// Reads entry i of an i32 or i64 index array.
__device__ inline int64_t index_load(const void *idx, bool is_i64, int64_t i) {
    return is_i64 ? ((const int64_t *)idx)[i] : (int64_t)((const int32_t *)idx)[i];
}

// The exp of the CPU kernels: the vectorisable ew_expf for f32, exp for f64.
__device__ inline float cuda_exp(float x) {
    return ew_expf(x);
}
__device__ inline double cuda_exp(double x) {
    return exp(x);
}

// ---- strided iteration (tensor/cpu/cpu_iter.h builds it; the kernel walks it) ----

// Operand 0 is the output; the others broadcast to it. Pointers are device addresses.
static inline cpu_iter cuda_iter(std::initializer_list<const tensor *> ts) {
    const tensor *ops[CPU_ITER_MAX_OPS];
    int n = 0;
    for (const tensor *t : ts) ops[n++] = t;
    cpu_iter it;
    cpu_iter_build(&it, n, ops);
    return it;
}

// Byte offsets of element i (row-major over the iteration shape) in the first N operands.
template <int N> __device__ inline void iter_offsets(const cpu_iter &it, int64_t i, int64_t *off) {
    if (it.ndim == 1) {
        for (int k = 0; k < N; k++) off[k] = i * it.strides[k][0];
        return;
    }
    for (int k = 0; k < N; k++) off[k] = 0;
    for (int d = it.ndim - 1; d >= 0; d--) {
        int64_t idx = i % it.shape[d];
        i /= it.shape[d];
        for (int k = 0; k < N; k++) off[k] += idx * it.strides[k][d];
    }
}

// ---- row tiles: reductions along one dim ----
//
// A contiguous tensor seen as (outer, len, inner) around a dim (cpu_split_dim) has rows =
// outer * inner rows of len elements, inner apart. A block holds blockDim.x rows side by side and
// blockDim.y lanes per row: lane y reads elements y, y + lanes, ... of its row, and the lanes'
// partial results meet in shared memory in a fixed tree, so results never depend on timing.
// With inner > 1, neighbouring rows are neighbouring addresses: 32 rows of 8 lanes read coalesced.

typedef struct {
    int64_t len, inner, rows;
} row_shape;

static inline row_shape row_shape_of(const tensor *x, int dim) {
    int64_t outer, len, inner;
    cpu_split_dim(x, dim, &outer, &len, &inner);
    return row_shape{len, inner, outer * inner};
}

typedef struct {
    dim3 block;
    unsigned int grid;
} row_tile;

static inline row_tile row_tile_for(row_shape s) {
    int lanes = 8;
    if (s.inner == 1)
        for (lanes = 1; lanes < s.len && lanes < CUDA_THREADS;) lanes *= 2;
    int cols = CUDA_THREADS / lanes;
    int64_t grid = (s.rows + cols - 1) / cols;
    PETAL_CHECK(grid < ((int64_t)1 << 31), "CUDA row kernel: %lld rows are too many",
                (long long)s.rows);
    return row_tile{dim3((unsigned int)cols, (unsigned int)lanes), (unsigned int)(grid ? grid : 1)};
}

// This thread's row (may be >= rows: such threads only join the tile reductions).
__device__ inline int64_t tile_row() {
    return blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
}

// Element offset of a row's first element.
__device__ inline int64_t row_start(row_shape s, int64_t row) {
    return (row / s.inner) * s.len * s.inner + row % s.inner;
}

// Combines v over the lanes of this thread's row and returns the result to every lane. Every
// thread of the block must call it; shared holds blockDim.x * blockDim.y values.
template <typename V, typename F> __device__ V tile_reduce(V v, V *shared, F combine) {
    int cols = blockDim.x, x = threadIdx.x, y = threadIdx.y;
    shared[y * cols + x] = v;
    for (int s = blockDim.y / 2; s > 0; s /= 2) {
        __syncthreads();
        if (y < s) shared[y * cols + x] = combine(shared[y * cols + x], shared[(y + s) * cols + x]);
    }
    __syncthreads();
    V r = shared[x];
    __syncthreads(); // the caller may reuse shared right away
    return r;
}

struct sum_op {
    __device__ double operator()(double a, double b) const { return a + b; }
};

// The largest of a row as the CPU loops compute it: x > m ? x : m from the first element (a NaN
// then makes the whole softmax / cross-entropy row NaN, as on the CPU).
template <typename T> struct max_op {
    __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};
