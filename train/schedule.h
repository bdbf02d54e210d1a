// Learning-rate and distillation schedules of BLIP's training scripts (salesforce/BLIP utils.py,
// train_retrieval.py), as pure functions of the position in training, so a resumed run computes
// the same values from the step it resumes at.
#pragma once

#include <stdint.h>

#include "train/config.h"

// cosine_lr_schedule: set once at the start of each epoch (0-based),
// (init_lr - min_lr) * 0.5 * (1 + cos(pi * epoch / max_epoch)) + min_lr.
double schedule_epoch_cosine(int64_t epoch, int64_t max_epoch, double init_lr, double min_lr);
// warmup_lr_schedule (pretrain.py's first epoch): min(max_lr, init_lr + (max_lr - init_lr) *
// step / max_step).
double schedule_warmup(int64_t step, int64_t max_step, double init_lr, double max_lr);
// Per optimizer step s (0-based) of total: a linear warmup init_lr * (s + 1) / warmup over the
// first `warmup` steps (so the first update is not wasted at lr 0, unlike HF's schedule), then
// min_lr + (init_lr - min_lr) * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup))).
double schedule_step_cosine(int64_t s, int64_t total, int64_t warmup, double init_lr,
                            double min_lr);
// The lr of optimizer step s (0-based) in epoch `epoch` under the config's schedule; total is
// the number of optimizer steps of the whole run.
double schedule_lr(const train_config *c, int64_t s, int64_t epoch, int64_t total);
// train_retrieval.py's distillation weight: alpha in later epochs, ramped as
// alpha * min(1, i / batches_per_epoch) over the batches i (0-based) of the first.
double schedule_alpha(double alpha, int64_t epoch, int64_t i, int64_t batches_per_epoch);
