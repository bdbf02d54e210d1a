// The mpi backend of train/dist.h: CPU tensors over MPI point-to-point messages on a communicator
// of its own (a duplicate of MPI_COMM_WORLD, so a program's own MPI traffic never meets petal's).
//
// All-reduce, for a world of N ranks, on the tensors packed into one buffer and taken in buckets:
// the bucket is cut into N chunks; rank k collects chunk k from every rank and sums the copies in
// rank order (a reduce-scatter), then sends the sum to every rank (an all-gather). The order of
// the additions is fixed by the ranks, not by message timing or MPI's algorithm choice, so every
// rank ends with the same bits and a rerun repeats them. Each rank sends and receives 2 (N - 1) / N
// of the data, as a ring does, in N - 1 messages per phase: meant for the tens of ranks of CPU
// data parallelism, not thousands.
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

enum { TAG_SCATTER = 11, TAG_GATHER, TAG_BCAST, TAG_ALLGATHER };

typedef struct {
    MPI_Comm comm;
    bool finalize; // petal started MPI, so petal ends it
} mpi_state;

static bool started_here;

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

// dst[i] += src[i] for n elements of the job's dtype.
static void add_into(petal_dtype t, void *dst, const void *src, int64_t n) {
    if (t == PETAL_F32)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
    else if (t == PETAL_F64)
        for (int64_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
    else
        for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] += ((const int64_t *)src)[i];
}

static void scale(petal_dtype t, void *p, int64_t n, double s) {
    if (t == PETAL_F32)
        for (int64_t i = 0; i < n; i++) ((float *)p)[i] = (float)(((float *)p)[i] * s);
    else if (t == PETAL_F64)
        for (int64_t i = 0; i < n; i++) ((double *)p)[i] *= s;
}

// Chunk k of a bucket of n elements: [k n / N, (k + 1) n / N).
static int64_t chunk_at(int64_t n, int world, int k) {
    return n * k / world;
}

typedef struct {
    void *data;
    int64_t count; // elements; 0: no message
} span;

// The messages of one exchange in flight: the requests and the rank at the other end of each.
typedef struct {
    MPI_Request *reqs;
    int *peer;
    int m;
} in_flight;

static void in_flight_init(in_flight *f, int world, const char *what) {
    f->reqs = malloc(2 * (size_t)world * sizeof *f->reqs);
    f->peer = malloc(2 * (size_t)world * sizeof *f->peer);
    f->m = 0;
    PETAL_CHECK(f->reqs && f->peer, "%s: out of host memory", what);
}

static void in_flight_free(in_flight *f) {
    free(f->reqs);
    free(f->peer);
}

// Posts, with every other rank r at once, the receive of recv[r] from it and the send of send[r]
// to it (spans of `type`).
static void exchange_post(dist_comm *c, const span *recv, const span *send, MPI_Datatype type,
                          int tag, in_flight *f, const char *what) {
    f->m = 0;
    for (int r = 0; r < c->world_size; r++) {
        if (r == c->rank) continue;
        PETAL_CHECK(recv[r].count < INT32_MAX && send[r].count < INT32_MAX,
                    "%s: a message of more than 2^31 elements", what);
        if (recv[r].count > 0) {
            MPI_Irecv(recv[r].data, (int)recv[r].count, type, r, tag, comm_of(c), &f->reqs[f->m]);
            f->peer[f->m++] = r;
        }
        if (send[r].count > 0) {
            MPI_Isend(send[r].data, (int)send[r].count, type, r, tag, comm_of(c), &f->reqs[f->m]);
            f->peer[f->m++] = r;
        }
    }
}

// exchange_post, then the wait for all of it within the deadline.
static petal_status exchange(dist_comm *c, const span *recv, const span *send, MPI_Datatype type,
                             int tag, const char *what) {
    in_flight f;
    in_flight_init(&f, c->world_size, what);
    exchange_post(c, recv, send, type, tag, &f, what);
    petal_status st = wait_all(c, f.reqs, f.peer, f.m, what);
    in_flight_free(&f);
    return st;
}

// An all-reduce under way (dist_all_reduce_begin's job): the tensors packed into `own`, taken
// bucket after bucket, each in two exchanges (phase 1 collects every rank's copy of this rank's
// chunk, phase 2 shares the sums).
typedef struct mpi_job mpi_job;
struct mpi_job {
    dist_comm *c;
    tensor **ts;
    int n;
    dist_op op;
    petal_dtype dtype;
    size_t elem; // bytes per element
    char *own;   // (total) this rank's values, packed, then the results
    char *in;    // (N - 1, chunk) the other ranks' copies of this rank's chunk
    char *keep;  // (chunk) this rank's own copy while the sum is formed
    int64_t total, bucket;
    int64_t at, len; // the bucket under way
    int phase;       // 0: next bucket to start, 1: collecting, 2: sharing, 3: finished
    span *recv, *send;
    in_flight f;
};

static char *at_element(const mpi_job *j, char *base, int64_t i) {
    return base + (size_t)i * j->elem;
}

// Phase 1's messages for the bucket at j->at: every rank's copy of this rank's chunk comes in
// (other ranks' into j->in, in rank order); this rank's copies of the others' chunks go out.
static void post_collect(mpi_job *j) {
    int world = j->c->world_size, me = j->c->rank;
    int64_t n = j->len, lo = chunk_at(n, world, me), mine = chunk_at(n, world, me + 1) - lo;
    for (int r = 0, slot = 0; r < world; r++) {
        int64_t rlo = chunk_at(n, world, r);
        j->recv[r] =
            r == me ? (span){0} : (span){at_element(j, j->in, (int64_t)slot++ * mine), mine};
        j->send[r] = (span){at_element(j, j->own, j->at + rlo), chunk_at(n, world, r + 1) - rlo};
    }
    exchange_post(j->c, j->recv, j->send, mpi_type(j->dtype), TAG_SCATTER, &j->f,
                  "dist_all_reduce");
}

// The chunk's sum in rank order: rank 0's copy + rank 1's + ..., this rank's own in its place.
static void sum_chunk(mpi_job *j) {
    int world = j->c->world_size, me = j->c->rank;
    int64_t lo = chunk_at(j->len, world, me), mine = chunk_at(j->len, world, me + 1) - lo;
    char *sum = at_element(j, j->own, j->at + lo);
    memcpy(j->keep, sum, (size_t)mine * j->elem);
    memcpy(sum, me == 0 ? j->keep : j->recv[0].data, (size_t)mine * j->elem);
    for (int r = 1; r < world; r++)
        add_into(j->dtype, sum, r == me ? j->keep : j->recv[r].data, mine);
}

// Phase 2's messages: this rank's summed chunk to every rank, theirs into place.
static void post_share(mpi_job *j) {
    int world = j->c->world_size, me = j->c->rank;
    int64_t n = j->len, lo = chunk_at(n, world, me), mine = chunk_at(n, world, me + 1) - lo;
    for (int r = 0; r < world; r++) {
        int64_t rlo = chunk_at(n, world, r);
        j->recv[r] = (span){at_element(j, j->own, j->at + rlo), chunk_at(n, world, r + 1) - rlo};
        j->send[r] = (span){at_element(j, j->own, j->at + lo), mine};
    }
    exchange_post(j->c, j->recv, j->send, mpi_type(j->dtype), TAG_GATHER, &j->f, "dist_all_reduce");
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

// Moves the job on as far as its messages allow; with `block`, waits for each exchange (within
// the deadline) until the job is finished.
static petal_status advance(mpi_job *j, bool block) {
    for (;;) {
        if (j->phase == 0) {
            if (j->at >= j->total) {
                if (j->op == DIST_AVG) scale(j->dtype, j->own, j->total, 1.0 / j->c->world_size);
                pack(j->ts, j->n, j->own, false);
                j->phase = 3;
            } else {
                j->len = j->total - j->at < j->bucket ? j->total - j->at : j->bucket;
                post_collect(j);
                j->phase = 1;
            }
        }
        if (j->phase == 3) return PETAL_OK;
        int done = 0;
        if (block) {
            petal_status st = wait_all(j->c, j->f.reqs, j->f.peer, j->f.m, "dist_all_reduce");
            if (st) return st;
            done = 1;
        } else if (MPI_Testall(j->f.m, j->f.reqs, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            j->c->failed = true;
            return petal_error(PETAL_ERR_DEVICE, "dist_all_reduce: rank %d: MPI_Testall failed",
                               j->c->rank);
        }
        if (!done) return PETAL_OK;
        if (j->phase == 1) {
            sum_chunk(j);
            post_share(j);
            j->phase = 2;
        } else {
            j->at += j->bucket;
            j->phase = 0;
        }
    }
}

static int64_t bucket_elements(size_t elem) {
    const char *v = getenv("PETAL_DIST_BUCKET_MB");
    double mb = v ? atof(v) : 25.0;
    if (!(mb > 0)) mb = 25.0;
    int64_t n = (int64_t)(mb * 1048576.0 / (double)elem);
    return n < 1024 ? 1024 : n;
}

static void pending_free(mpi_job *j) {
    if (!j) return;
    in_flight_free(&j->f);
    free(j->ts);
    free(j->own);
    free(j->in);
    free(j->keep);
    free(j->recv);
    free(j->send);
    free(j);
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
    j->bucket = bucket_elements(j->elem);
    size_t chunk = (size_t)(j->bucket / world + 1) * j->elem;
    j->ts = malloc((size_t)(n + 1) * sizeof *j->ts);
    j->own = malloc((size_t)j->total * j->elem + 1);
    j->in = malloc((size_t)(world - 1) * chunk + 1);
    j->keep = malloc(chunk);
    j->recv = malloc((size_t)world * sizeof *j->recv);
    j->send = malloc((size_t)world * sizeof *j->send);
    PETAL_CHECK(j->ts && j->own && j->in && j->keep && j->recv && j->send,
                "dist_all_reduce: out of host memory for %lld elements", (long long)j->total);
    in_flight_init(&j->f, world, "dist_all_reduce");
    memcpy(j->ts, ts, (size_t)n * sizeof *ts);
    pack(ts, n, j->own, true);
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
    petal_status st = j->phase == 3 ? PETAL_OK : advance(j, false);
    *done = j->phase == 3;
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

petal_status dist_mpi_init(const dist_config *cfg, dist_comm *c) {
    (void)cfg, (void)c;
    return petal_error(PETAL_ERR_DEVICE,
                       "dist_init: this petal was built without MPI (apt-get install "
                       "libopenmpi-dev openmpi-bin and reconfigure), so it cannot run the mpi "
                       "backend");
}

#endif
