#include "train/dist.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tensor/backend.h"

#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
#include <nccl.h>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/cuda_check.h"
#endif

// ---- configuration from the launcher ----

typedef struct {
    const char *rank, *size, *local_rank;
} launcher_vars;

static const launcher_vars launchers[] = {
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"RANK", "WORLD_SIZE", "LOCAL_RANK"},
};

static petal_status env_int(const char *name, const char *family, int *out) {
    const char *v = getenv(name);
    if (!v)
        return petal_error(PETAL_ERR_ARG,
                           "dist_config_from_env: %s is set but %s is not (set it, or fill "
                           "dist_config yourself)",
                           family, name);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < 0 || x > 1 << 24)
        return petal_error(PETAL_ERR_ARG,
                           "dist_config_from_env: %s='%s', expected a non-negative integer", name,
                           v);
    *out = (int)x;
    return PETAL_OK;
}

petal_status dist_config_from_env(const char *id_file, dist_config *cfg) {
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        const launcher_vars *l = &launchers[i];
        if (!getenv(l->rank)) continue;
        int rank, size, local;
        petal_status st;
        if ((st = env_int(l->rank, l->rank, &rank)) || (st = env_int(l->size, l->rank, &size)) ||
            (st = env_int(l->local_rank, l->rank, &local)))
            return st;
        if (rank >= size)
            return petal_error(PETAL_ERR_ARG, "dist_config_from_env: %s=%d is not below %s=%d",
                               l->rank, rank, l->size, size);
        *cfg = (dist_config){rank, size, DEVICE_CUDA(local), id_file, DIST_TIMEOUT_DEFAULT};
        return PETAL_OK;
    }
    return petal_error(PETAL_ERR_ARG,
                       "dist_config_from_env: no launcher variables found (looked for "
                       "OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID and RANK)");
}

// ---- the rendezvous file: magic, world size, id length, id ----

#define ID_MAGIC "PETALID1"

typedef struct {
    char magic[8];
    uint32_t world_size, n;
} id_header;

petal_status dist_id_write(const char *path, const void *id, size_t n, int world_size) {
    if (access(path, F_OK) == 0)
        return petal_error(PETAL_ERR_IO,
                           "rendezvous file '%s' already exists (left by an earlier run?): "
                           "remove it, or give this run its own path",
                           path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return petal_error(PETAL_ERR_ARG, "rendezvous file path '%s' is too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    id_header h = {ID_MAGIC, (uint32_t)world_size, (uint32_t)n};
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(id, 1, n, f) == n && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    // The rename makes the whole file appear at once: a reader never sees part of it.
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return petal_error(PETAL_ERR_IO, "cannot write rendezvous file '%s': %s", path,
                           strerror(err));
    }
    return PETAL_OK;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static petal_status wait_for(const char *path, double timeout_s) {
    double deadline = now_s() + timeout_s;
    struct stat st;
    while (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return petal_error(PETAL_ERR_IO, "cannot stat rendezvous file '%s': %s", path,
                               strerror(errno));
        if (now_s() > deadline)
            return petal_error(PETAL_ERR_IO,
                               "waited %g s for rendezvous file '%s', which rank 0 writes: is "
                               "rank 0 running, with the same path on a file system both see?",
                               timeout_s, path);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    return PETAL_OK;
}

petal_status dist_id_read(const char *path, void *id, size_t n, int world_size, double timeout_s) {
    petal_status st = wait_for(path, timeout_s);
    if (st) return st;
    FILE *f = fopen(path, "rb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    id_header h;
    bool whole = fread(&h, sizeof h, 1, f) == 1;
    if (whole && memcmp(h.magic, ID_MAGIC, sizeof h.magic) == 0 && h.n == n)
        whole = fread(id, 1, n, f) == n;
    fclose(f);
    if (!whole || memcmp(h.magic, ID_MAGIC, sizeof h.magic) != 0)
        return petal_error(PETAL_ERR_FORMAT,
                           "'%s' is not a petal rendezvous file (expected magic '" ID_MAGIC
                           "' and a %zu-byte id; truncated or another program's file?)",
                           path, n);
    if (h.n != n)
        return petal_error(PETAL_ERR_FORMAT, "'%s' holds a %u-byte id, expected %zu bytes", path,
                           h.n, n);
    if (h.world_size != (uint32_t)world_size)
        return petal_error(PETAL_ERR_FORMAT,
                           "'%s' was written for %u ranks but this rank expects %d (world size)",
                           path, h.world_size, world_size);
    return PETAL_OK;
}

// ---- communicators ----

#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)

struct dist_comm {
    ncclComm_t comm;
    int rank, world_size;
    petal_device device;
    bool failed; // a collective returned an error: finalising could hang, abort instead
};

static petal_status nccl_error(ncclResult_t r, ncclComm_t comm, const char *what) {
    return petal_error(PETAL_ERR_DEVICE, "%s: NCCL error: %s (%s)", what, ncclGetErrorString(r),
                       ncclGetLastError(comm));
}

static petal_status check_config(const dist_config *cfg) {
    char dev[16];
    if (cfg->world_size < 1 || cfg->rank < 0 || cfg->rank >= cfg->world_size)
        return petal_error(PETAL_ERR_ARG, "dist_init: rank %d is outside a world of %d rank(s)",
                           cfg->rank, cfg->world_size);
    if (!cfg->id_file || !cfg->id_file[0])
        return petal_error(PETAL_ERR_ARG, "dist_init: no rendezvous file (dist_config.id_file)");
    if (!(cfg->timeout_s > 0))
        return petal_error(PETAL_ERR_ARG, "dist_init: timeout_s %g, expected > 0", cfg->timeout_s);
    if (cfg->device.type != PETAL_CUDA)
        return petal_error(PETAL_ERR_ARG, "dist_init: rank %d was given %s; NCCL needs a GPU",
                           cfg->rank, device_name(cfg->device, dev));
    int count = cuda_device_count();
    if (cfg->device.index >= count)
        return petal_error(PETAL_ERR_DEVICE,
                           "dist_init: rank %d wants cuda:%d but %d CUDA device(s) are present",
                           cfg->rank, cfg->device.index, count);
    return PETAL_OK;
}

// Rank 0 makes the id and publishes it; the others read it.
static petal_status exchange_id(const dist_config *cfg, ncclUniqueId *id) {
    if (cfg->rank != 0)
        return dist_id_read(cfg->id_file, id, sizeof *id, cfg->world_size, cfg->timeout_s);
    ncclResult_t r = ncclGetUniqueId(id);
    if (r != ncclSuccess) return nccl_error(r, NULL, "dist_init: ncclGetUniqueId");
    return dist_id_write(cfg->id_file, id, sizeof *id, cfg->world_size);
}

petal_status dist_init(const dist_config *cfg, dist_comm **out) {
    *out = NULL;
    petal_status st = check_config(cfg);
    ncclUniqueId id;
    if (st || (st = exchange_id(cfg, &id))) return st;
    cuda_device_stream(cfg->device.index); // makes the device current for NCCL
    ncclComm_t comm;
    ncclResult_t r = ncclCommInitRank(&comm, cfg->world_size, id, cfg->rank);
    // Every rank has read the file once any rank's init returns: it has served its purpose.
    if (cfg->rank == 0) unlink(cfg->id_file);
    if (r != ncclSuccess) return nccl_error(r, NULL, "dist_init: ncclCommInitRank");
    dist_comm *c = calloc(1, sizeof *c);
    PETAL_CHECK(c != NULL, "dist_init: out of host memory");
    *c = (dist_comm){comm, cfg->rank, cfg->world_size, cfg->device, false};
    *out = c;
    return PETAL_OK;
}

void dist_free(dist_comm *c) {
    if (!c) return;
    if (c->failed)
        NCCL_CHECK(ncclCommAbort(c->comm));
    else
        NCCL_CHECK(ncclCommDestroy(c->comm));
    free(c);
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

static void check_tensor(const char *op, const dist_comm *c, const tensor *t, int i) {
    char a[16], b[16];
    PETAL_CHECK(device_equal(t->device, c->device),
                "%s: tensor %d is on %s, the communicator on %s", op, i, device_name(t->device, a),
                device_name(c->device, b));
    PETAL_CHECK(tensor_is_contiguous(t), "%s: tensor %d is not contiguous", op, i);
}

// One NCCL group over the tensors: all_reduce with `op` when root < 0, else broadcast from root.
static petal_status collective(dist_comm *c, const char *name, tensor *const *ts, int n,
                               ncclRedOp_t op, int root) {
    for (int i = 0; i < n; i++) check_tensor(name, c, ts[i], i);
    cudaStream_t stream = cuda_device_stream(c->device.index);
    NCCL_CHECK(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < n && r == ncclSuccess; i++) {
        void *p = (char *)ts[i]->storage->data + ts[i]->offset * (int64_t)dtype_size(ts[i]->dtype);
        size_t count = (size_t)tensor_numel(ts[i]);
        r = root < 0 ? ncclAllReduce(p, p, count, nccl_type(ts[i]), op, c->comm, stream)
                     : ncclBroadcast(p, p, count, nccl_type(ts[i]), root, c->comm, stream);
    }
    ncclResult_t end = ncclGroupEnd();
    if (r == ncclSuccess) r = end;
    if (r == ncclSuccess) return PETAL_OK;
    c->failed = true;
    return nccl_error(r, c->comm, name);
}

petal_status dist_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    return collective(c, "dist_all_reduce", ts, n, op == DIST_AVG ? ncclAvg : ncclSum, -1);
}

petal_status dist_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    PETAL_CHECK(root >= 0 && root < c->world_size, "dist_broadcast: root %d of %d ranks", root,
                c->world_size);
    return collective(c, "dist_broadcast", ts, n, ncclSum, root);
}

#else // a build without CUDA or NCCL: the communicator functions say so

struct dist_comm {
    int rank, world_size;
};

static petal_status no_nccl(const char *fn) {
#ifdef PETAL_HAVE_CUDA
    const char *why = "without NCCL (install NCCL where CMake finds it and reconfigure)";
#else
    const char *why = "without CUDA (configure with -DPETAL_CUDA=ON on a machine with nvcc)";
#endif
    return petal_error(PETAL_ERR_DEVICE, "%s: this petal was built %s", fn, why);
}

petal_status dist_init(const dist_config *cfg, dist_comm **out) {
    (void)cfg;
    *out = NULL;
    return no_nccl("dist_init");
}

void dist_free(dist_comm *c) {
    free(c);
}

petal_status dist_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    (void)c, (void)ts, (void)n, (void)op;
    return no_nccl("dist_all_reduce");
}

petal_status dist_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    (void)c, (void)ts, (void)n, (void)root;
    return no_nccl("dist_broadcast");
}

#endif

int dist_rank(const dist_comm *c) {
    return c->rank;
}

int dist_world_size(const dist_comm *c) {
    return c->world_size;
}
