// The nccl backend of train/dist.h: GPU tensors, one process per GPU. Collectives of a call run
// as one NCCL group on petal's stream of the device (tensor/cuda), ordered with the kernels that
// make and use the tensors; the host then waits for them with a deadline, polling
// ncclCommGetAsyncError, so that a dead peer or a network error ends in a message and
// ncclCommAbort instead of a stream that never drains.
#include "train/dist_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tensor/backend.h"

#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
#ifdef PETAL_HAVE_MPI
#include <mpi.h>
#endif

#include "tensor/cuda/cuda_backend.h"
#include "train/dist_nccl_lib.h"

static ncclComm_t comm_of(const dist_comm *c) {
    return (ncclComm_t)c->impl;
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

// Waits for the stream with the communicator's deadline, watching for asynchronous errors.
static petal_status drain(dist_comm *c, const char *what) {
    cudaStream_t stream = cuda_device_stream(c->device.index);
    double deadline = dist_now() + c->timeout_s;
    for (;;) {
        cudaError_t e = cudaStreamQuery(stream);
        if (e == cudaSuccess) return PETAL_OK;
        if (e != cudaErrorNotReady) {
            c->failed = true;
            return petal_error(PETAL_ERR_DEVICE, "%s: rank %d: CUDA error %s", what, c->rank,
                               cudaGetErrorString(e));
        }
        ncclResult_t async;
        NCCL_CHECK(dist_nccl.CommGetAsyncError(comm_of(c), &async));
        if (async != ncclSuccess) return nccl_error(c, async, what);
        if (dist_now() > deadline) {
            c->failed = true;
            return petal_error(PETAL_ERR_DEVICE,
                               "%s: rank %d waited %g s for a collective to finish: another rank "
                               "died or hangs (PETAL_DIST_TIMEOUT sets the wait)",
                               what, c->rank, c->timeout_s);
        }
        nanosleep(&(struct timespec){0, 100 * 1000}, NULL);
    }
}

// One NCCL group over the tensors: all_reduce with `op` when root < 0, else broadcast from root.
static petal_status collective(dist_comm *c, const char *name, tensor *const *ts, int n,
                               ncclRedOp_t op, int root) {
    cudaStream_t stream = cuda_device_stream(c->device.index);
    NCCL_CHECK(dist_nccl.GroupStart());
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < n && r == ncclSuccess; i++) {
        void *p = data_of(ts[i]);
        size_t count = (size_t)tensor_numel(ts[i]);
        r = root < 0 ? dist_nccl.AllReduce(p, p, count, nccl_type(ts[i]), op, comm_of(c), stream)
                     : dist_nccl.Broadcast(p, p, count, nccl_type(ts[i]), root, comm_of(c), stream);
    }
    ncclResult_t end = dist_nccl.GroupEnd();
    if (r == ncclSuccess) r = end;
    if (r != ncclSuccess) return nccl_error(c, r, name);
    return drain(c, name);
}

static petal_status nccl_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    return collective(c, "dist_all_reduce", ts, n, op == DIST_AVG ? ncclAvg : ncclSum, -1);
}

static petal_status nccl_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    return collective(c, "dist_broadcast", ts, n, ncclSum, root);
}

static petal_status nccl_all_gather(dist_comm *c, tensor *x, tensor *out) {
    cudaStream_t stream = cuda_device_stream(c->device.index);
    ncclResult_t r = dist_nccl.AllGather(data_of(x), data_of(out), (size_t)tensor_numel(x),
                                         nccl_type(x), comm_of(c), stream);
    if (r != ncclSuccess) return nccl_error(c, r, "dist_all_gather");
    return drain(c, "dist_all_gather");
}

static void nccl_free(dist_comm *c) {
    NCCL_CHECK(dist_nccl.CommDestroy(comm_of(c)));
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

// No split all-reduce yet: dist_all_reduce_begin runs it whole (the stream would let it overlap).
static const dist_backend nccl_backend = {
    "nccl", nccl_all_reduce, nccl_broadcast, nccl_all_gather, nccl_free, nccl_abort, NULL, NULL,
    NULL};

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
    cuda_device_stream(cfg->device.index); // makes the device current for NCCL
    ncclComm_t comm;
    ncclResult_t r = dist_nccl.CommInitRank(&comm, cfg->world_size, id, cfg->rank);
#ifndef PETAL_HAVE_MPI
    // Every rank has read the file once any rank's init returns: it has served its purpose.
    if (cfg->rank == 0) unlink(cfg->id_file);
#endif
    if (r != ncclSuccess) return nccl_error(NULL, r, "dist_init: ncclCommInitRank");
    c->be = &nccl_backend;
    c->impl = comm;
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
