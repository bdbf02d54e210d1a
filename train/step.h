// One micro-batch's training loss for each task, as BLIP's train_*.py compute it, with its parts
// for the metrics lines.
#pragma once

#include "models/blip/video.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/loader.h"
#include "train/model.h"

#define STEP_MAX_PARTS 4

typedef struct {
    int n;
    const char *names[STEP_MAX_PARTS]; // "loss_ita", "loss_itm", "loss_lm", "loss_vqa"
    double values[STEP_MAX_PARTS];
} step_parts;

// The loss to back-propagate (a () tensor in the current scope) and its parts' values. alpha is
// the distillation weight (retrieval, pretrain); g draws dropout masks and hard negatives. comm
// (NULL: one process) makes ITC/ITM training what blip_retrieval.py does across GPUs: the queues
// take every rank's features, and negative_all_rank draws negatives from every rank's batch.
// The config's video_itc as models/blip/video.h names it.
blip_video_itc step_video_itc(const train_config *c);

tensor *step_loss(const train_model *tm, const train_config *c, const train_batch *b, double alpha,
                  rng_generator *g, dist_comm *comm, step_parts *parts);
