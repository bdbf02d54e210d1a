// `petal train`: one experiment from a config into a run folder (train/run.h): the training loop
// (gradient accumulation, clipping, a stop on the first non-finite loss or gradient), evaluation
// on the validation split every eval_every steps with best.h5 kept, last.h5 and the resume state
// every save_every steps, and an exact resume (train/resume.h).
#pragma once

#include <stdbool.h>

#include "train/config.h"
#include "train/dist.h"
#include "train/model.h"

// Runs (or, with resume, continues) the experiment; its lines go to stdout and RUN_DIR/log.txt.
petal_status trainer_run(const train_config *c, const char *run_dir, bool resume);
// The same on a model the caller built for this config (train_model_init), which it keeps: petal
// ablate trains every point of a grid on one loaded model.
petal_status trainer_run_on(const train_config *c, const char *run_dir, bool resume,
                            train_model *tm);

typedef struct {
    bool resume;        // continue from RUN_DIR/resume.h5
    train_model *model; // a model the caller built for this config and keeps, or NULL
    // Data parallelism (docs/distributed.md): every rank calls with its communicator; each reads
    // its shard, the gradients are averaged, rank 0 writes the run folder. NULL: one process.
    dist_comm *comm;
    // End the run cleanly after this optimizer step, its resume state saved (a job with a time
    // limit goes on later with resume); 0: run to the end.
    int64_t stop_after;
} trainer_options;

petal_status trainer_run_with(const train_config *c, const char *run_dir, const trainer_options *o);

typedef struct {
    int64_t steps;      // timed optimizer steps (after one untimed warm-up step)
    double seconds;     // their wall time
    double data_wait_s; // of it, waiting for the loader
    size_t peak_bytes;  // CPU allocator peak during the timed steps
    int64_t trainable;  // trainable parameters
    double comm_s;      // of it, averaging gradients and losses over the ranks
} trainer_bench_result;

// `petal bench train`: the config's training steps with no run folder, evaluation or saving.
// With comm, every rank runs it and each reports its own times.
petal_status trainer_bench(const train_config *c, dist_comm *comm, int64_t steps,
                           trainer_bench_result *out);
