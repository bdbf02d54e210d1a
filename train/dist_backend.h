// The communicator's backend table (train/dist.h): what train/dist_mpi.c and train/dist_nccl.c
// implement. dist.c checks arguments, times the calls and refuses them on a failed communicator;
// a backend moves the bytes and marks the communicator failed when a transfer did not complete.
#pragma once

#include "train/dist.h"

typedef struct {
    const char *name;
    petal_status (*all_reduce)(dist_comm *c, tensor *const *ts, int n, dist_op op);
    petal_status (*broadcast)(dist_comm *c, tensor *const *ts, int n, int root);
    // out: (world * rows, ...) where every rank has `rows` rows; the caller made it.
    petal_status (*all_gather)(dist_comm *c, tensor *x, tensor *out);
    void (*free)(dist_comm *c);  // a clean shutdown
    void (*abort)(dist_comm *c); // ends every rank of the job; does not return
    // An all-reduce begun and finished apart (a job of the backend's own), so that messages move
    // while the backward pass goes on; NULL: dist.c runs all_reduce at the beginning.
    petal_status (*all_reduce_begin)(dist_comm *c, tensor *const *ts, int n, dist_op op,
                                     void **job);
    petal_status (*all_reduce_poll)(void *job, bool *done);
    petal_status (*all_reduce_wait)(void *job); // frees the job
} dist_backend;

struct dist_pending {
    dist_comm *c;
    void *job;   // NULL: finished at the beginning
    tensor **ts; // (n) the caller's tensors
    tensor **on; // (n) ts, or their copies on the communicator's device (dist.c's stage_in)
    int n;
};

struct dist_comm {
    const dist_backend *be;
    int rank, world_size;
    petal_device device;
    double timeout_s;
    bool failed;
    dist_stats stats;
    void *impl; // the backend's state
};

// Each fills c (rank, world, device, timeout set by the caller) or returns an error. In a build
// without the backend they say how to get it.
petal_status dist_mpi_init(const dist_config *cfg, dist_comm *c);
petal_status dist_nccl_init(const dist_config *cfg, dist_comm *c);

#ifdef PETAL_HAVE_MPI
// MPI_Init_thread once per process (FUNNELED: only the thread that runs the model calls MPI), and
// root's n bytes to every rank of MPI_COMM_WORLD within timeout_s (the NCCL id's way).
petal_status dist_mpi_start(void);
petal_status dist_mpi_share(void *bytes, size_t n, int root, double timeout_s);
// MPI_Finalize when dist_mpi_start initialised MPI and no mpi communicator has taken that over
// (the nccl backend's end: a rank that exits without it is one mpirun reports as failed).
void dist_mpi_finish(void);
#endif

// Monotonic seconds.
double dist_now(void);
