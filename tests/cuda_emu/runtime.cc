// The host emulator's CUDA runtime API (cuda_runtime_api.h): devices, memory, copies, streams,
// events and errors. Work runs at once, in the order it is issued, so streams and events only
// track what another library (the NCCL stand-in) has not finished yet; what is emulated with care
// is what a GPU would refuse: a copy or memset that leaves its allocation, a free of something
// cudaMalloc did not return, a device that is not there.
//
// Device memory is host memory from the C allocator, 256-byte aligned as cudaMalloc's, filled
// with 0xff bytes (NaN in every float type) so that a kernel reading memory nothing wrote sees
// NaN instead of the zeros fresh pages would give. Under AddressSanitizer each allocation is
// exactly the bytes asked for, so a kernel or copy reaching past it is reported.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cuda_emu_internal.h"

// ---- errors ----

static __thread cudaError_t last_error = cudaSuccess;

cudaError_t cuda_emu_fail(cudaError_t err) {
    if (err != cudaSuccess) last_error = err;
    return err;
}

extern "C" cudaError_t cudaGetLastError(void) {
    cudaError_t err = last_error;
    last_error = cudaSuccess;
    return err;
}

extern "C" cudaError_t cudaPeekAtLastError(void) {
    return last_error;
}

struct error_text {
    cudaError_t code;
    const char *name, *text;
};

// The toolkit's names and texts.
static const error_text error_texts[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress",
     "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources",
     "too many resources requested for launch"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};

static const error_text *error_text_of(cudaError_t err) {
    for (const error_text &e : error_texts)
        if (e.code == err) return &e;
    return NULL;
}

extern "C" const char *cudaGetErrorName(cudaError_t err) {
    const error_text *e = error_text_of(err);
    return e ? e->name : "unrecognized error code";
}

extern "C" const char *cudaGetErrorString(cudaError_t err) {
    const error_text *e = error_text_of(err);
    return e ? e->text : "unrecognized error code";
}

// ---- devices ----

static __thread int current_device = 0;

// PETAL_CUDA_EMU_DEVICES (default 1) devices, none if CUDA_VISIBLE_DEVICES hides them all as it
// does for the real runtime ("-1" or empty).
int cuda_emu_device_count(void) {
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (visible && (visible[0] == '\0' || strcmp(visible, "-1") == 0)) return 0;
    const char *env = getenv("PETAL_CUDA_EMU_DEVICES");
    if (!env || !env[0]) return 1;
    char *end;
    long n = strtol(env, &end, 10);
    if (*end || n < 0 || n > 16) {
        fprintf(stderr, "cuda_emu: PETAL_CUDA_EMU_DEVICES=%s is not a device count in [0, 16]\n",
                env);
        abort();
    }
    return (int)n;
}

// The emulated memory of each device: allocations beyond it fail as cudaMalloc does when the
// device is full (PETAL_CUDA_EMU_MEMORY_MIB, default 8 GiB).
static size_t device_memory_bytes(void) {
    const char *env = getenv("PETAL_CUDA_EMU_MEMORY_MIB");
    long mib = env && env[0] ? strtol(env, NULL, 10) : 8192;
    return (size_t)(mib > 0 ? mib : 8192) << 20;
}

extern "C" cudaError_t cudaDriverGetVersion(int *version) {
    if (!version) return cuda_emu_fail(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

extern "C" cudaError_t cudaRuntimeGetVersion(int *version) {
    if (!version) return cuda_emu_fail(cudaErrorInvalidValue);
    *version = CUDART_VERSION;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return cuda_emu_fail(cudaErrorInvalidValue);
    *count = cuda_emu_device_count();
    return *count ? cudaSuccess : cuda_emu_fail(cudaErrorNoDevice);
}

// The device calls on the current device act on, or the error that there is none.
cudaError_t cuda_emu_current_device(int *device) {
    int n = cuda_emu_device_count();
    if (n == 0) return cudaErrorNoDevice;
    if (current_device >= n) return cudaErrorInvalidDevice;
    *device = current_device;
    return cudaSuccess;
}

extern "C" cudaError_t cudaSetDevice(int device) {
    int n = cuda_emu_device_count();
    if (n == 0) return cuda_emu_fail(cudaErrorNoDevice);
    if (device < 0 || device >= n) return cuda_emu_fail(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

extern "C" cudaError_t cudaGetDevice(int *device) {
    if (!device) return cuda_emu_fail(cudaErrorInvalidValue);
    return cuda_emu_fail(cuda_emu_current_device(device));
}

extern "C" cudaError_t cudaDeviceSynchronize(void) {
    int device;
    return cuda_emu_fail(cuda_emu_current_device(&device));
}

// ---- memory ----

namespace {
struct allocation {
    size_t size;
    int device; // -1: pinned host memory
};
std::mutex memory_lock;
std::map<uintptr_t, allocation> allocations; // by base address
size_t device_used[16];
} // namespace

// The allocation holding [p, p + n), if any (an empty range may sit at its end).
static bool find_allocation(const void *p, size_t n, uintptr_t *base, allocation *found) {
    std::lock_guard<std::mutex> hold(memory_lock);
    uintptr_t a = (uintptr_t)p;
    auto it = allocations.upper_bound(a);
    if (it == allocations.begin()) return false;
    --it;
    if (a - it->first > it->second.size || n > it->second.size - (a - it->first)) return false;
    *base = it->first;
    *found = it->second;
    return true;
}

// Whether [p, p + n) lies in memory of `device` (-1: pinned host memory).
bool cuda_emu_is_memory_of(const void *p, size_t n, int device) {
    uintptr_t base;
    allocation a;
    return find_allocation(p, n, &base, &a) && a.device == device;
}

int cuda_emu_memory_device(const void *p) {
    uintptr_t base;
    allocation a;
    return find_allocation(p, 0, &base, &a) ? a.device : -2;
}

static cudaError_t track(void **ptr, size_t size, int device) {
    void *p = NULL;
    if (posix_memalign(&p, 256, size ? size : 1) != 0) return cudaErrorMemoryAllocation;
    memset(p, 0xff, size);
    std::lock_guard<std::mutex> hold(memory_lock);
    allocations[(uintptr_t)p] = allocation{size, device};
    if (device >= 0) device_used[device] += size;
    *ptr = p;
    return cudaSuccess;
}

static cudaError_t untrack(void *ptr, bool device) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> hold(memory_lock);
    auto it = allocations.find((uintptr_t)ptr);
    if (it == allocations.end() || (it->second.device >= 0) != device)
        return device ? cudaErrorInvalidDevicePointer : cudaErrorInvalidValue;
    if (it->second.device >= 0) device_used[it->second.device] -= it->second.size;
    allocations.erase(it);
    free(ptr);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    int device;
    cudaError_t err = cuda_emu_current_device(&device);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (!free_bytes || !total_bytes) return cuda_emu_fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> hold(memory_lock);
    *total_bytes = device_memory_bytes();
    *free_bytes = *total_bytes - device_used[device];
    return cudaSuccess;
}

extern "C" cudaError_t cudaMalloc(void **ptr, size_t size) {
    int device;
    cudaError_t err = cuda_emu_current_device(&device);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (!ptr) return cuda_emu_fail(cudaErrorInvalidValue);
    {
        std::lock_guard<std::mutex> hold(memory_lock);
        if (size > device_memory_bytes() - device_used[device])
            return cuda_emu_fail(cudaErrorMemoryAllocation);
    }
    return cuda_emu_fail(track(ptr, size, device));
}

extern "C" cudaError_t cudaFree(void *ptr) {
    return cuda_emu_fail(untrack(ptr, true));
}

extern "C" cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
    if (!ptr || flags != cudaHostAllocDefault) return cuda_emu_fail(cudaErrorInvalidValue);
    return cuda_emu_fail(track(ptr, size, -1));
}

extern "C" cudaError_t cudaFreeHost(void *ptr) {
    return cuda_emu_fail(untrack(ptr, false));
}

extern "C" cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attr,
                                                const void *ptr) {
    if (!attr) return cuda_emu_fail(cudaErrorInvalidValue);
    uintptr_t base;
    allocation a;
    *attr = cudaPointerAttributes{cudaMemoryTypeUnregistered, -1, NULL, NULL};
    if (!find_allocation(ptr, 0, &base, &a)) return cudaSuccess; // as CUDA 11 and later
    attr->type = a.device >= 0 ? cudaMemoryTypeDevice : cudaMemoryTypeHost;
    attr->device = a.device >= 0 ? a.device : current_device;
    attr->devicePointer = (void *)ptr;
    attr->hostPointer = a.device >= 0 ? NULL : (void *)ptr;
    return cudaSuccess;
}

// A range a copy or memset touches on the device side must lie in one device allocation; on the
// host side it must not be device memory (the kind names which side is which).
static bool device_range(const void *p, size_t n) {
    uintptr_t base;
    allocation a;
    return find_allocation(p, n, &base, &a) && a.device >= 0;
}

static bool host_range(const void *p, size_t n) {
    uintptr_t base;
    allocation a;
    return !find_allocation(p, n ? 1 : 0, &base, &a) || a.device < 0;
}

static cudaError_t check_stream(cudaStream_t stream);

extern "C" cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count,
                                       enum cudaMemcpyKind kind, cudaStream_t stream) {
    cudaError_t err = check_stream(stream);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (count == 0) return cudaSuccess;
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice:
        ok = host_range(src, count) && device_range(dst, count);
        break;
    case cudaMemcpyDeviceToHost:
        ok = device_range(src, count) && host_range(dst, count);
        break;
    case cudaMemcpyDeviceToDevice:
        ok = device_range(src, count) && device_range(dst, count);
        break;
    case cudaMemcpyHostToHost:
        ok = host_range(src, count) && host_range(dst, count);
        break;
    case cudaMemcpyDefault:
        ok = (device_range(src, count) || host_range(src, count)) &&
             (device_range(dst, count) || host_range(dst, count));
        break;
    default:
        return cuda_emu_fail(cudaErrorInvalidMemcpyDirection);
    }
    if (!ok) return cuda_emu_fail(cudaErrorInvalidValue);
    memmove(dst, src, count);
    return cudaSuccess;
}

extern "C" cudaError_t cudaMemcpy(void *dst, const void *src, size_t count,
                                  enum cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, count, kind, NULL);
}

extern "C" cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
    cudaError_t err = check_stream(stream);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (count == 0) return cudaSuccess;
    if (!device_range(ptr, count)) return cuda_emu_fail(cudaErrorInvalidValue);
    memset(ptr, value, count);
    return cudaSuccess;
}

// ---- streams and events: work has run by the time it is queued ----
//
// Only another library's work (the NCCL stand-in's collectives, cuda_emu_stream_hold) is ever
// unfinished. A stream counts the holds put on it and those released (they are released in the
// order they were put: one communicator's thread serves them in turn), so "everything queued on s
// before now" is a mark: s's released count reaching its held count of now. An event is the marks
// its stream had to pass when it was recorded; cudaStreamWaitEvent adds an event's marks to what
// the waiting stream must pass before its later work runs. Nothing blocks the host until work is
// queued behind an unpassed mark (or the host synchronises), as on a GPU.

namespace {
struct mark {
    CUstream_st *stream;
    uint64_t holds; // passed once stream->released reaches it
};
} // namespace

struct CUstream_st {
    int device;
    std::atomic<uint64_t> holds{0}, released{0}; // cuda_emu_stream_hold's +1s and -1s
    std::mutex lock{};                           // waits
    std::vector<mark> waits{};                   // cudaStreamWaitEvent's marks not yet passed
};
struct CUevent_st {
    int device;
    std::vector<mark> marks{}; // of its last cudaEventRecord
};

static bool passed(const mark &m) {
    return m.stream->released.load(std::memory_order_acquire) >= m.holds;
}

static void drop_passed(std::vector<mark> &marks) {
    marks.erase(std::remove_if(marks.begin(), marks.end(), passed), marks.end());
}

// What work queued on the stream now waits for: its holds so far and the marks it was told to
// wait for.
static std::vector<mark> marks_of(CUstream_st *s) {
    std::lock_guard<std::mutex> hold(s->lock);
    drop_passed(s->waits);
    std::vector<mark> marks = s->waits;
    marks.push_back(mark{s, s->holds.load(std::memory_order_acquire)});
    return marks;
}

static bool all_passed(const std::vector<mark> &marks) {
    return std::all_of(marks.begin(), marks.end(), passed);
}

static void wait_for(const std::vector<mark> &marks) {
    while (!all_passed(marks)) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

static std::mutex handle_lock;
static std::set<const void *> handles; // live streams and events
// Destroyed streams: events may still name them. The vector is never destroyed, so they stay
// reachable at exit (a static vector's destructor would run before LeakSanitizer looks).
static std::vector<CUstream_st *> *const retired = new std::vector<CUstream_st *>();

static cudaError_t known_stream(cudaStream_t stream) {
    int device;
    cudaError_t err = cuda_emu_current_device(&device);
    if (err != cudaSuccess) return err;
    if (!stream) return cudaSuccess; // the legacy default stream
    std::lock_guard<std::mutex> hold(handle_lock);
    return handles.count(stream) ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

// Work queued on a stream waits for what is held on it and for the events it waits on, as it
// would for earlier kernels.
static cudaError_t check_stream(cudaStream_t stream) {
    cudaError_t err = known_stream(stream);
    if (err == cudaSuccess && stream) wait_for(marks_of(stream));
    return err;
}

extern "C" void cuda_emu_stream_hold(cudaStream_t stream, int delta) {
    (delta > 0 ? stream->holds : stream->released).fetch_add(1, std::memory_order_acq_rel);
}

// Kernels may run only on a stream of the current device.
cudaError_t cuda_emu_check_launch_stream(cudaStream_t stream) {
    cudaError_t err = check_stream(stream);
    int device;
    if (err != cudaSuccess || !stream || cuda_emu_current_device(&device) != cudaSuccess)
        return err;
    return stream->device == device ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

cudaError_t cuda_emu_check_stream(cudaStream_t stream) {
    return check_stream(stream);
}

template <typename H> static cudaError_t handle_create(H **out) {
    int device;
    cudaError_t err = cuda_emu_current_device(&device);
    if (err != cudaSuccess) return err;
    if (!out) return cudaErrorInvalidValue;
    *out = new H{device};
    std::lock_guard<std::mutex> hold(handle_lock);
    handles.insert(*out);
    return cudaSuccess;
}

template <typename H> static cudaError_t handle_destroy(H *h) {
    std::lock_guard<std::mutex> hold(handle_lock);
    if (!handles.erase(h)) return cudaErrorInvalidResourceHandle;
    delete h;
    return cudaSuccess;
}

static cudaError_t handle_check(const void *h) {
    std::lock_guard<std::mutex> hold(handle_lock);
    return h && handles.count(h) ? cudaSuccess : cudaErrorInvalidResourceHandle;
}

extern "C" cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
    if (flags & ~(unsigned int)cudaStreamNonBlocking) return cuda_emu_fail(cudaErrorInvalidValue);
    return cuda_emu_fail(handle_create(stream));
}

// The stream is kept (an event recorded on it may still be waited for), never used again.
extern "C" cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    std::lock_guard<std::mutex> hold(handle_lock);
    if (!handles.erase(stream)) return cuda_emu_fail(cudaErrorInvalidResourceHandle);
    retired->push_back(stream);
    return cudaSuccess;
}

extern "C" cudaError_t cudaStreamQuery(cudaStream_t stream) {
    cudaError_t err = known_stream(stream);
    if (err == cudaSuccess && stream && !all_passed(marks_of(stream)))
        return cudaErrorNotReady; // not an error: cudaGetLastError does not keep it
    return cuda_emu_fail(err);
}

extern "C" cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    return cuda_emu_fail(check_stream(stream));
}

extern "C" cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
    if (flags & ~(unsigned int)cudaEventDisableTiming) return cuda_emu_fail(cudaErrorInvalidValue);
    return cuda_emu_fail(handle_create(event));
}

extern "C" cudaError_t cudaEventDestroy(cudaEvent_t event) {
    return cuda_emu_fail(handle_destroy(event));
}

// The event completes when everything queued on the stream so far has run; recording does not
// wait for it.
extern "C" cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    cudaError_t err = handle_check(event);
    if (err == cudaSuccess) err = known_stream(stream);
    if (err != cudaSuccess) return cuda_emu_fail(err);
    event->marks = stream ? marks_of(stream) : std::vector<mark>{};
    return cudaSuccess;
}

extern "C" cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    cudaError_t err = handle_check(event);
    if (err == cudaSuccess) wait_for(event->marks);
    return cuda_emu_fail(err);
}

extern "C" cudaError_t cudaEventQuery(cudaEvent_t event) {
    cudaError_t err = handle_check(event);
    if (err == cudaSuccess && !all_passed(event->marks)) return cudaErrorNotReady;
    return cuda_emu_fail(err);
}

// Work queued on the stream from now on waits for the event's work; the host does not.
extern "C" cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event,
                                           unsigned int flags) {
    cudaError_t err = handle_check(event);
    if (err == cudaSuccess) err = known_stream(stream);
    if (err == cudaSuccess && flags != 0) err = cudaErrorInvalidValue;
    if (err != cudaSuccess) return cuda_emu_fail(err);
    if (!stream) {
        wait_for(event->marks); // the legacy stream's work runs on the calling thread
        return cudaSuccess;
    }
    std::lock_guard<std::mutex> hold(stream->lock);
    stream->waits.insert(stream->waits.end(), event->marks.begin(), event->marks.end());
    drop_passed(stream->waits);
    return cudaSuccess;
}
