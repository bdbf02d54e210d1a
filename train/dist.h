// Data-parallel communication: one process per GPU, NCCL between them (the trainer's gradient
// all-reduce and its start-up broadcast of the parameters).
//
// A communicator comes from an MPI-style rank and world size plus a rendezvous file that every
// rank can see: rank 0 creates the NCCL unique id and publishes it there atomically (written to a
// temporary file, then renamed), the other ranks wait for it up to a timeout, and rank 0 removes
// it once every rank has joined. A file left by a crashed run makes rank 0 stop with a message
// rather than hand out a stale id. Collectives take a list of tensors on the communicator's device,
// run as one NCCL group and are queued on petal's stream of that device (tensor/cuda), so they
// are ordered with the kernels that produce and consume the tensors.
//
//     dist_config cfg;
//     if (dist_config_from_env("/shared/run42.ncclid", &cfg) != PETAL_OK) ...  // mpirun, srun, ...
//     dist_comm *comm;
//     if (dist_init(&cfg, &comm) != PETAL_OK) fprintf(stderr, "%s\n", petal_error_message());
//     dist_all_reduce(comm, grads, n, DIST_AVG);
//     dist_free(comm);
//
// In a build without CUDA or NCCL, dist_init and the collectives return PETAL_ERR_DEVICE and say
// so; the configuration and rendezvous functions work in every build.
#pragma once

#include <stddef.h>

#include "tensor/error.h"
#include "tensor/tensor.h"

typedef struct {
    int rank, world_size;
    petal_device device; // this rank's GPU
    const char *id_file; // the rendezvous file (same path on every rank)
    double timeout_s;    // how long ranks > 0 wait for it
} dist_config;

#define DIST_TIMEOUT_DEFAULT 600.0

// Rank, world size and device (cuda:<local rank>) from the launcher's environment: Open MPI
// (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK), MPICH and Intel MPI (PMI_RANK, PMI_SIZE,
// MPI_LOCALRANKID), Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) or torchrun-style RANK,
// WORLD_SIZE, LOCAL_RANK, the first family present; timeout DIST_TIMEOUT_DEFAULT.
petal_status dist_config_from_env(const char *id_file, dist_config *cfg);

typedef struct dist_comm dist_comm;

petal_status dist_init(const dist_config *cfg, dist_comm **out);
int dist_rank(const dist_comm *c);
int dist_world_size(const dist_comm *c);
// Finalises the communicator (aborting it instead if a collective failed) and frees it.
void dist_free(dist_comm *c);

typedef enum { DIST_SUM, DIST_AVG } dist_op;

// In place, over every rank: each tensor becomes the sum (or mean) of its copies. Tensors are
// contiguous, on the communicator's device, of any dtype NCCL reduces (f32, f64, f16, bf16, i32,
// i64).
petal_status dist_all_reduce(dist_comm *c, tensor *const *ts, int n, dist_op op);
// In place: every rank's tensors become root's.
petal_status dist_broadcast(dist_comm *c, tensor *const *ts, int n, int root);

// The rendezvous, on its own. write publishes n bytes for a world of world_size ranks and fails
// if the file already exists; read waits up to timeout_s for the file, then checks it (format,
// length, world size) and copies the bytes out.
petal_status dist_id_write(const char *path, const void *id, size_t n, int world_size);
petal_status dist_id_read(const char *path, void *id, size_t n, int world_size, double timeout_s);
