// A rank's share of a VQA or caption evaluation, and the gathering of what the shares produced
// (docs/distributed.md). The split is read in the batches of one process (batch_size_test, the
// file's order): of its B batches, rank r of N evaluates [B r / N, B (r + 1) / N). Every sample
// is therefore answered inside the very batch one process answers it in, with the same padding
// and the same shapes, so its answer or caption is one process's to the bit, whatever a batch's
// composition does to the arithmetic. The shares, gathered in rank order, are the split's samples
// in its order.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "train/config.h"
#include "train/dist.h"
#include "train/loader.h"

// A loader over this rank's share of the split (comm NULL: the whole split), or *out NULL when the
// share is empty (fewer batches than ranks).
petal_status eval_shard_loader(const train_config *c, const train_data *d, const tokenizer *tok,
                               const dist_comm *comm, loader **out);
// Batches [*start, *stop) of `batches` are rank's share of world.
void eval_shard_range(int64_t batches, int rank, int world, int64_t *start, int64_t *stop);

// What an evaluation produced, sample after sample.
typedef struct {
    int64_t n;
    int64_t *index; // (n) the samples' indices in the split's train_data
    char **text;    // (n) their answers or captions, malloc'd
    size_t cap;
} eval_outputs;

void eval_outputs_push(eval_outputs *o, int64_t index, char *text); // takes text
// Replaces o with every rank's outputs, in rank order (comm NULL: leaves o as it is).
petal_status eval_outputs_gather(dist_comm *comm, eval_outputs *o);
void eval_outputs_free(eval_outputs *o);
