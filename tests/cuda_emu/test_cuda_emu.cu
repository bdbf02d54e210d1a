// tests/cuda_emu: the host emulator itself (README.md), run in PETAL_CUDA_EMU builds. What a GPU
// does and the emulator must do too: barriers that wait for the whole block, shuffles within a
// warp, atomics, dynamic shared memory, CUB's sort order, cuBLAS's GEMM; and what a GPU refuses
// or faults on, which the emulator must report: divergent barriers, shapes a launch cannot take,
// host pointers given to a kernel, writes past dynamic shared memory, copies that leave their
// allocation, types the cuBLAS stand-in does not have. Streams and events order what another
// library leaves unfinished (the NCCL stand-in's collectives): an event, a stream waiting for one,
// and a collective that starts only after the event its stream waits for.
#include <cub/cub.cuh>
#include <cublas_v2.h>
#ifdef PETAL_HAVE_CUBLASLT
#include <cublasLt.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef PETAL_HAVE_NCCL
#include <nccl.h>
#endif

#include "tests/cuda_emu/cuda_emu_internal.h"

extern "C" {
#include "tests/test_util.h"
}

// A launch as tensor/cuda/cuda_common.cuh spells it, without aborting on a refused launch.
#define LAUNCH(...) cuda_emu_launch(__FILE__, __LINE__, #__VA_ARGS__, __VA_ARGS__)

template <typename T> static T *device_array(size_t n) {
    void *p = NULL;
    ck_assert_int_eq(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
    return (T *)p;
}

// ---- barriers ----

// Each thread reads what its neighbour wrote before the barrier: without a barrier that waits,
// thread t would read slot t + 1 before thread t + 1 ran.
__global__ void neighbour_kernel(int *out) {
    __shared__ int slots[256];
    int n = blockDim.x * blockDim.y, t = threadIdx.y * blockDim.x + threadIdx.x;
    slots[t] = t + 1000 * blockIdx.x;
    __syncthreads();
    int v = slots[(t + 1) % n];
    __syncthreads(); // everyone has read before anyone writes again
    slots[t] = -v;
    __syncthreads();
    out[blockIdx.x * n + t] = slots[(t + n - 1) % n];
}

START_TEST(test_barrier_waits_for_the_block) {
    int *out = device_array<int>(3 * 64);
    ck_assert_int_eq(LAUNCH(neighbour_kernel, dim3(3), dim3(16, 4), 0, (cudaStream_t)0, out),
                     cudaSuccess);
    int host[3 * 64];
    ck_assert_int_eq(cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 64; t++) // slot t - 1 holds -(t + 1000 b), what thread t - 1 read
            ck_assert_int_eq(host[b * 64 + t], -(t + 1000 * b));
    cudaFree(out);
}
END_TEST

__global__ void early_exit_kernel(int *out) {
    if (threadIdx.x >= 10) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}
__global__ void two_barriers_kernel(int *out) {
    if (threadIdx.x % 2) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

static void launch_early_exit(void) {
    LAUNCH(early_exit_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, device_array<int>(32));
}
static void launch_two_barriers(void) {
    LAUNCH(two_barriers_kernel, dim3(1), dim3(32), 0, (cudaStream_t)0, device_array<int>(32));
}

START_TEST(test_divergent_barriers_reported) {
    ck_assert(aborts_with(launch_early_exit, "kernel early_exit_kernel launched at"));
    ck_assert(aborts_with(launch_early_exit, "divergent barrier: thread (0, 0, 0) waits at "
                                             "__syncthreads"));
    ck_assert(aborts_with(launch_early_exit, "which thread (10, 0, 0) (and 21 others) exited"));
    ck_assert(aborts_with(launch_two_barriers, "divergent barrier: thread (1, 0, 0) reached "
                                               "__syncthreads at"));
}
END_TEST

// ---- warp shuffles ----

__global__ void shuffle_kernel(int *out) {
    int lane = threadIdx.x % 32, t = threadIdx.x, v = t * t;
    int sum = v;
    for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    int down = v;
    for (int d = 16; d > 0; d /= 2) down += __shfl_down_sync(0xffffffffu, down, d);
    double from5 = __shfl_sync(0xffffffffu, (double)t + 0.5, 5);
    int seg = __shfl_sync(0xffffffffu, t, 1, 8); // lane 1 of each group of 8
    out[4 * t] = sum;
    out[4 * t + 1] = lane == 0 ? down : -1;
    out[4 * t + 2] = (int)(from5 * 2);
    out[4 * t + 3] = seg;
}

START_TEST(test_shuffles) {
    int *out = device_array<int>(64 * 4);
    ck_assert_int_eq(LAUNCH(shuffle_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0, out),
                     cudaSuccess);
    int host[64 * 4];
    cudaMemcpy(host, out, sizeof host, cudaMemcpyDeviceToHost);
    for (int t = 0; t < 64; t++) {
        int first = t / 32 * 32, total = 0;
        for (int u = first; u < first + 32; u++) total += u * u;
        ck_assert_int_eq(host[4 * t], total);
        ck_assert_int_eq(host[4 * t + 1], t % 32 == 0 ? total : -1);
        ck_assert_int_eq(host[4 * t + 2], 2 * (first + 5) + 1);
        ck_assert_int_eq(host[4 * t + 3], t / 8 * 8 + 1);
    }
    cudaFree(out);
}
END_TEST

__global__ void partial_warp_kernel(int *out) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}
static void launch_partial_warp(void) {
    LAUNCH(partial_warp_kernel, dim3(1), dim3(48), 0, (cudaStream_t)0, device_array<int>(48));
}

__global__ void lane_exits_kernel(int *out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}
static void launch_lane_exits(void) {
    LAUNCH(lane_exits_kernel, dim3(1), dim3(64), 0, (cudaStream_t)0, device_array<int>(64));
}

START_TEST(test_divergent_shuffles_reported) {
    ck_assert(aborts_with(launch_partial_warp, "a warp shuffle in a warp of 16 threads"));
    ck_assert(aborts_with(launch_lane_exits, "divergent shuffle: thread (0, 0, 0) waits at a warp "
                                             "shuffle at"));
    ck_assert(aborts_with(launch_lane_exits, "which lane (3, 0, 0) of its warp exited"));
}
END_TEST

// ---- atomics ----

__global__ void atomics_kernel(int *i, float *f, double *d, unsigned long long *lo,
                               unsigned long long *hi, int *cas) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(i, 1);
    atomicAdd(f, 0.5f);
    atomicAdd(d, 0.25);
    atomicMin(lo, (unsigned long long)(1000 - t % 700));
    atomicMax(hi, (unsigned long long)t);
    int seen = *cas, expected; // an increment by compare-and-swap, in whatever order
    do {
        expected = seen;
        seen = atomicCAS(cas, expected, expected + 1);
    } while (seen != expected);
}

START_TEST(test_atomics) {
    int *i = device_array<int>(1), *cas = device_array<int>(1);
    float *f = device_array<float>(1);
    double *d = device_array<double>(1);
    unsigned long long *lo = device_array<unsigned long long>(1),
                       *hi = device_array<unsigned long long>(1);
    cudaMemsetAsync(i, 0, 4, 0);
    cudaMemsetAsync(cas, 0, 4, 0);
    cudaMemsetAsync(f, 0, 4, 0);
    cudaMemsetAsync(d, 0, 8, 0);
    cudaMemsetAsync(lo, 0xff, 8, 0);
    cudaMemsetAsync(hi, 0, 8, 0);
    ck_assert_int_eq(
        LAUNCH(atomics_kernel, dim3(4), dim3(250), 0, (cudaStream_t)0, i, f, d, lo, hi, cas),
        cudaSuccess);
    int hi_, ii, cc;
    float ff;
    double dd;
    unsigned long long ll, hh;
    cudaMemcpy(&ii, i, 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(&cc, cas, 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(&ff, f, 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(&dd, d, 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(&ll, lo, 8, cudaMemcpyDeviceToHost);
    cudaMemcpy(&hh, hi, 8, cudaMemcpyDeviceToHost);
    hi_ = (int)hh;
    ck_assert_int_eq(ii, 1000);
    ck_assert_float_eq(ff, 500.0f);
    ck_assert_double_eq(dd, 250.0);
    ck_assert_uint_eq(ll, 301);
    ck_assert_int_eq(hi_, 999);
    ck_assert_int_eq(cc, 1000);
    void *all[] = {i, cas, f, d, lo, hi};
    for (void *p : all) cudaFree(p);
}
END_TEST

// ---- dynamic shared memory ----

__global__ void reverse_kernel(float *out, const float *in, int n) {
    extern __shared__ float dyn[];
    int t = threadIdx.x;
    if (t < n) dyn[t] = in[t];
    __syncthreads();
    if (t < n) out[t] = dyn[n - 1 - t];
}

START_TEST(test_dynamic_shared) {
    const int n = 200;
    float host[n], back[n];
    for (int k = 0; k < n; k++) host[k] = (float)k * 1.5f;
    float *in = device_array<float>(n), *out = device_array<float>(n);
    cudaMemcpy(in, host, sizeof host, cudaMemcpyHostToDevice);
    ck_assert_int_eq(LAUNCH(reverse_kernel, dim3(1), dim3(256), n * sizeof(float), (cudaStream_t)0,
                            out, (const float *)in, n),
                     cudaSuccess);
    cudaMemcpy(back, out, sizeof back, cudaMemcpyDeviceToHost);
    for (int k = 0; k < n; k++) ck_assert_float_eq(back[k], host[n - 1 - k]);
    cudaFree(in);
    cudaFree(out);
}
END_TEST

#ifndef __SANITIZE_ADDRESS__ // there AddressSanitizer reports the access itself, and exits
__global__ void overflow_kernel(int n) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = 1; // one thread more than the launch gave room for
    (void)n;
}
static void launch_overflow(void) {
    LAUNCH(overflow_kernel, dim3(1), dim3(33), 32 * sizeof(float), (cudaStream_t)0, 32);
}

START_TEST(test_shared_overflow_reported) {
    ck_assert(aborts_with(launch_overflow, "kernel overflow_kernel launched at"));
    ck_assert(aborts_with(launch_overflow,
                          "wrote past the end of its 128 bytes of dynamic shared memory"));
}
END_TEST
#endif

// ---- launches a GPU refuses, pointers it would fault on ----

__global__ void noop_kernel(int *p) {
    (void)p;
}

START_TEST(test_refused_launches) {
    int *p = device_array<int>(4);
    cudaStream_t s;
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1), dim3(1025), 0, s, p),
                     cudaErrorInvalidConfiguration);
    ck_assert_int_eq(cudaGetLastError(), cudaErrorInvalidConfiguration);
    ck_assert_int_eq(cudaGetLastError(), cudaSuccess); // read once
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1, 65536), dim3(32), 0, s, p),
                     cudaErrorInvalidConfiguration);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(0), dim3(32), 0, s, p),
                     cudaErrorInvalidConfiguration);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1), dim3(32), (48 << 10) + 1, s, p),
                     cudaErrorInvalidValue);
    ck_assert_int_eq(cudaStreamDestroy(s), cudaSuccess);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1), dim3(32), 0, s, p),
                     cudaErrorInvalidResourceHandle);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(2, 3, 4), dim3(8, 8, 16), 0, (cudaStream_t)0, p),
                     cudaSuccess);
    cudaFree(p);
}
END_TEST

static void launch_with_host_pointer(void) {
    static int on_host[4];
    LAUNCH(noop_kernel, dim3(1), dim3(1), 0, (cudaStream_t)0, on_host);
}

// Two devices: memory of cuda:1 given to a kernel on cuda:0.
static void launch_with_other_device_memory(void) {
    setenv("PETAL_CUDA_EMU_DEVICES", "2", 1);
    cudaSetDevice(1);
    int *p = device_array<int>(4);
    cudaSetDevice(0);
    LAUNCH(noop_kernel, dim3(1), dim3(1), 0, (cudaStream_t)0, p);
}

START_TEST(test_other_device_reported) {
    ck_assert(aborts_with(launch_with_other_device_memory,
                          "memory of cuda:1, but the kernel runs on cuda:0"));
    setenv("PETAL_CUDA_EMU_DEVICES", "2", 1);
    cudaStream_t s;
    ck_assert_int_eq(cudaSetDevice(1), cudaSuccess);
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    int *p = device_array<int>(4);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1), dim3(1), 0, s, p), cudaSuccess);
    ck_assert_int_eq(cudaSetDevice(0), cudaSuccess);
    ck_assert_int_eq(LAUNCH(noop_kernel, dim3(1), dim3(1), 0, s, (int *)NULL),
                     cudaErrorInvalidResourceHandle); // cuda:1's stream
    cudaSetDevice(1);
    cudaFree(p);
    cudaStreamDestroy(s);
}
END_TEST

START_TEST(test_host_pointer_reported) {
    ck_assert(aborts_with(launch_with_host_pointer,
                          "argument 0 is 0x")); // then the address
    ck_assert(
        aborts_with(launch_with_host_pointer, "neither device memory nor pinned host memory"));
}
END_TEST

// ---- memory ----

START_TEST(test_memory_checks) {
    char *d = device_array<char>(1000), host[2000];
    unsigned char fresh[4];
    ck_assert_int_eq(cudaMemcpy(fresh, d + 996, 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int k = 0; k < 4; k++) ck_assert_uint_eq(fresh[k], 0xff); // never zeros by chance
    ck_assert_int_eq(cudaMemcpy(host, d + 1, 1000, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    ck_assert_int_eq(cudaMemcpy(d, host, 1001, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    ck_assert_int_eq(cudaMemcpy(host, d, 10, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    ck_assert_int_eq(cudaMemsetAsync(d + 500, 0, 501, 0), cudaErrorInvalidValue);
    ck_assert_int_eq(cudaMemsetAsync(d + 500, 0, 500, 0), cudaSuccess);
    cudaPointerAttributes attr;
    ck_assert_int_eq(cudaPointerGetAttributes(&attr, d + 999), cudaSuccess);
    ck_assert_int_eq(attr.type, cudaMemoryTypeDevice);
    ck_assert_int_eq(attr.device, 0);
    ck_assert_int_eq(cudaPointerGetAttributes(&attr, host), cudaSuccess);
    ck_assert_int_eq(attr.type, cudaMemoryTypeUnregistered);
    ck_assert_int_eq(cudaFree(d + 1), cudaErrorInvalidDevicePointer);
    ck_assert_int_eq(cudaFree(d), cudaSuccess);
    ck_assert_int_eq(cudaFree(d), cudaErrorInvalidDevicePointer); // twice
    cudaGetLastError();
}
END_TEST

START_TEST(test_device_count) {
    int n = -1;
    setenv("PETAL_CUDA_EMU_DEVICES", "3", 1);
    ck_assert_int_eq(cudaGetDeviceCount(&n), cudaSuccess);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(cudaSetDevice(2), cudaSuccess);
    ck_assert_int_eq(cudaSetDevice(3), cudaErrorInvalidDevice);
    setenv("PETAL_CUDA_EMU_DEVICES", "0", 1);
    ck_assert_int_eq(cudaGetDeviceCount(&n), cudaErrorNoDevice);
    void *p;
    ck_assert_int_eq(cudaMalloc(&p, 16), cudaErrorNoDevice);
    unsetenv("PETAL_CUDA_EMU_DEVICES");
    setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
    ck_assert_int_eq(cudaGetDeviceCount(&n), cudaErrorNoDevice);
    ck_assert_str_eq(cudaGetErrorName(cudaErrorNoDevice), "cudaErrorNoDevice");
    ck_assert_str_eq(cudaGetErrorString(cudaErrorNoDevice), "no CUDA-capable device is detected");
}
END_TEST

// ---- CUB: the order of CUB's radix sort, stable both ways ----

START_TEST(test_segmented_sort_order) {
    const float nan_neg = -NAN, inf = INFINITY;
    float keys[] = {1, NAN, -0.0f, 0.0f, -inf, inf, nan_neg, 1, -2, /* segment 2: */ 3, 3, -1};
    const int n = 12, segs = 2;
    int vals[n], offsets[] = {0, 9, 12};
    for (int k = 0; k < n; k++) vals[k] = k;
    float *dk = device_array<float>(n), *dk2 = device_array<float>(n);
    int *dv = device_array<int>(n), *dv2 = device_array<int>(n), *doff = device_array<int>(3);
    cudaMemcpy(dk, keys, sizeof keys, cudaMemcpyHostToDevice);
    cudaMemcpy(dv, vals, sizeof vals, cudaMemcpyHostToDevice);
    cudaMemcpy(doff, offsets, sizeof offsets, cudaMemcpyHostToDevice);
    for (int descending = 0; descending < 2; descending++) {
        size_t bytes = 0;
        void *temp = NULL;
        for (int pass = 0; pass < 2; pass++) {
            if (pass) ck_assert_int_eq(cudaMalloc(&temp, bytes), cudaSuccess);
            cudaError_t err =
                descending ? cub::DeviceSegmentedRadixSort::SortPairsDescending(
                                 temp, bytes, dk, dk2, dv, dv2, n, segs, doff, doff + 1)
                           : cub::DeviceSegmentedRadixSort::SortPairs(temp, bytes, dk, dk2, dv, dv2,
                                                                      n, segs, doff, doff + 1);
            ck_assert_int_eq(err, cudaSuccess);
            ck_assert_uint_gt(bytes, 0);
        }
        int got[n];
        cudaMemcpy(got, dv2, sizeof got, cudaMemcpyDeviceToHost);
        // Ascending: -NaN, -inf, -2, -0 and +0 (equal: input order), 1, 1, inf, NaN.
        int up[] = {6, 4, 8, 2, 3, 0, 7, 5, 1, 11, 9, 10};
        int down[] = {1, 5, 0, 7, 2, 3, 8, 4, 6, 9, 10, 11};
        for (int k = 0; k < n; k++) ck_assert_int_eq(got[k], descending ? down[k] : up[k]);
        ck_assert_int_eq(cub::DeviceSegmentedRadixSort::SortPairs(temp, (bytes = 1, bytes), dk, dk2,
                                                                  dv, dv2, n, segs, doff, doff + 1),
                         cudaErrorInvalidValue); // less temporary storage than asked for
        cudaFree(temp);
    }
    void *all[] = {dk, dk2, dv, dv2, doff};
    for (void *p : all) cudaFree(p);
}
END_TEST

// ---- cuBLAS stand-in (linked here; petal opens it through PETAL_CUBLAS_LIBRARY) ----

START_TEST(test_gemm_against_naive) {
    cublasHandle_t h;
    ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const int m = 5, n = 4, k = 3, batch = 2, lda = 7, ldb = 6, ldc = 8; // a: k x m (transposed)
    double a[batch][lda * m], b[batch][ldb * n], c[batch][ldc * n];
    for (int i = 0; i < batch; i++) {
        for (int j = 0; j < lda * m; j++) a[i][j] = (j * 7 + i * 3) % 11 - 5;
        for (int j = 0; j < ldb * n; j++) b[i][j] = (j * 5 + i) % 9 - 4;
        for (int j = 0; j < ldc * n; j++) c[i][j] = NAN; // beta = 0: never read
    }
    double *da = device_array<double>(sizeof a / 8), *db = device_array<double>(sizeof b / 8),
           *dc = device_array<double>(sizeof c / 8);
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice);
    cudaMemcpy(dc, c, sizeof c, cudaMemcpyHostToDevice);
    double alpha = 2, beta = 0;
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da,
                                                CUDA_R_64F, lda, lda * m, db, CUDA_R_64F, ldb,
                                                ldb * n, &beta, dc, CUDA_R_64F, ldc, ldc * n, batch,
                                                CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    for (int i = 0; i < batch; i++)
        for (int r = 0; r < m; r++)
            for (int col = 0; col < n; col++) {
                double want = 0;
                for (int x = 0; x < k; x++) want += a[i][r * lda + x] * b[i][col * ldb + x];
                ck_assert_double_eq(c[i][col * ldc + r], alpha * want);
            }
    // What cuBLAS refuses, and what a GPU would fault on.
    float one = 1;
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da,
                                                CUDA_R_16BF, lda, 0, db, CUDA_R_16BF, ldb, 0, &one,
                                                dc, CUDA_R_16BF, ldc, 0, 1, CUBLAS_COMPUTE_32F,
                                                CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, da,
                                                CUDA_R_64F, m - 1, 0, db, CUDA_R_64F, ldb, 0, &beta,
                                                dc, CUDA_R_64F, ldc, 0, 1, CUBLAS_COMPUTE_64F,
                                                CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_INVALID_VALUE);
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a,
                                                CUDA_R_64F, lda, 0, db, CUDA_R_64F, ldb, 0, &beta,
                                                dc, CUDA_R_64F, ldc, 0, 1, CUBLAS_COMPUTE_64F,
                                                CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_EXECUTION_FAILED); // a is host memory
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, da,
                                                CUDA_R_64F, lda, lda * m, db, CUDA_R_64F, ldb,
                                                ldb * n, &beta, dc, CUDA_R_64F, ldc, ldc * n,
                                                batch + 1, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_EXECUTION_FAILED); // a batch entry past the allocations
    ck_assert_str_eq(cublasGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED),
                     "CUBLAS_STATUS_NOT_SUPPORTED");
    cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}
END_TEST

// TF32 keeps 10 mantissa bits of each input (to nearest, ties to even); bf16 inputs widen exactly;
// both accumulate and write f32.
START_TEST(test_gemm_tensor_core_kinds) {
    cublasHandle_t h;
    ck_assert_int_eq(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    float a[4] = {1 + 0x1p-11f + 0x1p-20f, 1 + 0x1p-11f, 3, -2}, eye[4] = {1, 0, 0, 1}, c[4];
    float *da = device_array<float>(4), *db = device_array<float>(4), *dc = device_array<float>(4);
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, eye, sizeof eye, cudaMemcpyHostToDevice);
    float one = 1, zero = 0;
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, da,
                                                CUDA_R_32F, 2, 0, db, CUDA_R_32F, 2, 0, &zero, dc,
                                                CUDA_R_32F, 2, 0, 1, CUBLAS_COMPUTE_32F_FAST_TF32,
                                                CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    ck_assert_float_eq(c[0], 1 + 0x1p-10f); // above the half-way point: up
    ck_assert_float_eq(c[1], 1);            // on it: to even
    ck_assert_float_eq(c[2], 3);
    // bf16: 1.5 and 2 (their f32 bits' high halves) times [[1, 1], [1, 1]].
    uint16_t ab[4] = {0x3fc0, 0x4000, 0x3fc0, 0x4000}, bb[4] = {0x3f80, 0x3f80, 0x3f80, 0x3f80};
    uint16_t *dab = device_array<uint16_t>(4), *dbb = device_array<uint16_t>(4);
    cudaMemcpy(dab, ab, sizeof ab, cudaMemcpyHostToDevice);
    cudaMemcpy(dbb, bb, sizeof bb, cudaMemcpyHostToDevice);
    ck_assert_int_eq(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, dab,
                                                CUDA_R_16BF, 2, 0, dbb, CUDA_R_16BF, 2, 0, &zero,
                                                dc, CUDA_R_32F, 2, 0, 1, CUBLAS_COMPUTE_32F,
                                                CUBLAS_GEMM_DEFAULT),
                     CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    ck_assert_float_eq(c[0], 3); // column-major: c[0] = a[0] + a[2]
    ck_assert_float_eq(c[1], 4);
    cublasDestroy(h);
    void *all[] = {da, db, dc, dab, dbb};
    for (void *p : all) cudaFree(p);
}
END_TEST

// ---- streams and events ----

static cudaStream_t stream_new(void) {
    cudaStream_t s;
    ck_assert_int_eq(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    return s;
}

static cudaEvent_t event_new(void) {
    cudaEvent_t e;
    ck_assert_int_eq(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
    return e;
}

// Work held on stream a (as a collective under way holds it): an event recorded on a is pending,
// a stream b that waits for it is busy, an event recorded on b after the wait is pending too, and
// the host is not blocked by any of it; all complete once a's work does. An event recorded after
// that completes at once.
START_TEST(test_events_order_streams) {
    cudaStream_t a = stream_new(), b = stream_new();
    cudaEvent_t on_a = event_new(), on_b = event_new();
    cuda_emu_stream_hold(a, +1);
    ck_assert_int_eq(cudaEventRecord(on_a, a), cudaSuccess);
    ck_assert_int_eq(cudaEventQuery(on_a), cudaErrorNotReady);
    ck_assert_int_eq(cudaStreamQuery(b), cudaSuccess);
    ck_assert_int_eq(cudaStreamWaitEvent(b, on_a, 0), cudaSuccess);
    ck_assert_int_eq(cudaStreamQuery(b), cudaErrorNotReady);
    ck_assert_int_eq(cudaEventRecord(on_b, b), cudaSuccess);
    ck_assert_int_eq(cudaEventQuery(on_b), cudaErrorNotReady);
    ck_assert_int_eq(cudaGetLastError(), cudaSuccess); // not ready is no error
    cuda_emu_stream_hold(a, -1);
    ck_assert_int_eq(cudaEventQuery(on_a), cudaSuccess);
    ck_assert_int_eq(cudaStreamQuery(b), cudaSuccess);
    ck_assert_int_eq(cudaEventSynchronize(on_b), cudaSuccess);
    cuda_emu_stream_hold(b, +1); // new work on b: the events recorded before it stay complete
    ck_assert_int_eq(cudaEventQuery(on_b), cudaSuccess);
    ck_assert_int_eq(cudaEventRecord(on_b, b), cudaSuccess);
    ck_assert_int_eq(cudaEventQuery(on_b), cudaErrorNotReady);
    cuda_emu_stream_hold(b, -1);
    ck_assert_int_eq(cudaEventQuery(on_b), cudaSuccess);
    ck_assert_int_eq(cudaStreamWaitEvent(b, on_a, 1), cudaErrorInvalidValue);
    cudaEventDestroy(on_a);
    cudaEventDestroy(on_b);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
}
END_TEST

#ifdef PETAL_HAVE_NCCL
// A one-rank all-reduce (x into y) queued on stream b, which waits for an event of stream a while
// a kernel on a (held) is still to write x: the collective must not run before, so y gets the x
// the kernel wrote, not the x that was there when the collective was queued.
START_TEST(test_collective_waits_for_its_event) {
    setenv("PETAL_NCCL_EMU_TIMEOUT", "20", 1);
    ncclUniqueId id;
    ncclComm_t comm;
    ck_assert_int_eq(ncclGetUniqueId(&id), ncclSuccess);
    ck_assert_int_eq(ncclCommInitRank(&comm, 1, id, 0), ncclSuccess);
    cudaStream_t a = stream_new(), b = stream_new();
    cudaEvent_t written = event_new();
    float *x = device_array<float>(4), *y = device_array<float>(4);
    float ones[4] = {1, 1, 1, 1}, twos[4] = {2, 2, 2, 2}, got[4];
    ck_assert_int_eq(cudaMemcpy(x, ones, sizeof ones, cudaMemcpyHostToDevice), cudaSuccess);
    cuda_emu_stream_hold(a, +1); // the kernel that writes x, still running
    ck_assert_int_eq(cudaEventRecord(written, a), cudaSuccess);
    ck_assert_int_eq(cudaStreamWaitEvent(b, written, 0), cudaSuccess);
    ck_assert_int_eq(ncclAllReduce(x, y, 4, ncclFloat32, ncclSum, comm, b), ncclSuccess);
    struct timespec nap = {0, 50 * 1000 * 1000}; // time to run, if it did not wait
    nanosleep(&nap, NULL);
    ck_assert_int_eq(cudaStreamQuery(b), cudaErrorNotReady);
    memcpy(x, twos, sizeof twos); // the kernel's write (device memory is host memory here)
    cuda_emu_stream_hold(a, -1);
    ck_assert_int_eq(cudaMemcpyAsync(got, y, sizeof got, cudaMemcpyDeviceToHost, b), cudaSuccess);
    ck_assert_int_eq(cudaStreamSynchronize(b), cudaSuccess);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(got[i], 2.0f);
    ck_assert_int_eq(ncclCommDestroy(comm), ncclSuccess);
    cudaFree(x);
    cudaFree(y);
    cudaEventDestroy(written);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
}
END_TEST
#endif

#ifdef PETAL_HAVE_CUBLASLT
// ---- cuBLASLt stand-in (in the cuBLAS stand-in's library) ----

template <typename T>
static cublasStatus_t set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, T v) {
    return cublasLtMatmulDescSetAttribute(d, a, &v, sizeof v);
}

// D (m x n) = op(A) op(B) + bias broadcast over D's columns, A stored transposed (k x m), as
// cublasLt.h documents CUBLASLT_EPILOGUE_BIAS; then what the stand-in refuses.
START_TEST(test_lt_bias_epilogue) {
    static cublasLtHandle_t h; // kept, as petal keeps its handles (no cublasLtDestroy is called)
    ck_assert_int_eq(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
    const int m = 5, n = 4, k = 3, lda = 4, ldb = 6, ldd = 7;
    float a[lda * m], b[ldb * n], bias[m], d[ldd * n];
    for (int j = 0; j < lda * m; j++) a[j] = (float)((j * 7) % 11 - 5);
    for (int j = 0; j < ldb * n; j++) b[j] = (float)((j * 5) % 9 - 4);
    for (int j = 0; j < m; j++) bias[j] = 0.5f * (float)j - 1;
    for (int j = 0; j < ldd * n; j++) d[j] = NAN; // beta = 0: never read
    float *da = device_array<float>(lda * m + 1), *db = device_array<float>(ldb * n),
          *dbias = device_array<float>(m), *dd = device_array<float>(ldd * n);
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice);
    cudaMemcpy(dbias, bias, sizeof bias, cudaMemcpyHostToDevice);
    cudaMemcpy(dd, d, sizeof d, cudaMemcpyHostToDevice);
    cublasLtMatmulDesc_t desc;
    ck_assert_int_eq(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                     CUBLAS_STATUS_SUCCESS);
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, (int32_t)CUBLAS_OP_T), 0);
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS), 0);
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, (const void *)dbias), 0);
    cublasLtMatrixLayout_t la, lb, ld;
    ck_assert_int_eq(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, k, m, lda), 0);
    ck_assert_int_eq(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, ldb), 0);
    ck_assert_int_eq(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, ldd), 0);
    cublasLtMatmulPreference_t pref;
    ck_assert_int_eq(cublasLtMatmulPreferenceCreate(&pref), 0);
    uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    ck_assert_int_eq(cublasLtMatmulPreferenceSetAttribute(
                         pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &none, sizeof none),
                     0);
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    ck_assert_int_eq(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, &r, &found),
                     CUBLAS_STATUS_SUCCESS);
    ck_assert(found == 1 && r.state == CUBLAS_STATUS_SUCCESS && r.workspaceSize == 0);
    float one = 1, zero = 0;
    ck_assert_int_eq(cublasLtMatmul(h, desc, &one, da, la, db, lb, &zero, dd, ld, dd, ld, &r.algo,
                                    NULL, 0, NULL),
                     CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(d, dd, sizeof d, cudaMemcpyDeviceToHost);
    for (int row = 0; row < m; row++)
        for (int col = 0; col < n; col++) {
            float want = 0;
            for (int x = 0; x < k; x++) want += a[row * lda + x] * b[col * ldb + x];
            ck_assert_float_eq(d[col * ldd + row], want + bias[row]);
        }
    // Pointers less aligned than the heuristic was told (256 bytes by default), host memory,
    // an epilogue, attribute or compute type the stand-in does not model.
    ck_assert_int_eq(cublasLtMatmul(h, desc, &one, da + 1, la, db, lb, &zero, dd, ld, dd, ld,
                                    &r.algo, NULL, 0, NULL),
                     CUBLAS_STATUS_INVALID_VALUE);
    uint32_t four = 4;
    for (cublasLtMatmulPreferenceAttributes_t at :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        ck_assert_int_eq(cublasLtMatmulPreferenceSetAttribute(pref, at, &four, sizeof four), 0);
    ck_assert_int_eq(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, ld, ld, pref, 1, &r, &found),
                     CUBLAS_STATUS_SUCCESS);
    ck_assert_int_eq(
        cublasLtMatmul(h, desc, &one, a, la, db, lb, &zero, dd, ld, dd, ld, &r.algo, NULL, 0, NULL),
        CUBLAS_STATUS_EXECUTION_FAILED); // host memory: a GPU would fault
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_GELU_BIAS),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, (int32_t)CUDA_R_16BF),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    ck_assert_int_eq(set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, (int64_t)CUBLAS_OP_T),
                     CUBLAS_STATUS_INVALID_VALUE); // the attribute is an int32_t
    uint32_t mode = 0;
    ck_assert_int_eq(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE,
                                                          &mode, sizeof mode),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    cublasLtMatmulDesc_t d64;
    ck_assert_int_eq(cublasLtMatmulDescCreate(&d64, CUBLAS_COMPUTE_64F, CUDA_R_64F),
                     CUBLAS_STATUS_NOT_SUPPORTED);
    cublasLtMatrixLayout_t short_b;
    ck_assert_int_eq(cublasLtMatrixLayoutCreate(&short_b, CUDA_R_32F, k + 1, n, ldb), 0);
    ck_assert_int_eq(
        cublasLtMatmulAlgoGetHeuristic(h, desc, la, short_b, ld, ld, pref, 1, &r, &found),
        CUBLAS_STATUS_INVALID_VALUE); // op(B) has k + 1 rows
    cublasLtMatrixLayoutDestroy(short_b);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    void *all[] = {da, db, dbias, dd};
    for (void *p : all) cudaFree(p);
}
END_TEST
#endif

int main(void) {
    Suite *s = suite_create("cuda_emu");
    TCase *exec = tcase_with_timeout("execution", 30);
    tcase_add_test(exec, test_barrier_waits_for_the_block);
    tcase_add_test(exec, test_shuffles);
    tcase_add_test(exec, test_atomics);
    tcase_add_test(exec, test_dynamic_shared);
    TCase *faults = tcase_with_timeout("faults and refusals", 30);
    tcase_add_test(faults, test_divergent_barriers_reported);
    tcase_add_test(faults, test_divergent_shuffles_reported);
#ifndef __SANITIZE_ADDRESS__
    tcase_add_test(faults, test_shared_overflow_reported);
#endif
    tcase_add_test(faults, test_refused_launches);
    tcase_add_test(faults, test_host_pointer_reported);
    tcase_add_test(faults, test_other_device_reported);
    tcase_add_test(faults, test_memory_checks);
    tcase_add_test(faults, test_device_count);
    TCase *libs = tcase_with_timeout("CUB, cuBLAS and cuBLASLt stand-ins", 30);
    tcase_add_test(libs, test_segmented_sort_order);
    tcase_add_test(libs, test_gemm_against_naive);
    tcase_add_test(libs, test_gemm_tensor_core_kinds);
    TCase *streams = tcase_with_timeout("streams and events", 30);
    tcase_add_test(streams, test_events_order_streams);
#ifdef PETAL_HAVE_NCCL
    tcase_add_test(streams, test_collective_waits_for_its_event);
#endif
#ifdef PETAL_HAVE_CUBLASLT
    tcase_add_test(libs, test_lt_bias_epilogue);
#endif
    suite_add_tcase(s, exec);
    suite_add_tcase(s, faults);
    suite_add_tcase(s, streams);
    suite_add_tcase(s, libs);
    return run_suite(s);
}
