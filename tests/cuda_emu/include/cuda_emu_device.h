// The device side of the host emulator (tests/cuda_emu/README.md): what CUDA C++ adds to C++ in
// the subset petal's kernels use, for g++ compiling tensor/cuda/*.cu as ordinary C++.
//
// A launch (cuda_emu_launch, which tensor/cuda/cuda_common.cuh's cuda_launch calls under
// PETAL_CUDA_EMU) runs the grid's blocks one after another on the calling thread. The threads of a
// block are fibers that switch only at __syncthreads and warp shuffles, so a barrier really waits
// for every thread of the block, and a shuffle for every lane of the warp. A thread that never
// meets one runs to its end on one stack, without a switch.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>

#include "cuda_runtime_api.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n)    __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __constant__
// One block runs at a time per host thread, so block-scope statics are the block's shared memory.
// thread_local rather than static: two host threads may run kernels on two devices at once, and
// `extern __shared__ T name[]` (the dynamic array) stays valid C++ (tests/cuda_emu/README.md says
// how the build defines it).
#define __shared__ thread_local

// The built-in variables of the thread that runs now (set at every switch).
extern __thread uint3 cuda_emu_thread_idx, cuda_emu_block_idx;
extern __thread dim3 cuda_emu_block_dim, cuda_emu_grid_dim;
#define threadIdx cuda_emu_thread_idx
#define blockIdx  cuda_emu_block_idx
#define blockDim  cuda_emu_block_dim
#define gridDim   cuda_emu_grid_dim
static constexpr int warpSize = 32;

// __syncthreads names its line: threads of a block that wait at different barriers, or at one
// while others have exited, are a divergent barrier, reported with both places.
void cuda_emu_syncthreads(const char *file, int line);
#define __syncthreads() cuda_emu_syncthreads(__FILE__, __LINE__)

// ---- warp shuffles: every lane of a full warp takes part, with mask 0xffffffff ----

enum cuda_emu_shfl_mode {
    CUDA_EMU_SHFL_IDX,
    CUDA_EMU_SHFL_XOR,
    CUDA_EMU_SHFL_DOWN,
    CUDA_EMU_SHFL_UP
};
uint64_t cuda_emu_shuffle(const char *file, int line, unsigned mask, uint64_t bits,
                          cuda_emu_shfl_mode mode, int arg, int width);

template <typename T>
inline T cuda_emu_shuffle_as(const char *file, int line, cuda_emu_shfl_mode mode, unsigned mask,
                             T v, int arg, int width = warpSize) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffle of a scalar");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = cuda_emu_shuffle(file, line, mask, bits, mode, arg, width);
    memcpy(&v, &bits, sizeof v);
    return v;
}
// (mask, value, lane or lane mask or delta[, width]), as CUDA's; each names its line, as
// __syncthreads does.
#define __shfl_sync(...)     cuda_emu_shuffle_as(__FILE__, __LINE__, CUDA_EMU_SHFL_IDX, __VA_ARGS__)
#define __shfl_xor_sync(...) cuda_emu_shuffle_as(__FILE__, __LINE__, CUDA_EMU_SHFL_XOR, __VA_ARGS__)
#define __shfl_down_sync(...)                                                                      \
    cuda_emu_shuffle_as(__FILE__, __LINE__, CUDA_EMU_SHFL_DOWN, __VA_ARGS__)
#define __shfl_up_sync(...) cuda_emu_shuffle_as(__FILE__, __LINE__, CUDA_EMU_SHFL_UP, __VA_ARGS__)

// ---- atomics: threads switch only at barriers, so a read-modify-write is never interrupted ----

template <typename T> inline T cuda_emu_atomic_add(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T> inline T cuda_emu_atomic_min(T *p, T v) {
    T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <typename T> inline T cuda_emu_atomic_max(T *p, T v) {
    T old = *p;
    *p = v > old ? v : old;
    return old;
}
template <typename T> inline T cuda_emu_atomic_cas(T *p, T compare, T v) {
    T old = *p;
    if (old == compare) *p = v;
    return old;
}
template <typename T> inline T cuda_emu_atomic_exch(T *p, T v) {
    T old = *p;
    *p = v;
    return old;
}

#define CUDA_EMU_ATOMIC(name, impl, T)                                                             \
    inline T name(T *p, T v) {                                                                     \
        return impl(p, v);                                                                         \
    }
#define CUDA_EMU_ATOMIC_INTS(name, impl)                                                           \
    CUDA_EMU_ATOMIC(name, impl, int)                                                               \
    CUDA_EMU_ATOMIC(name, impl, unsigned int)                                                      \
    CUDA_EMU_ATOMIC(name, impl, unsigned long long)
CUDA_EMU_ATOMIC_INTS(atomicAdd, cuda_emu_atomic_add)
CUDA_EMU_ATOMIC(atomicAdd, cuda_emu_atomic_add, float)
CUDA_EMU_ATOMIC(atomicAdd, cuda_emu_atomic_add, double)
CUDA_EMU_ATOMIC_INTS(atomicMin, cuda_emu_atomic_min)
CUDA_EMU_ATOMIC(atomicMin, cuda_emu_atomic_min, long long)
CUDA_EMU_ATOMIC_INTS(atomicMax, cuda_emu_atomic_max)
CUDA_EMU_ATOMIC(atomicMax, cuda_emu_atomic_max, long long)
CUDA_EMU_ATOMIC_INTS(atomicExch, cuda_emu_atomic_exch)
CUDA_EMU_ATOMIC(atomicExch, cuda_emu_atomic_exch, float)
inline int atomicCAS(int *p, int compare, int v) {
    return cuda_emu_atomic_cas(p, compare, v);
}
inline unsigned int atomicCAS(unsigned int *p, unsigned int compare, unsigned int v) {
    return cuda_emu_atomic_cas(p, compare, v);
}
inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long compare,
                                    unsigned long long v) {
    return cuda_emu_atomic_cas(p, compare, v);
}
#undef CUDA_EMU_ATOMIC_INTS
#undef CUDA_EMU_ATOMIC

// ---- the device math CUDA adds to math.h ----

inline float rsqrtf(float x) {
    return 1.0f / sqrtf(x);
}
inline double rsqrt(double x) {
    return 1.0 / sqrt(x);
}
inline int min(int a, int b) {
    return a < b ? a : b;
}
inline int max(int a, int b) {
    return a > b ? a : b;
}
inline unsigned int min(unsigned int a, unsigned int b) {
    return a < b ? a : b;
}
inline unsigned int max(unsigned int a, unsigned int b) {
    return a > b ? a : b;
}
inline long long min(long long a, long long b) {
    return a < b ? a : b;
}
inline long long max(long long a, long long b) {
    return a > b ? a : b;
}
inline float min(float a, float b) {
    return fminf(a, b);
}
inline float max(float a, float b) {
    return fmaxf(a, b);
}
inline double min(double a, double b) {
    return fmin(a, b);
}
inline double max(double a, double b) {
    return fmax(a, b);
}
template <typename T> inline T __ldg(const T *p) {
    return *p;
}
inline unsigned int __float_as_uint(float x) {
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned int u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
inline int __float_as_int(float x) {
    return (int)__float_as_uint(x);
}
inline float __int_as_float(int i) {
    return __uint_as_float((unsigned int)i);
}

// ---- dynamic shared memory (tests/cuda_emu/README.md) ----

// The most a launch may ask for: the default per-block limit of every GPU since Volta (more needs
// cudaFuncSetAttribute, which petal does not call).
#define CUDA_EMU_DYNAMIC_SHARED_BYTES ((size_t)48 << 10)
// Registers a function returning this host thread's copy of an `extern __shared__` array (its
// CUDA_EMU_DYNAMIC_SHARED_BYTES bytes are followed by 64 more the emulator checks).
void cuda_emu_register_dynamic_shared(char *(*array)(void));

// ---- launches ----

typedef struct {
    const char *file;
    int line;
    const char *spelling; // the launch's arguments as written; the kernel is the first
} cuda_emu_site;

// Runs run(ctx) once per thread of every block, or, for a launch the runtime refuses (its
// shape, shared memory, stream or device), records that error for cudaGetLastError and runs
// nothing. Returns the error.
cudaError_t cuda_emu_run(const cuda_emu_site *site, dim3 grid, dim3 block, size_t smem,
                         cudaStream_t stream, void (*run)(void *ctx), void *ctx);
// Aborts, naming the launch, if p is neither NULL nor memory a kernel may read (device memory
// or pinned host memory): on a GPU such a pointer faults.
void cuda_emu_check_pointer(const cuda_emu_site *site, int arg, const void *p);

template <size_t I = 0, typename... P>
inline void cuda_emu_check_pointers(const cuda_emu_site *site, const std::tuple<P...> &params) {
    if constexpr (I < sizeof...(P)) {
        using T = std::tuple_element_t<I, std::tuple<P...>>;
        if constexpr (std::is_pointer<T>::value)
            cuda_emu_check_pointer(site, (int)I, (const void *)std::get<I>(params));
        cuda_emu_check_pointers<I + 1>(site, params);
    }
}

// kernel<<<grid, block, smem, stream>>>(args...): the arguments convert to the parameters' types
// once, as a launch copies them; every thread then gets its own copy, as from the parameter space.
template <typename... P, typename... A>
inline cudaError_t cuda_emu_launch(const char *file, int line, const char *spelling,
                                   void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                                   cudaStream_t stream, A... args) {
    static_assert(sizeof...(P) == sizeof...(A), "the kernel's argument count");
    struct launch {
        void (*kernel)(P...);
        std::tuple<P...> params;
    } l = {kernel, std::tuple<P...>(args...)};
    cuda_emu_site site = {file, line, spelling};
    cuda_emu_check_pointers(&site, l.params);
    auto run = [](void *ctx) {
        launch *x = (launch *)ctx;
        std::apply(x->kernel, x->params);
    };
    return cuda_emu_run(&site, grid, block, smem, stream, run, &l);
}
