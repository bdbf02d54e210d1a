#include "train/dist.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "tensor/backend.h"
#include "train/dist_backend.h"

double dist_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

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

static petal_status launcher_ranks(dist_config *cfg, int *local) {
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        const launcher_vars *l = &launchers[i];
        if (!getenv(l->rank)) continue;
        petal_status st;
        if ((st = env_int(l->rank, l->rank, &cfg->rank)) ||
            (st = env_int(l->size, l->rank, &cfg->world_size)) ||
            (st = env_int(l->local_rank, l->rank, local)))
            return st;
        if (cfg->rank >= cfg->world_size)
            return petal_error(PETAL_ERR_ARG, "dist_config_from_env: %s=%d is not below %s=%d",
                               l->rank, cfg->rank, l->size, cfg->world_size);
        return PETAL_OK;
    }
    cfg->rank = *local = 0;
    cfg->world_size = 1;
    return PETAL_OK;
}

// The launcher's name for this job, the same on every rank and new for every job.
static void job_nonce(char *out, size_t size) {
    const char *slurm = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID");
    const char *names[] = {"PETAL_DIST_JOB", "OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE",
                           "TORCHELASTIC_RUN_ID"};
    out[0] = '\0';
    if (getenv(names[0])) {
        snprintf(out, size, "%s", getenv(names[0]));
    } else if (slurm) {
        snprintf(out, size, "slurm:%s.%s", slurm, step ? step : "0");
    } else {
        for (size_t i = 1; i < sizeof names / sizeof names[0] && !out[0]; i++)
            if (getenv(names[i])) snprintf(out, size, "%s", getenv(names[i]));
    }
}

static bool nccl_usable(void) {
#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
    return backend_cuda_device_count() > 0;
#else
    return false;
#endif
}

static petal_status backend_from_env(dist_config *cfg, int local) {
    const char *b = getenv("PETAL_DIST");
    if (!b || !*b || !strcmp(b, "auto")) {
        cfg->backend = nccl_usable() ? DIST_NCCL : DIST_MPI;
    } else if (!strcmp(b, "mpi") || !strcmp(b, "nccl")) {
        cfg->backend = !strcmp(b, "mpi") ? DIST_MPI : DIST_NCCL;
    } else {
        return petal_error(PETAL_ERR_ARG, "PETAL_DIST='%s': expected mpi, nccl or auto", b);
    }
    cfg->device = cfg->backend == DIST_NCCL ? DEVICE_CUDA(local) : DEVICE_CPU;
    return PETAL_OK;
}

static petal_status timeout_from_env(dist_config *cfg) {
    const char *v = getenv("PETAL_DIST_TIMEOUT");
    cfg->timeout_s = DIST_TIMEOUT_DEFAULT;
    if (!v) return PETAL_OK;
    char *end;
    double t = strtod(v, &end);
    if (end == v || *end != '\0' || !(t > 0) || t > 1e7)
        return petal_error(PETAL_ERR_ARG,
                           "PETAL_DIST_TIMEOUT='%s': expected seconds, a number above 0", v);
    cfg->timeout_s = t;
    return PETAL_OK;
}

petal_status dist_config_from_env(const char *id_file, dist_config *cfg) {
    *cfg = (dist_config){.id_file = id_file};
    int local;
    petal_status st = launcher_ranks(cfg, &local);
    if (!st) st = backend_from_env(cfg, local);
    if (!st) st = timeout_from_env(cfg);
    job_nonce(cfg->job, sizeof cfg->job);
    return st;
}

// ---- the rendezvous file: magic, world size, id length, nonce, id ----

#define ID_MAGIC "PETALID2"

typedef struct {
    char magic[8];
    uint32_t world_size, n;
    char job[64];
} id_header;

static bool read_header(const char *path, id_header *h, FILE **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    if (fread(h, sizeof *h, 1, f) != 1) memset(h, 0, sizeof *h);
    h->job[sizeof h->job - 1] = '\0';
    *out = f;
    return true;
}

// Whether the file at path was written for another job (its nonce differs from ours).
static bool stale(const char *path, const char *job) {
    id_header h;
    FILE *f;
    if (!job[0] || !read_header(path, &h, &f)) return false;
    fclose(f);
    return memcmp(h.magic, ID_MAGIC, sizeof h.magic) == 0 && strcmp(h.job, job) != 0;
}

petal_status dist_id_write(const char *path, const void *id, size_t n, int world_size,
                           const char *job) {
    if (access(path, F_OK) == 0 && !stale(path, job))
        return petal_error(PETAL_ERR_IO,
                           "rendezvous file '%s' already exists (left by an earlier run without "
                           "a job id, or written by this job already): remove it, or give this "
                           "run its own path",
                           path);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return petal_error(PETAL_ERR_ARG, "rendezvous file path '%s' is too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    id_header h = {ID_MAGIC, (uint32_t)world_size, (uint32_t)n, ""};
    snprintf(h.job, sizeof h.job, "%s", job);
    bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(id, 1, n, f) == n && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    // The rename makes the whole file appear at once (replacing a stale one): a reader never
    // sees part of it.
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return petal_error(PETAL_ERR_IO, "cannot write rendezvous file '%s': %s", path,
                           strerror(err));
    }
    return PETAL_OK;
}

// Waits for a file at path that is not another job's.
static petal_status wait_for(const char *path, const char *job, double timeout_s) {
    double deadline = dist_now() + timeout_s;
    struct stat st;
    for (;;) {
        bool there = stat(path, &st) == 0;
        if (!there && errno != ENOENT)
            return petal_error(PETAL_ERR_IO, "cannot stat rendezvous file '%s': %s", path,
                               strerror(errno));
        if (there && !stale(path, job)) return PETAL_OK;
        if (dist_now() > deadline)
            return petal_error(PETAL_ERR_IO,
                               "waited %g s for rendezvous file '%s'%s, which rank 0 writes: is "
                               "rank 0 running, with the same path on a file system both see?",
                               timeout_s, path,
                               there ? " of this job (only an older job's is there)" : "");
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

petal_status dist_id_read(const char *path, void *id, size_t n, int world_size, const char *job,
                          double timeout_s) {
    petal_status st = wait_for(path, job, timeout_s);
    if (st) return st;
    id_header h;
    FILE *f;
    if (!read_header(path, &h, &f))
        return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    bool whole = memcmp(h.magic, ID_MAGIC, sizeof h.magic) == 0;
    if (whole && h.n == n) whole = fread(id, 1, n, f) == n;
    fclose(f);
    if (!whole)
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

// ---- the communicator ----

petal_status dist_init(const dist_config *cfg, dist_comm **out) {
    *out = NULL;
    if (cfg->world_size < 1 || cfg->rank < 0 || cfg->rank >= cfg->world_size)
        return petal_error(PETAL_ERR_ARG, "dist_init: rank %d is outside a world of %d rank(s)",
                           cfg->rank, cfg->world_size);
    if (!(cfg->timeout_s > 0))
        return petal_error(PETAL_ERR_ARG, "dist_init: timeout_s %g, expected > 0", cfg->timeout_s);
    dist_comm *c = calloc(1, sizeof *c);
    PETAL_CHECK(c != NULL, "dist_init: out of host memory");
    *c = (dist_comm){.rank = cfg->rank,
                     .world_size = cfg->world_size,
                     .device = cfg->device,
                     .timeout_s = cfg->timeout_s};
    petal_status st = cfg->backend == DIST_NCCL ? dist_nccl_init(cfg, c) : dist_mpi_init(cfg, c);
    if (st) {
        free(c);
        return st;
    }
    *out = c;
    return PETAL_OK;
}

petal_status dist_init_from_env(dist_comm **out) {
    *out = NULL;
    dist_config cfg;
    petal_status st = dist_config_from_env(getenv("PETAL_DIST_ID_FILE"), &cfg);
    if (st || cfg.world_size == 1) return st;
    return dist_init(&cfg, out);
}

int dist_rank(const dist_comm *c) {
    return c->rank;
}

int dist_world_size(const dist_comm *c) {
    return c->world_size;
}

petal_device dist_device(const dist_comm *c) {
    return c->device;
}

const char *dist_backend_name(const dist_comm *c) {
    return c->be->name;
}

dist_stats dist_get_stats(const dist_comm *c) {
    return c->stats;
}

void dist_free(dist_comm *c) {
    if (!c) return;
    if (c->failed) c->be->abort(c);
    c->be->free(c);
    free(c);
}

void dist_abort(dist_comm *c, const char *where) {
    fprintf(stderr, "petal rank %d: %s: %s; ending every rank of the job\n", c->rank, where,
            petal_error_message());
    fflush(stderr);
    c->be->abort(c);
    abort(); // a backend's abort does not return; this keeps the promise if one did
}

static petal_status refuse_failed(const dist_comm *c, const char *op) {
    return petal_error(PETAL_ERR_DEVICE,
                       "%s: rank %d: an earlier collective failed; the communicator is unusable",
                       op, c->rank);
}

// A tensor on the communicator's device, or on the CPU (staged: see stage_in).
static void check_tensor(const char *op, const dist_comm *c, const tensor *t, int i) {
    char a[16], b[16];
    PETAL_CHECK(device_equal(t->device, c->device) || t->device.type == PETAL_CPU,
                "%s: tensor %d is on %s, the communicator on %s", op, i, device_name(t->device, a),
                device_name(c->device, b));
    PETAL_CHECK(tensor_is_contiguous(t), "%s: tensor %d is not contiguous", op, i);
}

// Host tensors on a communicator of a GPU (nccl): the trainer's small ones (loss parts, start-up
// broadcasts, the failure flag, generator states) and every tensor of a `device: cpu` run go to
// the device for the collective (NCCL reads and writes device memory only) and stage_out brings
// the results back. Returns ts itself when every tensor is on the communicator's device.
static tensor **stage_in(const dist_comm *c, tensor *const *ts, int n) {
    bool any = false;
    for (int i = 0; i < n; i++) any = any || !device_equal(ts[i]->device, c->device);
    if (!any) return (tensor **)ts;
    tensor **on = malloc((size_t)n * sizeof *on);
    PETAL_CHECK(on != NULL, "dist: out of host memory");
    for (int i = 0; i < n; i++)
        // out of any open scope: a begun all-reduce's copies live until its wait, which may
        // come after the scope has closed (the trainer's micro-step begins buckets in one)
        on[i] = device_equal(ts[i]->device, c->device) ? ts[i]
                                                       : tensor_keep(tensor_to(ts[i], c->device));
    return on;
}

static void stage_out(tensor *const *ts, tensor **on, int n, bool copy_back) {
    if (on == (tensor **)ts) return;
    for (int i = 0; i < n; i++) {
        if (on[i] == ts[i]) continue;
        if (copy_back) tensor_copy_(ts[i], on[i]);
        tensor_free(on[i]);
    }
    free(on);
}

static double payload(tensor *const *ts, int n) {
    double bytes = 0;
    for (int i = 0; i < n; i++) bytes += (double)tensor_numel(ts[i]) * dtype_size(ts[i]->dtype);
    return bytes;
}

// Times a backend call and counts it.
static petal_status timed(dist_comm *c, double t0, double bytes, petal_status st) {
    c->stats.seconds += dist_now() - t0;
    c->stats.bytes += bytes;
    c->stats.calls++;
    return st;
}

// The tensors of an all-reduce: on the communicator's device, contiguous, means of floats only.
static void check_reduce(const dist_comm *c, tensor *const *ts, int n, dist_op op) {
    for (int i = 0; i < n; i++) {
        check_tensor("dist_all_reduce", c, ts[i], i);
        petal_dtype t = ts[i]->dtype;
        bool floating = t == PETAL_F32 || t == PETAL_F64 || t == PETAL_F16 || t == PETAL_BF16;
        PETAL_CHECK(op == DIST_SUM || floating,
                    "dist_all_reduce: a mean of %s tensor %d (means are of floating tensors)",
                    dtype_name(ts[i]->dtype), i);
    }
}

petal_status dist_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op) {
    if (c->failed) return refuse_failed(c, "dist_all_reduce");
    check_reduce(c, ts, n, op);
    double t0 = dist_now();
    tensor **on = stage_in(c, ts, n);
    petal_status st = c->be->all_reduce(c, on, n, op);
    stage_out(ts, on, n, st == PETAL_OK);
    return timed(c, t0, payload(ts, n), st);
}

petal_status dist_all_reduce_begin(dist_comm *c, tensor *const *ts, int n, dist_op op,
                                   dist_pending **out) {
    *out = NULL;
    if (!c->be->all_reduce_begin) return dist_all_reduce(c, ts, n, op);
    if (c->failed) return refuse_failed(c, "dist_all_reduce");
    check_reduce(c, ts, n, op);
    dist_pending *p = calloc(1, sizeof *p);
    PETAL_CHECK(p != NULL, "dist_all_reduce: out of host memory");
    *p = (dist_pending){.c = c, .n = n, .ts = malloc((size_t)(n + 1) * sizeof *p->ts)};
    PETAL_CHECK(p->ts != NULL, "dist_all_reduce: out of host memory");
    memcpy(p->ts, ts, (size_t)n * sizeof *ts); // the caller's array may go before wait
    double t0 = dist_now();
    p->on = stage_in(c, p->ts, n);
    petal_status st =
        timed(c, t0, payload(ts, n), c->be->all_reduce_begin(c, p->on, n, op, &p->job));
    if (st) {
        stage_out(p->ts, p->on, n, false);
        free(p->ts);
        free(p);
        return st;
    }
    *out = p;
    return PETAL_OK;
}

petal_status dist_pending_poll(dist_pending *p, bool *done) {
    *done = true;
    if (!p || !p->job) return PETAL_OK;
    double t0 = dist_now();
    dist_comm *c = p->c;
    petal_status st = c->be->all_reduce_poll(p->job, done);
    c->stats.seconds += dist_now() - t0;
    return st;
}

petal_status dist_pending_wait(dist_pending *p) {
    if (!p) return PETAL_OK;
    petal_status st = PETAL_OK;
    if (p->job) {
        double t0 = dist_now();
        st = p->c->be->all_reduce_wait(p->job);
        p->c->stats.seconds += dist_now() - t0;
    }
    stage_out(p->ts, p->on, p->n, st == PETAL_OK);
    free(p->ts);
    free(p);
    return st;
}

petal_status dist_broadcast(dist_comm *c, tensor *const *ts, int n, int root) {
    PETAL_CHECK(root >= 0 && root < c->world_size, "dist_broadcast: root %d of %d ranks", root,
                c->world_size);
    if (c->failed) return refuse_failed(c, "dist_broadcast");
    for (int i = 0; i < n; i++) check_tensor("dist_broadcast", c, ts[i], i);
    double t0 = dist_now();
    tensor **on = stage_in(c, ts, n);
    petal_status st = c->be->broadcast(c, on, n, root);
    stage_out(ts, on, n, st == PETAL_OK);
    return timed(c, t0, c->rank == root ? payload(ts, n) : 0, st);
}

static tensor *scalar_on(petal_device device, petal_dtype dtype, double value) {
    tensor *t = tensor_zeros_on(device, dtype, SHAPE(1));
    tensor_fill_(t, value);
    return t;
}

// Every rank's row count of x, in rank order, into rows (world entries).
static petal_status gather_rows(dist_comm *c, const tensor *x, int64_t *rows) {
    tensor *mine = scalar_on(c->device, PETAL_I64, (double)x->shape[0]);
    tensor *all = tensor_empty_on(c->device, PETAL_I64, SHAPE(c->world_size));
    petal_status st = c->be->all_gather(c, mine, all);
    tensor *host = tensor_to(all, DEVICE_CPU);
    memcpy(rows, tensor_data_i64(host), (size_t)c->world_size * sizeof *rows);
    tensor_free(mine);
    tensor_free(all);
    tensor_free(host);
    return st;
}

// Rows [from, from + n) of x as a contiguous tensor.
static tensor *rows_of(tensor *x, int64_t from, int64_t n) {
    tensor *s = tensor_slice(x, 0, from, from + n, 1);
    tensor *c = tensor_contiguous(s);
    tensor_free(s);
    return c;
}

// Gathers with every rank padded to the longest row count, then keeps the real rows.
static petal_status gather_ragged(dist_comm *c, tensor *x, const int64_t *rows, tensor **out) {
    int64_t most = 0;
    for (int r = 0; r < c->world_size; r++) most = rows[r] > most ? rows[r] : most;
    int64_t shape[PETAL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[0] = most;
    tensor *padded = tensor_zeros_on(c->device, x->dtype, x->ndim, shape);
    tensor *window = tensor_slice(padded, 0, 0, x->shape[0], 1);
    tensor_copy_(window, x);
    tensor_free(window);
    shape[0] = most * c->world_size;
    tensor *all = tensor_empty_on(c->device, x->dtype, x->ndim, shape);
    petal_status st = c->be->all_gather(c, padded, all);
    tensor_free(padded);
    tensor **list = malloc((size_t)c->world_size * sizeof *list);
    PETAL_CHECK(list != NULL, "dist_all_gather: out of host memory");
    for (int r = 0; r < c->world_size; r++) list[r] = rows_of(all, r * most, rows[r]);
    *out = st ? NULL : tensor_concat(list, c->world_size, 0);
    for (int r = 0; r < c->world_size; r++) tensor_free(list[r]);
    free(list);
    tensor_free(all);
    return st;
}

petal_status dist_all_gather(dist_comm *c, tensor *x, tensor **out) {
    *out = NULL;
    if (c->failed) return refuse_failed(c, "dist_all_gather");
    PETAL_CHECK(x->ndim >= 1, "dist_all_gather: a tensor of at least one dimension");
    double t0 = dist_now();
    int64_t *rows = malloc((size_t)c->world_size * sizeof *rows);
    PETAL_CHECK(rows != NULL, "dist_all_gather: out of host memory");
    bool grad = grad_mode_set(false);
    tensor *xc = tensor_contiguous(x);
    check_tensor("dist_all_gather", c, xc, 0);
    if (!device_equal(xc->device, c->device)) { // staged, as stage_in does; out comes back
        tensor *moved = tensor_to(xc, c->device);
        tensor_free(xc);
        xc = moved;
    }
    petal_status st = gather_rows(c, xc, rows);
    bool equal = true;
    for (int r = 1; r < c->world_size; r++) equal = equal && rows[r] == rows[0];
    if (!st && equal) {
        int64_t shape[PETAL_MAX_DIMS];
        memcpy(shape, xc->shape, sizeof shape);
        shape[0] *= c->world_size;
        *out = tensor_empty_on(c->device, xc->dtype, xc->ndim, shape);
        if ((st = c->be->all_gather(c, xc, *out))) {
            tensor_free(*out);
            *out = NULL;
        }
    } else if (!st) {
        st = gather_ragged(c, xc, rows, out);
    }
    tensor_free(xc);
    if (*out && !device_equal((*out)->device, x->device)) {
        tensor *back = tensor_to(*out, x->device);
        tensor_free(*out);
        *out = back;
    }
    grad_mode_set(grad);
    free(rows);
    return timed(c, t0, payload(&x, 1) * (c->world_size - 1), st);
}

petal_status dist_barrier(dist_comm *c) {
    if (c->failed) return refuse_failed(c, "dist_barrier");
    tensor *one = scalar_on(c->device, PETAL_F32, 1.0);
    petal_status st = dist_all_reduce(c, &one, 1, DIST_SUM);
    tensor_free(one);
    return st;
}
