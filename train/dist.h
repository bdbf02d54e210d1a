// Data-parallel communication (docs/distributed.md): one process per rank, started by a launcher
// (mpirun, srun, torchrun-style variables), and a communicator with one of two backends:
//
//   mpi   CPU tensors, over MPI point-to-point messages (train/dist_mpi.c). Its all-reduce sums
//         every element in rank order (rank 0's value + rank 1's + ...), whatever the number of
//         ranks or the message timing, so all ranks hold bitwise equal results and a run is
//         bitwise reproducible. Every wait is bounded: a rank that died or hangs makes the others
//         stop after timeout_s with a message naming it.
//   nccl  GPU tensors (train/dist_nccl.c). The NCCL id travels by MPI_Bcast when MPI is built in,
//         else by the rendezvous file below. Collectives are queued on a stream of the
//         communicator's own, after the work queued on petal's stream of the device, which
//         waits for them; asynchronous NCCL errors are polled and the communicator aborted.
//
//     dist_config cfg;
//     if (dist_config_from_env(NULL, &cfg)) ...          // rank, size, backend (PETAL_DIST)
//     dist_comm *comm;
//     if (dist_init(&cfg, &comm)) fprintf(stderr, "%s\n", petal_error_message());
//     dist_all_reduce(comm, grads, n, DIST_AVG);
//     dist_free(comm);
//
// A collective that failed (timeout, transport error) leaves the communicator failed: every later
// collective returns PETAL_ERR_DEVICE at once, and dist_free aborts the whole job (MPI_Abort,
// ncclCommAbort) instead of waiting for ranks that will never arrive.
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

typedef enum { DIST_MPI, DIST_NCCL } dist_backend_kind;

typedef struct {
    int rank, world_size;
    dist_backend_kind backend;
    petal_device device; // CPU for mpi, cuda:<local rank> for nccl
    const char *id_file; // nccl without MPI: the rendezvous file (same path on every rank)
    char job[64];        // the launcher's job id: the rendezvous file's nonce ("" if unknown)
    double timeout_s;    // the longest wait for another rank
} dist_config;

#define DIST_TIMEOUT_DEFAULT 300.0

// From the launcher's environment: rank, world size and local rank from Open MPI
// (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK), MPICH and Intel MPI (PMI_RANK, PMI_SIZE,
// MPI_LOCALRANKID), Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) or torchrun-style RANK,
// WORLD_SIZE, LOCAL_RANK, the first family present (none: rank 0 of 1); the job id from
// PETAL_DIST_JOB, SLURM_JOB_ID.SLURM_STEP_ID, OMPI_MCA_ess_base_jobid, PMIX_NAMESPACE or
// TORCHELASTIC_RUN_ID; the backend from PETAL_DIST = mpi | nccl | auto (auto, the default: nccl
// when this build has NCCL and a GPU is present, else mpi); the timeout from PETAL_DIST_TIMEOUT
// (seconds, default DIST_TIMEOUT_DEFAULT). id_file may be NULL (MPI carries the NCCL id).
petal_status dist_config_from_env(const char *id_file, dist_config *cfg);

typedef struct dist_comm dist_comm;

petal_status dist_init(const dist_config *cfg, dist_comm **out);
// What `petal train` and `petal bench` do: a process started by a launcher as one of several
// ranks gets its communicator (dist_config_from_env with PETAL_DIST_ID_FILE as the rendezvous
// file, then dist_init); a process on its own gets NULL and PETAL_OK.
petal_status dist_init_from_env(dist_comm **out);
int dist_rank(const dist_comm *c);
int dist_world_size(const dist_comm *c);
petal_device dist_device(const dist_comm *c);
const char *dist_backend_name(const dist_comm *c); // "mpi" or "nccl"
// Finalises the communicator, or aborts the job when a collective failed, and frees it.
void dist_free(dist_comm *c);
// Prints the current error (petal_error_message) with this rank in front and ends every rank of
// the job: for failures inside code that cannot return a status (a model's forward pass).
void dist_abort(dist_comm *c, const char *where) __attribute__((noreturn));

typedef enum { DIST_SUM, DIST_AVG } dist_op;

// In place, over every rank: each tensor becomes the sum (or, for floating dtypes, the mean) of its
// copies. Tensors are contiguous and on the communicator's device, or on the CPU (an nccl
// communicator copies them to its GPU for the collective and back: petal train with device:
// cpu); mpi reduces f32, f64 and i64 (all tensors of one call of one dtype), nccl also f16, bf16
// and i32. mpi pipelines large messages in segments of PETAL_DIST_SEGMENT_KB (default 256)
// kilobytes; whatever their size, the bits are the same.
petal_status dist_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op);
// dist_all_reduce in two halves: begin posts it and returns, poll moves it on (MPI moves messages
// only inside its calls) and says whether it finished, wait finishes it and frees the handle. The
// tensors must not be touched in between. Every rank begins the same all-reduces in the same
// order. What it computes is dist_all_reduce's, to the bit. On nccl, begin queues the all-reduce
// on the communicator's stream behind the work queued so far on the device's stream (which wrote
// the tensors), poll also fails at the deadline or on NCCL's asynchronous error, and wait has the
// device's stream and the host wait for it (with the deadline). Host tensors are copied to the
// device at begin and back at wait.
typedef struct dist_pending dist_pending;
petal_status dist_all_reduce_begin(dist_comm *c, tensor *const *ts, int n, dist_op op,
                                   dist_pending **out);
petal_status dist_pending_poll(dist_pending *p, bool *done);
petal_status dist_pending_wait(dist_pending *p);
// The MPI library's own MPI_Allreduce (a sum, in whatever order its algorithm for the size and
// rank count takes) of an f32 tensor, in place, on the mpi backend's ranks: what `petal bench
// allreduce` compares dist_all_reduce with. An error on the nccl backend or without MPI.
petal_status dist_mpi_library_sum(dist_comm *c, tensor *x);
// In place: every rank's tensors become root's.
petal_status dist_broadcast(dist_comm *c, tensor *const *ts, int n, int root);
// Every rank's x (rows_r, ...) stacked in rank order into *out (sum of rows_r, ...), on x's
// device: BLIP's concat_all_gather. The ranks' row counts may differ; the other dimensions and the
// dtype must agree. No gradient flows through it.
petal_status dist_all_gather(dist_comm *c, tensor *x, tensor **out);
// Returns once every rank has called it (or fails after the timeout, naming the missing rank).
petal_status dist_barrier(dist_comm *c);

// BLIP's all_gather_with_grad: dist_all_gather whose backward sums the gradient of the gathered
// tensor over the ranks (an all-reduce) and hands each rank the rows of its own x. Every rank
// must give x the same shape. A failed collective ends the job (dist_abort): it runs inside a
// forward or backward pass, which has no status to return.
tensor *dist_gather_grad(dist_comm *c, tensor *x);

typedef struct {
    double seconds; // wall time inside collectives
    double bytes;   // payload this rank sent
    int64_t calls;
} dist_stats;
dist_stats dist_get_stats(const dist_comm *c);

// The rendezvous file, on its own (nccl without MPI). write publishes n bytes for a world of
// world_size ranks and a job nonce; a file left by another job (another nonce) is replaced, one of
// this job refused. read waits up to timeout_s for a file with this job's nonce (an older job's is
// passed over), then checks it (format, length, world size) and copies the bytes out.
petal_status dist_id_write(const char *path, const void *id, size_t n, int world_size,
                           const char *job);
petal_status dist_id_read(const char *path, void *id, size_t n, int world_size, const char *job,
                          double timeout_s);
