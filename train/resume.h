// The resume file (RUN_DIR/resume.h5): everything that influences the rest of a run, so that a
// run killed at any moment and continued with `petal train --resume` writes the same metrics lines
// to the byte as one never interrupted (same thread count). It holds, as one petal HDF5 file
// written atomically:
//   model.<name>    every trainable tensor and every buffer (momentum encoders, queues)
//   optim.m.<name>, optim.v.<name>, optim.steps   AdamW's moments and per-tensor step counts
//   state.position  i64 [step, epoch, batch, rng seed, rng offset, metrics bytes, best step]
//   state.best      f64 [best validation score]
//   state.rank_rng  i64 (ranks, 2): every rank's generator (seed, offset), data-parallel runs only
// The position's batch counts the micro-batches of one rank's shard; state.position's last entry
// is the number of ranks that ran (files from before data parallelism have none: 1).
// The schedule is a function of the step, and the loader's order and augmentation of (seed,
// epoch, sample), so the position alone restores them. The experiment's config is embedded as
// the file's config attribute; resuming with another config is refused.
#pragma once

#include <stdint.h>

#include "tensor/rng.h"
#include "train/model.h"
#include "train/optim.h"

typedef struct {
    int64_t step;          // optimizer steps done
    int64_t epoch, batch;  // the next micro-batch to read
    rng_generator rng;     // dropout masks and hard-negative draws
    int64_t metrics_bytes; // metrics.jsonl's length at this point
    double best;           // best validation score so far (-1: none yet)
    int64_t best_step;
    int world; // ranks of the run that saved it
} train_position;

// rngs: every rank's generator (pos->world of them) when pos->world > 1, else NULL.
petal_status resume_save(const char *path, const train_model *tm, const optim_adamw *opt,
                         const train_position *pos, const rng_generator *rngs,
                         const char *config_json);
// Loads into a model and optimizer built from the same config (the trainable set, the optimizer's
// parameter order and every shape must match; the message names what differs).
// *rngs gets the saved ranks' generators (pos->world of them, malloc'd) or NULL for one rank.
petal_status resume_load(const char *path, train_model *tm, optim_adamw *opt,
                         const char *config_json, train_position *pos, rng_generator **rngs);
