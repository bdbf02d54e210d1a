// What keeps the ranks of a data-parallel run in step (docs/distributed.md): the same start
// (rank 0's model, optimizer and position broadcast), the same gradients (averaged after each
// step's backward passes) and a random stream of their own.
#pragma once

#include "train/dist.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/resume.h"
#include "train/step.h"

// Rank 0's trainable tensors, buffers (momentum encoders, queues), optimizer state and position
// to every rank. The generator in *pos stays each rank's own.
petal_status sync_start(dist_comm *c, train_model *tm, optim_adamw *opt, train_position *pos);
// Every trainable gradient averaged over the ranks, in one bucketed all-reduce. A tensor that got
// no gradient on this rank takes part with zeros (DDP's find_unused_parameters would be needed
// otherwise), so that every rank sends the same list.
petal_status sync_grads(dist_comm *c, optim_adamw *opt);
// The step's loss parts averaged over the ranks: the loss of the whole global batch.
petal_status sync_parts(dist_comm *c, step_parts *p);
// Rank r's generator for dropout and hard negatives: rank 0 keeps the run's (so one process runs
// as before), the others get keys of their own.
rng_generator sync_rank_rng(rng_generator base, int rank);
// Every rank's generator, in rank order, into rngs (world entries) on every rank.
petal_status sync_gather_rngs(dist_comm *c, rng_generator mine, rng_generator *rngs);

// Gradient averaging overlapped with the step's last backward pass: the trainable tensors in
// buckets of about bucket_mb MB, in reverse registry order (about the order a backward pass
// completes them); a bucket's all-reduce begins once every gradient in it is complete and every
// earlier bucket has begun (so that all ranks begin them in one order). The sums are
// dist_all_reduce's, bit for bit: only the time they start moves.
//
//     sync_overlap *ov = sync_overlap_new(comm, opt, 1.0);
//     ... the step's other backward passes (gradient accumulation) ...
//     sync_overlap_start(ov);
//     autograd_backward_notify(loss, NULL, false, sync_overlap_leaf_done, ov);
//     sync_overlap_finish(ov); // the rest begun, every bucket waited for: gradients averaged
typedef struct sync_overlap sync_overlap;
sync_overlap *sync_overlap_new(dist_comm *c, optim_adamw *opt, double bucket_mb);
void sync_overlap_start(sync_overlap *o);
void sync_overlap_leaf_done(tensor *leaf, void *ctx); // autograd_backward_notify's callback
petal_status sync_overlap_finish(sync_overlap *o);
void sync_overlap_free(sync_overlap *o);
