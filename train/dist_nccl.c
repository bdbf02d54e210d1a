// The nccl backend of train/dist.h: GPU tensors, one process per GPU. Every collective of a
// communicator runs on its own stream (the communication stream), one NCCL group per call, as
// PyTorch's DDP does: an event recorded on petal's stream of the device (tensor/cuda, the compute
// stream) after the kernels that wrote the tensors, the communication stream waiting for it, the
// collective, and an event after it that the compute stream's later work waits for. So an
// all-reduce begun during the backward pass (dist_all_reduce_begin) runs beside the kernels that
// go on computing the other gradients. Finishing one (wait, and every blocking call) also has the
// host wait for it with a deadline, polling ncclCommGetAsyncError, so that a dead peer or a
// network error ends in a message and ncclCommAbort instead of a stream that never drains. One
// stream for all of a communicator's collectives keeps them in the order every rank issued them.
#include "train/dist_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensor/backend.h"
#include "tensor/storage.h"

#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
#ifdef PETAL_HAVE_MPI
#include <mpi.h>
#endif

#include "tensor/cuda/cuda_backend.h"
#include "train/dist_nccl_lib.h"

// The communicator: NCCL's, and the stream every one of its collectives runs on.
typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
} nccl_state;

static ncclComm_t comm_of(const dist_comm *c) {
    return ((const nccl_state *)c->impl)->comm;
}

static petal_status nccl_error(dist_comm *c, ncclResult_t r, const char *what) {
    if (c) c->failed = true;
    return petal_error(PETAL_ERR_DEVICE, "%s: NCCL error: %s (%s)", what,
                       dist_nccl.GetErrorString(r), c ? dist_nccl.GetLastError(comm_of(c)) : "");
}

static ncclDataType_t nccl_type(const tensor *t) {
    switch (t->dtype) {
    case PETAL_F32:
        return ncclFloat32;
    case PETAL_F64:
        return ncclFloat64;
    case PETAL_I32:
        return ncclInt32;
    case PETAL_I64:
        return ncclInt64;
    case PETAL_F16:
        return ncclFloat16;
    case PETAL_BF16:
        return ncclBfloat16;
    default:
        break;
    }
    PETAL_CHECK(0, "dist: dtype %s has no NCCL type", dtype_name(t->dtype));
}

static void *data_of(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

// A collective under way on the communicator's stream. Its buffers' storages are held until it is
// over: a tensor freed meanwhile must not give its block (tensor/block_cache.h) to the compute
// stream's next allocation while the communication stream still reads or writes it.
typedef struct {
    dist_comm *c;
    const char *what;
    cudaEvent_t ready, done; // the compute stream before it; the communication stream after it
    tensor_storage **held;   // (n_held)
    int n_held;
    double deadline; // the communicator's timeout, from the collective's start
} nccl_job;

static cudaEvent_t event_new(void) {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
}

static void job_free(nccl_job *j) {
    for (int i = 0; i < j->n_held; i++) storage_release(j->held[i]);
    CUDA_CHECK(cudaEventDestroy(j->ready));
    CUDA_CHECK(cudaEventDestroy(j->done));
    free(j->held);
    free(j);
}

// Whether the job is over: cudaEventQuery's answer e, else NCCL's asynchronous error or the
// deadline, each of which fails the communicator.
static petal_status job_progress(nccl_job *j, cudaError_t e, bool *done) {
    dist_comm *c = j->c;
    *done = e == cudaSuccess;
    if (*done) return PETAL_OK;
    if (e != cudaErrorNotReady) {
        c->failed = true;
        return petal_error(PETAL_ERR_DEVICE, "%s: rank %d: CUDA error %s", j->what, c->rank,
                           cudaGetErrorString(e));
    }
    ncclResult_t async;
    NCCL_CHECK(dist_nccl.CommGetAsyncError(comm_of(c), &async));
    if (async != ncclSuccess) return nccl_error(c, async, j->what);
    if (dist_now() > j->deadline) {
        c->failed = true;
        return petal_error(PETAL_ERR_DEVICE,
                           "%s: rank %d waited %g s for a collective to finish: another rank "
                           "died or hangs (PETAL_DIST_TIMEOUT sets the wait)",
                           j->what, c->rank, c->timeout_s);
    }
    return PETAL_OK;
}

// Queues a collective over ts (the tensors of an all-reduce with `op` when root < 0 and gathered
// is NULL, of a broadcast from root, or the one tensor gathered into `gathered`) on the
// communicator's stream, as one NCCL group, after the work the compute stream has queued so far
// (which wrote the tensors).
static petal_status launch(dist_comm *c, const char *what, tensor *const *ts, int n,
                           tensor *gathered, ncclRedOp_t op, int root, nccl_job **out) {
    nccl_state *s = c->impl;
    nccl_job *j = calloc(1, sizeof *j);
    PETAL_CHECK(j != NULL, "%s: out of host memory", what);
    *j = (nccl_job){.c = c, .what = what, .ready = event_new(), .done = event_new()};
    j->held = malloc((size_t)(n + 1) * sizeof *j->held);
    PETAL_CHECK(j->held != NULL, "%s: out of host memory", what);
    for (int i = 0; i < n + (gathered != NULL); i++) {
        j->held[i] = i < n ? ts[i]->storage : gathered->storage;
        storage_retain(j->held[i]);
        j->n_held++;
    }
    CUDA_CHECK(cudaEventRecord(j->ready, cuda_device_stream(c->device.index)));
    CUDA_CHECK(cudaStreamWaitEvent(s->stream, j->ready, 0));
    NCCL_CHECK(dist_nccl.GroupStart());
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < n && r == ncclSuccess; i++) {
        void *p = data_of(ts[i]);
        size_t count = (size_t)tensor_numel(ts[i]);
        ncclDataType_t type = nccl_type(ts[i]);
        if (gathered)
            r = dist_nccl.AllGather(p, data_of(gathered), count, type, s->comm, s->stream);
        else if (root >= 0)
            r = dist_nccl.Broadcast(p, p, count, type, root, s->comm, s->stream);
        else
            r = dist_nccl.AllReduce(p, p, count, type, op, s->comm, s->stream);
    }
    ncclResult_t end = dist_nccl.GroupEnd();
    if (r == ncclSuccess) r = end;
    CUDA_CHECK(cudaEventRecord(j->done, s->stream));
    j->deadline = dist_now() + c->timeout_s;
    if (r != ncclSuccess) {
        job_free(j);
        return nccl_error(c, r, what);
    }
    *out = j;
    return PETAL_OK;
}

static petal_status nccl_all_reduce_begin(dist_comm *c, tensor *const *ts, int n, dist_op op,
                                          void **job) {
    return launch(c, "dist_all_reduce", ts, n, NULL, op == DIST_AVG ? ncclAvg : ncclSum, -1,
                  (nccl_job **)job);
}

static petal_status nccl_all_reduce_poll(void *job, bool *done) {
    nccl_job *j = job;
    return job_progress(j, cudaEventQuery(j->done), done);
}

// The compute stream's later work waits for the collective on the device; the host waits too,
// polling, so that a dead or hung peer ends in the deadline's message here instead of in a copy
// to the host that never returns (petal has no watchdog thread to watch for it). Frees the job.
static petal_status job_finish(nccl_job *j) {
    CUDA_CHECK(cudaStreamWaitEvent(cuda_device_stream(j->c->device.index), j->done, 0));
    bool done = false;
    petal_status st;
    while (!(st = job_progress(j, cudaEventQuery(j->done), &done)) && !done)
        nanosleep(&(struct timespec){0, 100 * 1000}, NULL);
    job_free(j);
    return st;
}

static petal_status nccl_all_reduce_wait(void *job) {
    return job_finish(job);
}

static petal_status nccl_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    void *j;
    petal_status st = nccl_all_reduce_begin(c, ts, n, op, &j);
    return st ? st : job_finish(j);
}

static petal_status nccl_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    nccl_job *j;
    petal_status st = launch(c, "dist_broadcast", ts, n, NULL, ncclSum, root, &j);
    return st ? st : job_finish(j);
}

static petal_status nccl_all_gather(dist_comm *c, tensor *x, tensor *out) {
    nccl_job *j;
    petal_status st = launch(c, "dist_all_gather", &x, 1, out, ncclSum, -1, &j);
    return st ? st : job_finish(j);
}

static void nccl_free(dist_comm *c) {
    nccl_state *s = c->impl;
    NCCL_CHECK(dist_nccl.CommDestroy(s->comm));
    CUDA_CHECK(cudaStreamDestroy(s->stream));
    free(s);
#ifdef PETAL_HAVE_MPI
    dist_mpi_finish(); // MPI carried the id (exchange_id)
#endif
}

static void nccl_abort(dist_comm *c) {
    dist_nccl.CommAbort(comm_of(c));
#ifdef PETAL_HAVE_MPI
    int ready = 0;
    MPI_Initialized(&ready);
    if (ready) MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    exit(1);
}

static const dist_backend nccl_backend = {
    "nccl",     nccl_all_reduce,       nccl_broadcast,       nccl_all_gather,     nccl_free,
    nccl_abort, nccl_all_reduce_begin, nccl_all_reduce_poll, nccl_all_reduce_wait};

static petal_status check_config(const dist_config *cfg) {
    char dev[16];
    if (cfg->device.type != PETAL_CUDA)
        return petal_error(PETAL_ERR_ARG, "dist_init: rank %d was given %s; NCCL needs a GPU",
                           cfg->rank, device_name(cfg->device, dev));
    int count = cuda_device_count();
    if (cfg->device.index >= count)
        return petal_error(PETAL_ERR_DEVICE,
                           "dist_init: rank %d wants cuda:%d but %d CUDA device(s) are present",
                           cfg->rank, cfg->device.index, count);
#ifndef PETAL_HAVE_MPI
    if (!cfg->id_file || !cfg->id_file[0])
        return petal_error(PETAL_ERR_ARG,
                           "dist_init: no rendezvous file (dist_config.id_file), which a build "
                           "without MPI needs to pass the NCCL id");
#endif
    return PETAL_OK;
}

// Rank 0 makes the id; MPI carries it when built in, else the rendezvous file. A world of one rank
// has no one to tell, and starts no MPI.
static petal_status exchange_id(const dist_config *cfg, ncclUniqueId *id) {
    if (cfg->rank == 0) {
        ncclResult_t r = dist_nccl.GetUniqueId(id);
        if (r != ncclSuccess) return nccl_error(NULL, r, "dist_init: ncclGetUniqueId");
    }
    if (cfg->world_size == 1) return PETAL_OK;
#ifdef PETAL_HAVE_MPI
    petal_status st = dist_mpi_start();
    return st ? st : dist_mpi_share(id, sizeof *id, 0, cfg->timeout_s);
#else
    if (cfg->rank != 0)
        return dist_id_read(cfg->id_file, id, sizeof *id, cfg->world_size, cfg->job,
                            cfg->timeout_s);
    return dist_id_write(cfg->id_file, id, sizeof *id, cfg->world_size, cfg->job);
#endif
}

petal_status dist_nccl_init(const dist_config *cfg, dist_comm *c) {
    petal_status st = check_config(cfg);
    ncclUniqueId id;
    // The first nccl communicator of the process opens NCCL.
    if (st || (st = dist_nccl_lib_load()) || (st = exchange_id(cfg, &id))) return st;
    cuda_device_stream(cfg->device.index); // makes the device current for NCCL and the stream
    nccl_state *s = calloc(1, sizeof *s);
    PETAL_CHECK(s != NULL, "dist_init: out of host memory");
    ncclResult_t r = dist_nccl.CommInitRank(&s->comm, cfg->world_size, id, cfg->rank);
#ifndef PETAL_HAVE_MPI
    // Every rank has read the file once any rank's init returns: it has served its purpose.
    if (cfg->rank == 0) unlink(cfg->id_file);
#endif
    if (r != ncclSuccess) {
        free(s);
        return nccl_error(NULL, r, "dist_init: ncclCommInitRank");
    }
    // Its own stream, as PyTorch's process groups have: collectives run beside the compute
    // stream's kernels (the backward pass) instead of in line with them.
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    c->be = &nccl_backend;
    c->impl = s;
    return PETAL_OK;
}

#else // a build without CUDA or NCCL

petal_status dist_nccl_init(const dist_config *cfg, dist_comm *c) {
    (void)cfg, (void)c;
#ifdef PETAL_HAVE_CUDA
    const char *why = "without NCCL (install NCCL's header, nccl.h, where CMake finds it and "
                      "reconfigure)";
#else
    const char *why = "without CUDA (configure with -DPETAL_CUDA=ON on a machine with nvcc)";
#endif
    return petal_error(PETAL_ERR_DEVICE,
                       "dist_init: this petal was built %s, so it cannot run the nccl backend",
                       why);
}

#endif
