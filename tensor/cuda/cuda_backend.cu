// The CUDA backend table: devices, memory, copies, streams; the kernels live in the other files of
// tensor/cuda/ (one concern per file, as in tensor/cpu/).
//
// Per device, created on first use (the first one also opens cuBLAS: tensor/cuda/cuda_libs.h):
// one stream that every kernel, copy, cuBLAS and NCCL call of that device runs on; a block cache
// (tensor/block_cache.h) over cudaMalloc, so freed blocks are reused without a synchronising
// cudaMalloc/cudaFree (one stream makes reuse safe: work that still reads a freed block is queued
// before any work that receives it again); two pinned staging buffers for host<->device copies;
// and the flag and record the indexing kernels report bad indices through.
// Host-facing calls that hand data back (copy_to_host, synchronize, cuda_check_errors) wait for
// the stream and report a bad index an indexing kernel met since the last such call; everything
// else returns as soon as the work is queued.
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/cuda_common.cuh"
#include "tensor/cuda/cuda_kernels.cuh"
extern "C" {
#include "tensor/block_cache.h"
}

#define STAGING_BYTES ((size_t)4 << 20) // per staging buffer; copies go in chunks of this
#define MIN_BLOCK     512               // smaller requests share one size class

// The first bad index a kernel met on a device (all fields -1, bytes 0xff, when none).
typedef struct {
    long long pos, value, len, extra;
    int op; // bad_index_op
} bad_index_record;

typedef struct {
    bool ready;
    cudaStream_t stream;
    cublasHandle_t blas;
    block_cache cache;
    unsigned long long *bad_index;     // device: smallest bad position, ULLONG_MAX if none
    bad_index_record *bad_record;      // device: the first bad index not yet reported
    bad_index_record *bad_record_host; // pinned
    pthread_mutex_t bad_lock;          // bad_index from begin to commit, and bad_record_host
    char *staging[2];                  // pinned
    cudaEvent_t staged[2];             // the last copy that used staging[k]
    pthread_mutex_t copy_lock;         // staging buffers
} cuda_device;

static cuda_device devices[CUDA_MAX_DEVICES];
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

// ---- device discovery ----

static int device_count;
static char count_error[256]; // why there is no device, when device_count is 0
static pthread_once_t count_once = PTHREAD_ONCE_INIT;

// "CUDA driver version is insufficient" means either no driver at all or one older than the
// runtime; the two need different fixes, so the versions tell them apart.
static void describe_count_error(cudaError_t err) {
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (err == cudaErrorInsufficientDriver && driver == 0)
        snprintf(count_error, sizeof count_error, "no CUDA driver is installed (%s)",
                 cudaGetErrorString(err));
    else if (err == cudaErrorInsufficientDriver)
        snprintf(count_error, sizeof count_error,
                 "the CUDA driver is too old for the runtime: the driver supports CUDA %d.%d, "
                 "petal was built with CUDA %d.%d",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    else if (err == cudaErrorNoDevice)
        snprintf(count_error, sizeof count_error, "no CUDA device is visible (%s)",
                 cudaGetErrorString(err));
    else
        snprintf(count_error, sizeof count_error, "cudaGetDeviceCount failed: %s: %s",
                 cudaGetErrorName(err), cudaGetErrorString(err));
}

static void count_devices(void) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        describe_count_error(err);
        cudaGetLastError(); // not sticky, but leave no error behind for later checks
        n = 0;
    } else if (n == 0) {
        snprintf(count_error, sizeof count_error, "the CUDA driver reports no device");
    }
    device_count = n < CUDA_MAX_DEVICES ? n : CUDA_MAX_DEVICES;
}

extern "C" int cuda_device_count(void) {
    pthread_once(&count_once, count_devices);
    return device_count;
}

// The probe allocates this much: a device whose memory other processes hold cannot run anything.
#define PROBE_BYTES ((size_t)64 << 20)

// Writes why a device cannot be used; returns false for the caller to return.
__attribute__((format(printf, 3, 4))) static bool unusable(char *why, size_t cap, const char *fmt,
                                                           ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    cudaGetLastError(); // leave no error behind for later checks
    return false;
}

static bool call_failed(char *why, size_t cap, int index, const char *call, cudaError_t err) {
    return unusable(why, cap, "cuda:%d: %s failed: %s: %s", index, call, cudaGetErrorName(err),
                    cudaGetErrorString(err));
}

// Every step here returns its error instead of aborting as device_get would, so that a caller
// can report why a device is unusable (tests/cuda skips or fails with it).
extern "C" bool cuda_device_usable(int index, char *why, size_t cap) {
    int count = cuda_device_count();
    if (count == 0) return unusable(why, cap, "cuda:%d: %s", index, count_error);
    if (index < 0 || index >= count)
        return unusable(why, cap, "cuda:%d: only %d CUDA device(s) are present", index, count);
    size_t free_bytes = 0, total_bytes = 0;
    cudaError_t err = cudaSetDevice(index);
    if (err != cudaSuccess) return call_failed(why, cap, index, "cudaSetDevice", err);
    err = cudaMemGetInfo(&free_bytes, &total_bytes); // creates the context
    if (err != cudaSuccess) return call_failed(why, cap, index, "creating a context", err);
    void *p = NULL;
    err = cudaMalloc(&p, PROBE_BYTES);
    if (err == cudaErrorMemoryAllocation)
        return unusable(why, cap,
                        "cuda:%d is out of memory: %zu MiB free of %zu MiB, %zu MiB refused", index,
                        free_bytes >> 20, total_bytes >> 20, PROBE_BYTES >> 20);
    if (err != cudaSuccess) return call_failed(why, cap, index, "cudaMalloc", err);
    cudaFree(p);
    if (cuda_cublas_load() != PETAL_OK)
        return unusable(why, cap, "cuda:%d: %s", index, petal_error_message());
    return true;
}

// ---- per-device state ----

// Only running out of memory is left to the block cache (it empties itself and retries); any
// other failure (a sticky error left by a faulting kernel, a lost device) is what it is.
extern "C" void *cuda_raw_alloc(size_t nbytes) {
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, nbytes);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return NULL;
    }
    PETAL_CHECK(err == cudaSuccess, "cudaMalloc(%zu bytes) failed: CUDA error %s: %s", nbytes,
                cudaGetErrorName(err), cudaGetErrorString(err));
    return p;
}

// Releasing memory is rare (the cache keeps blocks); wait for the device so that no queued work
// still reads the block, whatever stream it came from.
static void raw_free(void *p, size_t) {
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFree(p));
}

static void device_init(cuda_device *d) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
    petal_status st = cuda_cublas_load(); // the first device's setup opens cuBLAS
    PETAL_CHECK(st == PETAL_OK, "%s", petal_error_message());
    CUBLAS_CHECK(cuda_cublas.Create(&d->blas));
    CUBLAS_CHECK(cuda_cublas.SetStream(d->blas, d->stream));
    d->cache.raw_alloc = cuda_raw_alloc;
    d->cache.raw_free = raw_free;
    d->cache.min_cached = 0; // every size: a cudaMalloc costs more than any small copy
    pthread_mutex_init(&d->cache.lock, NULL);
    CUDA_CHECK(cudaMalloc((void **)&d->bad_index, sizeof *d->bad_index));
    CUDA_CHECK(cudaMalloc((void **)&d->bad_record, sizeof *d->bad_record));
    CUDA_CHECK(cudaMemsetAsync(d->bad_index, 0xff, sizeof *d->bad_index, d->stream));
    CUDA_CHECK(cudaMemsetAsync(d->bad_record, 0xff, sizeof *d->bad_record, d->stream));
    CUDA_CHECK(cudaHostAlloc((void **)&d->bad_record_host, sizeof *d->bad_record_host,
                             cudaHostAllocDefault));
    pthread_mutex_init(&d->bad_lock, NULL);
    for (int k = 0; k < 2; k++) {
        CUDA_CHECK(cudaHostAlloc((void **)&d->staging[k], STAGING_BYTES, cudaHostAllocDefault));
        CUDA_CHECK(cudaEventCreateWithFlags(&d->staged[k], cudaEventDisableTiming));
    }
    pthread_mutex_init(&d->copy_lock, NULL);
}

// Device `index`, made current and set up on first use; aborts clearly if it does not exist.
static cuda_device *device_get(int index) {
    int count = cuda_device_count();
    PETAL_CHECK(count > 0, "cuda:%d was requested but no CUDA device is available: %s", index,
                count_error);
    PETAL_CHECK(index >= 0 && index < count,
                "cuda:%d was requested but only %d CUDA device(s) are present", index, count);
    cuda_device *d = &devices[index];
    CUDA_CHECK(cudaSetDevice(index));
    if (!__atomic_load_n(&d->ready, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&init_lock);
        if (!d->ready) {
            device_init(d);
            __atomic_store_n(&d->ready, true, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&init_lock);
    }
    return d;
}

// The device a pointer from cudaMalloc belongs to (copies and memsets receive bare pointers).
static cuda_device *device_of(const void *ptr) {
    cudaPointerAttributes attr;
    CUDA_CHECK(cudaPointerGetAttributes(&attr, ptr));
    PETAL_CHECK(attr.type == cudaMemoryTypeDevice, "CUDA backend: %p is not device memory", ptr);
    return device_get(attr.device);
}

cudaStream_t cuda_stream_for(const char *op, std::initializer_list<const tensor *> ts) {
    const tensor *first = *ts.begin();
    for (const tensor *t : ts) {
        if (!t) continue;
        char a[16], b[16];
        PETAL_CHECK(t->device.type == PETAL_CUDA && t->device.index == first->device.index,
                    "%s (CUDA): a tensor on %s among tensors on %s", op, device_name(t->device, a),
                    device_name(first->device, b));
    }
    return device_get(first->device.index)->stream;
}

extern "C" cudaStream_t cuda_device_stream(int device_index) {
    return device_get(device_index)->stream;
}

cublasHandle_t cuda_blas_handle(int device_index) {
    return device_get(device_index)->blas;
}

void *cuda_scratch_alloc(int device_index, size_t nbytes, size_t *capacity) {
    cuda_device *d = device_get(device_index);
    void *p = block_cache_alloc(&d->cache, nbytes < MIN_BLOCK ? MIN_BLOCK : nbytes, capacity);
    PETAL_CHECK(p != NULL, "out of memory on cuda:%d: cannot allocate %zu bytes of scratch",
                device_index, nbytes);
    return p;
}

void cuda_scratch_free(int device_index, void *ptr, size_t capacity) {
    block_cache_free(&device_get(device_index)->cache, ptr, capacity);
}

// ---- bad indices, reported at the next wait (cuda_common.cuh) ----

unsigned long long *cuda_bad_index_begin(int device_index) {
    cuda_device *d = device_get(device_index);
    pthread_mutex_lock(&d->bad_lock);
    return d->bad_index;
}

// One thread: keeps the first bad index (in stream order) and clears the flag for the next kernel.
__global__ void bad_index_commit_kernel(bad_index_record *record, unsigned long long *flag,
                                        const void *idx, bool is_i64, bad_index_record met) {
    unsigned long long pos = *flag;
    if (pos == ULLONG_MAX) return;
    *flag = ULLONG_MAX;
    if (record->pos >= 0) return;
    met.pos = (long long)pos;
    met.value = index_load(idx, is_i64, (int64_t)pos);
    *record = met;
}

void cuda_bad_index_commit(bad_index_op op, const tensor *idx, int64_t len, int64_t extra) {
    cuda_device *d = &devices[idx->device.index];
    bad_index_record met = {-1, -1, (long long)len, (long long)extra, (int)op};
    cuda_launch(bad_index_commit_kernel, 1, 1, 0, d->stream, d->bad_record, d->bad_index,
                (const void *)cuda_data<const char>(idx), idx->dtype == PETAL_I64, met);
    pthread_mutex_unlock(&d->bad_lock);
}

// The CPU kernels' messages.
static void bad_index_abort(const bad_index_record *r) {
    static const char *const ops[] = {"index_select", "index_add", "gather", "scatter_add"};
    if (r->op == BAD_INDEX_TARGET)
        PETAL_CHECK(r->pos < 0,
                    "cross_entropy: target[%lld] = %lld is outside [0, %lld) and is not "
                    "ignore_index (%lld)",
                    r->pos, r->value, r->len, r->extra);
    PETAL_CHECK(r->op >= 0 && r->op < BAD_INDEX_TARGET,
                "CUDA backend: a bad-index record with an unknown op %d", r->op);
    PETAL_CHECK(r->pos < 0, "%s: index %lld at position %lld is out of range [0, %lld)", ops[r->op],
                r->value, r->pos, r->len);
}

// Waits for the device's stream and aborts if a kernel met a bad index since the last check.
static void bad_index_check(cuda_device *d) {
    pthread_mutex_lock(&d->bad_lock);
    CUDA_CHECK(cudaMemcpyAsync(d->bad_record_host, d->bad_record, sizeof *d->bad_record,
                               cudaMemcpyDeviceToHost, d->stream));
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    bad_index_record r = *d->bad_record_host;
    if (r.pos >= 0) CUDA_CHECK(cudaMemsetAsync(d->bad_record, 0xff, sizeof r, d->stream));
    pthread_mutex_unlock(&d->bad_lock);
    if (r.pos >= 0) bad_index_abort(&r);
}

extern "C" void cuda_check_errors(void) {
    for (int i = 0; i < cuda_device_count(); i++)
        if (devices[i].ready) bad_index_check(device_get(i));
}

// ---- the memory part of the table ----

static void *cuda_alloc(int device_index, size_t nbytes, size_t *capacity) {
    cuda_device *d = device_get(device_index);
    return block_cache_alloc(&d->cache, nbytes < MIN_BLOCK ? MIN_BLOCK : nbytes, capacity);
}

static void cuda_free(int device_index, void *ptr, size_t capacity) {
    block_cache_free(&device_get(device_index)->cache, ptr, capacity);
}

static void cuda_empty_cache(int device_index) {
    if (device_index < 0 || device_index >= cuda_device_count() || !devices[device_index].ready)
        return;
    block_cache_empty(&device_get(device_index)->cache);
}

static size_t cuda_reserved(int device_index) {
    if (device_index < 0 || device_index >= CUDA_MAX_DEVICES) return 0;
    return devices[device_index].ready ? devices[device_index].cache.reserved : 0;
}

static void cuda_memset_zero(void *ptr, size_t nbytes) {
    cuda_device *d = device_of(ptr);
    CUDA_CHECK(cudaMemsetAsync(ptr, 0, nbytes, d->stream));
}

// Host -> device through the pinned buffers: the host fills one buffer while the other one's DMA
// runs. It returns once the source has been read (the caller may reuse it); the device copies
// finish in stream order.
static void cuda_copy_from_host(void *dst, const void *src, size_t nbytes) {
    if (nbytes == 0) return;
    cuda_device *d = device_of(dst);
    pthread_mutex_lock(&d->copy_lock);
    for (size_t done = 0, k = 0; done < nbytes; done += STAGING_BYTES, k ^= 1) {
        size_t len = nbytes - done < STAGING_BYTES ? nbytes - done : STAGING_BYTES;
        CUDA_CHECK(cudaEventSynchronize(d->staged[k])); // its previous copy is over
        memcpy(d->staging[k], (const char *)src + done, len);
        CUDA_CHECK(cudaMemcpyAsync((char *)dst + done, d->staging[k], len, cudaMemcpyHostToDevice,
                                   d->stream));
        CUDA_CHECK(cudaEventRecord(d->staged[k], d->stream));
    }
    pthread_mutex_unlock(&d->copy_lock);
}

static void stage_to_host(cuda_device *d, const void *src, size_t nbytes, size_t chunk, int k) {
    size_t start = chunk * STAGING_BYTES;
    size_t len = nbytes - start < STAGING_BYTES ? nbytes - start : STAGING_BYTES;
    CUDA_CHECK(cudaMemcpyAsync(d->staging[k], (const char *)src + start, len,
                               cudaMemcpyDeviceToHost, d->stream));
    CUDA_CHECK(cudaEventRecord(d->staged[k], d->stream));
}

// Device -> host through the pinned buffers: chunk i + 1 is in flight while the host copies chunk
// i out. Returns when dst holds the data (after everything queued before it on the stream).
static void cuda_copy_to_host(void *dst, const void *src, size_t nbytes) {
    if (nbytes == 0) return;
    cuda_device *d = device_of(src);
    size_t chunks = (nbytes + STAGING_BYTES - 1) / STAGING_BYTES;
    pthread_mutex_lock(&d->copy_lock);
    stage_to_host(d, src, nbytes, 0, 0);
    for (size_t i = 0; i < chunks; i++) {
        int k = (int)(i & 1);
        if (i + 1 < chunks) stage_to_host(d, src, nbytes, i + 1, k ^ 1);
        CUDA_CHECK(cudaEventSynchronize(d->staged[k]));
        size_t start = i * STAGING_BYTES;
        size_t len = nbytes - start < STAGING_BYTES ? nbytes - start : STAGING_BYTES;
        memcpy((char *)dst + start, d->staging[k], len);
    }
    pthread_mutex_unlock(&d->copy_lock);
    bad_index_check(d); // the stream is idle: a short wait
}

static void cuda_synchronize(void) {
    cuda_check_errors();
}

extern "C" const backend cuda_backend = {
    .name = "cuda",
    .alloc = cuda_alloc,
    .alloc_zeroed = nullptr, // cudaMalloc'd memory is not zeroed: memset_zero after alloc
    .free = cuda_free,
    .empty_cache = cuda_empty_cache,
    .reserved = cuda_reserved,
    .memset_zero = cuda_memset_zero,
    .copy_from_host = cuda_copy_from_host,
    .copy_to_host = cuda_copy_to_host,
    .synchronize = cuda_synchronize,
    .copy = cuda_copy,
    .fill = cuda_fill,
    .unary = cuda_unary,
    .binary = cuda_binary,
    .where = cuda_where,
    .reduce = cuda_reduce,
    .arg_reduce = cuda_arg_reduce,
    .topk = cuda_topk,
    .matmul = cuda_matmul,
#ifdef PETAL_HAVE_CUBLASLT
    .linear_bias = cuda_linear_bias,
#endif
    .softmax = cuda_softmax,
    .softmax_backward = cuda_softmax_backward,
    .layer_norm = cuda_layer_norm,
    .layer_norm_backward = cuda_layer_norm_backward,
    .cross_entropy = cuda_cross_entropy,
    .cross_entropy_backward = cuda_cross_entropy_backward,
    .attention = cuda_attention,
    .attention_backward = cuda_attention_backward,
    .attention_f32_only = false, // f64, and f32 with bf16 rounding too
    .attention_max_scores = 0,    // tiles of keys: any length
    .attention_backward_reads_o = true,
    .index_select = cuda_index_select,
    .index_add = cuda_index_add,
    .gather = cuda_gather,
    .scatter_add = cuda_scatter_add,
    .random = cuda_random,
    .dropout = cuda_dropout,
    .adamw = cuda_adamw,
};
