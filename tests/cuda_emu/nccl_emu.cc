// The host emulator's NCCL (tests/cuda_emu/README.md, "NCCL"): libpetal_nccl_emu.so exports the
// functions train/dist_nccl_lib.h loads, with NCCL's own header's types, for ranks that are
// processes of one machine. The unique id names a POSIX shared-memory segment; every rank maps
// it, and a collective moves through it in chunks: each rank copies its part into its own slot,
// waits for the others, and reads the slots in rank order (rank 0's value + rank 1's + ...).
// As with NCCL, a call only queues the collective: a thread of the communicator runs it while the
// stream is held (cuda_emu_stream_hold), so cudaStreamQuery says cudaErrorNotReady until every
// rank has arrived, and a rank that died or aborted surfaces through ncclCommGetAsyncError.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "cuda_emu_internal.h"
#include "tensor/dtype_convert.h"

#define NCCL_EMU_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int max_ranks = 256;
constexpr size_t slot_bytes = size_t(4) << 20; // a rank's share of one chunk
constexpr size_t header_bytes = 16384;         // segment: header, then one slot per rank
constexpr char id_prefix[] = "petal-nccl-emu:";

struct rank_state {
    std::atomic<int> pid;         // 0 until the rank joined
    std::atomic<uint64_t> passed; // barriers this rank has reached
};

struct segment {
    std::atomic<int> nranks, joined;
    std::atomic<int> aborted; // rank + 1 of the first rank that aborted, 0 if none
    rank_state ranks[max_ranks];
};
static_assert(sizeof(segment) <= header_bytes, "the segment's header outgrew its room");

enum class kind { all_reduce, broadcast, all_gather };

struct op {
    kind what;
    const char *send;
    char *recv;
    size_t count; // elements per rank
    ncclDataType_t type;
    ncclRedOp_t red;
    int root;
    cudaStream_t stream;
    cudaEvent_t after; // the stream's earlier work, which the collective waits for (submit)
};

} // namespace

struct ncclComm {
    segment *seg;
    size_t bytes; // the mapping's length
    int rank, nranks, device;
    uint64_t barriers; // this rank's barriers so far
    uint64_t calls;    // collectives run, to name one in a message
    double timeout_s;
    std::atomic<ncclResult_t> async{ncclSuccess};
    std::atomic<bool> stop{false};
    std::mutex lock;
    std::condition_variable wake;
    std::deque<op> queue; // queued, the front one running
    std::thread worker;
};

static std::mutex message_lock;
static char message[512]; // ncclGetLastError's text

static void set_message(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_message(const char *fmt, ...) {
    std::lock_guard<std::mutex> hold(message_lock);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// NCCL itself never gives up on a peer that hangs (petal's deadline does, dist_nccl.c); the
// stand-in does after PETAL_NCCL_EMU_TIMEOUT seconds (default 600), so no test waits forever.
static double stand_in_timeout(void) {
    const char *v = getenv("PETAL_NCCL_EMU_TIMEOUT");
    double t = v ? atof(v) : 0;
    return t > 0 ? t : 600;
}

static size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8:
    case ncclUint8:
        return 1;
    case ncclFloat16:
    case ncclBfloat16:
        return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
        return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
        return 8;
    default:
        return 0; // the fp8 types: not provided
    }
}

static void fail_async(ncclComm *c, ncclResult_t r) {
    ncclResult_t none = ncclSuccess;
    c->async.compare_exchange_strong(none, r);
}

// The ranks that have not reached barrier `k` (0: not joined), as "1, 3", into out.
static void missing_ranks(const ncclComm *c, uint64_t k, char *out, size_t size) {
    out[0] = '\0';
    for (int r = 0, n = 0; r < c->nranks; r++)
        if (k ? c->seg->ranks[r].passed.load() < k : !c->seg->ranks[r].pid.load())
            n += snprintf(out + n, size - (size_t)n, "%s%d", n ? ", " : "", r);
}

// Why this rank cannot go on waiting (ncclSuccess: it may): a rank aborted or exited, the
// communicator is being aborted, or the stand-in's timeout passed.
static ncclResult_t stuck(ncclComm *c, uint64_t k, double deadline, const char *what) {
    if (c->stop.load()) return ncclInvalidUsage;
    int aborted = c->seg->aborted.load();
    if (aborted) {
        set_message("nccl_emu: rank %d aborted its communicator during %s #%llu", aborted - 1, what,
                    (unsigned long long)c->calls);
        return ncclRemoteError;
    }
    for (int r = 0; r < c->nranks; r++) {
        int pid = c->seg->ranks[r].pid.load();
        if (pid && kill(pid, 0) != 0 && errno == ESRCH) {
            set_message("nccl_emu: rank %d (pid %d) exited during %s #%llu", r, pid, what,
                        (unsigned long long)c->calls);
            return ncclRemoteError;
        }
    }
    if (now_s() > deadline) {
        char missing[256];
        missing_ranks(c, k, missing, sizeof missing);
        set_message("nccl_emu: rank %d waited %g s in %s #%llu for rank(s) %s "
                    "(PETAL_NCCL_EMU_TIMEOUT)",
                    c->rank, c->timeout_s, what, (unsigned long long)c->calls, missing);
        return ncclSystemError;
    }
    return ncclSuccess;
}

// Every rank at the same point of the same collective: each counts its barriers and waits until
// every rank's count has reached its own.
static ncclResult_t barrier(ncclComm *c, const char *what) {
    uint64_t k = ++c->barriers;
    c->seg->ranks[c->rank].passed.store(k);
    double deadline = now_s() + c->timeout_s;
    for (int r = 0, spins = 0; r < c->nranks;) {
        if (c->seg->ranks[r].passed.load() >= k) {
            r++;
            continue;
        }
        if (++spins < 1000) {
            sched_yield();
            continue;
        }
        ncclResult_t why = stuck(c, k, deadline, what);
        if (why != ncclSuccess) return why;
        struct timespec nap = {0, 20 * 1000};
        nanosleep(&nap, NULL);
    }
    return ncclSuccess;
}

// One element of the sum: acc + x * scale (scale 1 for ncclSum; 1 / nranks for ncclAvg on floats,
// which NCCL multiplies in before summing), rounded to the type after each operation.
template <typename T> static T premul_add(T acc, T x, double scale, bool first) {
    T y = scale == 1 ? x : (T)(x * (T)scale);
    return first ? y : (T)(acc + y);
}

template <uint16_t (*to)(float), float (*from)(uint16_t)>
static uint16_t premul_add_half(uint16_t acc, uint16_t x, double scale, bool first) {
    uint16_t y = scale == 1 ? x : to(from(x) * from(to((float)scale)));
    return first ? y : to(from(acc) + from(y));
}

template <typename T> static void reduce_as(const ncclComm *c, const op &o, size_t off, size_t n) {
    const char *slots = (const char *)c->seg + header_bytes;
    bool avg = o.red == ncclAvg;
    bool floating = o.type == ncclFloat16 || o.type == ncclBfloat16 || o.type == ncclFloat32 ||
                    o.type == ncclFloat64;
    double scale = avg && floating ? 1.0 / c->nranks : 1;
    T *out = (T *)(o.recv + off * sizeof(T)); // (n,)
    for (size_t i = 0; i < n; i++) {
        T acc{};
        for (int r = 0; r < c->nranks; r++) {
            T x = ((const T *)(slots + (size_t)r * slot_bytes))[i];
            if constexpr (sizeof(T) == 2 && !std::is_signed_v<T>) {
                acc = o.type == ncclFloat16
                          ? premul_add_half<f32_to_f16, f16_to_f32>(acc, x, scale, r == 0)
                          : premul_add_half<f32_to_bf16, bf16_to_f32>(acc, x, scale, r == 0);
            } else {
                acc = premul_add<T>(acc, x, scale, r == 0);
            }
        }
        if (avg && !floating) acc = (T)(acc / (T)c->nranks); // integers: the sum, divided after
        out[i] = acc;
    }
}

static void reduce_chunk(const ncclComm *c, const op &o, size_t off, size_t n) {
    switch (o.type) {
    case ncclInt8:
        return reduce_as<int8_t>(c, o, off, n);
    case ncclUint8:
        return reduce_as<uint8_t>(c, o, off, n);
    case ncclInt32:
        return reduce_as<int32_t>(c, o, off, n);
    case ncclUint32:
        return reduce_as<uint32_t>(c, o, off, n);
    case ncclInt64:
        return reduce_as<int64_t>(c, o, off, n);
    case ncclUint64:
        return reduce_as<uint64_t>(c, o, off, n);
    case ncclFloat32:
        return reduce_as<float>(c, o, off, n);
    case ncclFloat64:
        return reduce_as<double>(c, o, off, n);
    default: // f16 and bf16: 16 bits each, told apart in reduce_as
        return reduce_as<uint16_t>(c, o, off, n);
    }
}

static char *slot_of(const ncclComm *c, int r) {
    return (char *)c->seg + header_bytes + (size_t)r * slot_bytes;
}

static const char *op_name(kind k) {
    return k == kind::all_reduce  ? "ncclAllReduce"
           : k == kind::broadcast ? "ncclBroadcast"
                                  : "ncclAllGather";
}

// The collective, chunk by chunk: in, a barrier, out, a barrier (no slot is refilled before every
// rank has read it).
static ncclResult_t run(ncclComm *c, const op &o) {
    size_t size = type_size(o.type), per_chunk = slot_bytes / size;
    const char *name = op_name(o.what);
    c->calls++;
    for (size_t off = 0; off < o.count; off += per_chunk) {
        size_t n = o.count - off < per_chunk ? o.count - off : per_chunk, bytes = n * size;
        bool sender = o.what != kind::broadcast || c->rank == o.root;
        if (sender) memcpy(slot_of(c, c->rank), o.send + off * size, bytes);
        ncclResult_t r = barrier(c, name);
        if (r != ncclSuccess) return r;
        if (o.what == kind::all_reduce) {
            reduce_chunk(c, o, off, n);
        } else if (o.what == kind::broadcast) {
            memcpy(o.recv + off * size, slot_of(c, o.root), bytes);
        } else {
            for (int q = 0; q < c->nranks; q++)
                memcpy(o.recv + (q * o.count + off) * size, slot_of(c, q), bytes);
        }
        if ((r = barrier(c, name)) != ncclSuccess) return r;
    }
    return ncclSuccess;
}

// As on a GPU, a collective starts once the work queued before it on its stream has run: the
// kernels and copies have (the emulator runs them at once), but another stream's collective that
// the stream waits for (cudaStreamWaitEvent) may not have. False: the communicator is stopping.
static bool start_after(ncclComm *c, const op &o) {
    while (cudaEventQuery(o.after) == cudaErrorNotReady) {
        if (c->stop.load()) return false;
        struct timespec nap = {0, 50 * 1000};
        nanosleep(&nap, NULL);
    }
    return true;
}

// The communicator's thread: runs the queued collectives in order, releasing each one's stream.
// After a failure it runs nothing more and keeps the streams held, as a GPU's kernels would wait
// for the dead peer, until ncclCommAbort.
static void serve(ncclComm *c) {
    std::unique_lock<std::mutex> hold(c->lock);
    for (;;) {
        c->wake.wait(hold, [c] { return c->stop.load() || !c->queue.empty(); });
        if (c->stop.load()) return;
        if (c->async.load() != ncclSuccess) {
            c->wake.wait(hold, [c] { return c->stop.load(); });
            return;
        }
        op o = c->queue.front();
        hold.unlock();
        ncclResult_t r = start_after(c, o) ? run(c, o) : ncclInvalidUsage;
        hold.lock();
        if (r != ncclSuccess) {
            fail_async(c, r);
            continue;
        }
        c->queue.pop_front();
        cudaEventDestroy(o.after);
        cuda_emu_stream_hold(o.stream, -1);
        c->wake.notify_all();
    }
}

// ---- groups: calls between ncclGroupStart and ncclGroupEnd queue together ----

static thread_local int group_depth;
static thread_local std::vector<std::pair<ncclComm *, op>> grouped;

// Queues the collective behind what its stream holds and waits for so far (recorded before the
// collective's own hold, which the event must not wait for).
static void submit(ncclComm *c, op o) {
    if (cudaEventCreateWithFlags(&o.after, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventRecord(o.after, o.stream) != cudaSuccess) {
        fprintf(stderr, "nccl_emu: %s: cannot record an event on its stream\n", op_name(o.what));
        abort();
    }
    cuda_emu_stream_hold(o.stream, +1);
    std::lock_guard<std::mutex> hold(c->lock);
    c->queue.push_back(o);
    c->wake.notify_all();
}

static ncclResult_t enqueue(ncclComm *c, const op &o) {
    if (!c) {
        set_message("nccl_emu: %s: comm is NULL", op_name(o.what));
        return ncclInvalidArgument;
    }
    size_t size = type_size(o.type);
    if (!size) {
        set_message("nccl_emu: %s: datatype %d is not one the stand-in reduces", op_name(o.what),
                    (int)o.type);
        return ncclInvalidArgument;
    }
    if (o.what == kind::all_reduce && o.red != ncclSum && o.red != ncclAvg) {
        set_message("nccl_emu: ncclAllReduce: op %d (the stand-in has ncclSum and ncclAvg)",
                    (int)o.red);
        return ncclInvalidArgument;
    }
    if (o.what == kind::broadcast && (o.root < 0 || o.root >= c->nranks)) {
        set_message("nccl_emu: ncclBroadcast: root %d of %d ranks", o.root, c->nranks);
        return ncclInvalidArgument;
    }
    // NCCL reads and writes device memory only: a host pointer faults on a GPU.
    size_t in = o.count * size, out = o.what == kind::all_gather ? in * c->nranks : in;
    bool sends = o.what != kind::broadcast || c->rank == o.root;
    if ((sends && !cuda_emu_is_memory_of(o.send, in, c->device)) ||
        !cuda_emu_is_memory_of(o.recv, out, c->device)) {
        set_message("nccl_emu: %s: rank %d: a buffer is not memory of its device %d",
                    op_name(o.what), c->rank, c->device);
        return ncclInvalidArgument;
    }
    if (o.count == 0) return ncclSuccess;
    if (group_depth > 0)
        grouped.emplace_back(c, o);
    else
        submit(c, o);
    return ncclSuccess;
}

NCCL_EMU_API ncclResult_t ncclGroupStart(void) {
    group_depth++;
    return ncclSuccess;
}

NCCL_EMU_API ncclResult_t ncclGroupEnd(void) {
    if (group_depth == 0) {
        set_message("nccl_emu: ncclGroupEnd without ncclGroupStart");
        return ncclInvalidUsage;
    }
    if (--group_depth > 0) return ncclSuccess;
    for (auto &[c, o] : grouped) submit(c, o);
    grouped.clear();
    return ncclSuccess;
}

NCCL_EMU_API ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                                        ncclDataType_t datatype, ncclRedOp_t red, ncclComm_t comm,
                                        cudaStream_t stream) {
    return enqueue(comm, {kind::all_reduce, (const char *)sendbuff, (char *)recvbuff, count,
                          datatype, red, 0, stream, NULL});
}

NCCL_EMU_API ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count,
                                        ncclDataType_t datatype, int root, ncclComm_t comm,
                                        cudaStream_t stream) {
    return enqueue(comm, {kind::broadcast, (const char *)sendbuff, (char *)recvbuff, count,
                          datatype, ncclSum, root, stream, NULL});
}

NCCL_EMU_API ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount,
                                        ncclDataType_t datatype, ncclComm_t comm,
                                        cudaStream_t stream) {
    return enqueue(comm, {kind::all_gather, (const char *)sendbuff, (char *)recvbuff, sendcount,
                          datatype, ncclSum, 0, stream, NULL});
}

// ---- communicators ----

NCCL_EMU_API ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static std::atomic<int> made;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s/petal-nccl-%d-%lld-%d", id_prefix,
             (int)getpid(), (long long)t.tv_sec * 1000000000LL + t.tv_nsec, made++);
    return ncclSuccess;
}

// The segment named by the id, mapped with room for nranks slots (the first rank makes it).
static segment *map_segment(const char *name, int nranks, size_t *bytes) {
    *bytes = header_bytes + (size_t)nranks * slot_bytes;
    int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return NULL;
    struct stat st;
    bool sized =
        fstat(fd, &st) == 0 && ((size_t)st.st_size >= *bytes || ftruncate(fd, (off_t)*bytes) == 0);
    void *p = sized ? mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    return p == MAP_FAILED ? NULL : (segment *)p;
}

// Every rank joined, or why not.
static ncclResult_t join(ncclComm *c) {
    int expected = 0;
    if (!c->seg->nranks.compare_exchange_strong(expected, c->nranks) && expected != c->nranks) {
        set_message("nccl_emu: ncclCommInitRank: rank %d was told %d ranks, another rank %d",
                    c->rank, c->nranks, expected);
        return ncclInvalidUsage;
    }
    expected = 0;
    if (!c->seg->ranks[c->rank].pid.compare_exchange_strong(expected, (int)getpid())) {
        set_message("nccl_emu: ncclCommInitRank: rank %d joined twice (pids %d and %d)", c->rank,
                    expected, (int)getpid());
        return ncclInvalidUsage;
    }
    c->seg->joined.fetch_add(1);
    double deadline = now_s() + c->timeout_s;
    while (c->seg->joined.load() < c->nranks) {
        ncclResult_t why = stuck(c, 0, deadline, "ncclCommInitRank");
        if (why != ncclSuccess) return why;
        struct timespec nap = {0, 100 * 1000};
        nanosleep(&nap, NULL);
    }
    return ncclSuccess;
}

NCCL_EMU_API ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id,
                                           int rank) {
    if (!comm || nranks < 1 || nranks > max_ranks || rank < 0 || rank >= nranks) {
        set_message("nccl_emu: ncclCommInitRank: rank %d of %d ranks (at most %d)", rank, nranks,
                    max_ranks);
        return ncclInvalidArgument;
    }
    id.internal[sizeof id.internal - 1] = '\0';
    if (strncmp(id.internal, id_prefix, sizeof id_prefix - 1) != 0) {
        set_message("nccl_emu: ncclCommInitRank: the id is not one of this stand-in's "
                    "ncclGetUniqueId");
        return ncclInvalidArgument;
    }
    int device;
    if (cudaGetDevice(&device) != cudaSuccess) {
        set_message("nccl_emu: ncclCommInitRank: no current CUDA device");
        return ncclUnhandledCudaError;
    }
    const char *name = id.internal + sizeof id_prefix - 1;
    ncclComm *c = new ncclComm;
    c->rank = rank;
    c->nranks = nranks;
    c->device = device;
    c->barriers = c->calls = 0;
    c->timeout_s = stand_in_timeout();
    c->seg = map_segment(name, nranks, &c->bytes);
    if (!c->seg) {
        set_message("nccl_emu: ncclCommInitRank: shared memory %s: %s", name, strerror(errno));
        delete c;
        return ncclSystemError;
    }
    ncclResult_t r = join(c);
    // Every rank has mapped the segment (or will never come): its name has served.
    if (rank == 0 || r != ncclSuccess) shm_unlink(name);
    if (r != ncclSuccess) {
        munmap(c->seg, c->bytes);
        delete c;
        return r;
    }
    c->worker = std::thread(serve, c);
    *comm = c;
    return ncclSuccess;
}

NCCL_EMU_API ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
    if (!comm || !asyncError) return ncclInvalidArgument;
    *asyncError = comm->async.load();
    return ncclSuccess;
}

// Stops the thread, releases the streams of what never ran, unmaps.
static void finish(ncclComm *c) {
    {
        std::lock_guard<std::mutex> hold(c->lock);
        c->stop.store(true);
        c->wake.notify_all();
    }
    c->worker.join();
    for (const op &o : c->queue) {
        cudaEventDestroy(o.after);
        cuda_emu_stream_hold(o.stream, -1);
    }
    munmap(c->seg, c->bytes);
    delete c;
}

// Waits for the queued collectives (not for ever: a failed one ends the wait).
NCCL_EMU_API ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    {
        std::unique_lock<std::mutex> hold(comm->lock);
        comm->wake.wait(
            hold, [comm] { return comm->queue.empty() || comm->async.load() != ncclSuccess; });
    }
    finish(comm);
    return ncclSuccess;
}

// The other ranks' collectives fail with ncclRemoteError, as when a peer's connections close.
NCCL_EMU_API ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    int none = 0;
    comm->seg->aborted.compare_exchange_strong(none, comm->rank + 1);
    finish(comm);
    return ncclSuccess;
}

NCCL_EMU_API const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) { // NCCL's own texts
    case ncclSuccess:
        return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
        return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
        return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
        return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
        return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError:
        return "remote process exited or there was a network error";
    case ncclInProgress:
        return "NCCL operation in progress";
    default:
        return "unknown result code";
    }
}

NCCL_EMU_API const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return message;
}
