// The mpi backend of train/dist.h: CPU tensors over MPI point-to-point messages on a communicator
// of its own (a duplicate of MPI_COMM_WORLD, so a program's own MPI traffic never meets petal's).
//
// All-reduce, for a world of N ranks, on the tensors (packed into one buffer when there are
// several): the message is cut into N chunks; rank k collects chunk k from every rank and sums the
// copies in rank order (a reduce-scatter), then sends the sum to every rank (an all-gather). The
// order of the additions is fixed by the ranks, not by message timing or MPI's algorithm choice,
// so every rank ends with the same bits and a rerun repeats them. Each rank sends and receives
// 2 (N - 1) / N of the data, as a ring does, in N - 1 messages per phase and segment: meant for
// the tens of ranks of CPU data parallelism, not thousands. Large messages are pipelined: the
// chunks go in segments (PETAL_DIST_SEGMENT_KB), several in flight, each summed and sent on
// while the next ones move (see mpi_job).
//
// Every wait polls its requests against the deadline (dist_config.timeout_s): when it passes, the
// error names the ranks whose messages are missing, and the communicator is marked failed.
#include "train/dist_backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/storage.h"

#ifdef PETAL_HAVE_MPI
#include <mpi.h>

// The all-reduces take tags from TAG_REDUCE up, two per job (next_tag).
enum { TAG_BCAST = 11, TAG_ALLGATHER, TAG_REDUCE = 64 };

typedef struct {
    MPI_Comm comm;
    bool finalize; // petal started MPI, so petal ends it
    int64_t jobs;  // all-reduces begun
} mpi_state;

static bool started_here;
static const dist_backend mpi_backend;

petal_status dist_mpi_start(void) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (ready) return PETAL_OK;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return petal_error(PETAL_ERR_DEVICE, "dist: MPI_Init_thread failed");
    started_here = true;
    return PETAL_OK;
}

void dist_mpi_finish(void) {
    if (!started_here) return;
    started_here = false;
    MPI_Finalize();
}

static MPI_Comm comm_of(const dist_comm *c) {
    return ((const mpi_state *)c->impl)->comm;
}

// Waits for n requests (peer[i] is the rank at the other end of reqs[i]) until the deadline.
static petal_status wait_all(dist_comm *c, MPI_Request *reqs, const int *peer, int n,
                             const char *what) {
    double deadline = dist_now() + c->timeout_s;
    int left = n, *done = malloc((size_t)(n > 0 ? n : 1) * sizeof *done);
    PETAL_CHECK(done != NULL, "%s: out of host memory", what);
    double last = dist_now(); // when a transfer last finished
    while (left > 0) {
        int count;
        if (MPI_Testsome(n, reqs, &count, done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            free(done);
            c->failed = true;
            return petal_error(PETAL_ERR_DEVICE, "%s: rank %d: MPI_Testsome failed", what, c->rank);
        }
        if (count == MPI_UNDEFINED) break;
        left -= count;
        double t = dist_now();
        if (count > 0) last = t;
        if (left == 0 || count > 0) continue;
        if (t > deadline) {
            int missing = -1;
            for (int i = 0; i < n && missing < 0; i++)
                if (reqs[i] != MPI_REQUEST_NULL) missing = peer[i];
            free(done);
            c->failed = true;
            return petal_error(PETAL_ERR_DEVICE,
                               "%s: rank %d waited %g s for rank %d (%d transfer(s) unfinished): "
                               "rank %d died or hangs (PETAL_DIST_TIMEOUT sets the wait)",
                               what, c->rank, c->timeout_s, missing, left, missing);
        }
        // MPI moves large messages only inside its calls, so a transfer under way is polled
        // without pause; after 20 ms without progress the peer is busy elsewhere (a longer
        // backward pass) and naps of 0.2 ms leave it the core.
        if (t - last > 0.02) nanosleep(&(struct timespec){0, 200 * 1000}, NULL);
    }
    free(done);
    return PETAL_OK;
}

static MPI_Datatype mpi_type(petal_dtype t) {
    switch (t) {
    case PETAL_F32:
        return MPI_FLOAT;
    case PETAL_F64:
        return MPI_DOUBLE;
    case PETAL_I64:
        return MPI_INT64_T;
    case PETAL_I32:
        return MPI_INT32_T;
    default:
        return MPI_UINT16_T; // f16 and bf16: moved, never reduced
    }
}

// ---- all-reduce ----

// dst[i] += src[i] for n elements of the job's dtype, then dst[i] *= s unless s is 1 (the mean's
// scaling, in the same pass while dst[i] is in a register: a pass of its own over the segment
// cost as much as the sum). The product is the one a pass of its own took, (float)(sum * s) in
// double, so the bits are the same.
static void add_into(petal_dtype t, void *dst, const void *src, int64_t n, double s) {
    if (t == PETAL_F32 && s != 1)
        for (int64_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)((((float *)dst)[i] + ((const float *)src)[i]) * s);
    else if (t == PETAL_F32)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
    else if (t == PETAL_F64 && s != 1)
        for (int64_t i = 0; i < n; i++)
            ((double *)dst)[i] = (((double *)dst)[i] + ((const double *)src)[i]) * s;
    else if (t == PETAL_F64)
        for (int64_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
    else
        for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] += ((const int64_t *)src)[i];
}

// Chunk k of n elements: [k n / N, (k + 1) n / N).
static int64_t chunk_at(int64_t n, int world, int k) {
    return n * k / world;
}

typedef struct {
    void *data;
    int64_t count; // elements; 0: no message
} span;

// Transfers in flight: the requests and the rank at the other end of each.
typedef struct {
    MPI_Request *reqs;
    int *peer;
    int m;
} in_flight;

static void in_flight_init(in_flight *f, int64_t cap, const char *what) {
    f->reqs = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *f->reqs);
    f->peer = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *f->peer);
    f->m = 0;
    PETAL_CHECK(f->reqs && f->peer, "%s: out of host memory", what);
}

static void in_flight_free(in_flight *f) {
    free(f->reqs);
    free(f->peer);
}

// Adds to f the receive of s from peer (recv) or its send to peer; an empty span sends nothing.
static void post(dist_comm *c, in_flight *f, bool recv, span s, MPI_Datatype type, int peer,
                 int tag, const char *what) {
    if (s.count == 0) return;
    PETAL_CHECK(s.count < INT32_MAX, "%s: a message of more than 2^31 elements", what);
    if (recv)
        MPI_Irecv(s.data, (int)s.count, type, peer, tag, comm_of(c), &f->reqs[f->m]);
    else
        MPI_Isend(s.data, (int)s.count, type, peer, tag, comm_of(c), &f->reqs[f->m]);
    f->peer[f->m++] = peer;
}

// Posts, with every other rank r at once, the receive of recv[r] from it and the send of send[r]
// to it (spans of `type`), then waits for all of it within the deadline.
static petal_status exchange(dist_comm *c, const span *recv, const span *send, MPI_Datatype type,
                             int tag, const char *what) {
    in_flight f;
    in_flight_init(&f, 2 * (int64_t)c->world_size, what);
    for (int r = 0; r < c->world_size; r++) {
        if (r == c->rank) continue;
        post(c, &f, true, recv[r], type, r, tag, what);
        post(c, &f, false, send[r], type, r, tag, what);
    }
    petal_status st = wait_all(c, f.reqs, f.peer, f.m, what);
    in_flight_free(&f);
    return st;
}

// Rounds of collection in flight at once: while round s is summed, MPI moves the next ones.
#define DEPTH 4

// An all-reduce under way (dist_all_reduce_begin's job). The message (the tensor itself, or the
// tensors packed) is cut into N chunks and each chunk into segments of `seg` elements; segment s
// of every chunk makes round s. In round s, rank k collects segment s of its chunk k from every
// rank (phase 1), sums the copies in rank order and sends the sum to every rank (phase 2). Up to
// DEPTH rounds collect at once, so that messages move while a segment is summed, and a segment
// is summed and sent on while it is still in cache. The rounds change when a sum is formed, never
// what it is: each element is v0 + v1 + ... + v(N-1), left to right, whatever seg or the timing.
typedef struct mpi_job mpi_job;
struct mpi_job {
    dist_comm *c;
    tensor **ts;
    int n;
    dist_op op;
    petal_dtype dtype;
    size_t elem; // bytes per element
    char *own;   // (total) this rank's values, then the results
    bool packed; // own is a copy of the tensors (several of them), else the one tensor's data
    char *in;    // (DEPTH, N - 1, seg) the other ranks' copies of this rank's segments
    int tag;     // phase 1's tag; phase 2's is tag + 1 (this job's own: jobs overlap)
    int64_t total, seg, rounds;
    int64_t posted, summed;   // rounds whose collection was posted, whose sum was sent
    in_flight collect[DEPTH]; // round s's phase 1 transfers in collect[s % DEPTH]
    in_flight share;          // every round's phase 2 transfers
    bool finished;
};

static char *at_element(const mpi_job *j, char *base, int64_t i) {
    return base + (size_t)i * j->elem;
}

// Segment s of chunk k, in own.
static span segment(const mpi_job *j, int k, int64_t s) {
    int world = j->c->world_size;
    int64_t lo = chunk_at(j->total, world, k), len = chunk_at(j->total, world, k + 1) - lo;
    int64_t from = s * j->seg, count = len - from < j->seg ? len - from : j->seg;
    return (span){at_element(j, j->own, lo + from), count > 0 ? count : 0};
}

// Where rank r's copy of this rank's segment of round s comes in.
static char *inbound(const mpi_job *j, int64_t s, int r) {
    int slot = r < j->c->rank ? r : r - 1;
    return at_element(j, j->in, ((s % DEPTH) * (j->c->world_size - 1) + slot) * j->seg);
}

// Phase 1 of round s: every rank's copy of this rank's segment comes in; this rank's copies of
// the others' segments go out.
static void post_collect(mpi_job *j, int64_t s) {
    in_flight *f = &j->collect[s % DEPTH];
    int64_t mine = segment(j, j->c->rank, s).count;
    f->m = 0;
    for (int r = 0; r < j->c->world_size; r++) {
        if (r == j->c->rank) continue;
        post(j->c, f, true, (span){inbound(j, s, r), mine}, mpi_type(j->dtype), r, j->tag,
             "dist_all_reduce");
        post(j->c, f, false, segment(j, r, s), mpi_type(j->dtype), r, j->tag, "dist_all_reduce");
    }
}

// The segment's sum in rank order, in place of this rank's copy, scaled for a mean by the last
// addition. Rank k > 0 first adds ranks 0..k-1 in rank 0's buffer and then adds that to its own
// copy: a + b and b + a are the same bits, so the sum is ((v0 + v1) + ...) + vk as for rank 0.
static void sum_segment(mpi_job *j, int64_t s) {
    int world = j->c->world_size, me = j->c->rank;
    span dst = segment(j, me, s);
    if (dst.count == 0) return;
    double scale = j->op == DIST_AVG ? 1.0 / world : 1.0;
    if (me > 0) {
        char *acc = inbound(j, s, 0);
        for (int r = 1; r < me; r++) add_into(j->dtype, acc, inbound(j, s, r), dst.count, 1);
        add_into(j->dtype, dst.data, acc, dst.count, me == world - 1 ? scale : 1);
    }
    for (int r = me + 1; r < world; r++)
        add_into(j->dtype, dst.data, inbound(j, s, r), dst.count, r == world - 1 ? scale : 1);
}

// Phase 2 of round s: this rank's sum to every rank, theirs into place. The places are free: the
// phase 1 sends from them (this round's) have completed.
static void post_share(mpi_job *j, int64_t s) {
    span mine = segment(j, j->c->rank, s);
    for (int r = 0; r < j->c->world_size; r++) {
        if (r == j->c->rank) continue;
        post(j->c, &j->share, false, mine, mpi_type(j->dtype), r, j->tag + 1, "dist_all_reduce");
        post(j->c, &j->share, true, segment(j, r, s), mpi_type(j->dtype), r, j->tag + 1,
             "dist_all_reduce");
    }
}

static void pack(tensor *const *ts, int n, char *buf, bool into_buffer) {
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)tensor_numel(ts[i]) * dtype_size(ts[i]->dtype);
        if (into_buffer)
            memcpy(buf + at, tensor_data(ts[i]), bytes);
        else
            memcpy(tensor_data(ts[i]), buf + at, bytes);
        at += bytes;
    }
}

// Whether the transfers of f are complete: waits for them (within the deadline) with `block`,
// else tests them once.
static petal_status transfers_done(mpi_job *j, in_flight *f, bool block, bool *done) {
    int all = 0;
    if (block) {
        petal_status st = wait_all(j->c, f->reqs, f->peer, f->m, "dist_all_reduce");
        *done = st == PETAL_OK;
        return st;
    }
    if (MPI_Testall(f->m, f->reqs, &all, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
        j->c->failed = true;
        return petal_error(PETAL_ERR_DEVICE, "dist_all_reduce: rank %d: MPI_Testall failed",
                           j->c->rank);
    }
    *done = all;
    return PETAL_OK;
}

// Moves the job on as far as its messages allow; with `block`, waits for them (within the
// deadline) until the job is finished.
static petal_status advance(mpi_job *j, bool block) {
    while (!j->finished) {
        while (j->posted < j->rounds && j->posted - j->summed < DEPTH) post_collect(j, j->posted++);
        bool done = false;
        in_flight *f = j->summed < j->rounds ? &j->collect[j->summed % DEPTH] : &j->share;
        petal_status st = transfers_done(j, f, block, &done);
        if (st || !done) return st;
        if (j->summed < j->rounds) {
            sum_segment(j, j->summed);
            post_share(j, j->summed++);
        } else {
            if (j->packed) pack(j->ts, j->n, j->own, false);
            j->finished = true;
        }
    }
    return PETAL_OK;
}

// Elements per segment: PETAL_DIST_SEGMENT_KB (default 256) kilobytes.
static int64_t segment_elements(size_t elem) {
    const char *v = getenv("PETAL_DIST_SEGMENT_KB");
    double kb = v ? atof(v) : 256.0;
    if (!(kb > 0)) kb = 256.0;
    int64_t n = (int64_t)(kb * 1024.0 / (double)elem);
    return n < 1 ? 1 : n;
}

static void pending_free(mpi_job *j) {
    if (!j) return;
    for (int d = 0; d < DEPTH; d++) in_flight_free(&j->collect[d]);
    in_flight_free(&j->share);
    free(j->ts);
    if (j->packed) free(j->own);
    free(j->in);
    free(j);
}

// This job's tags: every rank begins the same all-reduces in the same order, so a count of them
// names the job alike on every rank, and an overlapping job's messages never match its receives.
// They repeat after 8192 jobs (the tags stay below 32767, the least MPI_TAG_UB MPI allows), far
// more than are ever in flight at once (a step's buckets).
static int next_tag(dist_comm *c) {
    mpi_state *s = c->impl;
    return TAG_REDUCE + 2 * (int)(s->jobs++ % 8192);
}

static petal_status mpi_all_reduce_begin(dist_comm *c, tensor *const *ts, int n, dist_op op,
                                         void **out) {
    mpi_job *j = calloc(1, sizeof *j);
    PETAL_CHECK(j != NULL, "dist_all_reduce: out of host memory");
    *j = (mpi_job){.c = c, .n = n, .op = op, .dtype = n ? ts[0]->dtype : PETAL_F32};
    j->elem = dtype_size(j->dtype);
    for (int i = 0; i < n; i++) {
        PETAL_CHECK(ts[i]->dtype == j->dtype, "dist_all_reduce: tensor %d is %s, tensor 0 %s", i,
                    dtype_name(ts[i]->dtype), dtype_name(j->dtype));
        j->total += tensor_numel(ts[i]);
    }
    PETAL_CHECK(j->dtype == PETAL_F32 || j->dtype == PETAL_F64 || j->dtype == PETAL_I64,
                "dist_all_reduce: the mpi backend reduces f32, f64 and i64, not %s",
                dtype_name(j->dtype));
    int world = c->world_size;
    int64_t longest = (j->total + world - 1) / world; // the longest chunk
    j->seg = segment_elements(j->elem);
    if (j->seg > longest) j->seg = longest > 0 ? longest : 1; // a small message: one round
    j->rounds = (longest + j->seg - 1) / j->seg;
    j->tag = next_tag(c);
    j->packed = n != 1;
    j->ts = malloc((size_t)(n + 1) * sizeof *j->ts);
    j->own = j->packed ? malloc((size_t)j->total * j->elem + 1) : tensor_data(ts[0]);
    j->in = malloc((size_t)(DEPTH * (world - 1)) * (size_t)j->seg * j->elem + 1);
    PETAL_CHECK(j->ts && j->own && j->in, "dist_all_reduce: out of host memory for %lld elements",
                (long long)j->total);
    for (int d = 0; d < DEPTH; d++) in_flight_init(&j->collect[d], 2 * world, "dist_all_reduce");
    in_flight_init(&j->share, 2 * world * j->rounds, "dist_all_reduce");
    memcpy(j->ts, ts, (size_t)n * sizeof *ts);
    if (j->packed) pack(ts, n, j->own, true);
    petal_status st = advance(j, false);
    if (st) {
        pending_free(j);
        return st;
    }
    *out = j;
    return PETAL_OK;
}

static petal_status mpi_all_reduce_poll(void *job, bool *done) {
    mpi_job *j = job;
    petal_status st = advance(j, false);
    *done = j->finished;
    return st;
}

static petal_status mpi_all_reduce_wait(void *job) {
    mpi_job *j = job;
    petal_status st = advance(j, true);
    pending_free(j);
    return st;
}

static petal_status mpi_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    if (n == 0 || c->world_size == 1) return PETAL_OK;
    void *j;
    petal_status st = mpi_all_reduce_begin(c, ts, n, op, &j);
    return st ? st : mpi_all_reduce_wait(j);
}

petal_status dist_mpi_library_sum(dist_comm *c, tensor *x) {
    PETAL_CHECK(x->dtype == PETAL_F32 && tensor_is_contiguous(x) && tensor_numel(x) < INT32_MAX,
                "dist_mpi_library_sum: a contiguous f32 tensor of fewer than 2^31 elements");
    if (c->be != &mpi_backend)
        return petal_error(PETAL_ERR_ARG,
                           "dist_mpi_library_sum: the communicator's backend is %s, "
                           "not mpi",
                           c->be->name);
    if (MPI_Allreduce(MPI_IN_PLACE, tensor_data(x), (int)tensor_numel(x), MPI_FLOAT, MPI_SUM,
                      comm_of(c)) != MPI_SUCCESS) {
        c->failed = true;
        return petal_error(PETAL_ERR_DEVICE, "dist_mpi_library_sum: rank %d: MPI_Allreduce failed",
                           c->rank);
    }
    return PETAL_OK;
}

// ---- broadcast and all-gather ----

static petal_status mpi_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    span *recv = calloc((size_t)c->world_size, sizeof *recv),
         *send = calloc((size_t)c->world_size, sizeof *send);
    PETAL_CHECK(recv && send, "dist_broadcast: out of host memory");
    petal_status st = PETAL_OK;
    for (int i = 0; i < n && !st; i++) {
        span s = {tensor_data(ts[i]), tensor_numel(ts[i]) * (int64_t)dtype_size(ts[i]->dtype)};
        for (int r = 0; r < c->world_size; r++) {
            send[r] = c->rank == root ? s : (span){0};
            recv[r] = r == root ? s : (span){0};
        }
        st = exchange(c, recv, send, MPI_BYTE, TAG_BCAST, "dist_broadcast");
    }
    free(recv);
    free(send);
    return st;
}

static petal_status mpi_all_gather(dist_comm *c, tensor *x, tensor *out) {
    int64_t bytes = tensor_numel(x) * (int64_t)dtype_size(x->dtype);
    span *recv = malloc((size_t)c->world_size * sizeof *recv),
         *send = malloc((size_t)c->world_size * sizeof *send);
    PETAL_CHECK(recv && send, "dist_all_gather: out of host memory");
    char *dst = tensor_data(out);
    memcpy(dst + (size_t)c->rank * (size_t)bytes, tensor_data(x), (size_t)bytes);
    for (int r = 0; r < c->world_size; r++) {
        recv[r] = (span){dst + (size_t)r * (size_t)bytes, bytes};
        send[r] = (span){tensor_data(x), bytes};
    }
    petal_status st = exchange(c, recv, send, MPI_BYTE, TAG_ALLGATHER, "dist_all_gather");
    free(recv);
    free(send);
    return st;
}

// ---- life cycle ----

static void mpi_free(dist_comm *c) {
    mpi_state *s = c->impl;
    MPI_Comm_free(&s->comm);
    if (s->finalize) MPI_Finalize();
    free(s);
}

static void mpi_abort(dist_comm *c) {
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static const dist_backend mpi_backend = {
    "mpi",     mpi_all_reduce,       mpi_broadcast,       mpi_all_gather,     mpi_free,
    mpi_abort, mpi_all_reduce_begin, mpi_all_reduce_poll, mpi_all_reduce_wait};

petal_status dist_mpi_init(const dist_config *cfg, dist_comm *c) {
    char dev[16];
    if (cfg->device.type != PETAL_CPU)
        return petal_error(PETAL_ERR_ARG,
                           "dist_init: the mpi backend moves CPU tensors; rank %d was given %s "
                           "(PETAL_DIST=nccl for GPUs)",
                           cfg->rank, device_name(cfg->device, dev));
    petal_status st = dist_mpi_start();
    if (st) return st;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != cfg->rank || size != cfg->world_size)
        return petal_error(PETAL_ERR_ARG,
                           "dist_init: MPI says rank %d of %d, the configuration rank %d of %d "
                           "(started by another launcher than the variables name?)",
                           rank, size, cfg->rank, cfg->world_size);
    mpi_state *s = calloc(1, sizeof *s);
    PETAL_CHECK(s != NULL, "dist_init: out of host memory");
    MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
    s->finalize = started_here;
    started_here = false; // the communicator that finalises is this one
    c->be = &mpi_backend;
    c->impl = s;
    return PETAL_OK;
}

petal_status dist_mpi_share(void *bytes, size_t n, int root, double timeout_s) {
    MPI_Request req;
    MPI_Ibcast(bytes, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &req);
    double deadline = dist_now() + timeout_s;
    for (;;) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done) return PETAL_OK;
        if (dist_now() > deadline)
            return petal_error(PETAL_ERR_DEVICE,
                               "dist_init: waited %g s for rank %d's NCCL id over MPI", timeout_s,
                               root);
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
}

#else // a build without MPI

petal_status dist_mpi_library_sum(dist_comm *c, tensor *x) {
    (void)c, (void)x;
    return petal_error(PETAL_ERR_DEVICE, "dist_mpi_library_sum: this petal was built without MPI");
}

petal_status dist_mpi_init(const dist_config *cfg, dist_comm *c) {
    (void)cfg, (void)c;
    return petal_error(PETAL_ERR_DEVICE,
                       "dist_init: this petal was built without MPI (apt-get install "
                       "libopenmpi-dev openmpi-bin and reconfigure), so it cannot run the mpi "
                       "backend");
}

#endif
